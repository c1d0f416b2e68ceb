"""Capacity-scenario files (``gridcharge/scenario-v1``, TOML): schema, defaults and field-named validation.

A scenario describes a site (building type, parking spaces, chargers, meters, feeders), its transformer (rating,
power factor, IEC 60076-7 thermal parameters, ambient temperature), the base load, the EV fleet as distributions,
the tariff, the strategies to compare, the Monte Carlo days and the hosting-capacity sweep. :func:`load_scenario`
reads and validates one; every mistake is reported as an :class:`~gridcharge.errors.InstanceError` whose problems
name the field (``transformer.rated_kva``), the value and what was expected.

Beijing charger ratios (the Beijing charging-infrastructure policy for new and existing parking): residential 100 % of spaces,
office buildings 25 %, commercial buildings and public car parks (including P+R) 20 %, other public buildings
(hospitals, schools, venues) 15 %, existing public car parks 10 % and at least 2. A ``site.chargers`` below the ratio
is allowed and reported as a compliance shortfall.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..errors import FieldProblem, InstanceError
from ..instance import FORMAT as INSTANCE_FORMAT
from ..instance import (
    DEFAULT_CURRENCY,
    DEFAULT_VOLTAGE_V,
    MAX_CHARGER_KW,
    MAX_CURRENT_A,
    MAX_ENERGY_KWH,
    MAX_NODE_KW,
    MAX_PENALTY,
    MAX_PRICE_PER_KWH,
    MIN_EFFICIENCY,
    MIN_CURRENT_STEP_A,
    MIN_POSITIVE,
    SCENARIO_FORMAT,
    Currency,
    field_problems,
    raised_to_step,
)
from ..grid.profiles import BEIJING_AMBIENT_C
from ..grid.tariffs import TARIFF_PRESETS
from ..grid.thermal import AGEING_METHODS
from ..grid.thermal import PRESETS as THERMAL_PRESETS

FORMAT = SCENARIO_FORMAT

#: Required share of parking spaces with a charger, and the minimum count, by building type (module notes).
CHARGER_RATIO = {
    "residential": (1.00, 0),
    "office": (0.25, 0),
    "commercial": (0.20, 0),
    "public": (0.20, 0),
    "p-and-r": (0.20, 0),
    "other-public": (0.15, 0),
    "existing-public": (0.10, 2),
}
BuildingType = Literal["residential", "office", "commercial", "public", "p-and-r", "other-public", "existing-public"]
#: Strategy names a scenario may list: the baselines of gridcharge.solve, the closed-loop controller, the LP optimum.
STRATEGIES = ("uncontrolled", "equal_share", "edf", "llf", "greedy_cost", "online", "optimal")
#: Strategies cheap enough for the default hosting sweep (heuristics: well under a second per day).
CHEAP_STRATEGIES = ("uncontrolled", "equal_share", "edf", "llf", "greedy_cost")
STEP_MINUTES = (5, 10, 15, 20, 30, 60)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Physical bounds of scenario-v1 numbers (README, "Capacity scenarios"); powers, energies and prices share
# instance-v1's (gridcharge.instance), because every simulated day becomes an instance.
#: Monte Carlo or hosting days [days]: ten years of days.
MAX_DAYS = 3660
#: Tasks of one study (strategy x EV count x day) [-]: a sweep this size already takes days on a cluster.
MAX_TASKS = 100_000
#: Parking spaces, chargers, EVs, households [-]: above the largest car parks (~20,000 spaces).
MAX_COUNT = 100_000
#: Feeders of a site [-].
MAX_FEEDERS = 1000
#: Any distribution parameter (hours, kWh, state of charge): finite and within +-1e6, so that no draw overflows.
MAX_PARAMETER = 1_000_000.0
#: HiGHS time limit per solve [s]: a week.
MAX_TIME_LIMIT_S = 7 * 86400.0
#: Temperature rises and gradients of the thermal model [K].
MAX_RISE_K = 200.0
#: Exponents and the k11/k21/k22 constants of IEC 60076-7 [-] (Table 4 values are 0.5-2).
MAX_THERMAL_CONSTANT = 100.0
#: Thermal time constants [min] (Table 4: oil 180 min, winding 4-10 min).
MAX_TAU_MIN = 10_000.0
#: Ambient temperature offset [degC] and its daily standard deviation [K].
MAX_AMBIENT_OFFSET_C = 60.0
#: Base load per household [kW]: far above a flat's connection (Beijing 8-10 kW).
MAX_HOUSEHOLD_KW = 100.0


class Distribution(_Strict):
    """A parametric distribution, clipped to ``[min, max]`` when given.

    ``normal`` (mean, sd), ``lognormal`` (mean, sd of the variable itself, not of its log), ``gamma`` (shape,
    scale), ``uniform`` (low, high), ``fixed`` (value).
    """

    distribution: Literal["normal", "lognormal", "gamma", "uniform", "fixed"]
    mean: float | None = Field(None, ge=-MAX_PARAMETER, le=MAX_PARAMETER)
    sd: float | None = Field(None, ge=0, le=MAX_PARAMETER)
    shape: float | None = Field(None, gt=0, le=MAX_PARAMETER)
    scale: float | None = Field(None, gt=0, le=MAX_PARAMETER)
    low: float | None = Field(None, ge=-MAX_PARAMETER, le=MAX_PARAMETER)
    high: float | None = Field(None, ge=-MAX_PARAMETER, le=MAX_PARAMETER)
    value: float | None = Field(None, ge=-MAX_PARAMETER, le=MAX_PARAMETER)
    min: float | None = Field(None, ge=-MAX_PARAMETER, le=MAX_PARAMETER)
    max: float | None = Field(None, ge=-MAX_PARAMETER, le=MAX_PARAMETER)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws (one call to the generator, whatever ``n``'s prefix is used later)."""
        d = self.distribution
        if d == "normal":
            x = rng.normal(self.mean, self.sd, n)
        elif d == "lognormal":
            sigma2 = math.log1p((self.sd / self.mean) ** 2)
            x = rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), n)
        elif d == "gamma":
            x = rng.gamma(self.shape, self.scale, n)
        elif d == "uniform":
            x = rng.uniform(self.low, self.high, n)
        else:
            x = np.full(n, float(self.value))
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        return np.clip(x, lo, hi)


_NEEDS = {"normal": ("mean", "sd"), "lognormal": ("mean", "sd"), "gamma": ("shape", "scale"),
          "uniform": ("low", "high"), "fixed": ("value",)}


class Horizon(_Strict):
    date: _dt.date = Field(_dt.date(2026, 1, 15), ge=_dt.date(1900, 1, 1), le=_dt.date(2200, 12, 31))
    start_hour: float = Field(12.0, ge=0, lt=24)
    step_minutes: int = 15
    timezone: str = "Asia/Shanghai"

    @property
    def periods(self) -> int:
        return 1440 // self.step_minutes


class Site(_Strict):
    building_type: BuildingType
    parking_spaces: int = Field(gt=0, le=MAX_COUNT)
    chargers: int | None = Field(None, ge=0, le=MAX_COUNT)
    charger_kw: float = Field(7.0, ge=MIN_POSITIVE, le=MAX_CHARGER_KW)
    meter_limit_kw: float = Field(7.0, ge=MIN_POSITIVE, le=MAX_CHARGER_KW)
    charger_phases: Literal["single", "three"] = "single"
    phase_assignment: Literal["rotate", "A", "B", "C"] = "rotate"
    feeders: int = Field(0, ge=0, le=MAX_FEEDERS)
    feeder_limit_kw: float | None = Field(None, ge=MIN_POSITIVE, le=MAX_NODE_KW)
    efficiency: float = Field(0.95, ge=MIN_EFFICIENCY, le=1)
    #: IEC 61851-1's minimum charging current [A per phase] and the step real cars follow (whole amps): every
    #: generated charger gets them, so every strategy's schedule is one a charger can follow. 0: continuous.
    min_current_a: float = Field(6.0, ge=0, le=MAX_CURRENT_A)
    current_step_a: float = Field(1.0, ge=0, le=MAX_CURRENT_A)

    @model_validator(mode="after")
    def _minimum_within_the_charger(self):
        phases = 3 if self.charger_phases == "three" else 1
        step = self.current_step_a or None
        if step is not None and step < MIN_CURRENT_STEP_A:
            raise ValueError(f"current_step_a {step:g}: 0 (continuous) or at least {MIN_CURRENT_STEP_A:g} A")
        lowest = raised_to_step(self.min_current_a, step)
        if lowest * phases * DEFAULT_VOLTAGE_V / 1000 > self.charger_kw * (1 + 1e-9):
            raise ValueError(f"min_current_a {self.min_current_a:g} A (step {step} A) draws "
                             f"{lowest * phases * DEFAULT_VOLTAGE_V / 1000:g} kW at {DEFAULT_VOLTAGE_V:g} V on "
                             f"{phases} phase(s), above charger_kw {self.charger_kw:g}: lower it or raise charger_kw")
        return self

    @property
    def required_chargers(self) -> int:
        ratio, minimum = CHARGER_RATIO[self.building_type]
        return max(math.ceil(ratio * self.parking_spaces - 1e-9), minimum)

    @property
    def charger_count(self) -> int:
        return self.required_chargers if self.chargers is None else self.chargers


class Thermal(_Strict):
    preset: str = "onan-distribution"
    ageing: str = "iec-normal"
    top_oil_rise_k: float | None = Field(None, ge=0, le=MAX_RISE_K)
    hot_spot_gradient_k: float | None = Field(None, ge=0, le=MAX_RISE_K)
    loss_ratio: float | None = Field(None, gt=0, le=MAX_THERMAL_CONSTANT)
    oil_exponent: float | None = Field(None, gt=0, le=MAX_THERMAL_CONSTANT)
    winding_exponent: float | None = Field(None, gt=0, le=MAX_THERMAL_CONSTANT)
    k11: float | None = Field(None, gt=0, le=MAX_THERMAL_CONSTANT)
    k21: float | None = Field(None, gt=0, le=MAX_THERMAL_CONSTANT)
    k22: float | None = Field(None, gt=0, le=MAX_THERMAL_CONSTANT)
    tau_oil_min: float | None = Field(None, gt=0, le=MAX_TAU_MIN)
    tau_winding_min: float | None = Field(None, gt=0, le=MAX_TAU_MIN)

    def parameters(self):
        changes = {k: v for k, v in self.model_dump().items() if k not in ("preset", "ageing") and v is not None}
        return THERMAL_PRESETS[self.preset].updated(**changes)


class Ambient(_Strict):
    """``preset`` (default ``beijing-winter``) or ``csv``; ``offset_c`` added to every value; ``daily_sd_c``: the
    standard deviation of a whole-day offset drawn per Monte Carlo day [°C]."""

    preset: str | None = None
    csv: str | None = None
    offset_c: float = Field(0.0, ge=-MAX_AMBIENT_OFFSET_C, le=MAX_AMBIENT_OFFSET_C)
    daily_sd_c: float = Field(2.0, ge=0, le=MAX_AMBIENT_OFFSET_C)


class Transformer(_Strict):
    rated_kva: float = Field(gt=0, le=MAX_NODE_KW)
    power_factor: float = Field(0.95, ge=0.1, le=1)
    control_limit_pct: float = Field(100.0, gt=0, le=200)
    phase_limit_pct: float | None = Field(None, gt=0, le=200)
    thermal: Thermal = Thermal()
    ambient: Ambient = Ambient()

    @property
    def rated_kw(self) -> float:
        """Active power at rated apparent power and the given power factor [kW]."""
        return self.rated_kva * self.power_factor

    @property
    def control_limit_kw(self) -> float:
        """Import (and export) limit given to the controllers [kW]."""
        return self.rated_kw * self.control_limit_pct / 100.0


class BaseLoad(_Strict):
    households: int | None = Field(None, ge=0, le=MAX_COUNT)
    peak_kw_per_household: float = Field(1.2, ge=0, le=MAX_HOUSEHOLD_KW)
    peak_kw: float | None = Field(None, ge=0, le=MAX_NODE_KW)
    shape: Literal["residential", "office", "commercial"] = "residential"
    csv: str | None = None
    daily_sd: float = Field(0.05, ge=0, lt=1)
    pv_peak_kw: float = Field(0.0, ge=0, le=MAX_NODE_KW)
    pv_clearness_min: float = Field(0.5, ge=0, le=1)

    def peak(self) -> float:
        """Evening (or working-day) peak of the base load [kW]."""
        if self.peak_kw is not None:
            return self.peak_kw
        return (self.households or 0) * self.peak_kw_per_household


class Fleet(_Strict):
    evs: int | None = Field(None, ge=0, le=MAX_COUNT)
    penetration: float | None = Field(None, ge=0, le=1)
    arrival_hour: Distribution
    dwell_hours: Distribution
    energy_kwh: Distribution
    battery_kwh: list[Annotated[float, Field(le=MAX_ENERGY_KWH)]] = Field(default_factory=lambda: [50.0, 60.0, 75.0],
                                                                           min_length=1)
    battery_weights: list[Annotated[float, Field(le=MAX_PARAMETER)]] | None = None
    initial_soc: Distribution = Distribution(distribution="uniform", low=0.2, high=0.5)
    v2g_share: float = Field(0.0, ge=0, le=1)
    v2g_min_soc: float = Field(0.2, ge=0, le=1)

    def count(self, site: Site) -> int:
        """EVs that come on a day: ``evs``, or ``penetration`` x parking spaces (rounded)."""
        if self.evs is not None:
            return self.evs
        return round((self.penetration if self.penetration is not None else 1.0) * site.parking_spaces)


class Tariff(_Strict):
    """``preset`` (default ``beijing-tou`` when no custom split is given) or ``period_by_hour`` (24 class indices)
    with ``prices_cny_per_kwh`` (one price per class); export price for V2G as a fixed ``export_cny_per_kwh`` or a
    ``export_fraction_of_import`` of the import price in each period (default 0: no payment for export)."""

    preset: str | None = None
    period_by_hour: list[int] | None = None
    prices_cny_per_kwh: list[Annotated[float, Field(le=MAX_PRICE_PER_KWH)]] | None = None
    export_cny_per_kwh: float | None = Field(None, ge=0, le=MAX_PRICE_PER_KWH)
    export_fraction_of_import: float | None = Field(None, ge=0, le=MAX_THERMAL_CONSTANT)
    unmet_penalty_cny_per_kwh: float = Field(100.0, ge=0, le=MAX_PENALTY)
    degradation_cny_per_kwh: float = Field(0.1, ge=0, le=MAX_PRICE_PER_KWH)
    currency: Currency = DEFAULT_CURRENCY


class Criteria(_Strict):
    """A day *violates* when any of these is exceeded (IEC 60076-7's current and temperature limits for loading
    beyond nameplate rating, distribution transformers under normal cyclic loading: hot spot 120 °C, top oil
    105 °C; 24 equivalent ageing hours = one day of normal life)."""

    max_loading_pct: float = Field(100.0, gt=0, le=1000)
    max_hot_spot_c: float = Field(120.0, ge=-60, le=400)
    max_top_oil_c: float = Field(105.0, ge=-60, le=400)
    max_ageing_h_per_day: float = Field(24.0, gt=0, le=1e9)
    max_unmet_share: float = Field(0.01, ge=0, le=1)


class Hosting(_Strict):
    enabled: bool = True
    ev_counts: list[Annotated[int, Field(le=MAX_COUNT)]] | None = None
    max_evs: int | None = Field(None, ge=1, le=MAX_COUNT)
    steps: int = Field(10, ge=1, le=200)
    strategies: list[str] | None = None
    days: int | None = Field(None, ge=1, le=MAX_DAYS)
    alpha: float = Field(0.05, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    criteria: Criteria = Criteria()


class Scenario(_Strict):
    format: Literal["gridcharge/scenario-v1"] = FORMAT
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    days: int = Field(10, ge=1, le=MAX_DAYS)
    strategies: list[str] = Field(default_factory=lambda: ["uncontrolled", "equal_share", "online", "optimal"],
                                  min_length=1)
    time_limit_s: float = Field(120.0, gt=0, le=MAX_TIME_LIMIT_S)
    horizon: Horizon = Horizon()
    site: Site
    transformer: Transformer
    base_load: BaseLoad = BaseLoad()
    fleet: Fleet
    tariff: Tariff = Tariff()
    hosting: Hosting = Hosting()
    #: profiles read from the CSV files named in the scenario (hourly or per period, from 00:00) [°C] / [kW]
    _ambient_csv_c: np.ndarray | None = PrivateAttr(default=None)
    _base_csv_kw: np.ndarray | None = PrivateAttr(default=None)

    # --- derived, for the sampler and the report -------------------------------------------------------------
    @property
    def ambient_csv_c(self) -> np.ndarray | None:
        """The ambient temperature profile read from ``transformer.ambient.csv`` [°C], or None."""
        return self._ambient_csv_c

    @property
    def base_csv_kw(self) -> np.ndarray | None:
        """The base-load profile read from ``base_load.csv`` [kW], or None."""
        return self._base_csv_kw

    @property
    def evs(self) -> int:
        return self.fleet.count(self.site)

    def hosting_counts(self) -> list[int]:
        """EV counts of the hosting sweep, ascending, without duplicates."""
        h = self.hosting
        if not h.enabled:
            return []
        if h.ev_counts is not None:
            return sorted(set(h.ev_counts))
        top = h.max_evs or (self.site.charger_count if self.site.building_type == "residential"
                            else max(2 * self.evs, 1))
        return sorted({round(top * i / h.steps) for i in range(1, h.steps + 1)})

    def hosting_strategies(self) -> list[str]:
        h = self.hosting
        if not h.enabled:
            return []
        if h.strategies is not None:
            return list(h.strategies)
        return [s for s in self.strategies if s in CHEAP_STRATEGIES]

    def hosting_days(self) -> int:
        return self.hosting.days or self.days

    def quick(self) -> Scenario:
        """A fast look: 2 days, 4 hosting points on 2 days, no closed-loop ``online`` (it re-solves every period)."""
        strategies = [s for s in self.strategies if s != "online"] or ["uncontrolled"]
        counts = self.hosting_counts()
        if counts:
            picks = sorted({counts[round(i * (len(counts) - 1) / 3)] for i in range(4)})
            hosting = self.hosting.model_copy(update={"ev_counts": picks, "days": 2,
                                                      "strategies": [s for s in self.hosting_strategies()
                                                                     if s != "online"]})
        else:
            hosting = self.hosting
        return self.model_copy(update={"days": min(self.days, 2), "strategies": strategies, "hosting": hosting})


# ----------------------------------------------------------------------------------------------------------------
# loading and validation


def _invalid(problems, source: str | None = None) -> InstanceError:
    return InstanceError(problems, source, what="invalid scenario")


def load_scenario(source: str | Path | dict) -> Scenario:
    """Read and validate a scenario (a TOML path or a mapping).

    CSV paths in the file (``transformer.ambient.csv``, ``base_load.csv``) are resolved against the file's folder
    and read here, so a bad CSV is reported with its field.

    Raises
    ------
    InstanceError — every problem found, each with its field path, value and expectation
    """
    label = None
    folder = Path.cwd()
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = str(path)
        folder = path.resolve().parent
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _invalid(FieldProblem("", label, "no such file; expected a scenario file (.toml)")) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _invalid(FieldProblem("", label, f"cannot be read ({exc}); expected a UTF-8 TOML file")) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            if _is_instance(_json_or_none(text)):
                raise _invalid(_instance_file_problem(), label) from None
            raise _invalid(FieldProblem("", str(exc), "is not valid TOML"), label) from None
        if _is_instance(data):
            raise _invalid(_instance_file_problem(), label)
    elif isinstance(source, dict):
        data = source
    else:
        raise _invalid(FieldProblem("", type(source).__name__, "a path to a .toml scenario file or a mapping"))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _invalid(field_problems(exc, unknown_key="unknown key (see the scenario format in README.md)"),
                       label) from None
    problems = _cross_checks(scenario, folder)
    if problems:
        raise _invalid(problems, label)
    # CSV profiles are read here, once, and travel with the scenario (workers of a remote cluster need no files)
    if scenario.transformer.ambient.csv is not None:
        scenario._ambient_csv_c = read_profile_csv(folder / scenario.transformer.ambient.csv, "temperature_c",
                                                   scenario.horizon.periods)
    if scenario.base_load.csv is not None:
        scenario._base_csv_kw = read_profile_csv(folder / scenario.base_load.csv, "load_kw", scenario.horizon.periods)
    return scenario


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_instance(data) -> bool:
    return isinstance(data, dict) and data.get("format") == INSTANCE_FORMAT


def _instance_file_problem() -> FieldProblem:
    return FieldProblem("format", INSTANCE_FORMAT,
                        f"expected {FORMAT}; this is a problem-instance file: solve it with `gridcharge solve FILE` "
                        "(`gridcharge scenario run` reads capacity-scenario files, .toml)")


def _cross_checks(s: Scenario, folder: Path) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    add = problems.append
    if s.horizon.step_minutes not in STEP_MINUTES:
        add(FieldProblem("horizon.step_minutes", s.horizon.step_minutes,
                         f"one of {', '.join(map(str, STEP_MINUTES))} (the day is 1440 minutes)"))
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(s.horizon.timezone)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError; '' or a path a ValueError
        add(FieldProblem("horizon.timezone", s.horizon.timezone, "an IANA time zone such as Asia/Shanghai"))
    for name, where in ((*s.strategies,), "strategies"), ((*(s.hosting.strategies or ()),), "hosting.strategies"):
        for i, strategy in enumerate(name):
            if strategy not in STRATEGIES:
                add(FieldProblem(f"{where}[{i}]", strategy, f"one of {', '.join(STRATEGIES)}"))
        if len(set(name)) != len(name):
            add(FieldProblem(where, list(name), "each strategy at most once"))
    if s.site.feeder_limit_kw is not None and s.site.feeders == 0:
        add(FieldProblem("site.feeder_limit_kw", s.site.feeder_limit_kw, "only with site.feeders >= 1"))
    if s.site.charger_count == 0:
        add(FieldProblem("site.chargers", s.site.chargers, "at least 1 charger"))
    # transformer
    thermal = s.transformer.thermal
    if thermal.preset not in THERMAL_PRESETS:
        add(FieldProblem("transformer.thermal.preset", thermal.preset, f"one of {', '.join(THERMAL_PRESETS)}"))
    else:
        try:
            thermal.parameters()
        except ValueError as exc:
            add(FieldProblem("transformer.thermal", str(exc), "valid IEC 60076-7 thermal parameters"))
    if thermal.ageing not in AGEING_METHODS:
        add(FieldProblem("transformer.thermal.ageing", thermal.ageing, f"one of {', '.join(AGEING_METHODS)}"))
    amb = s.transformer.ambient
    if amb.preset is not None and amb.csv is not None:
        add(FieldProblem("transformer.ambient", {"preset": amb.preset, "csv": amb.csv},
                         "either a preset or a csv, not both"))
    elif amb.preset is not None and amb.preset not in BEIJING_AMBIENT_C:
        add(FieldProblem("transformer.ambient.preset", amb.preset, f"one of {', '.join(BEIJING_AMBIENT_C)}"))
    elif amb.csv is not None:
        problems += _csv_problems("transformer.ambient.csv", folder / amb.csv, "temperature_c", s.horizon.periods,
                                  low=-60, high=60)
    # base load
    b = s.base_load
    if b.csv is not None:
        if b.households is not None or b.peak_kw is not None:
            add(FieldProblem("base_load.csv", b.csv, "either a csv or households/peak_kw, not both"))
        problems += _csv_problems("base_load.csv", folder / b.csv, "load_kw", s.horizon.periods, low=0, high=None)
    elif b.households is not None and b.peak_kw is not None:
        add(FieldProblem("base_load.peak_kw", b.peak_kw, "either households (x peak_kw_per_household) or peak_kw"))
    # fleet
    f = s.fleet
    if f.evs is not None and f.penetration is not None:
        add(FieldProblem("fleet.penetration", f.penetration, "either fleet.evs or fleet.penetration, not both"))
    for name in ("arrival_hour", "dwell_hours", "energy_kwh", "initial_soc"):
        problems += _distribution_problems(f"fleet.{name}", getattr(f, name))
    low, _ = _support(f.dwell_hours)
    if not low > 0:
        add(FieldProblem("fleet.dwell_hours.min", f.dwell_hours.min,
                         "a minimum dwell > 0 [h] (the distribution can draw values <= 0 otherwise)"))
    low, _ = _support(f.energy_kwh)
    if not low >= 0:
        add(FieldProblem("fleet.energy_kwh.min", f.energy_kwh.min,
                         "a minimum energy >= 0 [kWh] (the distribution can draw negative values otherwise)"))
    low, high = _support(f.initial_soc)
    if not (low >= 0 and high <= 1):
        add(FieldProblem("fleet.initial_soc", f.initial_soc.model_dump(exclude_none=True),
                         "a state of charge within [0, 1] (set min and max, or uniform low/high inside [0, 1])"))
    for i, kwh in enumerate(f.battery_kwh):
        if not kwh > 0:
            add(FieldProblem(f"fleet.battery_kwh[{i}]", kwh, "a battery capacity > 0 [kWh]"))
    if f.battery_weights is not None:
        w = np.asarray(f.battery_weights, dtype=float)
        if len(w) != len(f.battery_kwh) or np.any(w < 0) or not w.sum() > 0:
            add(FieldProblem("fleet.battery_weights", f.battery_weights,
                             f"{len(f.battery_kwh)} non-negative weights (one per battery_kwh), not all 0"))
    if s.site.building_type == "residential" and not problems:
        top = max([s.evs, *s.hosting_counts()])
        if top > s.site.charger_count:
            where = "fleet" if s.evs > s.site.charger_count else "hosting"
            add(FieldProblem(where, top, f"at most site.chargers = {s.site.charger_count} EVs: in a residential "
                                         "compound each EV charges at its own space"))
    # tariff
    t = s.tariff
    custom = t.period_by_hour is not None or t.prices_cny_per_kwh is not None
    if t.preset is not None:
        if t.preset not in TARIFF_PRESETS:
            add(FieldProblem("tariff.preset", t.preset, f"one of {', '.join(TARIFF_PRESETS)}"))
        if custom:
            add(FieldProblem("tariff.preset", t.preset, "either a preset or a custom period_by_hour + "
                                                         "prices_cny_per_kwh, not both"))
    elif custom:
        if t.prices_cny_per_kwh is None or len(t.prices_cny_per_kwh) == 0 or min(t.prices_cny_per_kwh) < 0:
            add(FieldProblem("tariff.prices_cny_per_kwh", t.prices_cny_per_kwh,
                             f"a list of prices >= 0 [{t.currency}/kWh] (one per tariff period class)"))
        elif t.period_by_hour is None or len(t.period_by_hour) != 24 or \
                not all(0 <= c < len(t.prices_cny_per_kwh) for c in t.period_by_hour):
            add(FieldProblem("tariff.period_by_hour", t.period_by_hour,
                             f"24 class indices (one per hour from 00:00), each in 0..{len(t.prices_cny_per_kwh) - 1}"))
    if t.export_cny_per_kwh is not None and t.export_fraction_of_import is not None:
        add(FieldProblem("tariff.export_fraction_of_import", t.export_fraction_of_import,
                         "either export_cny_per_kwh or export_fraction_of_import, not both"))
    # the size of the study, before any of it is planned
    tasks = len(s.strategies) * s.days + len(s.hosting_counts()) * s.hosting_days() * len(s.hosting_strategies())
    if tasks > MAX_TASKS:
        add(FieldProblem("days", s.days, f"a study of at most {MAX_TASKS:,} tasks (strategy x EV count x day); "
                                         f"this one has {tasks:,}: fewer days, hosting.days or hosting.steps"))
    # hosting
    if s.hosting.ev_counts is not None:
        for i, n in enumerate(s.hosting.ev_counts):
            if n < 0:
                add(FieldProblem(f"hosting.ev_counts[{i}]", n, "an EV count >= 0"))
        if not s.hosting.ev_counts:
            add(FieldProblem("hosting.ev_counts", [], "at least one EV count"))
    return problems


def _support(d: Distribution) -> tuple[float, float]:
    """Smallest and largest value ``d`` can draw (after clipping)."""
    low, high = {"normal": (-np.inf, np.inf), "lognormal": (0.0, np.inf), "gamma": (0.0, np.inf),
                 "uniform": (d.low, d.high), "fixed": (d.value, d.value)}[d.distribution]
    low = -np.inf if low is None else low
    high = np.inf if high is None else high
    if d.min is not None:
        low, high = max(low, d.min), max(high, d.min)
    if d.max is not None:
        low, high = min(low, d.max), min(high, d.max)
    return low, high


def _distribution_problems(path: str, d: Distribution) -> list[FieldProblem]:
    out = []
    needed = _NEEDS[d.distribution]
    given = {k for k in ("mean", "sd", "shape", "scale", "low", "high", "value") if getattr(d, k) is not None}
    for key in needed:
        if getattr(d, key) is None:
            out.append(FieldProblem(f"{path}.{key}", "(missing)", f"required for a {d.distribution} distribution"))
    for key in sorted(given - set(needed)):
        out.append(FieldProblem(f"{path}.{key}", getattr(d, key),
                                f"not a parameter of a {d.distribution} distribution (it takes {', '.join(needed)})"))
    if d.distribution == "lognormal" and d.mean is not None and not d.mean > 0:
        out.append(FieldProblem(f"{path}.mean", d.mean, "> 0 for a lognormal distribution"))
    if d.distribution == "uniform" and d.low is not None and d.high is not None and not d.high > d.low:
        out.append(FieldProblem(f"{path}.high", d.high, f"> low ({d.low})"))
    if d.min is not None and d.max is not None and not d.max >= d.min:
        out.append(FieldProblem(f"{path}.max", d.max, f">= min ({d.min})"))
    return out


def read_profile_csv(path: Path, column: str, periods: int) -> np.ndarray:
    """A daily profile from a CSV with a header row and a ``column``: 24 hourly values from 00:00, or one value per
    period of the day. Raises ValueError with a message naming the row."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or column not in rows[0]:
        raise ValueError(f"no column {column!r}")
    values = []
    for i, row in enumerate(rows):
        try:
            values.append(float(row[column]))
        except (TypeError, ValueError):
            raise ValueError(f"row {i + 2}: {row[column]!r} is not a number") from None
    if len(values) not in (24, periods):
        raise ValueError(f"{len(values)} rows")
    arr = np.asarray(values)
    if not np.all(np.isfinite(arr)):
        raise ValueError("a value is not finite")
    return arr


def _csv_problems(field: str, path: Path, column: str, periods: int, low, high) -> list[FieldProblem]:
    expected = (f"a CSV file with a header and a column {column!r}: 24 hourly values from 00:00 or {periods} values "
                "(one per period from 00:00)")
    if not path.is_file():
        return [FieldProblem(field, str(path), f"no such file; expected {expected}")]
    try:
        values = read_profile_csv(path, column, periods)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [FieldProblem(field, str(path), f"{exc}; expected {expected}")]
    if (low is not None and values.min() < low) or (high is not None and values.max() > high):
        return [FieldProblem(field, f"values {values.min():g}..{values.max():g}",
                             f"values within [{low}, {high if high is not None else 'inf'}]")]
    return []


