"""Hand-computed optima on small cases. Every schedule also goes through the independent verifier."""

import pytest

import gridcharge
from gridcharge.testing import assert_feasible, assert_objective_close
from tests.builders import at, charger, instance, node, session


@pytest.fixture(params=["highs", "pyomo:highs"])
def solver(request):
    """Each hand-computed optimum is reached by the direct HiGHS model and by the Pyomo model."""
    return request.param


def solved(data, solver, **options):
    schedule = gridcharge.solve(data, solver=solver, **options)
    assert_feasible(data, schedule)
    return schedule


def test_one_car_charges_in_the_cheap_night_hours(solver):
    # 4 hourly periods priced 1.0, 0.8, 0.3, 0.3 CNY/kWh; 10 kWh at up to 7 kW → 7 kWh at 0.3, 3 kWh at 0.3
    data = instance(periods=4, import_price=[1.0, 0.8, 0.3, 0.3], chargers=[charger("c1")],
                    sessions=[session("s1", "c1", at(0), at(4), 10.0)])
    schedule = solved(data, solver)
    assert_objective_close(schedule.summary["objective_cny"], 3.0)
    power = schedule.power_kw["s1"].to_numpy()
    assert power[:2].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert power[2:].sum() == pytest.approx(10.0)
    assert schedule.summary["unmet_kwh"] == pytest.approx(0.0, abs=1e-9)


def test_two_cars_share_a_tight_meter_and_the_shortfall_is_unmet(solver):
    # a 5 kW meter, two cars on two chargers under it, two hours: 10 kWh fits, 14 kWh is wanted
    nodes = [node("T"), node("M", "T", import_limit_kw=5.0)]
    data = instance(periods=2, import_price=0.5, nodes=nodes,
                    chargers=[charger("c1", "M"), charger("c2", "M")],
                    sessions=[session("a", "c1", at(0), at(2), 7.0), session("b", "c2", at(0), at(2), 7.0)])
    schedule = solved(data, solver)
    assert schedule.summary["energy_delivered_kwh"] == pytest.approx(10.0)
    assert schedule.summary["unmet_kwh"] == pytest.approx(4.0)
    assert_objective_close(schedule.summary["objective_cny"], 10 * 0.5 + 4 * 100.0)
    assert schedule.node_load_kw["M"].max() <= 5.0 + 1e-9


def test_v2g_arbitrage_pays_for_its_losses_only_when_the_spread_covers_them(solver):
    # sell 1 h at 2.0, buy back at 0.5 with efficiency 0.9: discharge 7 kW → battery −7/0.9 kWh, refill costs
    # (7/0.9)/0.9 kWh of grid energy at 0.5 → profit 14 − 0.5*7/0.81 per hour of discharge
    common = dict(periods=2, chargers=[charger("c1", max_charge_kw=10.0, max_discharge_kw=7.0, efficiency=0.9)],
                  sessions=[session("s", "c1", at(0), at(2), 0.0, max_discharge_kw=7.0, battery_kwh=60.0,
                                    initial_kwh=30.0, min_kwh=10.0)])
    schedule = solved(instance(import_price=[1.0, 0.5], export_price=[2.0, 0.0], **common), solver)
    assert schedule.power_kw["s"].iloc[0] == pytest.approx(-7.0)
    refill = 7.0 / 0.9 / 0.9
    assert schedule.power_kw["s"].iloc[1] == pytest.approx(refill)
    assert_objective_close(schedule.summary["objective_cny"], -14.0 + 0.5 * refill)
    # a spread that does not cover the round-trip loss: export 0.55, buy back at 0.5 → no discharge at all
    quiet = solved(instance(import_price=[1.0, 0.5], export_price=[0.55, 0.0], **common), solver)
    assert quiet.power_kw["s"].abs().max() == pytest.approx(0.0, abs=1e-9)
    assert_objective_close(quiet.summary["objective_cny"], 0.0)


def test_export_price_above_import_price_never_charges_and_discharges_at_once(solver):
    # export pays 3.0 while import costs 1.0 in the same hour: the LP relaxation charges and discharges 7 kW at
    # once (−14 CNY, battery unchanged); physically the car can only do one. The battery floor allows 3 kWh of
    # discharge, so the real optimum sells 3 kWh at 3.0 and buys them back at 1.0 in hour 2: −6 CNY.
    data = instance(periods=2, import_price=1.0, export_price=[3.0, 0.0],
                    chargers=[charger("c1", max_discharge_kw=7.0)],
                    sessions=[session("s", "c1", at(0), at(2), 0.0, max_discharge_kw=7.0, battery_kwh=60.0,
                                      initial_kwh=30.0, min_kwh=27.0)])
    schedule = solved(data, solver)
    assert schedule.power_kw["s"].tolist() == pytest.approx([-3.0, 3.0])
    assert_objective_close(schedule.summary["objective_cny"], -9.0 + 3.0)
    assert schedule.summary["n_binaries"] >= 1


def test_a_binding_phase_limit_holds_back_the_single_phase_chargers_on_it(solver):
    # two cars on phase A, one on phase B; 4 kW per phase at the transformer; one hour
    nodes = [node("T", phase_import_limit_kw=4.0)]
    data = instance(periods=1, nodes=nodes, import_price=1.0,
                    chargers=[charger("a1", phases="A"), charger("a2", phases="A"), charger("b1", phases="B")],
                    sessions=[session("x", "a1", at(0), at(1), 7.0), session("y", "a2", at(0), at(1), 7.0),
                              session("z", "b1", at(0), at(1), 7.0)])
    schedule = solved(data, solver)
    power = schedule.power_kw.iloc[0]
    assert power["x"] + power["y"] == pytest.approx(4.0)
    assert power["z"] == pytest.approx(4.0)
    assert schedule.summary["unmet_kwh"] == pytest.approx(21.0 - 8.0)


def test_partial_periods_scale_energy_by_the_fraction_present(solver):
    # plugged in from 00:30 to 01:15 on hourly periods: half of period 0 and a quarter of period 1
    data = instance(periods=2, import_price=[1.0, 2.0], chargers=[charger("c1", max_charge_kw=8.0)],
                    sessions=[session("s", "c1", at(0.5), at(1.25), 5.0)])
    schedule = solved(data, solver)
    # period 0 gives at most 8 kW * 0.5 h = 4 kWh at 1.0; the last 1 kWh comes in period 1 at 2.0 (4 kW for 0.25 h)
    assert schedule.power_kw["s"].tolist() == pytest.approx([8.0, 4.0])
    assert_objective_close(schedule.summary["objective_cny"], 4.0 * 1.0 + 1.0 * 2.0)


def test_peak_charge_spreads_load_when_it_costs_more_than_the_price_difference(solver):
    # 10 kWh over two hours; hour 0 is cheaper by 0.1 CNY/kWh but each kW of peak costs 1 CNY
    data = instance(periods=2, import_price=[0.5, 0.6], chargers=[charger("c1", max_charge_kw=10.0)],
                    sessions=[session("s", "c1", at(0), at(2), 10.0)], objective={"peak_cny_per_kw": 1.0})
    schedule = solved(data, solver)
    assert schedule.power_kw["s"].tolist() == pytest.approx([5.0, 5.0])
    assert_objective_close(schedule.summary["objective_cny"], 5 * 0.5 + 5 * 0.6 + 5.0)


def test_infeasible_base_load_names_the_node_the_period_and_the_excess(solver):
    nodes = [node("T", import_limit_kw=100.0, base_load_kw=[90.0, 130.0])]
    data = instance(periods=2, nodes=nodes)
    with pytest.raises(gridcharge.InfeasibleError) as caught:
        gridcharge.solve(data, solver=solver)
    (overload,) = caught.value.overloads
    assert (overload.node, overload.kind, overload.period) == ("T", "import", 1)
    assert overload.excess_kw == pytest.approx(30.0)


def test_allow_overload_reports_overload_energy_instead_of_failing(solver):
    nodes = [node("T", import_limit_kw=100.0, base_load_kw=[90.0, 130.0])]
    schedule = gridcharge.solve(instance(periods=2, step_minutes=30, nodes=nodes), solver=solver, allow_overload=True)
    assert schedule.overload_kwh["T"] == pytest.approx(30.0 * 0.5)
    assert [v.kind for v in schedule.verification.violations] == ["node_import"]


def test_a_site_without_cars_is_optimal_at_zero_power_and_base_load_over_a_limit_is_still_infeasible(solver):
    data = instance(periods=3, nodes=[node("T", import_limit_kw=5.0, base_load_kw=[1.0, 4.0, 2.0])],
                    chargers=[charger("c1", "T")], sessions=[])
    schedule = solved(data, solver)
    assert schedule.summary["status"] == "optimal" and schedule.power.shape == (0, 3)
    assert schedule.summary["peak_kw"] == pytest.approx(4.0)
    over = instance(periods=3, nodes=[node("T", import_limit_kw=3.0, base_load_kw=[1.0, 4.0, 2.0])],
                    chargers=[charger("c1", "T")], sessions=[])
    with pytest.raises(gridcharge.InfeasibleError) as excinfo:
        gridcharge.solve(over, solver=solver)
    assert "'T'" in str(excinfo.value) and "period 1" in str(excinfo.value)
