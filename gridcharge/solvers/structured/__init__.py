"""``structured``: a block-eliminating interior point for the LP of :mod:`gridcharge.formulation.lp`, accepted only by
certificate (box-Lagrangian lower bound vs the cost of the schedule actually returned), HiGHS otherwise.

The charge-or-discharge rule, netting, write-back and infeasibility diagnosis are those of
:mod:`gridcharge.solvers.exact`; this back-end only replaces the LP solve. See docs/design/structured.md.
"""

from __future__ import annotations

import os
import sys
import time

import numba
from threadpoolctl import threadpool_limits

from ...formulation.lp import LinearProgram
from ...problem import Problem
from ...schedule import Schedule
from ...verify import verify
from ..exact import RunResult, solve_exactly
from ..highs import solve_highs
from ..progress import OnIteration
from .ipm import Correctors, interior_point
from .layout import Derived, LayoutError, derive_layout
from .partition import split_interior_point
from .warm import warm_up_beside

#: A schedule is returned only when (upper - lower) / max(1 CNY, |upper|) is at most this [-].
GAP_TOLERANCE = 1e-7
#: Mehrotra iterations before giving up and falling back to HiGHS [-]: days of one site take 30-45; the 10,000-session
#: district of 50 transformers was still converging steadily at 100 (mu 1e-5, primal residual 1e-9; its steps are
#: short for ~60 iterations, docs/design/structured.md), so districts get room; the certificate decides either way.
MAX_ITERATIONS = 200
#: numba threads of a split solve (``workers`` or ``scheduler``) by default [-]: its partitions run with the
#: coordinator's count on workers that already share the cores, and one count for 0, 1 and N workers keeps their bits
#: equal. An unsplit solve runs on every core this process may use (:func:`default_threads`).
SPLIT_THREADS = 1
#: ``auto`` uses ``structured`` on days with at least this many V2G sessions (their energy chains are what makes the
#: LP hard for simplex: measured 1.8x less CPU than HiGHS dual at 300 sessions of which ~100 V2G, 3.4x at 1,000,
#: 11x at 10,000; benchmarks/RESULTS.md) [-]
AUTO_MIN_V2G_SESSIONS = 100
#: ... and on charge-only days from this many sessions (equal CPU at 1,000, 2.3x less at 3,000, HiGHS 2.8x faster
#: at 300; benchmarks/RESULTS.md) [-]
AUTO_MIN_SESSIONS = 2000


def default_threads(split: bool = False) -> int:
    """numba threads a solve runs its kernels on when not told [-]: :data:`SPLIT_THREADS` for a split solve, else
    the cores this process may run on. Measured on the 10,000-session V2G day on a quiet 2-core machine (fresh
    processes; benchmarks/RESULTS.md, issue 13): 3.3-3.8 s with two threads against 3.9-4.8 s with one. On a machine
    whose other core is busy two threads cost about the same CPU as one (idle OpenMP threads sleep: kernels.py) but
    are not faster; pass ``threads=1`` there."""
    if split:
        return SPLIT_THREADS
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform (macOS, Windows)
        return max(1, os.cpu_count() or 1)


class _Fallback(Exception):
    """Raised inside the runner to abandon the structured path; ``args[0]`` is the reason."""


def needs_binaries(problem: Problem) -> bool:
    """Whether some V2G car is plugged in while export pays more than import costs plus degradation [CNY/kWh]:
    then charging and discharging at once can pay, and only binaries (HiGHS's MIP) settle the day."""
    pays = problem.export_price - problem.degradation_cost > problem.import_price
    return bool(pays.any() and (problem.presence[problem.v2g][:, pays] > 0).any())


def solve_structured(problem: Problem, *, time_limit_s: float | None = None, allow_overload: bool = False,
                     max_iterations: int = MAX_ITERATIONS, verbose: bool = False, threads: int | None = None,
                     method: str = "auto", on_iteration: OnIteration | None = None, workers: int | None = None,
                     scheduler: str | None = None, correctors: int | None = None) -> Schedule:
    """Optimal schedule by the structured interior point, certified; HiGHS (``method``) when it cannot certify.

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — wall-clock limit [s]: the interior point stops at it and HiGHS gets the rest
    allow_overload : bool — node limits as penalised slack (HiGHS: the slack columns are not boxed)
    max_iterations : int — Mehrotra iterations before falling back [-]
    verbose : bool — iteration log on stderr
    threads : int, optional — numba threads for the per-car kernels (default :func:`default_threads`) and HiGHS's
        threads on a fallback
    method : str — HiGHS method of a fallback
    on_iteration : callable, optional — called with an :class:`~gridcharge.solvers.progress.IterationProgress` per
        iterate of the interior point (every round of the charge-or-discharge rule starts again at iteration 0;
        a HiGHS fallback reports nothing)
    workers : int, optional — split the interior point by transformer subtree (:mod:`.partition`) and run the
        partitions on a local dask cluster of this many processes; ``0``: split, in this process. The numbers are the
        same for every count. ``None`` (default): one process, unsplit.
    scheduler : str, optional — address of a running dask scheduler (``tcp://HOST:8786``) for the partitions;
        overrides ``workers``
    correctors : int, optional — Gondzio centrality correctors per iteration at most (``0``: Mehrotra's direction
        alone); ``None`` (default): where they pay by measurement (:func:`.ipm.correctors_for`). With ``workers`` or
        ``scheduler`` only ``0`` or ``None``: the split solve runs Mehrotra alone

    The summary adds ``lower_bound_cny``, ``gap_rel``, ``iterations``, ``correctors`` (tried, each one more solve),
    ``layout_seconds``, ``iterations_seconds``, ``certificate_seconds``, ``writeback_seconds`` and ``fallback``
    (``None``, or why HiGHS solved the day).
    """
    started = time.perf_counter()
    deadline = None if time_limit_s is None else started + float(time_limit_s)

    def fallback(reason: str, stats: dict) -> Schedule:
        left = None if deadline is None else max(1.0, deadline - time.perf_counter())
        schedule = solve_highs(problem, time_limit_s=left, method=method, verbose=verbose, threads=threads)
        schedule.summary.update({"lower_bound_cny": None, "gap_rel": None, **stats, "fallback": reason})
        return schedule

    if allow_overload:
        return fallback("overload slack columns are not boxed", {})
    if needs_binaries(problem):
        return fallback("export pays more than import plus degradation for a V2G car: binaries needed", {})
    if correctors is not None and (isinstance(correctors, bool) or not isinstance(correctors, int) or correctors < 0):
        raise ValueError(f"correctors: {correctors!r} is not a count of correctors per iteration (expected 0 or more)")
    if correctors and (workers is not None or scheduler is not None):
        raise ValueError(f"correctors: {correctors!r} with workers or a scheduler (the split solve runs Mehrotra "
                         "alone; expected 0 or None)")
    split = workers is not None or scheduler is not None
    numba.set_num_threads(min(int(threads or default_threads(split)), numba.config.NUMBA_NUM_THREADS))
    warm_up_beside()  # numba's registries load beside the LP build and the layout, not at the first kernel
    stats = {"iterations": 0, "correctors": 0, "layout_seconds": 0.0, "iterations_seconds": 0.0}
    seen: dict = {}
    solve_lp = _interior_point(workers, scheduler)
    unsplit = workers is None and scheduler is None  # the split solve runs Mehrotra alone (checked above)
    options = {"correctors": Correctors(count=correctors)} if unsplit and correctors is not None else {}
    return _certified(problem, max_iterations, deadline, verbose, stats, seen, solve_lp, fallback,
                      on_iteration=on_iteration, ipm_options=options)


def _interior_point(workers: int | None, scheduler: str | None):
    """The interior point for ``workers`` / ``scheduler`` (see :func:`solve_structured`), called with a
    :class:`~.layout.Derived` layout: unsplit, or split on an executor (which lets go of the whole layout once the
    partitions hold their slices). A dask client is opened for the split solve and closed when it returns, a local
    cluster with it: its workers' memory is given back before the write-back and the verifier (at 100,000 sessions
    the workers hold gigabytes; docs/design/district.md, "The coordinator's memory")."""
    if workers is None and scheduler is None:
        return lambda source, cost, **options: interior_point(source.get(), cost, **options)
    if workers is not None and workers < 0:
        raise ValueError(f"workers: {workers} is not a count of worker processes (expected 0 or more)")
    if scheduler is None and workers == 0:
        return split_interior_point
    from ...cluster import dask_client
    from .on_dask import DaskExecutor

    def on_dask(layout, cost, **options):
        with dask_client(workers, scheduler) as client:
            return split_interior_point(layout, cost, executor=DaskExecutor(client), **options)
    return on_dask


def _certified(problem, max_iterations, deadline, verbose, stats, seen, solve_lp, fallback, *,
               on_iteration: OnIteration | None = None, ipm_options: dict | None = None) -> Schedule:
    """The body of :func:`solve_structured` once its options are settled."""
    def run(lp: LinearProgram) -> RunResult:
        t0 = time.perf_counter()
        try:
            source = Derived(lp, derive_layout(lp))  # no name of its own here: the split solve lets go of it
        except LayoutError as exc:
            raise _Fallback(f"layout: {exc}") from None
        t1 = time.perf_counter()
        log = (lambda text: print(text, file=sys.stderr)) if verbose else None
        with threadpool_limits(limits=1, user_api="blas"):  # BLAS threads would spin against numba's
            result = solve_lp(source, lp.col_cost, offset=lp.offset, max_iterations=max_iterations,
                              deadline=deadline, log=log, on_iteration=on_iteration, **(ipm_options or {}))
        t2 = time.perf_counter()
        stats["layout_seconds"] += t1 - t0
        stats["iterations_seconds"] += t2 - t1
        stats["iterations"] += result.iterations
        stats["correctors"] += result.correctors
        for part, value in result.seconds.items():
            stats[f"ipm_{part}_seconds"] = stats.get(f"ipm_{part}_seconds", 0.0) + value
        if result.status != "optimal":
            raise _Fallback(f"{result.status.replace('_', ' ')} after {result.iterations} iterations"
                            + (f": {result.message}" if result.message else ""))
        seen.update(lp=lp, lower=result.lower_bound + lp.offset, returned=time.perf_counter())
        return RunResult(result.x, result.primal_objective, "optimal", t2 - t1)

    try:
        schedule = solve_exactly(problem, run, solver="structured", solver_version=f"numba {numba.__version__}",
                                 method="mehrotra-block")
    except _Fallback as exc:
        return fallback(str(exc), stats)
    if not seen:  # no column at all: the one schedule there is (base load only) is exact, nothing to certify
        schedule.summary.update({"lower_bound_cny": schedule.summary["objective_cny"], "gap_rel": 0.0, **stats,
                                 "certificate_seconds": 0.0, "writeback_seconds": 0.0, "fallback": None})
        return schedule
    writeback_s = time.perf_counter() - seen["returned"]

    t0 = time.perf_counter()
    upper = schedule.summary["objective_cny"]
    lower = seen["lower"]
    gap = (upper - lower) / max(1.0, abs(upper))
    check = verify(problem.instance, schedule)
    certificate_s = time.perf_counter() - t0
    stats.update(certificate_seconds=certificate_s, writeback_seconds=writeback_s)
    if not check.ok:
        return fallback(f"rows do not hold within the verifier's tolerance: {check.violations[0]}", stats)
    if not gap <= GAP_TOLERANCE:
        return fallback(f"certified gap {gap:.2e} above {GAP_TOLERANCE:g}", stats)
    schedule.summary.update({"lower_bound_cny": lower, "gap_rel": gap, **stats, "fallback": None})
    return schedule


def solve_auto(problem: Problem, **options) -> Schedule:
    """``structured`` where it wins by measurement (:data:`AUTO_MIN_V2G_SESSIONS`, :data:`AUTO_MIN_SESSIONS`; it
    falls back to HiGHS itself where it cannot certify), HiGHS elsewhere."""
    if int(problem.v2g.sum()) >= AUTO_MIN_V2G_SESSIONS or problem.n_sessions >= AUTO_MIN_SESSIONS:
        return solve_structured(problem, **options)
    highs_only = ("max_iterations", "on_iteration", "workers", "scheduler", "correctors")
    return solve_highs(problem, **{k: v for k, v in options.items() if k not in highs_only})


__all__ = ["GAP_TOLERANCE", "default_threads", "needs_binaries", "solve_auto", "solve_structured"]
