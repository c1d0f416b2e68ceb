"""OCPP SetChargingProfile payloads (1.6, 2.0.1, 2.1) from a charger's schedule, fail-safe default limits, and
validation against the official OCPP JSON schemas. Pure functions: no HTTP, no websocket, no clock.

Public functions (the OCPP central system of issue 8 and the HTTP service of issue 7 use exactly these)
----------------------------------------------------------------------------------------------------------
``build_set_charging_profile(version, power_kw, start, *, period_minutes=None, period_start_s=None,
duration_s=None, purpose="TxProfile", rate_unit="W", voltage_v=None, phases=3, profile_id=None, stack_level=None,
evse_id=None, transaction_id=None, valid_from=None, valid_to=None, bidirectional=None, max_offline_duration_s=None,
min_current_a=0.0, current_step_a=None) -> ProfilePayload``
    The SetChargingProfile *request* payload (``payload`` is a plain dict in OCPP JSON wire form, camelCase) for one
    charger. ``power_kw`` is one signed value per period [kW, + charge, - discharge]; periods are either equally long
    (``period_minutes`` [minutes]) or start at the offsets ``period_start_s`` [s] from ``start`` (then the last period
    lasts until ``duration_s``, default: as long as the one before it). Consecutive periods that come out equal on
    the wire are merged. ``ProfilePayload.discharge_dropped`` is true (and ``warnings`` says so) when a negative
    set-point had to be sent as 0 because the version (1.6, 2.0.1) or the profile (2.1 without ``bidirectional``)
    cannot say discharge.
``failsafe_profile(version, limit_kw, start, *, purpose="TxDefaultProfile", duration_s=None, period_start_s=None,
**options) -> ProfilePayload``
    A profile at a constant limit, or one limit per period with ``period_start_s`` [s] (the fail-safe default;
    ``purpose`` may also be ``"ChargePointMaxProfile"`` / ``"ChargingStationMaxProfile"``, each accepted for every
    version and translated to the version's own name); without ``duration_s`` its last limit holds indefinitely.
    Other keyword options as in ``build_set_charging_profile``.
``failsafe_limits_kw(instance, *, include_generation=False, import_limit_kw=None) -> pandas.Series``
    One default limit per charger [kW], index charger id: if every charger draws its default at once, no node's
    import limit and no per-phase limit is exceeded in any period of the instance's base load (``import_limit_kw``:
    node id → tighter limits to respect too, e.g. demand-response caps).
``validate_payload(version, action, payload) -> None``
    Checks a payload against the schema the ``ocpp`` package ships for that version and action (``action`` like
    ``"SetChargingProfile"`` for the request, ``"SetChargingProfileResponse"`` for the response); raises
    :class:`PayloadError` listing every problem (JSON path, message). Also checks ``date-time`` formats.
``number_of_phases(charger_phases) -> int``
    ``"ABC"`` → 3, ``"A" | "B" | "C"`` → 1 (instance-v1's ``Charger.phases``).

Constants: ``VERSIONS = ("1.6", "2.0.1", "2.1")``; ``PROFILE_IDS`` (default ``chargingProfileId`` per purpose:
station max 1, TxDefault 2, Tx 3; one profile of each kind per EVSE, so a new one *replaces* the old by id).

Wire form and rounding (design choices)
---------------------------------------
- Times are UTC, RFC 3339 with a ``Z`` and whole seconds (``2026-07-01T10:00:00Z``); ``start`` must be tz-aware.
- ``W``: limits are whole watts; ``A``: per-phase current ``P / (voltage_v * phases)`` to 0.1 A. Every limit is
  rounded *towards zero* (never more power than scheduled, never more discharge either), which also satisfies
  1.6's ``multipleOf: 0.1``. ``numberPhases`` is always sent (the charger's phase count). kW <-> A is
  :func:`gridcharge.instance.kw_per_a` (the instance's ``voltage_v`` and phase count).
- A charger with a minimum current or a current step (instance-v1 ``min_current_a`` / ``current_step_a``): every
  limit and set-point is 0 or a current a car follows (:func:`allowed_current_a`: towards 0 onto the step, and in A
  onto the wire's 0.1 A too; never inside (0, minimum)), and every schedule carries ``minChargingRate`` (1.6, 2.0.1
  and 2.1 all have it): the lowest such value in the schedule's unit.
- 1.6 / 2.0.1: ``limit = max(p, 0)``. 2.1, charge-only profile: ``operationMode = "ChargingOnly"``, ``limit``.
  2.1, bidirectional (V2G session): ``operationMode = "CentralSetpoint"``, ``setpoint = p`` (signed),
  ``limit = max(p, 0)`` and ``dischargeLimit = min(p, 0)`` (<= 0), so the set-point is bounded on both sides.
- 2.1 only: ``maxOfflineDuration`` [s] when given. Per-phase keys (``limit_L2`` ...), ``limitAtSoC`` and price
  schedules are never sent (the ``ocpp`` package's own serializer spells some of them wrongly; we build dicts).
- Connector / EVSE: ``evse_id`` defaults to 0 (the whole station) for the station-max and default profiles and to
  1 for ``TxProfile``; 1.6 calls it ``connectorId``. ``transactionId`` is an integer in 1.6 and a string in 2.x.
- 2.x allow at most 1024 periods per schedule: longer schedules are cut (``duration`` shortened, a warning says so).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from ..instance import kw_per_a, raised_to_step

VERSIONS = ("1.6", "2.0.1", "2.1")
_SCHEMA_PACKAGE = {"1.6": "ocpp.v16", "2.0.1": "ocpp.v201", "2.1": "ocpp.v21"}
_MAX_PURPOSE = {"1.6": "ChargePointMaxProfile", "2.0.1": "ChargingStationMaxProfile", "2.1": "ChargingStationMaxProfile"}
_PURPOSES = ("TxProfile", "TxDefaultProfile", "ChargePointMaxProfile", "ChargingStationMaxProfile")
#: Default chargingProfileId per purpose (a new profile with the same id replaces the old one on the charger).
PROFILE_IDS = {"ChargePointMaxProfile": 1, "ChargingStationMaxProfile": 1, "TxDefaultProfile": 2, "TxProfile": 3}
_STACK_LEVELS = {"ChargePointMaxProfile": 0, "ChargingStationMaxProfile": 0, "TxDefaultProfile": 0, "TxProfile": 1}
#: 2.x schemas: chargingSchedulePeriod maxItems
MAX_PERIODS_2X = 1024


class PayloadError(ValueError):
    """A payload does not match the official OCPP schema. ``problems``: list of (JSON path, message)."""

    def __init__(self, version: str, action: str, problems: list[tuple[str, str]]):
        self.version, self.action, self.problems = version, action, list(problems)
        lines = [f"{path or '(payload)'}: {message}" for path, message in self.problems[:20]]
        super().__init__(f"OCPP {version} {action}: {len(self.problems)} schema problem(s):\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class ProfilePayload:
    """A SetChargingProfile request payload and what had to be given up to express it.

    version : str — ``"1.6"``, ``"2.0.1"`` or ``"2.1"``
    payload : dict — the request in OCPP JSON wire form (camelCase keys), ready for ``json.dumps``
    discharge_dropped : bool — some negative set-points were sent as 0 (the version or profile cannot discharge)
    warnings : tuple of str — human-readable notes (discharge dropped, periods cut)
    """

    version: str
    payload: dict
    discharge_dropped: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    action = "SetChargingProfile"


def number_of_phases(charger_phases: str) -> int:
    """instance-v1 ``Charger.phases`` → the OCPP ``numberPhases``: ``"ABC"`` → 3, one letter → 1."""
    if charger_phases == "ABC":
        return 3
    if charger_phases in ("A", "B", "C"):
        return 1
    raise ValueError(f"charger phases {charger_phases!r}: expected 'A', 'B', 'C' or 'ABC'")


def _check_version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"ocpp version {version!r}: expected one of {', '.join(VERSIONS)}")
    return version


def _utc_text(moment: datetime) -> str:
    if not isinstance(moment, datetime):
        moment = pd.Timestamp(moment).to_pydatetime()
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"time {moment.isoformat()} has no UTC offset; expected a tz-aware date-time")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _toward_zero(values: np.ndarray, resolution: float) -> np.ndarray:
    """Round to a multiple of ``resolution`` towards zero, forgiving float noise of 1e-9 of a step."""
    steps = values / resolution
    return np.trunc(steps + np.sign(steps) * 1e-9) * resolution


#: The resolution of a current on the wire [A] (1.6: ``multipleOf 0.1``).
WIRE_RESOLUTION_A = 0.1
#: Slack of a value divided by its grid [-], for floating-point noise (6 A / 0.1 A is 60.000000000000007).
_GRID_SLACK = 1e-9


def _current_grid_a(step_a: float | None, resolution_a: float | None) -> float | None:
    """The coarsest grid [A] a current must lie on: the least common multiple of the current step and the wire's
    resolution (either may be None); None = continuous."""
    grids = [Fraction(str(g)).limit_denominator(10**6) for g in (step_a, resolution_a) if g]
    if not grids:
        return None
    common = grids[0]
    for g in grids[1:]:
        common = Fraction(math.lcm(common.numerator, g.numerator), math.gcd(common.denominator, g.denominator))
    return float(common)


def allowed_current_a(amps, *, min_current_a: float = 0.0, current_step_a: float | None = None,
                      resolution_a: float | None = None) -> np.ndarray:
    """Each current's magnitude [A] moved down (towards 0) to one a car can follow, signs kept: 0 below the lowest
    allowed current (``min_current_a`` raised to a whole step, :func:`gridcharge.instance.raised_to_step`), else the
    largest multiple of the step and of ``resolution_a`` (the wire's) at or below it. Never more than given."""
    amps = np.asarray(amps, dtype=float)
    size = np.abs(amps)
    grid = _current_grid_a(current_step_a, resolution_a)
    if grid is not None:
        size = np.floor(size / grid + _GRID_SLACK) * grid
    lowest = raised_to_step(min_current_a, current_step_a) if (min_current_a or current_step_a) else 0.0
    size = np.where(size < lowest * (1 - _GRID_SLACK), 0.0, size)
    return np.sign(amps) * size


def _wire_numbers(values_kw: np.ndarray, rate_unit: str, voltage_v: float | None, phases: int,
                  min_current_a: float = 0.0, current_step_a: float | None = None) -> list:
    """kW → the wire unit: whole W (int) or 0.1 A per phase (float with one decimal), towards zero. With a minimum
    current or a step, every value is first moved down to a current the car can follow (0 below the minimum)."""
    values_kw = np.asarray(values_kw, dtype=float)
    executable = bool(min_current_a or current_step_a)
    per_a = kw_per_a(voltage_v, phases) if voltage_v is not None else None
    if rate_unit == "W":
        if executable:
            values_kw = allowed_current_a(values_kw / per_a, min_current_a=min_current_a,
                                          current_step_a=current_step_a) * per_a
        return [int(v) for v in _toward_zero(values_kw * 1000.0, 1.0)]
    amps = allowed_current_a(values_kw / per_a, min_current_a=min_current_a, current_step_a=current_step_a,
                             resolution_a=WIRE_RESOLUTION_A)
    return [round(float(v), 1) + 0.0 for v in amps]


def _min_charging_rate(rate_unit: str, voltage_v: float, phases: int, min_current_a: float,
                       current_step_a: float | None) -> float | int | None:
    """``minChargingRate``: the smallest positive value a car on the charger follows, in the wire unit (whole W
    rounded up, or A on the wire's grid); None for a continuous charger."""
    if not (min_current_a or current_step_a):
        return None
    lowest_a = raised_to_step(min_current_a, current_step_a)
    if rate_unit == "W":
        return int(math.ceil(lowest_a * kw_per_a(voltage_v, phases) * 1000.0 - 1e-6))
    grid = _current_grid_a(current_step_a, WIRE_RESOLUTION_A)
    return round(math.ceil(lowest_a / grid - _GRID_SLACK) * grid, 1) + 0.0


def _period_offsets(n: int, period_minutes, period_start_s, duration_s) -> tuple[np.ndarray, int]:
    if (period_minutes is None) == (period_start_s is None):
        raise ValueError("give exactly one of period_minutes [minutes] and period_start_s [s]")
    if period_minutes is not None:
        if not period_minutes > 0:
            raise ValueError(f"period_minutes {period_minutes!r}: expected > 0")
        step = int(round(period_minutes * 60))
        offsets = np.arange(n, dtype=np.int64) * step
        total = n * step if duration_s is None else int(duration_s)
    else:
        offsets = np.asarray(period_start_s, dtype=float)
        if offsets.shape != (n,):
            raise ValueError(f"period_start_s has {offsets.size} values; expected one per power value ({n})")
        if offsets[0] != 0 or (np.diff(offsets) <= 0).any() or (offsets != np.round(offsets)).any():
            raise ValueError("period_start_s [s]: expected whole seconds, starting at 0, strictly increasing")
        offsets = offsets.astype(np.int64)
        last = int(offsets[-1] - offsets[-2]) if n > 1 else None
        total = int(duration_s) if duration_s is not None else (int(offsets[-1]) + last if last else None)
        if total is None:
            raise ValueError("a single period given by period_start_s needs duration_s [s]")
    if total <= offsets[-1]:
        raise ValueError(f"duration_s {total}: expected more than the last period's start {int(offsets[-1])} s")
    return offsets, total


def build_set_charging_profile(version: str, power_kw, start: datetime, *, period_minutes: float | None = None,
                               period_start_s=None, duration_s: int | None = None, purpose: str = "TxProfile",
                               rate_unit: str = "W", voltage_v: float | None = None, phases: int = 3,
                               profile_id: int | None = None, stack_level: int | None = None,
                               evse_id: int | None = None, transaction_id: str | int | None = None,
                               valid_from: datetime | None = None, valid_to: datetime | None = None,
                               bidirectional: bool | None = None, max_offline_duration_s: int | None = None,
                               min_current_a: float = 0.0, current_step_a: float | None = None) -> ProfilePayload:
    """Build a SetChargingProfile request for one charger from its schedule.

    Parameters
    ----------
    version : ``"1.6"``, ``"2.0.1"`` or ``"2.1"``
    power_kw : sequence of float — signed power per period [kW, + charge, - discharge]
    start : datetime (tz-aware) — absolute start of the first period (``startSchedule``)
    period_minutes : float — length of every period [minutes]; or
    period_start_s : sequence of int — start of each period as an offset from ``start`` [s]
    duration_s : int, optional — schedule length [s]; default: up to the end of the last period
    purpose : ``"TxProfile"``, ``"TxDefaultProfile"`` or the station-max profile (either version's name)
    rate_unit : ``"W"`` or ``"A"``; ``"A"`` needs ``voltage_v`` [V] (phase-to-neutral) and ``phases``
    voltage_v : float, optional — the charger's phase-to-neutral voltage [V] (instance-v1 ``Charger.voltage_v``)
    phases : int — 1 or 3, the charger's phase count; sent as ``numberPhases``
    profile_id, stack_level : int, optional — default :data:`PROFILE_IDS` / 1 for TxProfile, 0 otherwise
    evse_id : int, optional — ``connectorId`` (1.6) / ``evseId`` (2.x); default 1 for TxProfile, else 0
    transaction_id : optional — the transaction a TxProfile belongs to
    valid_from, valid_to : datetime, optional — ``validFrom`` / ``validTo``
    bidirectional : bool, optional — 2.1 only: send V2G periods (``CentralSetpoint``); default: when any power < 0
    max_offline_duration_s : int, optional — 2.1 only: ``maxOfflineDuration`` [s]
    min_current_a, current_step_a : float, optional — the charger's minimum current and current step [A per phase]
        (instance-v1): every limit (and set-point) is then 0 or a current a car follows, moved towards 0 onto the
        step (and, in A, the wire's 0.1 A), and the schedule carries ``minChargingRate``; both need ``voltage_v``

    Returns
    -------
    ProfilePayload

    Raises
    ------
    ValueError — an argument that cannot be expressed (names it, its value and what was expected)
    """
    _check_version(version)
    power = np.asarray(power_kw, dtype=float).reshape(-1)
    if power.size == 0:
        raise ValueError("power_kw is empty; expected one value per period")
    if not np.isfinite(power).all():
        raise ValueError("power_kw has NaN or infinite values; expected finite kW")
    if purpose not in _PURPOSES:
        raise ValueError(f"purpose {purpose!r}: expected one of {', '.join(_PURPOSES)}")
    if purpose in ("ChargePointMaxProfile", "ChargingStationMaxProfile"):
        purpose = _MAX_PURPOSE[version]
    if rate_unit not in ("W", "A"):
        raise ValueError(f"rate_unit {rate_unit!r}: expected 'W' or 'A'")
    if phases not in (1, 3):
        raise ValueError(f"phases {phases!r}: expected 1 or 3")
    if rate_unit == "A" and not (voltage_v is not None and voltage_v > 0):
        raise ValueError(f"voltage_v {voltage_v!r}: rate_unit 'A' needs the phase voltage [V] > 0")
    if not (min_current_a >= 0 and math.isfinite(min_current_a)):
        raise ValueError(f"min_current_a {min_current_a!r}: expected a finite current >= 0 [A]")
    if current_step_a is not None and not (current_step_a > 0 and math.isfinite(current_step_a)):
        raise ValueError(f"current_step_a {current_step_a!r}: expected a current > 0 [A] or None (continuous)")
    if (min_current_a or current_step_a) and not (voltage_v is not None and voltage_v > 0):
        raise ValueError(f"voltage_v {voltage_v!r}: a minimum current or a current step needs the phase voltage "
                         f"[V] > 0")
    if max_offline_duration_s is not None and version != "2.1":
        raise ValueError(f"max_offline_duration_s: OCPP {version} has no maxOfflineDuration; only 2.1")
    offsets, total = _period_offsets(power.size, period_minutes, period_start_s, duration_s)

    warnings: list[str] = []
    if bidirectional is None:
        bidirectional = version == "2.1" and bool((power < 0).any())
    if bidirectional and version != "2.1":
        raise ValueError(f"bidirectional: OCPP {version} cannot express discharge; only 2.1")
    discharge_dropped = False
    if not bidirectional and (power < 0).any():
        discharge_dropped = True
        why = f"OCPP {version}" if version != "2.1" else "a charge-only OCPP 2.1 profile"
        warnings.append(f"{why} cannot say discharge: {int((power < 0).sum())} period(s) with a negative set-point "
                        f"sent as 0 {rate_unit}")

    currents = dict(min_current_a=min_current_a, current_step_a=current_step_a)
    charge = _wire_numbers(np.clip(power, 0, None), rate_unit, voltage_v, phases, **currents)
    if bidirectional:
        setpoint = _wire_numbers(power, rate_unit, voltage_v, phases, **currents)
        rows = [{"startPeriod": int(o), "operationMode": "CentralSetpoint", "setpoint": s,
                 "limit": max(s, 0), "dischargeLimit": min(s, 0), "numberPhases": phases}
                for o, s in zip(offsets, setpoint)]
    elif version == "2.1":
        rows = [{"startPeriod": int(o), "operationMode": "ChargingOnly", "limit": c, "numberPhases": phases}
                for o, c in zip(offsets, charge)]
    else:
        rows = [{"startPeriod": int(o), "limit": c, "numberPhases": phases} for o, c in zip(offsets, charge)]
    periods = [rows[0]]
    for row in rows[1:]:  # merge consecutive periods that are equal on the wire
        if {k: v for k, v in row.items() if k != "startPeriod"} != {k: v for k, v in periods[-1].items()
                                                                      if k != "startPeriod"}:
            periods.append(row)
    if version != "1.6" and len(periods) > MAX_PERIODS_2X:
        total = periods[MAX_PERIODS_2X]["startPeriod"]
        warnings.append(f"schedule cut to {MAX_PERIODS_2X} periods ({total} s): OCPP {version} allows no more")
        periods = periods[:MAX_PERIODS_2X]

    schedule = {"startSchedule": _utc_text(start), "duration": int(total), "chargingRateUnit": rate_unit,
                "chargingSchedulePeriod": periods}
    lowest = _min_charging_rate(rate_unit, voltage_v, phases, **currents)
    if lowest is not None:
        schedule["minChargingRate"] = lowest
    profile_id = PROFILE_IDS[purpose] if profile_id is None else int(profile_id)
    stack_level = _STACK_LEVELS[purpose] if stack_level is None else int(stack_level)
    evse_id = (1 if purpose == "TxProfile" else 0) if evse_id is None else int(evse_id)
    if version == "1.6":
        profile = {"chargingProfileId": profile_id}
        if transaction_id is not None:
            profile["transactionId"] = int(transaction_id)
        profile.update(stackLevel=stack_level, chargingProfilePurpose=purpose, chargingProfileKind="Absolute")
    else:
        profile = {"id": profile_id, "stackLevel": stack_level, "chargingProfilePurpose": purpose,
                   "chargingProfileKind": "Absolute"}
        if transaction_id is not None:
            profile["transactionId"] = str(transaction_id)
        schedule = {"id": profile_id, **schedule}
    if valid_from is not None:
        profile["validFrom"] = _utc_text(valid_from)
    if valid_to is not None:
        profile["validTo"] = _utc_text(valid_to)
    if max_offline_duration_s is not None:
        profile["maxOfflineDuration"] = int(max_offline_duration_s)
    if version == "1.6":
        profile["chargingSchedule"] = schedule
        payload = {"connectorId": evse_id, "csChargingProfiles": profile}
    else:
        profile["chargingSchedule"] = [schedule]
        payload = {"evseId": evse_id, "chargingProfile": profile}
    return ProfilePayload(version=version, payload=payload, discharge_dropped=discharge_dropped,
                          warnings=tuple(warnings))


def failsafe_profile(version: str, limit_kw, start: datetime, *, purpose: str = "TxDefaultProfile",
                     duration_s: int | None = None, period_start_s=None, **options) -> ProfilePayload:
    """A profile holding ``limit_kw`` [kW] (>= 0), e.g. the fail-safe ``TxDefaultProfile``: one limit, or one per
    period with ``period_start_s`` (offsets from ``start`` [s], e.g. a lower default during a demand-response cap).

    Without ``duration_s`` the schedule has no ``duration``: its last limit holds until the profile is replaced (or
    until ``valid_to``). Other keyword options as in :func:`build_set_charging_profile`.
    """
    limits = np.atleast_1d(np.asarray(limit_kw, dtype=float))
    if not (np.isfinite(limits).all() and (limits >= 0).all()):
        raise ValueError(f"limit_kw {limit_kw!r}: expected finite limits >= 0 [kW]")
    offsets = [0] if period_start_s is None else list(period_start_s)
    if len(offsets) != limits.size:
        raise ValueError(f"limit_kw has {limits.size} values for {len(offsets)} period starts")
    result = build_set_charging_profile(version, limits, start, period_start_s=offsets,
                                        duration_s=int(offsets[-1]) + 1 if duration_s is None else duration_s,
                                        purpose=purpose, bidirectional=False, **options)
    if duration_s is None:
        schedule = result.payload.get("csChargingProfiles", result.payload.get("chargingProfile"))["chargingSchedule"]
        (schedule[0] if isinstance(schedule, list) else schedule).pop("duration")
    return result


# ----------------------------------------------------------------------------------------------------------------
# fail-safe default limits


def failsafe_limits_kw(instance, *, include_generation: bool = False, import_limit_kw=None) -> pd.Series:
    """Default limit per charger [kW] that is safe if every charger draws it at the same time.

    For every node ``n`` with an import limit, the headroom is ``import_limit_kw - max_t base[n, t]`` (``base`` =
    the node's and its subtree's base load, over the worst period of the horizon), shared equally among the
    ``c_n`` chargers in its subtree: each may draw ``headroom / c_n``. For a per-phase limit the headroom is
    ``phase_import_limit_kw - max_t base[n, t] / 3`` (base load splits equally over the phases, as in
    :mod:`gridcharge.problem` and :mod:`gridcharge.verify`), divided by ``w_nk`` = sum of the phase-``k`` shares of
    the chargers in the subtree (1 for a single-phase charger on ``k``, 1/3 for a three-phase one); a charger takes
    the smallest of these over its ancestors (itself included) and the phases it uses, then its own
    ``max_charge_kw``. Then, for every node and phase, ``sum(share * default) <= headroom``: no limit is exceeded.

    Generation (PV) is *not* subtracted unless ``include_generation``: a charger that lost contact cannot know the
    sky, so the default assumes no sun. A headroom that base load alone uses up gives 0 (never negative).

    Parameters
    ----------
    instance : Instance or anything :func:`gridcharge.load_instance` reads
    include_generation : bool — count PV against base load (default False: conservative)
    import_limit_kw : mapping node id → kW, optional — tighter import limits to respect as well (e.g. the
        demand-response caps in force): each node's limit becomes the smaller of its own and this

    Returns
    -------
    pandas.Series — index charger id, values [kW] >= 0, name ``failsafe_kw``
    """
    from ..instance import load_instance

    inst = load_instance(instance)
    T = inst.horizon.periods
    node_ids = [n.id for n in inst.nodes]
    index = {nid: i for i, nid in enumerate(node_ids)}
    N = len(node_ids)
    parent = np.array([-1 if n.parent is None else index[n.parent] for n in inst.nodes], dtype=np.int64)
    depth = np.zeros(N, dtype=np.int64)
    above = parent.copy()
    while (up := above >= 0).any():
        depth[up] += 1
        above[up] = parent[above[up]]
    levels = [np.flatnonzero(depth == d) for d in range(int(depth.max(initial=0)) + 1)]

    def per_period(value):
        return np.broadcast_to(np.asarray(value, dtype=float), (T,))

    base = np.array([per_period(n.base_load_kw) - (per_period(n.generation_kw) if include_generation else 0.0)
                     for n in inst.nodes]).reshape(N, T)
    charger_ids = [c.id for c in inst.chargers]
    C = len(charger_ids)
    charger_node = np.array([index[c.node] for c in inst.chargers], dtype=np.int64)
    share = np.zeros((C, 3))
    phase_of = np.array(["ABC".find(c.phases) if c.phases != "ABC" else 3 for c in inst.chargers], dtype=np.int64)
    single = phase_of < 3
    share[np.flatnonzero(single), phase_of[single]] = 1.0
    share[~single] = 1.0 / 3.0
    count = np.bincount(charger_node, minlength=N).astype(float)
    weight = np.zeros((N, 3))
    np.add.at(weight, charger_node, share)
    for at in reversed(levels[1:]):  # subtree sums, leaves up
        np.add.at(base, parent[at], base[at])
        np.add.at(count, parent[at], count[at])
        np.add.at(weight, parent[at], weight[at])
    worst = base.max(axis=1)

    def limits(attr):
        return np.array([np.inf if getattr(n, attr) is None else float(getattr(n, attr)) for n in inst.nodes])

    import_limit = limits("import_limit_kw")
    for node_id, value in (import_limit_kw or {}).items():
        if node_id not in index:
            raise ValueError(f"import_limit_kw names node {node_id!r}, which the instance does not have")
        import_limit[index[node_id]] = min(import_limit[index[node_id]], float(value))
    with np.errstate(divide="ignore", invalid="ignore"):
        node_cap = np.where(count > 0, (import_limit - worst) / count, np.inf)
        phase_head = (limits("phase_import_limit_kw") - worst / 3.0)[:, None]
        phase_cap = np.where(weight > 0, phase_head / weight, np.inf)
    node_cap = np.where(np.isnan(node_cap), np.inf, node_cap)
    phase_cap = np.where(np.isnan(phase_cap), np.inf, phase_cap)
    for at in levels[1:]:  # the tightest share on the way to the root, root down
        node_cap[at] = np.minimum(node_cap[at], node_cap[parent[at]])
        phase_cap[at] = np.minimum(phase_cap[at], phase_cap[parent[at]])
    own_max = np.array([c.max_charge_kw for c in inst.chargers], dtype=float)
    per_phase = np.where(share > 0, phase_cap[charger_node], np.inf).min(axis=1) if C else np.zeros(0)
    default = np.minimum.reduce([own_max, node_cap[charger_node], per_phase]) if C else np.zeros(0)
    default = np.clip(default, 0.0, None)
    return pd.Series(default, index=pd.Index(charger_ids, name="charger_id"), name="failsafe_kw")


# ----------------------------------------------------------------------------------------------------------------
# schema validation

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _schema_file(version: str, action: str) -> str:
    if action.endswith("Response") or version == "1.6":
        return f"{action}.json"
    return f"{action}Request.json"


@lru_cache(maxsize=64)
def _validator(version: str, action: str):
    import jsonschema

    path = resources.files(_SCHEMA_PACKAGE[version]).joinpath("schemas", _schema_file(version, action))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"action {action!r}: OCPP {version} has no such message (no schema "
                         f"{_schema_file(version, action)} in the ocpp package)") from None
    schema = json.loads(text, parse_float=Decimal)  # multipleOf 0.1 is exact only in decimal
    checker = jsonschema.FormatChecker()

    @checker.checks("date-time")
    def _date_time(value) -> bool:
        if not isinstance(value, str) or not _RFC3339.match(value):
            return False
        try:
            datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        except ValueError:
            return False
        return True

    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=checker)


def validate_payload(version: str, action: str, payload: dict) -> None:
    """Check ``payload`` against the official OCPP JSON schema of ``version`` and ``action``.

    Parameters
    ----------
    version : ``"1.6"``, ``"2.0.1"`` or ``"2.1"``
    action : str — e.g. ``"SetChargingProfile"`` (the request) or ``"SetChargingProfileResponse"``
    payload : dict — as it would go on the wire

    Raises
    ------
    PayloadError — every schema problem, with its JSON path
    ValueError — unknown version or action
    """
    _check_version(version)
    validator = _validator(version, action)
    wire = json.loads(json.dumps(payload), parse_float=Decimal)
    errors = sorted(validator.iter_errors(wire), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise PayloadError(version, action, [("/".join(map(str, e.absolute_path)), e.message) for e in errors])
