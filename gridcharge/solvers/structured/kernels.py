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
def schur_by_group(ld, lo, car_start, he_start, he_pos, he_period, hval, car_group, skip, n_groups, n_periods,
                   n_chunks, max_len):
    """``W[g, t, t'] = sum over cars c of group g of (H_c M_c^{-1} H_c^T)[t, t']``.

    ``H_c`` has one entry per (local position, period) of car ``c`` (``he_*``, values ``hval``, positions ascending).
    The inverse of a tridiagonal ``M = L L^T`` is never formed: above the diagonal, column ``j`` of ``M^{-1}``
    follows ``x[i] = rho[i] x[i+1]`` with ``rho[i] = -lo[i+1] / ld[i]`` (independent of ``j``), and the diagonal
    follows ``d[i] = 1 / ld[i]^2 + rho[i]^2 d[i+1]``; both are O(length), and each pair of entries then costs one
    multiply-add. Cars are split in ``n_chunks`` contiguous chunks, each with its own accumulator. Cars with
    ``skip`` set are left out (the one-row cars, done by BLAS in :mod:`.normal`).
    """
    n_cars = len(car_start) - 1
    acc = np.zeros((n_chunks, n_groups, n_periods, n_periods))
    per = (n_cars + n_chunks - 1) // n_chunks
    for k in prange(n_chunks):
        rho = np.empty(max_len)
        dg = np.empty(max_len)
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
            for f in range(e0, e1):
                pf, tf, hf = he_pos[f] - a, he_period[f], hval[f]
                r = dg[pf] * hf  # M^{-1}[p, pf] * h_f, walked up from p = pf
                w[tf, tf] += hf * r
                cur = pf
                for e in range(f - 1, e0 - 1, -1):
                    pe = he_pos[e] - a
                    while cur > pe:
                        cur -= 1
                        r *= rho[cur]
                    te = he_period[e]
                    w[tf, te] += (2.0 if te == tf else 1.0) * hval[e] * r  # row tf: contiguous writes
    out = np.zeros((n_groups, n_periods, n_periods))
    for k in range(n_chunks):
        out += acc[k]
    for g in range(n_groups):  # pairs were added once, at (t_f, t_e): fold into a symmetric matrix
        for t1 in range(n_periods):
            for t2 in range(t1 + 1, n_periods):
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


def threads() -> int:
    """Threads numba runs ``prange`` loops on."""
    return numba.get_num_threads()


# ---------------------------------------------------------------------------------------------------------------------
# fused element-wise steps of one interior-point iteration (one pass each over columns and row activities)


@njit(cache=True)
def advance(indptr, indices, data, v, zl, zu, lower, upper, free, c, dv, dzl, dzu, ap, ad, aty, atdy, min_distance,
            reg, wl, wu, rd, theta, rp):
    """One pass over the columns (``A`` by columns: ``indptr``, ``indices``, ``data``; ``v = [x, s]``): step to
    ``v + ap dv`` (kept within its box), ``z + ad dz``, carry ``aty += ad atdy`` along (``ap = ad = 0``: stay), and
    prepare the next iteration at the new point: distances ``wl``, ``wu`` to the bounds, dual residual
    ``rd = c - A^T y - zl + zu``, ``theta = 1 / (zl/wl + zu/wu + reg)`` and ``rp = -(A x - s)``.

    Returns the complementarity sum, the largest |dual residual|, the largest |rp|, the largest |x|, ``c^T v`` and
    whether every new entry is finite.
    """
    n = len(indptr) - 1
    rp[:] = 0.0
    comp, dual_worst, big, obj = 0.0, 0.0, 0.0, 0.0
    finite = True
    for j in range(len(v)):
        aty[j] += ad * atdy[j]
        if free[j]:
            x = min(max(v[j] + ap * dv[j], lower[j]), upper[j])
            v[j] = x
            zl[j] += ad * dzl[j]
            zu[j] += ad * dzu[j]
            finite = finite and np.isfinite(x) and np.isfinite(zl[j]) and np.isfinite(zu[j])
            a = max(x - lower[j], min_distance)
            b = max(upper[j] - x, min_distance)
            wl[j], wu[j] = a, b
            r = c[j] - aty[j] - zl[j] + zu[j]
            rd[j] = r
            dual_worst = max(dual_worst, abs(r))
            theta[j] = 1.0 / (zl[j] / a + zu[j] / b + reg)
            comp += a * zl[j] + b * zu[j]
        else:
            x = v[j]
            wl[j], wu[j], rd[j], theta[j] = 1.0, 1.0, 0.0, 0.0
        obj += c[j] * x
        if j < n:
            big = max(big, abs(x))
            for k in range(indptr[j], indptr[j + 1]):
                rp[indices[k]] -= data[k] * x
        else:
            rp[j - n] += x
    primal_worst = 0.0
    for i in range(len(rp)):
        primal_worst = max(primal_worst, abs(rp[i]))
    return comp, dual_worst, primal_worst, big, obj, finite


@njit(cache=True)
def normal_rhs(indptr, indices, data, rp, theta, rd, wl, wu, zl, zu, free, target, dva, dzla, dzua, corrector, g, out):
    """The normal equations' right side ``out = rp + A_full (theta g)`` in one pass over the columns (``A_full =
    [A, -I]``, ``A`` by columns: ``indptr``, ``indices``, ``data``), with ``g = rd - r_l / wl + r_u / wu``,
    ``r_l = target - wl zl [- dva dzla]``, ``r_u = target - wu zu [+ dva dzua]`` (the bracketed terms in the
    corrector; ``g = 0`` on fixed entries), kept in ``g`` for :func:`direction_tail`."""
    n = len(indptr) - 1
    out[:] = rp
    for j in range(len(g)):
        if free[j]:
            r_l = target - wl[j] * zl[j]
            r_u = target - wu[j] * zu[j]
            if corrector:
                r_l -= dva[j] * dzla[j]
                r_u += dva[j] * dzua[j]
            gj = rd[j] - r_l / wl[j] + r_u / wu[j]
        else:
            gj = 0.0
        g[j] = gj
        tg = theta[j] * gj
        if j < n:
            for k in range(indptr[j], indptr[j + 1]):
                out[indices[k]] += data[k] * tg
        else:
            out[j - n] -= tg


@njit(cache=True)
def direction_tail(indptr, indices, data, dy, theta, g, wl, wu, zl, zu, free, target, dva, dzla, dzua, corrector,
                   atdy, dv, dzl, dzu):
    """``atdy = A_full^T dy`` (gathered per column; kept only in the corrector), ``dv = theta (atdy - g)`` and the
    bound duals' steps.

    Returns the largest primal and dual steps ``ap``, ``ad`` <= 1 and the sums ``s1``, ``s2``, ``s3`` that give the
    complementarity after any steps without another pass: ``sum (wl + ap dv)(zl + ad dzl) + (wu - ap dv)(zu + ad dzu)
    = comp + ap s1 + ad s2 + ap ad s3``.
    """
    n = len(indptr) - 1
    ap, ad = 1.0, 1.0
    s1, s2, s3 = 0.0, 0.0, 0.0
    for j in range(len(dv)):
        if j < n:
            t = 0.0
            for k in range(indptr[j], indptr[j + 1]):
                t += data[k] * dy[indices[k]]
        else:
            t = -dy[j - n]
        if corrector:
            atdy[j] = t
        if not free[j]:
            dv[j], dzl[j], dzu[j] = 0.0, 0.0, 0.0
            continue
        d = theta[j] * (t - g[j])
        r_l = target - wl[j] * zl[j]
        r_u = target - wu[j] * zu[j]
        if corrector:
            r_l -= dva[j] * dzla[j]
            r_u += dva[j] * dzua[j]
        a = (r_l - zl[j] * d) / wl[j]
        b = (r_u + zu[j] * d) / wu[j]
        dv[j], dzl[j], dzu[j] = d, a, b
        s1 += d * (zl[j] - zu[j])
        s2 += wl[j] * a + wu[j] * b
        s3 += d * (a - b)
        if d < 0.0:
            ap = min(ap, -wl[j] / d)
        elif d > 0.0:
            ap = min(ap, wu[j] / d)
        if a < 0.0:
            ad = min(ad, -zl[j] / a)
        if b < 0.0:
            ad = min(ad, -zu[j] / b)
    return ap, ad, s1, s2, s3
