"""The normal equations of the structured interior point split by transformer subtree: each *partition* owns some
subtrees of fronts (their cars' chains, their groups' Schur sums, their fronts), a *coordinator* owns the top fronts
(lines, substation), the cars that meet only those and the columns of no car. Per factorisation a partition sends
its dense update on the top rows; per solve its contribution to the top rows' right side, and it gets back their
step. Where the partitions run (in this process, on dask workers) is an :class:`Executor`'s business; the numbers
do not depend on it, because the partitions and the order their contributions are summed in are fixed by the layout.
See docs/design/district.md.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ..._memory import give_back
from ..progress import OnIteration
from . import kernels
from .certificate import BoundPart, bound_part, combine_bounds
from .ipm import (DUAL_REG, INNER_GAP, MIN_DISTANCE, PRIMAL_REG, STEP_SHARE, IpmResult, boxes, centring_target,
                  infeasible_row, iteration_head, starting_point)
from .layout import Derived, Layout
from .normal import Forward, NormalEquations, NumericalTrouble

#: A front below the top costs as much as this many cars in a partition's work ([-]; its dense elimination of its
#: own rows and its line's, ~450 rows at 10,000 sessions / 50 transformers, measured per partition in process:
#: benchmarks/RESULTS.md, "The element-wise passes and the step vectors on the partitions").
FRONT_CARS = 20
#: A partition gets subtrees until it holds about this share of the cars ([-]; 1/8: up to 8 partitions, so that 2-8
#: workers each get whole partitions). Fixed, not derived from the worker count, so every count gives the same numbers.
PARTITIONS = 8


@dataclass(eq=False)
class Part:
    """One partition's slice of the LP: its layout (compact numbering), the LP columns and rows it holds (sub-layout
    order: local rows, then coupling rows) and which of its coupling rows are the coordinator's (``above``)."""

    layout: Layout
    cols: np.ndarray  # LP column of each sub-layout column
    rows: np.ndarray  # LP row of each sub-layout row
    above: np.ndarray  # sub-layout coupling positions owned by the coordinator (the top rows it meets)
    above_global: np.ndarray  # ... as coupling positions of the whole layout
    root_parent: dict  # sub-layout root front -> front of the whole layout it sends its update to


@dataclass(eq=False)
class Plan:
    """The split of a layout: the coordinator's part and the partitions, in a fixed order."""

    top: Part
    parts: Sequence  # of Part, each restricted from the layout when asked for and not kept (:class:`Lazy`)
    above_global: list  # per partition, the coupling positions of the whole layout it meets above its fronts
    top_front_of: np.ndarray  # front of the whole layout -> the coordinator's front (-1: a partition's)


class Lazy(Sequence):
    """A sequence whose ``n`` items are made by ``make(i)`` when asked for and not kept: the coordinator holds the
    layout once, not its slices as well (a dask share is re-created from them after a lost worker). ``release()``
    lets go of what the items are made from until one is asked for again (see :class:`.layout.Derived`)."""

    def __init__(self, n: int, make, release=None):
        self.n, self.make = n, make
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            self._release()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.make(j) for j in range(self.n)[i]]
        return self.make(range(self.n)[i])


def plan(whole: Layout | Derived, n_parts: int = PARTITIONS) -> Plan:
    """Split the layout ``whole`` into at most ``n_parts`` partitions of whole subtrees below the top fronts (a
    district's lines and substation), each a run of subtrees in top-front order of about equal work (cars, and
    :data:`FRONT_CARS` per front). The partitions' slices are cut from ``whole`` when asked for (a :class:`Derived`
    layout may have been released meanwhile: it is derived again)."""
    source = whole if isinstance(whole, Derived) else Derived(None, whole)
    layout = source.get()
    n_front = len(layout.front_rows)
    parent = layout.front_parent
    # work per front: its cars (by their lowest front) and its dense elimination, then per subtree
    cars_front = np.where(layout.car_group >= 0, layout.group_front[layout.car_group], -1)
    weight = np.bincount(cars_front[cars_front >= 0], minlength=n_front) + FRONT_CARS * (parent >= 0)
    subtree = weight.copy()
    for f in range(n_front - 1, -1, -1):  # children are numbered after their parents
        if parent[f] >= 0:
            subtree[parent[f]] += subtree[f]
    # top: from the roots down, expanding the heaviest subtree until there are enough subtrees to share out
    top = np.zeros(n_front, dtype=bool)
    children = [[] for _ in range(n_front)]
    for f in range(n_front):
        if parent[f] >= 0:
            children[parent[f]].append(f)
    frontier = [f for f in range(n_front) if parent[f] < 0]
    while frontier and len(frontier) < 4 * n_parts:
        heaviest = max(frontier, key=lambda f: (subtree[f], -f))
        if not children[heaviest]:
            break
        frontier.remove(heaviest)
        top[heaviest] = True
        frontier.extend(children[heaviest])
    if len(frontier) < 2 or not top.any():
        frontier = []  # nothing worth splitting: the coordinator holds everything
        top[:] = True
    # subtree roots to partitions in runs of equal weight, in the order of their top front (a district's line), so a
    # partition meets few top fronts and sends few dense updates
    roots = sorted(frontier, key=lambda f: (parent[f], f))
    n = max(1, min(n_parts, len(roots)))
    owner = np.full(n_front, -1, dtype=np.int64)
    if roots:
        weights = np.array([subtree[f] for f in roots]) + 1e-9  # an empty subtree still goes somewhere
        middle = np.cumsum(weights) - weights / 2  # a subtree goes where its middle falls
        owner[roots] = np.minimum((middle / weights.sum() * n).astype(np.int64), n - 1)
    for f in range(n_front):  # the rest of each subtree follows its root
        if not top[f] and owner[f] < 0:
            owner[f] = owner[parent[f]]
    car_owner = np.where(cars_front >= 0, owner[np.maximum(cars_front, 0)], -1)
    cars, fronts = [], []
    for p in range(n if roots else 0):
        if (owner == p).any():
            cars.append(np.flatnonzero(car_owner == p))
            fronts.append(np.flatnonzero(owner == p))
    parts = Lazy(len(cars), lambda i: restrict(source.get(), cars[i], fronts[i], with_global=False), source.release)
    top_fronts = np.flatnonzero(top)
    top_part = restrict(layout, np.flatnonzero(car_owner < 0), top_fronts, with_global=True)
    top_front_of = np.full(n_front, -1, dtype=np.int64)
    top_front_of[top_fronts] = np.arange(len(top_fronts))
    return Plan(top_part, parts, [_coupling(layout, f)[1] for f in fronts], top_front_of)


def restrict(layout: Layout, cars: np.ndarray, fronts: np.ndarray, *, with_global: bool) -> Part:
    """The layout of the cars ``cars`` and the fronts ``fronts`` (whole subtrees, or the top fronts) of ``layout``,
    renumbered compactly; ``with_global`` keeps the columns of no car."""
    lay = layout
    T = lay.n_periods
    # local positions and LP columns of the cars
    pos, pos_map, lengths = _select(lay.car_start, cars, len(lay.local_rows))
    le = np.flatnonzero(pos_map[lay.le_pos] >= 0)
    cols = np.unique(lay.le_col[le])
    if with_global:  # ... and the columns of no row at all
        cols = np.union1d(cols, np.union1d(lay.global_cols, np.flatnonzero(np.diff(lay.a_csc.indptr) == 0)))
    col_map = np.full(lay.n_col, -1, dtype=np.int64)
    col_map[cols] = np.arange(len(cols))
    # coupling positions: the fronts' rows (own rows and those above them)
    cpos, above_global = _coupling(lay, fronts)
    c_map = np.full(len(lay.coupling_rows), -1, dtype=np.int64)
    c_map[cpos] = np.arange(len(cpos))
    rows = np.r_[lay.local_rows[pos], lay.coupling_rows[cpos]]
    a_csc = sp.csr_matrix(lay.a_csr[rows][:, cols]).tocsc()  # no CSR copy: nothing on a part reads it
    n_local = len(pos)
    # chains
    off = np.flatnonzero(pos_map[lay.off_pos] >= 0)
    car_start = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    # H entries per car, in car order
    entries, e_map, e_len = _select(lay.he_start, cars, len(lay.he_pos))
    hc = np.flatnonzero(e_map[lay.hc_entry] >= 0)
    # groups of the cars
    groups = np.unique(lay.car_group[cars])
    g_map = np.full(lay.n_groups, -1, dtype=np.int64)
    g_map[groups] = np.arange(len(groups))
    dc = np.flatnonzero(col_map[lay.dc_col] >= 0)
    g_entries, _, g_len = _select(lay.group_type_start, groups, len(lay.group_type))
    row_of = np.where(lay.row_of >= 0, c_map[np.maximum(lay.row_of, 0)], -1)
    # fronts: parents keep their order; a root of this part sends its update to a front outside it
    f_map = np.full(len(lay.front_rows), -1, dtype=np.int64)
    f_map[fronts] = np.arange(len(fronts))
    front_parent = np.where(lay.front_parent[fronts] >= 0, f_map[np.maximum(lay.front_parent[fronts], 0)], -1)
    root_parent = {int(i): int(lay.front_parent[f]) for i, f in enumerate(fronts)
                   if front_parent[i] < 0 and lay.front_parent[f] >= 0}
    group_front = np.where(lay.group_front[groups] >= 0, f_map[np.maximum(lay.group_front[groups], 0)], -1)
    if with_global:
        global_cols, global_block = col_map[lay.global_cols], lay.global_block[cpos]
        global_front = int(f_map[lay.global_front]) if lay.global_front >= 0 else -1
    else:
        global_cols, global_block, global_front = np.zeros(0, np.int64), np.zeros((len(cpos), 0)), -1
    sub = Layout(
        n_col=len(cols), col_lower=lay.col_lower[cols], col_upper=lay.col_upper[cols],
        row_lower=lay.row_lower[rows], row_upper=lay.row_upper[rows], a_csr=None, a_csc=a_csc,
        local_rows=np.arange(n_local), coupling_rows=n_local + np.arange(len(cpos)), car_start=car_start,
        le_col=col_map[lay.le_col[le]], le_pos=pos_map[lay.le_pos[le]], le_val=lay.le_val[le],
        off_col=col_map[lay.off_col[off]], off_pos=pos_map[lay.off_pos[off]], off_val=lay.off_val[off],
        he_pos=pos_map[lay.he_pos[entries]], he_period=lay.he_period[entries],
        he_start=np.r_[0, np.cumsum(e_len)].astype(np.int64),
        hc_entry=e_map[lay.hc_entry[hc]], hc_col=col_map[lay.hc_col[hc]], hc_val=lay.hc_val[hc],
        dc_col=col_map[lay.dc_col[dc]], dc_cell=g_map[lay.dc_cell[dc] // T] * T + lay.dc_cell[dc] % T,
        dc_val=lay.dc_val[dc], dc_sigma=lay.dc_sigma[dc],
            car_group=g_map[lay.car_group[cars]], n_groups=len(groups), n_periods=T,
        group_type_start=np.r_[0, np.cumsum(g_len)].astype(np.int64), group_type=lay.group_type[g_entries],
        group_gamma=lay.group_gamma[g_entries], row_of=row_of, global_cols=global_cols, global_block=global_block,
        boxed_free=np.zeros(0, np.int64), front_parent=front_parent, front_own=lay.front_own[fronts].copy(),
        front_rows=[c_map[lay.front_rows[f]] for f in fronts], group_front=group_front, global_front=global_front,
    )
    return Part(sub, cols, rows, c_map[above_global], above_global, root_parent)


def _coupling(lay: Layout, fronts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coupling positions of ``fronts`` (their own rows and those above them), and those no front of them owns."""
    cpos = np.unique(np.concatenate([lay.front_rows[f] for f in fronts])) if len(fronts) else np.zeros(0, np.int64)
    owned = np.zeros(len(lay.coupling_rows), dtype=bool)
    for f in fronts:
        owned[lay.front_rows[f][:lay.front_own[f]]] = True
    return cpos, cpos[~owned[cpos]]


def _select(start: np.ndarray, items: np.ndarray, size: int):
    """The entries ``[start[i], start[i + 1])`` of every item ``i`` of ``items``, in order; the map entry -> its new
    position (-1: not selected, ``size`` entries); the items' lengths."""
    lengths = np.diff(start)[items].astype(np.int64)
    ranges = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = np.repeat(start[items], lengths) + ranges
    new = np.full(size, -1, dtype=np.int64)
    new[index] = np.arange(len(index))
    return index, new, lengths


@dataclass(eq=False)
class PartLP:
    """A partition with its share of the LP: the cost of its columns [CNY per column unit] and the bounds of its
    ``v = [x, s]`` (its columns, then its sub-layout's rows; a row above it is fixed at 0: its activity is the
    coordinator's)."""

    part: Part
    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def share(part: Part, cost: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> PartLP:
    """``part``'s slices of the LP's ``cost`` (per column) and of the bounds of ``v = [x, s]`` (:func:`.ipm.boxes`)."""
    n = len(cost)
    rows = n + part.rows
    lo, hi = np.r_[lower[part.cols], lower[rows]], np.r_[upper[part.cols], upper[rows]]
    fixed = len(part.cols) + len(part.layout.local_rows) + part.above
    lo[fixed] = hi[fixed] = 0.0
    return PartLP(part, cost[part.cols], lo, hi)


class Iterates:
    """One part's resident interior-point vectors (``v = [x, s]`` over its columns and rows, the bound duals, the row
    duals ``y`` of its rows, the directions) and the element-wise passes of :mod:`.kernels` on them."""

    def __init__(self, layout: Layout, cost: np.ndarray, lower: np.ndarray, upper: np.ndarray):
        n, m = layout.n_col, len(layout.row_lower)
        self.n = n
        self.lower, self.upper = lower, upper
        self.free = upper > lower
        self.c = np.r_[cost, np.zeros(m)]
        self.cols = kernels.columns(layout).arrays
        self.v, self.zl, self.zu = starting_point(lower, upper, self.free, self.c)
        self.y, self.dy = np.zeros(m), np.zeros(m)
        size = n + m
        self.wl, self.wu, self.rd, self.theta = (np.empty(size) for _ in range(4))
        self.dv, self.dzl, self.dzu, self.dva, self.atdy = (np.zeros(size) for _ in range(5))
        self.aty = np.zeros(size)  # A_full^T y, y = 0
        self.rp, self.rhs_p, self.rhs_h, self.rhs_k = (np.zeros(m) for _ in range(4))
        self.n_cells = layout.n_groups * layout.n_periods
        self.cells = np.empty(3 * self.n_cells)

    def advance(self, ap: float, ad: float) -> tuple:
        """Step by ``ap``, ``ad`` along the last direction (``y`` by ``ad`` along the last ``dy``), then prepare the
        next iteration (:func:`.kernels.advance`): its complementarity, largest dual residual, largest ``|rp|`` (of
        every row here, complete or not), largest ``|x|``, ``c^T v`` and whether everything stayed finite."""
        comp, dual, primal, big, obj, finite = kernels.advance(
            *self.cols, self.v, self.zl, self.zu, self.lower, self.upper, self.free, self.c, self.dv, self.dzl,
            self.dzu, ap, ad, self.aty, self.atdy, MIN_DISTANCE, PRIMAL_REG, self.wl, self.wu, self.rd, self.theta,
            self.rp, self.rhs_p, self.rhs_h, self.cells)
        self.y += ad * self.dy
        return comp, dual, primal, big, obj, bool(finite and np.isfinite(self.y).all())

    def rhs(self, target: float | None) -> np.ndarray:
        """The predictor's right side (``target`` None) or the corrector's for the centring ``target``."""
        return self.rhs_p.copy() if target is None else self.rhs_p + target * self.rhs_h + self.rhs_k

    def predictor(self, dy: np.ndarray) -> tuple:
        """:func:`.kernels.predictor_tail` for the step ``dy`` on the rows here: ``ap``, ``ad``, ``s1``-``s3``."""
        nc = self.n_cells
        return kernels.predictor_tail(*self.cols, dy, self.theta, self.wl, self.wu, self.zl, self.zu, self.rd,
                                      self.free, self.dva, self.rhs_k, self.cells[:nc], self.cells[nc:2 * nc])

    def corrector(self, dy: np.ndarray, target: float) -> tuple:
        """:func:`.kernels.corrector_tail` for the step ``dy``, kept for the next :meth:`advance`: ``ap``, ``ad``."""
        self.dy = dy
        return kernels.corrector_tail(*self.cols, dy, self.theta, self.wl, self.wu, self.zl, self.zu, self.rd,
                                      self.free, target, self.dva, self.atdy, self.dv, self.dzl, self.dzu,
                                      self.cells[:self.n_cells])


@dataclass
class Factored:
    """A partition's dense updates (front of the whole layout -> matrix on its rows), or why it could not factor."""

    updates: dict
    trouble: str = ""


@dataclass
class StepReport:
    """What a partition sends after a step: its scalars (see :meth:`Iterates.advance`; ``primal`` over its own rows
    only), its partial sums on the top rows it meets of ``rp``, ``rhs_p`` and ``rhs_h``, its factorisation at the
    new iterate (:class:`Factored`: the next iteration's) and the forward half of the next predictor's solve on it
    (its remainder on the top rows; ``None`` when it could not factor): both sent with the step to save round trips."""

    comp: float
    dual: float
    primal: float
    big: float
    obj: float
    finite: bool
    rp: np.ndarray
    rhs_p: np.ndarray
    rhs_h: np.ndarray
    factored: Factored
    forward: np.ndarray | None = None


@dataclass
class Tail:
    """A partition's step lengths after a direction, and after the predictor its sums, its partial ``rhs_k`` on
    the top rows it meets and the forward halves of the corrector's solve (remainders on the top rows) for the two
    parts of its right side, ``rhs_p + rhs_k`` and ``rhs_h``: the corrector's is the first plus the centring target
    times the second, so they travel before the target is known and save a round trip."""

    ap: float
    ad: float
    sums: tuple = ()
    rhs_k: np.ndarray | None = None
    ahead: tuple = ()

    def corrector_remainder(self, target: float) -> np.ndarray:
        """The forward remainder of the corrector's right side for the centring ``target``."""
        fixed, centring = self.ahead
        return fixed + target * centring


class PartWorker:
    """A partition's normal equations and iterates, resident where it runs (this process, or a dask worker as an
    actor). Every call but :attr:`READS` changes its state; replaying them in order rebuilds it bit for bit."""

    #: calls that change nothing
    READS = frozenset({"bound", "result"})

    def __init__(self, lp: PartLP, delta: float, threads: int):
        self.part = part = lp.part
        self.cost = lp.cost
        self.threads = threads  # numba's threads set the Schur sums' chunks, so they are the coordinator's count
        # one BLAS thread in this process from now on (spinning BLAS threads starve numba's: structured.md); in the
        # coordinator's process that holds already, inside the solver's own limit
        threadpool_limits(limits=1, user_api="blas")
        with self._limits():  # NormalEquations chunks the Schur sums by numba's thread count
            self.normal = NormalEquations(part.layout, delta)
            self.state = Iterates(part.layout, lp.cost, lp.lower, lp.upper)
        self.above = len(part.layout.local_rows) + part.above  # sub-layout rows that are the coordinator's
        own = np.ones(len(part.layout.row_lower), dtype=bool)
        own[self.above] = False
        self.own = np.flatnonzero(own)
        self.ahead: tuple = ()  # the corrector's two forward states, from the predictor's backward

    def _limits(self):
        numba.set_num_threads(self.threads)
        return contextlib.nullcontext()

    def step(self, ap: float, ad: float) -> StepReport:
        """Step and prepare the next iteration (:meth:`Iterates.advance`), factor for it and run the forward half of
        its predictor's solve: the coordinator needs both right after the step's scalars whenever the iteration goes
        on (the bound, a read, may come between; it depends on neither), so one round trip carries all three. The
        last step's factorisation and forward are not used."""
        with self._limits():
            comp, dual, _, big, obj, finite = self.state.advance(ap, ad)
        st, above = self.state, self.above
        primal = float(np.abs(st.rp[self.own]).max(initial=0.0))
        factored = self._factor() if finite else Factored({}, "the iterates left the finite numbers")
        forward = None if factored.trouble else self._forward(st.rhs(None))[0]
        return StepReport(comp, dual, primal, big, obj, finite, st.rp[above], st.rhs_p[above], st.rhs_h[above],
                          factored, forward)

    def _factor(self) -> Factored:
        """Factor for the current iterate; the dense updates on the coordinator's fronts, summed per front in the
        partition's front order."""
        theta, n = self.state.theta, self.state.n
        with self._limits():
            try:
                self.normal.factor(theta[:n], theta[n:])
            except NumericalTrouble as exc:
                return Factored({}, str(exc))
        out: dict = {}
        for f, target in sorted(self.part.root_parent.items()):
            update = self.normal.outgoing[f]
            out[target] = update if target not in out else out[target] + update
        return Factored(out)

    def _forward(self, rhs: np.ndarray) -> tuple[np.ndarray, Forward]:
        """First half of a solve of ``rhs`` (overwritten): the partition's contribution to the right side of the
        top rows it meets, and the state the second half starts from."""
        rhs[self.above] = 0.0  # the coordinator's share of the right side
        with self._limits():
            return self.normal.forward(rhs), self.normal.state

    def backward(self, dy_above: np.ndarray, target: float | None) -> Tail:
        """Second half of the predictor's (``target`` None) or the corrector's solve, given the top rows' step, then
        the pass on the direction; after the predictor also the forward halves of the corrector's two parts."""
        st = self.state
        if target is not None:  # the corrector's right side is rhs_p + rhs_k + target rhs_h: its forward state too
            fixed, centring = self.ahead
            self.normal.state = fixed.plus(centring, target)
        with self._limits():
            dy = self.normal.backward(dy_above)
            if target is not None:
                return Tail(*st.corrector(dy, target))
            ap, ad, *sums = st.predictor(dy)
        fixed, fixed_state = self._forward(st.rhs_p + st.rhs_k)
        centring, centring_state = self._forward(st.rhs_h.copy())
        self.ahead = (fixed_state, centring_state)
        return Tail(ap, ad, tuple(sums), st.rhs_k[self.above], (fixed, centring))

    def bound(self) -> BoundPart:
        """The partition's share of the certificate's lower bound at the current ``y``."""
        return bound_part(self.part.layout, self.cost, self.state.y, self.own)

    def result(self) -> tuple:
        """The partition's LP columns and ``x`` on them, its own LP rows and ``y`` on them."""
        return self.part.cols, self.state.v[:self.state.n].copy(), self.part.rows[self.own], self.state.y[self.own]

    def seconds(self) -> dict:
        return dict(self.normal.seconds)


class Slices:
    """The whole layout the partitions' slices are cut from (:func:`plan`, :func:`share`) and the boxes of its
    ``v = [x, s]`` (:func:`.ipm.boxes`): kept while the shares are made, let go by :meth:`release` when the layout
    can be derived again (:class:`~.layout.Derived`)."""

    def __init__(self, layout: Layout | Derived):
        self.source = layout if isinstance(layout, Derived) else Derived(None, layout)
        self._boxes: tuple | None = None

    def size(self) -> tuple[int, int]:
        """Columns and rows of the LP [-]."""
        layout = self.source.get()
        return layout.n_col, len(layout.row_lower)

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        if self._boxes is None:
            self._boxes = boxes(self.source.get())
        return self._boxes

    def release(self) -> None:
        self.source.release()
        if self.source.lp is not None:
            self._boxes = None


class InProcess:
    """Runs each call of every partition here, one after the other."""

    def start(self, parts: list, delta: float, threads: int) -> None:
        self.workers = [PartWorker(part, delta, threads) for part in parts]

    def map(self, method: str, args: list) -> list:
        return [getattr(w, method)(*a) for w, a in zip(self.workers, args)]

    def close(self) -> None:
        self.workers = []


class Coordinator:
    """The coordinator's share of a split solve: the top fronts' normal equations and the iterates of the top part
    (its columns and rows), and the sums of the partitions' messages, always in partition order after its own."""

    def __init__(self, layout: Layout, split: Plan, cost: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 delta: float):
        top = split.top
        self.split = split
        own = share(top, cost, lower, upper)
        self.cost = own.cost
        self.state = Iterates(top.layout, own.cost, own.lower, own.upper)
        self.normal = NormalEquations(top.layout, delta)
        n_local = len(top.layout.local_rows)
        t_map = np.full(len(layout.coupling_rows), -1, dtype=np.int64)
        cpos_top = top.rows[n_local:]
        t_map[np.searchsorted(layout.coupling_rows, cpos_top)] = np.arange(len(cpos_top))
        self.n_local = n_local
        self.where = [n_local + t_map[above] for above in split.above_global]  # top-layout rows each partition meets
        self.dy = np.zeros(len(top.rows))

    def step(self, ap: float, ad: float, reports: list) -> tuple:
        """The top part's step, with the partitions' ``reports``: the whole iterate's scalars (as
        :meth:`Iterates.advance`)."""
        st = self.state
        comp, dual, _, big, obj, finite = st.advance(ap, ad)
        for where, r in zip(self.where, reports):
            st.rp[where] += r.rp
            st.rhs_p[where] += r.rhs_p
            st.rhs_h[where] += r.rhs_h
        primal = float(np.abs(st.rp).max(initial=0.0))
        for r in reports:
            comp += r.comp
            obj += r.obj
            dual, primal, big = max(dual, r.dual), max(primal, r.primal), max(big, r.big)
            finite = finite and r.finite
        return comp, dual, primal, big, obj, finite

    def factor(self, factored: list) -> None:
        """Factor the top fronts with the partitions' dense updates (:class:`NumericalTrouble` from any of them)."""
        incoming: dict = {}
        for f in factored:  # partition order
            if f.trouble:
                raise NumericalTrouble(f.trouble)
            for target, block in f.updates.items():
                front = int(self.split.top_front_of[target])
                incoming[front] = block if front not in incoming else incoming[front] + block
        theta, n = self.state.theta, self.state.n
        self.normal.factor(theta[:n], theta[n:], incoming=incoming)

    def solve(self, contributions: list, target: float | None) -> list:
        """The top rows' step for the partitions' forward ``contributions``; the part of it each partition meets."""
        extra = np.zeros(len(self.split.top.layout.coupling_rows))
        for where, z in zip(self.where, contributions):
            extra[where - self.n_local] += z
        self.normal.forward(self.state.rhs(target), extra=extra)
        self.dy = self.normal.backward(None)
        return [self.dy[where] for where in self.where]

    def predictor(self, tails: list) -> tuple:
        """The predictor's step lengths and sums over every part."""
        ap, ad, s1, s2, s3 = self.state.predictor(self.dy)
        for where, t in zip(self.where, tails):
            self.state.rhs_k[where] += t.rhs_k
            ap, ad = min(ap, t.ap), min(ad, t.ad)
            s1, s2, s3 = s1 + t.sums[0], s2 + t.sums[1], s3 + t.sums[2]
        return ap, ad, s1, s2, s3

    def corrector(self, tails: list, target: float) -> tuple:
        """The corrector's step lengths over every part."""
        ap, ad = self.state.corrector(self.dy, target)
        for t in tails:
            ap, ad = min(ap, t.ap), min(ad, t.ad)
        return ap, ad

    def bound(self, parts: list) -> float:
        """The certificate's lower bound from the top part's share and the partitions' (:func:`combine_bounds`)."""
        own = np.arange(len(self.split.top.rows))
        return combine_bounds([bound_part(self.split.top.layout, self.cost, self.state.y, own)] + parts)


def split_interior_point(layout: Layout | Derived, cost: np.ndarray, *, offset: float = 0.0,
                         max_iterations: int = 100, deadline: float | None = None, log=None,
                         on_iteration: OnIteration | None = None, executor=None,
                         n_parts: int = PARTITIONS) -> IpmResult:
    """:func:`.ipm.interior_point` split by transformer subtree: the partitions of :func:`plan` keep their iterates
    and run their passes where ``executor`` (default :class:`InProcess`) runs them; per iteration only top-row-sized
    messages and scalars travel. The same Mehrotra steps (:mod:`.ipm`'s helpers); the numbers do not depend on the
    executor.

    A :class:`~.layout.Derived` ``layout`` is released once the partitions hold their slices (the coordinator keeps
    its own part only; a lost worker's share is cut from the layout derived again); a :class:`Layout` is kept."""
    begun, cpu = time.perf_counter(), time.process_time()
    give_back()  # the build's temporaries (LP, layout): their pages would stay with this process for the solve
    whole = Slices(layout)
    n, m = whole.size()
    lower, upper = whole.boxes()
    if np.any(lower > upper):
        return infeasible_row(n, m)
    n_free = max(int((upper > lower).sum()), 1)
    split = plan(whole.source, n_parts)
    top = Coordinator(whole.source.get(), split, cost, lower, upper, DUAL_REG)
    del lower, upper
    executor = executor if executor is not None else InProcess()
    slices = Lazy(len(split.parts), lambda i: share(split.parts[i], cost, *whole.boxes()), whole.release)
    executor.start(slices, DUAL_REG, numba.get_num_threads())
    whole.release()
    give_back()
    k = len(split.parts)
    looping = time.perf_counter()
    seconds = {"start": looping - begun, "partitions": 0.0}  # wall: set-up (slices sent), waiting for partitions

    def each(method: str, args: list | None = None) -> list:
        started = time.perf_counter()
        out = executor.map(method, args if args is not None else [()] * k)
        seconds["partitions"] += time.perf_counter() - started
        return out

    lb, pobj = -math.inf, math.nan
    status, message = "iteration_limit", ""
    try:
        reports = each("step", [(0.0, 0.0)] * k)  # each partition's step and its factorisation for the next one
        comp, dual_bad, primal_worst, x_big, pobj, _ = top.step(0.0, 0.0, reports)
        it = 0
        for it in range(1, max_iterations + 1):
            if deadline is not None and time.perf_counter() > deadline:
                status, message = "time_limit", "the wall-clock limit was reached"
                break
            gap, bound = iteration_head(it, begun, comp, n_free, dual_bad, primal_worst, x_big, pobj, offset,
                                        lambda: top.bound(each("bound")), log, on_iteration)
            lb = lb if bound is None else bound
            if gap is not None and gap <= INNER_GAP:
                status = "optimal"
                it -= 1
                break
            try:
                top.factor([r.factored for r in reports])
            except NumericalTrouble as exc:
                status, message = "numerical_trouble", str(exc)
                break
            dy = top.solve([r.forward for r in reports], None)
            tails = each("backward", [(d, None) for d in dy])
            ap, ad, s1, s2, s3 = top.predictor(tails)
            target = centring_target(comp, n_free, ap, ad, s1, s2, s3)
            dy = top.solve([t.corrector_remainder(target) for t in tails], target)
            ap, ad = top.corrector(each("backward", [(d, target) for d in dy]), target)
            ap, ad = STEP_SHARE * ap, STEP_SHARE * ad
            reports = each("step", [(ap, ad)] * k)
            comp, dual_bad, primal_worst, x_big, pobj, finite = top.step(ap, ad, reports)
            if not finite:
                status, message = "numerical_trouble", "the iterates left the finite numbers"
                break
        else:
            it = max_iterations
        x, y = np.empty(n), np.empty(m)
        for cols, xp, rows, yp in each("result"):
            x[cols], y[rows] = xp, yp
        x[split.top.cols], y[split.top.rows] = top.state.v[:top.state.n], top.state.y
    finally:
        executor.close()
    seconds["iterate"] = time.perf_counter() - looping - seconds["partitions"]  # the coordinator's own share
    seconds["cpu"] = time.process_time() - cpu  # this process's, all its threads (a dask client's included)
    seconds.update({f"top_{key}": value for key, value in top.normal.seconds.items()})
    return IpmResult(status, x, y, it, lb, pobj, seconds, message)
