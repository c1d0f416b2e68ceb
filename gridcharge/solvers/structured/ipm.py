"""Mehrotra predictor-corrector primal-dual interior point for ``min c^T x`` s.t. ``A x - s = 0``, every column ``x``
and every row activity ``s`` in a finite box (equality rows: a fixed ``s``), with the normal equations of
:mod:`.normal`. See docs/design/structured.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..progress import IterationProgress, OnIteration
from . import kernels
from .certificate import lower_bound
from .layout import Layout
from .normal import NormalEquations, NumericalTrouble

#: Stop when the interior point's own gap estimate (primal objective vs the box-Lagrangian bound) is below this [-];
#: the returned schedule is accepted at :data:`gridcharge.solvers.structured.GAP_TOLERANCE` (100 x looser).
INNER_GAP = 1e-9
#: ... and the row residual ``|A x - s|`` is below this relative to ``1 + |x|`` [-].
PRIMAL_TOLERANCE = 1e-9
#: Share of the step to the boundary that is taken [-].
STEP_SHARE = 0.995
#: Primal / dual regularisation [-].
PRIMAL_REG = 1e-12
DUAL_REG = 1e-10
#: Bound duals start at ``max(+-c, 0)`` plus this [CNY per column unit].
INITIAL_DUAL = 1.0
#: Distance to a bound below which an iterate counts as on it (rounding can put it there) [column unit].
MIN_DISTANCE = 1e-30
#: Centrality correctors per iteration where they pay (:func:`correctors_for`) [-]
CORRECTORS = 3
#: ... which is where the dense fronts' elimination costs at least this many flops per column and row activity [-]:
#: there a factorisation is dear against the solve and the two passes a corrector adds. Measured (benchmarks/
#: RESULTS.md, "Gondzio's centrality correctors"): districts have ~2,200-2,800 and gain, single sites 18-180 and lose.
CORRECTOR_FLOPS_PER_ENTRY = 500.0


@dataclass(frozen=True)
class Correctors:
    """Gondzio's multiple centrality correctors after Mehrotra's direction (Gondzio 1996; Colombo & Gondzio 2008).

    Each tries the direction at longer trial steps ``min(1, grow * step + increment)`` (primal and dual apart), moves
    the complementarity products found there into ``[beta_min, beta_max] x`` Mehrotra's target by one more solve
    with the factor already made, and is kept only when the shorter of the two steps then grows by at least
    ``accept`` times what the trial asked for; at most ``count`` per iteration, the first rejected one ends them.
    """

    count: int = 0  # correctors per iteration at most [-]
    grow: float = 1.0  # trial step = min(1, grow * step + increment) [-]
    increment: float = 0.2  # [-]
    beta_min: float = 0.1  # products raised to at least this times the target [-]
    beta_max: float = 10.0  # ... and lowered to at most this times the target [-]
    accept: float = 0.1  # share of the asked-for lengthening a corrector must give [-]


@dataclass
class IpmResult:
    """Outcome of :func:`interior_point`: ``x`` and row duals ``y`` (LP orders), or why it stopped without them."""

    status: str  # "optimal", "iteration_limit", "numerical_trouble"
    x: np.ndarray
    y: np.ndarray
    iterations: int
    lower_bound: float  # box-Lagrangian bound of the last y, without the LP offset [CNY]
    primal_objective: float  # c^T x without offset [CNY]
    seconds: dict = field(default_factory=dict)  # per part of an iteration, summed [s]
    message: str = ""
    correctors: int = 0  # centrality correctors tried (each one more solve) [-]
    correctors_kept: int = 0  # ... and kept [-]


def front_flops(layout: Layout) -> float:
    """Flops of one elimination of the dense fronts: ``sum o^3 / 3 + o^2 a + o a^2`` over the fronts, ``o`` own and
    ``a`` above rows [-]."""
    own = layout.front_own.astype(float)
    above = np.array([len(rows) for rows in layout.front_rows], dtype=float) - own
    return float((own ** 3 / 3 + own ** 2 * above + own * above ** 2).sum())


def correctors_for(layout: Layout) -> Correctors:
    """The centrality correctors that pay on ``layout`` (by measurement): :data:`CORRECTORS` where the fronts cost at
    least :data:`CORRECTOR_FLOPS_PER_ENTRY` per column and row activity (districts, many-transformer feeders), none
    elsewhere (a single site, whose factorisation is cheap against the passes)."""
    entries = layout.n_col + len(layout.row_lower)
    dear = front_flops(layout) >= CORRECTOR_FLOPS_PER_ENTRY * max(entries, 1)
    return Correctors(count=CORRECTORS if dear else 0)


def _implied_activity(layout: Layout):
    a = layout.a_csr
    pos, neg = a.copy(), a.copy()
    pos.data = np.maximum(pos.data, 0.0)
    neg.data = np.minimum(neg.data, 0.0)
    lo, hi = layout.col_lower, layout.col_upper
    return pos @ lo + neg @ hi, pos @ hi + neg @ lo


def boxes(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of ``v = [x, s]``: the columns' boxes, then the row activities' (the rows' bounds
    tightened to what the columns' boxes imply, plus a margin); some lower above its upper: :func:`infeasible_row`."""
    act_lo, act_hi = _implied_activity(layout)
    margin = np.maximum(1.0, 0.1 * (act_hi - act_lo))
    s_lo = np.maximum(layout.row_lower, act_lo - margin)
    s_hi = np.minimum(layout.row_upper, act_hi + margin)
    return np.r_[layout.col_lower, s_lo], np.r_[layout.col_upper, s_hi]


def infeasible_row(n: int, m: int) -> IpmResult:
    """The result when :func:`boxes` shows a row no column in its box can meet."""
    return IpmResult("infeasible_row", np.zeros(n), np.zeros(m), 0, -math.inf, math.nan,
                     message="a row's bounds cannot be met by any column in its box")


def starting_point(lower: np.ndarray, upper: np.ndarray, free: np.ndarray, c: np.ndarray):
    """``v``, ``zl``, ``zu`` of the first iterate, entry by entry (so a slice of the vectors gives the slice)."""
    width = np.where(free, upper - lower, 0.0)
    v = np.where(free, lower + 0.5 * width, lower)
    zl = np.where(free, np.maximum(c, 0.0) + INITIAL_DUAL, 0.0)
    zu = np.where(free, np.maximum(-c, 0.0) + INITIAL_DUAL, 0.0)
    return v, zl, zu


def iteration_head(it: int, begun: float, comp: float, n_free: int, dual_bad: float, primal_worst: float,
                   x_big: float, pobj: float, offset: float, bound, log, on_iteration: OnIteration | None):
    """The start of iteration ``it`` (``begun``: the solve's start, perf_counter seconds): the lower bound
    ``bound()`` when :func:`bound_due`, the log lines and the progress report. Returns the relative gap and the
    bound [CNY], both None when the bound was not due."""
    mu = comp / (2 * n_free)
    primal_bad = primal_worst / (1.0 + x_big)
    gap = lb = None
    if bound_due(primal_bad, comp, pobj, offset):
        lb = bound()
        gap = relative_gap(pobj, lb, offset)
        if log:
            log(f"it {it}: gap {gap:.2e}")
    if on_iteration is not None:
        on_iteration(IterationProgress(it - 1, float(primal_bad), float(dual_bad), gap, float(mu),
                                       float(pobj + offset), time.perf_counter() - begun))
    if log and not (gap is not None and gap <= INNER_GAP):
        log(f"it {it}: mu {mu:.3e} primal {primal_bad:.2e} dual {dual_bad:.2e} obj {pobj:.9g}")
    return gap, lb


def bound_due(primal_bad: float, comp: float, pobj: float, offset: float) -> bool:
    """Whether the lower bound is worth computing: the rows hold and complementarity alone no longer rules the gap
    out."""
    return primal_bad < PRIMAL_TOLERANCE and comp <= 10 * INNER_GAP * max(1.0, abs(pobj + offset))


def relative_gap(pobj: float, lb: float, offset: float) -> float:
    """The gap between the primal objective and the lower bound, relative to the objective with its offset [-]."""
    return (pobj - lb) / max(1.0, abs(pobj + offset))


def centring_target(comp: float, n_free: int, ap: float, ad: float, s1: float, s2: float, s3: float) -> float:
    """Mehrotra's corrector target ``sigma mu`` from the complementarity ``comp`` and the predictor's steps and sums
    (:func:`~.kernels.predictor_tail`)."""
    mu = comp / (2 * n_free)
    mu_aff = max(comp + ap * s1 + ad * s2 + ap * ad * s3, 0.0) / (2 * n_free)
    sigma = min((mu_aff / mu) ** 3, 1.0) if mu > 0 else 0.0
    return sigma * mu


def interior_point(layout: Layout, cost: np.ndarray, *, offset: float = 0.0, max_iterations: int = 100,
                   deadline: float | None = None, log=None, on_iteration: OnIteration | None = None,
                   correctors: Correctors | None = None) -> IpmResult:
    """Solve the LP of ``layout`` with objective ``cost`` (per column) plus the constant ``offset`` [CNY], which only
    sets the scale of the relative gap; ``log`` takes a line of text per iterate, ``on_iteration`` an
    :class:`~gridcharge.solvers.progress.IterationProgress`. The normal equations are
    :class:`~.normal.NormalEquations`; the split solve of :mod:`.partition` has its own driver over the same helpers (:func:`boxes`, :func:`starting_point`,
    :func:`iteration_head`, :func:`centring_target`) and runs Mehrotra alone. ``correctors``: Gondzio's centrality
    correctors (:class:`Correctors`; default :func:`correctors_for`)."""
    begun = time.perf_counter()
    n = layout.n_col
    m = len(layout.row_lower)
    lower, upper = boxes(layout)
    if np.any(lower > upper):
        return infeasible_row(n, m)
    free = upper > lower
    c = np.r_[cost, np.zeros(m)]
    cols = kernels.columns(layout).arrays  # every product with A goes column by column, fused into a pass of kernels
    v, zl, zu = starting_point(lower, upper, free, c)
    y = np.zeros(m)
    n_free = max(int(free.sum()), 1)
    normal = NormalEquations(layout, DUAL_REG)
    seconds = {"iterate": 0.0}
    lb, pobj = -math.inf, math.nan
    status, message = "iteration_limit", ""
    size = n + m
    wl, wu, rd, theta = (np.empty(size) for _ in range(4))
    dv, dzl, dzu, dva, atdy = (np.zeros(size) for _ in range(5))
    aty = np.zeros(size)  # A_full^T y, y = 0
    rp, rhs_p, rhs_h, rhs_k = (np.empty(m) for _ in range(4))
    n_cells = layout.n_groups * layout.n_periods
    cells = np.empty(3 * n_cells)
    if correctors is None:
        correctors = correctors_for(layout)
    if correctors.count:  # the corrected direction is written beside the current one and swapped in when kept
        rhs_c = np.empty(m)
        spare = [np.zeros(size) for _ in range(4)]
    n_correctors = n_kept = 0

    def advance(ap, ad):  # step (0, 0: stay), then prepare the next iteration and the parts of its right-hand sides
        return kernels.advance(*cols, v, zl, zu, lower, upper, free, c, dv, dzl, dzu, ap, ad, aty, atdy, MIN_DISTANCE,
                               PRIMAL_REG, wl, wu, rd, theta, rp, rhs_p, rhs_h, cells)

    comp, dual_bad, primal_worst, x_big, pobj, _ = advance(0.0, 0.0)
    it = 0
    for it in range(1, max_iterations + 1):
        started = time.perf_counter()
        if deadline is not None and started > deadline:
            status, message = "time_limit", "the wall-clock limit was reached"
            break
        gap, bound = iteration_head(it, begun, comp, n_free, dual_bad, primal_worst, x_big, pobj, offset,
                                    lambda: lower_bound(layout, cost, y), log, on_iteration)
        lb = lb if bound is None else bound
        if gap is not None and gap <= INNER_GAP:
            status = "optimal"
            it -= 1
            break
        seconds["iterate"] += time.perf_counter() - started
        try:
            normal.factor(theta[:n], theta[n:])
        except NumericalTrouble as exc:
            status, message = "numerical_trouble", str(exc)
            break
        started = time.perf_counter()

        # predictor (affine scaling), then Mehrotra's corrector towards sigma mu; the right-hand sides' parts come
        # from the passes (advance: rhs_p, rhs_h; predictor_tail: rhs_k)
        dy = normal.solve(rhs_p)
        ap, ad, s1, s2, s3 = kernels.predictor_tail(*cols, dy, theta, wl, wu, zl, zu, rd, free, dva, rhs_k,
                                                    cells[:n_cells], cells[n_cells:2 * n_cells])
        target = centring_target(comp, n_free, ap, ad, s1, s2, s3)
        dy = normal.solve(rhs_p + target * rhs_h + rhs_k)
        ap, ad = kernels.corrector_tail(*cols, dy, theta, wl, wu, zl, zu, rd, free, target, dva, atdy, dv, dzl, dzu,
                                        cells[:n_cells])
        for _ in range(correctors.count):
            if min(ap, ad) >= 1.0:
                break
            tp = min(1.0, correctors.grow * ap + correctors.increment)
            td = min(1.0, correctors.grow * ad + correctors.increment)
            bounds = (tp, td, correctors.beta_min * target, correctors.beta_max * target)
            if not kernels.centrality_rhs(*cols, theta, wl, wu, zl, zu, free, dv, dzl, dzu, *bounds, rhs_c,
                                          cells[:n_cells]):
                break
            dy_c = normal.solve(rhs_c)
            n_correctors += 1
            cp, cd = kernels.centrality_tail(*cols, dy_c, theta, wl, wu, zl, zu, free, dv, dzl, dzu, atdy, *bounds,
                                             *spare, cells[:n_cells])
            if min(cp, cd) < min(ap, ad) + correctors.accept * (min(tp, td) - min(ap, ad)):
                break
            (dv, dzl, dzu, atdy), spare = spare, [dv, dzl, dzu, atdy]
            dy = dy + dy_c
            ap, ad = cp, cd
            n_kept += 1
        ap, ad = STEP_SHARE * ap, STEP_SHARE * ad
        if log:
            log(f"  steps {ap:.3f} {ad:.3f} target sigma mu {target:.2e}")
        # A^T y is carried along (the certificate recomputes it from y)
        comp, dual_bad, primal_worst, x_big, pobj, finite = advance(ap, ad)
        y += ad * dy
        if not (finite and np.isfinite(y).all()):
            status, message = "numerical_trouble", "the iterates left the finite numbers"
            break
        seconds["iterate"] += time.perf_counter() - started
    else:
        it = max_iterations
    seconds.update(normal.seconds)
    return IpmResult(status, v[:n].copy(), y, it, lb, pobj, seconds, message, n_correctors, n_kept)
