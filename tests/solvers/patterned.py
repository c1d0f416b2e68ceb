"""Random LP matrices in the form the structured interior point's passes read (:class:`~gridcharge.solvers.structured.
kernels.Columns`: residual entries plus group patterns), with the same matrix assembled, for tests of the passes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class PatternedColumns:
    """``cols``: the passes' arrays; ``a``: the assembled ``m x n`` matrix; ``a_full = [a, -I]``."""

    cols: tuple
    a: np.ndarray
    a_full: np.ndarray
    n_cells: int


def random_patterned_columns(rng: np.random.Generator) -> PatternedColumns:
    """1-39 columns, 1-14 rows, 1-3 groups over 1-4 periods; 70 % of the columns in a group's pattern."""
    n, m = int(rng.integers(1, 40)), int(rng.integers(1, 15))
    residual = sp.random(m, n, density=0.2, random_state=rng, format="csc")
    n_groups, n_periods = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    pat_start = np.r_[0, np.cumsum(rng.integers(0, 3, n_groups))].astype(np.int64)
    pat_row = np.where(rng.random((pat_start[-1], n_periods)) < 0.8,
                       rng.integers(0, m, (pat_start[-1], n_periods)), -1).astype(np.int64)
    pat_gamma = rng.normal(size=pat_start[-1])
    cell = rng.integers(0, n_groups * n_periods, n)
    code = np.where(rng.random(n) < 0.7, rng.choice([-1, 1], n) * (cell + 1), 0).astype(np.int64)
    a = residual.toarray()
    for j in np.flatnonzero(code):
        g, t = divmod(abs(code[j]) - 1, n_periods)
        for i in range(pat_start[g], pat_start[g + 1]):
            if pat_row[i, t] >= 0:
                a[pat_row[i, t], j] += np.sign(code[j]) * pat_gamma[i]
    cols = (residual.indptr.astype(np.int64), residual.indices.astype(np.int64), residual.data, code, pat_start,
            pat_row, pat_gamma, np.array([0]), np.array([n]), np.array([0, 1]))  # one chunk, one run
    return PatternedColumns(cols, a, np.hstack([a, -np.eye(m)]), n_groups * n_periods)
