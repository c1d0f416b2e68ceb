"""Instance → arrays: presence fractions, subtree sums, phase shares, bounds."""

import numpy as np
import pytest

import gridcharge
from tests.builders import at, charger, instance, node, session


def test_presence_is_the_fraction_of_each_period_inside_the_session():
    data = instance(periods=4, chargers=[charger("c")],
                    sessions=[session("s", "c", at(0.5), at(2.25), 1.0)])
    problem = gridcharge.build_problem(data)
    np.testing.assert_allclose(problem.presence[0], [0.5, 1.0, 0.25, 0.0])


def test_a_session_that_arrived_before_the_horizon_is_present_from_its_start():
    data = instance(periods=2, start=at(1), chargers=[charger("c")],
                    sessions=[session("s", "c", at(0), at(2.5), 1.0)])
    np.testing.assert_allclose(gridcharge.build_problem(data).presence[0], [1.0, 0.5])


def test_subtree_base_load_adds_up_the_tree_minus_generation():
    nodes = [node("T", base_load_kw=1.0), node("F", "T", kind="feeder", base_load_kw=[2.0, 4.0], generation_kw=1.0),
             node("M", "F", base_load_kw=3.0)]
    problem = gridcharge.build_problem(instance(periods=2, nodes=nodes))
    index = {n: i for i, n in enumerate(problem.node_ids)}
    np.testing.assert_allclose(problem.base_net_kw[index["M"]], [3.0, 3.0])
    np.testing.assert_allclose(problem.base_net_kw[index["F"]], [4.0, 6.0])
    np.testing.assert_allclose(problem.base_net_kw[index["T"]], [5.0, 7.0])


def test_membership_puts_each_session_under_all_its_ancestors():
    nodes = [node("T"), node("F", "T", kind="feeder"), node("M1", "F"), node("M2", "T")]
    data = instance(nodes=nodes, chargers=[charger("c1", "M1"), charger("c2", "M2")],
                    sessions=[session("a", "c1", at(0), at(1), 1.0), session("b", "c2", at(0), at(1), 1.0)])
    problem = gridcharge.build_problem(data)
    members = {(problem.node_ids[n], problem.session_ids[s]) for n, s in zip(problem.member_node, problem.member_session)}
    assert members == {("M1", "a"), ("F", "a"), ("T", "a"), ("M2", "b"), ("T", "b")}


def test_phase_shares_and_the_tighter_of_charger_and_car_limits():
    data = instance(chargers=[charger("c1", phases="B", max_discharge_kw=5.0), charger("c3", phases="ABC")],
                    sessions=[session("a", "c1", at(0), at(1), 1.0, max_charge_kw=3.3, max_discharge_kw=9.0),
                              session("b", "c3", at(0), at(1), 1.0)])
    problem = gridcharge.build_problem(data)
    np.testing.assert_allclose(problem.phase_share, [[0, 1, 0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(problem.charge_max_kw, [3.3, 7.0])
    np.testing.assert_allclose(problem.discharge_max_kw, [5.0, 0.0])


def test_energy_bounds_follow_the_battery_when_given():
    data = instance(chargers=[charger("c1"), charger("c2")],
                    sessions=[session("a", "c1", at(0), at(1), 5.0),
                              session("b", "c2", at(0), at(1), 5.0, battery_kwh=60.0, initial_kwh=30.0, min_kwh=12.0)])
    problem = gridcharge.build_problem(data)
    np.testing.assert_allclose(problem.energy_lower_kwh, [0.0, -18.0])
    np.testing.assert_allclose(problem.energy_upper_kwh, [5.0, 30.0])


def test_the_period_index_is_tz_aware_in_the_horizon_timezone():
    problem = gridcharge.build_problem(instance(periods=3, step_minutes=15))
    assert str(problem.period_start.tz) == "Asia/Shanghai"
    assert problem.period_start[1] - problem.period_start[0] == np.timedelta64(15, "m")
    assert problem.step_hours == pytest.approx(0.25)
