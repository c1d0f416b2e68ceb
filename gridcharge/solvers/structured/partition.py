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
import time
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from .layout import Layout
from .normal import NormalEquations

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
    parts: list
    top_front_of: np.ndarray  # front of the whole layout -> the coordinator's front (-1: a partition's)


def plan(layout: Layout, n_parts: int = PARTITIONS) -> Plan:
    """Split ``layout`` into at most ``n_parts`` partitions of whole subtrees below the top fronts (a district's
    lines and substation), each a run of subtrees in top-front order of about equal car count."""
    n_front = len(layout.front_rows)
    parent = layout.front_parent
    # cars per front (by their lowest front), then per subtree
    cars_front = np.where(layout.car_group >= 0, layout.group_front[layout.car_group], -1)
    weight = np.bincount(cars_front[cars_front >= 0], minlength=n_front).astype(float)
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
    parts = []
    for p in range(n if roots else 0):
        fronts = np.flatnonzero(owner == p)
        if len(fronts):
            parts.append(restrict(layout, np.flatnonzero(car_owner == p), fronts, with_global=False))
    top_fronts = np.flatnonzero(top)
    top_part = restrict(layout, np.flatnonzero(car_owner < 0), top_fronts, with_global=True)
    top_front_of = np.full(n_front, -1, dtype=np.int64)
    top_front_of[top_fronts] = np.arange(len(top_fronts))
    return Plan(top_part, parts, top_front_of)


def restrict(layout: Layout, cars: np.ndarray, fronts: np.ndarray, *, with_global: bool) -> Part:
    """The layout of the cars ``cars`` and the fronts ``fronts`` (whole subtrees, or the top fronts) of ``layout``,
    renumbered compactly; ``with_global`` keeps the columns of no car."""
    lay = layout
    T = lay.n_periods
    # local positions and LP columns of the cars
    pos, pos_map, lengths = _select(lay.car_start, cars, len(lay.local_rows))
    le = np.flatnonzero(pos_map[lay.le_pos] >= 0)
    cols = np.unique(lay.le_col[le])
    if with_global:
        cols = np.union1d(cols, lay.global_cols)
    col_map = np.full(lay.n_col, -1, dtype=np.int64)
    col_map[cols] = np.arange(len(cols))
    # coupling positions: the fronts' rows (own rows and those above them)
    cpos = np.unique(np.concatenate([lay.front_rows[f] for f in fronts])) if len(fronts) else np.zeros(0, np.int64)
    c_map = np.full(len(lay.coupling_rows), -1, dtype=np.int64)
    c_map[cpos] = np.arange(len(cpos))
    owned = np.zeros(len(lay.coupling_rows), dtype=bool)
    for f in fronts:
        owned[lay.front_rows[f][:lay.front_own[f]]] = True
    above_global = cpos[~owned[cpos]]
    rows = np.r_[lay.local_rows[pos], lay.coupling_rows[cpos]]
    a = lay.a_csr[rows][:, cols]
    a_csr = sp.csr_matrix(a)
    a_csc = a_csr.tocsc()
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
        row_lower=lay.row_lower[rows], row_upper=lay.row_upper[rows], a_csr=a_csr, a_csc=a_csc,
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


def _select(start: np.ndarray, items: np.ndarray, size: int):
    """The entries ``[start[i], start[i + 1])`` of every item ``i`` of ``items``, in order; the map entry -> its new
    position (-1: not selected, ``size`` entries); the items' lengths."""
    lengths = np.diff(start)[items].astype(np.int64)
    ranges = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = np.repeat(start[items], lengths) + ranges
    new = np.full(size, -1, dtype=np.int64)
    new[index] = np.arange(len(index))
    return index, new, lengths


class PartWorker:
    """A partition's normal equations, resident where it runs (this process, or a dask worker as an actor)."""

    def __init__(self, part: Part, delta: float, threads: int):
        self.part = part
        self.threads = threads  # numba's threads set the Schur sums' chunks, so they are the coordinator's count
        # one BLAS thread in this process from now on (spinning BLAS threads starve numba's: structured.md); in the
        # coordinator's process that holds already, inside the solver's own limit
        threadpool_limits(limits=1, user_api="blas")
        with self._limits():  # NormalEquations chunks the Schur sums by numba's thread count
            self.normal = NormalEquations(part.layout, delta)

    def _limits(self):
        numba.set_num_threads(self.threads)
        return contextlib.nullcontext()

    def factor(self, theta: np.ndarray, theta_s: np.ndarray) -> dict:
        """Factor for the partition's column and row weights; returns the dense updates on the coordinator's fronts
        (front of the whole layout -> matrix on its rows), summed per front in the partition's front order."""
        with self._limits():
            self.normal.factor(theta, theta_s)
        out: dict = {}
        for f, target in sorted(self.part.root_parent.items()):
            update = self.normal.outgoing[f]
            out[target] = update if target not in out else out[target] + update
        return out

    def forward(self, rhs: np.ndarray) -> np.ndarray:
        """First half of a solve: the partition's contribution to the right side of the top rows (``above``)."""
        rhs = rhs.copy()
        rhs[len(self.part.layout.local_rows) + self.part.above] = 0.0  # the coordinator's share of the right side
        with self._limits():
            return self.normal.forward(rhs)

    def backward(self, dy_above: np.ndarray) -> np.ndarray:
        """Second half: ``dy`` on the partition's rows, given the top rows' step."""
        with self._limits():
            return self.normal.backward(dy_above)

    def seconds(self) -> dict:
        return dict(self.normal.seconds)


class InProcess:
    """Runs each call of every partition here, one after the other."""

    def start(self, parts: list, delta: float, threads: int) -> None:
        self.workers = [PartWorker(part, delta, threads) for part in parts]

    def map(self, method: str, args: list) -> list:
        return [getattr(w, method)(*a) for w, a in zip(self.workers, args)]

    def close(self) -> None:
        self.workers = []


class PartitionedNormalEquations:
    """The interface of :class:`~.normal.NormalEquations` (``factor``, ``solve``, ``seconds``) over a :class:`Plan`:
    the partitions through ``executor``, the top fronts here. Contributions are summed in partition order."""

    def __init__(self, layout: Layout, delta: float, executor=None, n_parts: int = PARTITIONS):
        self.plan = plan(layout, n_parts)
        self.top = NormalEquations(self.plan.top.layout, delta)
        self.executor = executor if executor is not None else InProcess()
        self.executor.start(self.plan.parts, delta, numba.get_num_threads())
        self.m = len(layout.row_lower)
        top = self.plan.top
        t_map = np.full(len(layout.coupling_rows), -1, dtype=np.int64)
        cpos_top = top.rows[len(top.layout.local_rows):]
        t_map[np.searchsorted(layout.coupling_rows, cpos_top)] = np.arange(len(cpos_top))
        self.above_in_top = [t_map[p.above_global] for p in self.plan.parts]
        self.seconds = {"partitions": 0.0}  # waiting for the partitions (their own seconds stay where they ran)

    def factor(self, theta: np.ndarray, theta_s: np.ndarray) -> None:
        started = time.perf_counter()
        updates = self.executor.map("factor", [(theta[p.cols], theta_s[p.rows]) for p in self.plan.parts])
        self.seconds["partitions"] += time.perf_counter() - started
        incoming: dict = {}
        for update in updates:  # partition order
            for target, block in update.items():
                f = int(self.plan.top_front_of[target])
                incoming[f] = block if f not in incoming else incoming[f] + block
        top = self.plan.top
        self.top.factor(theta[top.cols], theta_s[top.rows], incoming=incoming)
        self._sync_seconds()

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        parts = self.plan.parts
        contributions = self.executor.map("forward", [(rhs[p.rows],) for p in parts])
        top = self.plan.top
        extra = np.zeros(len(top.layout.coupling_rows))
        for where, z in zip(self.above_in_top, contributions):
            extra[where] += z
        self.top.forward(rhs[top.rows], extra=extra)
        dy_top = self.top.backward(None)
        dy_c = dy_top[len(top.layout.local_rows):]
        pieces = self.executor.map("backward", [(dy_c[where],) for where in self.above_in_top])
        out = np.empty(self.m)
        for p, piece in zip(parts, pieces):
            out[p.rows] = piece
        out[top.rows] = dy_top
        self.seconds["partitions"] += time.perf_counter() - started
        return out

    def _sync_seconds(self) -> None:
        for key, value in self.top.seconds.items():
            self.seconds[f"top_{key}"] = value

    def close(self) -> None:
        self.executor.close()
