"""The schedule service's engine: sites in memory, the events they accept, the re-optimisation worker, and what
chargers are served.

Two controllers per site are fed the same events: the *validator* in the request path (never solves; decides
whether an event is accepted and its period) and the *solver* in a child process (:mod:`.solver`). A write is:
site lock → advance the validator → apply the event (a refusal restores its state) → store and commit → queue for
the worker → 2xx. Reads never wait for a solve: each publication becomes an immutable
:class:`~gridcharge.ocpp.plan.Plan` swapped in whole, rendered by :class:`~gridcharge.ocpp.plan.SiteProfiles`.
Design and measurements: ``docs/design/service.md``.
"""


from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from ..errors import InstanceError
from ..online import feed
from ..online.state import ControllerOptions
from ..ocpp.plan import ChargerProfiles, ChargerSettings, Plan, PlannedSession, PublishedPlan, SiteProfiles
from ..ocpp.profiles import VERSIONS
from .solver import SOLVER_STALL_S, AdoptOp, AdvanceOp, EventOp, LocalSolver, MeasureOp, SolveReply, SolverProcess, \
    SolverStalled

log = logging.getLogger("gridcharge.service")

Clock = Callable[[], datetime]

#: The service's controllers: the LP, and a provisional plan for new cars before the optimum.
SERVICE_OPTIONS = ControllerOptions(provisional=True)


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class PendingEvent:
    """An accepted event waiting for the solver: stored as ``seq``, at absolute ``period``."""

    seq: int
    period: int
    event: feed.Event
    accepted_at: float


@dataclass(frozen=True)
class Stall:
    """A solver the watchdog killed: ``at`` (ISO-8601 UTC) after ``seconds`` without CPU progress [s]."""

    at: str
    seconds: float


class SiteRuntime:
    """One site in memory: its instance, settings, tokens, the two controllers and what is served."""

    def __init__(self, site_id: str, generation: int, instance: dict, settings: dict, token_hashes: dict, *,
                 options: ControllerOptions = SERVICE_OPTIONS, solver_process: bool = True,
                 solver_stall_s: float = SOLVER_STALL_S, grace_s: int = 300):
        from ..online import Controller

        self.site_id = site_id
        self.generation = generation
        self.instance_dict = instance
        self.validator = Controller(instance, options)
        self.validator.auto_resolve = False
        self.instance = self.validator.site
        self.solver = SolverProcess(instance, options, solver_stall_s) if solver_process \
            else LocalSolver(instance, options)
        self.solver_now = 0
        self.solver_error: str | None = None
        self.chargers = {c.id: c for c in self.instance.chargers}
        self.profiles = SiteProfiles(self.instance, {cid: ChargerSettings.of(settings.get(cid, {}))
                                                     for cid in self.chargers}, grace_s)
        self.grid = self.profiles.grid
        self.periods = self.grid.periods
        self.token_hashes = dict(token_hashes)
        self.lock = threading.Lock()
        self.pending: deque[PendingEvent] = deque()
        self.accepted_seq = 0
        self.applied_seq = 0
        self.needs_solve = False
        self.served: Plan | None = None
        self._documents: dict = {}  # (charger, version) → (ChargerProfiles, body, ETag)
        self.latencies_s: deque[float] = deque(maxlen=20000)  # event accepted → its re-solve's final publication
        self.first_latencies_s: deque[float] = deque(maxlen=20000)  # event accepted → first served (provisional)
        self.solve_seconds: deque[float] = deque(maxlen=20000)
        self.stats_lock = threading.Lock()  # the worker appends while status() reads
        self.divergences: list[str] = []
        self.worker_errors: list[str] = []
        self.rebuilds = 0
        self.stalls: list[Stall] = []  # each stalled solver the watchdog killed
        self.replayed_seq = 0  # the last event a rebuilt solver replayed from the store

    # serving ---------------------------------------------------------------------------------------------------
    def charger_profiles(self, charger_id: str, version: str, now: datetime) -> ChargerProfiles:
        """The charger's profiles at ``now`` from the served plan (:class:`~gridcharge.ocpp.plan.SiteProfiles`)."""
        return self.profiles.profiles(charger_id, version, self.grid.period_of(now), self.served)

    def document(self, charger_id: str, version: str, now: datetime) -> tuple[bytes, str]:
        """The firmware API's response body (JSON bytes) and strong ETag (SHA-256 of the bytes) of a charger's
        profiles at ``now``, encoded once per rendering."""
        profiles = self.charger_profiles(charger_id, version, now)
        key = (charger_id, version)
        hit = self._documents.get(key)
        if hit is not None and hit[0] is profiles:
            return hit[1], hit[2]
        # nothing here changes with the clock unless a TxProfile is sent: an idle charger's ETag stays the same
        # for the whole site generation, so its fetches are 304s
        document = {
            "charger_id": charger_id,
            "site_id": self.site_id,
            "ocpp_version": version,
            "charge_only": profiles.charge_only,
            "failsafe_limit_kw": round(profiles.failsafe_limit_kw, 6),
            "schedule_source": profiles.schedule_source,
            "warnings": list(profiles.warnings),
            "set_charging_profile": list(profiles.payloads),
        }
        body = json.dumps(document, separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self._documents[key] = (profiles, body, etag)
        return body, etag

    def refresh_defaults(self) -> None:
        """Follow the validator's demand-response caps with the fail-safe defaults (under the site lock, after a
        cap is accepted and after a replay): :meth:`~gridcharge.ocpp.plan.SiteProfiles.follow_caps`."""
        self.profiles.follow_caps(self.validator.state.caps)

    def close(self) -> None:
        """Stop the site's solver (its process, if any)."""
        self.solver.close()


class Engine:
    """All sites, the worker thread, the clock.

    Parameters
    ----------
    store : gridcharge.service.store.Store
    clock : callable → tz-aware datetime (default: the system clock, UTC)
    options : ControllerOptions — how every site's controllers solve (default :data:`SERVICE_OPTIONS`), e.g. a
        ``time_limit_s`` [s] per re-solve pass: a pass that runs out of it serves the interim plan (or the fallback)
        and the next pass continues the same simplex
    interval_s : float — the re-optimisation / polling interval [s]: the worker wakes at least this often, and
        it is the ``Cache-Control: max-age`` of profiles
    grace_s : int — how long a TxProfile stays valid after its period ends, and 2.1's ``maxOfflineDuration`` [s]
    """

    def __init__(self, store, *, clock: Clock | None = None, options: ControllerOptions = SERVICE_OPTIONS,
                 interval_s: float = 60.0, grace_s: int = 300, solver_process: bool = True,
                 solver_stall_s: float = SOLVER_STALL_S):
        self.store = store
        self.clock = clock or system_clock
        self.options = options
        self.interval_s = float(interval_s)
        self.grace_s = int(grace_s)
        self.solver_process = bool(solver_process)
        self.solver_stall_s = float(solver_stall_s)
        self.sites: dict[str, SiteRuntime] = {}
        self.charger_site: dict[str, SiteRuntime] = {}
        self.hash_charger: dict[str, str] = {}
        self.operator_hash: str | None = None
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sites_lock = threading.Lock()
        #: Called by the worker after each publication as ``listener(runtime, before, after)`` with the served
        #: publications before and after (``before`` may be None); e.g. the OCPP central system pushes profiles.
        self.publication_listeners: list[Callable[[SiteRuntime, object, object], None]] = []
        #: Called when a site is replaced as ``listener(old, new)`` (runtimes): the old one's charger tokens are
        #: revoked (e.g. the OCPP central system closes their connections).
        self.replacement_listeners: list[Callable[[SiteRuntime, SiteRuntime], None]] = []

    # lifecycle -------------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild every stored site (replay its events into fresh controllers; serve its last publication)."""
        self.operator_hash = self.store.operator_hash()
        for stored in self.store.load_sites():
            runtime = self._runtime(stored.site_id, stored.generation, stored.instance, stored.settings,
                                    stored.token_hashes)
            self._replay(runtime, stored)
            self._install(runtime)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gridcharge-reoptimiser", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for runtime in list(self.sites.values()):
            runtime.close()

    def _runtime(self, site_id, generation, instance, settings, token_hashes) -> SiteRuntime:
        return SiteRuntime(site_id, generation, instance, settings, token_hashes, options=self.options,
                           solver_process=self.solver_process, solver_stall_s=self.solver_stall_s, grace_s=self.grace_s)

    def _install(self, runtime: SiteRuntime) -> None:
        with self._sites_lock:
            old = self.sites.get(runtime.site_id)
            if old is not None:
                for cid in old.chargers:
                    self.charger_site.pop(cid, None)
                for h in old.token_hashes.values():
                    self.hash_charger.pop(h, None)
            self.sites[runtime.site_id] = runtime
            for cid in runtime.chargers:
                self.charger_site[cid] = runtime
            for cid, h in runtime.token_hashes.items():
                self.hash_charger[h] = cid
        if old is not None:  # its solver may be mid-solve: let it finish aside
            threading.Thread(target=old.close, daemon=True).start()
            for listener in list(self.replacement_listeners):
                try:
                    listener(old, runtime)
                except Exception:  # noqa: BLE001 - a listener must not undo the replacement; the log says which
                    log.exception("site %s: a replacement listener failed", runtime.site_id)
        # the site's long-lived objects (instance, validator, tokens) out of the collector's way: a full collection
        # over them would stall the event loop for a fraction of a second under a fetch storm
        gc.collect()
        gc.freeze()
        self.notify()

    def _solver_ops(self, stored) -> list:
        """The solver-side replay of a stored site: its events in order, with the delivered-energy account of its
        last publication restored at that publication's period (before the events it did not include). When the
        publication includes every event and was a final optimum of the site's solver, it is adopted as the plan
        (the controller is then where it was when it published it): a restart serves the same plan, rather than
        another optimum of a tied day."""
        pub = stored.publication
        ops: list = []
        measured = pub is None
        for event in stored.events:
            if not measured and event.seq > pub.after_seq:
                ops.append(MeasureOp(pub.now, pub.delivered_kwh))
                measured = True
            ops.append(EventOp(event.period, feed.event_of(event.kind, event.body), event.seq))
        if not measured:
            ops.append(MeasureOp(pub.now, pub.delivered_kwh))
            if pub.source == self.options.solver and "pending" not in pub.status and pub.start_period == pub.now:
                ops.append(AdoptOp(pub.now, pub.start_period, tuple(s[0] for s in pub.session_ids), pub.power_kw))
        return ops

    def _replay(self, runtime: SiteRuntime, stored) -> None:
        """Events into both controllers (the solver's delivered-energy account restored from the last
        publication), the last publication served as it was; a re-solve follows in the worker."""
        pub = stored.publication
        validator = runtime.validator
        for event in stored.events:
            try:
                if event.period > validator.now:
                    validator.advance(event.period)
                feed.apply(validator, feed.event_of(event.kind, event.body))
            except InstanceError as exc:  # cannot happen for events the validator accepted; say so if it does
                runtime.divergences.append(f"replay of event {event.seq} ({event.kind}): {exc}")
                log.warning("replay of event %s refused: %s", event.seq, exc)
            runtime.accepted_seq = runtime.applied_seq = event.seq
        runtime.refresh_defaults()
        reply = runtime.solver.run(self._solver_ops(stored), None)
        runtime.solver_now = reply.now
        runtime.divergences += reply.divergences
        if pub is not None:
            runtime.served = Plan.of(PublishedPlan(pub.start_period, tuple(PlannedSession(*s) for s in pub.session_ids),
                                                   pub.power_kw, pub.source, pub.status), pub.after_seq)
        # the stored plan adopted: nothing to re-solve until something changes (or the period moves: a refresh)
        runtime.needs_solve = not reply.adopted

    def _rebuild_solver(self, runtime: SiteRuntime) -> None:
        """A new solver controller for a site whose solver failed (its process died, or it raised): every stored
        event replayed into it, queued events included (read under the site lock, so none is applied twice)."""
        runtime.solver.close()
        solver = SolverProcess(runtime.instance_dict, self.options, self.solver_stall_s) if self.solver_process \
            else LocalSolver(runtime.instance_dict, self.options)
        with runtime.lock:
            stored = next((s for s in self.store.load_sites() if s.site_id == runtime.site_id), None)
            if stored is None or stored.generation != runtime.generation:
                solver.close()
                return
            runtime.pending.clear()
            runtime.needs_solve = True
        runtime.solver = solver
        runtime.replayed_seq = stored.events[-1].seq if stored.events else 0
        reply = solver.run(self._solver_ops(stored), None)
        runtime.solver_now = reply.now
        runtime.divergences += reply.divergences
        if reply.adopted:  # the stored plan includes every stored event: it stands, no re-solve
            with runtime.lock:
                runtime.needs_solve = False
        runtime.rebuilds += 1
        log.warning("site %s: solver rebuilt from %d stored events", runtime.site_id, len(stored.events))

    def notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # sites -----------------------------------------------------------------------------------------------------
    def replace_site(self, site_id: str, instance: dict, settings: dict, tokens: dict) -> SiteRuntime:
        """Validate, store, install. ``tokens``: charger id → plain token (hashed here). Raises InstanceError
        (nothing stored) or store.ConflictError."""
        from .auth import token_hash

        hashes = {cid: token_hash(t) for cid, t in tokens.items()}
        runtime = self._runtime(site_id, 0, instance, settings, hashes)  # validates the instance: raises first
        try:
            runtime.generation = self.store.replace_site(site_id, instance, settings, hashes)
        except BaseException:
            runtime.close()  # its solver process
            raise
        runtime.needs_solve = True
        self._install(runtime)
        return runtime

    def submit(self, runtime: SiteRuntime, event: feed.Event) -> int:
        """Validate an event (a :mod:`gridcharge.online.feed` record) on the site's validator, store it (committed),
        queue it. Returns its seq.

        Raises InstanceError (refused: nothing changed) or a store error (nothing changed)."""
        with runtime.lock:
            if self.sites.get(runtime.site_id) is not runtime:
                raise LookupError(runtime.site_id)
            validator = runtime.validator
            period = runtime.grid.period_of(self.clock())
            old = validator.state
            try:
                if period > validator.now:
                    validator.advance(period)
                feed.apply(validator, event)
                seq = self.store.add_event(runtime.site_id, runtime.generation, validator.now, event.kind,
                                           event.body())
            except BaseException:
                validator.state = old
                raise
            if isinstance(event, feed.CapEvent):
                try:
                    runtime.refresh_defaults()
                except Exception:  # noqa: BLE001 - the event is committed; the worker's status shows the error
                    runtime.worker_errors.append("fail-safe defaults not updated for the new cap")
                    log.exception("site %s: fail-safe defaults not updated", runtime.site_id)
            runtime.accepted_seq = seq
            runtime.pending.append(PendingEvent(seq, validator.now, event, time.perf_counter()))
        runtime.solver.interrupt()  # a re-solve running now stops at its interim plan; the next pass has this event
        self.notify()
        return seq

    # the worker ------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            for runtime in list(self.sites.values()):
                try:
                    self.work(runtime)
                except Exception as exc:  # noqa: BLE001 - the worker must survive anything; the status says it
                    runtime.worker_errors.append(f"{type(exc).__name__}: {exc}")
                    log.exception("re-optimisation of site %s failed", runtime.site_id)
            with self._wake:
                if self._stop.is_set():
                    break
                if not any(r.pending or r.needs_solve for r in self.sites.values()):
                    self._wake.wait(timeout=self._sleep_s())

    def _sleep_s(self) -> float:
        now = self.clock()
        wait = self.interval_s
        for runtime in self.sites.values():
            period = runtime.grid.period_of(now)
            if period < runtime.periods:
                boundary = (runtime.grid.time_of(period + 1) - now).total_seconds()
                wait = min(wait, max(boundary, 0.0) + 0.01)
        return max(wait, 0.01)

    def work(self, runtime: SiteRuntime) -> bool:
        """One pass for a site: hand the queued events and the clock's period to the solver, re-solve and publish
        if anything changed. Returns whether a publication was made. (The worker thread calls it.)"""
        with runtime.lock:
            if self.sites.get(runtime.site_id) is not runtime:
                return False
            period = runtime.grid.period_of(self.clock())
            if period > runtime.validator.now:
                runtime.validator.advance(period)
            events = list(runtime.pending)
            runtime.pending.clear()
            target = runtime.validator.now
            needs_solve = runtime.needs_solve
            runtime.needs_solve = False
        moved = target > runtime.solver_now
        if not (events or needs_solve or moved):
            return False
        ops = [EventOp(e.period, e.event, e.seq) for e in events] + [AdvanceOp(target)]
        after_seq = events[-1].seq if events else max(runtime.applied_seq, runtime.replayed_seq)
        first: list[float] = []  # when the events were first served (a provisional plan, or the final one)

        def early(reply: SolveReply) -> None:
            try:
                self._serve(runtime, reply, events, after_seq, first)
            except Exception:  # noqa: BLE001 - the optimum follows; the log says why this one was not served
                log.exception("site %s: a provisional publication could not be served", runtime.site_id)

        try:
            reply = runtime.solver.run(ops, "resolve" if (events or needs_solve) else "refresh", interim=early)
        except (EOFError, OSError, RuntimeError) as exc:
            if isinstance(exc, SolverStalled):
                runtime.stalls.append(Stall(datetime.now(timezone.utc).isoformat(timespec="seconds"), exc.seconds))
            if self.sites.get(runtime.site_id) is runtime:
                runtime.solver_error = f"{type(exc).__name__}: {exc}"
                log.error("site %s: the solver failed (%s); the last publication stays served while a new solver "
                          "is built from the stored events", runtime.site_id, runtime.solver_error)
                self._rebuild_solver(runtime)
            return False
        runtime.solver_error = None
        runtime.solver_now = reply.now
        runtime.divergences += reply.divergences
        with runtime.stats_lock:
            runtime.solve_seconds.append(reply.solve_s)
        if reply.optimum_pending:  # the time budget ran out: the next pass continues the same re-solve
            with runtime.lock:
                runtime.needs_solve = True
        return self._serve(runtime, reply, events, after_seq, first, final=True)

    def _serve(self, runtime: SiteRuntime, reply: SolveReply, events, after_seq: int, first: list,
               final: bool = False) -> bool:
        """Store and serve one publication of the solver (a provisional one, or the final reply of a pass), and
        tell the listeners. ``first`` holds when the pass's events were first served; ``published_seq`` (and the
        re-optimisation latency) move only with the final reply."""
        plan = reply.plan
        stored = self.store.save_publication(runtime.site_id, runtime.generation, after_seq, reply.now,
                                             plan.start_period,
                                             [[p.session_id, p.charger_id, p.bidirectional] for p in plan.sessions],
                                             plan.power_kw, plan.source, plan.status, plan.delivered_kwh)
        if not stored or self.sites.get(runtime.site_id) is not runtime:
            return False
        before = runtime.served
        runtime.served = Plan.of(plan, after_seq)
        done = time.perf_counter()
        with runtime.stats_lock:
            if not first:
                first.append(done)
                runtime.first_latencies_s.extend(done - e.accepted_at for e in events)
            if final:
                runtime.latencies_s.extend(done - e.accepted_at for e in events)
        if final:
            runtime.applied_seq = after_seq
        for listener in list(self.publication_listeners):
            try:
                listener(runtime, before, runtime.served)
            except Exception:  # noqa: BLE001 - a listener must not stop the worker; the log says which
                log.exception("site %s: a publication listener failed", runtime.site_id)
        return True

    # reads -----------------------------------------------------------------------------------------------------
    def status(self, runtime: SiteRuntime) -> dict:
        served = runtime.served
        with runtime.stats_lock:
            lat = np.array(runtime.latencies_s) if runtime.latencies_s else None
            first = np.array(runtime.first_latencies_s) if runtime.first_latencies_s else None
            solves = np.array(runtime.solve_seconds) if runtime.solve_seconds else None

        def stats(values):
            if values is None:
                return None
            return {"count": int(values.size), "p50_s": float(np.percentile(values, 50)),
                    "p99_s": float(np.percentile(values, 99)), "max_s": float(values.max())}

        return {
            "site_id": runtime.site_id,
            "generation": runtime.generation,
            "period": runtime.grid.period_of(self.clock()),
            "periods": runtime.periods,
            "chargers": len(runtime.chargers),
            "active_sessions": len(runtime.validator.state.cars),
            "accepted_seq": runtime.accepted_seq,
            "published_seq": runtime.applied_seq,
            "pending_events": len(runtime.pending),
            "publication": None if served is None else {
                "start_period": served.start_period, "source": served.source, "status": served.status,
                "after_seq": served.after_seq, "published_at": served.published_at,
                "chargers_with_schedule": len(served.rows)},
            "reoptimisation_latency": stats(lat),
            "first_publication_latency": stats(first),
            "solve_seconds": stats(solves),
            "divergences": runtime.divergences[-10:],
            "solver_error": runtime.solver_error,
            "worker_errors": runtime.worker_errors[-10:],
            "solver_rebuilds": runtime.rebuilds,
            # the watchdog: how long the solver has used no CPU on the pass it works on now [s] (None: working or
            # idle), and the stalled solvers it killed (each rebuilt from the stored events)
            "solver_stalled_s": runtime.solver.stalled_s,
            "solver_stalls": {"count": len(runtime.stalls), "last_at": runtime.stalls[-1].at,
                              "last_s": runtime.stalls[-1].seconds} if runtime.stalls else None,
        }


__all__ = ["ChargerSettings", "Engine", "PendingEvent", "SERVICE_OPTIONS", "SiteRuntime", "Stall", "VERSIONS", "system_clock"]
