"""Compiled per-car kernels of the structured interior point (numba): batched tridiagonal Cholesky, solves, and the
grouped Schur complement. Each loops over cars with ``prange`` so that both cores work; none allocates per car."""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

#: A tridiagonal pivot at or below this share of its diagonal is replaced by a huge one (the row drops out of that
#: step, as in IPX's and HiGHS's handling of tiny pivots); the replacements are counted.
PIVOT_FLOOR = 1e-30
HUGE_PIVOT = 1e128


@njit(parallel=True, cache=True)
def factor_chains(diag, off, car_start, ld, lo):
    """Cholesky ``L L^T`` of every car's tridiagonal block: ``ld`` diagonal, ``lo[r]`` the entry below ``ld[r-1]``.

    Returns the number of pivots replaced by :data:`HUGE_PIVOT`.
    """
    n_cars = len(car_start) - 1
    replaced = np.zeros(n_cars, dtype=np.int64)
    for c in prange(n_cars):
        a, b = car_start[c], car_start[c + 1]
        for r in range(a, b):
            if r == a:
                lo[r] = 0.0
                d = diag[r]
            else:
                lo[r] = off[r] / ld[r - 1]
                d = diag[r] - lo[r] * lo[r]
            if not d > PIVOT_FLOOR * abs(diag[r]) or d <= 0.0:
                d = HUGE_PIVOT
                replaced[c] += 1
            ld[r] = np.sqrt(d)
    return replaced.sum()


@njit(parallel=True, cache=True)
def solve_chains(ld, lo, car_start, rhs, out):
    """``out = M^{-1} rhs`` for every car's factored tridiagonal block."""
    n_cars = len(car_start) - 1
    for c in prange(n_cars):
        a, b = car_start[c], car_start[c + 1]
        prev = 0.0
        for r in range(a, b):
            prev = (rhs[r] - (lo[r] * prev if r > a else 0.0)) / ld[r]
            out[r] = prev
        nxt = 0.0
        for r in range(b - 1, a - 1, -1):
            nxt = (out[r] - (lo[r + 1] * nxt if r < b - 1 else 0.0)) / ld[r]
            out[r] = nxt


@njit(parallel=True, cache=True)
def schur_by_group(ld, lo, car_start, he_start, he_pos, he_period, hval, car_group, n_groups, n_periods, n_chunks,
                   max_len):
    """``W[g, t, t'] = sum over cars c of group g of (H_c M_c^{-1} H_c^T)[t, t']``.

    ``H_c`` has one entry per (local position, period) of car ``c`` (``he_*``, values ``hval``); ``M_c^{-1}`` is
    formed column by column from the Cholesky factor, O(length^2) per car. Cars are split in ``n_chunks`` contiguous
    chunks, each with its own accumulator, summed at the end.
    """
    n_cars = len(car_start) - 1
    acc = np.zeros((n_chunks, n_groups, n_periods, n_periods))
    per = (n_cars + n_chunks - 1) // n_chunks
    for k in prange(n_chunks):
        inv = np.empty((max_len, max_len))
        z = np.empty(max_len)
        for c in range(k * per, min(n_cars, (k + 1) * per)):
            a, b = car_start[c], car_start[c + 1]
            e0, e1 = he_start[c], he_start[c + 1]
            if e1 == e0:
                continue
            L = b - a
            for j in range(L):  # column j of M_c^{-1}
                for i in range(j):
                    z[i] = 0.0
                z[j] = 1.0 / ld[a + j]
                for i in range(j + 1, L):
                    z[i] = -lo[a + i] * z[i - 1] / ld[a + i]
                inv[L - 1, j] = z[L - 1] / ld[a + L - 1]
                for i in range(L - 2, -1, -1):
                    inv[i, j] = (z[i] - lo[a + i + 1] * inv[i + 1, j]) / ld[a + i]
            g = car_group[c]
            w = acc[k, g]
            for e in range(e0, e1):
                pe, te, he = he_pos[e] - a, he_period[e], hval[e]
                w[te, te] += he * he * inv[pe, pe]
                for f in range(e + 1, e1):
                    v = he * hval[f] * inv[pe, he_pos[f] - a]
                    w[te, he_period[f]] += v
                    w[he_period[f], te] += v
    out = np.zeros((n_groups, n_periods, n_periods))
    for k in range(n_chunks):
        out += acc[k]
    return out


@njit(cache=True)
def expand_groups(w, d, group_type_start, group_type, group_gamma, row_of, s):
    """``S[(type, t), (type', t')] += gamma gamma' (D[g, t] [t = t'] - W[g, t, t'])`` over every group's types."""
    n_groups, n_periods = d.shape
    for g in range(n_groups):
        for i1 in range(group_type_start[g], group_type_start[g + 1]):
            t1type, g1 = group_type[i1], group_gamma[i1]
            for i2 in range(group_type_start[g], group_type_start[g + 1]):
                t2type, gg = group_type[i2], g1 * group_gamma[i2]
                for p1 in range(n_periods):
                    r1 = row_of[t1type, p1]
                    if r1 < 0:
                        continue
                    r2 = row_of[t2type, p1]
                    if r2 >= 0:
                        s[r1, r2] += gg * d[g, p1]
                    for p2 in range(n_periods):
                        r2 = row_of[t2type, p2]
                        if r2 >= 0:
                            s[r1, r2] -= gg * w[g, p1, p2]


def threads() -> int:
    """Threads numba runs ``prange`` loops on."""
    return numba.get_num_threads()
