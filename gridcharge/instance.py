"""Instance format v1 (``gridcharge/instance-v1``): schema, JSON/TOML loading, field-named validation errors.

An instance is a file researchers can share and the CLI can solve. Its keys are a contract; see the README's
"Instance format" section for the semantics, repeated briefly in the docstrings below.

Every check names the field path, the value and what was expected, e.g.
``sessions[3].departure: 2026-07-02T08:00:00+08:00 — must not be after the horizon end 2026-07-02T00:00:00+08:00``.
Nothing is clamped or ignored silently: an unknown key is an error, too.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from .errors import FieldProblem, InstanceError
from .tables import Table, read_table

FORMAT = "gridcharge/instance-v1"
#: The format of capacity-scenario files (gridcharge.scenarios.spec), recognised to say which command reads them.
SCENARIO_FORMAT = "gridcharge/scenario-v1"
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

# Physical bounds of every number of instance-v1 (README, "Instance format v1"). Each is far beyond any real site,
# so it refuses only what no site has: a typo, a unit mistake (W for kW), an overflow (1e308, 1e9 periods).
#: Power at a node: limits, base load, generation [kW]. 1 GW: above any substation a charging site hangs from.
MAX_NODE_KW = 1_000_000.0
#: Power of one charger or car [kW]. 10 MW: above the megawatt charging system (MCS, 3.75 MW).
MAX_CHARGER_KW = 10_000.0
#: Smallest power of a charger [kW]: 1 W, below any charger's metering resolution. (A car's own limit and battery,
#: which the car reports, only need to be > 0.)
MIN_POSITIVE = 0.001
#: Energy of one car [kWh]. 100 MWh: above the largest vehicle batteries (electric ferries, ~10 MWh).
MAX_ENERGY_KWH = 100_000.0
#: Smallest charger efficiency [-]: below 10 % no charger is sold (real ones are 0.85-0.98).
MIN_EFFICIENCY = 0.1
#: A price per kWh, in the tariff's currency [currency/kWh]. 1e6: above every market's price cap in any currency
#: (ERCOT's 5 USD/kWh is about 80,000 IDR/kWh).
MAX_PRICE_PER_KWH = 1_000_000.0
#: A penalty per kWh or per kW (unmet, overload, peak) [currency/kWh or /kW]: 1e9 keeps every objective finite.
MAX_PENALTY = 1_000_000_000.0
#: Period length [minutes]: at most a day.
MAX_STEP_MINUTES = 1440
#: Number of periods [-]: one leap year of 1-minute periods (the horizon itself is at most 366 days, checked too).
MAX_PERIODS = 366 * 1440
#: Horizon length [days].
MAX_HORIZON_DAYS = 366
#: Current of one charger phase [A]: 10 kA, above the megawatt charging system (MCS, 3,000 A).
MAX_CURRENT_A = 10_000.0
#: Smallest current step [A]: 1 mA, below any charger's resolution (OCPP carries 0.1 A).
MIN_CURRENT_STEP_A = 0.001
#: Phase-to-neutral voltage [V] of a charger: the range the service accepts for ``rate_unit`` A (50 .. 1000 V).
MIN_VOLTAGE_V, MAX_VOLTAGE_V = 50.0, 1000.0
#: Phase-to-neutral voltage when none is given [V]: China's 220/380 V grid.
DEFAULT_VOLTAGE_V = 220.0


def _bounded(low: float, high: float, *, low_open: bool = False) -> object:
    """A float type within ``[low, high]`` (``(low, high]`` with ``low_open``); the bounds appear in the schema."""
    return Annotated[float, Field(gt=low, le=high) if low_open else Field(ge=low, le=high)]


NodeKw = _bounded(0.0, MAX_NODE_KW)
ChargerKw = _bounded(0.0, MAX_CHARGER_KW)
PositiveChargerKw = _bounded(MIN_POSITIVE, MAX_CHARGER_KW)
# A car's own limit and battery are what the car reports (ISO 15118 over OCPP): any positive value is accepted
CarKw = _bounded(0.0, MAX_CHARGER_KW, low_open=True)
EnergyKwh = _bounded(0.0, MAX_ENERGY_KWH)
CarBatteryKwh = _bounded(0.0, MAX_ENERGY_KWH, low_open=True)
Price = _bounded(0.0, MAX_PRICE_PER_KWH)
Penalty = _bounded(0.0, MAX_PENALTY)
CurrentA = _bounded(0.0, MAX_CURRENT_A)
CurrentStepA = _bounded(MIN_CURRENT_STEP_A, MAX_CURRENT_A)
VoltageV = _bounded(MIN_VOLTAGE_V, MAX_VOLTAGE_V)
# A number for every period, or one number for all of them. Length is checked against the horizon later.
NodeKwSeries = NodeKw | list[NodeKw]
PriceSeries = Price | list[Price]
NonEmptyId = Annotated[str, Field(min_length=1)]
#: ISO 4217 currency code of a tariff: three capital letters (CNY, EUR, USD ...).
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
DEFAULT_CURRENCY = "CNY"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class Horizon(_Strict):
    """The time grid.

    start : ISO-8601 date-time with UTC offset — start of period 0
    step_minutes : int — period length [minutes], 1..1440
    periods : int — number of periods, 1..527040; the horizon (periods x step) is at most 366 days
    timezone : str — IANA zone for the output index (default Asia/Shanghai); does not move any instant
    """

    start: AwareDatetime
    step_minutes: Annotated[int, Field(gt=0, le=MAX_STEP_MINUTES)]
    periods: Annotated[int, Field(gt=0, le=MAX_PERIODS)]
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

    Every power is within [0, 1,000,000] kW (:data:`MAX_NODE_KW`).

    import_limit_kw : net load at this node must stay <= this [kW]; null = no limit
    export_limit_kw : net load must stay >= -this (reverse flow) [kW]; null = no limit
    phase_import_limit_kw : load on each of phases A, B, C must stay <= this [kW]; null = no limit
    base_load_kw : uncontrolled load at this node [kW], one number or one per period
    generation_kw : PV at this node [kW], one number or one per period
    """

    id: NonEmptyId
    parent: str | None = None
    kind: Literal["transformer", "feeder", "meter", "group"]
    import_limit_kw: NodeKw | None = None
    export_limit_kw: NodeKw | None = None
    phase_import_limit_kw: NodeKw | None = None
    base_load_kw: NodeKwSeries = 0.0
    generation_kw: NodeKwSeries = 0.0


class Charger(_Strict):
    """A charger hanging from ``node``.

    max_charge_kw : [kW], within [0.001, 10,000]
    max_discharge_kw : [kW], within [0, 10,000]; 0 = one-way charger
    phases : "A" | "B" | "C" (single phase) or "ABC" (a third of its power on each phase); default "ABC"
    efficiency : battery gains efficiency * p when charging, loses p / efficiency when discharging, in [0.1, 1]
    voltage_v : phase-to-neutral voltage [V], within [50, 1000], default 220: drawing I amps on each of its n phases
        (1 or 3) is ``n * voltage_v * I / 1000`` kW (unity power factor)
    min_current_a : smallest current [A] per phase a car follows (IEC 61851-1: 6 A), within [0, 10,000]; default 0
        = continuous. Power in a plugged-in period is 0 or at least this current's power, charge and discharge alike
    current_step_a : the current a car follows comes in whole multiples of this [A], within [0.001, 10,000];
        absent = continuous
    """

    id: NonEmptyId
    node: str
    max_charge_kw: PositiveChargerKw
    max_discharge_kw: ChargerKw = 0.0
    phases: Literal["A", "B", "C", "ABC"] = "ABC"
    efficiency: Annotated[float, Field(ge=MIN_EFFICIENCY, le=1)] = 1.0
    voltage_v: VoltageV = DEFAULT_VOLTAGE_V
    min_current_a: CurrentA = 0.0
    current_step_a: CurrentStepA | None = None

    @property
    def kw_per_a(self) -> float:
        """Power of one ampere on each of the charger's phases [kW/A] (unity power factor)."""
        return kw_per_a(self.voltage_v, 3 if self.phases == "ABC" else 1)


class Session(_Strict):
    """A car plugged into ``charger`` from ``arrival`` to ``departure``.

    energy_kwh : energy to add to the battery by departure [kWh], within [0, 100,000]
    max_charge_kw, max_discharge_kw : the car's own limits [kW], within (0, 10,000] / [0, 10,000] (any positive value
        a car reports); discharge default 0 = no V2G
    battery_kwh, initial_kwh, min_kwh : battery size, state at arrival (or at horizon start), floor while plugged in
        [kWh], within (0, 100,000] / [0, 100,000]; initial_kwh defaults to 0 and min_kwh to initial_kwh; both need
        battery_kwh
    min_current_a : the car's own smallest current [A] per phase, within [0, 10,000]; the larger of the car's and the
        charger's applies
    """

    id: NonEmptyId
    charger: str
    arrival: AwareDatetime
    departure: AwareDatetime
    energy_kwh: EnergyKwh
    max_charge_kw: CarKw | None = None
    max_discharge_kw: ChargerKw = 0.0
    battery_kwh: CarBatteryKwh | None = None
    initial_kwh: EnergyKwh | None = None
    min_kwh: EnergyKwh | None = None
    min_current_a: CurrentA = 0.0


class Tariff(_Strict):
    """Prices per period [currency/kWh], one number or one per period, each within [0, 1,000,000].

    currency : ISO 4217 code of the prices and of every cost gridcharge reports (default CNY). The keys keep their
        historical ``_cny_`` names whatever the currency: they are the format's contract.
    """

    import_cny_per_kwh: PriceSeries
    export_cny_per_kwh: PriceSeries = 0.0
    currency: Currency = DEFAULT_CURRENCY


class Objective(_Strict):
    """Weights of the objective, in the tariff's currency; degradation within [0, 1,000,000], the others within
    [0, 1e9].

    unmet_penalty_cny_per_kwh : cost of each kWh not delivered by departure [currency/kWh]
    degradation_cny_per_kwh : cost of each kWh discharged (battery wear) [currency/kWh]
    peak_cny_per_kw : cost on the root's highest net load over the horizon [currency/kW]
    overload_penalty_cny_per_kwh : cost of each kWh over a node limit, used only with ``allow_overload``
        (and to locate infeasibility) [currency/kWh]; default 1000, above the unmet penalty, so that overload is the
        last resort
    """

    unmet_penalty_cny_per_kwh: Penalty = 100.0
    degradation_cny_per_kwh: Price = 0.0
    peak_cny_per_kw: Penalty = 0.0
    overload_penalty_cny_per_kwh: Penalty = 1000.0


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

    def own_net_load_kw(self) -> np.ndarray:
        """Each node's own base load minus its own generation, per period (not its subtree's) [kW].

        Returns
        -------
        numpy.ndarray — shape (nodes, periods), nodes in file order [kW]
        """
        T = self.horizon.periods
        net = np.zeros((len(self.nodes), T))
        for attr, sign in (("base_load_kw", 1.0), ("generation_kw", -1.0)):
            values = [getattr(n, attr) for n in self.nodes]
            listed = [i for i, v in enumerate(values) if isinstance(v, list)]
            scalar = np.array([0.0 if isinstance(v, list) else v for v in values], dtype=float)
            net += sign * scalar[:, None]
            if listed:
                net[listed] += sign * np.array([values[i] for i in listed], dtype=float).reshape(len(listed), T)
        return net


# ----------------------------------------------------------------------------------------------------------------
# loading


def load_instance(source: str | Path | Mapping | Instance) -> Instance:
    """Read and validate an instance.

    Parameters
    ----------
    source : str, pathlib.Path, Mapping or Instance
        A ``.json`` or ``.toml`` file, or an already parsed mapping (the same keys). A file may give its sessions as
        a table instead: ``sessions_file``, a ``.csv`` or ``.parquet`` path relative to the file (README, "Sessions
        as a table"); problems in it are named by its row and column.

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
    table = None
    if isinstance(source, (str, Path)):
        label = str(source)
        data = _read_file(Path(source))
        if SESSIONS_FILE in data:
            data, table = _with_sessions_table(Path(source), data)
    elif isinstance(source, Mapping):
        data = source
    else:
        raise InstanceError(FieldProblem("", type(source).__name__, "a path to a .json/.toml file or a mapping"))
    try:
        instance = Instance.model_validate(dict(data))
    except ValidationError as exc:
        raise InstanceError(_in_table(field_problems(exc), table), label) from None
    problems = _cross_checks(instance)
    if problems:
        raise InstanceError(_in_table(problems, table), label)
    return instance


#: The key of an instance file that names its sessions table (README, "Sessions as a table").
SESSIONS_FILE = "sessions_file"


def _with_sessions_table(path: Path, data: Mapping) -> tuple[dict, Table]:
    """The file's data with the sessions of its ``sessions_file`` table (a path relative to the instance file)."""
    data = dict(data)
    ref = data.pop(SESSIONS_FILE)
    label = str(path)
    if not isinstance(ref, str) or not ref.strip():
        raise InstanceError(FieldProblem(SESSIONS_FILE, ref, "a .csv or .parquet file name, relative to the "
                                                             "instance file"), label)
    if data.get("sessions"):
        raise InstanceError(FieldProblem(SESSIONS_FILE, ref, "sessions in a table or in the file, not both: remove "
                                                             "the file's sessions list"), label)
    horizon = data.get("horizon")
    zone = horizon.get("timezone", DEFAULT_TIMEZONE) if isinstance(horizon, Mapping) else DEFAULT_TIMEZONE
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        zone = "UTC"  # the bad zone is reported by the cross-checks
    table = read_table(path.parent / ref, Session, zone=zone, what="invalid sessions table",
                       label=f"{path.parent / ref} (sessions_file of {label})")
    data["sessions"] = table.records
    return data, table


def _in_table(problems: list[FieldProblem], table: Table | None) -> list[FieldProblem]:
    """Problems of ``sessions[i]`` named by the table's row instead (``sessions.csv row 7.energy_kwh``)."""
    if table is None:
        return problems
    def row(match: re.Match) -> str:
        return table.rows[int(match[1])]
    return [FieldProblem(re.sub(r"^sessions\[(\d+)\]", row, p.path), p.value,
                         re.sub(r"sessions\[(\d+)\]", row, p.expected)) for p in problems]


class _DuplicateKey(ValueError):
    """A JSON object names one key twice (json would silently keep the last value)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    data = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def _read_file(path: Path) -> Mapping:
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InstanceError(FieldProblem("", label, "no such file; expected an instance file (.json or .toml)"),
                            None) from None
    except OSError as exc:
        raise InstanceError(FieldProblem("", label, f"cannot be read ({exc.strerror}); expected a readable file"),
                            None) from None
    suffix = path.suffix.lower()
    kind = "TOML" if suffix == ".toml" else "JSON"
    try:
        if suffix == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as exc:
        raise InstanceError(FieldProblem("", f"byte {exc.start}", "is not UTF-8; expected UTF-8 text"), label) from None
    except _DuplicateKey as exc:
        raise InstanceError(FieldProblem("", f"key {exc.args[0]!r}",
                                         "appears twice in one JSON object; give each key once"), label) from None
    except json.JSONDecodeError as exc:
        raise InstanceError(
            FieldProblem("", f"line {exc.lineno} column {exc.colno}", f"is not valid JSON: {exc.msg}"), label
        ) from None
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        reason = re.sub(r"\s*\(at [^)]*\)", "", str(exc))
        value = f"line {where[1]} column {where[2]}" if where else "the file"
        raise InstanceError(FieldProblem("", value, f"is not valid TOML: {reason}"), label) from None
    if isinstance(data, dict) and (data.get("format") == SCENARIO_FORMAT
                                   or ("format" not in data and {"site", "fleet"} <= data.keys())):
        raise InstanceError(FieldProblem("format", data.get("format", "(none; it has [site] and [fleet])"),
                                         f"expected {FORMAT}; this is a capacity-scenario file: run it with "
                                         "`gridcharge scenario run FILE` (`gridcharge solve` reads instance files)"), label)
    if not isinstance(data, dict):
        raise InstanceError(
            FieldProblem("", f"top level is {_describe(data)}",
                         f"must be a {kind} object with the keys format, name, horizon, nodes, chargers, sessions, "
                         f"tariff, objective"), label)
    return data


_TYPE_TAGS = {"float", "int", "str", "bool", "none", "datetime", "list[float]", "list[constrained-float]"}


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or part.startswith(("function-", "constrained")))


def _format_path(loc: tuple, key_last: bool = False) -> str:
    """``('sessions', 3, 'departure')`` → ``sessions[3].departure``, without pydantic's union branch tags.

    With ``key_last`` the last part is a key of the input (an unknown key), never a tag, whatever it looks like.
    """
    path = ""
    for i, part in enumerate(loc):
        if _is_type_tag(part) and not (key_last and i == len(loc) - 1):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _describe(value: object) -> str:
    """What a JSON/TOML value is, in words: ``a string``, ``a boolean``, ``null`` ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (datetime, date)):
        return "a date-time" if isinstance(value, datetime) else "a date"
    return f"a {type(value).__name__}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model whose keys are checked at ``loc[:-1]`` (to list the keys it allows)."""
    model: type[BaseModel] = Instance
    for part in loc[:-1]:
        if isinstance(part, int) or _is_type_tag(part):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
        candidates = (annotation, *get_args(annotation))
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not found:
            return None
        model = found[0]
    return model


def expectation_of(error: dict) -> str:
    """What was expected, in the words of instance-v1 rather than pydantic's."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        model = _model_at(error["loc"])
        allowed = f"; allowed here: {', '.join(model.model_fields)}" if model is not None else ""
        return f"unknown key (instance-v1 allows no extra keys{allowed})"
    if kind == "missing":
        return "missing required key"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, not {_describe(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, not {_describe(value)}"
    if kind == "string_type":
        return f"must be a string, not {_describe(value)}"
    if kind == "list_type":
        return f"must be a list, not {_describe(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be an object (a mapping of keys to values), not {_describe(value)}"
    if kind == "finite_number":
        return "must be a finite number, not NaN or infinity"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal"):
        side = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}[kind]
        bound = ctx[{">=": "ge", ">": "gt", "<=": "le"}[side]]
        low, high = _bounds_at(error["loc"]) or (None, None)
        if low is None or high is None:
            return f"must be {side} {_number(bound)}"
        opening = "(" if low[0] == "gt" else "["
        return f"must be {side} {_number(bound)} (its physical range is {opening}{_number(low[1])}, {_number(high[1])}])"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    if kind == "string_pattern_mismatch" and error["loc"][-1] == "currency":
        return "must be an ISO 4217 currency code: three capital letters such as CNY, EUR or USD"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind.startswith("date_"):
        return f"must be a date like 2026-01-15, not {_describe(value)}"
    if kind.startswith("datetime_"):
        return f"must be an ISO-8601 date-time with UTC offset like 2026-01-15T18:00:00+08:00, not {_describe(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, not {_describe(value)}"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    return error["msg"]


def _number(x: float | object) -> str:
    """A bound as a person writes it: ``1000000`` → ``1,000,000``; ``0.001`` → ``0.001``; a date as ``2026-01-15``."""
    if not isinstance(x, (int, float)):
        return x.isoformat() if hasattr(x, "isoformat") else str(x)
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _constraints(annotation) -> list:
    """The annotated-types constraints (Ge, Gt, Le ...) anywhere inside a (union of) annotated type(s)."""
    found = []
    for arg in get_args(annotation):
        found += getattr(arg, "metadata", []) if isinstance(arg, FieldInfo) else _constraints(arg)
    return found


def _bounds_at(loc: tuple) -> tuple[tuple[str, float] | None, tuple[str, float] | None] | None:
    """The (lower, upper) bound of the field at ``loc`` (``("ge", 0.0)``, ``("le", 1e4)``), or None if unknown."""
    at = max((i for i, part in enumerate(loc) if isinstance(part, str) and not _is_type_tag(part)), default=None)
    if at is None:
        return None
    model, name = _model_at(loc[:at + 1]), loc[at]
    if model is None or name not in model.model_fields:
        return None
    info = model.model_fields[name]
    low = high = None
    for item in [*info.metadata, *_constraints(info.annotation)]:
        for key in ("ge", "gt"):
            if getattr(item, key, None) is not None:
                low = (key, float(getattr(item, key)))
        if getattr(item, "le", None) is not None:
            high = ("le", float(item.le))
    if low is not None and low[0] == "gt" and info.annotation is int:  # whole numbers: > 0 is >= 1
        low = ("ge", low[1] + 1)
    return low, high


def _shown(value: object) -> object:
    """The offending value as the user wrote it (dates in ISO form, not as Python objects)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def field_problems(errors: ValidationError | list[dict], *, prefix: str = "",
                   unknown_key: str | None = None) -> list[FieldProblem]:
    """pydantic's errors as FieldProblems: the one translation every input uses (instances, scenarios, events, HTTP
    bodies).

    Parameters
    ----------
    errors : ValidationError, or its ``errors()`` list (FastAPI's too, with the ``body`` / ``query`` part removed
        from each ``loc``)
    prefix : str — put before every path (``"session"`` → ``session.energy_kwh``)
    unknown_key : str, optional — what an unknown key is told (default: instance-v1's words, naming the keys allowed)

    Returns
    -------
    list of FieldProblem — one per field: the path as ``sessions[3].departure`` (pydantic's union branch tags
    dropped; of a ``number | list`` union, the branch that matches the input's shape), the value as the user wrote it
    (``"(missing)"`` for a missing key) and what was expected (:func:`expectation_of`)
    """
    if isinstance(errors, ValidationError):
        errors = errors.errors(include_url=False)
    # A union ``number | list of numbers`` reports one error per branch. Keep the branch that matches the input's
    # shape: the list branch for a list, the number branch for anything else; one problem per field.
    kept = []
    for error in errors:
        loc = error["loc"]
        tags = loc[:-1] if error["type"] == "extra_forbidden" else loc  # an unknown key may look like a tag
        branch = next((part for part in tags if _is_type_tag(part)), None)
        if branch is None:
            kept.append(error)
            continue
        is_list_branch = branch.startswith("list[")
        union_input = _union_input(errors, loc[:loc.index(branch)], error)
        if is_list_branch == isinstance(union_input, list):
            kept.append(error)
    by_path: dict[str, list[dict]] = {}
    for error in kept:
        by_path.setdefault(_format_path(error["loc"], key_last=error["type"] == "extra_forbidden"), []).append(error)
    problems = []
    for path, path_errors in by_path.items():
        chosen = max(path_errors, key=lambda e: len(e["loc"]))
        value = "(missing)" if chosen["type"] == "missing" else _shown(chosen.get("input"))
        if chosen["type"] == "extra_forbidden" and unknown_key is not None:
            expected = unknown_key
        else:
            expected = expectation_of(chosen)
        if chosen["type"] in ("float_type", "float_parsing") and chosen["loc"] and _is_type_tag(chosen["loc"][-1]):
            expected = f"must be a number, or a list with one number per period, not {_describe(chosen.get('input'))}"
        if prefix:
            path = f"{prefix}{path if path.startswith('[') else '.' + path}" if path else prefix
        problems.append(FieldProblem(path, value, expected))
    return problems


def _union_input(errors: list[dict], union_loc: tuple, error: dict) -> object:
    """The value given to the union at ``union_loc``: the input of an error raised on the union member itself."""
    for other in errors:
        loc = other["loc"]
        if loc[:len(union_loc)] == union_loc and len(loc) == len(union_loc) + 1:
            return other.get("input")
    return error.get("input")


def _series_problems(path: str, value: float | list[float], periods: int) -> list[FieldProblem]:
    if isinstance(value, list) and len(value) != periods:
        return [FieldProblem(path, f"a list of {len(value)} numbers", f"one number, or exactly {periods} (one per period)")]
    return []


def _cross_checks(inst: Instance) -> list[FieldProblem]:
    """Checks that need more than one field: references, the tree, the horizon, overlaps, batteries."""
    problems: list[FieldProblem] = []
    horizon = inst.horizon
    periods = horizon.periods
    days = horizon.step_minutes * periods / 1440
    if days > MAX_HORIZON_DAYS:
        return [FieldProblem("horizon.periods", periods,
                             f"at most {MAX_HORIZON_DAYS} days of periods: {MAX_HORIZON_DAYS * 1440 // horizon.step_minutes:,} "
                             f"periods of {horizon.step_minutes} minutes (this horizon is {days:,.1f} days)")]
    try:
        horizon.end
    except OverflowError:
        return [FieldProblem("horizon.start", horizon.start.isoformat(), "a start whose horizon ends before year 10000")]
    try:
        ZoneInfo(horizon.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as 'America'
        problems.append(FieldProblem("horizon.timezone", horizon.timezone, "an IANA time zone such as Asia/Shanghai"))

    problems += _unique_ids("nodes", [n.id for n in inst.nodes])
    problems += _unique_ids("chargers", [c.id for c in inst.chargers])
    problems += _unique_ids("sessions", [s.id for s in inst.sessions])

    # the tree: exactly one root, known parents, no cycle
    node_ids = list(dict.fromkeys(n.id for n in inst.nodes))  # ordered, for messages
    node_set = set(node_ids)  # for membership: a list here made validation quadratic (59 s at 50,000 sessions)
    roots = [i for i, n in enumerate(inst.nodes) if n.parent is None]
    tree_problems: list[FieldProblem] = []
    parent_of = {}
    for i, node in enumerate(inst.nodes):
        if node.parent is not None and node.parent not in node_set:
            tree_problems.append(FieldProblem(f"nodes[{i}].parent", node.parent,
                                              "the id of another node" + ("" if roots else ", or null for the root")
                                              + f" ({_known(node_ids)})"))
        elif node.parent == node.id:
            tree_problems.append(FieldProblem(f"nodes[{i}].parent", node.parent,
                                              "another node's id (a node cannot be its own parent)"))
        else:
            parent_of[node.id] = node.parent
        problems += _series_problems(f"nodes[{i}].base_load_kw", node.base_load_kw, periods)
        problems += _series_problems(f"nodes[{i}].generation_kw", node.generation_kw, periods)
    tree_problems += _cycle_problems(inst, parent_of)
    # Without a root some parent is unknown, a node's own, or on a cycle: that problem is the one to report.
    if len(roots) > 1 or (not roots and not tree_problems):
        names = ", ".join(f"nodes[{i}] {inst.nodes[i].id!r}" for i in roots) or "none"
        problems.append(FieldProblem("nodes", f"roots: {names}", "exactly one node with parent null (the root)"))
    problems += tree_problems

    problems += _series_problems("tariff.import_cny_per_kwh", inst.tariff.import_cny_per_kwh, periods)
    problems += _series_problems("tariff.export_cny_per_kwh", inst.tariff.export_cny_per_kwh, periods)

    charger_ids = list(dict.fromkeys(c.id for c in inst.chargers))
    charger_set = set(charger_ids)
    for i, charger in enumerate(inst.chargers):
        if charger.node not in node_set:
            problems.append(FieldProblem(f"chargers[{i}].node", charger.node, f"the id of a node ({_known(node_ids)})"))
        problems += _current_problems(f"chargers[{i}]", charger, None)
    charger_at = {c.id: (i, c) for i, c in enumerate(inst.chargers)}

    start, end = horizon.start, horizon.end
    by_charger: dict[str, list[tuple[int, Session]]] = {}
    for i, session in enumerate(inst.sessions):
        where = f"sessions[{i}]"
        if session.charger not in charger_set:
            problems.append(FieldProblem(f"{where}.charger", session.charger,
                                         f"the id of a charger ({_known(charger_ids)})"))
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
        problems += battery_problems(where, session)
        if session.charger in charger_at:
            problems += _current_problems(where, charger_at[session.charger][1], session)

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


def _known(ids: list[str], shown: int = 5) -> str:
    """``known: 'T', 'M1' ...`` — the ids a reference may name, the first few of them."""
    if not ids:
        return "there are none"
    listed = ", ".join(repr(i) for i in ids[:shown])
    return f"known: {listed}" + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


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


#: Slack when a current is divided by its step [-]: 6 A / 0.1 A is 60.000000000000007 in floating point, not 61 steps.
STEP_SLACK = 1e-9


def kw_per_a(voltage_v: float, phase_count: int) -> float:
    """Power of one ampere drawn on each of ``phase_count`` phases at phase-to-neutral ``voltage_v`` [V]: ``phase_count
    * voltage_v / 1000`` [kW/A] (unity power factor). The one kW <-> A conversion (problem arrays, OCPP profiles)."""
    return phase_count * voltage_v / 1000.0


def lowest_current_a(charger: Charger, session: Session | None = None) -> float:
    """The smallest positive current [A] per phase a car on ``charger`` may draw: the larger of the charger's and the
    car's ``min_current_a``, raised to the next whole step when the charger has ``current_step_a`` (at least one step);
    0 when neither declares anything (continuous)."""
    return raised_to_step(max(charger.min_current_a, session.min_current_a if session is not None else 0.0),
                          charger.current_step_a)


def raised_to_step(min_current_a: float, step_a: float | None) -> float:
    """The smallest positive current [A] allowed by a minimum and a step (None = continuous): the minimum raised to a
    whole number of steps, at least one step."""
    if step_a is None:
        return min_current_a
    return max(1.0, float(np.ceil(min_current_a / step_a - STEP_SLACK))) * step_a


def _current_problems(where: str, charger: Charger, session: Session | None) -> list[FieldProblem]:
    """A minimum current (or first step) whose power exceeds what the charger (``session`` None) or the car may
    draw. Named on the field that makes it so: the car's own min_current_a or limits, else the charger's."""
    lowest_kw = lowest_current_a(charger, session) * charger.kw_per_a
    if lowest_kw <= 0:
        return []
    if session is None:
        cause = "current_step_a" if charger.current_step_a is not None and charger.current_step_a > charger.min_current_a \
            else "min_current_a"
        what = f"{getattr(charger, cause):g} A x {charger.kw_per_a * 1000:g} W/A = {lowest_kw:g} kW"
        problems = []
        if lowest_kw > charger.max_charge_kw * (1 + STEP_SLACK):
            problems.append(FieldProblem(f"{where}.{cause}", getattr(charger, cause),
                                         f"a current whose power is at most max_charge_kw {charger.max_charge_kw:g} "
                                         f"(this one: {what})"))
        if 0 < charger.max_discharge_kw < lowest_kw * (1 - STEP_SLACK):
            problems.append(FieldProblem(f"{where}.max_discharge_kw", charger.max_discharge_kw,
                                         f"0 (no V2G) or at least the power of the smallest current, {what}"))
        return problems
    if session.min_current_a <= charger.min_current_a and lowest_current_a(charger) == lowest_current_a(charger,
                                                                                                        session):
        car_cause = None  # the charger's own floor: reported on the charger, only the car's limits remain
    else:
        car_cause = "min_current_a"
    what = f"{lowest_kw:g} kW ({lowest_current_a(charger, session):g} A on {charger.id!r})"
    problems = []
    if car_cause and lowest_kw > charger.max_charge_kw * (1 + STEP_SLACK):
        problems.append(FieldProblem(f"{where}.min_current_a", session.min_current_a,
                                     f"a current whose power is at most the charger's max_charge_kw "
                                     f"{charger.max_charge_kw:g} (this one: {what})"))
    elif session.max_charge_kw is not None and session.max_charge_kw < min(lowest_kw, charger.max_charge_kw) * (1 - STEP_SLACK):
        problems.append(FieldProblem(f"{where}.max_charge_kw", session.max_charge_kw,
                                     f"at least the power of the smallest current the car may draw, {what}"))
    if 0 < session.max_discharge_kw < lowest_kw * (1 - STEP_SLACK) and charger.max_discharge_kw > 0:
        problems.append(FieldProblem(f"{where}.max_discharge_kw", session.max_discharge_kw,
                                     f"0 (no V2G) or at least the power of the smallest current, {what}"))
    return problems


def battery_problems(where: str, s: Session) -> list[FieldProblem]:
    """What is inconsistent in a session's battery fields (``where`` is the session's field path, e.g.
    ``sessions[3]``); also used by the online controller to check a car it is told about."""
    if s.battery_kwh is None:
        return [
            FieldProblem(f"{where}.{key}", getattr(s, key), "only meaningful with battery_kwh; give battery_kwh too")
            for key in ("initial_kwh", "min_kwh")
            if getattr(s, key) is not None
        ]
    initial = s.initial_kwh if s.initial_kwh is not None else 0.0
    defaulted = " (its default)" if s.initial_kwh is None else ""
    problems = []
    if s.min_kwh is not None and s.min_kwh > initial:
        problems.append(
            FieldProblem(f"{where}.min_kwh", s.min_kwh,
                         f"must be <= initial_kwh {initial:g}{defaulted} (min_kwh <= initial_kwh <= battery_kwh)")
        )
    elif initial > s.battery_kwh:
        problems.append(
            FieldProblem(f"{where}.initial_kwh", initial,
                         f"must be <= battery_kwh {s.battery_kwh:g} (min_kwh <= initial_kwh <= battery_kwh)")
        )
    elif initial + s.energy_kwh > s.battery_kwh * (1 + 1e-12):
        problems.append(
            FieldProblem(f"{where}.energy_kwh", s.energy_kwh,
                         f"must fit the battery: initial_kwh + energy_kwh <= battery_kwh "
                         f"({initial:g}{defaulted} + {s.energy_kwh:g} > {s.battery_kwh:g})")
        )
    return problems
