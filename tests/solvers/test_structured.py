"""The structured interior point (gridcharge/solvers/structured): equal to HiGHS's optimum, certified by a lower bound
that never exceeds it, verified, and falling back to HiGHS (saying why) wherever it cannot certify."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridcharge
from gridcharge.bench.generate import generate
from gridcharge.formulation.lp import build_lp
from gridcharge.solvers.structured import GAP_TOLERANCE, needs_binaries
from gridcharge.solvers.structured.certificate import lower_bound
from gridcharge.solvers.structured.layout import LayoutError, derive_layout, front_tree
from gridcharge.solvers.structured.normal import NormalEquations
from gridcharge.testing import assert_feasible, assert_objective_close
from tests.builders import at, charger, instance, node, session
from tests.solvers.patterned import random_patterned_columns
from tests.test_properties import burn_through_losses_case, instances

REL = 1e-7
ABS = 1e-6


def residential(n, seed, **params):
    return generate("residential", n, seed, **params)


def _both(data, **options):
    """(structured, highs) schedules, or (None, None) when HiGHS says infeasible (structured must then say so too)."""
    try:
        highs = gridcharge.solve(data, solver="highs")
    except gridcharge.InfeasibleError as exc:
        with pytest.raises(gridcharge.InfeasibleError) as caught:
            gridcharge.solve(data, solver="structured", **options)
        assert {(o.node, o.kind, o.period) for o in caught.value.overloads} == {
            (o.node, o.kind, o.period) for o in exc.overloads}
        return None, None
    return gridcharge.solve(data, solver="structured", **options), highs


def _check_certified(structured, highs, data):
    assert_feasible(data, structured)
    s, h = structured.summary, highs.summary
    assert_objective_close(s["objective_cny"], h["objective_cny"], rel=REL, abs_=ABS)
    if s["fallback"] is None:
        assert s["solver"] == "structured"
        assert s["gap_rel"] <= GAP_TOLERANCE
        # a rigorous bound cannot exceed the optimum (HiGHS's schedule's cost, up to HiGHS's own tolerances)
        assert s["lower_bound_cny"] <= h["objective_cny"] + 1e-9 * max(1.0, abs(h["objective_cny"]))
        # the schedule keeps the rows within the verifier's tolerance, so its cost may sit a hair below the bound
        assert s["lower_bound_cny"] <= s["objective_cny"] + 1e-9 * max(1.0, abs(s["objective_cny"]))
    else:
        assert s["solver"] == "highs" and s["lower_bound_cny"] is None


@given(instances())
def test_structured_equals_highs_on_random_instances(data):
    structured, highs = _both(data)
    if structured is not None:
        _check_certified(structured, highs, data)


@st.composite
def residential_days(draw):
    """Small generated residential days: V2G shares, tight capacity, phase limits, peak charges."""
    n = draw(st.integers(5, 60))
    data = generate("residential", n, draw(st.integers(0, 10_000)), v2g_share=draw(st.sampled_from([0.0, 0.3, 1.0])),
                    capacity=draw(st.sampled_from(["tight", "default"])), phase_limits=draw(st.booleans()))
    if draw(st.booleans()):
        data.setdefault("objective", {})["peak_cny_per_kw"] = draw(st.sampled_from([0.5, 2.0]))
    return data


@given(residential_days())
def test_structured_certifies_generated_residential_days(data):
    structured, highs = _both(data)
    if structured is None:
        return
    _check_certified(structured, highs, data)
    assert structured.summary["fallback"] is None, structured.summary["fallback"]  # these days must not need HiGHS


def test_structured_certifies_a_v2g_day_with_floors_peak_and_phases():
    data = residential(80, 3, v2g_share=0.5, capacity="tight", phase_limits=True)
    data.setdefault("objective", {})["peak_cny_per_kw"] = 1.0
    structured, highs = _both(data)
    _check_certified(structured, highs, data)
    s = structured.summary
    assert s["fallback"] is None
    assert s["iterations"] > 0
    for stage in ("layout_seconds", "iterations_seconds", "certificate_seconds", "writeback_seconds"):
        assert s[stage] >= 0.0


def _arbitrage_day():
    return instance(periods=2, import_price=1.0, export_price=[3.0, 0.0],
                    chargers=[charger("c1", max_discharge_kw=7.0)],
                    sessions=[session("s", "c1", at(0), at(2), 0.0, max_discharge_kw=7.0, battery_kwh=60.0,
                                      initial_kwh=30.0, min_kwh=27.0)])


def test_arbitrage_prices_fall_back_to_highs():
    data = _arbitrage_day()
    assert needs_binaries(gridcharge.build_problem(data))
    structured, highs = _both(data)
    assert "binaries" in structured.summary["fallback"]
    assert_objective_close(structured.summary["objective_cny"], -6.0)
    _check_certified(structured, highs, data)


def test_infeasible_base_load_is_reported_like_highs():
    data = instance(periods=2, nodes=[node("T", import_limit_kw=100.0, base_load_kw=[90.0, 130.0])],
                    chargers=[charger("c1")], sessions=[session("s", "c1", at(0), at(2), 5.0)])
    assert _both(data) == (None, None)


def test_infeasible_only_by_exclusivity_is_reported_like_highs():
    # the LP relaxation is feasible (it burns round-trip loss); the rule needs binaries, HiGHS finds no schedule
    assert _both(burn_through_losses_case()) == (None, None)


def test_lp_infeasible_day_falls_back_and_is_reported_like_highs():
    # lossless car that wants nothing must absorb 1 kW of PV: no LP solution at all, the interior point cannot converge
    data = instance(periods=1, import_price=0.1, nodes=[node("T", generation_kw=1.0, export_limit_kw=0.0)],
                    chargers=[charger("c", max_charge_kw=7.0, max_discharge_kw=7.0, efficiency=1.0)],
                    sessions=[session("s", "c", at(0), at(1), 0.0, max_discharge_kw=7.0)])
    assert _both(data, max_iterations=30) == (None, None)


@pytest.mark.parametrize("data, expected", [
    (instance(periods=2), 0.0),  # no column at all
    (instance(periods=2, nodes=[node("T", base_load_kw=5.0)], objective={"peak_cny_per_kw": 1.0}), 5.0),  # peak only
    (instance(periods=2, chargers=[charger("c")], sessions=[session("s", "c", at(0), at(2), 0.0)]), 0.0),
])
def test_degenerate_days_are_certified(data, expected):
    schedule = gridcharge.solve(data, solver="structured")
    assert schedule.summary["fallback"] is None
    assert_objective_close(schedule.summary["objective_cny"], expected)
    assert schedule.summary["lower_bound_cny"] <= expected + 1e-9


def test_an_iteration_limit_too_small_to_certify_falls_back():
    data = residential(40, 5, v2g_share=0.5)
    structured, highs = _both(data, max_iterations=3)
    assert structured.summary["fallback"].startswith("iteration limit after 3 iterations")
    _check_certified(structured, highs, data)


def test_overload_mode_falls_back_with_the_reason():
    data = residential(20, 1, capacity="tight")
    schedule = gridcharge.solve(data, solver="structured", allow_overload=True)
    assert "overload" in schedule.summary["fallback"]


def test_auto_uses_highs_on_small_days_and_structured_on_v2g_days(monkeypatch):
    import gridcharge.solvers.structured as structured

    small = gridcharge.solve(residential(10, 1), solver="auto")
    assert small.summary["solver"] == "highs"
    monkeypatch.setattr(structured, "AUTO_MIN_V2G_SESSIONS", 2)
    v2g = gridcharge.solve(residential(10, 1, v2g_share=0.5), solver="auto")
    assert v2g.summary["solver"] == "structured" and v2g.summary["fallback"] is None
    charge_only = gridcharge.solve(residential(10, 1, v2g_share=0.0), solver="auto")
    assert charge_only.summary["solver"] == "highs"
    monkeypatch.setattr(structured, "AUTO_MIN_SESSIONS", 10)
    assert gridcharge.solve(residential(10, 1, v2g_share=0.0), solver="auto").summary["solver"] == "structured"


# --------------------------------------------------------------------------------------------------------------------
# the parts


def _layout(n=25, seed=2, nested=False, **options):
    problem = gridcharge.build_problem(residential(n, seed, v2g_share=0.5, phase_limits=True, **options))
    lp = build_lp(problem)
    return lp, derive_layout(lp, nested=nested)


@pytest.mark.parametrize("spread", [0.0, 2.0, 6.0])
def test_block_elimination_solves_the_normal_equations_exactly(spread):
    lp, layout = _layout()
    assert len(layout.front_rows) == 1  # flat: one front, the dense Schur complement
    rng = np.random.default_rng(0)
    theta = 10.0 ** rng.uniform(-spread, spread, lp.n_col)
    theta_s = np.where(lp.row_lower < lp.row_upper, 10.0 ** rng.uniform(-spread, spread, lp.n_row), 0.0)
    normal = NormalEquations(layout, delta=1e-8)
    normal.factor(theta, theta_s)
    a = layout.a_csr.toarray()
    dense = (a * theta) @ a.T + np.diag(theta_s + 1e-8)
    loc, cpl = layout.local_rows, layout.coupling_rows
    schur = dense[np.ix_(cpl, cpl)] - dense[np.ix_(cpl, loc)] @ np.linalg.solve(dense[np.ix_(loc, loc)],
                                                                                dense[np.ix_(loc, cpl)])
    factor = normal.fronts[0].chol
    assert np.abs(factor @ factor.T - schur).max() <= 1e-12 * np.abs(schur).max()
    rhs = rng.normal(size=lp.n_row)
    dy = normal.solve(rhs)
    # backward error of a stable solve: residual small against |M| |dy|
    assert np.abs(dense @ dy - rhs).max() <= 1e-12 * (np.abs(dense) @ np.abs(dy)).max()


def _district_lp(n=60, transformers=3, seed=4, **params):
    problem = gridcharge.build_problem(generate("district", n, seed, transformers=transformers, **params))
    return build_lp(problem)


@pytest.mark.parametrize("spread", [0.0, 2.0])
def test_the_nested_elimination_equals_the_flat_one(spread):
    lp = _district_lp()
    flat, nested = derive_layout(lp, nested=False), derive_layout(lp)
    # substation, lines, transformers and their LV feeders: a tree of fronts, each a parent's rows beneath its own
    assert len(nested.front_rows) > 3 and (nested.front_parent >= 0).sum() == len(nested.front_rows) - 1
    assert max(map(len, nested.front_rows)) < len(nested.coupling_rows)
    for f, rows in enumerate(nested.front_rows):
        parent = nested.front_parent[f]
        if parent >= 0:
            assert np.array_equal(rows[nested.front_own[f]:], nested.front_rows[parent])
    rng = np.random.default_rng(1)
    theta = 10.0 ** rng.uniform(-spread, spread, lp.n_col)
    theta_s = np.where(lp.row_lower < lp.row_upper, 10.0 ** rng.uniform(-spread, spread, lp.n_row), 0.0)
    rhs = rng.normal(size=lp.n_row)
    solved = []
    for layout in (flat, nested):
        normal = NormalEquations(layout, delta=1e-8)
        normal.factor(theta, theta_s)
        solved.append(normal.solve(rhs))
    assert np.abs(solved[1] - solved[0]).max() <= 1e-10 * np.abs(solved[0]).max()


def _tree(*groups):
    """front_tree for groups given as lists of node labels, one coupling row type per node."""
    nodes = sorted({n for g in groups for n in g})
    start = np.r_[0, np.cumsum([len(g) for g in groups])]
    types = np.array([nodes.index(n) for g in groups for n in g])
    return front_tree(np.array(nodes), np.arange(len(nodes)), start, types)


def test_the_fronts_follow_the_tree_the_groups_meet():
    parent, own, rows, group_front, front_of = _tree([0, 1, 2], [0, 1, 3], [0, 4], [0, 1])
    label = {f: n for n, f in enumerate(front_of)}  # one row per node: front -> node label
    assert {label[f]: (label[p] if p >= 0 else None) for f, p in enumerate(parent)} == {
        0: None, 1: 0, 2: 1, 3: 1, 4: 0}
    assert [label[f] for f in group_front] == [2, 3, 4, 1]
    # a front's rows (coupling positions, here the node labels): its own, then its parent front's
    assert {label[f]: list(r) for f, r in enumerate(rows)} == {
        0: [0], 1: [1, 0], 2: [2, 1, 0], 3: [3, 1, 0], 4: [4, 0]}
    assert list(own) == [1] * 5


def test_the_nested_layout_refuses_rows_that_do_not_nest():
    assert list(_tree([0, 1], [1, 2], [0, 2])[0]) == [-1, 0, 1]  # rows on one path: a chain is a tree
    with pytest.raises(LayoutError, match="tree"):  # node 2 is met from beneath two roots, 0 and 1
        _tree([0, 2], [1, 2], [0, 3], [1, 4])


@st.composite
def small_districts(draw):
    """Districts small enough for HiGHS: 1-4 transformers, V2G from none to all, seeds drawn."""
    transformers = draw(st.integers(1, 4))
    v2g = draw(st.sampled_from([None, 0.0, 1.0]))
    return generate("district", transformers * draw(st.integers(3, 40)), draw(st.integers(0, 2**16)),
                    transformers=transformers, **({} if v2g is None else {"v2g_share": v2g}))


@settings(max_examples=10, deadline=None)
@given(small_districts())
def test_structured_certifies_small_districts_like_highs(data):
    structured, highs = _both(data)
    if structured is not None:
        _check_certified(structured, highs, data)
        assert structured.summary["fallback"] is None


def test_layout_refuses_a_model_with_binaries():
    problem = gridcharge.build_problem(_arbitrage_day())
    with pytest.raises(LayoutError, match="binaries"):
        derive_layout(build_lp(problem, binary_pairs=np.array([0])))


@given(st.integers(0, 2**32 - 1), st.floats(0.01, 100.0))
def test_any_duals_give_a_bound_below_the_optimum(seed, scale):
    data = residential(15, 4, v2g_share=0.5, phase_limits=True, capacity="tight")
    data.setdefault("objective", {})["peak_cny_per_kw"] = 1.0
    problem = gridcharge.build_problem(data)
    lp = build_lp(problem)
    layout = derive_layout(lp)
    optimum = gridcharge.solve(problem, solver="highs").summary["objective_cny"]
    y = np.random.default_rng(seed).normal(scale=scale, size=lp.n_row)
    bound = lower_bound(layout, lp.col_cost, y) + lp.offset
    assert bound <= optimum + 1e-9 * max(1.0, abs(optimum)) or math.isinf(bound)


@given(st.integers(0, 2**31 - 1))
def test_fused_column_passes_equal_the_sparse_products(seed):
    """The compiled passes of an iteration, reading the matrix as residual entries plus group patterns, equal the same
    algebra done with the assembled matrix and numpy."""
    from gridcharge.solvers.structured import kernels

    rng = np.random.default_rng(seed)
    case = random_patterned_columns(rng)
    cols, a, a_full = case.cols, case.a, case.a_full
    m, n = a.shape
    size = n + m
    lower = rng.uniform(-5, 0, size)
    upper = lower + rng.uniform(0.5, 5, size)
    free = rng.random(size) < 0.8
    upper[~free] = lower[~free]
    v = np.where(free, rng.uniform(lower, upper), lower)
    zl, zu = np.where(free, rng.uniform(0.1, 3, size), 0.0), np.where(free, rng.uniform(0.1, 3, size), 0.0)
    c, aty, atdy0 = rng.normal(size=size), rng.normal(size=size), rng.normal(size=size)
    dzl0, dzu0 = (np.where(free, rng.uniform(-0.05, 1.0, size), 0.0) for _ in range(2))  # duals stay positive
    ap0, ad0 = rng.uniform(0.01, 1, 2)
    # a step to a point strictly inside the box (one onto a bound is clipped there: distances of 1e-30 whose
    # bound-dual steps are cancelling 1e30 terms that no two orders of evaluation agree on)
    inside = rng.uniform(lower + 0.01 * (upper - lower), upper - 0.01 * (upper - lower))
    dv0 = np.where(free, (inside - v) / ap0, 0.0)
    wl, wu, rd, theta = (np.empty(size) for _ in range(4))
    rp, rhs_p, rhs_h, rhs_k = (np.empty(m) for _ in range(4))
    cells = np.empty(3 * case.n_cells)
    v_new = np.where(free, np.clip(v + ap0 * dv0, lower, upper), v)
    zl_new, zu_new, aty_new = zl + ad0 * dzl0, zu + ad0 * dzu0, aty + ad0 * atdy0
    comp, dual_worst, primal_worst, big, obj, finite = kernels.advance(
        *cols, v, zl, zu, lower, upper, free, c, dv0, dzl0, dzu0, ap0, ad0, aty, atdy0, 1e-30, 1e-12, wl, wu, rd,
        theta, rp, rhs_p, rhs_h, cells)
    assert finite and np.allclose(v, v_new) and np.allclose(zl, zl_new) and np.allclose(zu, zu_new)
    assert np.allclose(aty, aty_new)
    assert np.allclose(rp, -(a @ v_new[:n] - v_new[n:]))
    assert math.isclose(primal_worst, np.abs(rp).max()) and math.isclose(obj, c @ v_new, abs_tol=1e-9)
    assert np.allclose(wl[free], v_new[free] - lower[free]) and np.allclose(rd[free], (c - aty - zl + zu)[free])
    assert math.isclose(comp, (wl * zl + wu * zu)[free].sum(), rel_tol=1e-12)
    assert np.all(theta[~free] == 0.0)
    g_p = np.where(free, rd + zl - zu, 0.0)
    h = np.where(free, 1 / wu - 1 / wl, 0.0)
    assert np.allclose(rhs_p, rp + a_full @ (theta * g_p)) and np.allclose(rhs_h, a_full @ (theta * h))

    def steps(dv, dzl, dzu):
        down, up, l_down, u_down = (free & (dv < 0)), (free & (dv > 0)), (free & (dzl < 0)), (free & (dzu < 0))
        ap = min([1.0, *(-wl[down] / dv[down]), *(wu[up] / dv[up])])
        ad = min([1.0, *(-zl[l_down] / dzl[l_down]), *(-zu[u_down] / dzu[u_down])])
        return ap, ad

    q = np.empty(case.n_cells)
    dy = rng.normal(size=m)
    dva = np.zeros(size)
    ap, ad, s1, s2, s3 = kernels.predictor_tail(*cols, dy, theta, wl, wu, zl, zu, rd, free, dva, rhs_k, q,
                                                cells[:len(q)])
    dva_ref = np.where(free, theta * (a_full.T @ dy - g_p), 0.0)
    dzla, dzua = np.where(free, (-wl * zl - zl * dva_ref) / wl, 0.0), np.where(free, (-wu * zu + zu * dva_ref) / wu, 0)
    assert np.allclose(dva, dva_ref) and np.allclose((ap, ad), steps(dva_ref, dzla, dzua))
    after = ((wl + ap * dva) * (zl + ad * dzla) + (wu - ap * dva) * (zu + ad * dzua))[free].sum()
    assert math.isclose(comp + ap * s1 + ad * s2 + ap * ad * s3, after, rel_tol=1e-9, abs_tol=1e-9)
    k = np.where(free, dva_ref * (dzla / wl + dzua / wu), 0.0)
    assert np.allclose(rhs_k, a_full @ (theta * k))

    target = float(rng.uniform(0, 1))
    dy = rng.normal(size=m)
    dv, dzl, dzu, atdy = (np.zeros(size) for _ in range(4))
    ap, ad = kernels.corrector_tail(*cols, dy, theta, wl, wu, zl, zu, rd, free, target, dva, atdy, dv, dzl, dzu, q)
    r_l, r_u = target - wl * zl - dva_ref * dzla, target - wu * zu + dva_ref * dzua
    g_ref = np.where(free, rd - r_l / wl + r_u / wu, 0.0)
    assert np.allclose(g_ref, g_p + target * h + k)  # the corrector's right side is the sum of the three parts
    dv_ref = np.where(free, theta * (a_full.T @ dy - g_ref), 0.0)
    dzl_ref, dzu_ref = np.where(free, (r_l - zl * dv_ref) / wl, 0.0), np.where(free, (r_u + zu * dv_ref) / wu, 0.0)
    assert np.allclose(atdy, a_full.T @ dy) and np.allclose(dv, dv_ref)
    assert np.allclose(dzl, dzl_ref) and np.allclose(dzu, dzu_ref)
    assert np.allclose((ap, ad), steps(dv_ref, dzl_ref, dzu_ref))

def test_the_column_passes_in_chunks_equal_one_chunk_and_do_not_depend_on_the_threads():
    """The passes' chunks of whole cars write disjoint rows: chunked, they give the one-chunk results (up to the order
    of the per-cell sums), and the same bits on one thread as on two."""
    import numba

    from gridcharge.solvers.structured import kernels

    problem = gridcharge.build_problem(residential(60, 3, v2g_share=0.5))
    layout = derive_layout(build_lp(problem))
    chunked, single = kernels.columns(layout, chunks=5), kernels.columns(layout, chunks=1)
    assert len(chunked.chunk_run) - 1 == 6  # five of cars, one for the columns of no car
    covered = np.concatenate([np.arange(a, b) for a, b in zip(chunked.run_start, chunked.run_stop)])
    assert np.array_equal(np.sort(covered), np.arange(layout.n_col))
    run_chunk = np.repeat(np.arange(len(chunked.chunk_run) - 1), np.diff(chunked.chunk_run))
    col_chunk = np.empty(layout.n_col, dtype=np.int64)
    for r, (a, b) in enumerate(zip(chunked.run_start, chunked.run_stop)):
        col_chunk[a:b] = run_chunk[r]
    entry_chunk = np.repeat(col_chunk, np.diff(chunked.ptr))
    for row in np.unique(chunked.idx):
        assert len(np.unique(entry_chunk[chunked.idx == row])) == 1  # every row of R in one chunk
    rng = np.random.default_rng(5)
    n, m = layout.n_col, len(layout.row_lower)
    size = n + m
    lower = np.r_[layout.col_lower, np.maximum(layout.row_lower, -1e3)]
    upper = np.r_[layout.col_upper, np.minimum(layout.row_upper, 1e3)]
    free = upper > lower
    state = {"v": np.where(free, lower + rng.uniform(0.1, 0.9, size) * (upper - lower), lower),
             "zl": rng.uniform(0.1, 2, size), "zu": rng.uniform(0.1, 2, size), "aty": rng.normal(size=size)}
    c, dv, dzl, dzu, atdy = rng.normal(size=size), rng.normal(size=size), *(rng.uniform(0, 1, size) for _ in range(2)), \
        rng.normal(size=size)
    dy = rng.normal(size=m)
    n_cells = layout.n_groups * layout.n_periods

    def passes(cols):
        s = {k: v.copy() for k, v in state.items()}
        wl, wu, rd, theta, dva, atdy_out, dv_out, dzl_out, dzu_out = (np.zeros(size) for _ in range(9))
        rp, rhs_p, rhs_h, rhs_k = (np.zeros(m) for _ in range(4))
        cells = np.empty(3 * n_cells)
        first = kernels.advance(*cols.arrays, s["v"], s["zl"], s["zu"], lower, upper, free, c, dv, dzl, dzu, 0.5, 0.4,
                                s["aty"], atdy, 1e-30, 1e-12, wl, wu, rd, theta, rp, rhs_p, rhs_h, cells)
        second = kernels.predictor_tail(*cols.arrays, dy, theta, wl, wu, s["zl"], s["zu"], rd, free, dva, rhs_k,
                                        cells[:n_cells], cells[n_cells:2 * n_cells])
        third = kernels.corrector_tail(*cols.arrays, dy, theta, wl, wu, s["zl"], s["zu"], rd, free, 0.1, dva, atdy_out,
                                       dv_out, dzl_out, dzu_out, cells[:n_cells])
        return (first, second, third), (s["v"], s["aty"], wl, wu, rd, theta, rp, rhs_p, rhs_h, dva, rhs_k, atdy_out,
                                        dv_out, dzl_out, dzu_out)

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one_thread = passes(chunked)
        reference = passes(single)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two_threads = passes(chunked)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one_thread[1], two_threads[1]):
        assert np.array_equal(a, b)
    assert one_thread[0] == two_threads[0]
    for a, b in zip(one_thread[1], reference[1]):
        assert np.allclose(a, b, rtol=1e-12, atol=1e-9)
    assert np.allclose(np.array(one_thread[0][0], dtype=float), np.array(reference[0][0], dtype=float), rtol=1e-12)
    assert np.allclose(one_thread[0][1], reference[0][1], rtol=1e-12) and one_thread[0][2] == reference[0][2]


def test_an_unsplit_solve_uses_the_cores_it_may_run_on_and_a_split_one_a_single_thread():
    import os

    from gridcharge.solvers.structured import SPLIT_THREADS, default_threads

    assert default_threads(split=False) == len(os.sched_getaffinity(0))
    assert default_threads(split=True) == SPLIT_THREADS == 1
