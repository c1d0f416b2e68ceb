"""The optimal re-solve of a window: the LP of its sub-instance, plus what instance-v1 cannot say (cap rows, the
real cars' export rows, the sunk peak, over-request bounds), on the kept HiGHS model of
:mod:`gridcharge.solvers.warm` (docs/design/online.md, "How a re-solve works"). On chargers with a minimum current
or a current step the continuous optimum is then rounded to set-points a car can follow (never a MIP per event).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np

from ..errors import InfeasibleError, Overload, PublicationRejected
from ..formulation.lp import INFEASIBLE_TOLERANCE_KW, LinearProgram
from ..problem import Problem
from ..schedule import Schedule
from ..solvers.exact import RunResult, solve_exactly
from ..solvers.persistent import ExtraRows
from ..solvers.warm import KIND_SHIFT, KeptHighs, KeyScheme
from .checks import bounded_cars, capped_problem, check_schedule
from .window import Window

#: Stable-key kinds of the controller's extra rows (the LP's own use 0-14, :func:`gridcharge.solvers.warm.lp_keys`)
CAP_ROW, REAL_EXPORT_ROW = 15, 16


@dataclass(frozen=True)
class SubtreeRows:
    """Rows ``lower <= sum over the (session, period) pairs of node ``node``'s subtree at ``period`` of
    (charge - discharge) <= upper`` [kW], before they are put in any LP's columns.

    kind : numpy.ndarray, shape (n,) — stable-key kind per row
    lower, upper : numpy.ndarray, shape (n,) [kW]
    node, period : numpy.ndarray, shape (n,) — node index and window period per row
    rows, sess, t : numpy.ndarray — one entry per (row, session, period) taking part
    """

    kind: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    node: np.ndarray
    period: np.ndarray
    rows: np.ndarray
    sess: np.ndarray
    t: np.ndarray

    @property
    def n(self) -> int:
        return len(self.lower)

    def for_lp(self, lp: LinearProgram, problem: Problem, window: Window, total_periods: int) -> ExtraRows:
        """These rows in ``lp``'s column numbering (+1 on each charge column, -1 on each discharge column), with
        stable keys."""
        pair_index = np.full((problem.n_sessions, problem.n_periods), -1, dtype=np.int64)
        pair_index[lp.pair_session, lp.pair_period] = np.arange(len(lp.pair_session))
        k = pair_index[self.sess, self.t]
        dcol = lp.discharge_col[k]
        has_d = dcol >= 0
        cols = np.concatenate([k, dcol[has_d]])
        vals = np.concatenate([np.ones(len(k)), -np.ones(int(has_d.sum()))])
        rows = np.concatenate([self.rows, self.rows[has_d]])
        order = np.argsort(rows, kind="stable")
        start = np.zeros(self.n, dtype=np.int32)
        start[1:] = np.cumsum(np.bincount(rows, minlength=self.n))[:-1]
        keys = (self.kind.astype(np.int64) << KIND_SHIFT) + self.node * total_periods + self.period + window.now
        return ExtraRows(self.lower, self.upper, keys, start, cols[order].astype(np.int32), vals[order])


def solve_window(problem: Problem, window: Window, highs: KeptHighs, *, total_periods: int, budget_s: float,
                 primal: bool, resume: bool, peak_floor_kw: float | None,
                 never_above_request: bool = False) -> Schedule:
    """The optimal schedule of ``problem`` (the window's sub-instance) with the controller's extra rows and bounds,
    solved by :func:`gridcharge.solvers.exact.solve_exactly` on ``highs``.

    When some charger has a minimum current or a step, the continuous optimum (the LP on the kept model, warm as
    for continuous chargers) is made executable by :func:`gridcharge.solvers.executable.round_and_refill`
    (``executable="rounding"``), whose re-fill keeps the controller's rows too (:func:`refill_limits`) and whose
    rounded starts must pass the publication checks (:func:`gridcharge.online.checks.check_schedule`): the exact MIP
    at every event costs minutes per day.

    Raises InfeasibleError before any solve when base load alone breaks a cap; SolverError as ``solve_exactly``.
    ``total_periods``: periods of the day (stable keys); ``budget_s``, ``primal``, ``resume``: as
    :meth:`gridcharge.solvers.warm.KeptHighs.run`; ``peak_floor_kw``: the root load already reached today [kW]
    (the peak charge's floor), or None.
    """
    extra = extra_rows(problem, window.caps_kw, window.n_real)
    scheme = KeyScheme(window.serials, window.now, total_periods)

    def run(lp: LinearProgram) -> RunResult:
        patch_bounds(lp, problem, window.final_upper_kwh, peak_floor_kw, never_above_request)
        rows = extra.for_lp(lp, problem, window, total_periods) if extra is not None else None
        return highs.run(lp, rows, scheme, budget_s=budget_s, primal=primal, resume=resume)

    options = {}
    if problem.executable:
        def accept(power: np.ndarray) -> bool:
            try:
                check_schedule(problem, power, window, never_above_request)
            except PublicationRejected:
                return False
            return True

        options = dict(refill_problem=refill_limits(problem, window, never_above_request), accept=accept)
    return solve_exactly(problem, run, executable="rounding", solver="highs", solver_version=version("highspy"),
                         method="simplex", **options)


def refill_limits(problem: Problem, window: Window, never_above_request: bool = False) -> Problem:
    """``problem`` with what the controller adds to its model and the rounding's re-fill must keep too: the
    demand-response caps folded in as base load (:func:`gridcharge.online.checks.capped_problem`), a V2G car above
    its request given its over-request bound as its request [kWh] (negative: what it must give back), and the energy
    bound of the cars :func:`gridcharge.online.checks.bounded_cars` keeps within their request at most it [kWh]."""
    capped = capped_problem(problem, window.caps_kw)
    over = np.isfinite(window.final_upper_kwh)
    request = np.where(over, np.minimum(problem.energy_request_kwh, np.where(over, window.final_upper_kwh, 0.0)),
                       problem.energy_request_kwh)
    upper = np.where(bounded_cars(problem, never_above_request),
                     np.minimum(problem.energy_upper_kwh, np.maximum(request, 0.0)), problem.energy_upper_kwh)
    return dataclasses.replace(capped, energy_request_kwh=request, energy_upper_kwh=upper)


def peak_floor(problem: Problem, peak_so_far_kw: float) -> float | None:
    """The peak column's floor [kW]: the root load already reached today, when a peak charge is paid."""
    return peak_so_far_kw if problem.peak_cost > 0 and math.isfinite(peak_so_far_kw) else None


def extra_rows(problem: Problem, caps_kw: np.ndarray, n_real: int) -> SubtreeRows | None:
    """The rows the controller adds to every model.

    - demand-response caps: ``sum(charge - discharge) <= cap - base`` for every capped (node, period), all cars;
      InfeasibleError where base load minus all the discharge available below the node is already over the cap;
    - export limits for the real cars alone, where a forecast (phantom) car could otherwise absorb a real car's
      discharge: ``sum over real cars (charge - discharge) >= -export_limit - base`` for every node with an export
      limit and period where both a phantom and a real V2G car are present below it.
    """
    p = problem
    S, T = p.n_sessions, p.n_periods
    finite = np.isfinite(caps_kw)
    parts = []
    if finite.any():
        cap_rows = _subtree_rows(p, CAP_ROW, finite, np.full(caps_kw.shape, -np.inf),
                                 np.where(finite, caps_kw, 0.0) - p.base_net_kw, np.ones(S, dtype=bool))
        give_back = np.zeros(cap_rows.n)
        np.add.at(give_back, cap_rows.rows, p.discharge_max_kw[cap_rows.sess])
        gap = -give_back - cap_rows.upper
        bad = gap > INFEASIBLE_TOLERANCE_KW
        if bad.any():
            n_bad, t_bad = cap_rows.node[bad], cap_rows.period[bad]
            raise InfeasibleError(
                [Overload(node=p.node_ids[n], kind="import (demand-response cap)", period=int(t),
                          start=p.period_start[t].isoformat(), excess_kw=float(g))
                 for n, t, g in zip(n_bad, t_bad, gap[bad])],
                "base load (minus the most every charger below can give back) is over a demand-response cap")
        parts.append(cap_rows)
    if n_real < S and np.isfinite(p.export_limit_kw).any():
        real = np.arange(S) < n_real
        phantom_here = np.zeros((p.n_nodes, T))
        v2g_here = np.zeros((p.n_nodes, T))
        present = p.presence[p.member_session] > 0
        np.add.at(phantom_here, p.member_node, present & ~real[p.member_session, None])
        np.add.at(v2g_here, p.member_node, present & (real & p.v2g)[p.member_session, None])
        need = np.isfinite(p.export_limit_kw)[:, None] & (phantom_here > 0) & (v2g_here > 0)
        if need.any():
            lower = -np.where(np.isfinite(p.export_limit_kw), p.export_limit_kw, 0.0)[:, None] - p.base_net_kw
            parts.append(_subtree_rows(p, REAL_EXPORT_ROW, need, lower, np.full(need.shape, np.inf), real))
    if not parts:
        return None
    offset = np.cumsum([0] + [part.n for part in parts])
    joined = {key: np.concatenate([getattr(part, key) for part in parts])
              for key in ("kind", "lower", "upper", "node", "period", "sess", "t")}
    return SubtreeRows(rows=np.concatenate([part.rows + offset[i] for i, part in enumerate(parts)]), **joined)


def _subtree_rows(problem: Problem, kind: int, need: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  members: np.ndarray) -> SubtreeRows:
    """One row for every (node, period) where ``need`` (N, T); only sessions where ``members`` (S,) take part."""
    p = problem
    need_n, need_t = np.nonzero(need)
    row_id = np.full(need.shape, -1, dtype=np.int64)
    row_id[need_n, need_t] = np.arange(len(need_n))
    on = need[p.member_node].any(axis=1) & members[p.member_session]
    mn, ms = p.member_node[on], p.member_session[on]
    rows_of = row_id[mn]  # (members of those nodes, T)
    m_idx, t_idx = np.nonzero((rows_of >= 0) & (p.presence[ms] > 0))
    return SubtreeRows(kind=np.full(len(need_n), kind), lower=lower[need_n, need_t], upper=upper[need_n, need_t],
                       node=need_n, period=need_t, rows=rows_of[m_idx, t_idx], sess=ms[m_idx], t=t_idx)


def patch_bounds(lp: LinearProgram, problem: Problem, final_upper_kwh: np.ndarray, peak_floor_kw: float | None,
                 never_above_request: bool = False) -> None:
    """In place: the peak column's floor [kW], the over-request bound of V2G cars above their request [kWh], and
    every energy state of a V2G car within its request (every car with ``never_above_request``, floored cars always:
    :func:`gridcharge.online.checks.bounded_cars`)."""
    bounded = bounded_cars(problem, never_above_request)
    if bounded.any():
        k = np.flatnonzero((lp.energy_col >= 0) & bounded[lp.pair_session])
        if len(k):
            s = lp.pair_session[k]
            bound = np.where(np.isfinite(final_upper_kwh[s]), final_upper_kwh[s], problem.energy_request_kwh[s])
            cols = lp.energy_col[k]
            lp.col_upper[cols] = np.maximum(np.minimum(lp.col_upper[cols], bound), lp.col_lower[cols])
    if peak_floor_kw is not None:
        for block in lp.col_blocks:
            if block.name == "peak_kw":
                lp.col_lower[block.start] = max(lp.col_lower[block.start], peak_floor_kw)
    over = np.isfinite(final_upper_kwh)
    if over.any():
        count = np.bincount(lp.pair_session, minlength=problem.n_sessions)
        last = np.cumsum(count) - 1
        for s in np.flatnonzero(over & (count > 0)):
            col = lp.energy_col[last[s]]
            if col >= 0:
                lp.col_upper[col] = max(min(lp.col_upper[col], final_upper_kwh[s]), lp.col_lower[col])
