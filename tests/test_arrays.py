"""The array helpers give what the slow numpy idioms they replace give."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gridcharge._arrays import add_rows_at, energy_taken, summed_grid

small = st.integers(min_value=0, max_value=6)


@given(st.integers(1, 5), st.integers(1, 4), st.lists(small, max_size=30), st.integers(0, 2**32 - 1))
def test_add_rows_at_equals_numpy_add_at(n_rows, width, index, seed):
    index = np.array([i % n_rows for i in index], dtype=int)
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(len(index), width))
    start = rng.normal(size=(n_rows, width))
    expected = start.copy()
    np.add.at(expected, index, rows)
    got = start.copy()
    add_rows_at(got, index, rows)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@given(st.integers(1, 5), st.integers(1, 5), st.lists(st.tuples(small, small), max_size=30), st.integers(0, 2**32 - 1))
def test_summed_grid_equals_numpy_add_at(n_rows, n_cols, cells, seed):
    rows = np.array([r % n_rows for r, _ in cells], dtype=int)
    cols = np.array([c % n_cols for _, c in cells], dtype=int)
    weights = np.random.default_rng(seed).normal(size=len(cells))
    expected = np.zeros((n_rows, n_cols))
    np.add.at(expected, (rows, cols), weights)
    np.testing.assert_allclose(summed_grid((n_rows, n_cols), rows, cols, weights), expected, rtol=1e-12, atol=1e-12)


def test_repeated_rows_are_summed_not_overwritten():
    target = np.zeros((2, 2))
    add_rows_at(target, np.array([1, 1, 1]), np.ones((3, 2)))
    assert target.tolist() == [[0.0, 0.0], [3.0, 3.0]]


def energy_taken_by_loop(gain, cap, final_cap):
    """The definition, period by period: charging adds at most the room below the cap in force (``cap`` until the
    last discharge, ``final_cap`` after it); discharge is taken as scheduled."""
    S, T = gain.shape
    out = np.zeros_like(gain)
    for s in range(S):
        negative = np.flatnonzero(gain[s] < 0)
        start = negative[-1] + 1 if len(negative) else 0
        added = 0.0
        for t in range(T):
            limit = final_cap[s] if t >= start else cap[s]
            out[s, t] = min(gain[s, t], max(limit - added, 0.0)) if gain[s, t] > 0 else gain[s, t]
            added += out[s, t]
    return out


@given(st.integers(1, 4), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_energy_taken_equals_the_period_by_period_definition(n_rows, n_cols, seed):
    rng = np.random.default_rng(seed)
    gain = np.round(rng.normal(0.5, 1.0, size=(n_rows, n_cols)), 1) * (rng.random((n_rows, n_cols)) < 0.8)
    cap = rng.uniform(0.0, 3.0, n_rows)
    final_cap = cap * rng.uniform(0.0, 1.0, n_rows)
    np.testing.assert_allclose(energy_taken(gain, cap, final_cap), energy_taken_by_loop(gain, cap, final_cap),
                               atol=1e-12)
