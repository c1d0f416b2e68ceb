"""Normal equations ``(A Theta A^T + diag(Theta_s) + delta I) dy = r`` of the interior point, by block elimination:
per-car tridiagonal Cholesky (batched, compiled), then the Schur complement on the coupling rows, eliminated front by
front up the capacity tree (:class:`~.layout.Layout` fronts): each front's own rows by a dense Cholesky, leaving a dense
update on its parent front's rows. One front holding every coupling row is the flat dense Schur complement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from . import kernels
from .layout import Layout


class NumericalTrouble(RuntimeError):
    """The coupling system stayed indefinite however much it was regularised."""


class _Front:
    """One eliminated front: ``chol`` the Cholesky factor of its own rows, ``below`` the rows of the fronts above it
    times its inverse transpose (``L`` below the diagonal block)."""

    __slots__ = ("chol", "below")

    def __init__(self, chol: np.ndarray, below: np.ndarray):
        self.chol = chol
        self.below = below


def _cholesky(block: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``block`` (overwritten), raising the diagonal slightly while it is not positive
    definite; :class:`NumericalTrouble` when that does not help."""
    scale = max(1.0, float(np.abs(np.diag(block)).max(initial=1.0)))
    for attempt in range(6):
        try:
            return la.cholesky(block, lower=True, overwrite_a=False, check_finite=False)
        except la.LinAlgError:
            block[np.diag_indices(len(block))] += scale * 1e-14 * 100.0 ** attempt
    raise NumericalTrouble("the Schur complement on the coupling rows is not positive definite")


@dataclass(eq=False)
class Forward:
    """What a forward half-solve leaves for the backward one: the right side of the local rows (as given) and the
    coupling rows' right side after the fronts' forward substitution. Both are linear in the right side, so the
    state of ``r_a + t r_b`` is that of ``r_a`` plus ``t`` times that of ``r_b`` (:meth:`plus`), up to rounding."""

    local: np.ndarray
    coupling: np.ndarray

    def plus(self, other: Forward, scale: float) -> Forward:
        """The state of this right side plus ``scale`` times ``other``'s."""
        return Forward(self.local + scale * other.local, self.coupling + scale * other.coupling)


class NormalEquations:
    """Factor once per iteration with :meth:`factor`, then :meth:`solve` any number of right-hand sides."""

    def __init__(self, layout: Layout, delta: float):
        self.lay = layout
        self.delta = delta  # dual regularisation [-]
        # only columns in both local and coupling rows carry the off-diagonal blocks M_LC, M_CL
        # ... and they enter through the H entries (local position, period) of their car: A_C Theta A_L^T is
        # H's values summed per group-period cell, then spread on the rows by the group's pattern gamma
        n_local = len(layout.local_rows)
        he_car = np.repeat(np.arange(layout.n_cars), np.diff(layout.he_start))
        self.he_cell = layout.car_group[he_car] * layout.n_periods + layout.he_period
        self.cells = np.empty(layout.n_groups * layout.n_periods)
        self.pattern_pos = layout.row_of[layout.group_type]  # coupling position per (pattern entry, period), -1: none
        self.diag = np.empty(n_local)
        self.off = np.empty(n_local)
        self.hval = np.empty(len(layout.he_pos))
        self.d = np.empty(layout.n_groups * layout.n_periods)
        self.ld = np.empty(n_local)
        self.lo = np.empty(n_local)
        self.max_len = int(np.diff(layout.car_start).max(initial=1))
        self.n_chunks = kernels.threads()
        # one-row cars (charge-only): H M^{-1} H^T = v v^T with v = h / ld, summed per group as V^T V by BLAS
        one_row = np.diff(layout.car_start) == 1
        self.skip = one_row
        cars = np.flatnonzero(one_row)
        cars = cars[np.argsort(layout.car_group[cars], kind="stable")]
        entry_car = np.repeat(np.arange(layout.n_cars), np.diff(layout.he_start))
        rank = np.full(layout.n_cars, -1, dtype=np.int64)
        rank[cars] = np.arange(len(cars))
        on = rank[entry_car] >= 0
        self.single_entry = np.flatnonzero(on)
        self.single_row = rank[entry_car[on]]
        self.single_period = layout.he_period[on]
        self.single_pos = layout.he_pos[on]
        self.single_groups = np.searchsorted(layout.car_group[cars], np.arange(layout.n_groups + 1))
        self.single_v = np.zeros((len(cars), layout.n_periods))
        # groups by their lowest front; a front's (own, below) split; the map coupling position -> row of a front
        with_front = np.flatnonzero(layout.group_front >= 0)
        by_front = with_front[np.argsort(layout.group_front[with_front], kind="stable")]
        n_front = len(layout.front_rows)
        self.front_groups = np.split(by_front, np.searchsorted(layout.group_front[by_front], np.arange(1, n_front)))
        self.front_diag = [layout.coupling_rows[rows[:own]]
                           for rows, own in zip(layout.front_rows, layout.front_own)]
        self.local = np.full(len(layout.coupling_rows), -1, dtype=np.int64)
        self.fronts: list = [None] * n_front
        # coupling positions no front here eliminates: a partition's top rows (their fronts are the coordinator's)
        owned = np.zeros(len(layout.coupling_rows), dtype=bool)
        for rows, own in zip(layout.front_rows, layout.front_own):
            owned[rows[:own]] = True
        self.above = np.flatnonzero(~owned)
        self.outgoing: dict = {}  # root front with rows above it -> its dense update on them
        self.replaced = 0
        self.state: Forward | None = None  # the last forward's, for the backward (settable: :meth:`Forward.plus`)
        self.seconds = {"chains": 0.0, "schur": 0.0, "dense": 0.0, "solve": 0.0}

    def factor(self, theta: np.ndarray, theta_s: np.ndarray, incoming: dict | None = None) -> None:
        """Factor for column weights ``theta`` (per LP column) and row-slack weights ``theta_s`` (per LP row);
        ``incoming`` adds dense updates (front -> matrix on its rows) eliminated elsewhere (partition.py)."""
        lay = self.lay
        started = time.perf_counter()
        kernels.normal_coefficients(theta, theta_s, self.delta, lay.local_rows, lay.le_col, lay.le_pos, lay.le_val,
                                    lay.off_col, lay.off_pos, lay.off_val, lay.hc_entry, lay.hc_col, lay.hc_val,
                                    lay.dc_col, lay.dc_cell, lay.dc_val, self.diag, self.off, self.hval, self.d)
        self.replaced = kernels.factor_chains(self.diag, self.off, lay.car_start, self.ld, self.lo)
        hval = self.hval
        mid = time.perf_counter()
        self.seconds["chains"] += mid - started
        w = kernels.schur_by_group(self.ld, self.lo, lay.car_start, lay.he_start, lay.he_pos, lay.he_period, hval,
                                   lay.car_group, self.skip, lay.n_groups, lay.n_periods, self.n_chunks, self.max_len)
        if len(self.single_entry):
            v = self.single_v  # its pattern is fixed: only the entries in it are overwritten
            v[self.single_row, self.single_period] = hval[self.single_entry] / self.ld[self.single_pos]
            for g in range(lay.n_groups):
                block = v[self.single_groups[g]:self.single_groups[g + 1]]
                if len(block):
                    w[g] += block.T @ block
        d = self.d.reshape(lay.n_groups, lay.n_periods)
        self.seconds["schur"] += time.perf_counter() - mid
        self._eliminate(w, d, theta, theta_s, incoming or {})

    def _eliminate(self, w: np.ndarray, d: np.ndarray, theta: np.ndarray, theta_s: np.ndarray, incoming: dict) -> None:
        """Assemble every front from the group sums ``w``, ``d``, ``incoming`` and its children's updates, children
        first, and factor its own rows; a root with rows above it keeps its update in :attr:`outgoing`."""
        lay = self.lay
        pending: dict = {f: block.copy() for f, block in incoming.items()}  # front -> its children's updates
        for f in range(len(lay.front_rows) - 1, -1, -1):  # parents are numbered first
            started = time.perf_counter()
            rows, own = lay.front_rows[f], int(lay.front_own[f])
            block = pending.pop(f, None)
            if block is None:
                block = np.zeros((len(rows), len(rows)))
            self.local[rows] = np.arange(len(rows))
            kernels.expand_front(w, d, self.front_groups[f], lay.group_type_start, lay.group_type, lay.group_gamma,
                                 lay.row_of, self.local, block)
            self.local[rows] = -1
            if f == lay.global_front:
                gb = lay.global_block[rows]
                block += (gb * theta[lay.global_cols]) @ gb.T
            block[np.arange(own), np.arange(own)] += theta_s[self.front_diag[f]] + self.delta
            mid = time.perf_counter()
            self.seconds["schur"] += mid - started
            chol = _cholesky(block[:own, :own])
            below = la.solve_triangular(chol, block[:own, own:], lower=True, check_finite=False).T
            if own < len(rows):
                update = block[own:, own:]
                update -= below @ below.T
                if lay.front_parent[f] >= 0:
                    pending[int(lay.front_parent[f])] = update + pending.get(int(lay.front_parent[f]), 0.0)
                else:
                    self.outgoing[f] = update
            self.fronts[f] = _Front(chol, below)
            self.seconds["dense"] += time.perf_counter() - mid

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``dy`` (per LP row) for a right-hand side per LP row."""
        self.forward(rhs)
        return self.backward(None)

    def forward(self, rhs: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """First half of :meth:`solve` (chains, then the fronts children first), with ``extra`` added to the
        coupling rows' right side; returns the right side left on the rows :attr:`above` the fronts here."""
        started = time.perf_counter()
        lay = self.lay
        r_l = rhs[lay.local_rows]
        y_l = np.empty_like(r_l)
        kernels.solve_chains(self.ld, self.lo, lay.car_start, r_l, y_l)
        kernels.local_to_cells(self.hval, lay.he_pos, self.he_cell, y_l, self.cells)
        z = rhs[lay.coupling_rows]
        kernels.scatter_cells(self.cells, lay.group_type_start, self.pattern_pos, lay.group_gamma, z)
        if extra is not None:
            z += extra
        self._forward_fronts(z)
        self.state = Forward(r_l, z)
        self.seconds["solve"] += time.perf_counter() - started
        return z[self.above]

    def backward(self, dy_above: np.ndarray | None) -> np.ndarray:
        """Second half of :meth:`solve` given the step on the rows :attr:`above` (``None`` when there are none):
        ``dy`` per LP row."""
        started = time.perf_counter()
        lay = self.lay
        r_l, z = self.state.local, self.state.coupling.copy()  # the state stays as it is (a lost worker replays)
        if dy_above is not None:
            z[self.above] = dy_above
        self._backward_fronts(z)
        kernels.gather_cells(z, lay.group_type_start, self.pattern_pos, lay.group_gamma, self.cells)
        r_l = r_l.copy()  # the state stays as forward left it (a lost worker re-runs backward)
        kernels.cells_to_local(self.cells, self.hval, lay.he_pos, self.he_cell, r_l)
        y_l = np.empty_like(r_l)
        kernels.solve_chains(self.ld, self.lo, lay.car_start, r_l, y_l)
        out = np.empty(len(lay.row_lower))
        out[lay.local_rows] = y_l
        out[lay.coupling_rows] = z
        self.seconds["solve"] += time.perf_counter() - started
        return out

    def _forward_fronts(self, z: np.ndarray) -> None:
        """Forward substitution on the coupling rows by the fronts' factors, children first, in place."""
        lay = self.lay
        n_front = len(lay.front_rows)
        for f in range(n_front - 1, -1, -1):
            rows, own, front = lay.front_rows[f], int(lay.front_own[f]), self.fronts[f]
            part = la.solve_triangular(front.chol, z[rows[:own]], lower=True, check_finite=False)
            z[rows[:own]] = part
            if own < len(rows):
                z[rows[own:]] -= front.below @ part

    def _backward_fronts(self, z: np.ndarray) -> None:
        """Back substitution, parents first, in place: ``z`` becomes ``S^{-1} r``."""
        lay = self.lay
        for f in range(len(lay.front_rows)):
            rows, own, front = lay.front_rows[f], int(lay.front_own[f]), self.fronts[f]
            part = z[rows[:own]]
            if own < len(rows):
                part = part - front.below.T @ z[rows[own:]]
            z[rows[:own]] = la.solve_triangular(front.chol, part, lower=True, trans="T", check_finite=False)
