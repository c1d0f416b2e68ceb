"""Compiled per-car kernels of the structured interior point (numba): batched tridiagonal Cholesky, solves, and the
grouped Schur complement. Each loops over cars with ``prange`` so that both cores work; none allocates per car."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(eq=False)
class Columns:
    """The LP matrix in the form the passes read: ``A = R + P``. ``R`` (CSC: ``ptr``, ``idx``, ``val``) holds the
    local entries of the cars' columns and every entry of the columns of no car; ``P`` the cars' coupling entries,
    which follow their group's pattern: column ``j`` with ``code[j] = sigma (cell + 1)`` (0: none) has ``sigma
    gamma_i`` in row ``pat_row[i, period]`` for every pattern entry ``i`` of its group (``pat_start``; cell = group x
    periods + period). A pass thus reads about one matrix entry per column instead of four."""

    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    code: np.ndarray
    pat_start: np.ndarray
    pat_row: np.ndarray  # (pattern entries, periods) LP row, -1 where the row type has no row in that period
    pat_gamma: np.ndarray

    @property
    def arrays(self) -> tuple:
        return self.ptr, self.idx, self.val, self.code, self.pat_start, self.pat_row, self.pat_gamma

    @property
    def n_cells(self) -> int:
        return (len(self.pat_start) - 1) * self.pat_row.shape[1]


def columns(layout) -> Columns:
    """:class:`Columns` of a :class:`~.layout.Layout` (its ``a_csc`` split into the residual and the patterns)."""
    a = layout.a_csc
    n = layout.n_col
    code = np.zeros(n, dtype=np.int64)
    code[layout.dc_col] = np.where(layout.dc_sigma > 0, 1, -1) * (layout.dc_cell + 1)
    coupling = np.zeros(a.shape[0], dtype=bool)
    coupling[layout.coupling_rows] = True
    entry_col = np.repeat(np.arange(n), np.diff(a.indptr))
    keep = ~(coupling[a.indices] & (code[entry_col] != 0))
    ptr = np.r_[0, np.cumsum(np.bincount(entry_col[keep], minlength=n))].astype(np.int64)
    pos = layout.row_of[layout.group_type]
    pat_row = np.where(pos >= 0, layout.coupling_rows[np.maximum(pos, 0)], -1).astype(np.int64)
    return Columns(ptr, a.indices[keep].astype(np.int64), a.data[keep].copy(), code, layout.group_type_start,
                   pat_row, layout.group_gamma)


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


@njit(cache=True, error_model="numpy")
def advance(ptr, idx, val, code, pat_start, pat_row, pat_gamma, v, zl, zu, lower, upper, free, c, dv, dzl, dzu, ap,
            ad, aty, atdy, min_distance, reg, wl, wu, rd, theta, rp, rhs_p, rhs_h, acc):
    """One pass over the columns and row activities (``v = [x, s]``, ``A`` as :class:`Columns`): step to
    ``v + ap dv`` (kept within its box), ``z + ad dz``, carry ``aty += ad atdy`` along (``ap = ad = 0``: stay), and
    prepare the next iteration at the new point: distances ``wl``, ``wu`` to the bounds, dual residual
    ``rd = c - A^T y - zl + zu``, ``theta = 1 / (zl/wl + zu/wu + reg)``, ``rp = -(A x - s)`` and the two parts of the
    next right-hand sides, ``rhs_p = rp + A_full theta (rd + zl - zu)`` (the predictor's) and
    ``rhs_h = A_full theta (1/wu - 1/wl)`` (what the corrector's centring target multiplies); ``A_full = [A, -I]``,
    ``acc`` is workspace of 3 x cells.

    Returns the complementarity sum, the largest |dual residual|, the largest |rp|, the largest |x|, ``c^T v`` and
    whether every new entry is finite.
    """
    n = len(ptr) - 1
    n_cells = len(acc) // 3
    acc[:] = 0.0
    rp[:] = 0.0
    rhs_p[:] = 0.0
    rhs_h[:] = 0.0
    comp, dual_worst, big, obj, check = 0.0, 0.0, 0.0, 0.0, 0.0
    for j in range(len(v)):
        aty[j] += ad * atdy[j]
        tg, th = 0.0, 0.0
        if free[j]:
            x = min(max(v[j] + ap * dv[j], lower[j]), upper[j])
            v[j] = x
            zlj = zl[j] + ad * dzl[j]
            zuj = zu[j] + ad * dzu[j]
            zl[j], zu[j] = zlj, zuj
            check += x + zlj + zuj  # not finite when any of them is not (no branch per entry)
            a = max(x - lower[j], min_distance)
            b = max(upper[j] - x, min_distance)
            wl[j], wu[j] = a, b
            r = c[j] - aty[j] - zlj + zuj
            rd[j] = r
            dual_worst = max(dual_worst, abs(r))
            # theta = 1 / (zl/a + zu/b + reg) and theta (1/b - 1/a) with one division
            inv = 1.0 / (zlj * b + zuj * a + reg * a * b)
            th_j = a * b * inv
            theta[j] = th_j
            comp += a * zlj + b * zuj
            tg = th_j * (r + zlj - zuj)
            th = (a - b) * inv
        else:
            x = v[j]
            wl[j], wu[j], rd[j], theta[j] = 1.0, 1.0, 0.0, 0.0
        obj += c[j] * x
        if j < n:
            big = max(big, abs(x))
            for k in range(ptr[j], ptr[j + 1]):
                r_k = idx[k]
                rp[r_k] -= val[k] * x
                rhs_p[r_k] += val[k] * tg
                rhs_h[r_k] += val[k] * th
            cd = code[j]
            if cd != 0:
                cell = abs(cd) - 1
                sg = 1.0 if cd > 0 else -1.0
                acc[cell] -= sg * x
                acc[n_cells + cell] += sg * tg
                acc[2 * n_cells + cell] += sg * th
        else:
            rp[j - n] += x
            rhs_p[j - n] -= tg
            rhs_h[j - n] -= th
    scatter_cells(acc[:n_cells], pat_start, pat_row, pat_gamma, rp)
    scatter_cells(acc[n_cells:2 * n_cells], pat_start, pat_row, pat_gamma, rhs_p)
    scatter_cells(acc[2 * n_cells:], pat_start, pat_row, pat_gamma, rhs_h)
    primal_worst = 0.0
    for i in range(len(rp)):
        primal_worst = max(primal_worst, abs(rp[i]))
        rhs_p[i] += rp[i]
    return comp, dual_worst, primal_worst, big, obj, bool(np.isfinite(check))


@njit(cache=True, error_model="numpy")
def predictor_tail(ptr, idx, val, code, pat_start, pat_row, pat_gamma, dy, theta, wl, wu, zl, zu, rd, free, dva,
                   rhs_k, q, acc):
    """The affine-scaling direction from its ``dy``: ``dva = theta (A_full^T dy - g)`` with ``g = rd + zl - zu``, the
    bound duals' steps (not kept: :func:`corrector_tail` recomputes them from ``dva``), the step lengths, and the
    corrector's second-order part of the right-hand side, ``rhs_k = A_full theta dva (dzla / wl + dzua / wu)``
    (``q``, ``acc``: workspace of one entry per cell).

    Returns the largest primal and dual steps ``ap``, ``ad`` <= 1 and the sums ``s1``, ``s2``, ``s3`` that give the
    complementarity after any steps without another pass: ``sum (wl + ap dv)(zl + ad dzl) + (wu - ap dv)(zu + ad dzu)
    = comp + ap s1 + ad s2 + ap ad s3``.
    """
    n = len(ptr) - 1
    gather_cells(dy, pat_start, pat_row, pat_gamma, q)
    acc[:] = 0.0
    rhs_k[:] = 0.0
    ap, ad = 1.0, 1.0
    s1, s2, s3 = 0.0, 0.0, 0.0
    for j in range(len(dva)):
        if not free[j]:
            dva[j] = 0.0
            continue
        if j < n:
            t = 0.0
            for k in range(ptr[j], ptr[j + 1]):
                t += val[k] * dy[idx[k]]
            cd = code[j]
            if cd != 0:
                t += q[cd - 1] if cd > 0 else -q[-cd - 1]
        else:
            t = -dy[j - n]
        d = theta[j] * (t - (rd[j] + zl[j] - zu[j]))
        dva[j] = d
        il, iu = 1.0 / wl[j], 1.0 / wu[j]
        a = -zl[j] * (1.0 + d * il)
        b = -zu[j] * (1.0 - d * iu)
        s1 += d * (zl[j] - zu[j])
        s2 += wl[j] * a + wu[j] * b
        s3 += d * (a - b)
        ap, ad = _ratio_test(d, a, b, wl[j], wu[j], zl[j], zu[j], ap, ad)
        tk = theta[j] * d * (a * il + b * iu)
        if j < n:
            for k in range(ptr[j], ptr[j + 1]):
                rhs_k[idx[k]] += val[k] * tk
            cd = code[j]
            if cd != 0:
                acc[abs(cd) - 1] += tk if cd > 0 else -tk
        else:
            rhs_k[j - n] -= tk
    scatter_cells(acc, pat_start, pat_row, pat_gamma, rhs_k)
    return ap, ad, s1, s2, s3


@njit(cache=True, error_model="numpy")
def corrector_tail(ptr, idx, val, code, pat_start, pat_row, pat_gamma, dy, theta, wl, wu, zl, zu, rd, free, target,
                   dva, atdy, dv, dzl, dzu, q):
    """Mehrotra's direction from its ``dy``: ``atdy = A_full^T dy``, ``dv = theta (atdy - g)`` with the corrector's
    ``g = rd - r_l / wl + r_u / wu``, ``r_l = target - wl zl - dva dzla``, ``r_u = target - wu zu + dva dzua``
    (``dzla``, ``dzua`` the predictor's bound-dual steps, recomputed from ``dva``), and the bound duals' steps.

    Returns the largest primal and dual steps ``ap``, ``ad`` <= 1.
    """
    n = len(ptr) - 1
    gather_cells(dy, pat_start, pat_row, pat_gamma, q)
    ap, ad = 1.0, 1.0
    # the column product is written out here and in predictor_tail on purpose: as a shared inlined helper both
    # passes measured 8 -> 14 ms at 10,000 sessions
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
        atdy[j] = t
        if not free[j]:
            dv[j], dzl[j], dzu[j] = 0.0, 0.0, 0.0
            continue
        da = dva[j]
        il, iu = 1.0 / wl[j], 1.0 / wu[j]
        r_l = target - wl[j] * zl[j] + da * zl[j] * (1.0 + da * il)
        r_u = target - wu[j] * zu[j] - da * zu[j] * (1.0 - da * iu)
        d = theta[j] * (t - (rd[j] - r_l * il + r_u * iu))
        a = (r_l - zl[j] * d) * il
        b = (r_u + zu[j] * d) * iu
        dv[j], dzl[j], dzu[j] = d, a, b
        ap, ad = _ratio_test(d, a, b, wl[j], wu[j], zl[j], zu[j], ap, ad)
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
def centrality_rhs(ptr, idx, val, code, pat_start, pat_row, pat_gamma, theta, wl, wu, zl, zu, free, dv, dzl, dzu,
                   ap, ad, lo, hi, rhs, acc):
    """The right-hand side of a centrality corrector: ``rhs = A_full theta g`` with ``g = -t_l / wl + t_u / wu``
    (:func:`_centrality_targets` of the direction ``dv, dzl, dzu`` at the trial steps ``ap``, ``ad``; no primal or
    dual residual: those the direction already removes). ``acc``: workspace of one entry per cell.

    Returns the number of products out of ``[lo, hi]``.
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
def centrality_tail(ptr, idx, val, code, pat_start, pat_row, pat_gamma, dy, theta, wl, wu, zl, zu, free, dv, dzl, dzu,
                    atdy, ap, ad, lo, hi, dv_out, dzl_out, dzu_out, atdy_out, q):
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
