"""An in-memory backend for the OCPP central system: one site, one :class:`gridcharge.online.Controller`, per-charger
passwords, a re-optimisation thread. No HTTP, no database: state lives as long as the process.

It is what :class:`gridcharge.ocpp.csms.CentralSystem` needs to run without the schedule service (tests, a
stand-alone OCPP server, the benchmark); the service's backend (:mod:`gridcharge.service.ocpp_backend`) does the
same with its durable engine, and both serve the profiles of :mod:`gridcharge.ocpp.plan`.

Design
------
- Events (:mod:`gridcharge.online.feed` records: plug-in, update / meter reading, end) are applied to the
  controller at once, under one lock, with ``auto_resolve`` off: a refused event raises
  :class:`gridcharge.errors.EventRefused` naming the field and changes nothing. The controller is first advanced to
  the clock's period.
- A new car's provisional plan (``ControllerOptions(provisional=True)``) is served and announced before the
  optimum, and an event that waits for the lock interrupts a running re-solve (``Controller(interrupt=...)``),
  which then serves its interim plan and is continued next pass.
- A worker thread re-solves (``Controller.refresh``) when an event arrived or a period began, serves the
  publication as a :class:`~gridcharge.ocpp.plan.Plan` and tells the subscribers which chargers' rows changed (all
  of them at a new period: the TxProfile's start and ``validTo`` move). The lock is held during the solve, so an
  event waits for a running solve until it interrupts it (the central system answers the charger before it hands
  the event over, so OCPP responses do not wait).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from ..online import feed
from .csms import ChargerInfo
from .plan import ChargerSettings, Plan, SiteProfiles, planned_sessions

log = logging.getLogger("gridcharge.ocpp")


def _hash(password: str) -> bytes:
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()


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
    rate_unit : ``"W"`` or ``"A"`` — chargingRateUnit of every profile (kW <-> A at each charger's ``voltage_v``)

    Attributes
    ----------
    plan : Plan — what chargers are served now (swapped in whole)
    profiles_of : SiteProfiles — the site's profile rendering
    grid : PeriodGrid — clock ↔ periods
    """

    def __init__(self, site, passwords: Mapping[str, str], *, solver: str = "highs",
                 time_limit_s: float | None = None, clock: Callable[[], datetime] | None = None, grace_s: int = 300,
                 rate_unit: str = "W"):
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
        settings = ChargerSettings(rate_unit=rate_unit)
        self.profiles_of = SiteProfiles(self.instance, {cid: settings for cid in self.chargers}, grace_s)
        self.grid = self.profiles_of.grid
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._dirty = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable] = []
        self.plan = Plan()
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

    def now(self) -> datetime:
        return self.clock()

    def _follow_clock(self) -> None:  # under the lock
        period = self.grid.period_of(self.clock())
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
                           self.grid.time_of(self.grid.periods))

    # CsmsBackend: events ---------------------------------------------------------------------------------------
    def _event(self, event: feed.Event) -> None:
        with self._count_lock:
            self._waiting += 1  # a re-solve holding the lock asks this count whether to stop
        try:
            self._wake.acquire()
        finally:
            with self._count_lock:
                self._waiting -= 1
        try:
            self._follow_clock()
            feed.apply(self.controller, event)
            self._dirty = True
            self._wake.notify_all()
        finally:
            self._wake.release()

    def plug_in(self, charger_id: str, session: dict) -> None:
        self._event(feed.PlugIn(dict(session)))

    def update(self, charger_id: str, change: feed.Update) -> None:
        self._event(change)

    def end(self, charger_id: str, session_id: str, at: datetime | None) -> None:
        self._event(feed.End(session_id, at))

    def cap(self, node_id: str, import_limit_kw: float, start, end) -> None:
        """A demand-response cap on ``node_id``'s net import [kW] from ``start`` to ``end`` (periods or date-times):
        the plan keeps it from the next publication on, and so does every charger's fail-safe default below the node
        (a lower limit within the window)."""
        self._event(feed.CapEvent(node_id, import_limit_kw, start, end))

    def active_session(self, charger_id: str) -> str | None:
        now = self.clock()
        with self._lock:
            return self.controller.car_at(charger_id, now)

    def subscribe(self, listener) -> None:
        self._listeners.append(listener)

    # the worker ------------------------------------------------------------------------------------------------
    def _sleep_s(self) -> float:
        period = self.grid.period_of(self.clock())
        if period >= self.grid.periods:
            return 60.0
        return max((self.grid.time_of(period + 1) - self.clock()).total_seconds(), 0.0) + 0.01

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while not self._stop.is_set() and not self._dirty \
                        and self.grid.period_of(self.clock()) <= self.controller.now:
                    self._wake.wait(timeout=self._sleep_s())
                if self._stop.is_set():
                    return
                self._follow_clock()
                self._dirty = False
                self.profiles_of.follow_caps(self.controller.state.caps)  # a cap set on the controller
                started = time.perf_counter()
                publication = self.controller.refresh()
                self.solve_seconds.append(time.perf_counter() - started)
                if self.controller.optimum_pending:  # interrupted or out of budget: go on after the news
                    self._dirty = True
                plan = Plan.of(planned_sessions(self.controller, publication))
            self._install(plan)

    def _on_publish(self, publication) -> None:  # inside Controller.refresh, under the lock
        if publication.source == "provisional":
            self._install(Plan.of(planned_sessions(self.controller, publication)))

    def _install(self, plan: Plan) -> None:
        """Serve a plan and tell the subscribers which chargers' rows changed (None: all, a new period)."""
        previous, self.plan = self.plan, plan
        self.publications += 1
        changed = plan.changed_since(previous)
        for listener in list(self._listeners):
            try:
                listener(changed)
            except Exception:
                log.exception("a publication listener failed")

    # CsmsBackend: profiles -------------------------------------------------------------------------------------
    def profiles(self, charger_id: str, version: str) -> list[dict]:
        """The charger's SetChargingProfile payloads now (:meth:`gridcharge.ocpp.plan.SiteProfiles.render`)."""
        period = self.grid.period_of(self.clock())
        return list(self.profiles_of.profiles(charger_id, version, period, self.plan).payloads)

    def setpoints_kw(self) -> dict:
        """Current-period set-point per charger [kW] of the served plan (0 for a charger without a car)."""
        return self.plan.setpoints_kw(self.grid.period_of(self.clock()))


__all__ = ["MemoryBackend"]
