"""Compiled per-car kernels of the structured interior point (numba): batched tridiagonal Cholesky, solves, the
grouped Schur complement and the fused column passes. Each loops over cars (or chunks of whole cars) with ``prange``
so that every core works; none allocates per car."""

from __future__ import annotations

import os
from dataclasses import dataclass

# numba's default threading layer on Linux is OpenMP (libgomp), whose idle threads spin at every barrier and between
# parallel loops: on a machine whose other core is busy a spinning thread holds the core the other one waits for, and
# two threads measured 2-7x slower than one (benchmarks/RESULTS.md, issue 13). Threads that sleep at once cost a
# futex wake per parallel loop (microseconds, a few dozen loops per iteration). Read when libgomp loads (numba's first
# parallel loop in this process); a value the user set stands.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

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
def schur_by_group(ld, lo, car_start, he_start, he_pos, he_period, hval, car_group, skip, n_groups, n_periods,
                   n_chunks, max_len):
    """``W[g, t, t'] = sum over cars c of group g of (H_c M_c^{-1} H_c^T)[t, t']``.

    ``H_c`` has one entry per (local position, period) of car ``c`` (``he_*``, values ``hval``, positions ascending).
    The inverse of a tridiagonal ``M = L L^T`` is never formed: above the diagonal ``M^{-1}[p, q] = rho[p]
    M^{-1}[p+1, q]`` with ``rho[p] = -lo[p+1] / ld[p]``, and the diagonal follows ``d[p] = 1 / ld[p]^2 + rho[p]^2
    d[p+1]``. The entries are taken bottom-up; ``R[k] = h_k M^{-1}[p, pos_k]`` is kept for every entry ``k`` below
    the current row ``p`` and moved up to the next entry's row by one multiply, fused with the pair's multiply-add
    into ``W`` (a loop without a carried dependency). Cars are split in ``n_chunks`` contiguous chunks, each with its
    own accumulator. Cars with ``skip`` set are left out (the one-row cars, done by BLAS in :mod:`.normal`).
    """
    n_cars = len(car_start) - 1
    acc = np.zeros((n_chunks, n_groups, n_periods, n_periods))
    per = (n_cars + n_chunks - 1) // n_chunks
    for k in prange(n_chunks):
        rho = np.empty(max_len)
        dg = np.empty(max_len)
        big_r = np.empty(max_len)
        for c in range(k * per, min(n_cars, (k + 1) * per)):
            a, b = car_start[c], car_start[c + 1]
            e0, e1 = he_start[c], he_start[c + 1]
            if e1 == e0 or skip[c]:
                continue
            L = b - a
            dg[L - 1] = 1.0 / (ld[b - 1] * ld[b - 1])
            for i in range(L - 2, -1, -1):
                rho[i] = -lo[a + i + 1] / ld[a + i]
                dg[i] = 1.0 / (ld[a + i] * ld[a + i]) + rho[i] * rho[i] * dg[i + 1]
            w = acc[k, car_group[c]]
            cur = L
            for f in range(e1 - 1, e0 - 1, -1):
                pf, tf, hf = he_pos[f] - a, he_period[f], hval[f]
                fac = 1.0  # moves the kept entries from row cur up to row pf
                if cur < L:
                    for i in range(pf, cur):
                        fac *= rho[i]
                cur = pf
                wrow = w[tf]
                for q in range(f + 1, e1):
                    r = big_r[q - e0] * fac
                    big_r[q - e0] = r
                    wrow[he_period[q]] += hf * r
                big_r[f - e0] = hf * dg[pf]
                wrow[tf] += 0.5 * hf * hf * dg[pf]
    out = np.zeros((n_groups, n_periods, n_periods))
    for k in range(n_chunks):
        out += acc[k]
    for g in range(n_groups):  # every pair was added once, at (t_f, t_q): W + W^T
        for t1 in range(n_periods):
            for t2 in range(t1, n_periods):
                v = out[g, t1, t2] + out[g, t2, t1]
                out[g, t1, t2] = v
                out[g, t2, t1] = v
    return out


@njit(cache=True)
def expand_front(w, d, groups, group_type_start, group_type, group_gamma, row_of, local, s):
    """``S[(type, t), (type', t')] += gamma gamma' (D[g, t] [t = t'] - W[g, t, t'])`` over the types of every group
    in ``groups``, at the front's rows ``local[coupling position]`` (all of them in the front)."""
    n_periods = d.shape[1]
    for g in groups:
        for i1 in range(group_type_start[g], group_type_start[g + 1]):
            t1type, g1 = group_type[i1], group_gamma[i1]
            for i2 in range(group_type_start[g], group_type_start[g + 1]):
                t2type, gg = group_type[i2], g1 * group_gamma[i2]
                for p1 in range(n_periods):
                    r1 = row_of[t1type, p1]
                    if r1 < 0:
                        continue
                    r1 = local[r1]
                    r2 = row_of[t2type, p1]
                    if r2 >= 0:
                        s[r1, local[r2]] += gg * d[g, p1]
                    for p2 in range(n_periods):
                        r2 = row_of[t2type, p2]
                        if r2 >= 0:
                            s[r1, local[r2]] -= gg * w[g, p1, p2]


@njit(cache=True)
def normal_coefficients(theta, theta_s, delta, local_rows, le_col, le_pos, le_val, off_col, off_pos, off_val, hc_entry,
                        hc_col, hc_val, dc_col, dc_cell, dc_val, diag, off, hval, d):
    """The coefficients of ``A Theta A^T`` that the block elimination needs, in one pass per entry list (the
    compiled form of four ``bincount`` calls): the local rows' diagonal ``diag`` (plus ``theta_s + delta``) and
    sub-diagonal ``off`` (tridiagonal per car), the coupling influence ``hval`` of the local rows (per ``H`` entry)
    and the direct coupling ``d`` (per group-period cell)."""
    for p in range(len(diag)):
        diag[p] = theta_s[local_rows[p]] + delta
    for k in range(len(le_col)):
        diag[le_pos[k]] += le_val[k] * le_val[k] * theta[le_col[k]]
    off[:] = 0.0
    for k in range(len(off_col)):
        off[off_pos[k]] += off_val[k] * theta[off_col[k]]
    hval[:] = 0.0
    for k in range(len(hc_col)):
        hval[hc_entry[k]] += hc_val[k] * theta[hc_col[k]]
    d[:] = 0.0
    for k in range(len(dc_col)):
        d[dc_cell[k]] += dc_val[k] * theta[dc_col[k]]


@njit(cache=True)
def local_to_cells(hval, he_pos, he_cell, y_local, acc):
    """``acc[cell] = -(sum over H entries e of that cell of hval[e] y_local[pos_e])``: minus ``A_C Theta A_L^T y``
    summed per group-period cell (``he_cell = group * n_periods + period``), for :func:`scatter_cells`."""
    acc[:] = 0.0
    for e in range(len(hval)):
        acc[he_cell[e]] -= hval[e] * y_local[he_pos[e]]


@njit(cache=True)
def cells_to_local(q, hval, he_pos, he_cell, out):
    """``out[pos_e] -= hval[e] q[cell_e]``: minus ``A_L Theta A_C^T y`` with ``q`` = :func:`gather_cells` of ``y``."""
    for e in range(len(hval)):
        out[he_pos[e]] -= hval[e] * q[he_cell[e]]


def threads() -> int:
    """Threads numba runs ``prange`` loops on."""
    return numba.get_num_threads()


# ---------------------------------------------------------------------------------------------------------------------
# fused element-wise steps of one interior-point iteration (one pass each over columns and row activities)


#: The column passes split the columns into this many chunks of whole cars (each LP row is written by one chunk only),
#: run in parallel and summed chunk by chunk in order: the same for every thread count, so results do not depend on
#: it. Fewer when the per-chunk cell sums (3 x groups x periods each) would cost more than a sixth of the pass [-].
PASS_CHUNKS = 16


@dataclass(eq=False)
class Columns:
    """The LP matrix in the form the passes read: ``A = R + P``. ``R`` (CSC: ``ptr``, ``idx``, ``val``) holds the
    local entries of the cars' columns and every entry of the columns of no car; ``P`` the cars' coupling entries,
    which follow their group's pattern: column ``j`` with ``code[j] = sigma (cell + 1)`` (0: none) has ``sigma
    gamma_i`` in row ``pat_row[i, period]`` for every pattern entry ``i`` of its group (``pat_start``; cell = group x
    periods + period). A pass thus reads about one matrix entry per column instead of four.

    The passes go over the columns in chunks of whole cars (the last chunk: the columns of no car), each a few runs
    of consecutive columns: chunk ``k`` is the runs ``chunk_run[k]:chunk_run[k + 1]``, run ``r`` the columns
    ``run_start[r]:run_stop[r]``. No row of ``R`` has entries in two chunks, so the chunks write disjoint rows and run
    in parallel (:data:`PASS_CHUNKS`)."""

    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    code: np.ndarray
    pat_start: np.ndarray
    pat_row: np.ndarray  # (pattern entries, periods) LP row, -1 where the row type has no row in that period
    pat_gamma: np.ndarray
    run_start: np.ndarray
    run_stop: np.ndarray
    chunk_run: np.ndarray

    @property
    def arrays(self) -> tuple:
        return (self.ptr, self.idx, self.val, self.code, self.pat_start, self.pat_row, self.pat_gamma, self.run_start,
                self.run_stop, self.chunk_run)

    @property
    def n_cells(self) -> int:
        return (len(self.pat_start) - 1) * self.pat_row.shape[1]


def columns(layout, chunks: int | None = None) -> Columns:
    """:class:`Columns` of a :class:`~.layout.Layout` (its ``a_csc`` split into the residual and the patterns);
    ``chunks`` cars' chunks (default: :data:`PASS_CHUNKS`, fewer where the per-chunk cell sums would be large)."""
    a = layout.a_csc
    n = layout.n_col
    code = np.zeros(n, dtype=np.int64)
    code[layout.dc_col] = np.where(layout.dc_sigma > 0, 1, -1) * (layout.dc_cell + 1)
    coupling = np.zeros(a.shape[0], dtype=bool)
    coupling[layout.coupling_rows] = True
    entry_col = np.repeat(np.arange(n), np.diff(a.indptr))
    keep = ~(coupling[a.indices] & (code[entry_col] != 0))
    ptr = np.r_[0, np.cumsum(np.bincount(entry_col[keep], minlength=n))].astype(np.int64)
    idx = a.indices[keep].astype(np.int64)
    pos = layout.row_of[layout.group_type]
    pat_row = np.where(pos >= 0, layout.coupling_rows[np.maximum(pos, 0)], -1).astype(np.int64)
    if chunks is None:
        chunks = int(max(1, min(PASS_CHUNKS, n // max(1, 6 * 3 * layout.n_groups * layout.n_periods))))
    runs = _pass_chunks(layout, ptr, idx, chunks)
    return Columns(ptr, idx, a.data[keep].copy(), code, layout.group_type_start, pat_row, layout.group_gamma, *runs)


def _pass_chunks(layout, ptr: np.ndarray, idx: np.ndarray, chunks: int) -> tuple:
    """``run_start``, ``run_stop``, ``chunk_run`` of :class:`Columns`: the cars cut into ``chunks`` chunks of about
    equal column counts, the columns of no car in one more; one chunk of every column when some row of ``R`` would be
    written by two chunks."""
    n = layout.n_col
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(chunks + 2, dtype=np.int64)
    car_of_pos = np.repeat(np.arange(layout.n_cars), np.diff(layout.car_start))
    col_car = np.full(n, -1, dtype=np.int64)
    col_car[layout.le_col] = car_of_pos[layout.le_pos]
    on_car = col_car >= 0
    per_car = np.bincount(col_car[on_car], minlength=layout.n_cars)
    before = np.cumsum(per_car) - per_car
    chunk = np.full(n, chunks, dtype=np.int64)  # columns of no car: the last chunk
    chunk[on_car] = (before[col_car[on_car]] * chunks) // max(1, int(per_car.sum()))
    entry_chunk = np.repeat(chunk, np.diff(ptr))
    owner = np.full(len(layout.row_lower), -1, dtype=np.int64)
    owner[idx] = entry_chunk
    if np.any(owner[idx] != entry_chunk):  # rows shared between chunks: one chunk, in column order
        chunk[:] = 0
    order = np.argsort(chunk, kind="stable")
    first = np.flatnonzero(np.r_[True, (np.diff(order) != 1) | (np.diff(chunk[order]) != 0)])
    stop = order[np.r_[first[1:], n] - 1] + 1
    chunk_run = np.searchsorted(chunk[order[first]], np.arange(chunks + 2))
    return order[first].astype(np.int64), stop.astype(np.int64), chunk_run.astype(np.int64)


@njit(cache=True)
def gather_cells(y, pat_start, pat_row, pat_gamma, q):
    """``q[cell] = sum over the group's pattern entries i of gamma_i y[pat_row[i, period]]`` (``P^T y`` per cell)."""
    n_periods = pat_row.shape[1]
    for g in range(len(pat_start) - 1):
        for t in range(n_periods):
            q[g * n_periods + t] = 0.0
        for i in range(pat_start[g], pat_start[g + 1]):
            gm = pat_gamma[i]
            for t in range(n_periods):
                r = pat_row[i, t]
                if r >= 0:
                    q[g * n_periods + t] += gm * y[r]


@njit(cache=True)
def scatter_cells(acc, pat_start, pat_row, pat_gamma, out):
    """``out[pat_row[i, period]] += gamma_i acc[cell]`` (``P`` times per-cell sums)."""
    n_periods = pat_row.shape[1]
    for g in range(len(pat_start) - 1):
        for i in range(pat_start[g], pat_start[g + 1]):
            gm = pat_gamma[i]
            for t in range(n_periods):
                r = pat_row[i, t]
                if r >= 0:
                    out[r] += gm * acc[g * n_periods + t]


# The passes index views of one run (or part) by 0 .. length: an index numba knows is not negative needs no
# wrap-around test, and those tests on every array read made the passes 30-40 % slower (measured at 10,000 sessions).


@njit(cache=True, inline="always")
def _part(k, n_parts, m):
    """Rows ``[lo, hi)`` of part ``k`` of ``n_parts`` equal parts of ``m`` rows (the row activities' chunks)."""
    return (m * k) // n_parts, (m * (k + 1)) // n_parts


@njit(cache=True, inline="always", error_model="numpy")
def _step(j, v, zl, zu, lower, upper, free, c, dv, dzl, dzu, ap, ad, aty, atdy, min_distance, reg, wl, wu, rd, theta):
    """:func:`advance` for entry ``j`` of ``v``: returns the new value, ``theta g`` and ``theta (1/wu - 1/wl)`` (the
    right-hand sides' parts), its complementarity, |dual residual| and a sum that is finite when every new entry is."""
    aty[j] += ad * atdy[j]
    if not free[j]:
        wl[j], wu[j], rd[j], theta[j] = 1.0, 1.0, 0.0, 0.0
        return v[j], 0.0, 0.0, 0.0, 0.0, 0.0
    x = min(max(v[j] + ap * dv[j], lower[j]), upper[j])
    v[j] = x
    zlj = zl[j] + ad * dzl[j]
    zuj = zu[j] + ad * dzu[j]
    zl[j], zu[j] = zlj, zuj
    a = max(x - lower[j], min_distance)
    b = max(upper[j] - x, min_distance)
    wl[j], wu[j] = a, b
    r = c[j] - aty[j] - zlj + zuj
    rd[j] = r
    # theta = 1 / (zl/a + zu/b + reg) and theta (1/b - 1/a) with one division
    inv = 1.0 / (zlj * b + zuj * a + reg * a * b)
    th_j = a * b * inv
    theta[j] = th_j
    return x, th_j * (r + zlj - zuj), (a - b) * inv, a * zlj + b * zuj, abs(r), x + zlj + zuj


@njit(cache=True)
def _sum_cells(cell_sums, out):
    """``out = `` the chunks' cell sums, added chunk by chunk in order."""
    out[:] = 0.0
    for k in range(cell_sums.shape[0]):
        for i in range(len(out)):
            out[i] += cell_sums[k, i]


@njit(parallel=True, cache=True, error_model="numpy")
def advance(ptr, idx, val, code, pat_start, pat_row, pat_gamma, run_start, run_stop, chunk_run, v, zl, zu, lower,
            upper, free, c, dv, dzl, dzu, ap, ad, aty, atdy, min_distance, reg, wl, wu, rd, theta, rp, rhs_p, rhs_h,
            acc):
    """One pass over the columns and row activities (``v = [x, s]``, ``A`` as :class:`Columns`): step to
    ``v + ap dv`` (kept within its box), ``z + ad dz``, carry ``aty += ad atdy`` along (``ap = ad = 0``: stay), and
    prepare the next iteration at the new point: distances ``wl``, ``wu`` to the bounds, dual residual
    ``rd = c - A^T y - zl + zu``, ``theta = 1 / (zl/wl + zu/wu + reg)``, ``rp = -(A x - s)`` and the two parts of the
    next right-hand sides, ``rhs_p = rp + A_full theta (rd + zl - zu)`` (the predictor's) and
    ``rhs_h = A_full theta (1/wu - 1/wl)`` (what the corrector's centring target multiplies); ``A_full = [A, -I]``,
    ``acc`` is workspace of 3 x cells. The columns go in parallel chunk by chunk (:class:`Columns`), then the row
    activities in as many parts; sums are added chunk by chunk in order (the same for any thread count).

    Returns the complementarity sum, the largest |dual residual|, the largest |rp|, the largest |x|, ``c^T v`` and
    whether every new entry is finite.
    """
    n = len(ptr) - 1
    m = len(rp)
    n_cells = len(acc) // 3
    n_chunks = len(chunk_run) - 1
    cell_sums = np.zeros((n_chunks, 3 * n_cells))
    sums = np.zeros((2 * n_chunks, 6))  # comp, dual_worst, big, obj, check, primal_worst
    rp[:] = 0.0
    rhs_p[:] = 0.0
    rhs_h[:] = 0.0
    for k in prange(n_chunks):
        cs = cell_sums[k]
        k_comp, k_dual, k_big, k_obj, k_check = 0.0, 0.0, 0.0, 0.0, 0.0
        for run in range(chunk_run[k], chunk_run[k + 1]):
            lo, hi = run_start[run], run_stop[run]
            v_, zl_, zu_, lower_, upper_, free_, c_ = v[lo:hi], zl[lo:hi], zu[lo:hi], lower[lo:hi], upper[lo:hi], \
                free[lo:hi], c[lo:hi]
            dv_, dzl_, dzu_, aty_, atdy_ = dv[lo:hi], dzl[lo:hi], dzu[lo:hi], aty[lo:hi], atdy[lo:hi]
            wl_, wu_, rd_, theta_, ptr_, code_ = wl[lo:hi], wu[lo:hi], rd[lo:hi], theta[lo:hi], ptr[lo:hi + 1], \
                code[lo:hi]
            for j in range(hi - lo):
                x, tg, th, cp, du, ck = _step(j, v_, zl_, zu_, lower_, upper_, free_, c_, dv_, dzl_, dzu_, ap, ad,
                                              aty_, atdy_, min_distance, reg, wl_, wu_, rd_, theta_)
                k_comp += cp
                k_dual = max(k_dual, du)
                k_check += ck
                k_obj += c_[j] * x
                k_big = max(k_big, abs(x))
                for e in range(ptr_[j], ptr_[j + 1]):
                    r_e = idx[e]
                    rp[r_e] -= val[e] * x
                    rhs_p[r_e] += val[e] * tg
                    rhs_h[r_e] += val[e] * th
                cd = code_[j]
                if cd != 0:
                    cell = abs(cd) - 1
                    sg = 1.0 if cd > 0 else -1.0
                    cs[cell] -= sg * x
                    cs[n_cells + cell] += sg * tg
                    cs[2 * n_cells + cell] += sg * th
        sums[k, 0], sums[k, 1], sums[k, 2], sums[k, 3], sums[k, 4] = k_comp, k_dual, k_big, k_obj, k_check
    _sum_cells(cell_sums, acc)
    scatter_cells(acc[:n_cells], pat_start, pat_row, pat_gamma, rp)
    scatter_cells(acc[n_cells:2 * n_cells], pat_start, pat_row, pat_gamma, rhs_p)
    scatter_cells(acc[2 * n_cells:], pat_start, pat_row, pat_gamma, rhs_h)
    for k in prange(n_chunks):  # the row activities, once every column has written its rows
        lo, hi = _part(k, n_chunks, m)
        v_, zl_, zu_, lower_, upper_, free_, c_ = v[n + lo:n + hi], zl[n + lo:n + hi], zu[n + lo:n + hi], \
            lower[n + lo:n + hi], upper[n + lo:n + hi], free[n + lo:n + hi], c[n + lo:n + hi]
        dv_, dzl_, dzu_, aty_, atdy_ = dv[n + lo:n + hi], dzl[n + lo:n + hi], dzu[n + lo:n + hi], \
            aty[n + lo:n + hi], atdy[n + lo:n + hi]
        wl_, wu_, rd_, theta_ = wl[n + lo:n + hi], wu[n + lo:n + hi], rd[n + lo:n + hi], theta[n + lo:n + hi]
        rp_, rhs_p_, rhs_h_ = rp[lo:hi], rhs_p[lo:hi], rhs_h[lo:hi]
        k_comp, k_dual, k_obj, k_check, k_primal = 0.0, 0.0, 0.0, 0.0, 0.0
        for i in range(hi - lo):
            x, tg, th, cp, du, ck = _step(i, v_, zl_, zu_, lower_, upper_, free_, c_, dv_, dzl_, dzu_, ap, ad, aty_,
                                          atdy_, min_distance, reg, wl_, wu_, rd_, theta_)
            k_comp += cp
            k_dual = max(k_dual, du)
            k_check += ck
            k_obj += c_[i] * x
            r = rp_[i] + x
            rp_[i] = r
            k_primal = max(k_primal, abs(r))
            rhs_p_[i] += r - tg
            rhs_h_[i] -= th
        s = n_chunks + k
        sums[s, 0], sums[s, 1], sums[s, 3], sums[s, 4], sums[s, 5] = k_comp, k_dual, k_obj, k_check, k_primal
    comp, dual_worst, big, obj, check, primal_worst = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for k in range(2 * n_chunks):
        comp += sums[k, 0]
        dual_worst = max(dual_worst, sums[k, 1])
        big = max(big, sums[k, 2])
        obj += sums[k, 3]
        check += sums[k, 4]
        primal_worst = max(primal_worst, sums[k, 5])
    return comp, dual_worst, primal_worst, big, obj, bool(np.isfinite(check))


@njit(cache=True, inline="always", error_model="numpy")
def _predict(j, t, theta, wl, wu, zl, zu, rd, dva, ap, ad, s1, s2, s3):
    """:func:`predictor_tail` for entry ``j`` with ``t = (A_full^T dy)[j]``: sets ``dva[j]``; returns the corrector's
    part ``theta dva (dzla / wl + dzua / wu)`` and the step lengths and sums ``ap, ad, s1, s2, s3`` updated (kept in
    registers by the caller: accumulated in an array they measured 8 -> 11 ms a pass at 10,000 sessions)."""
    d = theta[j] * (t - (rd[j] + zl[j] - zu[j]))
    dva[j] = d
    il, iu = 1.0 / wl[j], 1.0 / wu[j]
    a = -zl[j] * (1.0 + d * il)
    b = -zu[j] * (1.0 - d * iu)
    ap, ad = _ratio_test(d, a, b, wl[j], wu[j], zl[j], zu[j], ap, ad)
    return (theta[j] * d * (a * il + b * iu), ap, ad, s1 + d * (zl[j] - zu[j]), s2 + wl[j] * a + wu[j] * b,
            s3 + d * (a - b))


@njit(parallel=True, cache=True, error_model="numpy")
def predictor_tail(ptr, idx, val, code, pat_start, pat_row, pat_gamma, run_start, run_stop, chunk_run, dy, theta, wl,
                   wu, zl, zu, rd, free, dva, rhs_k, q, acc):
    """The affine-scaling direction from its ``dy``: ``dva = theta (A_full^T dy - g)`` with ``g = rd + zl - zu``, the
    bound duals' steps (not kept: :func:`corrector_tail` recomputes them from ``dva``), the step lengths, and the
    corrector's second-order part of the right-hand side, ``rhs_k = A_full theta dva (dzla / wl + dzua / wu)``
    (``q``, ``acc``: workspace of one entry per cell). Chunks as in :func:`advance`.

    Returns the largest primal and dual steps ``ap``, ``ad`` <= 1 and the sums ``s1``, ``s2``, ``s3`` that give the
    complementarity after any steps without another pass: ``sum (wl + ap dv)(zl + ad dzl) + (wu - ap dv)(zu + ad dzu)
    = comp + ap s1 + ad s2 + ap ad s3``.
    """
    n = len(ptr) - 1
    m = len(rhs_k)
    n_chunks = len(chunk_run) - 1
    gather_cells(dy, pat_start, pat_row, pat_gamma, q)
    cell_sums = np.zeros((n_chunks, len(acc)))
    sums = np.zeros((2 * n_chunks, 5))  # ap, ad, s1, s2, s3
    rhs_k[:] = 0.0
    for k in prange(n_chunks):
        cs = cell_sums[k]
        k_ap, k_ad, k_s1, k_s2, k_s3 = 1.0, 1.0, 0.0, 0.0, 0.0
        for run in range(chunk_run[k], chunk_run[k + 1]):
            lo, hi = run_start[run], run_stop[run]
            theta_, wl_, wu_, zl_, zu_, rd_, free_, dva_ = theta[lo:hi], wl[lo:hi], wu[lo:hi], zl[lo:hi], \
                zu[lo:hi], rd[lo:hi], free[lo:hi], dva[lo:hi]
            ptr_, code_ = ptr[lo:hi + 1], code[lo:hi]
            for j in range(hi - lo):
                if not free_[j]:
                    dva_[j] = 0.0
                    continue
                t = 0.0
                for e in range(ptr_[j], ptr_[j + 1]):
                    t += val[e] * dy[idx[e]]
                cd = code_[j]
                if cd != 0:
                    t += q[cd - 1] if cd > 0 else -q[-cd - 1]
                tk, k_ap, k_ad, k_s1, k_s2, k_s3 = _predict(j, t, theta_, wl_, wu_, zl_, zu_, rd_, dva_, k_ap, k_ad,
                                                            k_s1, k_s2, k_s3)
                for e in range(ptr_[j], ptr_[j + 1]):
                    rhs_k[idx[e]] += val[e] * tk
                if cd != 0:
                    cs[abs(cd) - 1] += tk if cd > 0 else -tk
        sums[k, 0], sums[k, 1], sums[k, 2], sums[k, 3], sums[k, 4] = k_ap, k_ad, k_s1, k_s2, k_s3
    _sum_cells(cell_sums, acc)
    scatter_cells(acc, pat_start, pat_row, pat_gamma, rhs_k)
    for k in prange(n_chunks):  # the row activities, once every column has written its rows
        lo, hi = _part(k, n_chunks, m)
        k_ap, k_ad, k_s1, k_s2, k_s3 = 1.0, 1.0, 0.0, 0.0, 0.0
        theta_, wl_, wu_, zl_, zu_, rd_, free_, dva_ = theta[n + lo:n + hi], wl[n + lo:n + hi], wu[n + lo:n + hi], \
            zl[n + lo:n + hi], zu[n + lo:n + hi], rd[n + lo:n + hi], free[n + lo:n + hi], dva[n + lo:n + hi]
        dy_, rhs_k_ = dy[lo:hi], rhs_k[lo:hi]
        for i in range(hi - lo):
            if not free_[i]:
                dva_[i] = 0.0
                continue
            tk, k_ap, k_ad, k_s1, k_s2, k_s3 = _predict(i, -dy_[i], theta_, wl_, wu_, zl_, zu_, rd_, dva_, k_ap, k_ad,
                                                        k_s1, k_s2, k_s3)
            rhs_k_[i] -= tk
        s = n_chunks + k
        sums[s, 0], sums[s, 1], sums[s, 2], sums[s, 3], sums[s, 4] = k_ap, k_ad, k_s1, k_s2, k_s3
    ap, ad, s1, s2, s3 = 1.0, 1.0, 0.0, 0.0, 0.0
    for k in range(2 * n_chunks):
        ap = min(ap, sums[k, 0])
        ad = min(ad, sums[k, 1])
        s1 += sums[k, 2]
        s2 += sums[k, 3]
        s3 += sums[k, 4]
    return ap, ad, s1, s2, s3


@njit(cache=True, inline="always", error_model="numpy")
def _correct(j, t, theta, wl, wu, zl, zu, rd, free, target, dva, atdy, dv, dzl, dzu, ap, ad):
    """:func:`corrector_tail` for entry ``j`` with ``t = (A_full^T dy)[j]``; returns the step lengths ``ap``, ``ad``
    updated."""
    atdy[j] = t
    if not free[j]:
        dv[j], dzl[j], dzu[j] = 0.0, 0.0, 0.0
        return ap, ad
    da = dva[j]
    il, iu = 1.0 / wl[j], 1.0 / wu[j]
    r_l = target - wl[j] * zl[j] + da * zl[j] * (1.0 + da * il)
    r_u = target - wu[j] * zu[j] - da * zu[j] * (1.0 - da * iu)
    d = theta[j] * (t - (rd[j] - r_l * il + r_u * iu))
    a = (r_l - zl[j] * d) * il
    b = (r_u + zu[j] * d) * iu
    dv[j], dzl[j], dzu[j] = d, a, b
    return _ratio_test(d, a, b, wl[j], wu[j], zl[j], zu[j], ap, ad)


@njit(parallel=True, cache=True, error_model="numpy")
def corrector_tail(ptr, idx, val, code, pat_start, pat_row, pat_gamma, run_start, run_stop, chunk_run, dy, theta, wl,
                   wu, zl, zu, rd, free, target, dva, atdy, dv, dzl, dzu, q):
    """Mehrotra's direction from its ``dy``: ``atdy = A_full^T dy``, ``dv = theta (atdy - g)`` with the corrector's
    ``g = rd - r_l / wl + r_u / wu``, ``r_l = target - wl zl - dva dzla``, ``r_u = target - wu zu + dva dzua``
    (``dzla``, ``dzua`` the predictor's bound-dual steps, recomputed from ``dva``), and the bound duals' steps. It
    writes no row: the column chunks and the row activities' parts run in one parallel loop.

    Returns the largest primal and dual steps ``ap``, ``ad`` <= 1.
    """
    n = len(ptr) - 1
    m = len(dy)
    n_chunks = len(chunk_run) - 1
    gather_cells(dy, pat_start, pat_row, pat_gamma, q)
    steps = np.ones((2 * n_chunks, 2))
    for k in prange(2 * n_chunks):
        k_ap, k_ad = 1.0, 1.0
        if k >= n_chunks:
            lo, hi = _part(k - n_chunks, n_chunks, m)
            theta_, wl_, wu_, zl_, zu_, rd_, free_, dva_ = theta[n + lo:n + hi], wl[n + lo:n + hi], \
                wu[n + lo:n + hi], zl[n + lo:n + hi], zu[n + lo:n + hi], rd[n + lo:n + hi], free[n + lo:n + hi], \
                dva[n + lo:n + hi]
            atdy_, dv_, dzl_, dzu_, dy_ = atdy[n + lo:n + hi], dv[n + lo:n + hi], dzl[n + lo:n + hi], \
                dzu[n + lo:n + hi], dy[lo:hi]
            for i in range(hi - lo):
                k_ap, k_ad = _correct(i, -dy_[i], theta_, wl_, wu_, zl_, zu_, rd_, free_, target, dva_, atdy_, dv_,
                                      dzl_, dzu_, k_ap, k_ad)
            steps[k, 0], steps[k, 1] = k_ap, k_ad
            continue
        for run in range(chunk_run[k], chunk_run[k + 1]):
            lo, hi = run_start[run], run_stop[run]
            theta_, wl_, wu_, zl_, zu_, rd_, free_, dva_ = theta[lo:hi], wl[lo:hi], wu[lo:hi], zl[lo:hi], \
                zu[lo:hi], rd[lo:hi], free[lo:hi], dva[lo:hi]
            atdy_, dv_, dzl_, dzu_ = atdy[lo:hi], dv[lo:hi], dzl[lo:hi], dzu[lo:hi]
            ptr_, code_ = ptr[lo:hi + 1], code[lo:hi]
            for j in range(hi - lo):
                # the column product is written out here and in predictor_tail on purpose: as a shared inlined
                # helper both passes measured 8 -> 14 ms at 10,000 sessions
                t = 0.0
                for e in range(ptr_[j], ptr_[j + 1]):
                    t += val[e] * dy[idx[e]]
                cd = code_[j]
                if cd != 0:
                    t += q[cd - 1] if cd > 0 else -q[-cd - 1]
                k_ap, k_ad = _correct(j, t, theta_, wl_, wu_, zl_, zu_, rd_, free_, target, dva_, atdy_, dv_, dzl_,
                                      dzu_, k_ap, k_ad)
        steps[k, 0], steps[k, 1] = k_ap, k_ad
    ap, ad = 1.0, 1.0
    for k in range(2 * n_chunks):
        ap = min(ap, steps[k, 0])
        ad = min(ad, steps[k, 1])
    return ap, ad


@njit(cache=True, inline="always", error_model="numpy")
def _ratio_test(d, a, b, wl, wu, zl, zu, ap, ad):
    """The step lengths ``ap``, ``ad`` after one more entry: ``min(ap, -wl/d or wu/d)`` and ``min(ad, -zl/a, -zu/b)``
    over the moves towards a bound. Distances are positive and duals nonnegative, so a move away from a bound never
    passes a test and no sign is branched on (the signs are random: mispredicted branches cost more than the
    arithmetic); a division happens only where the ratio is the new minimum."""
    if wl < -ap * d:
        ap = -wl / d
    if wu < ap * d:
        ap = wu / d
    if zl < -ad * a:
        ad = -zl / a
    if zu < -ad * b:
        ad = -zu / b
    return ap, ad


# ---------------------------------------------------------------------------------------------------------------------
# Gondzio's multiple centrality correctors (Gondzio 1996, Colombo & Gondzio 2008): after Mehrotra's direction, the
# complementarity products at a longer trial step are moved into [lo, hi] by one more solve with the same factor


@njit(cache=True, inline="always", error_model="numpy")
def _centrality_targets(wl, wu, zl, zu, d, a, b, ap, ad, lo, hi):
    """The corrections ``t_l``, ``t_u`` of the two complementarity products of one entry at the trial steps ``ap``,
    ``ad`` along the direction ``(d, a, b)`` (``a``, ``b``: the bound duals' steps): a product below ``lo`` is raised
    to ``lo``; one above ``hi`` lowered to ``hi``, by at most ``hi`` (Colombo & Gondzio 2008, (15))."""
    pl = (wl + ap * d) * (zl + ad * a)
    pu = (wu - ap * d) * (zu + ad * b)
    t_l = 0.0
    if pl < lo:
        t_l = lo - pl
    elif pl > hi:
        t_l = max(hi - pl, -hi)
    t_u = 0.0
    if pu < lo:
        t_u = lo - pu
    elif pu > hi:
        t_u = max(hi - pu, -hi)
    return t_l, t_u


@njit(cache=True, error_model="numpy")
def centrality_rhs(ptr, idx, val, code, pat_start, pat_row, pat_gamma, run_start, run_stop, chunk_run, theta, wl,
                   wu, zl, zu, free, dv, dzl, dzu, ap, ad, lo, hi, rhs, acc):
    """The right-hand side of a centrality corrector: ``rhs = A_full theta g`` with ``g = -t_l / wl + t_u / wu``
    (:func:`_centrality_targets` of the direction ``dv, dzl, dzu`` at the trial steps ``ap``, ``ad``; no primal or
    dual residual: those the direction already removes). ``acc``: workspace of one entry per cell.

    Returns the number of products out of ``[lo, hi]``. One serial pass (the columns' chunk runs are not used: a
    corrector runs on districts, where the factorisation, not the passes, is the iteration's cost).
    """
    n = len(ptr) - 1
    acc[:] = 0.0
    rhs[:] = 0.0
    count = 0
    for j in range(len(dv)):
        if not free[j]:
            continue
        t_l, t_u = _centrality_targets(wl[j], wu[j], zl[j], zu[j], dv[j], dzl[j], dzu[j], ap, ad, lo, hi)
        if t_l == 0.0 and t_u == 0.0:
            continue
        count += 1
        tg = theta[j] * (t_u / wu[j] - t_l / wl[j])
        if j < n:
            for k in range(ptr[j], ptr[j + 1]):
                rhs[idx[k]] += val[k] * tg
            cd = code[j]
            if cd != 0:
                acc[abs(cd) - 1] += tg if cd > 0 else -tg
        else:
            rhs[j - n] -= tg
    scatter_cells(acc, pat_start, pat_row, pat_gamma, rhs)
    return count


@njit(cache=True, error_model="numpy")
def centrality_tail(ptr, idx, val, code, pat_start, pat_row, pat_gamma, run_start, run_stop, chunk_run, dy, theta,
                    wl, wu, zl, zu, free, dv, dzl, dzu, atdy, ap, ad, lo, hi, dv_out, dzl_out, dzu_out, atdy_out, q):
    """The corrected direction from the corrector's ``dy`` (of :func:`centrality_rhs` with the same arguments):
    ``d = theta (A_full^T dy - g)``, ``dzl = (t_l - zl d) / wl``, ``dzu = (t_u + zu d) / wu`` added to ``dv, dzl,
    dzu`` (and ``A_full^T dy`` to ``atdy``) into the ``*_out`` arrays, which may be the inputs themselves.

    Returns the largest primal and dual steps ``ap``, ``ad`` <= 1 along the corrected direction.
    """
    n = len(ptr) - 1
    gather_cells(dy, pat_start, pat_row, pat_gamma, q)
    sp, sd = 1.0, 1.0
    for j in range(len(dv)):
        if j < n:
            t = 0.0
            for k in range(ptr[j], ptr[j + 1]):
                t += val[k] * dy[idx[k]]
            cd = code[j]
            if cd != 0:
                t += q[cd - 1] if cd > 0 else -q[-cd - 1]
        else:
            t = -dy[j - n]
        atdy_out[j] = atdy[j] + t
        if not free[j]:
            dv_out[j], dzl_out[j], dzu_out[j] = 0.0, 0.0, 0.0
            continue
        il, iu = 1.0 / wl[j], 1.0 / wu[j]
        t_l, t_u = _centrality_targets(wl[j], wu[j], zl[j], zu[j], dv[j], dzl[j], dzu[j], ap, ad, lo, hi)
        d = theta[j] * (t - (t_u * iu - t_l * il))
        a = dzl[j] + (t_l - zl[j] * d) * il
        b = dzu[j] + (t_u + zu[j] * d) * iu
        d += dv[j]
        dv_out[j], dzl_out[j], dzu_out[j] = d, a, b
        sp, sd = _ratio_test(d, a, b, wl[j], wu[j], zl[j], zu[j], sp, sd)
    return sp, sd
