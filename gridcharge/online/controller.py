"""Online control: a rolling-horizon controller that re-optimises on every event and always publishes a safe,
verified schedule.

:class:`Controller` is a facade of events (:meth:`~Controller.plug_in`, :meth:`~Controller.depart`,
:meth:`~Controller.update`, :meth:`~Controller.measure`, :meth:`~Controller.set_limit`,
:meth:`~Controller.forecast`, :meth:`~Controller.expect`, :meth:`~Controller.advance`) over an explicit, frozen
:class:`~gridcharge.online.state.ControllerState`. Each event is a pure function of the state (:mod:`.events`):
validated before anything changes (a refusal is an :class:`~gridcharge.errors.EventRefused` naming the field, with a
reason), then committed and followed by a publication for the current and every later period of the day. The steps
of a publication live in their own modules: the window (:mod:`.window`), the warm re-solve (:mod:`.resolve` on
:mod:`gridcharge.solvers.warm`), provisional plans (:mod:`.provisional`), the checks and the fallback ladder
(:mod:`.checks`). How and why: docs/design/online.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from ..errors import EventRefused, FieldProblem, PublicationRejected
from ..instance import Instance, load_instance
from ..problem import Problem, build_problem
from ..schedule import Schedule, summarise
from ..solvers.baselines import BASELINES
from ..solvers.warm import KeptHighs
from ..verify import Verification
from . import events
from .checks import capped_problem, check_schedule, fall_back, first_line, rebased
from .provisional import InterimPlan, interim_plan, plan_tail
from .resolve import peak_floor, solve_window
from .state import (CONTROLLER_SOLVERS, EXPECTED_PREFIX, ControllerOptions, ControllerState, Day, LogEntry,
                    Publication, Timings, readonly)
from .window import Window, WindowBuilder

__all__ = ["CONTROLLER_SOLVERS", "Controller"]


class Controller:
    """Rolling-horizon re-optimisation of one site.

    Parameters
    ----------
    site : Instance, mapping or path
        An instance-v1 without sessions (nodes, chargers, tariff, objective; ``horizon`` is the whole day grid the
        controller runs on). Node base loads are the initial base-load forecast [kW].
    options : ControllerOptions, optional
        How it solves (solver, fallback, time budget, warm start, provisional plans ...); default ControllerOptions().
    expected_arrivals : sequence of mappings, optional
        An arrival forecast, as :meth:`expect` takes it. Without one the controller plans only for the cars it
        knows (see benchmarks/RESULTS.md, "Online control").
    on_publish : callable, optional
        Called with each :class:`Publication` as it is made (provisional ones included), e.g. to push it to chargers
        while the optimum is still being computed. An exception it raises is recorded in :attr:`log`, not raised.
    interrupt : callable, optional
        Asked (no arguments) while HiGHS iterates (:class:`gridcharge.solvers.warm.KeptHighs`); True stops the
        re-solve as if its time budget had run out: the interim plan stands, :attr:`optimum_pending`, and the next
        publication continues. An exception it raises counts as False.
    **overrides
        Fields of ``options`` to change (``Controller(site, solver="edf")`` is
        ``Controller(site, ControllerOptions(solver="edf"))``).

    Attributes
    ----------
    options : ControllerOptions — may be replaced whole between events
    state : ControllerState
    publication : Publication
    status : str — what the last publication is and why (``"optimal"``, ``"heuristic ..."``, ``"provisional ..."``,
        ``"fallback ..."``, ``"zero ..."``, ``"idle"``)
    log : list of LogEntry — one per publication (``LogEntry.row()`` for a table)
    auto_resolve : bool — re-solve after each accepted event (default True; see :meth:`batch`)
    """

    def __init__(self, site, options: ControllerOptions | None = None, *, expected_arrivals=None,
                 on_publish: Callable[[Publication], None] | None = None,
                 interrupt: Callable[[], bool] | None = None, **overrides):
        if isinstance(site, Mapping) and site.get("sessions"):
            raise EventRefused("site", FieldProblem("sessions", f"{len(site['sessions'])} sessions",
                                                    "a Controller site has no sessions; announce cars with plug_in()"))
        inst = load_instance(site)
        if inst.sessions:
            raise EventRefused("site", FieldProblem("sessions", f"{len(inst.sessions)} sessions",
                                                    "a Controller site has no sessions; announce cars with plug_in()"))
        self.site = inst
        self.day = Day.of(inst)
        self.periods = T = inst.horizon.periods
        self.on_publish = on_publish
        self.auto_resolve = True
        self._windows = WindowBuilder(self.day)
        self._highs = KeptHighs(interrupt=interrupt)
        options = options or ControllerOptions()
        self.options = dataclasses.replace(options, **overrides) if overrides else options
        base = np.array([np.broadcast_to(np.asarray(n.base_load_kw, dtype=float), (T,)) for n in inst.nodes])
        self.state = ControllerState(now=0, cars={}, finished={}, caps=(), base_load_kw=readonly(base.copy()),
                                     peak_so_far_kw=-math.inf, next_serial=0)
        self.publication = Publication(0, (), readonly(np.zeros((0, T))), "idle", "idle")
        self.status = "idle"
        self.log: list[LogEntry] = []
        self._dirty = False
        self._batch_depth = 0
        self._changes: set[str] = set()
        if expected_arrivals is not None:  # no car yet: nothing to re-solve
            self.auto_resolve = False
            self.expect(expected_arrivals)
            self.auto_resolve = True

    @property
    def options(self) -> ControllerOptions:
        """How this controller solves; replaced whole (e.g. another ``time_limit_s``), it takes effect at the next
        re-solve."""
        return self._options

    @options.setter
    def options(self, value: ControllerOptions) -> None:
        self._options = value
        self._windows.horizon_periods = value.horizon_periods
        self._highs.keep, self._highs.threads = value.warm_start, value.threads
        self._highs.options = dict(value.highs_options)

    @property
    def interrupt(self) -> Callable[[], bool] | None:
        """The callable HiGHS asks whether to stop (see the class parameters); may be replaced between events."""
        return self._highs.interrupt

    @interrupt.setter
    def interrupt(self, value: Callable[[], bool] | None) -> None:
        self._highs.interrupt = value

    # ---------------------------------------------------------------------------------------------------------
    # time

    @property
    def now(self) -> int:
        """Current period index (0 .. T)."""
        return self.state.now

    def time_of(self, period: int) -> datetime:
        """Start of period ``period`` (``period == T`` is the end of the day)."""
        return self.day.time_of(period)

    @property
    def time(self) -> datetime:
        """The current time: start of period ``now``."""
        return self.time_of(self.state.now)

    # ---------------------------------------------------------------------------------------------------------
    # events (each: the new state from :mod:`.events`, committed, then a publication)

    def plug_in(self, session: Mapping) -> None:
        """A car announces itself: an instance-v1 session mapping (``id``, ``charger``, ``departure``,
        ``energy_kwh`` [kWh], optional ``arrival`` (default: now), ``max_charge_kw``, ``max_discharge_kw`` (V2G
        consent, [kW]), ``battery_kwh``, ``initial_kwh``, ``min_kwh`` [kWh]).

        An arrival in the future is a reservation; one in the past means the car is plugged in from now.
        Refused: an unknown key or bad value, an id already used today, an unknown charger, a charger occupied by
        another car during the new car's stay, a departure not after the current time (or not after arrival, or
        after the end of the day), a battery that does not fit.
        """
        self._commit(events.plug_in(self.day, self.state, session), "plug_in")

    def depart(self, session_id: str, at=None) -> None:
        """Car ``session_id`` leaves at ``at`` (date-time or ISO string; default now).

        ``at`` not after the current time: the car has left (it is removed; a car that has not arrived yet is a
        cancelled reservation). ``at`` in the future: the announced departure moves there (early or late).
        """
        self._commit(events.depart(self.day, self.state, session_id, at), "depart")

    def update(self, session_id: str, *, departure=None, energy_kwh: float | None = None) -> None:
        """The driver changes their wishes: a new ``departure`` (date-time or ISO string) and/or ``energy_kwh``
        (total energy to add since arrival [kWh])."""
        self._commit(events.update(self.day, self.state, session_id, departure, energy_kwh), "update")

    def measure(self, session_id, energy_delivered_kwh: float | None = None) -> None:
        """The meter says car ``session_id`` has received ``energy_delivered_kwh`` since arrival (into the battery,
        after efficiency) [kWh]. Also ``measure({id: kWh, ...})`` for many cars at once (all or nothing).

        Refused: an unknown car, a value that is not finite, negative energy for a car without ``battery_kwh``,
        a value outside the battery (``min_kwh - initial_kwh .. battery_kwh - initial_kwh``).
        A value within ``MEASURE_TOLERANCE_KWH`` of the controller's own account changes nothing.
        """
        values = session_id if isinstance(session_id, Mapping) else {session_id: energy_delivered_kwh}
        state = events.measure(self.state, values)
        if state is not None:
            self._commit(state, "measure")

    def set_limit(self, node_id: str, import_limit_kw: float, start, end) -> None:
        """A demand-response cap: node ``node_id``'s net load <= ``import_limit_kw`` [kW] from ``start`` to ``end``
        (period indices, or date-times rounded outwards to period boundaries). Caps add up by minimum with each
        other and with the node's own limit. Refused: unknown node, a limit that is not a finite number >= 0,
        ``end`` not after ``start`` or not after now, a window outside the day."""
        self._commit(events.set_limit(self.day, self.state, node_id, import_limit_kw, start, end), "set_limit")

    def forecast(self, node_id: str, base_load_kw, start: int | None = None) -> None:
        """A new forecast of node ``node_id``'s own base load [kW] from period ``start`` (default now): one number
        for every remaining period, or one number per period from ``start`` on (at most to the end of the day)."""
        self._commit(events.forecast(self.day, self.state, node_id, base_load_kw, start), "forecast")

    def expect(self, cars) -> None:
        """Replace the arrival forecast: a sequence of expected cars, each a mapping with ``id``, ``node`` (where
        its charger hangs), ``arrival``, ``departure`` (ISO date-times), ``energy_kwh`` [kWh] and ``max_charge_kw``
        [kW], optionally ``phases`` ("A" | "B" | "C" | "ABC") and ``efficiency`` (0, 1].

        Each re-solve plans for the expected cars whose arrival is still ahead (flexible, charge-only phantoms on
        virtual chargers: capacity is held for them where it is cheapest to hold); once the arrival time has passed
        the forecast car is dropped (a real car announces itself with :meth:`plug_in`). ``expect([])`` removes the
        forecast. Refused: a car that is not a mapping, a missing or unknown key, an id given twice, an unknown
        node, times that are not date-times with offset, a departure not after arrival or after the day, energy
        < 0, max_charge_kw <= 0, phases or efficiency out of range.
        """
        self._commit(events.expect(self.day, self.state, cars), "expect")

    def advance(self, to_period) -> None:
        """Time moves on to period ``to_period`` (index or date-time on a boundary, rounded down).

        Each car is credited with the energy of its published set-points for the elapsed periods (correct it with
        :meth:`measure`); cars whose departure is not after the new time leave. Refused: a period before now or
        after the end of the day.
        """
        before = self.state
        state = events.advance(self.day, before, self.publication, to_period)
        if state is None:
            return
        self.state = state
        self._changes.add("advance")
        if any(self.time_of(before.now) < e.arrival <= self.time for e in before.expected):
            self._dirty = True  # forecast cars left the plan: re-plan the rest
        self._after_change()

    def _commit(self, state: ControllerState, kind: str) -> None:
        self.state = state
        self._changes.add(kind)
        self._dirty = True
        self._after_change()

    def _after_change(self) -> None:
        if self._batch_depth == 0 and self.auto_resolve:
            self.refresh()

    @contextlib.contextmanager
    def batch(self) -> Iterator[Controller]:
        """Apply several events with one re-solve at the end (also when an event inside is refused)."""
        self._batch_depth += 1
        try:
            yield self
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0 and self.auto_resolve:
                self.refresh()

    # ---------------------------------------------------------------------------------------------------------
    # publication

    def refresh(self) -> Publication:
        """Publish for the current state: re-solve if anything changed (or ``always_resolve``, or the last
        publication was a fallback), else publish the rest of the last plan again, re-verified."""
        pub = self.publication
        solver, always = self.options.solver, self.options.always_resolve
        reuse = (not self._dirty and not always and pub.source == solver
                 and pub.schedule is not None and pub.start_period <= self.now)
        if not self._dirty and pub.start_period == self.now and pub.source in (solver, "idle") and not always:
            return pub
        self._publish(reuse=reuse)
        self._dirty = False
        self._changes = set()
        return self.publication

    @property
    def optimum_pending(self) -> bool:
        """The last re-solve on the kept HiGHS model ran out of its time budget (``time_limit_s``) or was
        interrupted (``interrupt``): the publication is an interim plan (or the fallback), and the next
        :meth:`refresh` or :meth:`resolve` continues the simplex from where it stopped rather than starting again."""
        return self._highs.optimum_pending

    def resolve(self, cold: bool = False) -> Publication:
        """Re-solve now, whatever changed.

        Parameters
        ----------
        cold : bool — forget the kept HiGHS model and the saved basis first (a solve from scratch, as after a
            failure; for measuring what the warm start saves)
        """
        if cold:
            self._highs.forget(pending=True)
        self._dirty = True
        return self.refresh()

    def window(self) -> tuple[Instance, Window]:
        """The sub-instance the next re-solve would solve (real cars, then forecast phantoms) and its
        :class:`~gridcharge.online.window.Window`."""
        return self._windows.build(self.state)

    def kept_run_time_s(self) -> float:
        """HiGHS's cumulative run clock of the kept model [s] (0 without one)."""
        return self._highs.run_time_s

    def adopt(self, start_period: int, session_ids, power_kw) -> bool:
        """Take a plan published earlier for this very state (by a controller before a restart of the service) as
        the current publication instead of re-solving: a tied day has many optima, and a re-solve may land on
        another one. The plan is re-checked like an unchanged plan at :meth:`refresh` (the verifier, the caps).

        Parameters
        ----------
        start_period : int — the plan's first period; must be now
        session_ids : sequence of str — its rows; must be the cars of the current state
        power_kw : array (S, P) — its set-points [kW]

        Returns
        -------
        bool — adopted (False: it does not fit the state; then nothing changed, or, if it failed the check, the
        fallback was published as in any failed re-solve)
        """
        power_kw = np.asarray(power_kw, dtype=float)
        session_ids = tuple(session_ids)
        if start_period != self.now or power_kw.ndim != 2 or power_kw.shape[0] != len(session_ids) \
                or set(session_ids) != set(self.state.cars):
            return False
        previous = self.publication
        self.publication = dataclasses.replace(previous, start_period=start_period, session_ids=session_ids,
                                               power_kw=readonly(power_kw.copy()), source=self.options.solver)
        sub, _window = self._windows.build(self.state)
        if plan_tail(self.publication, self.now, build_problem(sub)) is None:
            self.publication = previous
            return False
        self._publish(reuse=True)
        self._dirty = False
        self._changes = set()
        return self.publication.source == self.options.solver

    def car_at(self, charger_id: str, when) -> str | None:
        """Id of the announced car plugged in at ``charger_id`` at time ``when`` (a date-time or ISO string with
        offset; arrival <= when < departure), or None."""
        return events.car_at(self.state, charger_id, events.to_datetime(when, "when", "car_at"))

    def setpoints(self) -> pd.Series:
        """Set-points of the current period [kW] per announced car (0 for a car not plugged in this period)."""
        pub = self.publication
        series = pd.Series(pub.column(self.now), index=pd.Index(pub.session_ids, name="session_id"),
                           name="power_kw", dtype=float)
        return series[~series.index.str.startswith(EXPECTED_PREFIX)] if len(series) else series

    def snapshot(self) -> dict:
        """A plain, comparable copy of everything an event may change: state, publication and status."""
        s = self.state
        pub = self.publication
        return {
            "now": s.now,
            "cars": {k: (v.session.model_dump(mode="json"), v.serial, v.delivered_kwh) for k, v in s.cars.items()},
            "finished": {k: (v.session.model_dump(mode="json"), v.serial, v.delivered_kwh)
                         for k, v in s.finished.items()},
            "caps": list(s.caps),
            "base_load_kw": s.base_load_kw.tolist(),
            "peak_so_far_kw": s.peak_so_far_kw,
            "next_serial": s.next_serial,
            "expected": list(s.expected),
            "publication": (pub.start_period, pub.session_ids, pub.power_kw.tolist(), pub.source, pub.status),
            "status": self.status,
        }

    def _publish(self, reuse: bool) -> None:
        """One publication: the window, then the last plan again (``reuse``), or a provisional plan and a re-solve,
        checked; the interim plan when the budget ran out; the fallback ladder when the re-solve failed."""
        opts = self.options
        started = time.perf_counter()
        sub, window = self._windows.build(self.state)
        spent = {"instance_s": time.perf_counter() - started}
        now = self.now
        if not sub.sessions:
            self._set_publication(Publication(now, (), readonly(np.zeros((0, sub.horizon.periods))), "idle", "idle",
                                              timings=Timings(**spent, total_s=time.perf_counter() - started)))
            return
        mark = time.perf_counter()
        problem = build_problem(sub)
        spent["problem_s"] = time.perf_counter() - mark
        failure = None
        schedule = None
        source = opts.solver
        if reuse:
            power = plan_tail(self.publication, now, problem)
            if power is not None:
                schedule = Schedule(problem=problem, power=power,
                                    summary=summarise(problem, power, status="optimal", solver=opts.solver))
        self._highs.begin()
        interim = None  # a provisional plan published before the re-solve
        if schedule is None and opts.provisional and opts.solver == "highs":
            interim = self._publish_provisional(problem, window, spent, started)
        if schedule is None:
            mark = time.perf_counter()
            try:
                schedule = self._solve(problem, window)
            except Exception as exc:  # noqa: BLE001 - any failure means: publish the fallback
                failure = exc
            spent["solve_s"] = time.perf_counter() - mark
        run = self._highs.last
        spent.update(highs_s=run.seconds, warm=run.warm, iterations=run.iterations)
        verification = None
        if failure is None:
            mark = time.perf_counter()
            try:
                verification = self._check(problem, schedule.power, window)
            except PublicationRejected as exc:
                failure = exc
            spent["verify_s"] = time.perf_counter() - mark
        pending = ""
        if failure is not None and self.optimum_pending:
            stopped = (f"HiGHS stopped at its {run.budget_s:g} s budget" if run.stopped == "time_limit"
                       else "the re-solve was interrupted (news is waiting)")
            pending = (f"; the optimum is pending: {stopped} after {run.iterations} simplex iterations, and the next "
                       f"publication continues from there")
            interim = interim or self._interim(problem, window)
            if interim is not None:
                # the budget ran out: the interim plan (verified) stands until the optimum is found
                why = (f"{interim.new} new car(s) filled into its headroom" if interim.new
                       else "re-checked for this state")
                self._publish_interim(problem, interim, why + pending, spent, started)
                return
        if failure is None:
            status = "optimal" if opts.solver == "highs" else f"heuristic {opts.solver}"
        else:
            ladder = fall_back(problem, window, opts.solver, opts.fallback, failure, opts.never_above_request)
            source, status, schedule, verification = ladder.source, ladder.status, ladder.schedule, ladder.verification
        status += pending
        if (source == "zero" or source.startswith("fallback")) and not self.optimum_pending:
            self._highs.forget()
        schedule.verification = verification
        self._set_publication(Publication(now, tuple(problem.session_ids), readonly(schedule.power.copy()), source,
                                          status, verification, schedule,
                                          Timings(**spent, total_s=time.perf_counter() - started)))

    def _solve(self, problem: Problem, window: Window) -> Schedule:
        """The configured solver on the window: the LP on the kept HiGHS model, or a baseline with the caps folded
        in."""
        opts = self.options
        if opts.solver != "highs":
            return rebased(problem, BASELINES[opts.solver](capped_problem(problem, window.caps_kw)))
        primal = opts.simplex == "primal" or (opts.simplex == "auto" and self._changes <= {"plug_in"})
        return solve_window(problem, window, self._highs, total_periods=self.periods, budget_s=opts.time_budget_s,
                            primal=primal, resume=not self._changes,
                            peak_floor_kw=peak_floor(problem, self.state.peak_so_far_kw),
                            never_above_request=opts.never_above_request)

    def _check(self, problem: Problem, power: np.ndarray, window: Window) -> Verification:
        return check_schedule(problem, power, window, self.options.never_above_request)

    def _set_publication(self, pub: Publication) -> None:
        self.publication = pub
        self.status = pub.status
        self.log.append(LogEntry(pub.start_period, pub.source, pub.status, len(pub.session_ids),
                                 tuple(sorted(self._changes)), pub.timings))
        if self.on_publish is not None:
            try:
                self.on_publish(pub)
            except Exception as exc:  # noqa: BLE001 - a listener must not stop the controller; the log says it
                self.log[-1] = dataclasses.replace(self.log[-1],
                                                   on_publish_error=f"{type(exc).__name__}: {first_line(exc)}")

    def _interim(self, problem: Problem, window: Window) -> InterimPlan | None:
        """The last plan (optimal, or an interim plan itself) with the new cars filled in, if it passes the checks."""
        if self.publication.source not in (self.options.solver, "provisional"):
            return None
        return interim_plan(self.publication, problem, window, self.options.never_above_request)

    def _publish_provisional(self, problem: Problem, window: Window, spent: dict,
                             started: float) -> InterimPlan | None:
        """Publish the last plan with the new cars filled greedily into its headroom, if there are new cars and it
        verifies; what it published, or None."""
        if not (self._changes <= {"plug_in"} and self.publication.start_period == self.now):
            return None
        interim = self._interim(problem, window)
        if interim is None or not interim.new:
            return None
        why = f"{interim.new} new car(s) filled into its headroom; the optimum follows"
        self._publish_interim(problem, interim, why, spent, started)
        return interim

    def _publish_interim(self, problem: Problem, interim: InterimPlan, why: str, spent: dict, started: float) -> None:
        power = interim.power_kw.copy()
        schedule = Schedule(problem=problem, power=power, summary=summarise(problem, power, status="provisional"))
        schedule.verification = interim.verification
        self._set_publication(Publication(
            self.now, tuple(problem.session_ids), readonly(power.copy()), "provisional",
            f"provisional: the last {self.options.solver} plan, {why}", interim.verification, schedule,
            Timings(**spent, total_s=time.perf_counter() - started)))
