"""The block layout of a built :class:`~gridcharge.formulation.lp.LinearProgram`, derived from its arrays alone.

Cars (sessions) are independent blocks: their *local* rows (``energy_balance``, ``energy_by_departure``) touch only
their own columns and form a chain (each column sits in at most two consecutive local rows of its car), so the local
part of the normal matrix is tridiagonal per car. Every other row is a *coupling* row with a ``period`` label. A car's
columns meet the coupling rows in one common pattern ``gamma`` (row type -> coefficient, the same in every period)
times a per-column scale ``sigma`` (+1 for charge, -1 for discharge); cars with the same pattern form a *group*, and
the Schur complement is accumulated per group and period. Columns of no car (the peak) are few and handled densely.

The coupling rows nest as the capacity tree does: a car meets the rows of the nodes on its path to the root only. The
layout derives that tree from the groups alone (a node's rows are met by a superset of the groups that meet any node
below it) and splits the Schur complement into *fronts*, one per node with rows: a front holds its node's own rows
followed by all the rows of the fronts above it, so a front eliminated bottom-up leaves a dense update on exactly its
parent front's rows (see :mod:`.normal` and docs/design/structured.md). ``nested=False`` puts every coupling row in one
front: the flat dense Schur complement.

When the LP does not have this shape (binaries, overload slack, a free column that cannot be boxed, too many coupling
rows) :class:`LayoutError` says why and the caller falls back to HiGHS.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...formulation.lp import LinearProgram

#: Row blocks of :mod:`gridcharge.formulation.lp` that belong to one session.
LOCAL_ROW_BLOCKS = ("energy_balance", "energy_by_departure")
#: Above this many rows in one front (its node's rows and those of every node above it) the dense elimination costs
#: more than it saves [rows]; for the flat layout (``nested=False``) the front is every coupling row.
MAX_FRONT_ROWS = 4000
#: At most this many columns outside every car (dense in the Schur complement) [columns].
MAX_GLOBAL_COLUMNS = 64
#: Group-by-period workspace limit, groups x periods^2 [entries]: 100 M is 800 MB of ``T x T`` sums, which a
#: 50,000-session district of 250 transformers (3,533 groups x 96^2: 33 M) and a 100,000-session one fit.
MAX_GROUP_CELLS = 100_000_000
#: Largest key range :func:`unique_bounded` tabulates instead of sorting [keys] (one byte each).
MAX_KEY_TABLE = 400_000_000
#: ... and ranks by a table (instead of a binary search) up to this range [keys] (four bytes each).
MAX_RANK_TABLE = 4_000_000


class LayoutError(ValueError):
    """The LP is not block-angular in the way the structured solver needs; the message says what is missing."""


@dataclass(eq=False)
class Layout:
    """Index arrays describing the LP's blocks, built once per LP (see module docstring).

    Columns keep the LP's order; rows are split into local rows (car-major, chain order) and coupling rows.
    """

    n_col: int
    col_lower: np.ndarray  # [column unit]; the peak boxed by its implied range (see :func:`box_free_columns`)
    col_upper: np.ndarray
    row_lower: np.ndarray  # LP order
    row_upper: np.ndarray
    a_csr: sp.csr_matrix | None  # the LP matrix, rows in LP order (None in a part's slice: read by boxes and restrict)
    a_csc: sp.csc_matrix
    local_rows: np.ndarray  # LP row index of each local position (car-major, chain order)
    coupling_rows: np.ndarray  # LP row index of each coupling position
    car_start: np.ndarray  # local positions [car_start[c], car_start[c+1]) belong to car c
    # local entries of the matrix (one per nonzero in a local row)
    le_col: np.ndarray
    le_pos: np.ndarray  # local position
    le_val: np.ndarray
    # columns with two local entries: tridiagonal off-diagonal (position pos2 = pos1 + 1)
    off_col: np.ndarray
    off_pos: np.ndarray  # the lower position (pos1 + 1)
    off_val: np.ndarray  # alpha1 * alpha2
    # H: coupling influence of local rows, entries (car, local position, period)
    he_pos: np.ndarray
    he_period: np.ndarray
    he_start: np.ndarray  # per car, range into the H entries
    hc_entry: np.ndarray  # per contribution: H entry
    hc_col: np.ndarray  # per contribution: column
    hc_val: np.ndarray  # per contribution: sigma * alpha
    # direct coupling of car columns: per coupling column entry, group-period cell and sigma^2
    dc_col: np.ndarray
    dc_cell: np.ndarray  # group * n_periods + period
    dc_val: np.ndarray  # sigma^2
    dc_sigma: np.ndarray  # sigma: +1 charge, -1 discharge
    car_group: np.ndarray
    n_groups: int
    n_periods: int
    group_type_start: np.ndarray  # per group, range into group_type / group_gamma
    group_type: np.ndarray
    group_gamma: np.ndarray
    row_of: np.ndarray  # (n_types, n_periods) coupling position, -1 where absent
    global_cols: np.ndarray  # columns of no car (dense in the Schur complement)
    global_block: np.ndarray  # (n_coupling, n_global) their coupling coefficients
    boxed_free: np.ndarray  # columns whose infinite bounds were replaced by their implied range
    # fronts of the nested Schur complement (module docstring), numbered parents before children
    front_parent: np.ndarray  # per front, -1 at a root
    front_own: np.ndarray  # per front, how many rows it eliminates (the first of its rows)
    front_rows: list  # per front, coupling positions: its own rows, then its parent front's rows in their order
    group_front: np.ndarray  # per group, the lowest front it meets (all its rows are that front's)
    global_front: int  # the front holding every row the global columns meet (-1 without global columns)

    @property
    def n_cars(self) -> int:
        return len(self.car_start) - 1

    @functools.cached_property
    def abs_a_t(self) -> sp.csr_matrix:
        """``|A|^T``, for the rounding-error bound of the certificate: CSR on ``a_csc``'s own index arrays (only the
        values are new)."""
        a = self.a_csc
        return sp.csr_matrix((np.abs(a.data), a.indices, a.indptr), shape=(a.shape[1], a.shape[0]))


class Derived:
    """The layout of an LP, derived (:func:`derive_layout`) when asked for and kept until :meth:`release`: the split
    solve lets go of the whole layout once the partitions hold their slices, and only a lost worker's share, made
    again, needs it again (derived anew from ``lp``: the same arrays, bit for bit). Without ``lp`` the layout it was
    given is kept."""

    def __init__(self, lp: LinearProgram | None, layout: Layout | None = None):
        if lp is None and layout is None:
            raise ValueError("Derived: expected an LP to derive the layout from, or the layout itself")
        self.lp = lp
        self._layout = layout

    def get(self) -> Layout:
        """The layout (derived again if it was released)."""
        if self._layout is None:
            self._layout = derive_layout(self.lp)
        return self._layout

    @property
    def held(self) -> bool:
        """Whether the layout is held now."""
        return self._layout is not None

    def release(self) -> None:
        """Let go of the layout if it can be derived again."""
        if self.lp is not None:
            self._layout = None


def unique_bounded(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True)`` for integer keys in ``[0, size)``, by a table of which keys occur
    instead of a sort when ``size`` is at most :data:`MAX_KEY_TABLE` (2 M keys: 0.69 s sorted, ~0.05 s this way)."""
    if size > MAX_KEY_TABLE:
        unique, inverse = np.unique(keys, return_inverse=True)
        return unique, inverse.ravel()
    present = np.zeros(size, dtype=bool)
    present[keys] = True
    unique = np.flatnonzero(present)
    if size > MAX_RANK_TABLE:
        return unique, np.searchsorted(unique, keys)
    rank = np.cumsum(present, dtype=np.int32)  # four bytes per key: the rank of each key that occurs
    return unique, (rank[keys] - 1).astype(np.int64)


def box_free_columns(lp: LinearProgram, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Replace the infinite bounds of an epigraph column by the range its optimum must lie in.

    A column ``j`` with cost > 0 that appears only with positive coefficients in ``>=`` rows (finite lower, infinite
    upper; the peak definition ``peak - net load >= base``) takes, at every optimum, the value
    ``max_i (lower_i - rest_i(x)) / a_ij``; over the box of the other columns that lies in
    ``[max_i min_box, max_i max_box]``. Boxing it there changes no optimum and no optimal value, which is what makes
    every column of the LP boxed. Returns the indices of the columns boxed this way; raises :class:`LayoutError` for a
    free column without this shape.
    """
    free = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
    if not len(free):
        return free
    a = sp.csc_matrix((lp.a_value, lp.a_index, lp.a_start), shape=(lp.n_row, lp.n_col))
    for j in free:  # a handful (the peak)
        rows = a.indices[a.indptr[j]:a.indptr[j + 1]]
        coef = a.data[a.indptr[j]:a.indptr[j + 1]]
        if (lp.col_cost[j] <= 0 or not len(rows) or np.any(coef <= 0) or np.any(~np.isfinite(lp.row_lower[rows]))
                or np.any(np.isfinite(lp.row_upper[rows]))):
            raise LayoutError(f"column {j} is unbounded and not an epigraph column with positive cost")
        sub = a[rows]
        sub_j = sub[:, [j]].toarray().ravel()
        others = sub.tolil()
        others[:, j] = 0
        others = others.tocsr()
        others.eliminate_zeros()
        if np.any(~np.isfinite(lower[others.indices])) or np.any(~np.isfinite(upper[others.indices])):
            raise LayoutError(f"column {j} depends on another unbounded column")
        pos, neg = others.copy(), others.copy()
        pos.data = np.maximum(pos.data, 0.0)
        neg.data = np.minimum(neg.data, 0.0)
        rest_min = pos @ lower + neg @ upper
        rest_max = pos @ upper + neg @ lower
        low = np.max((lp.row_lower[rows] - rest_max) / sub_j)
        high = np.max((lp.row_lower[rows] - rest_min) / sub_j)
        lower[j] = max(lower[j], low) if np.isfinite(lower[j]) else low
        upper[j] = min(upper[j], high) if np.isfinite(upper[j]) else high
        if upper[j] - lower[j] < 1e-9 * max(1.0, abs(upper[j])):
            upper[j] = lower[j] + 1e-9 * max(1.0, abs(upper[j]))  # never a zero-width box for a free column
    return free


def derive_layout(lp: LinearProgram, *, nested: bool = True) -> Layout:
    """The block layout of ``lp``; :class:`LayoutError` when the LP does not have it.

    ``nested`` splits the coupling rows into one front per node of the capacity tree; ``False`` keeps them in one
    front (the flat dense Schur complement)."""
    if lp.integrality is not None:
        raise LayoutError("the model has binaries (charge-or-discharge rule)")
    if len(lp.slack_col):
        raise LayoutError("the model has overload slack columns")
    n, m = lp.n_col, lp.n_row
    lower, upper = lp.col_lower.copy(), lp.col_upper.copy()
    boxed = box_free_columns(lp, lower, upper)
    a_csc = sp.csc_matrix((lp.a_value, lp.a_index, lp.a_start), shape=(m, n))
    a_csc.sort_indices()  # column-major, rows ascending: the entry order below relies on it
    a_csr = a_csc.tocsr()

    # car of every column, from the LP's pair maps
    K = len(lp.pair_session)
    car_of_col = np.full(n, -1, dtype=np.int64)
    car_of_col[:K] = lp.pair_session
    sigma = np.zeros(n)
    sigma[:K] = 1.0
    has_d = lp.discharge_col >= 0
    car_of_col[lp.discharge_col[has_d]] = lp.pair_session[has_d]
    sigma[lp.discharge_col[has_d]] = -1.0
    has_e = lp.energy_col >= 0
    car_of_col[lp.energy_col[has_e]] = lp.pair_session[has_e]
    period_of_col = np.full(n, -1, dtype=np.int64)
    period_of_col[:K] = lp.pair_period
    period_of_col[lp.discharge_col[has_d]] = lp.pair_period[has_d]
    period_of_col[lp.energy_col[has_e]] = lp.pair_period[has_e]

    # rows: local or coupling; type and period of coupling rows from the row labels
    is_local = np.zeros(m, dtype=bool)
    row_period = np.full(m, -1, dtype=np.int64)
    row_type_key = np.full((m, 3), -1, dtype=np.int64)
    names = sorted({b.name for b in lp.row_blocks})
    for block in lp.row_blocks:
        sl = slice(block.start, block.stop)
        if block.name in LOCAL_ROW_BLOCKS:
            is_local[sl] = True
            continue
        if "period" not in block.labels:
            raise LayoutError(f"coupling rows {block.name!r} carry no period label")
        row_period[sl] = block.labels["period"]
        row_type_key[sl, 0] = names.index(block.name)
        if "node" in block.labels:
            row_type_key[sl, 1] = block.labels["node"]
        if "phase" in block.labels:
            row_type_key[sl, 2] = block.labels["phase"]
    coupling_rows = np.flatnonzero(~is_local)
    coo = a_csc.tocoo()
    e_row, e_col, e_val = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    del coo  # here and below: the per-entry temporaries go as soon as they are used (the derivation's peak memory)
    local_e = is_local[e_row]
    # the car of a local row: that of its columns, all the same
    lrow, lcol = e_row[local_e], e_col[local_e]
    if np.any(car_of_col[lcol] < 0):
        raise LayoutError("a local row holds a column of no car")
    car_of_row = np.full(m, -1, dtype=np.int64)
    car_of_row[lrow] = car_of_col[lcol]
    if np.any(car_of_row[lrow] != car_of_col[lcol]):
        raise LayoutError("a local row spans two cars")
    local_rows = np.flatnonzero(is_local)
    if np.any(car_of_row[local_rows] < 0):
        raise LayoutError("an empty local row")
    order = np.lexsort((local_rows, car_of_row[local_rows]))
    local_rows = local_rows[order]
    position = np.full(m, -1, dtype=np.int64)
    position[local_rows] = np.arange(len(local_rows))
    cars, car_first = np.unique(car_of_row[local_rows], return_index=True)
    n_cars = len(cars)
    car_index = np.full(max(lp.pair_session.max(initial=-1) + 1, 1), -1, dtype=np.int64)
    car_index[cars] = np.arange(n_cars)
    car_start = np.r_[car_first, len(local_rows)].astype(np.int64)
    # columns of a car without local rows (none in lp.py) would still need a group; refuse them
    car_cols = np.flatnonzero(car_of_col >= 0)
    if np.any(car_index[car_of_col[car_cols]] < 0):
        raise LayoutError("a session's columns have no local row")
    ccar = np.full(n, -1, dtype=np.int64)
    ccar[car_cols] = car_index[car_of_col[car_cols]]

    le_col, le_pos, le_val = lcol, position[lrow], e_val[local_e]
    per_col = np.bincount(le_col, minlength=n)
    if per_col.max(initial=0) > 2:
        raise LayoutError("a column sits in more than two local rows")
    two = np.flatnonzero(per_col == 2)
    # entries are column-major with rows ascending, and within a car local positions follow the LP row order
    sc, sp_, sv = le_col, le_pos, le_val
    first = np.searchsorted(sc, two)
    if np.any(sp_[first + 1] != sp_[first] + 1) or np.any(car_of_row[local_rows[sp_[first]]] !=
                                                           car_of_row[local_rows[sp_[first + 1]]]):
        raise LayoutError("a column links two local rows that are not neighbours in one chain")
    off_col, off_pos, off_val = two, sp_[first + 1], sv[first] * sv[first + 1]

    # coupling entries of columns
    ce = ~local_e
    in_car = ccar[e_col] >= 0  # per entry; coupling entries split at once into cars' and others' (no middle copy)
    c_pos = np.full(m, -1, dtype=np.int64)
    c_pos[coupling_rows] = np.arange(len(coupling_rows))
    types, type_id = np.unique(row_type_key[coupling_rows], axis=0, return_inverse=True)
    type_id = type_id.ravel()
    T = int(max(row_period.max(initial=-1), lp.pair_period.max(initial=-1)) + 1)
    row_of = np.full((len(types), max(T, 1)), -1, dtype=np.int64)
    row_of[type_id, row_period[coupling_rows]] = np.arange(len(coupling_rows))

    outside = ce & ~in_car
    g_col, g_row, g_val = e_col[outside], e_row[outside], e_val[outside]
    global_cols = np.flatnonzero(np.bincount(g_col, minlength=n))
    if len(global_cols) > MAX_GLOBAL_COLUMNS:
        raise LayoutError(f"{len(global_cols)} coupling columns outside every session")
    global_block = np.zeros((len(coupling_rows), len(global_cols)))
    global_block[c_pos[g_row], np.searchsorted(global_cols, g_col)] = g_val

    inside = ce & in_car
    k_col, k_row, k_val = e_col[inside], e_row[inside], e_val[inside]
    del e_row, e_col, e_val, local_e, ce, in_car, outside, inside, lrow
    if np.any(row_period[k_row] != period_of_col[k_col]):
        raise LayoutError("a session column meets a coupling row of another period")
    if np.any(sigma[k_col] == 0):
        raise LayoutError("an energy column meets a coupling row")
    k_car, k_type = ccar[k_col], type_id[c_pos[k_row]]
    gamma = k_val * sigma[k_col]  # sigma is +-1
    cell = k_car * len(types) + k_type  # (car, row type), only those that occur: a district has thousands of types
    del k_row, k_val, k_car, k_type
    u_cell, cell_index = unique_bounded(cell, n_cars * len(types))
    reference = np.zeros(len(u_cell))
    reference[cell_index] = gamma  # any one entry's coefficient per (car, row type); all must agree with it
    agreed = reference[cell_index]
    if not np.array_equal(gamma, agreed) and np.any(np.abs(gamma - agreed) > 1e-12 * np.maximum(1.0, np.abs(gamma))):
        raise LayoutError("a session's columns meet one coupling row type with different coefficients")
    del cell, cell_index, gamma, agreed
    u_gamma = reference
    u_car, u_type = u_cell // len(types), u_cell % len(types)
    # group signature: the car's (type, gamma) list, padded
    per_car = np.bincount(u_car, minlength=n_cars)
    width = int(per_car.max(initial=0))
    sig_type = np.full((n_cars, max(width, 1)), -1.0)
    sig_gamma = np.zeros((n_cars, max(width, 1)))
    slot = np.arange(len(u_car)) - (np.cumsum(per_car) - per_car)[u_car]
    sig_type[u_car, slot] = u_type
    sig_gamma[u_car, slot] = u_gamma
    signature, car_group = np.unique(np.hstack([sig_type, sig_gamma]), axis=0, return_inverse=True)
    del sig_type, sig_gamma
    car_group = car_group.ravel().astype(np.int64)
    G = len(signature)
    if G * T * T > MAX_GROUP_CELLS:
        raise LayoutError(f"{G} coupling patterns x {T} periods is too wide for the grouped Schur complement")
    g_types = signature[:, :max(width, 1)]
    g_gamma = signature[:, max(width, 1):]
    present = g_types >= 0
    group_type_start = np.r_[0, np.cumsum(present.sum(axis=1))].astype(np.int64)
    group_type = g_types[present].astype(np.int64)
    group_gamma = g_gamma[present]

    # every charge/discharge column of a car meets exactly the rows of its car's pattern that exist in its period
    expected = np.zeros((G, max(T, 1)), dtype=np.int64)
    np.add.at(expected, np.repeat(np.arange(G), np.diff(group_type_start)), row_of[group_type] >= 0)
    scaled = np.flatnonzero((ccar >= 0) & (sigma != 0))
    met = np.bincount(k_col, minlength=n)[scaled]
    if np.any(met != expected[car_group[ccar[scaled]], period_of_col[scaled]]):
        raise LayoutError("a session's columns meet different coupling rows in one period")

    # direct coupling: per car coupling-column (not per entry): sigma^2 into its group's period cell
    dcols = np.flatnonzero(np.bincount(k_col, minlength=n))
    del k_col
    dc_cell = car_group[ccar[dcols]] * T + period_of_col[dcols]
    dc_val = sigma[dcols] ** 2

    # H: for every local entry of a column that meets coupling rows, sigma * alpha at (position, period)
    meets = np.zeros(n, dtype=bool)
    meets[dcols] = True
    hm = meets[le_col]
    h_pos, h_col, h_val = le_pos[hm], le_col[hm], le_val[hm] * sigma[le_col[hm]]
    h_period = period_of_col[h_col]
    key = h_pos * T + h_period
    u_key, hc_entry = unique_bounded(key, len(local_rows) * T)
    del key, hm, h_pos, h_period
    he_pos, he_period = u_key // T, u_key % T
    he_car = np.searchsorted(car_start, he_pos, side="right") - 1
    he_start = np.searchsorted(he_car, np.arange(n_cars + 1)).astype(np.int64)

    if not len(coupling_rows):
        front_parent, front_own, front_rows = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), []
        group_front, front_of = np.full(G, -1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    elif nested:
        front_parent, front_own, front_rows, group_front, front_of = front_tree(types[:, 1], type_id, group_type_start,
                                                                             group_type)
    else:
        front_parent, front_own = np.array([-1]), np.array([len(coupling_rows)])
        front_rows, group_front = [np.arange(len(coupling_rows))], np.zeros(G, dtype=np.int64)
        front_of = np.zeros(len(coupling_rows), dtype=np.int64)
    widest = max((len(r) for r in front_rows), default=0)
    if widest > MAX_FRONT_ROWS:
        raise LayoutError(f"{widest} coupling rows in one front (more than {MAX_FRONT_ROWS} for a dense elimination)")
    global_front = -1
    if len(global_cols):
        touched = np.flatnonzero(np.any(global_block != 0, axis=1))
        fronts = np.unique(front_of[touched])
        global_front = int(fronts.max())  # parents are numbered first: the highest number is the lowest front
        if not np.isin(touched, front_rows[global_front]).all():
            raise LayoutError("the columns outside every session meet rows of two branches of the tree")

    return Layout(
        n_col=n, col_lower=lower, col_upper=upper, row_lower=lp.row_lower, row_upper=lp.row_upper,
        a_csr=a_csr, a_csc=a_csc, local_rows=local_rows, coupling_rows=coupling_rows, car_start=car_start,
        le_col=le_col, le_pos=le_pos, le_val=le_val, off_col=off_col, off_pos=off_pos, off_val=off_val,
        he_pos=he_pos.astype(np.int64), he_period=he_period.astype(np.int64), he_start=he_start,
        hc_entry=hc_entry.ravel().astype(np.int64), hc_col=h_col, hc_val=h_val,
        dc_col=dcols, dc_cell=dc_cell.astype(np.int64), dc_val=dc_val, dc_sigma=sigma[dcols], car_group=car_group,
        n_groups=G,
        n_periods=T, group_type_start=group_type_start, group_type=group_type, group_gamma=group_gamma,
        row_of=row_of, global_cols=global_cols, global_block=global_block, boxed_free=boxed,
        front_parent=front_parent, front_own=front_own, front_rows=front_rows, group_front=group_front,
        global_front=global_front,
    )


def front_tree(type_node: np.ndarray, type_id: np.ndarray, group_type_start: np.ndarray, group_type: np.ndarray):
    """The tree of fronts: one per node label of the coupling row types (``-1``: rows of no node), parent = the
    nearest front above it met by the same groups. Returns ``(parent, own, rows, group_front, front_of)`` with fronts
    numbered parents first; :class:`LayoutError` when the groups' rows do not nest as a tree."""
    keys, type_front = np.unique(type_node, return_inverse=True)
    type_front = type_front.ravel()
    n_front, n_group = len(keys), len(group_type_start) - 1
    # distinct (group, front) pairs; a front met by more groups is higher, ties by node label (the same groups)
    pg = np.repeat(np.arange(n_group), np.diff(group_type_start))
    pair = np.unique(pg * n_front + type_front[group_type])
    pg, pf = pair // n_front, pair % n_front
    count = np.bincount(pf, minlength=n_front)
    rank = np.empty(n_front, dtype=np.int64)
    rank[np.lexsort((keys, -count))] = np.arange(n_front)
    pf = rank[pf]  # fronts renumbered by rank: parents first
    order = np.lexsort((pf, pg))
    pg, pf = pg[order], pf[order]
    parent = np.full(n_front, -1, dtype=np.int64)
    chained = np.flatnonzero(pg[1:] == pg[:-1])  # consecutive fronts of one group: the nearer one above
    np.maximum.at(parent, pf[chained + 1], pf[chained])
    # every front a group meets must lie on the path from its lowest front to the root
    lowest = np.full(n_group, -1, dtype=np.int64)
    np.maximum.at(lowest, pg, pf)
    on_path = np.zeros(len(pg), dtype=bool)
    walk = lowest[pg]
    while True:
        on_path |= walk == pf
        up = walk >= 0
        if not up.any():
            break
        walk = np.where(up, parent[np.maximum(walk, 0)], -1)
    if not on_path.all():
        raise LayoutError("the coupling rows met by the sessions do not nest as a tree")
    front_of = rank[type_front[type_id]]  # per coupling position
    own_rows = np.argsort(front_of, kind="stable")
    own = np.bincount(front_of, minlength=n_front)
    own_start = np.r_[0, np.cumsum(own)]
    rows: list = []
    for f in range(n_front):  # parents first: a front's rows are its own, then its parent's (a few hundred fronts)
        mine = own_rows[own_start[f]:own_start[f + 1]]
        rows.append(mine if parent[f] < 0 else np.r_[mine, rows[parent[f]]])
    return parent, own.astype(np.int64), rows, lowest, front_of
