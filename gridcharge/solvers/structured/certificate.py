"""The box-Lagrangian lower bound: every column is boxed, so any row duals ``y`` bound the optimum from below.

``L(y) = min over l <= x <= u of c^T x - y^T A x + sum_i (y_i > 0 ? y_i rl_i : y_i ru_i)``; ``y`` is first projected
on the signs the row bounds allow (a row without a lower bound cannot carry a positive dual). Each term is evaluated
with ``math.fsum`` and the bound is lowered by an upper bound on the floating-point error of ``c - A^T y``, so the
returned number is a lower bound of the LP's optimum, not an estimate of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .layout import Layout

#: Unit round-off of float64 [-].
EPS = np.finfo(float).eps


def lower_bound(layout: Layout, cost: np.ndarray, y: np.ndarray) -> float:
    """A rigorous lower bound of ``min c^T x`` over the layout's LP (without its constant offset) [CNY]."""
    y = _projected(y, layout.row_lower, layout.row_upper)
    col_terms = _column_terms(layout, cost, y)
    if not np.all(np.isfinite(col_terms)):
        return -math.inf
    row_terms = _row_terms(y, layout.row_lower, layout.row_upper)
    total = math.fsum(col_terms) + math.fsum(row_terms)
    # fsum is correctly rounded; the two products per term are each off by at most eps relative
    return total - 2 * EPS * (_sum_above(np.abs(col_terms)) + _sum_above(np.abs(row_terms)))


@dataclass
class BoundPart:
    """One part's share of :func:`lower_bound` for :func:`combine_bounds`: the correctly rounded sums of its column
    terms and its rows' terms, and an upper bound of the sum of their magnitudes [CNY]; ``-inf`` sums when a column term is not finite."""

    columns: float
    rows: float
    magnitude: float


def bound_part(layout: Layout, cost: np.ndarray, y: np.ndarray, own_rows: np.ndarray) -> BoundPart:
    """The terms of :func:`lower_bound` of the columns of ``layout`` (a part of an LP holding every row its columns
    meet, ``y`` on those rows) and of its rows ``own_rows`` (each row of the LP is some part's own once)."""
    y = _projected(y, layout.row_lower, layout.row_upper)
    col_terms = _column_terms(layout, cost, y)
    if not np.all(np.isfinite(col_terms)):
        return BoundPart(-math.inf, -math.inf, math.inf)
    row_terms = _row_terms(y[own_rows], layout.row_lower[own_rows], layout.row_upper[own_rows])
    return BoundPart(math.fsum(col_terms), math.fsum(row_terms),
                     _sum_above(np.abs(col_terms)) + _sum_above(np.abs(row_terms)))


def combine_bounds(parts: list) -> float:
    """:func:`lower_bound` from its parts' shares (:func:`bound_part`), still rigorous: each share's sum is off by at
    most half an eps of itself, the sum of the shares is correctly rounded."""
    sums = [s for p in parts for s in (p.columns, p.rows)]
    if not all(math.isfinite(s) for s in sums):
        return -math.inf
    total = math.fsum(sums)
    slack = 2 * EPS * math.fsum(p.magnitude for p in parts) + EPS * (math.fsum(abs(s) for s in sums) + abs(total))
    return total - slack


def _projected(y: np.ndarray, rl: np.ndarray, ru: np.ndarray) -> np.ndarray:
    """``y`` on the signs the row bounds allow (a row without a lower bound cannot carry a positive dual)."""
    y = np.where(np.isfinite(rl), y, np.minimum(y, 0.0))
    return np.where(np.isfinite(ru), y, np.maximum(y, 0.0))


def _column_terms(layout: Layout, cost: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``min over [lo, hi] of (c - A^T y)_j x_j`` per column, for the worst ``c - A^T y`` within its rounding error."""
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
    return np.minimum(at_lo, at_hi)


def _row_terms(y: np.ndarray, rl: np.ndarray, ru: np.ndarray) -> np.ndarray:
    """``y_i rl_i`` for a positive dual, ``y_i ru_i`` for a negative one [CNY]."""
    return np.where(y > 0, y * np.where(y > 0, rl, 0.0), y * np.where(y < 0, ru, 0.0))


def _sum_above(terms: np.ndarray) -> float:
    """An upper bound of the sum of nonnegative ``terms``: any order of float additions of ``k`` of them is at least
    ``(1 - gamma_k) >= (1 - 2 k eps)`` times the exact sum (for ``k eps < 1/2``), so dividing by that bounds it
    (``math.fsum`` here took ~60 ms per 860,000 terms, twice per bound)."""
    return float(np.sum(terms)) / (1.0 - 2.0 * len(terms) * EPS)
