"""Exceptions a user can act on.

Each carries what is needed to say *where* the problem is: the field path of bad input, or the node and period of an
infeasible grid. The CLI maps them to exit codes (2 invalid input, 3 infeasible); the HTTP service to problem details.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class FieldProblem:
    """One bad field: ``path`` like ``sessions[3].departure``, the offending ``value`` and what was ``expected``."""

    path: str
    value: object
    expected: str

    def __str__(self) -> str:
        value = _short(self.value)
        return f"{self.path}: {value} — {self.expected}" if self.path else f"{value} — {self.expected}"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


class GridchargeError(Exception):
    """Base class of every error gridcharge raises on purpose."""


class InstanceError(GridchargeError, ValueError):
    """Invalid input. ``problems`` lists every bad field found (path, value, expected).

    ``source`` names the file (or request) the input came from; ``what`` begins the message: ``"invalid instance"``
    by default, ``"invalid scenario"``, ``"invalid schedule"``, ``"refused plug_in event"``... for other inputs.
    """

    def __init__(self, problems: list[FieldProblem] | FieldProblem, source: str | None = None, *,
                 what: str = "invalid instance"):
        if isinstance(problems, FieldProblem):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        head = f"{what}{f' {source}' if source else ''}"
        if len(self.problems) == 1:
            message = f"{head}: {self.problems[0]}"
        else:
            message = f"{head}, {len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(message)


class RefusalReason(Enum):
    """Why an event was refused; callers choose their answer from it (HTTP status, OCPP error code), never from the
    words of the message."""

    #: the event names a car that is not announced or has left (HTTP 404)
    UNKNOWN_SESSION = "unknown_session"
    #: the id is already used by another car today (HTTP 409)
    ID_IN_USE = "id_in_use"
    #: the charger is occupied by another car during the stay (HTTP 409)
    CHARGER_OCCUPIED = "charger_occupied"
    #: a value is invalid (HTTP 422)
    INVALID = "invalid"


class EventRefused(InstanceError):
    """An event the online controller refused; nothing changed. ``reason`` (:class:`RefusalReason`) is the most
    telling of the problems (an unknown car before a conflict before an invalid value); ``event`` names the event
    (``plug_in``, ``depart``...)."""

    def __init__(self, event: str, problems: list[FieldProblem] | FieldProblem,
                 reason: RefusalReason = RefusalReason.INVALID):
        super().__init__(problems, what=f"refused {event} event")
        self.event = event
        self.reason = reason


@dataclass(frozen=True)
class Overload:
    """A limit that cannot be met (or, with ``allow_overload``, was exceeded).

    node : str — node id
    kind : str — ``import``, ``export`` or ``phase_A``/``phase_B``/``phase_C``
    period : int — period index
    start : str — ISO-8601 start of the period
    excess_kw : float — by how much the limit is (or must be) exceeded [kW]
    """

    node: str
    kind: str
    period: int
    start: str
    excess_kw: float

    def __str__(self) -> str:
        return f"node {self.node!r} {self.kind} limit, period {self.period} ({self.start}): over by {self.excess_kw:.3f} kW"


class InfeasibleError(GridchargeError):
    """No schedule can keep every limit. ``overloads`` says which node, which period, by how many kW."""

    def __init__(self, overloads: list[Overload], reason: str):
        self.overloads = list(overloads)
        self.reason = reason
        lines = [f"infeasible: {reason}"]
        shown = self.overloads[:20]
        lines += [f"  {o}" for o in shown]
        if len(self.overloads) > len(shown):
            lines.append(f"  ... and {len(self.overloads) - len(shown)} more")
        super().__init__("\n".join(lines))


class SolverError(GridchargeError):
    """The solver failed or stopped without an optimal answer (time limit, numerical trouble)."""


class PublicationRejected(SolverError):
    """A schedule failed the checks every publication must pass (the independent verifier, demand-response caps,
    over-request bounds): it is not published. The message says which check and where."""


class UnknownSolverError(GridchargeError, ValueError):
    """A solver name that is not registered; the message lists the names that are."""
