"""The online controller's records: its options, the state an event may change, and what it publishes.

All frozen: an accepted event replaces the state as a whole, so a refused one leaves nothing half-changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import numpy as np

from ..instance import Instance, Session
from ..schedule import Schedule
from ..verify import Verification

#: Solvers a controller accepts: the direct HiGHS LP and the controlled baselines (``uncontrolled`` ignores limits
#: and is not a controller; it is a strategy of :func:`gridcharge.online.simulate`).
CONTROLLER_SOLVERS = ("highs", "equal_share", "edf", "llf", "greedy_cost")
#: Serial numbers of forecast (phantom) cars start here (real cars count from 0).
PHANTOM_SERIAL = 1 << 19
#: Prefix of phantom sessions and virtual chargers of the arrival forecast in a sub-instance.
EXPECTED_PREFIX = "~expected:"


@dataclass(frozen=True)
class ControllerOptions:
    """How a controller solves; set once, handed down whole (service → engine → solver process → controller).

    solver : str — ``"highs"`` (the LP, optimal) or a controlled baseline (``equal_share``, ``edf``, ``llf``,
        ``greedy_cost``), re-run on each re-solve
    horizon_periods : int, optional — length of the receding horizon [periods]; default: to the end of the day.
        A car that leaves after it is planned as if it left at the horizon's end with its whole remaining request
    fallback : str — baseline published when a solve fails
    time_limit_s : float, optional — HiGHS budget per re-solve [s], counted from each call. On the kept model a
        re-solve that runs out of it publishes the interim plan and the next one continues (``optimum_pending``);
        elsewhere it is a failure (the fallback is published)
    warm_start : bool — keep the HiGHS model and its basis between re-solves (docs/design/online.md)
    simplex : {"auto", "primal", "dual"} — simplex of warm-started solves (auto: primal after new cars only)
    always_resolve : bool — re-solve at every ``advance`` even when nothing changed (by default the rest of the last
        optimal plan is re-verified and published again: still optimal when nothing changed)
    threads : int, optional — HiGHS threads
    never_above_request : bool — bound the energy added to a V2G car at *every* period by its request (the model
        bounds it only at departure); costs the overfill-then-sell arbitrage. Always on for a car with a minimum current
        (:func:`gridcharge.online.checks.bounded_cars`)
    highs_options : mapping, optional — more HiGHS options (name → value) for every re-solve
    provisional : bool — after new cars only, publish at once the last plan with each new car filled greedily into
        its headroom (verified like every publication), then re-solve
    """

    solver: str = "highs"
    horizon_periods: int | None = None
    fallback: str = "equal_share"
    time_limit_s: float | None = None
    warm_start: bool = True
    simplex: str = "auto"
    always_resolve: bool = False
    threads: int | None = None
    never_above_request: bool = False
    highs_options: Mapping = field(default_factory=dict)
    provisional: bool = False

    def __post_init__(self):
        if self.solver not in CONTROLLER_SOLVERS:
            raise ValueError(f"solver {self.solver!r}: a controller runs one of {', '.join(CONTROLLER_SOLVERS)}")
        if self.fallback not in CONTROLLER_SOLVERS[1:]:
            raise ValueError(f"fallback {self.fallback!r}: expected one of {', '.join(CONTROLLER_SOLVERS[1:])}")
        if self.simplex not in ("auto", "primal", "dual"):
            raise ValueError(f"simplex {self.simplex!r}: expected auto, primal or dual")
        h = self.horizon_periods
        if h is not None and (isinstance(h, bool) or int(h) != h or h < 1):
            raise ValueError(f"horizon_periods {h!r}: expected a whole number >= 1")
        object.__setattr__(self, "horizon_periods", None if h is None else int(h))
        object.__setattr__(self, "highs_options", dict(self.highs_options or {}))
        object.__setattr__(self, "never_above_request", bool(self.never_above_request))
        object.__setattr__(self, "provisional", bool(self.provisional))

    @property
    def time_budget_s(self) -> float:
        """``time_limit_s`` with None as infinity [s]."""
        return math.inf if self.time_limit_s is None else float(self.time_limit_s)


@dataclass(frozen=True)
class Day:
    """The fixed frame of a controller's day, computed once from its site: the period grid, chargers and nodes.

    site : Instance — nodes, chargers, tariff, objective; its horizon is the day
    chargers : dict id → Charger
    node_index : dict id → row of the node arrays
    node_ids : tuple of str
    generation_kw : numpy.ndarray, shape (N, T) — each node's own generation [kW]
    import_price, export_price : numpy.ndarray, shape (T,) — [CNY/kWh]
    """

    site: Instance
    chargers: dict
    node_index: dict
    node_ids: tuple
    generation_kw: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray

    @classmethod
    def of(cls, site: Instance) -> Day:
        T = site.horizon.periods

        def per_period(value) -> np.ndarray:
            return readonly(np.broadcast_to(np.asarray(value, dtype=float), (T,)).copy())

        return cls(site=site, chargers={c.id: c for c in site.chargers},
                   node_index={n.id: i for i, n in enumerate(site.nodes)}, node_ids=tuple(n.id for n in site.nodes),
                   generation_kw=readonly(np.array([per_period(n.generation_kw) for n in site.nodes])),
                   import_price=per_period(site.tariff.import_cny_per_kwh),
                   export_price=per_period(site.tariff.export_cny_per_kwh))

    @property
    def start(self) -> datetime:
        """Start of period 0."""
        return self.site.horizon.start

    @property
    def step(self) -> timedelta:
        """Length of a period."""
        return timedelta(minutes=self.site.horizon.step_minutes)

    @property
    def periods(self) -> int:
        """Periods of the day (T)."""
        return self.site.horizon.periods

    def time_of(self, period: int) -> datetime:
        """Start of period ``period`` (``period == T`` is the end of the day)."""
        return self.start + self.step * period


@dataclass(frozen=True)
class Car:
    """An announced car.

    session : Session — as announced (instance-v1 fields; arrival and departure are absolute date-times)
    serial : int — the controller's own number for it, stable for the day (keys of the warm start)
    delivered_kwh : float — energy added to the battery since arrival [kWh]; negative after V2G discharge
    """

    session: Session
    serial: int
    delivered_kwh: float = 0.0


@dataclass(frozen=True)
class Cap:
    """A demand-response cap: the net load of ``node`` must stay <= ``import_limit_kw`` [kW] in periods
    ``start .. end - 1`` (absolute period indices of the site's horizon)."""

    node: str
    import_limit_kw: float
    start: int
    end: int


@dataclass(frozen=True)
class Expected:
    """A car expected to arrive (the arrival forecast): it needs ``energy_kwh`` [kWh] between ``arrival`` and
    ``departure`` at a charger of up to ``max_charge_kw`` [kW] (phases, efficiency) below ``node``. Planned for as a
    charge-only phantom session on a virtual charger while its arrival is still in the future; never given a
    set-point."""

    id: str
    node: str
    arrival: datetime
    departure: datetime
    energy_kwh: float
    max_charge_kw: float
    phases: str = "ABC"
    efficiency: float = 1.0


@dataclass(frozen=True)
class ControllerState:
    """Everything an event can change. Replaced as a whole by each accepted event (never edited in place).

    now : int — current period index (0 .. T)
    cars : dict of id → Car — announced cars that have not left
    finished : dict of id → Car — cars that left, with what they were given
    caps : tuple of Cap
    base_load_kw : numpy.ndarray, shape (N, T) — forecast of each node's own base load [kW] (read-only)
    peak_so_far_kw : float — highest root net load of the periods before ``now``, from the published set-points
        and the forecast [kW]; -inf at the start of the day
    next_serial : int
    expected : tuple of Expected — the arrival forecast
    """

    now: int
    cars: dict
    finished: dict
    caps: tuple
    base_load_kw: np.ndarray
    peak_so_far_kw: float
    next_serial: int
    expected: tuple = ()


@dataclass(frozen=True)
class Timings:
    """Where a publication's time went [s]: building the sub-instance, the Problem, solving (all of the
    charge-or-discharge rounds), HiGHS alone, the checks, in all; ``warm`` (``"kept"``, ``"basis"`` or False) and
    ``iterations`` (simplex) of the HiGHS calls. None: that step did not happen (e.g. ``solve_s`` of a plan
    published again, or of a provisional plan published before the re-solve)."""

    instance_s: float | None = None
    problem_s: float | None = None
    solve_s: float | None = None
    highs_s: float | None = None
    verify_s: float | None = None
    total_s: float | None = None
    warm: str | bool | None = None
    iterations: int | None = None


@dataclass(frozen=True)
class LogEntry:
    """One publication in a controller's log: its ``period`` (start), ``source``, ``status``, the number of
    ``active_cars`` (rows), the kinds of event since the publication before (``changes``), its ``timings`` and, when
    the ``on_publish`` listener raised, what (``on_publish_error``)."""

    period: int
    source: str
    status: str
    active_cars: int
    changes: tuple
    timings: Timings
    on_publish_error: str | None = None

    def row(self) -> dict:
        """The entry as one flat table row (the timings spread into columns)."""
        return {"period": self.period, "source": self.source, "status": self.status, "active_cars": self.active_cars,
                "changes": list(self.changes), **asdict(self.timings), "on_publish_error": self.on_publish_error}


@dataclass(frozen=True)
class Publication:
    """A published schedule: set-points for periods ``start_period .. start_period + power_kw.shape[1] - 1``.

    session_ids : tuple of str — rows of ``power_kw``
    power_kw : numpy.ndarray, shape (S, P) — signed power [kW] (+ charge, - discharge), read-only
    source : str — ``"highs"``, a baseline name, ``"fallback:<name>"``, ``"provisional"``, ``"zero"`` or ``"idle"``
    status : str — what happened, in words (also ``Controller.status``)
    verification : Verification or None — the verifier's verdict on the sub-instance
    schedule : Schedule or None — the sub-instance's schedule (tz-aware frames via ``schedule.power_kw``)
    timings : Timings
    """

    start_period: int
    session_ids: tuple
    power_kw: np.ndarray
    source: str
    status: str
    verification: Verification | None = None
    schedule: Schedule | None = field(default=None, repr=False)
    timings: Timings = field(default_factory=Timings)

    def column(self, period: int) -> np.ndarray:
        """Set-points of absolute period ``period`` [kW], shape (S,); zeros outside the published range."""
        j = period - self.start_period
        if 0 <= j < self.power_kw.shape[1]:
            return self.power_kw[:, j]
        return np.zeros(len(self.session_ids))


def readonly(array: np.ndarray) -> np.ndarray:
    """``array``, made read-only (published and state arrays are shared, never edited)."""
    array.flags.writeable = False
    return array
