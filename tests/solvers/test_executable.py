"""Executable schedules (issue 16): the instance fields, the verifier's ``not_executable``, the exact MIP, the
rounding, the baselines, honest unmet energy. Properties on random instances; a brute force on tiny ones."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gridcharge
from gridcharge.errors import InfeasibleError, InstanceError, SolverError
from gridcharge.problem import build_problem
from gridcharge.solvers.baselines import BASELINES
from gridcharge.schedule import cost_cny, delivered_kwh, node_loads, taken_kwh
from gridcharge.solvers.executable import off_grid, round_and_refill, round_down, trade_steps, trim
from gridcharge.verify import verify
from tests.builders import at, charger, instance, modified, node, session
from tests.test_properties import instances


def stepped_car(**fields) -> dict:
    """One single-phase 220 V charger at 6 A min / 1 A step (1.32 kW, then 0.22 kW steps) and one car."""
    charger_fields = {"max_charge_kw": 7.0, "phases": "A", "min_current_a": 6, "current_step_a": 1,
                      **fields.pop("charger", {})}
    return instance(periods=4, step_minutes=60, import_price=[1.0, 0.5, 0.8, 2.0],
                    nodes=[node("T", **fields.pop("node", {}))],
                    chargers=[charger("C", **charger_fields)],
                    sessions=[session("s", "C", at(0), at(4), fields.pop("energy_kwh", 3.0), **fields)])


# ------------------------------------------------------------------------------------------------------------------
# instance and problem


def test_the_fields_give_powers_per_phase_and_voltage():
    data = instance(chargers=[charger("A1", phases="B", min_current_a=6, current_step_a=1),
                              charger("A3", max_charge_kw=22, voltage_v=230, min_current_a=6, current_step_a=0.5),
                              charger("F", max_charge_kw=22)],
                    sessions=[session("a", "A1", at(0), at(1), 1), session("b", "A3", at(0), at(1), 1,
                                                                           min_current_a=10.2),
                              session("c", "F", at(0), at(1), 1)])
    p = build_problem(data)
    np.testing.assert_allclose(p.min_power_kw, [6 * 0.22, 10.5 * 0.69, 0.0])  # 10.2 A raised to the 0.5 A step
    np.testing.assert_allclose(p.power_step_kw, [0.22, 0.5 * 0.69, 0.0])
    assert p.phase_count.tolist() == [1, 3, 3]
    assert p.executable
    np.testing.assert_allclose(p.top_power_kw(), [31 * 0.22, 22.0 // 0.345 * 0.345, 22.0])


def test_instances_without_the_fields_are_continuous():
    p = build_problem(instance(chargers=[charger("C")], sessions=[session("s", "C", at(0), at(1), 1)]))
    assert not p.executable and p.min_power_kw.tolist() == [0.0]


@pytest.mark.parametrize("path, value, words", [
    ("chargers[0].min_current_a", 40, "chargers[0].min_current_a: 40.0 — a current whose power is at most "
                                      "max_charge_kw 7 (this one: 40 A x 220 W/A = 8.8 kW)"),
    ("chargers[0].current_step_a", 32, "chargers[0].current_step_a: 32.0 — a current whose power"),
    ("chargers[0].min_current_a", -1, "chargers[0].min_current_a: -1 — must be >= 0"),
    ("chargers[0].current_step_a", 0, "chargers[0].current_step_a: 0 — must be >= 0.001"),
    ("chargers[0].voltage_v", 20000, "chargers[0].voltage_v: 20000 — must be <= 1,000"),
    ("sessions[0].min_current_a", 33, "sessions[0].min_current_a: 33.0 — a current whose power is at most the "
                                      "charger's max_charge_kw 7"),
    ("sessions[0].max_charge_kw", 1.0, "sessions[0].max_charge_kw: 1.0 — at least the power of the smallest current"),
])
def test_out_of_range_fields_are_errors_naming_the_field(path, value, words):
    with pytest.raises(InstanceError) as info:
        gridcharge.load_instance(modified(stepped_car(), path, value))
    assert words in str(info.value)


def test_a_v2g_limit_below_the_minimum_names_the_discharge_field():
    data = stepped_car(charger={"max_discharge_kw": 1.0})
    with pytest.raises(InstanceError, match=r"chargers\[0\].max_discharge_kw: 1.0 — 0 \(no V2G\) or at least"):
        gridcharge.load_instance(data)
    data = stepped_car(charger={"max_discharge_kw": 7.0}, max_discharge_kw=1.0, battery_kwh=40, initial_kwh=20)
    with pytest.raises(InstanceError, match=r"sessions\[0\].max_discharge_kw: 1.0"):
        gridcharge.load_instance(data)


# ------------------------------------------------------------------------------------------------------------------
# the verifier


def test_the_verifier_flags_powers_inside_the_minimum_and_off_the_step_both_ways():
    data = stepped_car(charger={"max_discharge_kw": 7.0}, max_discharge_kw=7.0, battery_kwh=40, initial_kwh=20)
    result = verify(data, np.array([[0.5, 1.32 + 0.22 * 3, -1.5, 0.0]]))
    bad = [v for v in result.violations if v.kind == "not_executable"]
    assert [(v.period, v.value) for v in bad] == [(0, 0.5), (2, -1.5)]
    assert bad[0].allowed == pytest.approx((0.0, 1.32)) and bad[0].limit == pytest.approx(0.0)
    assert bad[1].allowed == pytest.approx((-1.32, -1.54)) and bad[1].limit == pytest.approx(-1.54)
    assert "nearest allowed 0 or 1.32 kW" in str(bad[0])


def test_the_verifier_checks_the_set_point_of_a_partial_period():
    data = stepped_car()
    data["sessions"][0]["arrival"] = at(0.5)  # plugged for half of period 0: its value is still the set-point
    assert [v.kind for v in verify(data, np.array([[1.0, 0, 0, 0]])).violations] == ["not_executable"]
    assert verify(data, np.array([[1.32, 0, 0, 0]])).ok


def test_continuous_instances_never_get_not_executable():
    data = instance(chargers=[charger("C")], sessions=[session("s", "C", at(0), at(4), 5)])
    assert verify(data, np.array([[0.37, 0.01, 0, 0]])).ok


# ------------------------------------------------------------------------------------------------------------------
# the exact MIP against a brute force


def brute_force(data) -> float:
    """The cheapest schedule over every combination of allowed powers (tiny instances only) [CNY]."""
    p = build_problem(data)
    values = []
    for s in range(p.n_sessions):
        grid = np.arange(0, p.top_power_kw()[s] + 1e-9, p.power_step_kw[s])
        values.append(grid[(grid == 0) | (grid >= p.min_power_kw[s] - 1e-9)])
    best = np.inf
    cells = [(s, t) for s in range(p.n_sessions) for t in range(p.n_periods) if p.presence[s, t] > 0]
    for combo in itertools.product(*[values[s] for s, _ in cells]):
        power = np.zeros((p.n_sessions, p.n_periods))
        for (s, t), v in zip(cells, combo):
            power[s, t] = v
        result = verify(data, power)
        if result.ok:
            best = min(best, result.cost_cny)
    return best


@pytest.mark.parametrize("energy, limit", [(3.0, None), (2.9, 2.0), (5.0, 1.5), (0.5, None)])
def test_the_exact_mip_finds_the_brute_force_optimum(energy, limit):
    data = stepped_car(energy_kwh=energy, charger={"max_charge_kw": 2.2},
                       node={} if limit is None else {"import_limit_kw": limit})
    data["horizon"]["periods"] = 3
    data["sessions"][0]["departure"] = at(3)
    data["tariff"]["import_cny_per_kwh"] = [1.0, 0.5, 0.8]
    schedule = gridcharge.solve(data, executable="exact", mip_rel_gap=1e-9)
    assert schedule.summary["objective_cny"] == pytest.approx(brute_force(data), abs=1e-6)
    assert schedule.summary["executable_method"] == "exact_mip"


def test_a_known_optimum_by_hand():
    # 3 kWh on a 1.32 kW minimum with 0.22 kW steps (efficiency 1): 13 steps give 2.86 kWh, 14 give 3.08. A set-point
    # is a limit and a full car draws less, so 3.08 kW in the 0.5 CNY/kWh hour delivers the 3 kWh: 1.50 CNY, nothing
    # unmet (before: 2.86 kWh and 0.14 kWh unmet at 100 CNY/kWh, 15.43 CNY)
    schedule = gridcharge.solve(stepped_car(), executable="exact", mip_rel_gap=1e-9)
    np.testing.assert_allclose(schedule.power, [[0.0, 3.08, 0.0, 0.0]], atol=1e-9)
    assert schedule.summary["objective_cny"] == pytest.approx(1.5)
    assert schedule.summary["energy_delivered_kwh"] == pytest.approx(3.0)
    assert schedule.summary["unmet_kwh"] == pytest.approx(0.0, abs=1e-9)
    assert schedule.summary["undeliverable_kwh"] == 0.0


def test_only_the_last_increment_may_overshoot_and_the_mip_fills_in_the_cheapest_hour():
    # 3 kWh again, the cheapest hour capped at 2 kW by the node: 1.98 kW there (9 steps), the 1.02 kWh left in the
    # next cheapest hour (0.8 CNY/kWh) as 1.32 kW, the minimum (it draws 1.02 kW): 0.99 + 0.816 CNY
    schedule = gridcharge.solve(stepped_car(node={"import_limit_kw": 2.0}), executable="exact", mip_rel_gap=1e-9)
    np.testing.assert_allclose(schedule.power, [[0.0, 1.98, 1.32, 0.0]], atol=1e-9)
    assert schedule.summary["objective_cny"] == pytest.approx(0.99 + 0.816)
    assert schedule.verification.delivered_kwh == pytest.approx(3.0)


def test_the_mip_tops_up_a_v2g_car_in_its_last_period():
    # a V2G car (it could give back down to 18 kWh) asks for 3 kWh; the last hour is the cheapest: 3.08 kW there
    # (14 steps) delivers the 3 kWh, 1.50 CNY; before the last-increment rule: 2.86 kWh and 0.14 kWh unmet
    data = stepped_car(charger={"max_discharge_kw": 7.0}, max_discharge_kw=7.0, battery_kwh=40.0, initial_kwh=20.0,
                       min_kwh=18.0)
    data["tariff"]["import_cny_per_kwh"] = [2.0, 2.0, 2.0, 0.5]
    schedule = gridcharge.solve(data, executable="exact", mip_rel_gap=1e-9)
    assert schedule.summary["executable_method"] == "exact_mip"
    np.testing.assert_allclose(schedule.power, [[0.0, 0.0, 0.0, 3.08]], atol=1e-9)
    assert schedule.summary["mip_objective_cny"] == pytest.approx(1.5)
    assert schedule.verification.delivered_kwh == pytest.approx(3.0)


# ------------------------------------------------------------------------------------------------------------------
# the rounding


def test_round_down_lands_on_the_grid_and_never_above():
    p = build_problem(stepped_car())
    power = np.array([[0.5, 1.4, 6.99, 7.0]])
    down = round_down(p, power)
    np.testing.assert_allclose(down, [[0.0, 1.32, 31 * 0.22, 31 * 0.22]])
    assert not off_grid(p, down).any() and (down <= power + 1e-12).all()


def v2g_seller(efficiency=0.9, energy_kwh=3.0, import_limit_kw=None, prices=(0.5, 0.5, 2.0, 2.0), sale=1.5):
    """One 6 A / 1 A V2G car (it may give back down to 18 kWh of its 40) that buys in the cheap hours and sells in
    its last one."""
    data = stepped_car(charger={"max_discharge_kw": 7.0, "efficiency": efficiency}, max_discharge_kw=7.0,
                       battery_kwh=40.0, initial_kwh=20.0, min_kwh=18.0, energy_kwh=energy_kwh,
                       node={} if import_limit_kw is None else {"import_limit_kw": import_limit_kw})
    data["tariff"]["import_cny_per_kwh"] = list(prices)
    data["tariff"]["export_cny_per_kwh"] = [0.0, 0.0, 0.0, sale]
    return data


def two_v2g_sellers(efficiency, energies, import_limit_kw, prices, sale, export_limit_kw=None):
    """:func:`v2g_seller` with a second such car (energy ``energies[1]``, three-phase) on the same node."""
    data = v2g_seller(efficiency, energies[0], import_limit_kw, prices, sale)
    second = copy.deepcopy(data["chargers"][0]) | {"id": "C2", "phases": "ABC", "max_charge_kw": 11.0}
    data["chargers"].append(second)
    data["sessions"].append(copy.deepcopy(data["sessions"][0]) | {"id": "s2", "charger": "C2",
                                                                  "energy_kwh": energies[1]})
    if export_limit_kw is not None:
        data["nodes"][0]["export_limit_kw"] = export_limit_kw
    return data


def test_a_v2g_car_ending_with_a_sale_keeps_it_and_lands_just_below_its_request():
    # efficiency 0.9: a charge step (0.22 kW for an hour) puts 0.198 kWh into the battery, a discharge step takes
    # 0.2444 kWh. The car buys in the 0.5 CNY hours and sells in the last (1.5 CNY/kWh), ending at its 3 kWh. Rounded
    # down it ends below its request and nothing after its sale can be cut at it; before trade_steps the rounding
    # gave the sale up ([3.52, 0, 0, 0] kW, +1.67 CNY). One charge step less and one discharge step less land
    # 0.0031 kWh below the request: the exact MIP's schedule
    data = v2g_seller()
    rounding = gridcharge.solve(data, executable="rounding")
    exact = gridcharge.solve(data, executable="exact", mip_rel_gap=1e-9)
    assert rounding.verification.ok and not off_grid(rounding.problem, rounding.power).any()
    assert rounding.power[0, 3] < 0  # the sale is kept
    assert rounding.summary["unmet_kwh"] < 0.0464  # within one charge-minus-discharge quantum
    assert rounding.summary["objective_cny"] == pytest.approx(exact.summary["objective_cny"], abs=1e-6)
    assert rounding.summary["objective_cny"] < 0


def _rounded_start(data, p):
    """The rounding's first schedule (charges rounded down, discharges towards 0, re-filled) and its peak cap, or
    None where that start breaks a rule (the rounding then takes another road)."""
    plain = copy.deepcopy(data)
    for record in plain["chargers"] + plain["sessions"]:
        record.pop("min_current_a", None)
        record.pop("current_step_a", None)
    continuous = solved(plain)
    if continuous is None:
        return None
    start = trim(p, round_down(p, continuous.power))
    if not verify(p.instance, start).ok:
        return None
    peak = float(node_loads(p, start)[p.root].max()) if p.peak_cost > 0 else None
    refilled, _ = round_and_refill(p, start, peak_cap_kw=peak)
    return (refilled, peak) if verify(p.instance, refilled).ok else None


def _assert_traded_is_no_worse(p, before, peak):
    traded = trim(p, trade_steps(p, before, peak_cap_kw=peak))
    result = verify(p.instance, traded)
    assert result.ok, result.violations[:3]
    assert not off_grid(p, traded).any()
    assert (delivered_kwh(p, traded) >= delivered_kwh(p, before) - 1e-9).all()
    assert (delivered_kwh(p, traded) <= p.energy_request_kwh + 1e-9).all()
    assert cost_cny(p, traded) <= cost_cny(p, before) + 1e-9
    return traded


@settings(max_examples=80, deadline=None)
@given(efficiency=st.integers(850, 990).map(lambda k: k / 1000),
       energies=st.lists(st.floats(0.5, 8.0), min_size=2, max_size=2), two=st.booleans(),
       limit=st.sampled_from([None, 3.0, 5.0, 7.5, 12.0]), export=st.sampled_from([None, 4.0, 8.0]),
       sale=st.floats(0.6, 3.0), prices=st.lists(st.sampled_from([0.3, 0.5, 0.8, 1.2, 2.0]), min_size=4, max_size=4))
def test_trading_steps_never_breaks_a_limit_loses_energy_or_costs_more(efficiency, energies, two, limit, export,
                                                                        sale, prices):
    data = (two_v2g_sellers(efficiency, energies, limit, prices, sale, export) if two
            else v2g_seller(efficiency, energies[0], limit, prices, sale))
    p = build_problem(data)
    found = _rounded_start(data, p)
    assume(found is not None)
    before, peak = found
    _assert_traded_is_no_worse(p, before, peak)


def with_currents(data, draw) -> dict | None:
    """The instance with drawn minimum currents and steps on its chargers (and some cars); None if invalid."""
    out = copy.deepcopy(data)
    for c in out["chargers"]:
        c["min_current_a"] = draw(st.sampled_from([0.0, 6.0, 6.0, 8.0]))
        step = draw(st.sampled_from([None, 1.0, 1.0, 2.0]))
        if step is not None:
            c["current_step_a"] = step
        if draw(st.booleans()):
            c["voltage_v"] = 230.0
    for s in out["sessions"]:
        if draw(st.integers(0, 3)) == 0:
            s["min_current_a"] = 10.0
    try:
        gridcharge.load_instance(out)
    except InstanceError:
        return None
    return out if build_problem(out).executable else None


@st.composite
def stepped_instances(draw):
    """A random instance and the same with drawn minimum currents and steps (executable ones only)."""
    data = draw(instances())
    stepped = with_currents(data, draw)
    assume(stepped is not None)
    return data, stepped


@settings(max_examples=60, deadline=None)
@given(pair=stepped_instances())
def test_trading_steps_keeps_every_limit_on_random_instances(pair):
    data, stepped = pair
    p = build_problem(stepped)
    found = _rounded_start(stepped, p)
    assume(found is not None)
    _assert_traded_is_no_worse(p, *found)


# ------------------------------------------------------------------------------------------------------------------
# properties


def solved(data, **options):
    try:
        return gridcharge.solve(data, **options)
    except InfeasibleError:
        return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=stepped_instances())
def test_every_solver_gives_executable_verified_schedules_never_below_the_continuous_optimum(pair):
    data, stepped = pair
    continuous = solved(data)
    exact = solved(stepped, executable="exact")
    if exact is None:
        return  # no executable schedule keeps every limit (a V2G car may have to discharge below its minimum)
    assert continuous is not None  # the MIP's optimum is a schedule of the continuous problem
    try:
        rounding = gridcharge.solve(stepped, executable="rounding")
    except SolverError as exc:  # refused, never emitted: an export limit the rounded-down charge would break
        assert "export" in str(exc)
        rounding = None
    except InfeasibleError:  # floored cars would have to discharge, which the rounding does not do
        rounding = None
    p = build_problem(stepped)
    bound = continuous.summary["objective_cny"]
    tol = 1e-6 * max(1.0, abs(bound))
    for schedule in [exact] + ([rounding] if rounding else []):
        assert schedule.verification.ok  # gridcharge.solve verified it: not_executable included
        assert not off_grid(p, schedule.power).any()
        assert schedule.summary["objective_cny"] >= bound - tol
        assert schedule.summary["continuous_objective_cny"] == pytest.approx(bound, rel=1e-6, abs=1e-6)
    if rounding is not None:
        gap = exact.summary["mip_gap"] or 0.0
        assert exact.summary["objective_cny"] <= rounding.summary["objective_cny"] + gap * abs(
            exact.summary["objective_cny"]) + 1e-5 * max(1.0, abs(bound))
    for name in BASELINES:
        try:
            baseline = gridcharge.solve(stepped, solver=name)
        except InfeasibleError:
            continue
        assert not off_grid(p, baseline.power).any(), name
        assert baseline.summary["objective_cny"] >= bound - tol or name == "uncontrolled"


@settings(max_examples=60, deadline=None)
@given(pair=stepped_instances())
def test_the_rounding_never_breaks_a_limit(pair):
    data, stepped = pair
    continuous = solved(data)
    assume(continuous is not None)
    p = build_problem(stepped)
    power = np.clip(continuous.power, 0.0, None)  # the rounding's domain: charging (a discharging car takes the MIP)
    before = verify(stepped, power)
    rounded, _ = round_and_refill(p, power)
    after = verify(stepped, rounded)
    assert not off_grid(p, rounded).any()
    kinds_before = {(v.kind, v.where, v.period) for v in before.violations if v.kind != "not_executable"}
    new = [v for v in after.violations if (v.kind, v.where, v.period) not in kinds_before
           and v.kind not in ("not_executable", "node_export")]
    assert not new, new  # over_request / battery_upper included: only the last increment overshoots, within the rule
    assert (delivered_kwh(p, rounded) <= p.energy_request_kwh + 1e-9).all()
    np.testing.assert_allclose(trim(p, rounded), rounded)  # no set-point above the smallest one covering the need


@settings(max_examples=60, deadline=None)
@given(pair=stepped_instances(), draw=st.data())
def test_trim_keeps_what_the_cars_take_and_only_lowers_set_points(pair, draw):
    data, stepped = pair
    p = build_problem(stepped)
    # any executable charging schedule, overshooting or not: 0 or k steps at or above the minimum, at most the top
    rng = np.random.default_rng(draw.draw(st.integers(0, 2**32 - 1)))
    top = p.top_power_kw()[:, None]
    power = round_down(p, rng.uniform(-0.5, 1.0, p.presence.shape).clip(0, None) * top) * (p.presence > 0)
    trimmed = trim(p, power)
    np.testing.assert_allclose(taken_kwh(p, trimmed), taken_kwh(p, power), atol=1e-5)
    assert (trimmed <= power + 1e-12).all() and not off_grid(p, trimmed).any()
    np.testing.assert_allclose(trim(p, trimmed), trimmed)
    # what is left is exactly the overshoot the verifier allows: no battery_upper / over_request any more
    assert not [v for v in verify(stepped, trimmed).violations if v.kind in ("over_request", "battery_upper")]


def test_unmet_energy_is_split_into_undeliverable_and_grid_limited():
    # 10 kWh in 2 h at 1.32..6.82 kW (31 x 0.22) with efficiency 1: the charger can give 13.64 kWh; a 2 kW limit
    # leaves 2 x 1.98 kWh, so 6.04 kWh are grid-limited and nothing is undeliverable; 20 kWh: 6.36 undeliverable
    for energy, undeliverable in ((10.0, 0.0), (20.0, 20.0 - 13.64)):
        data = stepped_car(energy_kwh=energy, node={"import_limit_kw": 2.0})
        data["horizon"]["periods"] = 2
        data["sessions"][0]["departure"] = at(2)
        data["tariff"]["import_cny_per_kwh"] = [1.0, 0.5]
        summary = gridcharge.solve(data).summary
        assert summary["undeliverable_kwh"] == pytest.approx(undeliverable)
        assert summary["grid_limited_unmet_kwh"] == pytest.approx(energy - undeliverable - 2 * 1.98)
        assert summary["unmet_kwh"] == pytest.approx(summary["undeliverable_kwh"] + summary["grid_limited_unmet_kwh"])
