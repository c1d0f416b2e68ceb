"""Run a scenario study: every (strategy, EV count, day) task, on dask.distributed, with transformer thermal physics.

Tasks
-----
The study is the scenario's own EV count on ``days`` days under each of ``strategies`` (these keep their time series
for the report's plots), plus the hosting sweep: ``hosting.ev_counts`` x ``hosting.days`` x
``hosting.strategies`` (metrics only). A task is a pure function of the scenario and its key ``(strategy, evs,
day)``: day ``d``'s random draws come from ``SeedSequence(seed, spawn_key=(d,))`` (see
:mod:`gridcharge.scenarios.sampling`), HiGHS runs with one thread, so the numbers do not depend on how many workers
run the tasks or in which order they finish. Results are put back in task order.

Strategies
----------
``uncontrolled`` and the baselines via :func:`gridcharge.solve` (``uncontrolled`` reports its overload as its
finding; a controlled baseline on a day whose base load alone exceeds the limit is recorded with status
``infeasible``, no EV power, every request unmet); ``optimal`` via ``gridcharge.solve(solver="highs",
allow_overload=True, threads=1)`` (the limit becomes a penalised slack, so a day the limit cannot serve reports its
overload instead of failing); ``online`` via :func:`gridcharge.online.simulate` (closed loop, cars revealed on
arrival). Every schedule has gone through the independent verifier.

Physics and metrics per task
----------------------------
Transformer loading ``K = |P_root| / pf / S_rated`` per period (P_root: base load - PV + EV power at the transformer
[kW]) into the IEC 60076-7 model (:mod:`gridcharge.grid.thermal`, cyclic initial state: the day repeats) with the
day's ambient. Columns (units in names): ``peak_loading_pct``, ``hours_above_rating_h``, ``kwh_above_rating``
(energy above the rated active power ``S_rated · pf``), ``overload_kwh`` (verifier: energy above the controlled limits
of transformer, feeders, meters and phases), ``max_hot_spot_c``, ``max_top_oil_c``, ``loss_of_life_h`` (equivalent
ageing hours in the day; 24 = normal), ``requested_kwh``, ``delivered_kwh``, ``unmet_kwh``, ``unmet_share``,
``energy_cost_cny`` (EV energy bought - V2G energy sold), ``v2g_exported_kwh``, ``turned_away``,
``turned_away_kwh``, ``violates`` and ``violated`` (which hosting criteria), ``status``, ``solve_seconds``;
``undeliverable_kwh`` (more than a car's charger could give over its stay, whatever the grid) and
``grid_limited_unmet_kwh`` (the rest of the unmet energy); for ``optimal`` and ``online``, what executability (the
site's ``min_current_a`` / ``current_step_a``) cost on the same day: ``executability_unmet_kwh`` and
``executability_cost_cny`` (NaN for the other strategies). ``optimal``: against the continuous optimum (the LP
bound of the same solve); ``online``: against online control of the same day on continuous chargers (a second closed
loop, same cars and base load; its cost is the verifier's on the actual day: energy, degradation, unmet penalty and
peak charge).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..cluster import dask_client
from ..grid.thermal import simulate as thermal_simulate
from .sampling import Day, build_day
from .spec import Scenario

#: Columns that are measurements of time, not results (they differ from run to run).
TIMING_COLUMNS = ("solve_seconds", "task_seconds")


@dataclass(frozen=True, order=True)
class Task:
    """One simulated day: ``strategy`` with ``evs`` EVs on day ``day``; ``series`` keeps the time series."""

    strategy: str
    evs: int
    day: int
    series: bool = False

    @property
    def key(self) -> str:
        return f"{self.strategy}-{self.evs}-{self.day}"


@dataclass
class StudyResult:
    """Everything a study produced.

    rows : pandas.DataFrame — one row per task (columns in the module notes), in task order
    series : pandas.DataFrame — long form for the study's own EV count: strategy, day, period, start, hour,
        base_kw, pv_kw, ev_kw, load_kw, loading_pct, hot_spot_c, top_oil_c, ambient_c
    scenario : Scenario; wall_seconds : float; workers : int (0: in-process)
    """

    rows: pd.DataFrame
    series: pd.DataFrame
    scenario: Scenario
    wall_seconds: float = 0.0
    workers: int = 0
    tasks: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def currency(self) -> str:
        """ISO 4217 code of every cost of the study (``energy_cost_cny`` keeps its name whatever the currency)."""
        return self.scenario.tariff.currency

    @property
    def study(self) -> pd.DataFrame:
        """Rows of the study's own EV count and strategies."""
        s = self.scenario
        return self.rows[(self.rows["evs"] == s.evs) & self.rows["strategy"].isin(s.strategies)]


def plan(scenario: Scenario) -> list[Task]:
    """Every task of the study, in a fixed order (study first, then the hosting sweep), without duplicates."""
    s = scenario
    tasks: dict[tuple, Task] = {}
    for strategy in s.strategies:
        for day in range(s.days):
            tasks[(strategy, s.evs, day)] = Task(strategy, s.evs, day, series=True)
    for strategy in s.hosting_strategies():
        for evs in s.hosting_counts():
            for day in range(s.hosting_days()):
                tasks.setdefault((strategy, evs, day), Task(strategy, evs, day))
    return list(tasks.values())


def run_task(scenario: Scenario, task: Task) -> dict:
    """Simulate one task and evaluate it (module notes). Returns ``{"row": dict, "series": dict or None}``."""
    started = time.perf_counter()
    day = build_day(scenario, task.day, task.evs)
    problem, power, verification, status, solve_s, lost = _schedule(scenario, task.strategy, day)
    row, series = evaluate(scenario, day, problem, power, verification)
    row = {"strategy": task.strategy, "evs": task.evs, "day": task.day, "status": status, **row, **lost,
           "solve_seconds": solve_s, "task_seconds": time.perf_counter() - started}
    return {"row": row, "series": series if task.series else None}


_HIGHS_SINGLE_THREADED = False


def warm_up() -> None:
    """Import what a task imports lazily (the solvers, the online controller, HiGHS), so a worker's first task costs
    what the others do (its time feeds the time-left estimate)."""
    import highspy  # noqa: F401

    from .. import online, schedule, solvers  # noqa: F401


def _single_threaded_highs() -> None:
    """Make HiGHS's ``threads=1`` option usable in this process.

    HiGHS keeps one global thread scheduler per process, sized by the first solve; a later solve asking for a
    different thread count stops with status "Not Set". Reset it once per process before the first ``threads=1``
    solve (tasks run one at a time per process: dask workers have one thread each, in-process runs are sequential).
    """
    global _HIGHS_SINGLE_THREADED
    if not _HIGHS_SINGLE_THREADED:
        import highspy

        highspy.Highs.resetGlobalScheduler(True)
        _HIGHS_SINGLE_THREADED = True


#: The executability columns of a task that has no continuous optimum to compare with.
_NOT_COMPARED = {"executability_unmet_kwh": float("nan"), "executability_cost_cny": float("nan")}


def _executability_lost(summary: dict) -> dict:
    """Energy [kWh] and cost [CNY] the executable schedule lost against the continuous optimum (0 when continuous)."""
    if "continuous_objective_cny" not in summary:
        return {"executability_unmet_kwh": 0.0, "executability_cost_cny": 0.0}
    return {"executability_unmet_kwh": summary["unmet_kwh"] - summary["continuous_unmet_kwh"],
            "executability_cost_cny": summary["objective_cny"] - summary["continuous_objective_cny"]}


def _continuous(instance: dict) -> dict:
    """The instance-v1 mapping with continuous chargers and cars (no minimum current, no step)."""
    def plain(items):
        return [{k: v for k, v in item.items() if k not in ("min_current_a", "current_step_a")} for item in items]

    return {**instance, "chargers": plain(instance["chargers"]), "sessions": plain(instance["sessions"])}


def _schedule(scenario: Scenario, strategy: str, day: Day):
    import gridcharge

    from ..errors import InfeasibleError

    if strategy in ("online", "optimal"):
        _single_threaded_highs()

    if strategy == "online":
        from ..online import simulate

        options = dict(strategy="online", time_limit_s=scenario.time_limit_s, controller_options={"threads": 1})
        result = simulate(day.instance, **options)
        status = "fallback" if result.fallbacks else "ok"
        lost = _NOT_COMPARED
        if result.problem.executable:
            continuous = simulate(_continuous(day.instance), **options)
            lost = {"executability_unmet_kwh": result.verification.unmet_kwh - continuous.verification.unmet_kwh,
                    "executability_cost_cny": result.verification.cost_cny - continuous.verification.cost_cny}
        elif result.problem.n_sessions:
            lost = _executability_lost({})
        return result.problem, result.power, result.verification, status, result.solve_seconds, lost
    instance = gridcharge.load_instance(day.instance)
    problem = gridcharge.build_problem(instance)
    started = time.perf_counter()
    if problem.n_sessions == 0:  # no car: nothing to decide (HiGHS refuses an empty model), the base load is the day
        power = np.zeros((0, problem.n_periods))
        return problem, power, gridcharge.verify(instance, power), "no_evs", 0.0, _NOT_COMPARED
    try:
        if strategy == "optimal":
            schedule = gridcharge.solve(problem, solver="highs", time_limit_s=scenario.time_limit_s,
                                        allow_overload=True, threads=1)
        else:
            schedule = gridcharge.solve(problem, solver=strategy, time_limit_s=scenario.time_limit_s)
    except InfeasibleError:
        power = np.zeros((problem.n_sessions, problem.n_periods))
        return (problem, power, gridcharge.verify(instance, power), "infeasible", time.perf_counter() - started,
                _NOT_COMPARED)
    lost = _executability_lost(schedule.summary) if strategy == "optimal" else _NOT_COMPARED
    return (problem, schedule.power, schedule.verification, str(schedule.status), time.perf_counter() - started,
            lost)


def evaluate(scenario: Scenario, day: Day, problem, power: np.ndarray, verification) -> tuple[dict, dict]:
    """Metrics of one day (module notes) and its time series."""
    from ..schedule import delivered_kwh, node_loads

    s, tr = scenario, scenario.transformer
    step_h = problem.step_hours
    root = problem.root
    load_kw = node_loads(problem, power)[root]
    base_net_kw = problem.base_net_kw[root]
    ev_kw = load_kw - base_net_kw
    loading = np.abs(load_kw) / tr.power_factor / tr.rated_kva  # K [-]
    thermal = thermal_simulate(loading, day.ambient_c, s.horizon.step_minutes, tr.thermal.parameters(),
                               ageing=tr.thermal.ageing, initial="cyclic")
    energy = problem.presence * step_h
    charge = np.clip(power, 0.0, None) * energy
    discharge = np.clip(-power, 0.0, None) * energy
    requested = float(problem.energy_request_kwh.sum())  # of the cars that got a charger
    delivered = float(np.minimum(delivered_kwh(problem, power), problem.energy_request_kwh).sum())
    unmet_each = np.clip(problem.energy_request_kwh - delivered_kwh(problem, power), 0.0, None)
    unmet = float(unmet_each.sum())
    undeliverable = float(np.minimum(problem.undeliverable_kwh(), unmet_each).sum())
    row = {
        "peak_loading_pct": float(100 * loading.max()),
        "hours_above_rating_h": float((loading > 1 + 1e-9).sum() * step_h),
        "kwh_above_rating": float(np.clip(np.abs(load_kw) - tr.rated_kw, 0.0, None).sum() * step_h),
        "overload_kwh": float(sum(verification.overload_kwh.values())),
        "max_hot_spot_c": float(thermal.hot_spot_c.max()),
        "max_top_oil_c": float(thermal.top_oil_c.max()),
        "loss_of_life_h": thermal.loss_of_life_h,
        "requested_kwh": requested,
        "delivered_kwh": delivered,
        "unmet_kwh": unmet,
        "unmet_share": unmet / requested if requested > 0 else 0.0,
        "undeliverable_kwh": undeliverable,
        "grid_limited_unmet_kwh": unmet - undeliverable,
        "energy_cost_cny": float(charge.sum(axis=0) @ problem.import_price - discharge.sum(axis=0)
                                 @ problem.export_price),
        "v2g_exported_kwh": float(discharge.sum()),
        "peak_kw": float(load_kw.max()),
        "turned_away": day.turned_away,
        "turned_away_kwh": day.turned_away_kwh,
    }
    c = s.hosting.criteria
    broken = [name for name, bad in (
        ("loading", row["peak_loading_pct"] > c.max_loading_pct + 1e-9),
        ("hot_spot", row["max_hot_spot_c"] > c.max_hot_spot_c),
        ("top_oil", row["max_top_oil_c"] > c.max_top_oil_c),
        ("ageing", row["loss_of_life_h"] > c.max_ageing_h_per_day),
        ("unmet", row["unmet_share"] > c.max_unmet_share),
    ) if bad]
    row["violates"] = bool(broken)
    row["violated"] = ",".join(broken)
    series = {"base_kw": day.base_kw, "pv_kw": day.pv_kw, "ev_kw": ev_kw, "load_kw": load_kw,
              "loading_pct": 100 * loading, "hot_spot_c": thermal.hot_spot_c, "top_oil_c": thermal.top_oil_c,
              "ambient_c": day.ambient_c}
    return row, {k: np.asarray(v, dtype=float) for k, v in series.items()}


def run_study(scenario: Scenario, *, workers: int | None = None, scheduler: str | None = None,
              progress: bool = True, stream=None) -> StudyResult:
    """Run every task of :func:`plan` and collect the results.

    Parameters
    ----------
    scenario : Scenario
    workers : int, optional — processes of a local dask cluster (one thread each; default: the CPU count); ``0``
        runs the tasks one after another in this process, without dask
    scheduler : str, optional — address of a running dask scheduler (``tcp://HOST:8786``); its workers need
        gridcharge installed. Overrides ``workers``.
    progress : bool — a progress bar on ``stream`` (default stderr): tasks done, elapsed, and the time left estimated
        from each task's cost class (:class:`TimeLeft`)
    """
    return run_studies([scenario], workers=workers, scheduler=scheduler, progress=progress, stream=stream)[0]


def run_studies(scenarios: list[Scenario], *, workers: int | None = None, scheduler: str | None = None,
                progress: bool = True, stream=None) -> list[StudyResult]:
    """Several sites (scenarios) in one sweep: every task of every scenario on one cluster, results per scenario.

    A city's transformers x EV counts x days x strategies is this call with one scenario per transformer. Options as
    in :func:`run_study`; ``wall_seconds`` of each result is the whole sweep's.
    """
    from ..progress import Bar

    stream = sys.stderr if stream is None else stream
    jobs = [(i, task) for i, scenario in enumerate(scenarios) for task in plan(scenario)]
    started = time.perf_counter()
    results: dict[tuple[int, Task], dict] = {}
    used_workers = 0
    with Bar(len(jobs), "      simulating", "task", enabled=progress, stream=stream) as bar:
        if scheduler is None and workers == 0:
            eta = TimeLeft([task for _, task in jobs], slots=1)
            for position, (i, task) in enumerate(jobs):
                results[(i, task)] = run_task(scenarios[i], task)
                eta.finished(position, results[(i, task)]["row"]["task_seconds"])
                bar.advance(1, eta.seconds())
        else:
            from dask.distributed import as_completed

            with dask_client(workers, scheduler) as client:
                info = client.scheduler_info()
                used_workers = len(info.get("workers", {}))
                slots = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()) or 1
                client.run(warm_up)  # imports on every worker now, so the first tasks' times are like the rest
                eta = TimeLeft([task for _, task in jobs], slots=slots)
                where = scheduler or f"local cluster, {used_workers} worker process(es) x 1 thread"
                bar.write(f"      dask: {where}; {len(jobs)} tasks")
                bar.advance(0, eta.seconds())
                shared = [client.scatter(scenario, broadcast=True) for scenario in scenarios]
                futures = {client.submit(run_task, shared[i], task, key=f"gridcharge-scenario-{i}-{task.key}",
                                         pure=False): position for position, (i, task) in enumerate(jobs)}
                try:
                    for future in as_completed(futures):
                        position = futures[future]
                        job = jobs[position]
                        try:
                            results[job] = future.result()
                        except Exception as exc:  # stop the sweep, name the task that failed
                            raise RuntimeError(f"scenario {scenarios[job[0]].name!r} task {job[1].key} failed: "
                                               f"{type(exc).__name__}: {exc}") from exc
                        eta.finished(position, results[job]["row"]["task_seconds"])
                        bar.advance(1, eta.seconds())
                except BaseException:  # a failed task or Ctrl-C: cancel what is left while the client is connected
                    client.cancel(list(futures), force=True)
                    raise
    wall = time.perf_counter() - started
    out = []
    for i, scenario in enumerate(scenarios):
        tasks = [task for j, task in jobs if j == i]
        rows = pd.DataFrame([results[(i, t)]["row"] for t in tasks])
        series = _series_frame(scenario, [(t, results[(i, t)]["series"]) for t in tasks if t.series])
        out.append(StudyResult(rows=rows, series=series, scenario=scenario, wall_seconds=wall,
                               workers=used_workers, tasks=len(tasks)))
    return out


def _series_frame(scenario: Scenario, items) -> pd.DataFrame:
    from .sampling import horizon_start, period_hours

    h = scenario.horizon
    start = pd.date_range(horizon_start(scenario), periods=h.periods, freq=f"{h.step_minutes}min")
    hours = period_hours(scenario)
    frames = []
    for task, series in items:
        frame = pd.DataFrame(series)
        frame.insert(0, "strategy", task.strategy)
        frame.insert(1, "day", task.day)
        frame.insert(2, "period", np.arange(h.periods))
        frame.insert(3, "start", start)
        frame.insert(4, "hour", hours)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: Seconds per size unit of a task (one EV + :data:`FIXED_UNITS`) by strategy before any task of that strategy has
#: finished: measured on the shipped residential study (2 cores, dask). Once tasks finish, the run's own figures
#: replace them (a strategy not measured yet keeps its prior, rescaled by how fast this machine ran the measured ones).
#: ``online`` re-solves through the day, ``optimal`` is one LP, the rest are numpy passes.
PRIOR_SECONDS_PER_UNIT = {"uncontrolled": 1.3e-4, "equal_share": 1.4e-4, "edf": 1.5e-4, "llf": 1.5e-4,
                          "greedy_cost": 1.6e-4, "optimal": 3.0e-4, "online": 1.0e-2}
#: The part of a task's cost that does not grow with its EV count (base load, thermal model), in EVs [-].
FIXED_UNITS = 50


class TimeLeft:
    """Estimated wall time left [s] of tasks run in submission order on ``slots`` parallel workers.

    Each task weighs its strategy's seconds per size unit times ``evs + FIXED_UNITS``: the strategy's finished tasks
    give its rate (``task_seconds``), starting from its prior (:data:`PRIOR_SECONDS_PER_UNIT`) scaled by how the
    measured strategies compare with theirs. The time left is that work, plus for every task left the wall time per task the
    slots have so far spent outside tasks' own work (dispatch, results, other programs: it dominates cheap tasks; a
    running task counts as working since its slot was freed), shared among the slots. Tasks of a study
    differ in cost a hundredfold (``online`` against a heuristic) and the expensive ones run first, so counting tasks
    (tqdm's own estimate) would be far off.

    Parameters
    ----------
    tasks : list of Task — in the order they were submitted
    slots : int — tasks that run at once (worker threads) [-]
    clock : callable → seconds, optional — default :func:`time.perf_counter`; the wall time counts from here
    """

    def __init__(self, tasks: list[Task], slots: int, clock=time.perf_counter):
        self.slots = max(1, slots)
        self.clock = clock
        self.started = clock()
        self.order = list(tasks)
        self.pending = set(range(len(tasks)))
        # when each slot last took a task: the start, then the latest completions (a finished task frees a slot)
        self.freed = deque([self.started] * self.slots, maxlen=self.slots)
        self.units_left: dict[str, float] = {}
        for task in tasks:
            self.units_left[task.strategy] = self.units_left.get(task.strategy, 0.0) + _units(task)
        self.units_done: dict[str, float] = dict.fromkeys(self.units_left, 0.0)
        self.seconds_done: dict[str, float] = dict.fromkeys(self.units_left, 0.0)

    def finished(self, position: int, seconds: float) -> None:
        """Task ``position`` (in the submission order) has finished after ``seconds`` of its own work [s]."""
        task = self.order[position]
        self.pending.discard(position)
        self.freed.append(self.clock())
        self.units_left[task.strategy] -= _units(task)
        self.units_done[task.strategy] += _units(task)
        self.seconds_done[task.strategy] += seconds

    def seconds(self) -> float:
        """Estimated wall time until every task has finished [s]."""
        prior = {s: PRIOR_SECONDS_PER_UNIT.get(s, max(PRIOR_SECONDS_PER_UNIT.values())) for s in self.units_left}
        measured = [s for s, units in self.units_done.items() if units > 0]
        # this machine against the priors, with SETTLE_S seconds of "as the priors say" so one slow first task
        # does not multiply every strategy not yet measured
        scale = ((sum(self.seconds_done[s] for s in measured) + SETTLE_S)
                 / (sum(prior[s] * self.units_done[s] for s in measured) + SETTLE_S))
        # a strategy's rate: its own tasks, with PRIOR_UNITS of its (scaled) prior so its first task (a first call)
        # does not swing it
        rate = {s: (self.seconds_done[s] + PRIOR_UNITS * prior[s] * scale) / (self.units_done[s] + PRIOR_UNITS)
                for s in self.units_left}
        left = sum(rate[s] * max(units, 0.0) for s, units in self.units_left.items())
        # wall time of the slots not spent in a task's own work: dispatch, results, other programs between tasks;
        # per task, with OVERHEAD_PRIOR_TASKS tasks of none as a prior so the first completions do not swing it.
        # The tasks running now have worked since their slot was freed.
        now = self.clock()
        running = sorted(self.freed)[self.slots - min(self.slots, len(self.pending)):]
        work = sum(self.seconds_done.values()) + sum(now - freed for freed in running)
        finished = len(self.order) - len(self.pending)
        idle = max(0.0, (now - self.started) * self.slots - work)
        per_task = idle / (finished + OVERHEAD_PRIOR_TASKS)
        return (left + per_task * len(self.pending)) / self.slots


#: Size units of a strategy's prior rate its measured rate starts from (see :class:`TimeLeft`) [-]: about 4 tasks.
PRIOR_UNITS = 400
#: Tasks without overhead the per-task overhead estimate starts from (see :class:`TimeLeft`) [-].
OVERHEAD_PRIOR_TASKS = 50
#: Seconds of work "as the priors say" the machine's speed estimate starts from (see :class:`TimeLeft`) [s].
SETTLE_S = 5.0


def _units(task: Task) -> float:
    return task.evs + FIXED_UNITS
