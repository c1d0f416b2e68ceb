"""Exact solve of the LP of :mod:`gridcharge.formulation.lp` with any LP/MIP back-end: the charge-or-discharge rule,
infeasibility diagnosis and write-back, shared by the direct HiGHS path and the Pyomo path.

Charge and discharge of one car in one period are exclusive. The LP relaxes that; when its optimum uses both for some
(session, period) pairs, those pairs get a binary and the model is solved again as a MIP, until no pair uses both.
This is exact: each round solves a relaxation of the true problem (binaries on a subset of pairs), so an optimum of a
round that uses no pair both ways is optimal for the true problem. Where netting is provably free (import price >=
export price - degradation, so the cost does not rise, the signed power is unchanged, and the battery only gains by
the avoided round-trip loss without leaving its bounds), both-ways pairs are netted instead of branching. This is
what makes the interior-point method usable without crossover: its optimum sits a hair inside the bounds, leaving
charge and discharge of many cars both slightly positive (complementarity residue).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, Overload, SolverError
from ..formulation.lp import LinearProgram, build_lp
from ..problem import Problem
from ..schedule import Schedule, cost_cny, delivered_kwh, drawn_kw, node_loads, overload_kwh, summarise
from ..verify import verify
from .executable import (DONE_KWH, Refill, export_limits_hold, round_and_refill, round_down, round_signed_down, snap,
                         trade_steps, trim)

#: A pair charges *and* discharges when both exceed this [kW].
BOTH_WAYS_TOL_KW = 1e-7
MAX_BINARY_ROUNDS = 20
#: Executable schedules (instances with min_current_a / current_step_a), mode "auto": the exact MIP up to this many
#: sessions, the rounding of the LP optimum beyond (benchmarks/RESULTS.md, "Executable schedules").
EXACT_MAX_SESSIONS = 50
#: ... and the exact MIP gets at most this long in "auto" mode before the rounding is used instead [s].
EXACT_TIME_LIMIT_S = 10.0
#: Relative MIP gap HiGHS stops at for the executable MIP [-] (measured: benchmarks/RESULTS.md).
EXECUTABLE_MIP_REL_GAP = 1e-3
EXECUTABLE_MODES = ("auto", "exact", "rounding")
#: Netting may lift an energy state above its bound by at most this, relative to max(1, |bound|) [kWh]: the size of
#: an interior-point solution's own residuals, a tenth of the verifier's tolerance.
NETTING_TOL_KWH = 1e-7


@dataclass
class RunResult:
    """What a back-end returns for one model: solution (None unless optimal), objective (HiGHS: a MIP's with the
    offset, an LP's without), status."""

    x: np.ndarray | None
    objective: float | None
    status: str  # "optimal", "infeasible", "time_limit", ...
    seconds: float  # the solver's own time [s]
    build_seconds: float = 0.0  # model building inside the back-end (Pyomo) [s]
    mip_gap: float | None = None  # a MIP's relative gap between its solution and its bound [-]; None for an LP


Runner = Callable[[LinearProgram], RunResult]


def solve_exactly(problem: Problem, run: Runner, *, allow_overload: bool = False, net: bool = True,
                  executable: str = "auto", mip_capable: bool = True, mip_rel_gap: float | None = None,
                  refill_problem: Problem | None = None, accept: Callable[[np.ndarray], bool] | None = None,
                  **summary_extra) -> Schedule:
    """Build, solve with ``run``, enforce charge-or-discharge exactly, write back a :class:`Schedule`.

    Parameters
    ----------
    problem : Problem
    run : callable — ``run(lp) -> RunResult``; solves one built LP/MIP
    allow_overload : bool — node limits as penalised slack
    net : bool — allow the exact netting moves (off when user constraints may involve charge or discharge alone)
    executable : {"auto", "exact", "rounding"} — how an instance with min_current_a / current_step_a gets an
        executable schedule: the exact MIP (semi-continuous / semi-integer columns; stopped by a time limit, its
        incumbent), compared with the rounding and the cheaper kept; the rounding and re-fill of the continuous
        optimum; or "auto": exact up to :data:`EXACT_MAX_SESSIONS` sessions (and :data:`EXACT_TIME_LIMIT_S`),
        rounding beyond. The rounding is proven for charging; floored cars' discharges are rounded per car as the
        verifier passes them, else it starts from the continuous optimum without their discharge. A car's last
        increment may overshoot what it needs (a set-point is a limit; docs/design/executable.md). Ignored for
        continuous instances.
    mip_capable : bool — ``run`` can solve semi-continuous / semi-integer columns (else: rounding only)
    mip_rel_gap : float, optional — the executable MIP's relative gap [-] (default :data:`EXECUTABLE_MIP_REL_GAP`)
    refill_problem : Problem, optional — the Problem whose limits the rounding's re-fill keeps (default ``problem``):
        a tighter one when ``run`` adds rows a Problem cannot say (the online controller folds its demand-response
        caps in as base load)
    accept : callable, optional — ``accept(power) -> bool``: a further test a rounded start must pass besides the
        verifier (the online controller's rows an instance cannot say: caps, a V2G car's give-back)
    **summary_extra — solver, solver_version, method ... for the summary

    Raises
    ------
    InfeasibleError — no schedule keeps every limit (with the node, limit, period and kW that cannot be met)
    SolverError — the back-end stopped without an optimum (time limit, numerical trouble)
    """
    if executable not in EXECUTABLE_MODES:
        raise ValueError(f"executable {executable!r}: expected one of {', '.join(EXECUTABLE_MODES)}")
    lp, x, binary, build_s, solve_s, _ = _solve_rounds(problem, run, allow_overload=allow_overload, net=net)
    started = time.perf_counter()
    power = lp.power_kw(x, problem.n_sessions, problem.n_periods)
    overload = _overload_kwh(problem, lp, x)
    extract_s = time.perf_counter() - started
    solver_objective = float(lp.col_cost @ x[: lp.n_col]) + lp.offset
    status = "optimal"
    found = {}
    if problem.executable:
        power, found = _executable(problem, run, power, mode=executable, mip_capable=mip_capable,
                                   mip_rel_gap=EXECUTABLE_MIP_REL_GAP if mip_rel_gap is None else mip_rel_gap,
                                   allow_overload=allow_overload, net=net, refill_problem=refill_problem,
                                   accept=accept)
        build_s += found.pop("build_seconds")
        solve_s += found.pop("solve_seconds")
        lp, n_integer = found.pop("lp", lp), found.pop("n_integer")
        solver_objective = found.pop("solver_objective_cny", None)
        status = "optimal" if found["executable_method"].startswith("exact_mip") else "feasible"
        tolerance = found.pop("mip_rel_gap")
        if found.get("mip_gap") is not None and found["mip_gap"] > tolerance * (1 + 1e-9):
            status = "time_limit"  # the MIP's incumbent when it stopped (or the rounding, when that was cheaper)
        if overload is not None:
            overload = overload_kwh(problem, power)
    else:
        n_integer = int(binary.sum())
    summary = summarise(
        problem, power,
        status=status, solver_objective_cny=solver_objective,
        build_seconds=build_s, solve_seconds=solve_s, extract_seconds=extract_s,
        n_columns=lp.n_col, n_rows=lp.n_row, n_nonzeros=lp.n_nz, n_binaries=n_integer,
        overload_kwh=float(overload.sum()) if overload is not None else 0.0,
        **found, **summary_extra,
    )
    series = None if overload is None else pd.Series(overload, index=problem.node_ids, name="overload_kwh")
    return Schedule(problem=problem, power=power, summary=summary, overload_kwh=series)


def _executable(problem: Problem, run: Runner, continuous: np.ndarray, *, mode: str, mip_capable: bool,
                mip_rel_gap: float, allow_overload: bool, net: bool,
                refill_problem: Problem | None = None,
                accept: Callable[[np.ndarray], bool] | None = None) -> tuple[np.ndarray, dict]:
    """An executable schedule from the continuous optimum ``continuous``: the exact MIP or the rounding (see
    :func:`solve_exactly`). Returns the power and the summary figures (``lp`` and timings for the caller)."""
    bound = cost_cny(problem, continuous)  # the LP relaxation: no executable schedule costs less
    exact = mip_capable and (mode == "exact" or (mode == "auto" and problem.n_sessions <= EXACT_MAX_SESSIONS))
    found = {"build_seconds": 0.0, "solve_seconds": 0.0, "mip_rel_gap": mip_rel_gap}
    power = None
    if exact:
        limit = EXACT_TIME_LIMIT_S if mode == "auto" else None
        # a car's last increment may overshoot its need (it draws less); where the smaller draw would break an
        # export limit the set-points kept, the MIP is solved again without overshoot
        for overshoot in (True, False):
            try:
                lp, x, binary, build_s, solve_s, gap = _solve_rounds(
                    problem, run, allow_overload=allow_overload, net=net, executable=True, mip_rel_gap=mip_rel_gap,
                    mip_time_limit_s=limit, overshoot=overshoot)
            except SolverError:
                if limit is None:
                    raise
                found["exact_mip_fallback"] = "time_limit"  # then the rounding below
                break
            found["build_seconds"] += build_s
            found["solve_seconds"] += solve_s
            power = trim(problem, snap(problem, lp.power_kw(x, problem.n_sessions, problem.n_periods)))
            if allow_overload or export_limits_hold(problem, power):
                found.update(lp=lp, mip_gap=gap, executable_method="exact_mip", mip_overshoot=overshoot,
                             n_integer=int((lp.integrality > 0).sum()) if lp.integrality is not None else 0,
                             solver_objective_cny=float(lp.col_cost @ x[: lp.n_col]) + lp.offset)
                break
            power = None
    if power is None:
        power, rounded = _rounding(problem, run, continuous, allow_overload=allow_overload, net=net,
                                    refill_problem=refill_problem, accept=accept)
        found["build_seconds"] += rounded.pop("build_seconds")
        found["solve_seconds"] += rounded.pop("solve_seconds")
        found.update(rounded, n_integer=found.get("n_integer", 0), mip_gap=None)
    else:
        # the MIP bills a car's overshooting set-point in full (credited at its cheapest price; a V2G car tops up in
        # its last period only), so the rounding of the LP optimum, which may top up anywhere after the last
        # discharge, can cost less: keep the cheaper (both executable and verified below)
        try:
            other, rounded = _rounding(problem, run, continuous, allow_overload=allow_overload, net=net,
                                    refill_problem=refill_problem, accept=accept)
        except SolverError:  # the rounding breaks an export limit here: the MIP's schedule stands
            other = None
        else:
            found["build_seconds"] += rounded.pop("build_seconds")
            found["solve_seconds"] += rounded.pop("solve_seconds")
        found["mip_objective_cny"] = cost_cny(problem, power)
        if other is not None and cost_cny(problem, other) < found["mip_objective_cny"] - 1e-9:
            power = other
            found["executable_method"] = "exact_mip_then_rounding"
    cost = cost_cny(problem, power)
    found.update(continuous_objective_cny=bound,
                 continuous_unmet_kwh=float(np.clip(problem.energy_request_kwh - delivered_kwh(problem, continuous),
                                                    0.0, None).sum()),
                 executable_gap_rel=(cost - bound) / max(abs(bound), 1e-9) if problem.n_sessions else 0.0)
    return power, found


def _rounding(problem: Problem, run: Runner, continuous: np.ndarray, *, allow_overload: bool, net: bool,
              refill_problem: Problem | None = None,
              accept: Callable[[np.ndarray], bool] | None = None) -> tuple[np.ndarray, dict]:
    """The rounding and re-fill of the continuous optimum (see :func:`solve_exactly`, also for ``refill_problem``
    and ``accept``); returns the power and its summary figures (with ``build_seconds`` and ``solve_seconds``)."""
    refill_on = problem if refill_problem is None else refill_problem
    floored = problem.min_power_kw > 0
    discharges = bool((continuous[floored] < -BOTH_WAYS_TOL_KW).any())
    found = {"build_seconds": 0.0, "solve_seconds": 0.0}
    starts = {"lp": continuous}
    if discharges and not allow_overload:
        # charges rounded down; each car's discharges towards 0 (battery floors and export limits hold; a car that
        # ends its stay discharging may end above its request), else, for the cars that break a rule so, up in
        # magnitude (import, phase and battery-upper limits hold), else none at all (the car only charges, and stops
        # at its request); the verifier judges each step
        start = round_down(problem, continuous)
        for other in (round_signed_down(problem, continuous), round_down(problem, np.clip(continuous, 0.0, None))):
            start = trim(problem, start)  # a car that only charges now stops at its request: no set-point above
            result = verify(problem.instance, start)
            if result.ok:
                break
            cars = np.isin(problem.session_ids, [v.where for v in result.violations])
            start[cars] = other[cars]
        start = trim(problem, start)
        kept = verify(problem.instance, start).ok and (accept is None or accept(start))
        starts = {"lp_with_discharge_rounded_per_car": start} if kept else {}
    if discharges and not starts:
        # the rounding is proven for charging: take the continuous optimum in which floored cars only charge
        # (their V2G value is lost; the gap to the LP bound above says how much)
        charge_only = replace(problem, discharge_max_kw=np.where(floored, 0.0, problem.discharge_max_kw))
        lp, x, _, build_s, solve_s, _ = _solve_rounds(charge_only, run, allow_overload=allow_overload, net=net)
        starts = {"lp_without_v2g_of_floored_cars": lp.power_kw(x, problem.n_sessions, problem.n_periods)}
        found["build_seconds"] += build_s
        found["solve_seconds"] += solve_s
    started = time.perf_counter()
    done = {}
    for name, start in starts.items():
        peak = float(node_loads(problem, start)[problem.root].max()) if problem.peak_cost > 0 else None
        done[name] = round_and_refill(refill_on, start, peak_cap_kw=peak)
        if name == "lp_with_discharge_rounded_per_car":
            # a V2G car that ends its stay selling and is left short trades charge steps against discharge steps
            # to land just below its request (docs/design/executable.md, "Discharge")
            done[name] = _traded(problem, refill_on, *done[name], peak, accept)
            # a car that ends its stay discharging cannot top up its last increment (nothing follows to be cut at
            # its request), so its remainder stays unmet. Two ways out per car, each tried on every such car and
            # kept where it costs that car less: give up the discharges after its last charge (it then stops at
            # its request in its last charging phase), or all its discharges
            short = (problem.energy_request_kwh - delivered_kwh(problem, done[name][0]) > DONE_KWH) & problem.v2g
            if short.any():
                charging = start > 0
                last_charge = np.where(charging.any(axis=1),
                                       problem.n_periods - 1 - np.argmax(charging[:, ::-1], axis=1), -1)
                late = np.arange(problem.n_periods)[None, :] > last_charge[:, None]
                options = [np.where(late & (start < 0), 0.0, start),  # without the final sale
                           round_down(problem, np.clip(continuous, 0.0, None))]  # without any
                best, choice = _cost_per_car(problem, done[name][0]), np.full(problem.n_sessions, -1)
                for k, option in enumerate(options):
                    trial = start.copy()
                    trial[short] = option[short]
                    cost = _cost_per_car(problem, round_and_refill(refill_on, trial, peak_cap_kw=peak)[0])
                    cheaper = short & (cost < best)
                    best, choice = np.where(cheaper, cost, best), np.where(cheaper, k, choice)
                mixed = start.copy()
                for k, option in enumerate(options):
                    mixed[choice == k] = option[choice == k]
                mixed = _undo_where_limits_break(problem, mixed, start)
                trimmed = trim(problem, mixed)
                if ((choice >= 0).any() and verify(problem.instance, trimmed).ok
                        and (accept is None or accept(trimmed))):
                    done["lp_with_discharge_rounded_per_car_final_sales_dropped"] = _traded(
                        problem, refill_on, *round_and_refill(refill_on, mixed, peak_cap_kw=peak), peak, accept)
    name = min(done, key=lambda n: cost_cny(problem, done[n][0]))
    power, refilled = done[name]
    if not export_limits_hold(problem, power):
        raise SolverError("rounding the charging down breaks an export (reverse-flow) limit the continuous "
                          "optimum kept; use executable='exact'")
    found["solve_seconds"] += time.perf_counter() - started
    found.update(executable_method="rounding", rounding_from=name, refill_rounds=refilled.rounds)
    return power, found


def _traded(problem: Problem, refill_on: Problem, power: np.ndarray, refilled: Refill, peak: float | None,
            accept: Callable[[np.ndarray], bool] | None) -> tuple[np.ndarray, Refill]:
    """``power`` after :func:`trade_steps` (on ``refill_on``'s limits) where that is cheaper, verified and
    accepted; else ``power``."""
    traded = trim(problem, trade_steps(refill_on, power, peak_cap_kw=peak))
    if (np.array_equal(traded, power) or cost_cny(problem, traded) >= cost_cny(problem, power) - 1e-9
            or not verify(problem.instance, traded).ok or (accept is not None and not accept(traded))):
        return power, refilled
    return traded, refilled


#: Rounds of :func:`_undo_where_limits_break`.
UNDO_ROUNDS = 4


def _undo_where_limits_break(problem: Problem, changed: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``changed`` with every car that differs from ``before`` in a period where a node above it breaks a limit
    (a discharge given up raises the load the sale offset) set back to ``before``, a few rounds."""
    for _ in range(UNDO_ROUNDS):
        result = verify(problem.instance, trim(problem, changed))
        nodes = [v for v in result.violations if v.kind in ("node_import", "node_export", "phase_import")]
        if not nodes:
            break
        broken = np.zeros((problem.n_nodes, problem.n_periods), dtype=bool)
        index = {n: i for i, n in enumerate(problem.node_ids)}
        for v in nodes:
            broken[index[v.where.split("/")[0]], v.period] = True
        differs = np.abs(changed - before) > 1e-12
        hit = differs[problem.member_session] & broken[problem.member_node]
        cars = np.unique(problem.member_session[hit.any(axis=1)])
        changed = changed.copy()
        changed[cars] = before[cars]
    return changed


def _cost_per_car(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Each car's share of the objective [CNY], shape (S,): energy bought at the power drawn, minus energy sold
    plus degradation, plus its unmet penalty (no peak charge)."""
    drawn = drawn_kw(problem, power)
    energy = problem.presence * problem.step_hours
    charge, discharge = np.clip(drawn, 0.0, None) * energy, np.clip(-drawn, 0.0, None) * energy
    unmet = np.clip(problem.energy_request_kwh - delivered_kwh(problem, power), 0.0, None)
    return (charge @ problem.import_price - discharge @ (problem.export_price - problem.degradation_cost)
            + problem.unmet_penalty * unmet)


def both_ways(lp: LinearProgram, x: np.ndarray) -> np.ndarray:
    has_d = lp.discharge_col >= 0
    both = np.zeros(len(lp.pair_session), dtype=bool)
    k = np.flatnonzero(has_d)
    both[k] = (x[k] > BOTH_WAYS_TOL_KW) & (x[lp.discharge_col[k]] > BOTH_WAYS_TOL_KW)
    return both


def net_where_free(problem: Problem, lp: LinearProgram, x: np.ndarray, both: np.ndarray,
                    residue: np.ndarray | None = None):
    """Remove simultaneous charge and discharge where that provably keeps the solution feasible and no worse.

    Only where import price >= export price - degradation (otherwise both-ways can genuinely pay, and binaries decide).
    Two exact moves, per session:

    - *keep the power*: take ``m = min(charge, discharge)`` off both. Node loads are unchanged, the cost falls by
      ``f dt (import - export + degradation) m``, the battery gains the avoided round-trip loss
      ``m (1/eta - eta) f dt``; accepted if every energy state of the session stays within its upper bound.
    - *keep the battery*: replace (charge, discharge) by the one signed power with the same battery effect. It is
      never above the old signed power and never costs more, so battery states and import limits hold; accepted if no
      export (reverse-flow) limit breaks.

    ``residue`` marks pairs that already carry a binary: there both directions can only be positive within the MIP's
    integrality tolerance (z = 1e-7 lets 7 kW x 1e-7 through), so they are cleaned whatever the prices.

    Returns the new solution and the pairs no longer both ways.
    """
    t = lp.pair_period
    candidate = both & (problem.import_price[t] >= problem.export_price[t] - problem.degradation_cost)
    if residue is not None:
        candidate |= both & residue
    if not candidate.any():
        return x, candidate
    y = x.copy()
    k = np.flatnonzero(candidate)
    dcol = lp.discharge_col[k]
    eta = problem.efficiency[lp.pair_session[k]]
    step = lp.pair_fraction[k] * problem.step_hours

    # keep the power: energy states rise by the avoided loss, cumulatively within each session
    rise = np.zeros(len(lp.pair_session))
    rise[k] = np.minimum(x[k], x[dcol]) * (1.0 / eta - eta) * step
    v = np.flatnonzero(lp.energy_col >= 0)  # every pair with an energy state, session-major
    sess = lp.pair_session[v]
    first = np.r_[True, sess[1:] != sess[:-1]]
    running = np.cumsum(rise[v])
    within = running - (running - rise[v])[np.flatnonzero(first)][np.cumsum(first) - 1]
    energy = x[lp.energy_col[v]] + within
    upper = lp.col_upper[lp.energy_col[v]]
    refused = np.zeros(problem.n_sessions, dtype=bool)
    refused[sess[energy > upper + NETTING_TOL_KWH * np.maximum(1.0, np.abs(upper))]] = True
    keep_power = ~refused[lp.pair_session[k]]
    kp = k[keep_power]
    common = np.minimum(x[kp], x[lp.discharge_col[kp]])
    y[kp] -= common
    y[lp.discharge_col[kp]] -= common
    ok_states = ~refused[sess]
    y[lp.energy_col[v][ok_states]] = energy[ok_states]
    done = np.zeros_like(candidate)
    done[kp] = True

    # keep the battery, for the sessions where keeping the power would overfill
    kb = k[~keep_power]
    if len(kb):
        eta_b, step_b = eta[~keep_power], step[~keep_power]
        gain = eta_b * x[kb] * step_b - x[lp.discharge_col[kb]] * step_b / eta_b
        signed = np.where(gain >= 0, gain / (eta_b * step_b), gain * eta_b / step_b)
        trial = y.copy()
        trial[kb] = np.maximum(signed, 0.0)
        trial[lp.discharge_col[kb]] = np.maximum(-signed, 0.0)
        if _export_limits_hold(problem, lp, trial):
            y = trial
            done[kb] = True
    return y, done


def _export_limits_hold(problem: Problem, lp: LinearProgram, x: np.ndarray) -> bool:
    limited = np.isfinite(problem.export_limit_kw)
    if not limited.any():
        return True
    load = node_loads(problem, lp.power_kw(x, problem.n_sessions, problem.n_periods))[limited]
    floor = -problem.export_limit_kw[limited, None]
    return bool(np.all(load >= floor - NETTING_TOL_KWH * np.maximum(1.0, np.abs(floor))))


def _overload_kwh(problem: Problem, lp: LinearProgram, x: np.ndarray) -> np.ndarray | None:
    if not len(lp.slack_col):
        return None
    out = np.zeros(problem.n_nodes)
    np.add.at(out, lp.slack_node, x[lp.slack_col] * problem.step_hours)
    return out


def _solve_rounds(problem: Problem, run: Runner, *, allow_overload: bool, net: bool, locating: bool = False,
                  executable: bool = False, mip_rel_gap: float | None = None, mip_time_limit_s: float | None = None,
                  overshoot: bool = True):
    """LP, then netting or binaries until no pair charges and discharges at once (with ``executable``: the MIP whose
    floored and stepped cars take allowed powers only; their pairs are never netted, which could leave the grid).

    Returns ``(lp, x, binary, build_seconds, solve_seconds, mip_gap)`` of the last round.
    """
    started = time.perf_counter()

    def build(**options):
        built = build_lp(problem, allow_overload=allow_overload, executable=executable, overshoot=overshoot,
                         **options)
        built.mip_rel_gap, built.mip_time_limit_s = mip_rel_gap, mip_time_limit_s
        return built

    lp = build()
    build_s = time.perf_counter() - started
    fixed = (problem.min_power_kw > 0) if executable else np.zeros(problem.n_sessions, dtype=bool)
    binary = np.zeros(len(lp.pair_session), dtype=bool)
    solve_s = 0.0
    rounds = 0
    while True:
        # no column at all (no car, no slack, no peak charge): zero power is the only schedule, and back-ends refuse
        # an empty model (HiGHS: 'Empty'); the limits were checked against base load when the LP was built
        result = run(lp) if lp.n_col else RunResult(np.zeros(0), 0.0, "optimal", 0.0)
        solve_s += result.seconds
        build_s += result.build_seconds
        if result.status == "infeasible":
            if locating or allow_overload:
                raise InfeasibleError([], "infeasible even with every node limit as penalised slack: a constraint "
                                          "added through extend= (or a solver fault) is the cause")
            raise locate_infeasibility(problem, run, net=net)
        # the executable MIP stopped by a time limit keeps its incumbent (its gap says how good; the caller compares
        # it with the rounding)
        stopped = executable and result.status == "time_limit" and result.x is not None
        if result.status != "optimal" and not stopped:
            what = ("the executable MIP" if executable else "the MIP (charge/discharge exclusivity)" if binary.any()
                    else "the solver")
            raise SolverError(f"{what} stopped without an optimal solution: {result.status}")
        x = result.x
        both = both_ways(lp, x)
        netted = np.zeros_like(both)
        if both.any():
            residue = both & binary
            free = both & ~fixed[lp.pair_session]
            x, netted = net_where_free(problem, lp, x, free if net else residue, residue=residue)
        rest = both & ~netted & ~binary  # a binary pair left both ways is tolerance-sized; verify judges the result
        if not rest.any():
            return lp, x, binary, build_s, solve_s, result.mip_gap
        rounds += 1
        if rounds > MAX_BINARY_ROUNDS:
            raise SolverError(f"charge/discharge exclusivity did not settle after {MAX_BINARY_ROUNDS} rounds of binaries")
        binary |= rest
        started = time.perf_counter()
        lp = build(binary_pairs=np.flatnonzero(binary))
        build_s += time.perf_counter() - started


def locate_infeasibility(problem: Problem, run: Runner, net: bool = True) -> InfeasibleError:
    """Solve with every limit as penalised slack (exactly: the same charge-or-discharge rounds); the slack that
    remains says which limit cannot be met where, by how many kW."""
    lp, x, _, _, _, _ = _solve_rounds(problem, run, allow_overload=True, net=net, locating=True)
    used = x[lp.slack_col] > 1e-6
    overloads = [
        Overload(node=problem.node_ids[n], kind=str(kind), period=int(t), start=problem.period_start[t].isoformat(),
                 excess_kw=float(v))
        for n, kind, t, v in zip(lp.slack_node[used], lp.slack_kind[used], lp.slack_period[used], x[lp.slack_col][used])
    ]
    if not overloads:
        return InfeasibleError([], "the model is infeasible, but every node limit can be met: a constraint added "
                                   "through extend= (or a solver fault) is the cause")
    return InfeasibleError(overloads, "the limits cannot all be met together (battery floors, V2G and the rule that "
                                      "a car cannot charge and discharge at once leave these nodes over)")


