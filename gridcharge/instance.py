"""Instance format v1 (``gridcharge/instance-v1``): schema, JSON/TOML loading, field-named validation errors.

An instance is a file researchers can share and the CLI can solve. Its keys are a contract; see the README's
"Instance format" section for the semantics, repeated briefly in the docstrings below.

Every check names the field path, the value and what was expected, e.g.
``sessions[3].departure: 2026-07-02T08:00:00+08:00 — must not be after the horizon end 2026-07-02T00:00:00+08:00``.
Nothing is clamped or ignored silently: an unknown key is an error, too.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import FieldProblem, InstanceError

FORMAT = "gridcharge/instance-v1"
DEFAULT_TIMEZONE = "Asia/Shanghai"


def _parse_aware_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an ISO-8601 date-time with UTC offset, e.g. 2026-07-01T18:00:00+08:00") from None
    else:
        raise ValueError("expected an ISO-8601 date-time string with UTC offset")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("has no UTC offset; write it like 2026-07-01T18:00:00+08:00")
    return parsed


AwareDatetime = Annotated[datetime, BeforeValidator(_parse_aware_datetime)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
# A number for every period, or one number for all of them. Length is checked against the horizon later.
NonNegativeSeries = NonNegative | list[NonNegative]
NonEmptyId = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class Horizon(_Strict):
    """The time grid.

    start : ISO-8601 date-time with UTC offset — start of period 0
    step_minutes : int — period length [minutes]
    periods : int — number of periods
    timezone : str — IANA zone for the output index (default Asia/Shanghai); does not move any instant
    """

    start: AwareDatetime
    step_minutes: Annotated[int, Field(gt=0)]
    periods: Annotated[int, Field(gt=0)]
    timezone: str = DEFAULT_TIMEZONE

    @property
    def end(self) -> datetime:
        """End of the last period."""
        return self.start + timedelta(minutes=self.step_minutes * self.periods)

    @property
    def step_hours(self) -> float:
        """Period length [h]."""
        return self.step_minutes / 60.0


class Node(_Strict):
    """A node of the capacity tree (transformer → feeder → meter / group).

    import_limit_kw : net load at this node must stay <= this [kW]; null = no limit
    export_limit_kw : net load must stay >= -this (reverse flow) [kW]; null = no limit
    phase_import_limit_kw : load on each of phases A, B, C must stay <= this [kW]; null = no limit
    base_load_kw : uncontrolled load at this node [kW], one number or one per period
    generation_kw : PV at this node [kW], one number or one per period
    """

    id: NonEmptyId
    parent: str | None = None
    kind: Literal["transformer", "feeder", "meter", "group"]
    import_limit_kw: NonNegative | None = None
    export_limit_kw: NonNegative | None = None
    phase_import_limit_kw: NonNegative | None = None
    base_load_kw: NonNegativeSeries = 0.0
    generation_kw: NonNegativeSeries = 0.0


class Charger(_Strict):
    """A charger hanging from ``node``.

    max_charge_kw : [kW], > 0
    max_discharge_kw : [kW], 0 = one-way charger
    phases : "A" | "B" | "C" (single phase) or "ABC" (a third of its power on each phase); default "ABC"
    efficiency : battery gains efficiency * p when charging, loses p / efficiency when discharging, in (0, 1]
    """

    id: NonEmptyId
    node: str
    max_charge_kw: Positive
    max_discharge_kw: NonNegative = 0.0
    phases: Literal["A", "B", "C", "ABC"] = "ABC"
    efficiency: Annotated[float, Field(gt=0, le=1)] = 1.0


class Session(_Strict):
    """A car plugged into ``charger`` from ``arrival`` to ``departure``.

    energy_kwh : energy to add to the battery by departure [kWh]
    max_charge_kw, max_discharge_kw : the car's own limits [kW]; discharge default 0 = no V2G
    battery_kwh, initial_kwh, min_kwh : battery size, state at arrival (or at horizon start), floor while plugged in
        [kWh]; initial_kwh defaults to 0 and min_kwh to initial_kwh; both need battery_kwh
    """

    id: NonEmptyId
    charger: str
    arrival: AwareDatetime
    departure: AwareDatetime
    energy_kwh: NonNegative
    max_charge_kw: Positive | None = None
    max_discharge_kw: NonNegative = 0.0
    battery_kwh: Positive | None = None
    initial_kwh: NonNegative | None = None
    min_kwh: NonNegative | None = None


class Tariff(_Strict):
    """Prices per period [CNY/kWh], one number or one per period; both >= 0."""

    import_cny_per_kwh: NonNegativeSeries
    export_cny_per_kwh: NonNegativeSeries = 0.0


class Objective(_Strict):
    """Weights of the objective.

    unmet_penalty_cny_per_kwh : cost of each kWh not delivered by departure [CNY/kWh]
    degradation_cny_per_kwh : cost of each kWh discharged (battery wear) [CNY/kWh]
    peak_cny_per_kw : cost on the root's highest net load over the horizon [CNY/kW]
    overload_penalty_cny_per_kwh : cost of each kWh over a node limit, used only with ``allow_overload``
        (and to locate infeasibility) [CNY/kWh]; default 1000, above the unmet penalty, so that overload is the last
        resort
    """

    unmet_penalty_cny_per_kwh: NonNegative = 100.0
    degradation_cny_per_kwh: NonNegative = 0.0
    peak_cny_per_kw: NonNegative = 0.0
    overload_penalty_cny_per_kwh: NonNegative = 1000.0


class Instance(_Strict):
    """A validated instance-v1. Build it with :func:`load_instance`, which also runs the cross-field checks."""

    format: Literal["gridcharge/instance-v1"]
    name: str
    horizon: Horizon
    nodes: Annotated[list[Node], Field(min_length=1)]
    chargers: list[Charger] = []
    sessions: list[Session] = []
    tariff: Tariff
    objective: Objective = Objective()

    @property
    def root(self) -> Node:
        """The one node without a parent."""
        return next(n for n in self.nodes if n.parent is None)

    def to_dict(self) -> dict:
        """A JSON-ready mapping that :func:`load_instance` reads back to an equal instance."""
        return self.model_dump(mode="json")


# ----------------------------------------------------------------------------------------------------------------
# loading


def load_instance(source: str | Path | Mapping | Instance) -> Instance:
    """Read and validate an instance.

    Parameters
    ----------
    source : str, pathlib.Path, Mapping or Instance
        A ``.json`` or ``.toml`` file, or an already parsed mapping (the same keys).

    Returns
    -------
    Instance

    Raises
    ------
    InstanceError
        With every problem found: field path, value and what was expected.
    """
    if isinstance(source, Instance):
        return source
    label = None
    if isinstance(source, (str, Path)):
        label = str(source)
        data = _read_file(Path(source))
    elif isinstance(source, Mapping):
        data = source
    else:
        raise InstanceError(FieldProblem("", type(source).__name__, "a path to a .json/.toml file or a mapping"))
    try:
        instance = Instance.model_validate(dict(data))
    except ValidationError as exc:
        raise InstanceError(_problems_from_pydantic(exc), label) from None
    problems = _cross_checks(instance)
    if problems:
        raise InstanceError(problems, label)
    return instance


def _read_file(path: Path) -> Mapping:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InstanceError(FieldProblem("", str(path), "an existing instance file"), None) from None
    except OSError as exc:
        raise InstanceError(FieldProblem("", str(path), f"a readable file ({exc.strerror})"), None) from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InstanceError(FieldProblem("", str(path), "UTF-8 text"), None) from None
    except json.JSONDecodeError as exc:
        raise InstanceError(
            FieldProblem("", f"{path}", f"valid JSON; {exc.msg} at line {exc.lineno} column {exc.colno}"), None
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InstanceError(FieldProblem("", f"{path}", f"valid TOML; {exc}"), None) from None
    if not isinstance(data, dict):
        raise InstanceError(FieldProblem("", type(data).__name__, "a JSON object at the top level"), str(path))
    return data


_TYPE_TAGS = {"float", "int", "str", "bool", "none", "datetime", "list[float]", "list[constrained-float]"}


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or part.startswith(("function-", "constrained")))


def _format_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if _is_type_tag(part):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _problems_from_pydantic(exc: ValidationError) -> list[FieldProblem]:
    # A union (number | list of numbers) reports one error per branch; keep the branch that matches the input's shape.
    by_path: dict[str, list[dict]] = {}
    for error in exc.errors(include_url=False):
        by_path.setdefault(_format_path(error["loc"]), []).append(error)
    problems = []
    for path, errors in by_path.items():
        chosen = max(errors, key=lambda e: len(e["loc"]))
        message = chosen["msg"]
        if chosen["type"] == "extra_forbidden":
            message = "unknown key (instance-v1 allows no extra keys)"
        elif chosen["type"] == "missing":
            message = "missing required key"
        elif chosen["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(FieldProblem(path, chosen.get("input"), message))
    return problems


def _series_problems(path: str, value: float | list[float], periods: int) -> list[FieldProblem]:
    if isinstance(value, list) and len(value) != periods:
        return [FieldProblem(path, f"a list of {len(value)} numbers", f"one number, or exactly {periods} (one per period)")]
    return []


def _cross_checks(inst: Instance) -> list[FieldProblem]:
    """Checks that need more than one field: references, the tree, the horizon, overlaps, batteries."""
    problems: list[FieldProblem] = []
    horizon = inst.horizon
    periods = horizon.periods
    try:
        ZoneInfo(horizon.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(FieldProblem("horizon.timezone", horizon.timezone, "an IANA time zone such as Asia/Shanghai"))

    problems += _unique_ids("nodes", [n.id for n in inst.nodes])
    problems += _unique_ids("chargers", [c.id for c in inst.chargers])
    problems += _unique_ids("sessions", [s.id for s in inst.sessions])

    # the tree: exactly one root, known parents, no cycle
    node_ids = {n.id for n in inst.nodes}
    roots = [i for i, n in enumerate(inst.nodes) if n.parent is None]
    if len(roots) != 1:
        names = ", ".join(f"nodes[{i}] {inst.nodes[i].id!r}" for i in roots) or "none"
        problems.append(FieldProblem("nodes", f"roots: {names}", "exactly one node with parent null (the root)"))
    parent_of = {}
    for i, node in enumerate(inst.nodes):
        if node.parent is not None and node.parent not in node_ids:
            problems.append(FieldProblem(f"nodes[{i}].parent", node.parent, "the id of another node"))
        elif node.parent == node.id:
            problems.append(FieldProblem(f"nodes[{i}].parent", node.parent, "another node's id (a node cannot be its own parent)"))
        else:
            parent_of[node.id] = node.parent
        problems += _series_problems(f"nodes[{i}].base_load_kw", node.base_load_kw, periods)
        problems += _series_problems(f"nodes[{i}].generation_kw", node.generation_kw, periods)
    problems += _cycle_problems(inst, parent_of)

    problems += _series_problems("tariff.import_cny_per_kwh", inst.tariff.import_cny_per_kwh, periods)
    problems += _series_problems("tariff.export_cny_per_kwh", inst.tariff.export_cny_per_kwh, periods)

    charger_ids = {c.id for c in inst.chargers}
    for i, charger in enumerate(inst.chargers):
        if charger.node not in node_ids:
            problems.append(FieldProblem(f"chargers[{i}].node", charger.node, "the id of a node"))

    start, end = horizon.start, horizon.end
    by_charger: dict[str, list[tuple[int, Session]]] = {}
    for i, session in enumerate(inst.sessions):
        where = f"sessions[{i}]"
        if session.charger not in charger_ids:
            problems.append(FieldProblem(f"{where}.charger", session.charger, "the id of a charger"))
        if session.departure <= session.arrival:
            problems.append(
                FieldProblem(f"{where}.departure", session.departure.isoformat(),
                             f"must be after arrival {session.arrival.isoformat()}")
            )
        elif session.departure > end:
            problems.append(
                FieldProblem(f"{where}.departure", session.departure.isoformat(),
                             f"must not be after the horizon end {end.isoformat()}")
            )
        elif session.departure <= start:
            problems.append(
                FieldProblem(f"{where}.departure", session.departure.isoformat(),
                             f"must be after the horizon start {start.isoformat()}")
            )
        else:
            by_charger.setdefault(session.charger, []).append((i, session))
        problems += _battery_problems(where, session)

    for sessions in by_charger.values():
        ordered = sorted(sessions, key=lambda item: item[1].arrival)
        for (i_prev, prev), (i_next, nxt) in zip(ordered, ordered[1:]):
            if nxt.arrival < prev.departure:
                problems.append(
                    FieldProblem(
                        f"sessions[{i_next}].arrival", nxt.arrival.isoformat(),
                        f"overlaps sessions[{i_prev}] {prev.id!r} on charger {prev.charger!r} "
                        f"(until {prev.departure.isoformat()}); sessions on one charger must not overlap",
                    )
                )
    return problems


def _unique_ids(field: str, ids: list[str]) -> list[FieldProblem]:
    seen: dict[str, int] = {}
    problems = []
    for i, ident in enumerate(ids):
        if ident in seen:
            problems.append(FieldProblem(f"{field}[{i}].id", ident, f"a unique id (also used by {field}[{seen[ident]}])"))
        else:
            seen[ident] = i
    return problems


def _cycle_problems(inst: Instance, parent_of: dict[str, str | None]) -> list[FieldProblem]:
    problems = []
    reported: set[str] = set()
    for i, node in enumerate(inst.nodes):
        seen = []
        current = node.id
        while current is not None and current in parent_of and current not in seen:
            seen.append(current)
            current = parent_of[current]
        if current is not None and current in seen:
            cycle = seen[seen.index(current):]
            if not reported.intersection(cycle):
                reported.update(cycle)
                problems.append(
                    FieldProblem(f"nodes[{i}].parent", node.parent,
                                 "a tree; these nodes form a cycle: " + " -> ".join(cycle + [current]))
                )
    return problems


def _battery_problems(where: str, s: Session) -> list[FieldProblem]:
    if s.battery_kwh is None:
        return [
            FieldProblem(f"{where}.{key}", getattr(s, key), "only meaningful with battery_kwh; give battery_kwh too")
            for key in ("initial_kwh", "min_kwh")
            if getattr(s, key) is not None
        ]
    initial = s.initial_kwh if s.initial_kwh is not None else 0.0
    floor = s.min_kwh if s.min_kwh is not None else initial
    problems = []
    if not floor <= initial <= s.battery_kwh:
        problems.append(
            FieldProblem(f"{where}.initial_kwh", initial,
                         f"min_kwh <= initial_kwh <= battery_kwh (min_kwh {floor}, battery_kwh {s.battery_kwh})")
        )
    elif initial + s.energy_kwh > s.battery_kwh * (1 + 1e-12):
        problems.append(
            FieldProblem(f"{where}.energy_kwh", s.energy_kwh,
                         f"initial_kwh + energy_kwh <= battery_kwh ({initial} + {s.energy_kwh} > {s.battery_kwh})")
        )
    return problems
