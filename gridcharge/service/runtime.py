"""The schedule service's engine: sites in memory, the re-optimisation worker, and pre-rendered charger profiles.

Design (choices where the issue is silent)
------------------------------------------
Two controllers per site, fed the same events:

- the **validator** lives in the request path (under the site's lock). It never solves (``auto_resolve=False``);
  it decides whether an event is accepted (its refusals name the field) and assigns the event its period;
- the **solver** controller runs in a child process (:class:`SolverProcess`, one per site; ``solver_process=False``
  keeps it in this process, :class:`LocalSolver`), driven over a pipe by the one worker thread. The worker drains
  the accepted events in order and sends them with the clock's period; the child advances its controller to each
  event's period, applies it and re-solves (:meth:`Controller.resolve`): a burst of events is one re-solve. The
  process boundary is there because a re-solve at hundreds of cars is up to seconds of Python and numpy (model
  building, verification) that, in a thread, holds the GIL against the HTTP event loop. Measured side by side
  (``benchmarks/RESULTS.md``, "Schedule service"; 5,000 chargers, 500 → 1,000 cars, fetches in a closed loop):
  1,783 fetches/s with the child process against 980 with the thread (1.82x; 1.49x in an earlier run), p99 31.5
  vs 57.8 ms. The price is re-optimisation latency when fetches saturate the CPU: the child runs at a lower CPU
  priority (``SOLVER_NICE``), so fetches go first and a solve waits (events published up to 25 s late in that
  run; 0.55 s p50 / 0.99 s p99 at the realistic 83 fetches/s).
- the solver controller publishes a **provisional** plan after new cars (``Controller(provisional=True)``): the
  last plan with each new car filled into its headroom, verified like every publication. The child sends it ahead
  of its reply, and the worker serves it (and tells the listeners: the OCPP central system pushes it) before the
  optimum is computed; ``published_seq`` and the re-optimisation latency move only with the pass's final reply,
  and the status reports the time to the first publication apart (``first_publication_latency``). With a time
  budget (``time_limit_s``) a pass that runs out serves the interim plan and leaves the optimum pending; the next
  pass continues the same simplex, so events queued meanwhile wait about one budget, not a whole re-solve.
- **news interrupts a long re-solve**: when an event is accepted while the site's solver works, the engine tells
  it (:meth:`SolverProcess.interrupt`: a message on the pipe, which the child's HiGHS callback polls every 10 ms
  after the first 0.2 s of a run). The child stops, replies with its interim plan (optimum pending) and the next
  pass applies the new events to the kept model and continues the simplex. Without a budget, the optimum is then
  reached in one uninterrupted run when nothing arrives, and an event that arrives during a long one (20-40 s at
  10,000 cars with V2G) waits for the rest of the pass's building and checking plus at most ~0.2 s of HiGHS,
  not for the optimum (tested with a 3,000-car batch in ``tests/test_service.py``; not benchmarked).

- a **watchdog** on every solve: while the worker awaits a solver process's reply it watches the child's CPU
  time; a child that uses none for ``solver_stall_s`` (stopped, deadlocked; default ``SOLVER_STALL_S``) is
  killed, rebuilt from the stored events like a dead one, and reported (``solver_stalled_s`` while it lasts,
  ``solver_stalls`` after). The one worker serves the sites in turn, so a stall delays the other sites'
  publications by at most that long, instead of for as long as the child hangs.

A write is: site lock → advance the validator to the clock's period → apply the event to it (a refusal leaves its
state as it was: the immutable ``ControllerState`` is restored) → insert the event into the store and commit →
queue it for the worker → 2xx. If the commit fails, the validator's state is restored, nothing is queued, and the
client gets an error: no partial writes. Writes wait for each other (one site lock, one SQLite writer) but never
for a solve.

Reads never wait for a solve: each publication becomes an immutable :class:`~gridcharge.ocpp.plan.Plan` that the
worker swaps in with one assignment; a fetch reads whichever plan is current. A charger's profiles are those of
:class:`~gridcharge.ocpp.plan.SiteProfiles` (the same for OCPP and HTTP, rendered once per period and signature);
the firmware API's response (JSON bytes and a strong ETag, the SHA-256 of the bytes) is encoded once per rendering.
ETags are content hashes, so an unchanged profile has the same ETag across re-solves and across restarts.

Time: ``clock()`` (injectable) is mapped onto the site's :class:`~gridcharge.ocpp.plan.PeriodGrid`. The worker
advances the controllers at each period boundary (and every ``interval_s``). Before the horizon starts the site is
at period 0; after it ends, no car can be scheduled and chargers get only the fail-safe profiles.

Known limits: a mix of chargers on stale TxProfiles (within their validity) and chargers on fresh ones is only as
safe as the previous and current plans are together (the controller does not know which charger missed a fetch);
the validity window bounds how long that can last. ``transactionId`` is not sent (the service does not know the
charger's OCPP transaction; the charger's own CSMS link adds it if it needs it).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..errors import InstanceError
from ..online import feed
from ..online.state import ControllerOptions
from ..ocpp.plan import ChargerProfiles, ChargerSettings, PlannedSession, Plan, PublishedPlan, SiteProfiles, \
    planned_sessions
from ..ocpp.profiles import VERSIONS

log = logging.getLogger("gridcharge.service")

#: The solver child runs at this nice increment: when CPU is short (2 cores, a re-solve, a fetch storm), the HTTP
#: process is scheduled first, so a solve slows down rather than a charger's fetch.
SOLVER_NICE = 10

#: The watchdog of a solve [s]: a solver process that has used no CPU for this long while a reply is awaited is
#: stalled (stopped, deadlocked), not busy, and is killed and rebuilt. (At ``SOLVER_NICE`` under a full CPU it
#: still gets a share of every second, so a slow solve is not mistaken for a stall.)
SOLVER_STALL_S = 30.0

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
class EventOp:
    """Apply stored event ``seq`` (a :mod:`gridcharge.online.feed` record) at absolute period ``period``."""

    period: int
    event: feed.Event
    seq: int


@dataclass(frozen=True)
class MeasureOp:
    """Meter readings at ``period``: energy delivered since arrival per session [kWh] (cars that left are skipped)."""

    period: int
    delivered_kwh: dict


@dataclass(frozen=True)
class AdvanceOp:
    """Advance the controller to ``period``."""

    period: int


@dataclass(frozen=True)
class AdoptOp:
    """Take a stored publication (made before a restart) as the plan of ``period`` instead of re-solving:
    :meth:`~gridcharge.online.Controller.adopt`. ``power_kw`` has one row per id of ``session_ids`` [kW]."""

    period: int
    start_period: int
    session_ids: tuple
    power_kw: object


SolverOp = EventOp | MeasureOp | AdvanceOp | AdoptOp


@dataclass(frozen=True)
class SolveReply:
    """What a solver replies to a run of :func:`execute` (picklable).

    now : int — the controller's period after the ops
    divergences : list of str — events the controller refused which the validator had accepted (should not happen)
    adopted : bool — an :class:`AdoptOp` succeeded
    plan : PublishedPlan or None — the publication, when the run solved
    solve_s : float — time of the re-solve [s] (0 without one)
    optimum_pending : bool — the re-solve ran out of its budget or was interrupted: the next one continues it
    """

    now: int
    divergences: list = field(default_factory=list)
    adopted: bool = False
    plan: PublishedPlan | None = None
    solve_s: float = 0.0
    optimum_pending: bool = False


def execute(controller, ops, solve: str | None, interim: Callable[[SolveReply], None] | None = None) -> SolveReply:
    """Run solver-side operations on a controller and, with ``solve`` (``"resolve"`` or ``"refresh"``), publish.

    ``ops``: :class:`EventOp`, :class:`MeasureOp`, :class:`AdvanceOp`, :class:`AdoptOp`, in order; the controller
    is advanced to each op's period first. ``interim``, if given, receives a :class:`SolveReply` of the first
    *provisional* publication of the re-solve (the last plan with the new cars filled in, verified), as soon as it
    is made and before the optimum."""
    divergences = []
    adopted = False
    for op in ops:
        try:
            if op.period > controller.now:
                controller.advance(op.period)
            if isinstance(op, EventOp):
                feed.apply(controller, op.event)
            elif isinstance(op, MeasureOp):
                delivered = {sid: kwh for sid, kwh in op.delivered_kwh.items() if sid in controller.state.cars}
                if delivered:
                    controller.measure(delivered)
            elif isinstance(op, AdoptOp):
                adopted = controller.adopt(op.start_period, op.session_ids, op.power_kw)
            elif not isinstance(op, AdvanceOp):
                raise TypeError(f"unknown solver op {op!r}")
        except InstanceError as exc:
            what = f"event {op.seq}" if isinstance(op, EventOp) else type(op).__name__
            divergences.append(f"{what}: {exc}")
    if not solve:
        return SolveReply(controller.now, divergences, adopted)
    started = time.perf_counter()
    sent = []

    def early(publication) -> None:
        if publication.source == "provisional" and not sent:
            sent.append(True)
            interim(SolveReply(controller.now, [], False, planned_sessions(controller, publication),
                               time.perf_counter() - started, True))

    controller.on_publish = early if interim is not None else None
    try:
        publication = controller.resolve() if solve == "resolve" else controller.refresh()
    finally:
        controller.on_publish = None
    return SolveReply(controller.now, divergences, adopted, planned_sessions(controller, publication),
                      time.perf_counter() - started, controller.optimum_pending)


class LocalSolver:
    """The solver controller in this process (the worker thread calls it). Simple, but its Python and numpy work
    competes with the HTTP event loop for the GIL; :class:`SolverProcess` is the default.

    The controller publishes a provisional plan after new cars (``Controller(provisional=True)``): the last plan
    with each new car filled into its headroom, verified, handed to ``interim`` before the optimum is computed."""

    stalled_s = None  # no watchdog here: nothing stops a thread of this process but the process itself

    def __init__(self, instance: dict, options: ControllerOptions, interrupt: Callable[[], bool] | None = None):
        from ..online import Controller

        self._news = threading.Event()
        self.controller = Controller(instance, options, interrupt=interrupt or self._news.is_set)
        self.controller.auto_resolve = False

    def run(self, ops, solve: str | None, interim: Callable[[SolveReply], None] | None = None) -> SolveReply:
        self._news.clear()
        return execute(self.controller, ops, solve, interim)

    def interrupt(self) -> None:
        """News is waiting: stop the running re-solve (it publishes its interim plan and continues next pass)."""
        self._news.set()

    def close(self) -> None:
        pass


def solver_child_main(fd: int) -> None:  # pragma: no cover - runs in the child process
    """The solver child of :class:`SolverProcess`: a :class:`LocalSolver` serving runs over the socket ``fd``."""
    from multiprocessing.connection import Connection

    connection = Connection(fd)
    try:  # below the HTTP process: when CPU is short, fetches go first and the solve waits
        os.nice(SOLVER_NICE)
    except OSError:
        pass
    # anything the parent sends during a re-solve (an "interrupt": events are waiting) stops it
    local = LocalSolver(*connection.recv(), interrupt=connection.poll)
    connection.send(True)  # ready
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        if message == "interrupt":  # it came after the re-solve it was meant for had ended
            continue
        try:
            reply = local.run(*message, interim=lambda early: connection.send(Interim(early)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which keeps serving the last publication
            reply = SolverFailed(f"{type(exc).__name__}: {exc}")
        connection.send(reply)


@dataclass(frozen=True)
class Interim:
    """A message of the solver child ahead of its reply: a provisional publication of the running re-solve."""

    reply: SolveReply


@dataclass(frozen=True)
class SolverFailed:
    """The solver child's reply when its run raised: ``error`` (type and message)."""

    error: str


class SolverStalled(RuntimeError):
    """The solver process made no progress for ``seconds`` [s] while a reply was awaited; it was killed."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        super().__init__(f"solver process stalled: no CPU progress for {seconds:.1f} s; killed")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` [s] (Linux ``/proc``), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class SolverProcess:
    """The solver controller in a child process (``python -m gridcharge.service.runtime``, talking pickled
    messages over a socket pair), driven by the worker thread. Re-solves (model building, HiGHS, verification:
    seconds of Python and numpy at thousands of cars) then never hold the HTTP process's GIL, so profile fetches
    keep their latency while re-optimisations run. (A plain subprocess rather than ``multiprocessing``'s spawn,
    which would re-import the caller's main script.)"""

    #: how often the watchdog looks at the child while a reply is awaited [s]
    WATCH_S = 0.25

    def __init__(self, instance: dict, options: ControllerOptions, stall_s: float = SOLVER_STALL_S):
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        self.process = subprocess.Popen([sys.executable, "-m", "gridcharge.service.runtime", str(child.fileno())],
                                        pass_fds=[child.fileno()], stdin=subprocess.DEVNULL)
        child.close()
        self._connection = Connection(parent.detach())
        self._connection.send((instance, options))
        self._lock = threading.Lock()  # one run at a time
        self._send_lock = threading.Lock()  # run() and interrupt() both send
        self._busy = False
        self._ready = False
        self.stall_s = float(stall_s)
        self._quiet_since: float | None = None  # monotonic time since which the awaited child used no CPU

    @property
    def stalled_s(self) -> float | None:
        """How long the child has used no CPU while a reply is awaited now [s] (None: working, or not awaited)."""
        since = self._quiet_since
        if since is None:
            return None
        quiet = time.monotonic() - since
        return quiet if quiet >= 2 * self.WATCH_S else None

    def _recv(self):
        """The child's next message, under the watchdog: a child that uses no CPU for ``stall_s`` is killed
        (SIGKILL also ends a stopped process) and :class:`SolverStalled` raised. Without ``/proc`` the watchdog
        counts wall time since the last message instead."""
        pid = self.process.pid
        cpu = _cpu_seconds(pid)
        self._quiet_since = time.monotonic()
        try:
            while not self._connection.poll(self.WATCH_S):
                now_cpu = _cpu_seconds(pid)
                if now_cpu is not None and now_cpu != cpu:
                    cpu, self._quiet_since = now_cpu, time.monotonic()
                    continue
                quiet = time.monotonic() - self._quiet_since
                if quiet > self.stall_s:
                    self.process.kill()
                    raise SolverStalled(quiet)
            return self._connection.recv()
        finally:
            self._quiet_since = None

    def run(self, ops, solve: str | None, interim: Callable[[SolveReply], None] | None = None) -> SolveReply:
        with self._lock:
            if not self._ready:
                self._recv()
                self._ready = True
            with self._send_lock:
                self._connection.send((ops, solve))
                self._busy = True
            try:
                while isinstance(reply := self._recv(), Interim):  # a provisional plan before the reply
                    if interim is not None:
                        interim(reply.reply)
            finally:
                self._busy = False
        if isinstance(reply, SolverFailed):
            raise RuntimeError(f"solver process: {reply.error}")
        return reply

    def interrupt(self) -> None:
        """News is waiting: ask the child to stop its running re-solve (it replies with its interim plan and the
        next pass continues). Nothing is sent when no re-solve runs."""
        with self._send_lock:
            if self._busy:
                try:
                    self._connection.send("interrupt")
                except (OSError, ValueError):
                    pass

    def close(self) -> None:
        try:
            self._connection.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a solve still running: stop it
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except Exception:  # noqa: BLE001
                self.process.kill()
        try:
            self._connection.close()
        except OSError:
            pass


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
        self.profiles = SiteProfiles(self.instance, {cid: ChargerSettings(**settings.get(cid, {}))
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
        self.stalls: list[tuple[str, float]] = []  # (when, seconds without progress) of each stalled solver
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
                runtime.stalls.append((datetime.now(timezone.utc).isoformat(timespec="seconds"), exc.seconds))
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
            "solver_stalls": {"count": len(runtime.stalls), "last_at": runtime.stalls[-1][0],
                              "last_s": runtime.stalls[-1][1]} if runtime.stalls else None,
        }


__all__ = ["AdoptOp", "AdvanceOp", "ChargerSettings", "Engine", "EventOp", "MeasureOp", "SOLVER_STALL_S",
           "SiteRuntime", "SolveReply", "SolverStalled", "VERSIONS", "system_clock"]


if __name__ == "__main__":  # pragma: no cover - the solver child of SolverProcess
    import sys

    # run the imported module's copy, so that the ops the parent pickles (gridcharge.service.runtime.EventOp...)
    # are the classes execute() checks against, not this __main__ module's twins
    from gridcharge.service import runtime

    runtime.solver_child_main(int(sys.argv[1]))
