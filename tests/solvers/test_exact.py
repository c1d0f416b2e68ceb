"""The charge-or-discharge rule: exact netting moves and binaries, whatever the LP method leaves behind."""

import numpy as np
import pytest

import gridcharge
from gridcharge.bench.generate import residential
from gridcharge.formulation.lp import build_lp
from gridcharge.schedule import node_loads
from gridcharge.solvers.exact import both_ways, net_where_free
from gridcharge.solvers.highs import run_highs
from gridcharge.testing import assert_feasible, assert_objective_close
from tests.builders import at, charger, instance, node, session


def v2g_site(export_limit_kw=None):
    nodes = [node("T", import_limit_kw=20.0, export_limit_kw=export_limit_kw)]
    return instance(periods=4, nodes=nodes, import_price=[0.9, 0.5, 0.3, 0.3], export_price=[0.8, 0.4, 0.2, 0.2],
                    chargers=[charger("c", max_discharge_kw=7.0, efficiency=0.9)],
                    sessions=[session("s", "c", at(0), at(4), 10.0, max_discharge_kw=7.0, battery_kwh=50.0,
                                      initial_kwh=20.0, min_kwh=15.0)])


def with_residue(problem, lp, x, pair, amount):
    """A still LP-feasible point with ``amount`` kW of simultaneous charge and discharge added at ``pair``."""
    y = x.copy()
    y[pair] += amount
    y[lp.discharge_col[pair]] += amount
    eta = problem.efficiency[lp.pair_session[pair]]
    loss = amount * (1 / eta - eta) * lp.pair_fraction[pair] * problem.step_hours
    later = (lp.pair_session == lp.pair_session[pair]) & (np.arange(len(lp.pair_session)) >= pair)
    y[lp.energy_col[later]] -= loss  # the round trip loses energy from then on
    return y


def test_keeping_the_power_removes_residue_and_restores_the_battery():
    problem = gridcharge.build_problem(v2g_site())
    lp = build_lp(problem)
    x = run_highs(lp).x
    assert not both_ways(lp, x).any()
    noisy = with_residue(problem, lp, x, pair=1, amount=0.5)
    both = both_ways(lp, noisy)
    assert both.tolist() == [False, True, False, False]
    cleaned, done = net_where_free(problem, lp, noisy, both)
    assert done[1]
    assert not both_ways(lp, cleaned).any()
    np.testing.assert_allclose(lp.power_kw(cleaned, 1, 4), lp.power_kw(x, 1, 4), atol=1e-12)
    np.testing.assert_allclose(cleaned[lp.energy_col], x[lp.energy_col], atol=1e-12)
    assert lp.col_cost @ cleaned <= lp.col_cost @ noisy


def test_keeping_the_battery_when_keeping_the_power_would_overfill():
    problem = gridcharge.build_problem(v2g_site())
    lp = build_lp(problem)
    x = run_highs(lp).x
    last = int(np.flatnonzero(lp.pair_session == 0)[-1])
    assert x[lp.energy_col[last]] == pytest.approx(10.0)  # the car leaves with exactly its request: no room
    noisy = with_residue(problem, lp, x, pair=last, amount=0.5)
    noisy[lp.energy_col[last]] += 0.5 * (1 / 0.9 - 0.9)  # ... and the LP point keeps the battery full
    noisy[last] += 0.5 * (1 / 0.9 - 0.9) / 0.9  # by charging a little more
    cleaned, done = net_where_free(problem, lp, noisy, both_ways(lp, noisy))
    assert done[last] and not both_ways(lp, cleaned).any()
    # the battery path is unchanged and the signed power is never above what it was
    assert cleaned[lp.energy_col[last]] == pytest.approx(noisy[lp.energy_col[last]])
    assert lp.power_kw(cleaned, 1, 4)[0, -1] <= lp.power_kw(noisy, 1, 4)[0, -1] + 1e-12


def test_residue_that_would_break_a_reverse_flow_limit_is_not_netted():
    # export limit 0 at the transformer and discharge in period 0 exactly at the limit: lowering power breaks it
    problem = gridcharge.build_problem(v2g_site(export_limit_kw=0.0))
    lp = build_lp(problem)
    x = run_highs(lp).x
    last = int(np.flatnonzero(lp.pair_session == 0)[-1])
    noisy = with_residue(problem, lp, x, pair=last, amount=0.5)
    noisy[lp.energy_col[last]] += 0.5 * (1 / 0.9 - 0.9)
    noisy[last] += 0.5 * (1 / 0.9 - 0.9) / 0.9
    # make the pair's own signed power sit exactly on the reverse-flow limit (0 kW net)
    noisy[last] = noisy[lp.discharge_col[last]]
    assert node_loads(problem, lp.power_kw(noisy, 1, 4))[0, -1] == pytest.approx(0.0)
    _, done = net_where_free(problem, lp, noisy, both_ways(lp, noisy))
    assert not done[last]


@pytest.mark.parametrize("seed", [3, 4])
def test_interior_point_without_crossover_reaches_the_simplex_optimum_without_binaries(seed):
    data = residential(40, seed=seed)
    simplex = gridcharge.solve(data, method="simplex")
    ipm = gridcharge.solve(data, method="ipm")
    assert_feasible(data, ipm)
    assert ipm.summary["n_binaries"] == 0
    assert_objective_close(ipm.summary["objective_cny"], simplex.summary["objective_cny"], rel=1e-6)
