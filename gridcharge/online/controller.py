"""Online control: a rolling-horizon controller that re-optimises on every event and always publishes a safe,
verified schedule.

A deployed charger cluster does not know tomorrow's arrivals. :class:`Controller` holds the *site* (nodes, chargers,
tariff, objective, the day's time grid and a base-load forecast) and the cars announced so far, accepts events
(:meth:`~Controller.plug_in`, :meth:`~Controller.depart`, :meth:`~Controller.update`, :meth:`~Controller.measure`,
:meth:`~Controller.set_limit`, :meth:`~Controller.forecast`, :meth:`~Controller.advance`) and, after each, publishes a
schedule for the current and every later period of the day.

Time
----
The controller acts at period boundaries. ``now`` is a period index ``0 .. T`` of the site's horizon (``T`` =
``horizon.periods``); the current time is ``horizon.start + now * step``. A publication covers periods ``now .. T-1``
(or ``now .. now + horizon_periods - 1``); its first column is the set-point for the period that starts now.

How a re-solve works (what is implemented, honestly)
----------------------------------------------------
1. A *sub-instance* (instance-v1) is built from the state over ``[now, end)``: the site's nodes with the base-load
   forecast and generation of those periods, the tariff of those periods, and one session per active car with what
   is still wanted: ``energy_kwh' = max(energy_kwh - delivered, 0)`` [kWh], ``initial_kwh' = initial_kwh + delivered``
   (battery cars), the announced arrival (a car that arrived before ``now`` is present from ``now``) and departure.
   A V2G car without ``battery_kwh`` gets an equivalent one (``battery_kwh = energy_kwh``, initial 0, floor 0: the
   same bounds ``[0, energy_kwh]`` on energy added), so that what it delivered so far shifts its bounds exactly.
   With an arrival forecast (:meth:`~Controller.expect`), every expected car whose arrival is still ahead is added
   as a charge-only *phantom* session on a virtual charger below its node: it holds capacity, flexibly, for cars not
   yet seen. Phantoms never get a set-point and are dropped when their arrival time passes.
2. The LP of that sub-instance is built anew (``gridcharge.formulation.lp.build_lp``; about 1 % of a cold solve) and
   solved by :func:`gridcharge.solvers.exact.solve_exactly` (the same charge-or-discharge rounds and infeasibility
   diagnosis as ``gridcharge.solve``) with this module's HiGHS runner, which adds to each model what instance-v1
   cannot say:

   - demand-response caps (:meth:`~Controller.set_limit`) as extra rows ``sum(charge - discharge) <= cap - base``
     for each capped node and period in the window (``Highs.addRows`` after ``passModel``); a cap that base load
     alone breaks is reported as :class:`~gridcharge.errors.InfeasibleError` (node, period, kW) before any solve;
   - with ``peak_cny_per_kw > 0``, the peak column's lower bound is the root load already reached earlier in the day
     (a peak charge is paid on the day's maximum, and what is past is sunk);
   - a V2G car that has taken more than its request (it may, and discharge before leaving) keeps the bound
     ``energy added by departure <= energy_kwh - delivered`` (negative), which instance-v1 cannot express;
   - with phantoms, export (reverse-flow) limits for the *real* cars alone, so that a phantom's charging can never
     absorb a real car's discharge.

3. **Warm start** (``warm_start=True``, the default): the controller *keeps one HiGHS object* between re-solves
   and sends it only the difference between the model it holds and the newly built LP, matched by stable keys
   (car serial, absolute period, column kind; node and period for limit rows): columns and rows that are gone are
   retired (fixed at 0 / made free), new ones added, bounds and costs that differ changed
   (:mod:`gridcharge.online.persistent`; the coefficients of what stays are fingerprinted, not assumed). HiGHS then
   re-solves from its own basis. When the model cannot be patched (a coefficient changed, e.g. a new departure
   inside a period; more retired than live columns; a MIP round; a failed solve) a fresh HiGHS object gets the LP
   and the previous optimal basis mapped onto it by the same keys (``setBasis``: an *alien* basis, new columns
   nonbasic at a bound, new rows' slacks basic). With ``simplex="auto"`` the primal simplex is used when the only
   changes since the last solve are new cars (the old basis stays primal feasible: new columns sit at 0), the dual
   simplex otherwise. Measured (``benchmarks/bench_online.py``, figures in ``benchmarks/RESULTS.md``): after one
   arrival at ~1,000 active cars HiGHS takes ~0.06 s warm against ~0.3 s cold (median); HiGHS spends ~25 ms per
   call even on an unchanged model of that size, and a few arrivals need hundreds to thousands of primal
   iterations, which sets the p95. :meth:`resolve` with ``cold=True`` forgets the model and the basis.
4. Every schedule is checked before it is published: :func:`gridcharge.verify` on the sub-instance's real cars
   (the independent verifier: every node, phase and battery rule; phantoms removed, since they must not relieve
   any limit), plus this module's check of the demand-response caps and of the over-request bounds of step 2.
   A schedule that fails is not published.
5. With ``provisional=True``, after new cars only, a *provisional* plan is published before the re-solve: the
   last optimal plan for the cars it had, each new car charging in its cheapest periods at what every node above
   it still has free (import limit, cap, per phase). It goes through the same check as step 4 (when it fails, there
   is no provisional plan), and ``on_publish`` receives it at once. Measured at 1,000 cars: 0.036 s median, 0.054 s
   p95, against 0.17 s / 0.49 s for the optimum (``benchmarks/RESULTS.md``).

Time budget
-----------
``time_limit_s`` bounds each re-solve, so that every event gets a verified publication in bounded time even when
the optimum needs thousands of simplex iterations (at 10,000 cars with V2G, one arrival can take 20 s). A re-solve
on the kept model that runs out of it is not wasted: the HiGHS object keeps its basis, the publication is the
interim plan (the provisional plan of step 5, or the last plan re-checked for the new state) when that passes the
checks of step 4, the fallback otherwise, ``status`` says the optimum is pending, and the next publication resumes
the same simplex from where it stopped (events in between are patched onto it as usual), with twice the budget of
the slice before when nothing changed in between (``MIN_CONTINUED_BUDGET_S``). HiGHS measures its time limit on
the object's cumulative run clock; the controller sets it afresh before every call. ``interrupt`` (a
callable HiGHS asks during its iterations) stops a re-solve the same way when news is waiting, so that a long
re-optimisation holds up no event: the service's solver process interrupts itself when the next events arrive.

Failure and fallback
--------------------
When the solve fails (``SolverError``: time limit ``time_limit_s`` without a kept model, numerical trouble;
``InfeasibleError``: e.g. a demand-response cap that cannot be met; a failed check; anything else), the controller
publishes the ``fallback`` heuristic's schedule (a baseline of :mod:`gridcharge.solvers.baselines`, run on the
same sub-problem with the caps folded into it as extra base load at the capped node, which also lowers that node's
per-phase headroom: conservative) after the same checks; ``status`` then starts with ``"fallback"`` and says why. If the heuristic fails too (base
load alone over a limit), it publishes **zero power for every charger**; zero never adds import load, so it is the
safest set-point there is, but if base load alone breaks a limit, zero cannot repair it: ``status`` starts with
``"zero"`` and says which check failed. A fallback does not discharge, so a V2G car above its request stays there.

Refused events
--------------
Every event is validated before anything changes; a refused event raises :class:`~gridcharge.errors.InstanceError`
whose ``problems`` name the field (``session.charger``, ``session.departure``, ``energy_delivered_kwh`` ...), the value
and what was expected, and leaves the state, the publication and the status exactly as they were (the new state is
built aside and swapped in only when every check passed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version as _package_version

import highspy
import numpy as np
import pandas as pd
from pydantic import ValidationError

from ..errors import FieldProblem, InfeasibleError, InstanceError, Overload, SolverError
from ..formulation.lp import INFEASIBLE_TOLERANCE_KW, LinearProgram
from ..instance import Charger, Horizon, Instance, Session, Tariff, battery_problems, expectation_of, load_instance
from ..problem import Problem, build_problem
from ..schedule import Schedule, battery_power_kw, delivered_kwh, node_loads, phase_loads, summarise
from ..solvers.baselines import BASELINES
from ..solvers.exact import RunResult, solve_exactly
from ..solvers.highs import HIGHS_STATUS
from ..verify import Verification, tolerance, verify
from . import persistent

#: Solvers a controller accepts: the direct HiGHS LP and the controlled baselines (``uncontrolled`` ignores limits
#: and is not a controller; it is a strategy of :func:`gridcharge.online.simulate`).
CONTROLLER_SOLVERS = ("highs", "equal_share", "edf", "llf", "greedy_cost")
#: A measured energy that differs from the controller's own account by less than this is no news [kWh].
MEASURE_TOLERANCE_KWH = 1e-9
#: A re-solve that its time budget stopped continues, at the next publication without news, with twice the budget
#: of the slice before, and at least this [s]. Slices of a fixed budget were measured to waste most of their work
#: (one arrival at 880 cars: 13 slices of 0.05 s and 2,781 simplex iterations against 1,221 uninterrupted; with
#: doubling 3 slices and 1,583 iterations); doubling bounds the slices by log2(time needed / budget), and a budget
#: below HiGHS's set-up time still ends at the optimum.
MIN_CONTINUED_BUDGET_S = 0.01
#: How often a re-solve asks the ``interrupt`` callable whether to stop [s].
INTERRUPT_POLL_S = 0.01
#: A re-solve is not interrupted before it has run this long [s], so that a steady stream of events still lets the
#: simplex progress by at least this much per publication.
INTERRUPT_MIN_RUN_S = 0.2
#: Serial numbers of forecast (phantom) cars start here (real cars count from 0).
PHANTOM_SERIAL = 1 << 19
#: Stable keys for warm starts: ``kind << KIND_SHIFT | serial * T + period`` (serial, node, period < 2**20 each).
KIND_SHIFT = 42

_BASIC = int(highspy.HighsBasisStatus.kBasic)
_LOWER = int(highspy.HighsBasisStatus.kLower)
_UPPER = int(highspy.HighsBasisStatus.kUpper)
_ZERO = int(highspy.HighsBasisStatus.kZero)
_STATUS_LOOKUP = np.empty(max(int(v) for v in highspy.HighsBasisStatus.__members__.values()) + 1, dtype=object)
for _status in highspy.HighsBasisStatus.__members__.values():
    _STATUS_LOOKUP[int(_status)] = _status


# ------------------------------------------------------------------------------------------------------------------
# state


@dataclass(frozen=True)
class Car:
    """An announced car.

    session : Session — as announced (instance-v1 fields; arrival and departure are absolute date-times)
    serial : int — the controller's own number for it, stable for the day (keys of the warm start)
    delivered_kwh : float — energy added to the battery since arrival [kWh]; negative after V2G discharge
    """

    session: Session
    serial: int
    delivered_kwh: float = 0.0


@dataclass(frozen=True)
class Cap:
    """A demand-response cap: the net load of ``node`` must stay <= ``import_limit_kw`` [kW] in periods
    ``start .. end - 1`` (absolute period indices of the site's horizon)."""

    node: str
    import_limit_kw: float
    start: int
    end: int


@dataclass(frozen=True)
class ControllerState:
    """Everything an event can change. Replaced as a whole by each accepted event (never edited in place).

    now : int — current period index (0 .. T)
    cars : dict of id → Car — announced cars that have not left
    finished : dict of id → Car — cars that left, with what they were given
    caps : tuple of Cap
    base_load_kw : numpy.ndarray, shape (N, T) — forecast of each node's own base load [kW] (read-only)
    peak_so_far_kw : float — highest root net load of the periods before ``now``, from the published set-points
        and the forecast [kW]; -inf at the start of the day
    next_serial : int
    expected : tuple of Expected — the arrival forecast (:meth:`Controller.expect`)
    """

    now: int
    cars: dict
    finished: dict
    caps: tuple
    base_load_kw: np.ndarray
    peak_so_far_kw: float
    next_serial: int
    expected: tuple = ()


@dataclass(frozen=True)
class Expected:
    """A car expected to arrive (the arrival forecast): it needs ``energy_kwh`` [kWh] between ``arrival`` and
    ``departure`` at a charger of up to ``max_charge_kw`` [kW] (phases, efficiency) below ``node``. Planned for as a
    charge-only phantom session on a virtual charger while its arrival is still in the future; never given a
    set-point."""

    id: str
    node: str
    arrival: datetime
    departure: datetime
    energy_kwh: float
    max_charge_kw: float
    phases: str = "ABC"
    efficiency: float = 1.0


#: Prefix of phantom sessions and virtual chargers of the arrival forecast in a sub-instance.
EXPECTED_PREFIX = "~expected:"


@dataclass(frozen=True)
class Publication:
    """A published schedule: set-points for periods ``start_period .. start_period + power_kw.shape[1] - 1``.

    session_ids : tuple of str — rows of ``power_kw``
    power_kw : numpy.ndarray, shape (S, P) — signed power [kW] (+ charge, - discharge), read-only
    source : str — ``"highs"``, a baseline name, ``"fallback:<name>"``, ``"zero"`` or ``"idle"`` (no car)
    status : str — what happened, in words (also :attr:`Controller.status`)
    verification : Verification or None — the verifier's verdict on the sub-instance
    schedule : Schedule or None — the sub-instance's schedule (tz-aware frames via ``schedule.power_kw``)
    timings : dict — ``instance_s``, ``problem_s``, ``solve_s`` (all of solve_exactly), ``highs_s`` (HiGHS only),
        ``verify_s``, ``total_s`` [s]; ``warm`` (a mapped basis was given), ``iterations`` (simplex)
    """

    start_period: int
    session_ids: tuple
    power_kw: np.ndarray
    source: str
    status: str
    verification: Verification | None = None
    schedule: Schedule | None = field(default=None, repr=False)
    timings: dict = field(default_factory=dict)

    def column(self, period: int) -> np.ndarray:
        """Set-points of absolute period ``period`` [kW], shape (S,); zeros outside the published range."""
        j = period - self.start_period
        if 0 <= j < self.power_kw.shape[1]:
            return self.power_kw[:, j]
        return np.zeros(len(self.session_ids))


def _refused(event: str, problems) -> InstanceError:
    return InstanceError(problems, what=f"refused {event} event")


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# ------------------------------------------------------------------------------------------------------------------
# the controller


class Controller:
    """Rolling-horizon re-optimisation of one site.

    Parameters
    ----------
    site : Instance, mapping or path
        An instance-v1 without sessions (nodes, chargers, tariff, objective; ``horizon`` is the whole day grid the
        controller runs on). Node base loads are the initial base-load forecast [kW].
    solver : str
        ``"highs"`` (the LP, optimal) or a controlled baseline (``equal_share``, ``edf``, ``llf``, ``greedy_cost``),
        re-run on each re-solve.
    horizon_periods : int, optional
        Length of the receding horizon [periods]; default: to the end of the day. With a shorter horizon a car that
        leaves after it is planned as if it left at the horizon's end with its whole remaining request.
    fallback : str
        Baseline published when a solve fails (default ``"equal_share"``).
    time_limit_s : float, optional
        Time budget of HiGHS per re-solve [s], counted from each call (not over the life of a kept model). When a
        re-solve on the kept model runs out of it, the interim plan stands — the provisional plan, or the last plan
        re-checked for the new state — and where that does not verify the ``fallback``; HiGHS keeps where it
        stopped, and the next :meth:`refresh` or :meth:`resolve` continues the simplex from there with a doubled
        budget (:attr:`optimum_pending`). Elsewhere (no kept model) reaching it is a failure: the fallback is published.
    warm_start : bool
        Give HiGHS the previous optimal basis mapped onto the new model (module notes). Default True.
    simplex : {"auto", "primal", "dual"}
        Simplex variant for warm-started solves; cold solves use HiGHS's default (dual).
    always_resolve : bool
        Re-solve at every :meth:`advance` even when nothing changed (by default the rest of the last optimal plan
        is re-verified and published again: it is still optimal when nothing changed).
    threads : int, optional
        HiGHS threads.
    expected_arrivals : sequence of mappings, optional
        An arrival forecast, as :meth:`expect` takes it. Without one the controller plans only for the cars it
        knows: it defers their charging to the cheapest periods and sells V2G energy early, and cars that arrive
        later may then find no room (see benchmarks/RESULTS.md, "Online control").
    highs_options : mapping, optional
        More HiGHS options (name → value) for every re-solve, e.g. ``{"simplex_dual_edge_weight_strategy": 1}``.
    never_above_request : bool
        Bound the energy added to a V2G car *at every period* by its request (the model bounds it only at
        departure). Without it the optimum may overfill a car in cheap periods and sell the excess back before it
        leaves; a car that then leaves early goes home above its request. With it that cannot happen, at the cost
        of that arbitrage (so the plan may cost more than the offline optimum of the instance-v1 model). Default
        False: the controller solves the same model as ``gridcharge.solve``.

    provisional : bool
        After new cars only (``plug_in``), publish at once a *provisional* plan — the last optimal plan for the cars
        it had, each new car filled greedily (cheapest periods first) into the headroom that plan leaves under every
        limit and cap above it — verified like every publication, then re-solve and publish the optimum. A charger
        so gets a safe set-point for a new car before the LP has finished. Default False.
    on_publish : callable, optional
        Called with each :class:`Publication` as it is made (provisional ones included), e.g. to push it to chargers
        while the optimum is still being computed. An exception it raises is recorded in :attr:`log`, not raised.
    interrupt : callable, optional
        Asked (no arguments) while HiGHS iterates, at most every ``INTERRUPT_POLL_S`` and not in the first
        ``INTERRUPT_MIN_RUN_S`` of a run; when it returns True the re-solve stops as if its time budget had run out
        (the interim plan stands, :attr:`optimum_pending`, the next publication continues), e.g. because news is
        waiting: a long re-optimisation then never holds up the events that arrive during it. An exception it raises
        counts as False.

    Attributes
    ----------
    state : ControllerState
    publication : Publication
    status : str — what the last publication is and why (``"optimal"``, ``"heuristic ..."``, ``"fallback ..."``,
        ``"zero ..."``, ``"idle"``)
    log : list of dict — one entry per publication (period, source, status, timings, active cars)
    auto_resolve : bool — re-solve after each accepted event (default True; see :meth:`batch`)
    """

    def __init__(self, site, solver: str = "highs", *, horizon_periods: int | None = None,
                 fallback: str = "equal_share", time_limit_s: float | None = None, warm_start: bool = True,
                 simplex: str = "auto", always_resolve: bool = False, threads: int | None = None,
                 never_above_request: bool = False, highs_options: Mapping | None = None,
                 expected_arrivals=None, provisional: bool = False,
                 on_publish: Callable[[Publication], None] | None = None,
                 interrupt: Callable[[], bool] | None = None):
        if isinstance(site, Mapping) and site.get("sessions"):
            raise _refused("site", FieldProblem("sessions", f"{len(site['sessions'])} sessions",
                                                "a Controller site has no sessions; announce cars with plug_in()"))
        inst = load_instance(site)
        if inst.sessions:
            raise _refused("site", FieldProblem("sessions", f"{len(inst.sessions)} sessions",
                                                "a Controller site has no sessions; announce cars with plug_in()"))
        if solver not in CONTROLLER_SOLVERS:
            raise ValueError(f"solver {solver!r}: a controller runs one of {', '.join(CONTROLLER_SOLVERS)}")
        if fallback not in CONTROLLER_SOLVERS[1:]:
            raise ValueError(f"fallback {fallback!r}: expected one of {', '.join(CONTROLLER_SOLVERS[1:])}")
        if simplex not in ("auto", "primal", "dual"):
            raise ValueError(f"simplex {simplex!r}: expected auto, primal or dual")
        if horizon_periods is not None and (int(horizon_periods) != horizon_periods or horizon_periods < 1):
            raise ValueError(f"horizon_periods {horizon_periods!r}: expected a whole number >= 1")
        self.site = inst
        self.solver = solver
        self.fallback = fallback
        self.horizon_periods = None if horizon_periods is None else int(horizon_periods)
        self.time_limit_s = time_limit_s
        self.warm_start = warm_start
        self.simplex = simplex
        self.always_resolve = always_resolve
        self.threads = threads
        self.never_above_request = bool(never_above_request)
        self.highs_options = dict(highs_options or {})
        self.provisional = bool(provisional)
        self.on_publish = on_publish
        self.interrupt = interrupt
        self.auto_resolve = True

        h = inst.horizon
        self.periods = h.periods
        self.step = timedelta(minutes=h.step_minutes)
        self.node_ids = [n.id for n in inst.nodes]
        self._node_index = {nid: i for i, nid in enumerate(self.node_ids)}
        self._chargers = {c.id: c for c in inst.chargers}
        T = h.periods
        base = np.array([np.broadcast_to(np.asarray(n.base_load_kw, dtype=float), (T,)) for n in inst.nodes])
        self._generation = np.array([np.broadcast_to(np.asarray(n.generation_kw, dtype=float), (T,))
                                     for n in inst.nodes])
        self._import_price = np.broadcast_to(np.asarray(inst.tariff.import_cny_per_kwh, dtype=float), (T,)).copy()
        self._export_price = np.broadcast_to(np.asarray(inst.tariff.export_cny_per_kwh, dtype=float), (T,)).copy()
        self.state = ControllerState(now=0, cars={}, finished={}, caps=(), base_load_kw=_readonly(base.copy()),
                                     peak_so_far_kw=-math.inf, next_serial=0)
        self.publication = Publication(0, (), _readonly(np.zeros((0, T))), "idle", "idle")

        self.status = "idle"
        self.log: list[dict] = []
        self._dirty = False
        self._batch_depth = 0
        self._changes: set[str] = set()
        self._saved_basis = None  # (col_keys, col_status, row_keys, row_status), keys sorted
        self._model: persistent.Model | None = None  # the HiGHS object kept between re-solves
        # (simplex strategy, budget of the next slice [s]) of a kept model that its time budget stopped
        self._pending: tuple[int, float] | None = None
        self._watched = None  # the HiGHS object whose simplex asks ``interrupt``
        self._run_started = 0.0  # when the current HiGHS run started [perf_counter s]
        self._node_cache = None  # ((now, end), base-load array, node copies) of the last sub-instance
        self._session_cache: dict = {}  # id → (car, end time, sub-instance session, over-request bound)
        if expected_arrivals is not None:  # no car yet: nothing to re-solve
            self.auto_resolve = False
            self.expect(expected_arrivals)
            self.auto_resolve = True
        self._last_run: dict = {}

    # ---------------------------------------------------------------------------------------------------------
    # time

    @property
    def now(self) -> int:
        """Current period index (0 .. T)."""
        return self.state.now

    def time_of(self, period: int) -> datetime:
        """Start of period ``period`` (``period == T`` is the end of the day)."""
        return self.site.horizon.start + self.step * period

    @property
    def time(self) -> datetime:
        """The current time: start of period ``now``."""
        return self.time_of(self.state.now)

    def _period(self, value, path: str, event: str, *, rounding: str) -> int:
        """A period index from an int or a date-time / ISO string (``rounding``: floor or ceil to a boundary)."""
        if isinstance(value, (bool, np.bool_)):
            raise _refused(event, FieldProblem(path, value, "a period index or an ISO-8601 date-time with offset"))
        if isinstance(value, (int, np.integer)):
            return int(value)
        when = self._datetime(value, path, event)
        periods = (when - self.site.horizon.start) / self.step
        return int(math.floor(periods + 1e-9) if rounding == "floor" else math.ceil(periods - 1e-9))

    def _datetime(self, value, path: str, event: str) -> datetime:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise _refused(event, FieldProblem(path, value, "an ISO-8601 date-time with UTC offset")) from None
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise _refused(event, FieldProblem(path, value, "an ISO-8601 date-time with UTC offset"))
        return value

    # ---------------------------------------------------------------------------------------------------------
    # events

    def plug_in(self, session: Mapping) -> None:
        """A car announces itself: an instance-v1 session mapping (``id``, ``charger``, ``departure``,
        ``energy_kwh`` [kWh], optional ``arrival`` (default: now), ``max_charge_kw``, ``max_discharge_kw`` (V2G
        consent, [kW]), ``battery_kwh``, ``initial_kwh``, ``min_kwh`` [kWh]).

        An arrival in the future is a reservation; one in the past means the car is plugged in from now.
        Refused: an unknown key or bad value, an id already used today, an unknown charger, a charger occupied by
        another car during the new car's stay, a departure not after the current time (or not after arrival, or
        after the end of the day), a battery that does not fit.
        """
        event = "plug_in"
        if not isinstance(session, Mapping):
            raise _refused(event, FieldProblem("session", type(session).__name__, "a mapping of session fields"))
        data = dict(session)
        data.setdefault("arrival", self.time.isoformat())
        try:
            parsed = Session.model_validate(data)
        except ValidationError as exc:
            raise _refused(event, _session_problems(exc)) from None
        state = self.state
        problems: list[FieldProblem] = []
        if parsed.id in state.cars or parsed.id in state.finished:
            problems.append(FieldProblem("session.id", parsed.id, "an id not used by another car today"))
        if parsed.charger not in self._chargers:
            known = ", ".join(repr(c) for c in list(self._chargers)[:5])
            problems.append(FieldProblem("session.charger", parsed.charger, f"the id of a charger (known: {known})"))
        problems += self._departure_problems("session.departure", parsed.arrival, parsed.departure)
        problems += battery_problems("session", parsed)
        if not problems:
            problems += self._occupied(parsed.charger, parsed.arrival, parsed.departure, "session.charger")
        if problems:
            raise _refused(event, problems)
        car = Car(session=parsed, serial=state.next_serial)
        self._commit(dataclasses.replace(state, cars={**state.cars, parsed.id: car},
                                         next_serial=state.next_serial + 1), "plug_in")

    def depart(self, session_id: str, at=None) -> None:
        """Car ``session_id`` leaves at ``at`` (date-time or ISO string; default now).

        ``at`` not after the current time: the car has left (it is removed; a car that has not arrived yet is a
        cancelled reservation). ``at`` in the future: the announced departure moves there (early or late).
        """
        event = "depart"
        car = self._car(session_id, event)
        when = self.time if at is None else self._datetime(at, "at", event)
        state = self.state
        if when <= self.time:
            cars = dict(state.cars)
            del cars[session_id]
            self._commit(dataclasses.replace(state, cars=cars, finished={**state.finished, session_id: car}),
                         "depart")
            return
        self._change_session(event, car, {"departure": when}, "at")

    def update(self, session_id: str, *, departure=None, energy_kwh: float | None = None) -> None:
        """The driver changes their wishes: a new ``departure`` (date-time or ISO string) and/or ``energy_kwh``
        (total energy to add since arrival [kWh])."""
        event = "update"
        car = self._car(session_id, event)
        if departure is None and energy_kwh is None:
            raise _refused(event, FieldProblem("departure", None, "a new departure and/or energy_kwh"))
        change = {}
        if departure is not None:
            change["departure"] = self._datetime(departure, "departure", event)
        if energy_kwh is not None:
            if isinstance(energy_kwh, bool) or not isinstance(energy_kwh, (int, float, np.number)) \
                    or not math.isfinite(energy_kwh) or energy_kwh < 0:
                raise _refused(event, FieldProblem("energy_kwh", energy_kwh, "a finite number >= 0 [kWh]"))
            change["energy_kwh"] = float(energy_kwh)
        self._change_session(event, car, change, "departure")

    def measure(self, session_id, energy_delivered_kwh: float | None = None) -> None:
        """The meter says car ``session_id`` has received ``energy_delivered_kwh`` since arrival (into the battery,
        after efficiency) [kWh]. Also ``measure({id: kWh, ...})`` for many cars at once (all or nothing).

        Refused: an unknown car, a value that is not finite, negative energy for a car without ``battery_kwh``,
        a value outside the battery (``min_kwh - initial_kwh .. battery_kwh - initial_kwh``).
        A value within ``MEASURE_TOLERANCE_KWH`` of the controller's own account changes nothing.
        """
        event = "measure"
        values = session_id if isinstance(session_id, Mapping) else {session_id: energy_delivered_kwh}
        problems: list[FieldProblem] = []
        changed: dict[str, Car] = {}
        for sid, value in values.items():
            if sid not in self.state.cars:
                problems.append(FieldProblem("session_id", sid, "the id of an announced car that has not left"))
                continue
            car = self.state.cars[sid]
            path = "energy_delivered_kwh" if len(values) == 1 else f"energy_delivered_kwh[{sid!r}]"
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                problems.append(FieldProblem(path, value, "a finite number [kWh]"))
                continue
            low, high = _energy_bounds(car.session)
            if value < low - 1e-9:
                expected = ">= 0: energy delivered cannot be negative" if low == 0 else \
                    f">= {low:g} (min_kwh - initial_kwh: the battery cannot go below its floor)"
                problems.append(FieldProblem(path, value, f"must be {expected} [kWh]"))
                continue
            if high is not None and value > high + 1e-9:
                problems.append(FieldProblem(path, value, f"must be <= {high:g} (battery_kwh - initial_kwh) [kWh]"))
                continue
            if abs(float(value) - car.delivered_kwh) > MEASURE_TOLERANCE_KWH:
                changed[sid] = dataclasses.replace(car, delivered_kwh=float(value))
        if problems:
            raise _refused(event, problems)
        if changed:
            self._commit(dataclasses.replace(self.state, cars={**self.state.cars, **changed}), "measure")

    def set_limit(self, node_id: str, import_limit_kw: float, start, end) -> None:
        """A demand-response cap: node ``node_id``'s net load <= ``import_limit_kw`` [kW] from ``start`` to ``end``
        (period indices, or date-times rounded outwards to period boundaries). Caps add up by minimum with each
        other and with the node's own limit. Refused: unknown node, a limit that is not a finite number >= 0,
        ``end`` not after ``start`` or not after now, a window outside the day."""
        event = "set_limit"
        problems = []
        if node_id not in self._node_index:
            problems.append(FieldProblem("node_id", node_id, f"the id of a node (known: "
                                                             f"{', '.join(map(repr, self.node_ids[:5]))})"))
        if isinstance(import_limit_kw, bool) or not isinstance(import_limit_kw, (int, float, np.number)) \
                or not math.isfinite(import_limit_kw) or import_limit_kw < 0:
            problems.append(FieldProblem("import_limit_kw", import_limit_kw, "a finite number >= 0 [kW]"))
        first = self._period(start, "start", event, rounding="floor")
        last = self._period(end, "end", event, rounding="ceil")
        if first < 0 or first >= self.periods:
            problems.append(FieldProblem("start", start, f"within the day: period 0 .. {self.periods - 1}"))
        if last <= first:
            problems.append(FieldProblem("end", end, "after start"))
        elif last <= self.now:
            problems.append(FieldProblem("end", end, f"after the current period {self.now} (the window is over)"))
        elif last > self.periods:
            problems.append(FieldProblem("end", end, f"not after the end of the day (period {self.periods})"))
        if problems:
            raise _refused(event, problems)
        cap = Cap(node_id, float(import_limit_kw), first, last)
        self._commit(dataclasses.replace(self.state, caps=self.state.caps + (cap,)), "set_limit")

    def forecast(self, node_id: str, base_load_kw, start: int | None = None) -> None:
        """A new forecast of node ``node_id``'s own base load [kW] from period ``start`` (default now): one number
        for every remaining period, or one number per period from ``start`` on (at most to the end of the day)."""
        event = "forecast"
        problems = []
        if node_id not in self._node_index:
            problems.append(FieldProblem("node_id", node_id, "the id of a node"))
        first = self.now if start is None else start
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or not self.now <= first < self.periods:
            problems.append(FieldProblem("start", start, f"a period index from now ({self.now}) to {self.periods - 1}"))
            first = self.now
        values = np.atleast_1d(np.asarray(base_load_kw, dtype=object))
        try:
            numbers = values.astype(float)
        except (TypeError, ValueError):
            numbers = None
        if numbers is None or values.ndim != 1 or any(isinstance(v, bool) for v in values) \
                or not np.all(np.isfinite(numbers)) or np.any(numbers < 0):
            problems.append(FieldProblem("base_load_kw", base_load_kw, "a finite number >= 0, or a list of them [kW]"))
        elif np.ndim(base_load_kw) and len(numbers) > self.periods - first:
            problems.append(FieldProblem("base_load_kw", f"a list of {len(numbers)} numbers",
                                         f"at most {self.periods - first} (one per period to the end of the day)"))
        if problems:
            raise _refused(event, problems)
        base = self.state.base_load_kw.copy()
        i = self._node_index[node_id]
        if np.ndim(base_load_kw):
            base[i, first:first + len(numbers)] = numbers
        else:
            base[i, first:] = numbers[0]
        self._commit(dataclasses.replace(self.state, base_load_kw=_readonly(base)), "forecast")

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
        event = "expect"
        allowed = {"id", "node", "arrival", "departure", "energy_kwh", "max_charge_kw", "phases", "efficiency"}
        problems: list[FieldProblem] = []
        parsed = []
        seen: set = set()
        end = self.time_of(self.periods)
        for i, car in enumerate(cars):
            where = f"cars[{i}]"
            if not isinstance(car, Mapping):
                problems.append(FieldProblem(where, type(car).__name__, "a mapping of expected-car fields"))
                continue
            found = [FieldProblem(f"{where}.{k}", car[k], f"unknown key (allowed: {', '.join(sorted(allowed))})")
                     for k in car if k not in allowed]
            found += [FieldProblem(f"{where}.{k}", "(missing)", "missing required key")
                      for k in ("id", "node", "arrival", "departure", "energy_kwh", "max_charge_kw") if k not in car]
            if found:
                problems += found
                continue
            if not isinstance(car["id"], str) or not car["id"] or car["id"] in seen:
                found.append(FieldProblem(f"{where}.id", car["id"], "a non-empty id not given to another expected car"))
            seen.add(car["id"])
            if car["node"] not in self._node_index:
                found.append(FieldProblem(f"{where}.node", car["node"], "the id of a node"))
            times = []
            for key in ("arrival", "departure"):
                try:
                    times.append(self._datetime(car[key], f"{where}.{key}", event))
                except InstanceError as exc:
                    found += exc.problems
            if len(times) == 2 and not times[0] < times[1] <= end:
                found.append(FieldProblem(f"{where}.departure", str(car["departure"]),
                                          f"after arrival and not after the end of the day {end.isoformat()}"))
            for key, low, closed, high in (("energy_kwh", 0.0, True, math.inf), ("max_charge_kw", 0.0, False, math.inf),
                                           ("efficiency", 0.0, False, 1.0)):
                value = car.get(key, 1.0)
                ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value) \
                    and (value >= low if closed else value > low) and value <= high
                if not ok:
                    found.append(FieldProblem(f"{where}.{key}", value, f"a number {'>=' if closed else '>'} {low:g}"
                                                                       + (f" and <= {high:g}" if high < math.inf else "")))
            if car.get("phases", "ABC") not in ("A", "B", "C", "ABC"):
                found.append(FieldProblem(f"{where}.phases", car["phases"], "one of A, B, C, ABC"))
            if found:
                problems += found
                continue
            parsed.append(Expected(car["id"], car["node"], times[0], times[1], float(car["energy_kwh"]),
                                   float(car["max_charge_kw"]), car.get("phases", "ABC"),
                                   float(car.get("efficiency", 1.0))))
        if problems:
            raise _refused(event, problems)
        self._commit(dataclasses.replace(self.state, expected=tuple(parsed)), "expect")

    def advance(self, to_period) -> None:
        """Time moves on to period ``to_period`` (index or date-time on a boundary, rounded down).

        Each car is credited with the energy of its published set-points for the elapsed periods (correct it with
        :meth:`measure`); cars whose departure is not after the new time leave. Refused: a period before now or
        after the end of the day.
        """
        event = "advance"
        to = self._period(to_period, "to_period", event, rounding="floor")
        if to < self.now or to > self.periods:
            raise _refused(event, FieldProblem("to_period", to_period,
                                               f"a period from now ({self.now}) to the end of the day ({self.periods})"))
        if to == self.now:
            return
        state = self.state
        pub = self.publication
        cars = dict(state.cars)
        peak = state.peak_so_far_kw
        if pub.schedule is not None and len(pub.session_ids):
            problem = pub.schedule.problem
            a, b = state.now - pub.start_period, to - pub.start_period
            power = pub.power_kw[:, a:b]
            presence = problem.presence[:, a:b]
            gained = (battery_power_kw(power, problem.efficiency[:, None]) * presence).sum(axis=1) * problem.step_hours
            for sid, kwh in zip(pub.session_ids, gained):
                if sid in cars and kwh != 0.0:
                    car = cars[sid]
                    cars[sid] = dataclasses.replace(car, delivered_kwh=car.delivered_kwh + float(kwh))
            root_load = node_loads(problem, pub.power_kw)[problem.root, a:b]
            if len(root_load):
                peak = max(peak, float(root_load.max()))
        else:  # no car: the root carries every node's own net load
            own = state.base_load_kw - self._generation
            peak = max(peak, float(own[:, state.now:to].sum(axis=0).max()))
        end_time = self.time_of(to)
        finished = dict(state.finished)
        for sid in [sid for sid, car in cars.items() if car.session.departure <= end_time]:
            finished[sid] = cars.pop(sid)
        self.state = dataclasses.replace(state, now=to, cars=cars, finished=finished, peak_so_far_kw=peak)
        self._changes.add("advance")
        if any(self.time_of(state.now) < e.arrival <= end_time for e in state.expected):
            self._dirty = True  # forecast cars left the plan: re-plan the rest
        self._after_change()

    # ---------------------------------------------------------------------------------------------------------
    # event helpers

    def _car(self, session_id, event: str) -> Car:
        if session_id not in self.state.cars:
            raise _refused(event, FieldProblem("session_id", session_id,
                                               "the id of an announced car that has not left"))
        return self.state.cars[session_id]

    def _departure_problems(self, path: str, arrival: datetime, departure: datetime) -> list[FieldProblem]:
        end = self.time_of(self.periods)
        if departure <= arrival:
            return [FieldProblem(path, departure.isoformat(), f"must be after arrival {arrival.isoformat()}")]
        if departure <= self.time:
            return [FieldProblem(path, departure.isoformat(),
                                 f"must be after the current time {self.time.isoformat()} (it is in the past)")]
        if departure > end:
            return [FieldProblem(path, departure.isoformat(), f"must not be after the end of the day {end.isoformat()}")]
        return []

    def _occupied(self, charger: str, arrival: datetime, departure: datetime, path: str,
                  ignore: str | None = None) -> list[FieldProblem]:
        for other in self.state.cars.values():
            s = other.session
            if s.id != ignore and s.charger == charger and s.arrival < departure and arrival < s.departure:
                return [FieldProblem(path, charger, f"a free charger: car {s.id!r} is on it from "
                                                    f"{s.arrival.isoformat()} to {s.departure.isoformat()}")]
        return []

    def _change_session(self, event: str, car: Car, change: dict, departure_path: str) -> None:
        session = car.session
        problems = []
        if "departure" in change:
            problems += self._departure_problems(departure_path, session.arrival, change["departure"])
            if not problems:
                problems += self._occupied(session.charger, session.arrival, change["departure"], departure_path,
                                           ignore=session.id)
        updated = session.model_copy(update=change)
        if "energy_kwh" in change:
            problems += [dataclasses.replace(p, path="energy_kwh") if p.path.endswith(".energy_kwh") else p
                         for p in battery_problems("session", updated)]
        if problems:
            raise _refused(event, problems)
        new_car = dataclasses.replace(car, session=updated)
        self._commit(dataclasses.replace(self.state, cars={**self.state.cars, session.id: new_car}), event)

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
        reuse = (not self._dirty and not self.always_resolve and pub.source == self.solver
                 and pub.schedule is not None and pub.start_period <= self.now)
        if not self._dirty and pub.start_period == self.now and pub.source in (self.solver, "idle") \
                and not self.always_resolve:
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
        return self._pending is not None and self._model is not None

    def resolve(self, cold: bool = False) -> Publication:
        """Re-solve now, whatever changed.

        Parameters
        ----------
        cold : bool — forget the kept HiGHS model and the saved basis first (a solve from scratch, as after a
            failure; for measuring what the warm start saves)
        """
        if cold:
            self._saved_basis = self._model = self._pending = None
        self._dirty = True
        return self.refresh()

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
                                               power_kw=_readonly(power_kw.copy()), source=self.solver)
        sub, _meta = self._sub_instance()
        if self._tail(build_problem(sub)) is None:
            self.publication = previous
            return False
        self._publish(reuse=True)
        self._dirty = False
        self._changes = set()
        return self.publication.source == self.solver

    def car_at(self, charger_id: str, when) -> str | None:
        """Id of the announced car plugged in at ``charger_id`` at time ``when`` (a date-time or ISO string with
        offset; arrival <= when < departure), or None."""
        when = self._datetime(when, "when", "car_at")
        for session_id, car in self.state.cars.items():
            s = car.session
            if s.charger == charger_id and s.arrival <= when < s.departure:
                return session_id
        return None

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
        started = time.perf_counter()
        timings: dict = {}
        sub, meta = self._sub_instance()
        timings["instance_s"] = time.perf_counter() - started
        now = self.now
        if not sub.sessions:
            T_sub = sub.horizon.periods
            self._set_publication(Publication(now, (), _readonly(np.zeros((0, T_sub))), "idle", "idle",
                                              timings={**timings, "total_s": time.perf_counter() - started}))
            return
        mark = time.perf_counter()
        problem = build_problem(sub)
        timings["problem_s"] = time.perf_counter() - mark
        caps = self._caps_array(problem)
        meta["caps"] = caps
        failure = None
        schedule = None
        source = self.solver
        if reuse:
            power = self._tail(problem)
            if power is not None:
                schedule = Schedule(problem=problem, power=power,
                                    summary=summarise(problem, power, status="optimal", solver=self.solver))
                source = self.solver
        self._last_run = {}
        interim = None  # (power, verification, new cars) of a provisional plan published before the re-solve
        if schedule is None and self.provisional and self.solver == "highs":
            interim = self._publish_provisional(problem, meta, timings, started)
        if schedule is None:
            mark = time.perf_counter()
            try:
                if self.solver == "highs":
                    schedule = self._solve_highs(problem, caps, meta)
                else:
                    schedule = BASELINES[self.solver](_capped_problem(problem, caps))
                    schedule = _rebased(problem, schedule)
            except Exception as exc:  # noqa: BLE001 - any failure means: publish the fallback
                failure = exc
            timings["solve_s"] = time.perf_counter() - mark
        timings["highs_s"] = self._last_run.get("seconds", 0.0)
        timings["warm"] = self._last_run.get("warm", False)
        timings["iterations"] = self._last_run.get("iterations", 0)
        verification = None
        if failure is None:
            mark = time.perf_counter()
            try:
                verification = self._check(problem, schedule.power, meta)
            except SolverError as exc:
                failure = exc
            timings["verify_s"] = time.perf_counter() - mark
        pending = ""
        if failure is not None and self.optimum_pending:
            budget = self._last_run["budget_s"]
            stopped = (f"HiGHS stopped at its {budget:g} s budget" if self._last_run["stopped"] == "time_limit"
                       else "the re-solve was interrupted (news is waiting)")
            pending = (f"; the optimum is pending: {stopped} after {timings['iterations']} simplex iterations, and "
                       f"the next publication continues from there")
            interim = interim or self._interim_plan(problem, meta)
            if interim is not None:
                # the budget ran out: the interim plan (verified) stands until the optimum is found
                power, verification, n_new = interim
                why = f"{n_new} new car(s) filled into its headroom" if n_new else "re-checked for this state"
                self._publish_interim(problem, power.copy(), verification, why + pending, timings, started)
                return
        if failure is None:
            status = "optimal" if self.solver == "highs" else f"heuristic {self.solver}"
        else:
            reason = f"{type(failure).__name__}: {_first_line(failure)}"
            source = f"fallback:{self.fallback}"
            status = f"fallback {self.fallback}: the {self.solver} re-solve failed ({reason})"
            try:
                # a cap that base load alone breaks cannot be met by any charging: there the fallback charges
                # nothing below the capped node, and says so (rather than stopping every charger of the site)
                fallback_caps, unattainable = _attainable(problem, caps, self.now)
                schedule = _rebased(problem, BASELINES[self.fallback](_capped_problem(problem, fallback_caps)))
                verification = self._check(problem, schedule.power, {**meta, "caps": fallback_caps})
                if unattainable:
                    status += (f"; demand-response cap unattainable, base load alone is over it ({unattainable}): "
                               f"no car below that node charges then")
            except Exception as exc:  # noqa: BLE001 - the last resort is zero power
                source = "zero"
                status = (f"zero power for every charger: the {self.solver} re-solve failed ({reason}) and the "
                          f"{self.fallback} fallback failed ({type(exc).__name__}: {_first_line(exc)}); zero adds "
                          f"no load, but it cannot relieve a limit that base load alone breaks")
                power = np.zeros((problem.n_sessions, problem.n_periods))
                schedule = Schedule(problem=problem, power=power, summary=summarise(problem, power, status="zero"))
                verification = verify(meta["real_instance"], power[:meta["n_real"]])
                if not verification.ok:
                    status += f" ({len(verification.violations)} violation(s) remain at zero power)"
        status += pending
        if (source == "zero" or source.startswith("fallback")) and not self.optimum_pending:
            self._saved_basis = self._model = None
        timings["total_s"] = time.perf_counter() - started
        schedule.verification = verification
        self._set_publication(Publication(now, tuple(problem.session_ids), _readonly(schedule.power.copy()), source,
                                          status, verification, schedule, timings))

    def _set_publication(self, pub: Publication) -> None:
        self.publication = pub
        self.status = pub.status
        self.log.append({"period": pub.start_period, "source": pub.source, "status": pub.status,
                         "active_cars": len(pub.session_ids), "changes": sorted(self._changes), **pub.timings})
        if self.on_publish is not None:
            try:
                self.on_publish(pub)
            except Exception as exc:  # noqa: BLE001 - a listener must not stop the controller; the log says it
                self.log[-1]["on_publish_error"] = f"{type(exc).__name__}: {_first_line(exc)}"

    def _last_plan(self, problem: Problem) -> tuple[np.ndarray, np.ndarray] | None:
        """The last plan's set-points from now on, in the order of ``problem``'s sessions (zero rows for cars it did
        not have), and each session's row in it (-1: new). None when it does not cover ``problem``'s periods."""
        pub = self.publication
        index = {sid: i for i, sid in enumerate(pub.session_ids)}
        rows = np.array([index.get(sid, -1) for sid in problem.session_ids], dtype=np.int64)
        a = self.now - pub.start_period
        if a < 0 or pub.power_kw.shape[1] - a < problem.n_periods:
            return None
        power = np.zeros((problem.n_sessions, problem.n_periods))
        known = rows >= 0
        power[known] = pub.power_kw[rows[known], a:a + problem.n_periods]
        return np.where(problem.presence > 0, power, 0.0), rows

    def _tail(self, problem: Problem) -> np.ndarray | None:
        """The last plan's set-points from now on, in the order of ``problem``'s sessions (None if a car is new)."""
        last = self._last_plan(problem)
        return None if last is None or (last[1] < 0).any() else last[0]

    def _publish_provisional(self, problem: Problem, meta: dict, timings: dict,
                             started: float) -> tuple[np.ndarray, Verification, int] | None:
        """Publish the last plan with the new cars filled greedily into its headroom, if there are new cars and it
        verifies; what it published, as :meth:`_interim_plan` gives it, or None."""
        if not (self._changes <= {"plug_in"} and self.publication.start_period == self.now):
            return None
        interim = self._interim_plan(problem, meta)
        if interim is None or not interim[2]:
            return None
        power, verification, n_new = interim
        why = f"{n_new} new car(s) filled into its headroom; the optimum follows"
        self._publish_interim(problem, power, verification, why, {**timings}, started)
        return interim

    def _interim_plan(self, problem: Problem, meta: dict) -> tuple[np.ndarray, Verification, int] | None:
        """The last plan (optimal, or an interim plan itself) from now on, each new car filled greedily into the
        headroom it leaves, if it passes the checks of every publication: ``(power, verification, new cars)``."""
        if self.publication.source not in (self.solver, "provisional"):
            return None
        last = self._last_plan(problem)
        if last is None:
            return None
        n_real = meta["n_real"]
        new = np.flatnonzero(last[1][:n_real] < 0)
        power = last[0]
        power[n_real:] = 0.0  # forecast phantoms hold no real load
        power = _greedy_new_cars(problem, power, new, meta["caps"])
        try:
            verification = self._check(problem, power, meta)
        except SolverError:
            return None  # the old plan no longer fits (or the greedy fill missed a rule)
        return power, verification, len(new)

    def _publish_interim(self, problem: Problem, power: np.ndarray, verification: Verification, why: str,
                         timings: dict, started: float) -> None:
        schedule = Schedule(problem=problem, power=power, summary=summarise(problem, power, status="provisional"))
        schedule.verification = verification
        self._set_publication(Publication(
            self.now, tuple(problem.session_ids), _readonly(power.copy()), "provisional",
            f"provisional: the last {self.solver} plan, {why}", verification, schedule,
            {**timings, "total_s": time.perf_counter() - started}))

    # ---------------------------------------------------------------------------------------------------------
    # the sub-instance

    def _sub_instance(self) -> tuple[Instance, dict]:
        """instance-v1 over [now, end) with what each car still wants (module notes, step 1)."""
        state = self.state
        site = self.site
        now = state.now
        end = self.periods if self.horizon_periods is None else min(self.periods, now + self.horizon_periods)
        end = max(end, now + 1) if now < self.periods else now + 1
        end_time = self.time_of(end)
        horizon = Horizon.model_construct(start=self.time, step_minutes=site.horizon.step_minutes,
                                          periods=end - now, timezone=site.horizon.timezone)

        def series(values: np.ndarray):
            if len(values) == 0:
                return 0.0
            return float(values[0]) if np.all(values == values[0]) else values.tolist()

        cached = self._node_cache
        if cached is not None and cached[0] == (now, end) and cached[1] is state.base_load_kw:
            nodes = cached[2]
        else:
            base = state.base_load_kw[:, now:end] if now < self.periods else np.zeros((len(site.nodes), 1))
            gen = self._generation[:, now:end] if now < self.periods else np.zeros((len(site.nodes), 1))
            nodes = [n.model_copy(update={"base_load_kw": series(base[i]), "generation_kw": series(gen[i])})
                     for i, n in enumerate(site.nodes)]
            self._node_cache = ((now, end), state.base_load_kw, nodes)
        prices_in = self._import_price[now:end] if now < self.periods else np.zeros(1)
        prices_out = self._export_price[now:end] if now < self.periods else np.zeros(1)
        tariff = Tariff.model_construct(import_cny_per_kwh=series(prices_in), export_cny_per_kwh=series(prices_out))
        sessions = []
        serials = []
        final_upper = []
        session_cache = {}
        for car in sorted(state.cars.values(), key=lambda c: c.serial):
            s = car.session
            if s.departure <= self.time or s.arrival >= end_time:
                continue
            hit = self._session_cache.get(s.id)
            if hit is not None and hit[0] is car and hit[1] == end_time:
                session_cache[s.id] = hit
                sessions.append(hit[2])
                serials.append(car.serial)
                final_upper.append(hit[3])
                continue
            d = car.delivered_kwh
            update = {"energy_kwh": max(s.energy_kwh - d, 0.0)}
            if s.departure > end_time:
                update["departure"] = end_time
            over = math.nan
            v2g = min(self._chargers[s.charger].max_discharge_kw, s.max_discharge_kw) > 0
            if s.battery_kwh is not None:
                initial = s.initial_kwh or 0.0
                floor = initial if s.min_kwh is None else s.min_kwh
                update["initial_kwh"] = min(max(initial + d, floor), s.battery_kwh)
                update["min_kwh"] = floor
                update["energy_kwh"] = min(update["energy_kwh"], s.battery_kwh - update["initial_kwh"])
                if v2g and d > s.energy_kwh:
                    over = s.energy_kwh - d  # negative: the car must give back what it took above its request
            elif v2g and s.energy_kwh > 0:
                # the same bounds [0, energy] on energy added, as a battery, so that what was delivered shifts them
                update.update(battery_kwh=s.energy_kwh, initial_kwh=min(max(d, 0.0), s.energy_kwh), min_kwh=0.0)
                update["energy_kwh"] = s.energy_kwh - update["initial_kwh"]
            sessions.append(s.model_copy(update=update))
            serials.append(car.serial)
            final_upper.append(over)
            session_cache[s.id] = (car, end_time, sessions[-1], over)
        self._session_cache = session_cache
        chargers = site.chargers
        phantoms = [e for e in state.expected if self.time < e.arrival < end_time]
        if phantoms:
            chargers = list(chargers)
            for k, e in enumerate(state.expected):
                if not self.time < e.arrival < end_time:
                    continue
                name = EXPECTED_PREFIX + e.id
                chargers.append(Charger.model_construct(id=name, node=e.node, max_charge_kw=e.max_charge_kw,
                                                        max_discharge_kw=0.0, phases=e.phases,
                                                        efficiency=e.efficiency))
                sessions.append(Session.model_construct(
                    id=name, charger=name, arrival=e.arrival, departure=min(e.departure, end_time),
                    energy_kwh=e.energy_kwh, max_charge_kw=None, max_discharge_kw=0.0, battery_kwh=None,
                    initial_kwh=None, min_kwh=None))
                serials.append(PHANTOM_SERIAL + k)
                final_upper.append(math.nan)
        sub = Instance.model_construct(format=site.format, name=f"{site.name} [online, period {now}]",
                                       horizon=horizon, nodes=nodes, chargers=chargers, sessions=sessions,
                                       tariff=tariff, objective=site.objective)
        n_real = len(sessions) - len(phantoms)
        real = sub if not phantoms else Instance.model_construct(
            format=site.format, name=sub.name, horizon=horizon, nodes=nodes, chargers=site.chargers,
            sessions=sessions[:n_real], tariff=tariff, objective=site.objective)
        meta = {"serials": np.asarray(serials, dtype=np.int64), "final_upper": np.asarray(final_upper, dtype=float),
                "now": now, "end": end, "never_above_request": self.never_above_request, "n_real": n_real,
                "real_instance": real}
        return sub, meta

    def _caps_array(self, problem: Problem) -> np.ndarray:
        """Demand-response caps per node and sub-horizon period, shape (N, T_sub) [kW]; inf where none."""
        caps = np.full((problem.n_nodes, problem.n_periods), np.inf)
        now = self.now
        for cap in self.state.caps:
            a, b = max(cap.start - now, 0), min(cap.end - now, problem.n_periods)
            if a < b:
                i = self._node_index[cap.node]
                caps[i, a:b] = np.minimum(caps[i, a:b], cap.import_limit_kw)
        return caps

    # ---------------------------------------------------------------------------------------------------------
    # the LP solve with HiGHS

    def _solve_highs(self, problem: Problem, caps: np.ndarray, meta: dict) -> Schedule:
        dr = _extra_rows(problem, caps, meta["n_real"])
        peak_floor = self.state.peak_so_far_kw if problem.peak_cost > 0 and math.isfinite(
            self.state.peak_so_far_kw) else None

        def run(lp: LinearProgram) -> RunResult:
            return self._run(lp, problem, dr, meta, peak_floor)

        return solve_exactly(problem, run, solver="highs", solver_version=_package_version("highspy"),
                             method="simplex")

    def _run(self, lp: LinearProgram, problem: Problem, dr: dict, meta: dict, peak_floor) -> RunResult:
        """One HiGHS call: patch bounds; patch the kept HiGHS model (or pass a fresh one, add the cap rows and warm
        start it from the saved basis); solve."""
        _patch_bounds(lp, problem, meta["final_upper"], peak_floor, meta["never_above_request"])
        pure_lp = lp.integrality is None and not len(lp.slack_col)
        keep = pure_lp and self.warm_start
        cap_rows = (dr["n"], *_cap_entries(lp, problem, dr)) if dr["n"] else None
        row_lower = np.concatenate([lp.row_lower, dr["lower"]]) if dr["n"] else lp.row_lower
        row_upper = np.concatenate([lp.row_upper, dr["upper"]]) if dr["n"] else lp.row_upper
        warm = False
        mapping = keys = None
        if keep:
            keys = _keys(lp, problem, dr, meta, self.periods)
            rows, cols, values = persistent.entries(lp, cap_rows)
            if self._model is not None:
                mapping = persistent.patch(self._model, *keys, lp.col_cost, lp.col_lower, lp.col_upper, row_lower,
                                           row_upper, rows, cols, values)
        if mapping is not None:
            h = self._model.highs
            warm = "kept"
        else:
            h = self._new_highs(lp, cap_rows, dr)
            if keep:
                self._model = persistent.adopt(h, *keys, lp.col_cost, lp.col_lower, lp.col_upper, row_lower,
                                               row_upper, rows, cols, values)
                mapping = persistent.Mapping(np.arange(lp.n_col), np.arange(len(row_lower)))
                if self._saved_basis is not None:
                    basis = _mapped_basis(self._saved_basis, keys, lp, dr)
                    warm = "basis" if h.setBasis(basis) != highspy.HighsStatus.kError else False
        strategy = None
        budget = math.inf if self.time_limit_s is None else float(self.time_limit_s)
        if keep:
            if self._pending is not None and not self._changes:
                # continue the simplex that the last budget stopped, as it was, with a doubled budget
                strategy, next_budget = self._pending
                budget = max(budget, next_budget)
            else:
                primal = self.simplex == "primal" or (self.simplex == "auto" and self._changes <= {"plug_in"})
                strategy = (4 if primal else 1) if warm else 1
            h.setOptionValue("simplex_strategy", strategy)
        # HiGHS checks time_limit against the object's run clock, which a kept model accumulates over every
        # re-solve: the budget is counted afresh from the time already run, or a kept model would soon have none
        # left (every re-solve then stopped at once)
        h.setOptionValue("time_limit", h.getRunTime() + budget)
        self._pending = None
        if self.interrupt is not None:
            self._watch(h)
        started = self._run_started = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - started
        info = h.getInfo()
        name = HIGHS_STATUS.get(h.getModelStatus(), h.modelStatusToString(h.getModelStatus()))
        self._last_run = {"seconds": self._last_run.get("seconds", 0.0) + seconds,
                          "warm": warm or self._last_run.get("warm", False),
                          "iterations": self._last_run.get("iterations", 0) + int(info.simplex_iteration_count)}
        if name != "optimal":
            self._last_run["stopped"] = name
            self._last_run["budget_s"] = budget
            if keep and name in ("time_limit", "interrupted") and self._model is not None:
                # HiGHS keeps where it stopped: the next publication continues from there, with twice the budget
                # after a budget stop (an interrupt says nothing about the budget)
                self._pending = (strategy, max(2.0 * budget, MIN_CONTINUED_BUDGET_S) if name == "time_limit"
                                 else budget)
            elif keep:
                self._saved_basis = self._model = None
            return RunResult(None, None, name, seconds)
        solution = h.getSolution()
        x = np.asarray(solution.col_value, dtype=float)
        if keep:
            row_value = np.asarray(solution.row_value, dtype=float)
            statuses = _basis_statuses(h, x, row_value, mapping, lp.col_lower, lp.col_upper, row_lower, row_upper)
            x = x[mapping.col]
            if statuses is not None:
                col_status, row_status = statuses
                col_keys, row_keys = keys
                co, ro = np.argsort(col_keys), np.argsort(row_keys)
                self._saved_basis = (col_keys[co], col_status[co], row_keys[ro], row_status[ro])
        return RunResult(x, info.objective_function_value, name, seconds)

    def _watch(self, h: highspy._Highs) -> None:
        """Let HiGHS ask :attr:`interrupt` during its simplex iterations (throttled to ``INTERRUPT_POLL_S``)."""
        if self._watched is h:
            return
        asked = [time.perf_counter()]

        def callback(kind, message, data_out, data_in, user_data) -> None:
            now = time.perf_counter()
            stop = False  # HiGHS keeps the flag between calls (and runs): it is set on every call
            if self.interrupt is not None and now - asked[0] >= INTERRUPT_POLL_S \
                    and now - self._run_started >= INTERRUPT_MIN_RUN_S:
                asked[0] = now
                try:
                    stop = bool(self.interrupt())
                except Exception:  # noqa: BLE001 - a broken predicate must not break the solve
                    stop = False
            data_in.user_interrupt = stop

        h.setCallback(callback, None)
        h.startCallback(highspy.cb.HighsCallbackType.kCallbackSimplexInterrupt)
        self._watched = h

    def _new_highs(self, lp: LinearProgram, cap_rows, dr: dict) -> highspy._Highs:
        """A HiGHS object with this controller's options, holding ``lp`` and the cap rows."""
        h = highspy._Highs()
        h.setOptionValue("output_flag", False)
        if self.threads is not None:
            h.setOptionValue("threads", int(self.threads))
        for option, value in self.highs_options.items():
            if h.setOptionValue(option, value) == highspy.HighsStatus.kError:
                raise ValueError(f"HiGHS option {option}={value!r} was refused")
        if lp.integrality is None:
            h.setOptionValue("solver", "simplex")
        else:
            h.setOptionValue("mip_rel_gap", 1e-9)
            h.setOptionValue("mip_abs_gap", 1e-9)
        integrality = lp.integrality if lp.integrality is not None else np.zeros(lp.n_col, dtype=np.int32)
        status = h.passModel(lp.n_col, lp.n_row, lp.n_nz, int(highspy.MatrixFormat.kColwise),
                             int(highspy.ObjSense.kMinimize), 0.0, lp.col_cost, lp.col_lower, lp.col_upper,
                             lp.row_lower, lp.row_upper, lp.a_start, lp.a_index, lp.a_value, integrality)
        if status == highspy.HighsStatus.kError:
            raise SolverError("HiGHS rejected the model (passModel returned an error)")
        if cap_rows is not None:
            n, start, index, value = cap_rows
            h.addRows(n, dr["lower"], dr["upper"], len(index), start, index, value)
        return h

    # ---------------------------------------------------------------------------------------------------------
    # the check before publication

    def _check(self, problem: Problem, power: np.ndarray, meta: dict) -> Verification:
        """The independent verifier on the sub-instance's *real* cars (forecast phantoms removed: they exist only in
        the plan and must not relieve any limit), plus demand-response caps and over-request bounds."""
        n_real = meta["n_real"]
        result = verify(meta["real_instance"], power[:n_real])
        if result.violations:
            shown = "; ".join(str(v) for v in result.violations[:3])
            raise SolverError(f"the schedule failed independent verification ({len(result.violations)} "
                              f"violation(s)): {shown}")
        caps = meta["caps"]
        if np.isfinite(caps).any():
            real_power = power.copy()
            real_power[n_real:] = 0.0
            load = node_loads(problem, real_power)
            finite = np.isfinite(caps)
            over = finite & (load > np.where(finite, caps, 0.0) + tolerance(np.where(finite, caps, 0.0)))
            if over.any():
                n, t = (int(v[0]) for v in np.nonzero(over))
                raise SolverError(f"the schedule breaks the demand-response cap on node {problem.node_ids[n]!r} in "
                                  f"period {self.now + t}: {load[n, t]:.6g} kW > {caps[n, t]:.6g} kW "
                                  f"({int(over.sum())} period(s) in all)")
        if meta["never_above_request"] and problem.n_sessions:
            running = np.cumsum(battery_power_kw(power, problem.efficiency[:, None]) * problem.presence, axis=1) \
                * problem.step_hours
            bound = np.where(np.isfinite(meta["final_upper"]), meta["final_upper"], problem.energy_request_kwh)
            above = running.max(axis=1, initial=0.0) > np.maximum(bound, 0.0) + tolerance(bound)
            if above.any():
                s = int(np.flatnonzero(above)[0])
                raise SolverError(f"car {problem.session_ids[s]!r} would hold more than its request at some period "
                                  f"({running[s].max():.6g} kWh added vs {bound[s]:.6g} kWh)")
        upper = meta["final_upper"]
        if np.isfinite(upper).any():
            added = delivered_kwh(problem, power)
            bad = np.isfinite(upper) & (added > upper + tolerance(upper))
            if bad.any():
                s = int(np.flatnonzero(bad)[0])
                raise SolverError(f"car {problem.session_ids[s]!r} would leave with more than its request "
                                  f"({added[s]:.6g} kWh added vs at most {upper[s]:.6g} kWh)")
        return result


# ------------------------------------------------------------------------------------------------------------------
# helpers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _energy_bounds(session: Session) -> tuple[float, float | None]:
    """Bounds on the energy added since arrival [kWh]: battery → [min - initial, battery - initial], else [0, None]."""
    if session.battery_kwh is None:
        return 0.0, None
    initial = session.initial_kwh or 0.0
    floor = initial if session.min_kwh is None else session.min_kwh
    return floor - initial, session.battery_kwh - initial


def _session_problems(exc: ValidationError) -> list[FieldProblem]:
    """pydantic's errors on one session mapping as FieldProblems with paths ``session.<key>``."""
    problems = []
    for error in exc.errors(include_url=False):
        path = "session" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]
                                   if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        if error["type"] == "extra_forbidden":
            expected = f"unknown key (allowed: {', '.join(Session.model_fields)})"
        else:
            expected = expectation_of(error)
        value = "(missing)" if error["type"] == "missing" else error.get("input")
        problems.append(FieldProblem(path, value, expected))
    return problems


def _patch_bounds(lp: LinearProgram, problem: Problem, final_upper: np.ndarray, peak_floor,
                  never_above_request: bool = False) -> None:
    """In place: the peak column's floor, the over-request bound of V2G cars above their request, and (option)
    every energy state of a V2G car within its request."""
    if never_above_request:
        k = np.flatnonzero(lp.energy_col >= 0)
        if len(k):
            s = lp.pair_session[k]
            bound = np.where(np.isfinite(final_upper[s]), final_upper[s], problem.energy_request_kwh[s])
            cols = lp.energy_col[k]
            lp.col_upper[cols] = np.maximum(np.minimum(lp.col_upper[cols], bound), lp.col_lower[cols])
    if peak_floor is not None:
        for block in lp.col_blocks:
            if block.name == "peak_kw":
                lp.col_lower[block.start] = max(lp.col_lower[block.start], peak_floor)
    over = np.isfinite(final_upper)
    if over.any():
        count = np.bincount(lp.pair_session, minlength=problem.n_sessions)
        last = np.cumsum(count) - 1
        for s in np.flatnonzero(over & (count > 0)):
            col = lp.energy_col[last[s]]
            if col >= 0:
                lp.col_upper[col] = max(min(lp.col_upper[col], final_upper[s]), lp.col_lower[col])


def _subtree_rows(problem: Problem, need: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  members: np.ndarray) -> dict:
    """Rows ``lower <= sum over the pairs of node n's subtree at period t of (charge - discharge) <= upper`` for
    every (n, t) where ``need``; only sessions where ``members`` (S,) is true take part.

    Returns ``n`` (rows), ``lower``, ``upper`` [kW], ``node``, ``period`` (sub-horizon) per row and the (row,
    session, period) entries ``rows, sess, t``; :func:`_cap_entries` turns those into one LP's columns."""
    p = problem
    need_n, need_t = np.nonzero(need)
    row_id = np.full(need.shape, -1, dtype=np.int64)
    row_id[need_n, need_t] = np.arange(len(need_n))
    on = need[p.member_node].any(axis=1) & members[p.member_session]
    mn, ms = p.member_node[on], p.member_session[on]
    rows_of = row_id[mn]  # (members of those nodes, T)
    m_idx, t_idx = np.nonzero((rows_of >= 0) & (p.presence[ms] > 0))
    return {"n": len(need_n), "lower": lower[need_n, need_t], "upper": upper[need_n, need_t], "node": need_n,
            "period": need_t, "rows": rows_of[m_idx, t_idx], "sess": ms[m_idx], "t": t_idx}


def _greedy_new_cars(problem: Problem, power: np.ndarray, new: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """``power`` with each car of ``new`` charging in its cheapest periods, at what every node above it (import
    limit, demand-response cap, per-phase limit) still has free, until its request or its battery is full.

    A loop over the new cars (one after a plug-in; a thousand after a batch at 10,000 cars), not over periods: the
    node and phase loads are summed once, each car's headroom is one vectorised minimum over its ancestors, its
    periods are taken in price order by a cumulative sum, and its power is then added to the loads of its
    ancestors only (summing the whole fleet again per car took 54 s for 1,079 new cars among 4,243). Never
    discharges. The result is a candidate; the caller verifies it.
    """
    power = power.copy()
    power[new] = 0.0
    limit = np.minimum(problem.import_limit_kw[:, None], caps)
    load = node_loads(problem, power)
    # per-phase loads only where a node has a per-phase limit (none on most sites: at 10,000 nodes summing all
    # three phases of every node was a fifth of the provisional plan's time)
    phased = np.isfinite(problem.phase_import_limit_kw).any()
    phases = phase_loads(problem, power) if phased else None
    for s in new:
        above = problem.member_node[problem.member_session == s]
        free = (limit[above] - load[above]).min(axis=0)
        share = problem.phase_share[s]
        for k in np.flatnonzero(share > 0) if phased else ():
            free = np.minimum(free, ((problem.phase_import_limit_kw[above, None] - phases[k, above]) / share[k])
                              .min(axis=0))
        present = problem.presence[s]
        rate = np.where(present > 0, np.clip(free, 0.0, problem.charge_max_kw[s]), 0.0)  # [kW]
        gain = rate * present * problem.efficiency[s] * problem.step_hours  # energy into the battery per period
        want = max(min(problem.energy_request_kwh[s], problem.energy_upper_kwh[s]), 0.0)
        order = np.argsort(problem.import_price, kind="stable")  # cheapest first, earlier first on a tie
        before = np.cumsum(gain[order]) - gain[order]  # energy already taken before each period in that order
        fraction = np.clip((want - before) / np.where(gain[order] > 0, gain[order], 1.0), 0.0, 1.0)
        taken = np.zeros(problem.n_periods)
        taken[order] = np.where(gain[order] > 0, fraction, 0.0)
        power[s] = rate * taken
        load[above] += power[s]
        if phased:
            phases[:, above] += share[:, None, None] * power[s]
    return power


def _extra_rows(problem: Problem, caps: np.ndarray, n_real: int) -> dict:
    """The rows the controller adds to every model (module notes, step 2).

    - demand-response caps: ``sum(charge - discharge) <= cap - base`` for every capped (node, period), all cars;
      InfeasibleError where base load minus all the discharge available below the node is already over the cap;
    - export limits for the real cars alone, where a forecast (phantom) car could otherwise absorb a real car's
      discharge: ``sum over real cars (charge - discharge) >= -export_limit - base`` for every node with an export
      limit and period where both a phantom and a real V2G car are present below it.

    ``kind`` per row (15 cap, 16 real export) keys the rows for warm starts.
    """
    p = problem
    S, T = p.n_sessions, p.n_periods
    finite = np.isfinite(caps)
    everyone = np.ones(S, dtype=bool)
    parts = []
    if finite.any():
        cap_rows = _subtree_rows(p, finite, np.full(caps.shape, -np.inf), np.where(finite, caps, 0.0) - p.base_net_kw,
                                 everyone)
        give_back = np.zeros(cap_rows["n"])
        np.add.at(give_back, cap_rows["rows"], p.discharge_max_kw[cap_rows["sess"]])
        gap = -give_back - cap_rows["upper"]
        bad = gap > INFEASIBLE_TOLERANCE_KW
        if bad.any():
            n_bad, t_bad = cap_rows["node"][bad], cap_rows["period"][bad]
            raise InfeasibleError(
                [Overload(node=p.node_ids[n], kind="import (demand-response cap)", period=int(t),
                          start=p.period_start[t].isoformat(), excess_kw=float(g))
                 for n, t, g in zip(n_bad, t_bad, gap[bad])],
                "base load (minus the most every charger below can give back) is over a demand-response cap")
        parts.append((15, cap_rows))
    if n_real < S and np.isfinite(p.export_limit_kw).any():
        real = np.arange(S) < n_real
        phantom_here = np.zeros((p.n_nodes, T))
        v2g_here = np.zeros((p.n_nodes, T))
        np.add.at(phantom_here, p.member_node, (p.presence[p.member_session] > 0) & ~real[p.member_session, None])
        np.add.at(v2g_here, p.member_node, (p.presence[p.member_session] > 0)
                  & (real & p.v2g)[p.member_session, None])
        need = np.isfinite(p.export_limit_kw)[:, None] & (phantom_here > 0) & (v2g_here > 0)
        if need.any():
            lower = -np.where(np.isfinite(p.export_limit_kw), p.export_limit_kw, 0.0)[:, None] - p.base_net_kw
            parts.append((16, _subtree_rows(p, need, lower, np.full(need.shape, np.inf), real)))
    if not parts:
        return {"n": 0}
    offset = np.cumsum([0] + [part["n"] for _, part in parts])
    return {
        "n": int(offset[-1]),
        "kind": np.concatenate([np.full(part["n"], kind) for kind, part in parts]),
        **{key: np.concatenate([part[key] for _, part in parts]) for key in ("lower", "upper", "node", "period",
                                                                             "sess", "t")},
        "rows": np.concatenate([part["rows"] + offset[i] for i, (_, part) in enumerate(parts)]),
    }


def _cap_entries(lp: LinearProgram, problem: Problem, dr: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise entries (start, column, value) of the extra rows in ``lp``'s column numbering: +1 on each charge
    column, -1 on each discharge column."""
    pair_index = np.full((problem.n_sessions, problem.n_periods), -1, dtype=np.int64)
    pair_index[lp.pair_session, lp.pair_period] = np.arange(len(lp.pair_session))
    k = pair_index[dr["sess"], dr["t"]]
    dcol = lp.discharge_col[k]
    has_d = dcol >= 0
    cols = np.concatenate([k, dcol[has_d]])
    vals = np.concatenate([np.ones(len(k)), -np.ones(int(has_d.sum()))])
    rows = np.concatenate([dr["rows"], dr["rows"][has_d]])
    order = np.argsort(rows, kind="stable")
    start = np.zeros(dr["n"], dtype=np.int32)
    start[1:] = np.cumsum(np.bincount(rows, minlength=dr["n"]))[:-1]
    return start, cols[order].astype(np.int32), vals[order]


def _keys(lp: LinearProgram, problem: Problem, dr: dict, meta: dict, T_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable keys of the LP's columns and rows (cap rows last): the same variable or limit gets the same key in the
    next re-solve, whatever the numbering."""
    now = meta["now"]
    serial = meta["serials"]
    S = np.int64(1) << KIND_SHIFT
    pair_key = serial[lp.pair_session] * T_day + lp.pair_period + now
    col = np.full(lp.n_col, -1, dtype=np.int64)
    col[: len(pair_key)] = pair_key
    has = lp.discharge_col >= 0
    col[lp.discharge_col[has]] = 1 * S + pair_key[has]
    has = lp.energy_col >= 0
    col[lp.energy_col[has]] = 2 * S + pair_key[has]
    for block in lp.col_blocks:
        if block.name == "peak_kw":
            col[block.start] = 3 * S
    rows = [np.full(lp.n_row, -1, dtype=np.int64)]
    for block in lp.row_blocks:
        labels = block.labels
        part = rows[0][block.start:block.stop]
        if block.name == "energy_by_departure":
            part[:] = 10 * S + serial[labels["session"]]
        elif block.name == "energy_balance":
            part[:] = 11 * S + pair_key[labels["pair"]]
        elif block.name == "node_limit":
            part[:] = 12 * S + labels["node"] * T_day + labels["period"] + now
        elif block.name == "phase_import_limit":
            part[:] = 13 * S + (labels["node"] * 3 + labels["phase"]) * T_day + labels["period"] + now
        elif block.name == "peak_definition":
            part[:] = 14 * S + labels["period"] + now
        else:  # unknown row kinds get unique keys that match nothing
            part[:] = -(np.arange(block.start, block.stop) + 2)
    if dr["n"]:
        rows.append(dr["kind"].astype(np.int64) * S + dr["node"] * T_day + dr["period"] + now)
    return col, np.concatenate(rows)


def _mapped_basis(saved, keys, lp: LinearProgram, dr: dict) -> highspy.HighsBasis:
    """The saved basis on the new model's columns and rows; new columns at a finite bound, new rows basic."""
    old_col_keys, old_col_status, old_row_keys, old_row_status = saved
    col_keys, row_keys = keys

    def mapped(new, old, status, default):
        out = np.full(len(new), default, dtype=np.int8)
        if len(old):
            pos = np.clip(np.searchsorted(old, new), 0, len(old) - 1)
            hit = old[pos] == new
            out[hit] = status[pos[hit]]
        return out

    col_status = mapped(col_keys, old_col_keys, old_col_status, _LOWER)
    row_status = mapped(row_keys, old_row_keys, old_row_status, _BASIC)
    col_status = _sane(col_status, lp.col_lower, lp.col_upper)
    row_lower = np.concatenate([lp.row_lower, dr["lower"]]) if dr["n"] else lp.row_lower
    row_upper = np.concatenate([lp.row_upper, dr["upper"]]) if dr["n"] else lp.row_upper
    row_status = _sane(row_status, row_lower, row_upper)
    basis = highspy.HighsBasis()
    basis.col_status = _STATUS_LOOKUP[col_status].tolist()
    basis.row_status = _STATUS_LOOKUP[row_status].tolist()
    basis.valid = True
    basis.alien = True
    return basis


def _basis_statuses(h, x: np.ndarray, row_value: np.ndarray, mapping, col_lower: np.ndarray, col_upper: np.ndarray,
                    row_lower: np.ndarray, row_upper: np.ndarray):
    """The optimal basis as int8 status arrays (columns, rows) of the new LP, from HiGHS's basic variables and the
    solution values in HiGHS's numbering (``mapping``: where each LP column and row sits there; a nonbasic variable
    sits at the bound it equals); ``getBasis`` would convert ~S x T enum objects in Python. None if HiGHS has no
    basis."""
    status, basic = h.getBasicVariables()
    if status == highspy.HighsStatus.kError:
        return None
    basic = np.asarray(basic, dtype=np.int64)

    def nonbasic(value, lower, upper):
        at_upper = np.isfinite(upper) & (~np.isfinite(lower) | (np.abs(value - upper) < np.abs(value - lower)))
        out = np.where(at_upper, _UPPER, _LOWER).astype(np.int8)
        out[~np.isfinite(lower) & ~np.isfinite(upper)] = _ZERO
        return out

    col_status = nonbasic(x[mapping.col], col_lower, col_upper)
    row_status = nonbasic(row_value[mapping.row], row_lower, row_upper)
    col_basic = np.zeros(len(x), dtype=bool)
    col_basic[basic[basic >= 0]] = True
    row_basic = np.zeros(len(row_value), dtype=bool)
    row_basic[-1 - basic[basic < 0]] = True
    col_status[col_basic[mapping.col]] = _BASIC
    row_status[row_basic[mapping.row]] = _BASIC
    return col_status, row_status


def _sane(status: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Nonbasic statuses only at a finite bound (a bound that became infinite moves to the other one, or zero)."""
    status = status.copy()
    at_lower = (status == _LOWER) & ~np.isfinite(lower)
    status[at_lower] = np.where(np.isfinite(upper[at_lower]), _UPPER, _ZERO)
    at_upper = (status == _UPPER) & ~np.isfinite(upper)
    status[at_upper] = np.where(np.isfinite(lower[at_upper]), _LOWER, _ZERO)
    zero = (status == _ZERO) & (np.isfinite(lower) | np.isfinite(upper))
    status[zero] = np.where(np.isfinite(lower[zero]), _LOWER, _UPPER)
    return status


def _attainable(problem: Problem, caps: np.ndarray, now: int) -> tuple[np.ndarray, str]:
    """Caps raised to the base load where base load alone is over them [kW], and those places in words."""
    finite = np.isfinite(caps)
    base = np.where(finite, problem.base_net_kw, -np.inf)
    low = finite & (caps < base)
    if not low.any():
        return caps, ""
    n_idx, t_idx = np.nonzero(low)
    words = ", ".join(f"node {problem.node_ids[n]!r} period {now + t} by {base[n, t] - caps[n, t]:.3g} kW"
                      for n, t in zip(n_idx[:3], t_idx[:3]))
    if len(n_idx) > 3:
        words += f" and {len(n_idx) - 3} more"
    return np.where(low, base, caps), words


def _capped_problem(problem: Problem, caps: np.ndarray) -> Problem:
    """The caps folded into a Problem for the baselines: at a capped node, base load raised by (limit - cap) in
    the window, and a node without an import limit given one that cannot bind outside it. Only that node's own
    rows change (``base_net_kw`` is per subtree); its per-phase headroom shrinks by a third of it (conservative)."""
    finite = np.isfinite(caps)
    if not finite.any():
        return problem
    capped = finite.any(axis=1)
    most = np.zeros(problem.n_nodes)
    np.add.at(most, problem.member_node, problem.charge_max_kw[problem.member_session])
    limit = problem.import_limit_kw.copy()
    no_limit = capped & ~np.isfinite(limit)
    limit[no_limit] = (problem.base_net_kw.max(axis=1) + most + 1.0)[no_limit]
    delta = np.where(finite, np.maximum(limit[:, None] - np.where(finite, caps, 0.0), 0.0), 0.0)
    return dataclasses.replace(problem, import_limit_kw=limit, base_net_kw=problem.base_net_kw + delta, _cache={})


def _rebased(problem: Problem, schedule: Schedule) -> Schedule:
    """A baseline's schedule (maybe on the capped Problem) as a schedule of the real sub-problem."""
    power = schedule.power
    summary = summarise(problem, power, status=schedule.summary.get("status", "heuristic"),
                        solver=schedule.summary.get("solver"), solve_seconds=schedule.summary.get("solve_seconds"))
    return Schedule(problem=problem, power=power, summary=summary)
