"""Solve the LP of :mod:`gridcharge.formulation.lp` with HiGHS through highspy, arrays straight in.

Charge and discharge of one car in one period are exclusive. The LP relaxes that; when its optimum uses both for some
(session, period) pairs, those pairs get a binary and the model is solved again as a MIP, until no pair uses both.
This is exact: each round solves a relaxation of the true problem (binaries on a subset of pairs), so an optimum of a
round that uses no pair both ways is optimal for the true problem. Where netting is provably free (efficiency 1 and
import price >= export price - degradation, so the signed power, the battery and the cost are unchanged or better),
both-ways pairs are netted instead of branching.
"""

from __future__ import annotations

import time
from importlib.metadata import version

import highspy
import numpy as np
import pandas as pd

from ..errors import InfeasibleError, Overload, SolverError
from ..formulation.lp import LinearProgram, build_lp
from ..problem import Problem
from ..schedule import Schedule, summarise

#: Above this many non-zeros the interior-point method is used by default (``method="auto"``).
IPM_THRESHOLD_NZ = 200_000
#: A pair charges *and* discharges when both exceed this [kW].
BOTH_WAYS_TOL_KW = 1e-7
MAX_BINARY_ROUNDS = 20


def solve_highs(problem: Problem, *, time_limit_s: float | None = None, allow_overload: bool = False,
                method: str = "auto", verbose: bool = False, threads: int | None = None) -> Schedule:
    """Optimal schedule with HiGHS.

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — wall-clock limit per HiGHS call [s]
    allow_overload : bool — node limits become penalised slack; overload kWh per node is reported
    method : {"auto", "simplex", "ipm", "pdlp"} — "auto" picks simplex for small models, interior point for large
    verbose : bool — HiGHS log on the console
    threads : int, optional — HiGHS threads (default: HiGHS's choice)
    """
    started = time.perf_counter()
    lp = build_lp(problem, allow_overload=allow_overload)
    build_s = time.perf_counter() - started
    chosen = method if method != "auto" else ("ipm" if lp.n_nz > IPM_THRESHOLD_NZ else "simplex")
    options = dict(time_limit_s=time_limit_s, method=chosen, verbose=verbose, threads=threads)

    solve_s = 0.0
    x, objective, status, seconds = _run(lp, **options)
    solve_s += seconds
    if status == "infeasible":
        raise _locate_infeasibility(problem, options)
    if status != "optimal":
        raise SolverError(f"HiGHS stopped without an optimal solution: {status}"
                          + (f" (time limit {time_limit_s} s)" if status == "time_limit" else ""))

    binary = np.zeros(len(lp.pair_session), dtype=bool)
    rounds = 0
    while True:
        both = _both_ways(lp, x)
        if not both.any():
            break
        eta1 = problem.efficiency[lp.pair_session] == 1.0
        t = lp.pair_period
        convex = problem.import_price[t] >= problem.export_price[t] - problem.degradation_cost
        free = both & eta1 & convex & ~binary
        if free.any():
            k = np.flatnonzero(free)
            common = np.minimum(x[k], x[lp.discharge_col[k]])
            x[k] -= common
            x[lp.discharge_col[k]] -= common
        rest = both & ~free
        if not rest.any():
            continue
        rounds += 1
        if rounds > MAX_BINARY_ROUNDS:
            raise SolverError("charge/discharge exclusivity did not settle after "
                              f"{MAX_BINARY_ROUNDS} rounds of binaries")
        binary |= rest
        started = time.perf_counter()
        lp = build_lp(problem, allow_overload=allow_overload, binary_pairs=np.flatnonzero(binary))
        build_s += time.perf_counter() - started
        x, objective, status, seconds = _run(lp, **options)
        solve_s += seconds
        if status != "optimal":
            raise SolverError(f"HiGHS MIP (charge/discharge exclusivity) stopped without an optimum: {status}")

    started = time.perf_counter()
    power = lp.power_kw(x, problem.n_sessions, problem.n_periods)
    overload = _overload_kwh(problem, lp, x)
    extract_s = time.perf_counter() - started
    summary = summarise(
        problem, power,
        status="optimal", objective_cny=objective + lp.offset,
        build_seconds=build_s, solve_seconds=solve_s, extract_seconds=extract_s,
        solver="highs", solver_version=version("highspy"), method=chosen,
        n_columns=lp.n_col, n_rows=lp.n_row, n_nonzeros=lp.n_nz, n_binaries=int(binary.sum()),
        overload_kwh=float(overload.sum()) if overload is not None else 0.0,
    )
    series = None if overload is None else pd.Series(overload, index=problem.node_ids, name="overload_kwh")
    return Schedule(problem=problem, power=power, summary=summary, overload_kwh=series)


def _both_ways(lp: LinearProgram, x: np.ndarray) -> np.ndarray:
    has_d = lp.discharge_col >= 0
    both = np.zeros(len(lp.pair_session), dtype=bool)
    k = np.flatnonzero(has_d)
    both[k] = (x[k] > BOTH_WAYS_TOL_KW) & (x[lp.discharge_col[k]] > BOTH_WAYS_TOL_KW)
    return both


def _overload_kwh(problem: Problem, lp: LinearProgram, x: np.ndarray) -> np.ndarray | None:
    if not len(lp.slack_col):
        return None
    out = np.zeros(problem.n_nodes)
    np.add.at(out, lp.slack_node, x[lp.slack_col] * problem.step_hours)
    return out


def _locate_infeasibility(problem: Problem, options: dict) -> InfeasibleError:
    """Solve with every limit as penalised slack; the slack that remains says which limit cannot be met where."""
    elastic = build_lp(problem, allow_overload=True)
    x, _, status, _ = _run(elastic, **options)
    if status != "optimal":
        return InfeasibleError([], f"HiGHS reports the model infeasible and the elastic model ended {status}")
    used = x[elastic.slack_col] > 1e-6
    overloads = [
        Overload(node=problem.node_ids[n], kind=str(kind), period=int(t), start=problem.period_start[t].isoformat(),
                 excess_kw=float(v))
        for n, kind, t, v in zip(elastic.slack_node[used], elastic.slack_kind[used], elastic.slack_period[used],
                                 x[elastic.slack_col][used])
    ]
    return InfeasibleError(overloads, "the limits cannot all be met together (battery floors and V2G "
                                      "cannot relieve these nodes enough)")


_STATUS = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnbounded: "unbounded",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
    highspy.HighsModelStatus.kIterationLimit: "iteration_limit",
}


def _run(lp: LinearProgram, *, time_limit_s, method, verbose, threads):
    """Pass the arrays to a fresh HiGHS object and solve. Returns (x, objective without offset, status, seconds)."""
    h = highspy._Highs()  # the raw binding: the Python wrapper prints a banner on stdout at construction
    h.setOptionValue("output_flag", bool(verbose))
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    if lp.integrality is None:
        h.setOptionValue("solver", method)
        if method == "ipm":
            h.setOptionValue("run_crossover", "on")
    else:
        h.setOptionValue("mip_rel_gap", 1e-9)
        h.setOptionValue("mip_abs_gap", 1e-9)
    n_col, n_row, n_nz = lp.n_col, lp.n_row, lp.n_nz
    args = [n_col, n_row, n_nz, int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize), 0.0,
            lp.col_cost, lp.col_lower, lp.col_upper, lp.row_lower, lp.row_upper, lp.a_start, lp.a_index, lp.a_value,
            lp.integrality if lp.integrality is not None else np.zeros(n_col, dtype=np.int32)]
    status = h.passModel(*args)
    if status == highspy.HighsStatus.kError:
        raise SolverError("HiGHS rejected the model (passModel returned an error)")
    started = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - started
    model_status = h.getModelStatus()
    name = _STATUS.get(model_status, h.modelStatusToString(model_status))
    if name != "optimal":
        return None, None, name, seconds
    x = np.asarray(h.getSolution().col_value, dtype=float)
    return x, h.getInfo().objective_function_value, name, seconds
