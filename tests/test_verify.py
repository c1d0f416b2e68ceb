"""The independent verifier on hand-made schedules: each breaks one rule once and must be reported as exactly that
violation (kind, where, period); a schedule that keeps every rule is ok and its cost equals a hand computation."""

import numpy as np
import pandas as pd
import pytest

import gridcharge
from gridcharge import load_instance, verify
from gridcharge.problem import build_problem
from gridcharge.schedule import Schedule
from tests.builders import at, charger, instance, node, session


def kinds(result) -> list[tuple[str, str, int]]:
    return [(v.kind, v.where, v.period) for v in result.violations]


def only_violation(data, power):
    """The one violation ``power`` causes on ``data``."""
    result = verify(data, np.asarray(power, dtype=float))
    assert len(result.violations) == 1, f"expected one violation, got:\n{result}"
    assert not result.ok
    return result.violations[0]


# ------------------------------------------------------------------------------------------------------------------
# one car, one charger: plugged-in, charge and discharge limits


def one_car(energy_kwh=10.0, **session_fields) -> dict:
    """Charger c (7 kW, V2G 5 kW) on T; car s (V2G 5 kW, 30 of 60 kWh) plugged in 01:00-03:00 of a 4 h horizon."""
    fields = dict(max_discharge_kw=5.0, battery_kwh=60.0, initial_kwh=30.0, min_kwh=0.0)
    fields.update(session_fields)
    return instance(periods=4, chargers=[charger("c", max_charge_kw=7.0, max_discharge_kw=5.0)],
                    sessions=[session("s", "c", at(1), at(3), energy_kwh, **fields)])


def test_a_schedule_that_keeps_every_rule_is_ok():
    result = verify(one_car(), np.array([[0.0, 7.0, 3.0, 0.0]]))
    assert result.ok and result.violations == []
    assert str(result) == "ok: no violation"
    assert result.delivered_kwh == pytest.approx(10.0) and result.unmet_kwh == pytest.approx(0.0)


def test_not_plugged_in():
    v = only_violation(one_car(), [[0.0, 7.0, 2.0, 1.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("not_plugged_in", "s", 3, 1.0, 0.0)
    v = only_violation(one_car(), [[-0.5, 7.0, 3.0, 0.0]])
    assert (v.kind, v.where, v.period, v.value) == ("not_plugged_in", "s", 0, -0.5)


def test_charge_limit_of_the_charger():
    v = only_violation(one_car(), [[0.0, 7.5, 2.5, 0.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("charge_limit", "s", 1, 7.5, 7.0)


def test_charge_limit_of_the_car_itself():
    # the car takes at most 3.7 kW on a 7 kW charger
    v = only_violation(one_car(max_charge_kw=3.7), [[0.0, 3.7, 4.0, 0.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("charge_limit", "s", 2, 4.0, 3.7)


def test_car_limit_above_the_charger_limit_does_not_raise_the_charger_limit():
    v = only_violation(one_car(max_charge_kw=11.0), [[0.0, 8.0, 2.0, 0.0]])
    assert (v.kind, v.period, v.limit) == ("charge_limit", 1, 7.0)


def test_discharge_limit_of_a_one_way_charger():
    data = instance(periods=2, chargers=[charger("c", max_discharge_kw=0.0)],
                    sessions=[session("s", "c", at(0), at(2), 0.0, max_discharge_kw=7.0, battery_kwh=60.0,
                                      initial_kwh=30.0, min_kwh=0.0)])
    v = only_violation(data, [[-2.0, 0.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("discharge_limit", "s", 0, 2.0, 0.0)


def test_discharge_limit_of_a_car_without_v2g():
    # the charger could discharge 5 kW, the car leaves max_discharge_kw at its default 0
    data = one_car(max_discharge_kw=0.0)
    v = only_violation(data, [[0.0, 7.0, -1.0, 0.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("discharge_limit", "s", 2, 1.0, 0.0)


def test_discharge_limit_of_the_v2g_car():
    v = only_violation(one_car(max_discharge_kw=3.0), [[0.0, -4.0, 7.0, 0.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("discharge_limit", "s", 1, 4.0, 3.0)


# ------------------------------------------------------------------------------------------------------------------
# battery and request


def test_battery_upper():
    # 30 kWh in a 36 kWh battery: at most 6 kWh more at any time. 7 kWh then -5 kWh: above at period 1 only,
    # and the 2 kWh left at departure are within the 5 kWh request.
    data = one_car(energy_kwh=5.0, battery_kwh=36.0)
    v = only_violation(data, [[0.0, 7.0, -5.0, 0.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("battery_upper", "s", 1, 7.0, 6.0)


def test_battery_upper_with_a_tight_battery():
    data = one_car(energy_kwh=5.0, battery_kwh=40.0, initial_kwh=35.0)
    v = only_violation(data, [[0.0, 6.0, -1.0, 0.0]])
    assert (v.kind, v.where, v.period) == ("battery_upper", "s", 1)
    assert (v.value, v.limit) == pytest.approx((6.0, 5.0))


def test_battery_lower():
    # initial 30, floor 27: discharging 4 kWh goes 1 kWh below the floor in period 1; charged back in period 2
    data = one_car(min_kwh=27.0)
    v = only_violation(data, [[0.0, -4.0, 4.0, 0.0]])
    assert (v.kind, v.where, v.period) == ("battery_lower", "s", 1)
    assert (v.value, v.limit) == pytest.approx((4.0, 3.0))  # energy removed vs removable [kWh]


def test_battery_lower_without_a_battery_is_zero_energy_added():
    data = instance(periods=2, chargers=[charger("c", max_discharge_kw=5.0)],
                    sessions=[session("s", "c", at(0), at(2), 5.0, max_discharge_kw=5.0)])
    v = only_violation(data, [[-1.0, 3.0]])
    assert (v.kind, v.where, v.period) == ("battery_lower", "s", 0)
    assert (v.value, v.limit) == pytest.approx((1.0, 0.0))


def test_over_request():
    # room in the battery, but 11 kWh delivered for a 10 kWh request: reported at the last period plugged in
    v = only_violation(one_car(), [[0.0, 7.0, 4.0, 0.0]])
    assert (v.kind, v.where, v.period) == ("over_request", "s", 2)
    assert (v.value, v.limit) == pytest.approx((11.0, 10.0))


def test_over_request_accounts_for_efficiency():
    # 10 kWh at the charger with efficiency 0.9 is 9 kWh in a battery that asked for 9: exactly enough
    data = instance(periods=2, chargers=[charger("c", max_charge_kw=10.0, efficiency=0.9)],
                    sessions=[session("s", "c", at(0), at(2), 9.0, battery_kwh=60.0)])
    assert verify(data, np.array([[5.0, 5.0]])).ok
    v = only_violation(data, [[5.0, 5.5]])
    assert (v.kind, v.where, v.period) == ("over_request", "s", 1)
    assert (v.value, v.limit) == pytest.approx((0.9 * 10.5, 9.0))


def test_over_request_without_a_battery_is_also_above_the_battery_bound():
    # without battery_kwh the upper bound on energy added is energy_kwh itself: both rules break
    data = instance(periods=2, chargers=[charger("c")], sessions=[session("s", "c", at(0), at(2), 5.0)])
    result = verify(data, np.array([[3.0, 3.0]]))
    assert kinds(result) == [("battery_upper", "s", 1), ("over_request", "s", 1)]
    assert result.delivered_kwh == pytest.approx(5.0)  # a full car draws less: it takes what it asked for


def test_partial_presence_scales_the_energy():
    # plugged in 00:30-01:15 on hourly periods: 8 kW gives 4 kWh in period 0 and 4 kW gives 1 kWh in period 1
    data = instance(periods=2, chargers=[charger("c", max_charge_kw=8.0)],
                    sessions=[session("s", "c", at(0.5), at(1.25), 5.0, battery_kwh=60.0)])
    result = verify(data, np.array([[8.0, 4.0]]))
    assert result.ok and result.delivered_kwh == pytest.approx(5.0)
    # 4.4 kW for a quarter hour is 1.1 kWh: 0.1 kWh over; a full hour at 4.4 kW would have been 0.4 kWh over
    v = only_violation(data, [[8.0, 4.4]])
    assert (v.kind, v.where, v.period) == ("over_request", "s", 1)
    assert (v.value, v.limit) == pytest.approx((5.1, 5.0))


# ------------------------------------------------------------------------------------------------------------------
# the tree: node import, node export, phase


def feeder() -> dict:
    """T (100 kW) → M (10 kW import, 4 kW export, PV at M), chargers a, b on M and c on T, all 1 h sessions."""
    nodes = [node("T", import_limit_kw=100.0),
             node("M", "T", import_limit_kw=10.0, export_limit_kw=4.0, generation_kw=[0.0, 3.0])]
    chargers = [charger("a", "M", max_discharge_kw=7.0), charger("b", "M", max_discharge_kw=7.0), charger("c", "T")]
    car = dict(max_discharge_kw=7.0, battery_kwh=60.0, initial_kwh=30.0, min_kwh=0.0)
    sessions = [session("sa", "a", at(0), at(2), 14.0, **car), session("sb", "b", at(0), at(2), 14.0, **car),
                session("sc", "c", at(0), at(2), 14.0)]
    return instance(periods=2, nodes=nodes, chargers=chargers, sessions=sessions)


def test_node_import():
    # 6 + 5 = 11 kW at M in period 0 (limit 10); period 1 has 3 kW of PV: 6 + 5 - 3 = 8 kW
    v = only_violation(feeder(), [[6.0, 6.0], [5.0, 5.0], [7.0, 7.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("node_import", "M", 0, 11.0, 10.0)


def test_node_import_sums_the_subtree_at_the_root():
    nodes = [node("T", import_limit_kw=12.0, base_load_kw=[2.0, 2.0]), node("M", "T"), node("N", "M", kind="group")]
    data = instance(periods=2, nodes=nodes, chargers=[charger("a", "N"), charger("b", "M")],
                    sessions=[session("x", "a", at(0), at(2), 14.0), session("y", "b", at(0), at(2), 14.0)])
    v = only_violation(data, [[7.0, 5.5], [2.0, 5.0]])
    # period 0: 2 base + 7 + 2 = 11 kW; period 1: 2 + 5.5 + 5 = 12.5 kW at T (M and N have no limit)
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("node_import", "T", 1, 12.5, 12.0)


def test_node_import_counts_a_partly_present_car_with_its_full_power():
    # the car is there for 15 minutes of the hour; the limit holds for instantaneous power
    nodes = [node("T", import_limit_kw=5.0)]
    data = instance(periods=1, nodes=nodes, chargers=[charger("c")], sessions=[session("s", "c", at(0), at(0.25), 2.0)])
    v = only_violation(data, [[6.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("node_import", "T", 0, 6.0, 5.0)


def test_node_export_with_generation():
    # period 1: 3 kW of PV at M and both cars discharging 1 kW = 5 kW of reverse flow, export limit 4 kW
    v = only_violation(feeder(), [[2.0, -1.0], [2.0, -1.0], [0.0, 0.0]])
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("node_export", "M", 1, 5.0, 4.0)


def test_node_export_from_generation_alone():
    nodes = [node("T", export_limit_kw=2.0, generation_kw=[1.0, 2.5])]
    data = instance(periods=2, nodes=nodes)
    v = only_violation(data, np.zeros((0, 2)))
    assert (v.kind, v.where, v.period, v.value, v.limit) == ("node_export", "T", 1, 2.5, 2.0)


def test_phase_import_of_a_single_phase_charger():
    # phase limit 5 kW at T; 3 kW of base load is 1 kW per phase; 4.5 kW on phase B makes 5.5 kW on B
    nodes = [node("T", phase_import_limit_kw=5.0, base_load_kw=3.0)]
    data = instance(periods=2, nodes=nodes, chargers=[charger("b", phases="B"), charger("a", phases="A")],
                    sessions=[session("x", "b", at(0), at(2), 14.0), session("y", "a", at(0), at(2), 14.0)])
    v = only_violation(data, [[4.0, 4.5], [4.0, 4.0]])
    assert (v.kind, v.where, v.period) == ("phase_import", "T/B", 1)
    assert (v.value, v.limit) == pytest.approx((5.5, 5.0))


def test_phase_import_of_a_three_phase_charger_loads_each_phase_by_a_third():
    nodes = [node("T", phase_import_limit_kw=5.0)]
    data = instance(periods=1, nodes=nodes, chargers=[charger("c", max_charge_kw=22.0)],
                    sessions=[session("s", "c", at(0), at(1), 30.0)])
    assert verify(data, np.array([[15.0]])).ok
    result = verify(data, np.array([[16.5]]))
    assert kinds(result) == [("phase_import", "T/A", 0), ("phase_import", "T/B", 0), ("phase_import", "T/C", 0)]
    assert [v.value for v in result.violations] == pytest.approx([5.5, 5.5, 5.5])


def test_phase_limit_of_a_parent_sums_the_phases_below():
    nodes = [node("T", phase_import_limit_kw=8.0), node("M1", "T"), node("M2", "T")]
    data = instance(periods=1, nodes=nodes, chargers=[charger("a", "M1", phases="C"), charger("b", "M2", phases="C")],
                    sessions=[session("x", "a", at(0), at(1), 7.0), session("y", "b", at(0), at(1), 7.0)])
    v = only_violation(data, [[5.0], [4.0]])
    assert (v.kind, v.where, v.period) == ("phase_import", "T/C", 0) and v.value == pytest.approx(9.0)


def test_not_finite():
    v = only_violation(one_car(), [[0.0, np.nan, 3.0, 0.0]])
    assert (v.kind, v.where, v.period) == ("not_finite", "s", 1)
    assert np.isnan(v.value)
    v = only_violation(one_car(), [[0.0, 7.0, np.inf, 0.0]])
    assert (v.kind, v.where, v.period) == ("not_finite", "s", 2)
    v = only_violation(one_car(), [[-np.inf, 7.0, 3.0, 0.0]])
    assert (v.kind, v.where, v.period) == ("not_finite", "s", 0)


# ------------------------------------------------------------------------------------------------------------------
# a set-point is a limit: a full car draws less (issue 16; docs/design/executable.md)


def stepped(energy_kwh=1.0, **fields) -> dict:
    """One car on a single-phase 220 V charger at 6 A min / 1 A steps (1.32 kW, then 0.22 kW), efficiency 1,
    hourly periods, plugged in 00:00-03:00 of a 3 h horizon."""
    chargers = [charger("c", max_charge_kw=7.0, phases="A", min_current_a=6, current_step_a=1,
                        **fields.pop("charger", {}))]
    return instance(periods=3, nodes=fields.pop("nodes", None), chargers=chargers,
                    sessions=[session("s", "c", at(0), at(3), energy_kwh, **fields)],
                    import_price=fields.pop("import_price", 1.0) if "import_price" in fields else [0.5, 1.0, 2.0])


def test_the_last_increment_may_overshoot_by_less_than_a_step_and_the_car_takes_its_request():
    # 1 kWh asked; the smallest allowed set-point is 1.32 kW: the car draws 1 kW and is full
    result = verify(stepped(1.0), np.array([[1.32, 0.0, 0.0]]))
    assert result.ok, str(result)
    assert result.delivered_kwh == pytest.approx(1.0) and result.unmet_kwh == pytest.approx(0.0)
    assert result.cost_cny == pytest.approx(0.5 * 1.0)  # the bill counts what the car draws, not the set-point
    # 3 kWh: 1.32 + 1.76 kW = 3.08 kWh scheduled, the last step over by 0.08 kWh < 0.22 kWh
    result = verify(stepped(3.0), np.array([[1.32, 1.76, 0.0]]))
    assert result.ok and result.delivered_kwh == pytest.approx(3.0)
    assert result.cost_cny == pytest.approx(0.5 * 1.32 + 1.0 * 1.68)


def test_an_overshoot_beyond_the_last_increment_is_over_request():
    # 3 kWh: 1.32 + 1.98 kW would be 3.30 kWh; 1.76 kW already covers the 1.68 kWh left: one step too many
    v = only_violation(stepped(3.0, battery_kwh=60.0), [[1.32, 1.98, 0.0]])
    assert (v.kind, v.where, v.period) == ("over_request", "s", 1)
    assert (v.value, v.limit) == pytest.approx((3.30, 3.08))  # scheduled so far vs what the allowance permits
    # a set-point on a car that is already full: every such period
    result = verify(stepped(1.0, battery_kwh=60.0), np.array([[1.32, 1.32, 1.32]]))
    assert kinds(result) == [("over_request", "s", 1), ("over_request", "s", 2)]
    # a continuous car has no allowance at all (its set-point can be exactly what it needs)
    v = only_violation(instance(periods=2, chargers=[charger("c")], sessions=[session("s", "c", at(0), at(2), 5.0,
                                                                                        battery_kwh=60.0)]),
                       [[3.0, 2.5]])
    assert (v.kind, v.period, v.value, v.limit) == ("over_request", 1, 5.5, 5.0)


def test_the_minimum_may_overshoot_only_when_less_than_the_minimum_is_needed():
    # 0.5 kWh: 1.32 kW is the smallest allowed set-point, fine; 1.54 kW is a step more than needed
    assert verify(stepped(0.5), np.array([[0.0, 1.32, 0.0]])).ok
    result = verify(stepped(0.5), np.array([[0.0, 1.54, 0.0]]))
    assert [(v.kind, v.period) for v in result.violations] == [("battery_upper", 1), ("over_request", 1)]


def test_export_is_checked_at_the_power_the_full_car_draws():
    # 2 kW of PV at T with an export limit of 1 kW: the 1.32 kW set-point would keep it (0.68 kW reverse flow),
    # but the car needs 0.5 kWh and draws 0.5 kW: 1.5 kW flow back
    data = stepped(0.5, nodes=[node("T", export_limit_kw=1.0, generation_kw=[2.0, 0.0, 0.0])])
    v = only_violation(data, [[1.32, 0.0, 0.0]])
    assert (v.kind, v.where, v.period) == ("node_export", "T", 0)
    assert (v.value, v.limit) == pytest.approx((1.5, 1.0))
    # import limits stay at the set-point (the most the car can draw)
    data = stepped(0.5, nodes=[node("T", import_limit_kw=1.0)])
    v = only_violation(data, [[1.32, 0.0, 0.0]])
    assert (v.kind, v.value, v.limit) == ("node_import", 1.32, 1.0)


def test_a_v2g_car_stops_at_its_request_only_after_its_last_discharge():
    # 60 kWh battery at 30 kWh, floor 28, 2 kWh asked, V2G 7 kW. Charging 3.52 kW then giving back 1.32 kW: above
    # the request mid-stay is allowed (the battery bound is the cap then), final 2.2 kWh is over the request
    car = dict(max_discharge_kw=7.0, battery_kwh=60.0, initial_kwh=30.0, min_kwh=28.0)
    data = stepped(2.0, charger={"max_discharge_kw": 7.0}, **car)
    v = only_violation(data, [[3.52, -1.32, 0.0]])
    assert (v.kind, v.period, v.value, v.limit) == ("over_request", 2, pytest.approx(2.2), 2.0)
    # give back first, then charge: after the last discharge the car stops at its request, so 3.52 kW (3.52 kWh
    # scheduled for the 3.32 kWh left) is the last increment and the car ends at exactly 2 kWh
    result = verify(data, np.array([[-1.32, 3.52, 0.0]]))
    assert result.ok, str(result)
    assert result.delivered_kwh == pytest.approx(2.0)
    # the battery floor holds at what the car takes: 0.5 kWh of room left in the battery (at the floor now): 1.32 kW
    # fills it with 0.5 kWh (the smallest set-point covering it), so giving back 1.32 kWh later goes 0.82 kWh below
    data = stepped(0.5, charger={"max_discharge_kw": 7.0}, **dict(car, initial_kwh=59.5, min_kwh=59.5))
    v = only_violation(data, [[1.32, 0.0, -1.32]])
    assert (v.kind, v.period) == ("battery_lower", 2)
    assert (v.value, v.limit) == pytest.approx((1.32 - 0.5, 0.0))


# ------------------------------------------------------------------------------------------------------------------
# tolerance


def test_tolerance_hides_solver_noise():
    assert verify(one_car(), np.array([[0.0, 7.0 + 1e-9, 3.0 - 1e-9, 0.0]])).ok


@pytest.mark.parametrize("limit_kw", [7.0, 630.0, 2500.0, 100_000.0])
def test_tolerance_does_not_hide_a_real_violation_of_1e_3_kw_at_a_node(limit_kw):
    # base load fills the node to 5 kW below its limit; the car takes 5.001 kW
    nodes = [node("T", import_limit_kw=limit_kw, base_load_kw=limit_kw - 5.0)]
    data = instance(periods=1, nodes=nodes, chargers=[charger("c")], sessions=[session("s", "c", at(0), at(1), 7.0)])
    assert verify(data, np.array([[5.0]])).ok
    v = only_violation(data, [[5.001]])
    assert (v.kind, v.where, v.period) == ("node_import", "T", 0)
    assert v.value - v.limit == pytest.approx(1e-3, rel=1e-6)


def test_tolerance_does_not_hide_a_real_violation_of_1e_3_kw_at_a_charger_or_battery():
    v = only_violation(one_car(), [[0.0, 7.001, 2.999, 0.0]])
    assert (v.kind, v.period) == ("charge_limit", 1)
    v = only_violation(one_car(battery_kwh=1000.0, initial_kwh=10.0, min_kwh=10.0, max_discharge_kw=5.0),
                       [[0.0, -0.001, 0.001, 0.0]])
    assert (v.kind, v.period) == ("battery_lower", 1)
    big = instance(periods=1, chargers=[charger("c", max_charge_kw=2000.0)],
                   sessions=[session("s", "c", at(0), at(1), 1500.0, battery_kwh=2000.0)])
    v = only_violation(big, [[1500.001]])
    assert (v.kind, v.period) == ("over_request", 0) and v.value - v.limit == pytest.approx(1e-3, rel=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# the cost


def test_cost_equals_a_hand_computation():
    # 4 half-hour periods; the car is there 00:15-01:45 (half of period 0, all of 1 and 2, half of 3); efficiency
    # 0.9; V2G in period 3 at an export price; degradation, unmet penalty and a peak charge on the root.
    nodes = [node("T", base_load_kw=[1.0, 1.0, 1.0, 1.0])]
    data = instance(
        periods=4, step_minutes=30, nodes=nodes, import_price=[1.0, 0.5, 0.2, 0.8], export_price=[0.0, 0.0, 0.0, 1.5],
        chargers=[charger("c", max_charge_kw=7.0, max_discharge_kw=3.0, efficiency=0.9)],
        sessions=[session("s", "c", at(0.25), at(1.75), 8.0, max_discharge_kw=3.0)],
        objective={"unmet_penalty_cny_per_kwh": 20.0, "degradation_cny_per_kwh": 0.1, "peak_cny_per_kw": 2.0},
    )
    power = np.array([[4.0, 6.0, 6.0, -2.0]])
    result = verify(data, power)
    assert result.ok, str(result)
    # energy at the charger [kWh]: 4*0.5*0.5 = 1, 6*0.5 = 3, 3, and -2*0.5*0.5 = -0.5 (discharged)
    # into the battery: 0.9*(1 + 3 + 3) - 0.5/0.9
    delivered = 0.9 * 7.0 - 0.5 / 0.9
    unmet = 8.0 - delivered
    peak = 1.0 + 6.0  # root load is base + charger power: 5, 7, 7, -1
    cost = (1.0 * 1.0 + 3.0 * 0.5 + 3.0 * 0.2) - 0.5 * 1.5 + 0.1 * 0.5 + 20.0 * unmet + 2.0 * peak
    assert result.delivered_kwh == pytest.approx(delivered)
    assert result.unmet_kwh == pytest.approx(unmet)
    assert result.peak_kw == pytest.approx(peak)
    assert result.cost_cny == pytest.approx(cost, rel=1e-12)
    assert result.cost_cny == pytest.approx(61.51111111111111)


def test_cost_of_an_idle_schedule_is_the_unmet_penalty_and_the_base_peak():
    data = instance(periods=2, nodes=[node("T", base_load_kw=[3.0, 4.0])], chargers=[charger("c")],
                    sessions=[session("s", "c", at(0), at(2), 5.0)], objective={"peak_cny_per_kw": 1.0})
    result = verify(data, np.zeros((1, 2)))
    assert result.ok
    assert result.cost_cny == pytest.approx(100.0 * 5.0 + 4.0)


def test_cost_agrees_with_the_solver_objective():
    data = instance(periods=4, import_price=[1.0, 0.8, 0.3, 0.3], chargers=[charger("c1")],
                    sessions=[session("s1", "c1", at(0), at(4), 10.0)])
    schedule = gridcharge.solve(data)
    result = verify(data, schedule)
    assert result.ok
    assert result.cost_cny == pytest.approx(3.0) == pytest.approx(schedule.summary["objective_cny"])


# ------------------------------------------------------------------------------------------------------------------
# the schedule's forms


def three_forms(data, power):
    inst = load_instance(data)
    problem = build_problem(inst)
    wide = pd.DataFrame(power.T, columns=[s.id for s in inst.sessions])
    schedule = Schedule(problem=problem, power=power, summary={})
    return [power, wide, schedule]


def test_array_wide_frame_and_schedule_give_the_same_verdict():
    data = feeder()
    power = np.array([[6.0, 6.0], [5.0, 5.0], [7.0, 7.0]])
    results = [verify(data, form) for form in three_forms(data, power)]
    for result in results:
        assert kinds(result) == [("node_import", "M", 0)]
        assert result.cost_cny == pytest.approx(results[0].cost_cny)


def test_a_long_frame_is_read_too():
    data = feeder()
    long = pd.DataFrame({"session_id": ["sa", "sb", "sc"], "period": [0, 0, 1], "power_kw": [6.0, 5.0, 7.0]})
    assert kinds(verify(data, long)) == [("node_import", "M", 0)]


@pytest.mark.parametrize("period", [-1, 2, 0.5])
def test_a_long_frame_with_a_period_out_of_range_is_an_error(period):
    # -1 must not wrap around to the last period
    long = pd.DataFrame({"session_id": ["sa"], "period": [period], "power_kw": [6.0]})
    with pytest.raises(ValueError, match=r"periods must be integers 0 \.\. 1"):
        verify(feeder(), long)


def test_a_wide_frame_in_another_column_order_is_matched_by_name():
    data = feeder()
    frame = pd.DataFrame({"sc": [0.0, 0.0], "sb": [5.0, 0.0], "sa": [6.0, 0.0]})
    assert kinds(verify(data, frame)) == [("node_import", "M", 0)]


def test_a_schedule_of_the_wrong_shape_is_an_error():
    with pytest.raises(ValueError, match=r"shape \(sessions, periods\) = \(3, 2\); got \(2, 3\)"):
        verify(feeder(), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="missing e.g. \\['sc'\\]"):
        verify(feeder(), pd.DataFrame({"sa": [0.0, 0.0], "sb": [0.0, 0.0]}))


def test_verify_does_not_change_the_power_it_is_given():
    power = np.array([[0.0, np.nan, 3.0, 0.0]])
    verify(one_car(), power)
    assert np.isnan(power[0, 1])


def test_the_verdict_as_a_table_and_as_text():
    result = verify(feeder(), np.array([[6.0, 6.0], [5.0, 5.0], [7.0, 7.0]]))
    frame = result.frame()
    assert list(frame.columns) == ["kind", "where", "period", "value", "limit", "allowed"]
    assert frame.iloc[0].tolist() == ["node_import", "M", 0, 11.0, 10.0, None]
    assert str(result) == "1 violation(s):\n  node_import: M period 0: 11 vs limit 10"
    assert result.overload_kwh == {"M": pytest.approx(1.0)}


def test_a_repeated_check_is_answered_again_only_for_the_same_instance_and_power():
    """The verdict of the last (instance, power) pair is reused (a solver's acceptance test and gridcharge.solve's
    gate check the same schedule); any change of the power, even in place, or another instance is checked afresh."""
    inst = load_instance(one_car())
    power = np.array([[0.0, 7.0, 3.0, 0.0]])
    first = verify(inst, power)
    second = verify(inst, power.copy())
    assert first.ok and second.ok and second.cost_cny == first.cost_cny
    first.violations.append("edited by its caller")  # a caller's edit of its verdict stays its own
    assert verify(inst, power.copy()).violations == []
    power[0, 1] = 7.5  # in place: the same array object, now over the charge limit
    assert ("charge_limit", "s", 1) in kinds(verify(inst, power))
    power[0, 1] = 7.0
    assert verify(inst, power).ok
    other = load_instance(one_car(energy_kwh=5.0))  # the same power is too much energy for this car
    assert not verify(other, power).ok
