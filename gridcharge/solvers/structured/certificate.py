"""The box-Lagrangian lower bound: every column is boxed, so any row duals ``y`` bound the optimum from below.

``L(y) = min over l <= x <= u of c^T x - y^T A x + sum_i (y_i > 0 ? y_i rl_i : y_i ru_i)``; ``y`` is first projected
on the signs the row bounds allow (a row without a lower bound cannot carry a positive dual). Each term is evaluated
with ``math.fsum`` and the bound is lowered by an upper bound on the floating-point error of ``c - A^T y``, so the
returned number is a lower bound of the LP's optimum, not an estimate of it.
"""

from __future__ import annotations

import math

import numpy as np

from .layout import Layout

#: Unit round-off of float64 [-].
EPS = np.finfo(float).eps


def lower_bound(layout: Layout, cost: np.ndarray, y: np.ndarray) -> float:
    """A rigorous lower bound of ``min c^T x`` over the layout's LP (without its constant offset) [CNY]."""
    rl, ru = layout.row_lower, layout.row_upper
    y = np.where(np.isfinite(rl), y, np.minimum(y, 0.0))
    y = np.where(np.isfinite(ru), y, np.maximum(y, 0.0))
    at = layout.a_csc.T
    reduced = cost - at @ y
    # |fl(c - A^T y) - (c - A^T y)| <= (k + 1) eps (|c| + |A|^T |y|), k the entries of the column
    per_col = np.diff(layout.a_csc.indptr)
    error = (per_col + 2) * EPS * (np.abs(cost) + layout.abs_a_t @ np.abs(y))
    lo, hi = layout.col_lower, layout.col_upper
    # min over [lo, hi] of r x for every r in [reduced - error, reduced + error]
    low_r, high_r = reduced - error, reduced + error
    at_lo = np.minimum(low_r * lo, high_r * lo)
    at_hi = np.minimum(low_r * hi, high_r * hi)
    col_terms = np.minimum(at_lo, at_hi)
    if not np.all(np.isfinite(col_terms)):
        return -math.inf
    row_terms = np.where(y > 0, y * np.where(y > 0, rl, 0.0), y * np.where(y < 0, ru, 0.0))
    total = math.fsum(col_terms) + math.fsum(row_terms)
    # fsum is correctly rounded; the two products per term are each off by at most eps relative
    return total - 2 * EPS * (_sum_above(np.abs(col_terms)) + _sum_above(np.abs(row_terms)))


def _sum_above(terms: np.ndarray) -> float:
    """An upper bound of the sum of nonnegative ``terms``: any order of float additions of ``k`` of them is at least
    ``(1 - gamma_k) >= (1 - 2 k eps)`` times the exact sum (for ``k eps < 1/2``), so dividing by that bounds it
    (``math.fsum`` here took ~60 ms per 860,000 terms, twice per bound)."""
    return float(np.sum(terms)) / (1.0 - 2.0 * len(terms) * EPS)
