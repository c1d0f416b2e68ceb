"""Solve the LP of :mod:`gridcharge.formulation.lp` with HiGHS through highspy, arrays straight in.

The charge-or-discharge rule, infeasibility diagnosis and write-back are in :mod:`gridcharge.solvers.exact`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib.metadata import version

import highspy
import numpy as np

from ..errors import SolverError
from ..formulation.lp import LinearProgram
from ..problem import Problem
from ..schedule import Schedule
from .exact import RunResult, solve_exactly

def solve_highs(problem: Problem, *, time_limit_s: float | None = None, allow_overload: bool = False,
                method: str = "auto", verbose: bool = False, threads: int | None = None, executable: str = "auto",
                mip_rel_gap: float | None = None) -> Schedule:
    """Optimal schedule with HiGHS.

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — wall-clock limit per HiGHS call [s]
    allow_overload : bool — node limits become penalised slack; overload kWh per node is reported
    method : {"auto", "simplex", "ipm"} — LP method; "auto" is simplex (measured on the residential family,
        benchmarks/RESULTS.md: dual simplex beat interior point at every size up to 10,000 sessions)
    verbose : bool — HiGHS log on the console
    threads : int, optional — HiGHS threads (default: HiGHS's choice)
    executable : {"auto", "exact", "rounding"} — for an instance with min_current_a / current_step_a: the exact
        MIP, the rounding of the LP optimum, or exact up to a measured size and rounding beyond (see
        :func:`gridcharge.solvers.exact.solve_exactly`); the summary reports ``executable_method``, ``mip_gap``,
        ``continuous_objective_cny`` (the LP bound) and ``executable_gap_rel``
    mip_rel_gap : float, optional — the executable MIP's relative gap tolerance [-]
    """
    if method not in ("auto", "simplex", "ipm"):
        raise ValueError(f"method {method!r}: expected one of auto, simplex, ipm")
    chosen = {"auto": "simplex"}.get(method, method)
    fallbacks: list[str] = []

    def run(lp: LinearProgram) -> RunResult:
        result = run_highs(lp, time_limit_s=time_limit_s, method=chosen, verbose=verbose, threads=threads)
        if chosen == "ipm" and result.status not in ("optimal", "infeasible", "time_limit"):
            # HiGHS's interior point without crossover can end 'Unknown' when postsolve finds the interior solution
            # dual infeasible (seen on tiny V2G models); dual simplex then settles it
            fallbacks.append(result.status)
            retry = run_highs(lp, time_limit_s=time_limit_s, method="simplex", verbose=verbose, threads=threads)
            retry.seconds += result.seconds
            return retry
        return result

    schedule = solve_exactly(problem, run, allow_overload=allow_overload, executable=executable,
                             mip_rel_gap=mip_rel_gap, solver="highs",
                             solver_version=version("highspy"), method=chosen)
    schedule.summary["ipm_fallbacks_to_simplex"] = len(fallbacks)
    return schedule


#: HiGHS model status → gridcharge's status words (also used by the online controller).
HIGHS_STATUS = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnbounded: "unbounded",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
    highspy.HighsModelStatus.kInterrupt: "interrupted",
    highspy.HighsModelStatus.kIterationLimit: "iteration_limit",
}


def new_highs(lp: LinearProgram, *, method: str = "simplex", verbose: bool = False, threads: int | None = None,
              time_limit_s: float | None = None, options: Mapping | None = None) -> highspy._Highs:
    """A HiGHS object holding ``lp``, with gridcharge's options: the one HiGHS set-up of the package (cold solves
    here, kept models in :mod:`gridcharge.solvers.warm`).

    Parameters
    ----------
    lp : LinearProgram
    method : {"simplex", "ipm"} — LP method (a MIP gets tight gaps instead)
    verbose : bool — HiGHS log on the console
    threads : int, optional — HiGHS threads
    time_limit_s : float, optional — HiGHS time limit [s]
    options : mapping, optional — more HiGHS options (name → value); a refused one is a ValueError
    """
    h = highspy._Highs()  # the raw binding: the Python wrapper prints a banner on stdout at construction
    h.setOptionValue("output_flag", bool(verbose))
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    for option, value in (options or {}).items():
        if h.setOptionValue(option, value) == highspy.HighsStatus.kError:
            raise ValueError(f"HiGHS option {option}={value!r} was refused")
    if lp.integrality is None:
        h.setOptionValue("solver", method)
        if method == "ipm":
            # no crossover: its pushes cost more than the interior solve here, and the interior optimum's
            # degenerate charge-and-discharge pairs are netted exactly afterwards (see net_where_free)
            h.setOptionValue("run_crossover", "off")
    else:
        h.setOptionValue("mip_rel_gap", 1e-9 if lp.mip_rel_gap is None else float(lp.mip_rel_gap))
        h.setOptionValue("mip_abs_gap", 1e-9)
        if lp.mip_time_limit_s is not None:
            h.setOptionValue("time_limit", min(float(lp.mip_time_limit_s), float(time_limit_s or np.inf)))
    integrality = lp.integrality if lp.integrality is not None else np.zeros(lp.n_col, dtype=np.int32)
    # a MIP gets the objective's constant (the unmet penalty on every kWh requested): HiGHS's relative gap is then
    # relative to the cost itself, not to a cost minus a large constant
    offset = 0.0 if lp.integrality is None else float(lp.offset)
    status = h.passModel(lp.n_col, lp.n_row, lp.n_nz, int(highspy.MatrixFormat.kColwise),
                         int(highspy.ObjSense.kMinimize), offset, lp.col_cost, lp.col_lower, lp.col_upper, lp.row_lower,
                         lp.row_upper, lp.a_start, lp.a_index, lp.a_value, integrality)
    if status == highspy.HighsStatus.kError:
        raise SolverError("HiGHS rejected the model (passModel returned an error)")
    return h


def status_name(h: highspy._Highs) -> str:
    """The model status of ``h`` in gridcharge's words (:data:`HIGHS_STATUS`, else HiGHS's own)."""
    model_status = h.getModelStatus()
    return HIGHS_STATUS.get(model_status, h.modelStatusToString(model_status))


def run_highs(lp: LinearProgram, *, time_limit_s=None, method="simplex", verbose=False, threads=None) -> RunResult:
    """Pass the arrays to a fresh HiGHS object and solve."""
    h = new_highs(lp, method=method, verbose=verbose, threads=threads, time_limit_s=time_limit_s)
    started = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - started
    name = status_name(h)
    info = h.getInfo()
    # a MIP stopped by its time limit with a feasible incumbent (primal_solution_status 2) returns it, with its gap
    incumbent = lp.integrality is not None and name == "time_limit" and info.primal_solution_status == 2
    if name != "optimal" and not incumbent:
        return RunResult(None, None, name, seconds)
    x = np.asarray(h.getSolution().col_value, dtype=float)
    gap = None
    if lp.integrality is not None:
        gap = float(info.mip_gap)
        if not np.isfinite(gap) and abs(info.objective_function_value - info.mip_dual_bound) <= 1e-9:
            gap = 0.0  # HiGHS's relative gap is undefined at an objective of 0 reached by the bound too
    return RunResult(x, info.objective_function_value, name, seconds, mip_gap=gap)
