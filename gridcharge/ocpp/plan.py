"""A published plan → each charger's OCPP profiles, in one place for every backend.

The in-memory backend (:mod:`gridcharge.ocpp.memory`) and the schedule service (:mod:`gridcharge.service.runtime`,
:mod:`gridcharge.service.ocpp_backend`) serve chargers from the same records and the same rendering:

- :func:`planned_sessions` — a controller's publication → :class:`PublishedPlan` (picklable: what a solver process
  sends back), one :class:`PlannedSession` per announced car (forecast phantoms dropped);
- :class:`Plan` — the one immutable snapshot a backend serves (signed power per charger and period [kW], V2G flag,
  a signature per charger); :meth:`Plan.changed_since` says which chargers a new publication concerns;
- :class:`PeriodGrid` — clock ↔ the site's periods;
- :func:`failsafe_defaults` — the fail-safe ``TxDefaultProfile`` limits over the day (lower within a
  demand-response cap);
- :class:`SiteProfiles` — per charger and OCPP version the SetChargingProfile payloads (wire dicts) of a plan at a
  period, cached while the period, the charger's signature and the defaults stay the same.

What the payloads are (station maximum, fail-safe default, TxProfile with ``validTo``) is documented on
:meth:`SiteProfiles.render`.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from .profiles import build_set_charging_profile, failsafe_limits_kw, failsafe_profile, number_of_phases


@dataclass(frozen=True)
class ChargerSettings:
    """How a charger wants its profiles: ``rate_unit`` ``"W"`` or ``"A"``; ``evse_id``: the EVSE / connector id of its
    TxProfile. Its voltage, phases, minimum current and step are the instance's (``Charger``), never set twice."""

    rate_unit: str = "W"
    evse_id: int = 1

    @classmethod
    def of(cls, stored: Mapping) -> ChargerSettings:
        """Settings from a stored mapping; a ``voltage_v`` stored before the instance became the one place of a
        charger's voltage is dropped (the instance's holds)."""
        return cls(**{k: v for k, v in stored.items() if k != "voltage_v"})


@dataclass(frozen=True)
class PlannedSession:
    """One row of a published plan: the car's session, its charger, and whether it may discharge (V2G)."""

    session_id: str
    charger_id: str
    bidirectional: bool


@dataclass(frozen=True)
class PublishedPlan:
    """A controller's publication in picklable form (what a solver process replies with).

    start_period : int — absolute period of column 0
    sessions : tuple of PlannedSession — the rows of ``power_kw``
    power_kw : numpy.ndarray (S, P) — signed power [kW]
    source, status : str — the publication's
    delivered_kwh : dict session id → energy delivered since arrival [kWh] (the controller's account)
    """

    start_period: int
    sessions: tuple
    power_kw: np.ndarray
    source: str
    status: str
    delivered_kwh: dict = field(default_factory=dict)


def planned_sessions(controller, publication) -> PublishedPlan:
    """A :class:`PublishedPlan` of ``publication`` (of ``controller``): its announced cars' rows, each with its
    charger and V2G flag (``min(charger, session) max_discharge_kw > 0``)."""
    state = controller.state
    cars = {**state.finished, **state.cars}
    chargers = {c.id: c for c in controller.site.chargers}
    sessions, rows = [], []
    for i, sid in enumerate(publication.session_ids):
        car = cars.get(sid)
        if car is None:  # a forecast phantom
            continue
        session = car.session
        v2g = min(chargers[session.charger].max_discharge_kw, session.max_discharge_kw) > 0
        sessions.append(PlannedSession(sid, session.charger, bool(v2g)))
        rows.append(i)
    power = np.asarray(publication.power_kw, dtype=float)
    return PublishedPlan(publication.start_period, tuple(sessions),
                         power[rows] if len(rows) != power.shape[0] else power.copy(), publication.source,
                         publication.status, {sid: car.delivered_kwh for sid, car in state.cars.items()})


@dataclass(frozen=True)
class Plan:
    """A publication as chargers are served from it (immutable; a backend swaps it in whole).

    start_period : int — absolute period of column 0 of the rows
    rows : dict charger id → numpy.ndarray — signed power per period [kW] from ``start_period``
    bidirectional : dict charger id → bool — a V2G session is planned on the charger
    signature : dict charger id → str — changes iff the charger's row (or its start, or V2G flag) changes
    source, status : str — the controller publication's
    after_seq : int — the last stored event the plan includes (the service; 0 elsewhere)
    published_at : str — ISO-8601 UTC time it was made
    """

    start_period: int = 0
    rows: dict = field(default_factory=dict)
    bidirectional: dict = field(default_factory=dict)
    signature: dict = field(default_factory=dict)
    source: str = "none"
    status: str = "not solved yet"
    after_seq: int = 0
    published_at: str = ""

    @classmethod
    def of(cls, published: PublishedPlan, after_seq: int = 0) -> Plan:
        """The per-charger plan of a publication: the rows of a charger's sessions summed."""
        power_kw = np.asarray(published.power_kw, dtype=float)
        by_charger: dict[str, list[int]] = {}
        bidirectional: dict[str, bool] = {}
        for i, planned in enumerate(published.sessions):
            by_charger.setdefault(planned.charger_id, []).append(i)
            bidirectional[planned.charger_id] = bidirectional.get(planned.charger_id, False) or planned.bidirectional
        rows = {cid: power_kw[index].sum(axis=0) if len(index) > 1 else power_kw[index[0]]
                for cid, index in by_charger.items()}
        signature = {}
        for cid, row in rows.items():
            digest = hashlib.sha1(np.round(row, 9).tobytes())
            digest.update(f"{published.start_period}|{bidirectional[cid]}".encode())
            signature[cid] = digest.hexdigest()
        return cls(published.start_period, rows, bidirectional, signature, published.source, published.status,
                   after_seq, datetime.now(timezone.utc).isoformat(timespec="milliseconds"))

    def changed_since(self, before: Plan | None) -> set | None:
        """The chargers whose rows differ from ``before``'s; None (all of them) at a new start period, when every
        TxProfile's start and ``validTo`` move on."""
        if before is None or before.start_period != self.start_period:
            return None
        return {cid for cid in set(before.signature) | set(self.signature)
                if before.signature.get(cid) != self.signature.get(cid)}

    def setpoints_kw(self, period: int) -> dict:
        """Set-point per charger at absolute ``period`` [kW] (0 outside the plan)."""
        j = period - self.start_period
        return {cid: float(row[j]) if 0 <= j < len(row) else 0.0 for cid, row in self.rows.items()}


@dataclass(frozen=True)
class PeriodGrid:
    """A site's period grid: ``periods`` periods of ``step`` from ``start`` (tz-aware)."""

    start: datetime
    step: timedelta
    periods: int

    @classmethod
    def of(cls, instance) -> PeriodGrid:
        horizon = instance.horizon
        return cls(horizon.start, timedelta(minutes=horizon.step_minutes), horizon.periods)

    def period_of(self, moment: datetime) -> int:
        """The period at ``moment``, ``floor((moment - start) / step)`` clipped to ``0 .. periods``."""
        elapsed = (moment - self.start) / self.step
        return int(min(max(math.floor(elapsed + 1e-9), 0), self.periods))

    def time_of(self, period: int) -> datetime:
        """Start of ``period`` (``periods``: the end of the day)."""
        return self.start + self.step * period


@dataclass(frozen=True)
class FailsafeDefaults:
    """The fail-safe default limit of each charger over the day: ``limits_kw[charger][i]`` [kW] holds from period
    ``starts[i]``. ``version`` counts replacements (a cached profile of an older version is rendered again)."""

    starts: tuple
    limits_kw: dict
    version: int = 0

    def at(self, charger_id: str, period: int) -> float:
        """The charger's default limit at ``period`` [kW]."""
        return self.limits_kw[charger_id][max(bisect.bisect_right(self.starts, period) - 1, 0)]


def failsafe_defaults(instance, caps: Iterable = (), *, version: int = 0,
                      base_kw: Mapping | None = None) -> FailsafeDefaults:
    """The fail-safe defaults of a site under demand-response ``caps`` (``node``, ``import_limit_kw`` [kW],
    ``start``, ``end`` periods): within a cap's window every charger below the capped node gets the default that is
    safe against the cap too (:func:`~gridcharge.ocpp.profiles.failsafe_limits_kw` with the cap as the node's
    import limit), outside it the plain default (``base_kw``, computed when not given)."""
    base = dict(base_kw) if base_kw is not None else failsafe_limits_kw(instance).to_dict()
    caps = tuple(caps)
    T = instance.horizon.periods
    starts = sorted({0} | {c.start for c in caps if 0 < c.start < T} | {c.end for c in caps if 0 < c.end < T})
    memo: dict = {}
    segments = []
    for a, b in zip(starts, starts[1:] + [T]):
        active: dict = {}
        for cap in caps:
            if cap.start <= a and b <= cap.end:
                active[cap.node] = min(active.get(cap.node, math.inf), cap.import_limit_kw)
        key = frozenset(active.items())
        if key not in memo:
            memo[key] = failsafe_limits_kw(instance, import_limit_kw=active).to_dict() if active else base
        segments.append(memo[key])
    limits = {c.id: tuple(float(segment[c.id]) for segment in segments) for c in instance.chargers}
    return FailsafeDefaults(tuple(starts), limits, version)


@dataclass(frozen=True)
class ChargerProfiles:
    """What a charger should hold at a period: ``payloads`` (SetChargingProfile request wire dicts, in push order:
    station maximum, fail-safe TxDefaultProfile, TxProfile when a car is planned), the payload builder's
    ``warnings`` (a discharge dropped in 1.6/2.0.1), ``charge_only`` (no discharge set-point sent),
    ``failsafe_limit_kw`` (the default now) [kW] and ``schedule_source`` (the plan's source when a TxProfile is
    sent, else None)."""

    payloads: tuple
    warnings: tuple
    charge_only: bool
    failsafe_limit_kw: float
    schedule_source: str | None


class SiteProfiles:
    """The profiles of a site's chargers from a :class:`Plan` (rendered on first ask, cached).

    Parameters
    ----------
    instance : Instance — the site
    settings : mapping charger id → ChargerSettings (default ``ChargerSettings()``)
    grace_s : int — a TxProfile stays valid this long after its period ends; 2.1 ``maxOfflineDuration`` [s]
    """

    def __init__(self, instance, settings: Mapping[str, ChargerSettings] | None = None, grace_s: int = 300):
        self.instance = instance
        self.grid = PeriodGrid.of(instance)
        self.chargers = {c.id: c for c in instance.chargers}
        settings = settings or {}
        self.settings = {cid: settings.get(cid, ChargerSettings()) for cid in self.chargers}
        self.grace_s = int(grace_s)
        self.base_kw = failsafe_limits_kw(instance).to_dict()  # without demand-response caps
        self.defaults = failsafe_defaults(instance, base_kw=self.base_kw)
        self._caps: tuple = ()
        # (charger, version) → (period, signature, defaults version, ChargerProfiles); at most chargers x versions
        self._cache: dict = {}

    def follow_caps(self, caps) -> None:
        """Recompute the fail-safe defaults for these demand-response caps (nothing if they did not change)."""
        caps = tuple(caps)
        if caps == self._caps:
            return
        self.defaults = failsafe_defaults(self.instance, caps, version=self.defaults.version + 1,
                                          base_kw=self.base_kw)  # one assignment: readers see old or new
        self._caps = caps

    def profiles(self, charger_id: str, version: str, period: int, plan: Plan | None) -> ChargerProfiles:
        """:meth:`render`, cached per (charger, version) while the period, the charger's signature in ``plan`` and
        the defaults stay the same (an unchanged charger keeps the very same object across publications)."""
        defaults = self.defaults
        key = (charger_id, version)
        signature = plan.signature.get(charger_id) if plan is not None else None
        hit = self._cache.get(key)
        if hit is not None and hit[0] == period and hit[1] == signature and hit[2] == defaults.version:
            return hit[3]
        profiles = self.render(charger_id, version, period, plan, defaults)
        self._cache[key] = (period, signature, defaults.version, profiles)
        return profiles

    def render(self, charger_id: str, version: str, period: int, plan: Plan | None,
               defaults: FailsafeDefaults | None = None) -> ChargerProfiles:
        """A charger's profiles at absolute ``period``:

        1. the station maximum (``ChargePointMaxProfile`` 1.6, ``ChargingStationMaxProfile`` 2.x, EVSE 0): the
           charger's ``max_charge_kw``, from the horizon start, no end;
        2. the fail-safe ``TxDefaultProfile`` (EVSE 0): :attr:`defaults` (a period of its own for each
           demand-response cap window), from the horizon start, no end;
        3. when the plan has a row for the charger from ``period`` on: the ``TxProfile`` (EVSE of its settings) from
           the start of the current period, ``validTo`` = end of the current period + ``grace_s`` and, in 2.1,
           ``maxOfflineDuration`` = ``grace_s`` and ``CentralSetpoint`` periods for a V2G session.
        """
        defaults = defaults or self.defaults
        grid = self.grid
        charger = self.chargers[charger_id]
        settings = self.settings[charger_id]
        unit = dict(rate_unit=settings.rate_unit, voltage_v=charger.voltage_v,
                    phases=number_of_phases(charger.phases), min_current_a=charger.min_current_a,
                    current_step_a=charger.current_step_a)
        step_s = int(grid.step.total_seconds())
        payloads = [
            failsafe_profile(version, charger.max_charge_kw, grid.start, purpose="ChargingStationMaxProfile", **unit),
            failsafe_profile(version, list(defaults.limits_kw[charger_id]), grid.start, purpose="TxDefaultProfile",
                             period_start_s=[p * step_s for p in defaults.starts], **unit),
        ]
        warnings: list[str] = []
        charge_only = version != "2.1"
        row = None if plan is None else plan.rows.get(charger_id)
        if row is not None:
            first = max(period, plan.start_period) - plan.start_period
            row = row[first:]
        if row is not None and len(row):
            start = grid.time_of(plan.start_period + first)
            bidirectional = version == "2.1" and plan.bidirectional.get(charger_id, False)
            options = dict(bidirectional=bidirectional)
            if version == "2.1":
                options["max_offline_duration_s"] = self.grace_s
            tx = build_set_charging_profile(
                version, row, start, period_minutes=step_s / 60, purpose="TxProfile", evse_id=settings.evse_id,
                valid_to=start + grid.step + timedelta(seconds=self.grace_s), **unit, **options)
            payloads.append(tx)
            warnings += tx.warnings
            charge_only = not bidirectional
        return ChargerProfiles(tuple(p.payload for p in payloads), tuple(warnings), charge_only,
                               float(defaults.at(charger_id, period)),
                               plan.source if len(payloads) > 2 else None)


__all__ = ["ChargerProfiles", "ChargerSettings", "FailsafeDefaults", "PeriodGrid", "Plan", "PlannedSession",
           "PublishedPlan", "SiteProfiles", "failsafe_defaults", "planned_sessions"]
