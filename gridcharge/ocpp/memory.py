"""An in-memory backend for the OCPP central system: one site, one :class:`gridcharge.online.Controller`, per-charger
passwords, a re-optimisation thread. No HTTP, no database: state lives as long as the process.

It is what :class:`gridcharge.ocpp.csms.CentralSystem` needs to run without the schedule service (tests, a
stand-alone OCPP server, the benchmark) and the reference for what the service's backend
(:mod:`gridcharge.service.ocpp_backend`) does with its durable engine.

Design
------
- Events (plug-in, update / meter reading, end) are applied to the controller at once, under one lock, with
  ``auto_resolve`` off: a refused event raises :class:`gridcharge.errors.InstanceError` naming the field and changes
  nothing. The controller is first advanced to the clock's period (``floor((clock - horizon.start) / step)``).
- A new car's provisional plan (``Controller(provisional=True)``: the last plan with the car filled into its
  headroom, verified) is served and announced before the optimum, and an event that waits for the lock interrupts
  a running re-solve (``Controller(interrupt=...)``), which then serves its interim plan and is continued next pass.
- A worker thread re-solves (``Controller.refresh``) when an event arrived or a period began, publishes an
  immutable snapshot (per charger: signed power per period [kW] from the publication's first period, V2G flag,
  a signature of both) and tells the subscribers which chargers' rows changed (all of them at a new period: the
  TxProfile's start and ``validTo`` move). The lock is held during the solve, so an event waits for a running
  solve until it interrupts it (the central system answers the charger before it hands the event over, so OCPP
  responses do not wait).
- Profiles (:meth:`MemoryBackend.profiles`) are rendered from the snapshot with :mod:`gridcharge.ocpp.profiles`
  exactly as the schedule service renders them: the station maximum (the charger's ``max_charge_kw``) and the
  fail-safe ``TxDefaultProfile`` (:func:`~gridcharge.ocpp.profiles.failsafe_limits_kw`), both from the horizon's
  start with no end, and, when a car is planned on the charger, a ``TxProfile`` from the start of the current period
  with ``validTo`` = end of the period + ``grace_s`` (2.1: also ``maxOfflineDuration``) and ``CentralSetpoint``
  periods for a V2G session in 2.1. Rendered payloads are cached per (charger, version, period, signature).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from .csms import ChargerInfo
from .profiles import build_set_charging_profile, failsafe_limits_kw, failsafe_profile, number_of_phases

log = logging.getLogger("gridcharge.ocpp")


def _hash(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Snapshot:
    """A publication as chargers are served from it (immutable; swapped in whole).

    start_period : int — absolute period of column 0
    rows : dict charger id → numpy.ndarray — signed power per period [kW]
    bidirectional : dict charger id → bool — a V2G session is planned on the charger
    signature : dict charger id → str
    source, status : str — the controller publication's
    """

    start_period: int
    rows: dict
    bidirectional: dict
    signature: dict
    source: str = "none"
    status: str = "not solved yet"


class MemoryBackend:
    """A site in memory behind the OCPP central system (implements :class:`gridcharge.ocpp.csms.CsmsBackend`).

    Parameters
    ----------
    site : instance-v1 (mapping, path or Instance) without sessions
    passwords : mapping charger id → password (the HTTP Basic password of OCPP security profile 1)
    solver : str — the controller's solver (``highs`` or a controlled baseline)
    time_limit_s : float, optional — HiGHS limit per re-solve [s]
    clock : callable → tz-aware datetime, optional — default: the system clock
    grace_s : int — a TxProfile stays valid this long after its period ends, 2.1 ``maxOfflineDuration`` [s]
    rate_unit : ``"W"`` or ``"A"`` — chargingRateUnit of every profile; ``voltage_v`` [V] phase voltage for A
    """

    def __init__(self, site, passwords: Mapping[str, str], *, solver: str = "highs",
                 time_limit_s: float | None = None, clock: Callable[[], datetime] | None = None, grace_s: int = 300,
                 rate_unit: str = "W", voltage_v: float = 230.0):
        from ..online import Controller, ControllerOptions

        # a new car's provisional plan (verified) is served before the optimum; an event waiting for the lock
        # interrupts a running re-solve, which then publishes its interim plan and is continued next pass
        self._waiting = 0  # events waiting for the lock
        self._count_lock = threading.Lock()
        controller = Controller(site, ControllerOptions(solver=solver, time_limit_s=time_limit_s, provisional=True),
                                on_publish=self._on_publish, interrupt=lambda: self._waiting > 0)
        controller.auto_resolve = False
        self.controller = controller
        self.instance = controller.site
        self.chargers = {c.id: c for c in self.instance.chargers}
        unknown = [cid for cid in passwords if cid not in self.chargers]
        if unknown:
            raise ValueError(f"passwords: charger {unknown[0]!r} is not a charger of the site")
        self._hashes = {cid: _hash(pw) for cid, pw in passwords.items()}
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.grace_s = int(grace_s)
        self.rate_unit, self.voltage_v = rate_unit, float(voltage_v)
        horizon = self.instance.horizon
        self.horizon_start = horizon.start
        self.step = timedelta(minutes=horizon.step_minutes)
        self.periods = horizon.periods
        self.failsafe_kw = failsafe_limits_kw(self.instance).to_dict()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._dirty = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable] = []
        self._cache: dict = {}
        self.snapshot = Snapshot(0, {}, {}, {})
        self.publications = 0
        self.solve_seconds: list[float] = []

    # lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> MemoryBackend:
        """Start the re-optimisation thread (publishes once at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="gridcharge-ocpp-memory", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    # time ------------------------------------------------------------------------------------------------------
    def period_of(self, moment: datetime) -> int:
        """The site's period at ``moment``, clipped to ``0 .. T``."""
        elapsed = (moment - self.horizon_start) / self.step
        return int(min(max(math.floor(elapsed + 1e-9), 0), self.periods))

    def time_of(self, period: int) -> datetime:
        return self.horizon_start + self.step * period

    def now(self) -> datetime:
        return self.clock()

    def _follow_clock(self) -> None:  # under the lock
        period = self.period_of(self.clock())
        if period > self.controller.now:
            self.controller.advance(period)

    # CsmsBackend: identity -------------------------------------------------------------------------------------
    def authenticate(self, charger_id: str, password: str) -> bool:
        stored = self._hashes.get(charger_id)
        presented = _hash(password)
        return hmac.compare_digest(presented, stored if stored is not None else b"\0" * 32) and stored is not None

    def charger(self, charger_id: str) -> ChargerInfo | None:
        c = self.chargers.get(charger_id)
        if c is None:
            return None
        return ChargerInfo(c.id, float(c.max_charge_kw), float(c.max_discharge_kw), float(c.efficiency),
                           self.time_of(self.periods))

    # CsmsBackend: events ---------------------------------------------------------------------------------------
    def _event(self, apply) -> None:
        with self._count_lock:
            self._waiting += 1  # a re-solve holding the lock asks this count whether to stop
        try:
            self._wake.acquire()
        finally:
            with self._count_lock:
                self._waiting -= 1
        try:
            self._follow_clock()
            old = self.controller.state
            try:
                apply(self.controller)
            except BaseException:
                self.controller.state = old
                raise
            self._dirty = True
            self._wake.notify_all()
        finally:
            self._wake.release()

    def plug_in(self, charger_id: str, session: dict) -> None:
        self._event(lambda c: c.plug_in(session))

    def update(self, charger_id: str, session_id: str, changes: dict) -> None:
        def apply(c):
            if changes.get("energy_delivered_kwh") is not None:
                c.measure(session_id, changes["energy_delivered_kwh"])
            if changes.get("departure") is not None or changes.get("energy_kwh") is not None:
                c.update(session_id, departure=changes.get("departure"), energy_kwh=changes.get("energy_kwh"))
        self._event(apply)

    def end(self, charger_id: str, session_id: str, at: datetime | None) -> None:
        self._event(lambda c: c.depart(session_id, at=c.time if at is None else at))

    def active_session(self, charger_id: str) -> str | None:
        now = self.clock()
        with self._lock:
            return self.controller.car_at(charger_id, now)

    def subscribe(self, listener) -> None:
        self._listeners.append(listener)

    # the worker ------------------------------------------------------------------------------------------------
    def _sleep_s(self) -> float:
        period = self.period_of(self.clock())
        if period >= self.periods:
            return 60.0
        return max((self.time_of(period + 1) - self.clock()).total_seconds(), 0.0) + 0.01

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while not self._stop.is_set() and not self._dirty \
                        and self.period_of(self.clock()) <= self.controller.now:
                    self._wake.wait(timeout=self._sleep_s())
                if self._stop.is_set():
                    return
                self._follow_clock()
                self._dirty = False
                started = time.perf_counter()
                publication = self.controller.refresh()
                self.solve_seconds.append(time.perf_counter() - started)
                if self.controller.optimum_pending:  # interrupted or out of budget: go on after the news
                    self._dirty = True
                snapshot = self._snapshot_of(publication)
            self._install(snapshot)

    def _on_publish(self, publication) -> None:  # inside Controller.refresh, under the lock
        if publication.source == "provisional":
            self._install(self._snapshot_of(publication))

    def _install(self, snapshot: Snapshot) -> None:
        """Serve a snapshot and tell the subscribers which chargers' rows changed (None: all, a new period)."""
        previous, self.snapshot = self.snapshot, snapshot
        self.publications += 1
        if previous.start_period != snapshot.start_period:
            changed = None
        else:
            changed = {cid for cid in set(previous.signature) | set(snapshot.signature)
                       if previous.signature.get(cid) != snapshot.signature.get(cid)}
        for listener in list(self._listeners):
            try:
                listener(changed)
            except Exception:
                log.exception("a publication listener failed")

    def _snapshot_of(self, publication) -> Snapshot:
        state = self.controller.state
        cars = {**state.finished, **state.cars}
        power = np.asarray(publication.power_kw, dtype=float)
        by_charger: dict[str, list[int]] = {}
        bidirectional: dict[str, bool] = {}
        for i, sid in enumerate(publication.session_ids):
            car = cars.get(sid)
            if car is None:  # a forecast phantom
                continue
            s = car.session
            by_charger.setdefault(s.charger, []).append(i)
            v2g = min(self.chargers[s.charger].max_discharge_kw, s.max_discharge_kw) > 0
            bidirectional[s.charger] = bidirectional.get(s.charger, False) or v2g
        rows = {cid: power[index].sum(axis=0) for cid, index in by_charger.items()}
        signature = {}
        for cid, row in rows.items():
            digest = hashlib.sha1(np.round(row, 9).tobytes())
            digest.update(f"{publication.start_period}|{bidirectional[cid]}".encode())
            signature[cid] = digest.hexdigest()
        return Snapshot(publication.start_period, rows, bidirectional, signature, publication.source,
                        publication.status)

    # CsmsBackend: profiles -------------------------------------------------------------------------------------
    def profiles(self, charger_id: str, version: str) -> list[dict]:
        snapshot = self.snapshot
        period = self.period_of(self.clock())
        key = (charger_id, version)
        signature = snapshot.signature.get(charger_id)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == period and hit[1] == signature:
            return hit[2]
        payloads = [p.payload for p in self.render(charger_id, version, period, snapshot)]
        self._cache[key] = (period, signature, payloads)
        return payloads

    def render(self, charger_id: str, version: str, period: int, snapshot: Snapshot) -> list:
        """The ProfilePayloads of a charger at ``period`` from ``snapshot`` (station maximum, TxDefaultProfile,
        TxProfile when a car is planned)."""
        charger = self.chargers[charger_id]
        unit = {"rate_unit": self.rate_unit, "voltage_v": self.voltage_v, "phases": number_of_phases(charger.phases)}
        out = [failsafe_profile(version, charger.max_charge_kw, self.horizon_start,
                                purpose="ChargingStationMaxProfile", **unit),
               failsafe_profile(version, self.failsafe_kw[charger_id], self.horizon_start, purpose="TxDefaultProfile",
                                **unit)]
        row = snapshot.rows.get(charger_id)
        if row is None:
            return out
        first = max(period, snapshot.start_period) - snapshot.start_period
        row = row[first:]
        if not len(row):
            return out
        start = self.time_of(snapshot.start_period + first)
        options = {"bidirectional": version == "2.1" and snapshot.bidirectional.get(charger_id, False)}
        if version == "2.1":
            options["max_offline_duration_s"] = self.grace_s
        out.append(build_set_charging_profile(version, row, start, period_minutes=self.step.total_seconds() / 60,
                                              purpose="TxProfile", valid_to=start + self.step
                                              + timedelta(seconds=self.grace_s), **unit, **options))
        return out

    def setpoints_kw(self) -> dict:
        """Current-period set-point per charger [kW] of the published snapshot (0 for a charger without a car)."""
        snapshot = self.snapshot
        j = self.period_of(self.clock()) - snapshot.start_period
        return {cid: float(row[j]) if 0 <= j < len(row) else 0.0 for cid, row in snapshot.rows.items()}


__all__ = ["MemoryBackend", "Snapshot"]
