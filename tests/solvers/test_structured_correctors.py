"""Gondzio's centrality correctors in the structured interior point: the corrected direction solves the Newton system
with the corrector's complementarity targets and keeps the iterate inside its boxes; a corrector that does not
lengthen the step is rejected (the run is then Mehrotra's, number for number); with correctors the optimum is still
HiGHS's on random districts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import gridcharge
from gridcharge.bench.generate import generate
from gridcharge.formulation.lp import build_lp
from gridcharge.solvers.structured import kernels
from gridcharge.solvers.structured.ipm import Correctors, interior_point
from gridcharge.solvers.structured.layout import derive_layout
from tests.solvers.patterned import random_patterned_columns


@given(st.integers(0, 2**31 - 1))
def test_the_corrected_direction_solves_the_newton_system_with_the_targets(seed):
    rng = np.random.default_rng(seed)
    case = random_patterned_columns(rng)
    cols, a_full = case.cols, case.a_full
    m, n = case.a.shape
    size = n + m
    free = rng.random(size) < 0.8
    wl, wu = np.where(free, rng.uniform(1e-3, 3, size), 1.0), np.where(free, rng.uniform(1e-3, 3, size), 1.0)
    zl, zu = np.where(free, rng.uniform(1e-3, 3, size), 0.0), np.where(free, rng.uniform(1e-3, 3, size), 0.0)
    theta = np.where(free, 1 / (zl / wl + zu / wu + ~free), 0.0)
    dv, dzl, dzu = (np.where(free, rng.normal(scale=2.0, size=size), 0.0) for _ in range(3))
    atdy = rng.normal(size=size)
    ap, ad = rng.uniform(0.05, 1.0, 2)
    mu = float(np.mean((wl * zl)[free])) if free.any() else 1.0
    lo, hi = 0.1 * mu, 10.0 * mu

    # the targets: products at the trial steps moved into [lo, hi] (lowered by at most hi)
    pl, pu = (wl + ap * dv) * (zl + ad * dzl), (wu - ap * dv) * (zu + ad * dzu)
    t_l = np.where(free, np.where(pl < lo, lo - pl, np.where(pl > hi, np.maximum(hi - pl, -hi), 0.0)), 0.0)
    t_u = np.where(free, np.where(pu < lo, lo - pu, np.where(pu > hi, np.maximum(hi - pu, -hi), 0.0)), 0.0)
    g = np.where(free, t_u / wu - t_l / wl, 0.0)

    rhs, q = np.empty(m), np.empty(case.n_cells)
    count = kernels.centrality_rhs(*cols, theta, wl, wu, zl, zu, free, dv, dzl, dzu, ap, ad, lo, hi, rhs, q)
    assert count == int(((t_l != 0) | (t_u != 0)).sum())
    assert np.allclose(rhs, a_full @ (theta * g))

    dy = rng.normal(size=m)
    out = [np.full(size, np.nan) for _ in range(4)]
    sp_, sd_ = kernels.centrality_tail(*cols, dy, theta, wl, wu, zl, zu, free, dv, dzl, dzu, atdy, ap, ad, lo, hi,
                                       *out, q)
    dv2, dzl2, dzu2, atdy2 = out
    step = np.where(free, dv2 - dv, 0.0)
    assert np.allclose(atdy2, atdy + a_full.T @ dy)
    assert np.allclose(step, np.where(free, theta * (a_full.T @ dy - g), 0.0))
    # the corrector's part of the Newton system: complementarity rows with the targets on the right
    assert np.allclose((zl * step + wl * (dzl2 - dzl))[free], t_l[free])
    assert np.allclose((-zu * step + wu * (dzu2 - dzu))[free], t_u[free])
    assert np.all(dv2[~free] == 0.0) and np.all(dzl2[~free] == 0.0) and np.all(dzu2[~free] == 0.0)
    # the steps keep the iterate inside its boxes and its bound duals nonnegative, and are the longest that do
    tol = 1e-9
    assert np.all(wl + sp_ * dv2 >= -tol * wl) and np.all(wu - sp_ * dv2 >= -tol * wu)
    assert np.all(zl + sd_ * dzl2 >= -tol * (1 + zl)) and np.all(zu + sd_ * dzu2 >= -tol * (1 + zu))
    if sp_ < 1.0:
        longer = 1.001 * sp_
        assert np.any((wl + longer * dv2 < 0)[free]) or np.any((wu - longer * dv2 < 0)[free])
    if sd_ < 1.0:
        longer = 1.001 * sd_
        assert np.any((zl + longer * dzl2 < 0)[free]) or np.any((zu + longer * dzu2 < 0)[free])


def _district_layout(sessions, transformers, seed):
    problem = gridcharge.build_problem(generate("district", sessions, seed, transformers=transformers))
    lp = build_lp(problem)
    return lp, derive_layout(lp)


def test_a_corrector_that_does_not_lengthen_the_step_is_rejected():
    """With an acceptance no corrector can meet, every corrector is tried and dropped: the run is Mehrotra's alone,
    to the last bit."""
    lp, layout = _district_layout(60, 2, 3)
    plain = interior_point(layout, lp.col_cost, offset=lp.offset)
    never = interior_point(layout, lp.col_cost, offset=lp.offset, correctors=Correctors(count=3, accept=1e9))
    assert plain.status == never.status == "optimal"
    assert never.correctors > 0  # they were tried
    assert never.iterations == plain.iterations
    assert np.array_equal(never.x, plain.x) and np.array_equal(never.y, plain.y)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 4), st.integers(3, 40), st.integers(0, 2**16), st.sampled_from([None, 0.0, 1.0]),
       st.integers(1, 4))
def test_with_correctors_the_optimum_is_highs_and_the_iterate_stays_in_its_boxes(transformers, per, seed, v2g, count):
    data = generate("district", transformers * per, seed, transformers=transformers,
                    **({} if v2g is None else {"v2g_share": v2g}))
    problem = gridcharge.build_problem(data)
    lp = build_lp(problem)
    layout = derive_layout(lp)
    result = interior_point(layout, lp.col_cost, offset=lp.offset, max_iterations=200,
                            correctors=Correctors(count=count))
    assert result.status == "optimal"
    assert np.all(result.x >= layout.col_lower) and np.all(result.x <= layout.col_upper)
    highs = gridcharge.solve(problem, solver="highs").summary["objective_cny"]
    scale = max(1.0, abs(highs))
    assert abs(result.primal_objective + lp.offset - highs) <= 1e-7 * scale
    assert result.lower_bound + lp.offset <= highs + 1e-9 * scale


def test_a_bad_corrector_count_or_correctors_on_workers_are_refused_by_name():
    """The count is a non-negative integer, and the split solve (workers, scheduler) runs Mehrotra alone: asking it
    for correctors is an error naming the option, not correctors silently dropped."""
    import pytest

    problem = gridcharge.build_problem(generate("district", 60, 3, transformers=2))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="correctors"):
            gridcharge.solve(problem, solver="structured", correctors=bad)
    with pytest.raises(ValueError, match="correctors: 2 with workers"):
        gridcharge.solve(problem, solver="structured", correctors=2, workers=0)
    split = gridcharge.solve(problem, solver="structured", correctors=0, workers=0)
    assert split.verification.ok and split.summary["correctors"] == 0
