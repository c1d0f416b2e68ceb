"""The solver side of a site: the controller that re-solves, in a child process (:class:`SolverProcess`, the
default) or in this one (:class:`LocalSolver`), driven by the engine's worker with picklable ops and replies.

The process boundary keeps a re-solve's seconds of Python and numpy off the HTTP process's GIL; the child publishes
a provisional plan ahead of its reply, stops early when the engine says news is waiting, and is watched: a child
that uses no CPU for ``stall_s`` while its reply is awaited is killed (:class:`SolverStalled`). Design and
measurements: ``docs/design/service.md``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import InstanceError
from ..online import feed
from ..online.state import ControllerOptions
from ..ocpp.plan import PublishedPlan, planned_sessions

#: The solver child runs at this nice increment: when CPU is short (2 cores, a re-solve, a fetch storm), the HTTP
#: process is scheduled first, so a solve slows down rather than a charger's fetch.
SOLVER_NICE = 10

#: The watchdog of a solve [s]: a solver process that has used no CPU for this long while a reply is awaited is
#: stalled (stopped, deadlocked), not busy, and is killed and rebuilt. (At ``SOLVER_NICE`` under a full CPU it
#: still gets a share of every second, so a slow solve is not mistaken for a stall.)
SOLVER_STALL_S = 30.0

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
    """The solver controller in a child process (``python -m gridcharge.service.solver``, talking pickled
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
        self.process = subprocess.Popen([sys.executable, "-m", "gridcharge.service.solver", str(child.fileno())],
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


__all__ = ["AdoptOp", "AdvanceOp", "EventOp", "Interim", "LocalSolver", "MeasureOp", "SOLVER_NICE", "SOLVER_STALL_S",
           "SolveReply", "SolverFailed", "SolverOp", "SolverProcess", "SolverStalled", "execute", "solver_child_main"]


if __name__ == "__main__":  # pragma: no cover - the solver child of SolverProcess
    import sys

    # run the imported module's copy, so that the ops the parent pickles (gridcharge.service.solver.EventOp...)
    # are the classes execute() checks against, not this __main__ module's twins
    from gridcharge.service import solver

    solver.solver_child_main(int(sys.argv[1]))
