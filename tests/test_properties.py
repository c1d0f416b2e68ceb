"""Property-based tests: random small valid instances, checked against the verifier and an independent MILP.

The strategy builds instance-v1 mappings directly (no rejection sampling): a 1-3 level tree (transformer, optional
feeders, meters), 1-6 sessions on single- and three-phase chargers, some V2G with consistent batteries, partial-period
arrivals and departures (times on a 5-minute grid, some before the horizon start, some written in UTC), optional
import/export/phase limits drawn around the subtree's own base net load (so that base load alone is rarely over a
limit), optional PV, tariffs with export above import in some periods, efficiency in [0.85, 1], optional peak charge.

The reference model (:mod:`tests.reference_model`) is a separate dense MILP solved with scipy; when gridcharge says
"infeasible", the reference must agree, and vice versa.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gridcharge
from gridcharge.testing import assert_feasible, assert_objective_close
from tests.builders import at, charger, instance, node, session
from tests.reference_model import base_net_load, presence_fraction, solve_reference

BEIJING = timezone(timedelta(hours=8))
START = datetime(2026, 7, 1, 0, 0, tzinfo=BEIJING)
REL = 1e-6
ABS = 1e-6


# ------------------------------------------------------------------------------------------------------------------
# strategies


def _kw(lo: float, hi: float, step: float = 0.5):
    """Round-ish powers/energies so failing examples stay readable."""
    return st.integers(int(round(lo / step)), int(round(hi / step))).map(lambda k: round(k * step, 6))


def _series(values, periods: int):
    """One number, or one per period."""
    return st.one_of(values, st.lists(values, min_size=periods, max_size=periods))


def _time(start: datetime, minutes: int, utc: bool) -> str:
    moment = start + timedelta(minutes=minutes)
    return (moment.astimezone(timezone.utc) if utc else moment).isoformat()


def _grid_time(lo: int, hi: int, step: int):
    """Minutes after the start in [lo, hi]: on the period grid, or on a 5-minute grid (partial periods)."""
    fine = list(range(5 * math.ceil(lo / 5), hi + 1, 5))
    aligned = [m for m in fine if m % step == 0]
    return st.sampled_from(fine) if not aligned else st.one_of(st.sampled_from(aligned), st.sampled_from(fine))


@st.composite
def trees(draw, periods: int):
    """Nodes without limits: a transformer, optionally feeders, meters; some base load and PV."""
    levels = draw(st.integers(1, 3))
    nodes = [{"id": "T", "parent": None, "kind": "transformer"}]
    if levels == 2:
        for i in range(draw(st.integers(1, 3))):
            nodes.append({"id": f"M{i}", "parent": "T", "kind": draw(st.sampled_from(["meter", "feeder", "group"]))})
    elif levels == 3:
        for i in range(draw(st.integers(1, 2))):
            nodes.append({"id": f"F{i}", "parent": "T", "kind": "feeder"})
            for j in range(draw(st.integers(1, 2))):
                nodes.append({"id": f"M{i}{j}", "parent": f"F{i}", "kind": "meter"})
    for node in nodes:
        if draw(st.integers(0, 2)) == 0:
            node["base_load_kw"] = draw(_series(_kw(0, 20, 0.1), periods))
        if draw(st.integers(0, 4)) == 0:
            node["generation_kw"] = draw(_series(_kw(0, 25, 0.1), periods))
    return nodes


def _limit(draw, need: float, scale: float = 1.0):
    """None (no limit) half of the time; otherwise what the base load needs plus a headroom, rarely below it."""
    if draw(st.booleans()):
        return None
    headroom = draw(st.integers(-4, 40)) * scale
    # rounded *up* to a micro-kW: a limit drawn "exactly at the base load" must not undercut it by rounding
    return math.ceil(max(0.0, need + headroom) * 1e6) / 1e6


@st.composite
def instances(draw):
    step = draw(st.sampled_from([15, 30, 60]))
    T = draw(st.integers(2, 8))
    horizon_min = step * T
    start = START + timedelta(minutes=draw(st.sampled_from([0, 45, 18 * 60 + 15])))
    nodes = draw(trees(T))
    node_ids = [n["id"] for n in nodes]

    # chargers
    chargers = []
    for i in range(draw(st.integers(1, 5))):
        charger = {"id": f"c{i}", "node": draw(st.sampled_from(node_ids)),
                   "max_charge_kw": draw(st.sampled_from([3.5, 7.0, 11.0, 22.0])),
                   "phases": draw(st.sampled_from(["A", "B", "C", "ABC"]))}
        if draw(st.booleans()):
            charger["max_discharge_kw"] = draw(st.sampled_from([3.5, 7.0, 11.0]))
        if draw(st.booleans()):
            charger["efficiency"] = draw(st.integers(850, 1000).map(lambda k: k / 1000))
        chargers.append(charger)

    # sessions: sequential, non-overlapping windows per charger on a 5-minute grid; aligned or not
    n_sessions = draw(st.integers(1, 6))
    on_charger = sorted(draw(st.lists(st.integers(0, len(chargers) - 1), min_size=n_sessions, max_size=n_sessions)))
    sessions = []
    cursor = {}
    for n, ci in enumerate(on_charger):
        charger = chargers[ci]
        later = on_charger[n + 1:].count(ci)  # sessions still to come on this charger need 5 minutes each
        last_departure = horizon_min - 5 * later
        arrival = draw(_grid_time(cursor.get(ci, -60), last_departure - 5, step))
        departure = draw(_grid_time(max(arrival, 0) + 5, last_departure, step))
        cursor[ci] = departure
        utc = draw(st.integers(0, 4)) == 0
        session = {"id": f"s{len(sessions)}", "charger": charger["id"], "arrival": _time(start, arrival, utc),
                   "departure": _time(start, departure, utc), "energy_kwh": draw(_kw(0, 30))}
        if draw(st.integers(0, 3)) == 0:
            session["max_charge_kw"] = draw(st.sampled_from([3.0, 6.6, 11.0]))
        v2g = charger.get("max_discharge_kw", 0.0) > 0 and draw(st.integers(0, 2)) > 0
        if v2g:
            session["max_discharge_kw"] = draw(st.sampled_from([3.0, 7.0, 11.0]))
        if draw(st.integers(0, 3)) < (3 if v2g else 1):
            initial = draw(_kw(0, 40))
            battery = initial + session["energy_kwh"] + draw(_kw(0, 30))
            session["battery_kwh"] = max(battery, 1.0)
            if initial > 0 or draw(st.booleans()):
                session["initial_kwh"] = initial
            if draw(st.booleans()):
                session["min_kwh"] = draw(_kw(0, initial))
        sessions.append(session)

    # limits around what the subtree's base load needs on its own
    data = {
        "format": "gridcharge/instance-v1",
        "name": "property",
        "horizon": {"start": _time(start, 0, draw(st.integers(0, 4)) == 0), "step_minutes": step, "periods": T},
        "nodes": nodes,
        "chargers": chargers,
        "sessions": sessions,
        "tariff": {"import_cny_per_kwh": draw(_series(_kw(0.1, 1.5, 0.05), T))},
    }
    if draw(st.integers(0, 4)) == 0:  # the output zone moves no instant
        data["horizon"]["timezone"] = draw(st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
    net = base_net_load(gridcharge.load_instance(data))
    for node in nodes:
        need = net[node["id"]]
        node["import_limit_kw"] = _limit(draw, float(max(0.0, need.max())))
        node["export_limit_kw"] = _limit(draw, float(max(0.0, (-need).max())))
        node["phase_import_limit_kw"] = _limit(draw, float(max(0.0, need.max() / 3.0)), scale=1 / 3)

    export = draw(st.integers(0, 3))
    if export == 1:
        data["tariff"]["export_cny_per_kwh"] = draw(_kw(0, 0.8, 0.05))
    elif export >= 2:  # some periods pay more for export than import costs
        data["tariff"]["export_cny_per_kwh"] = draw(st.lists(_kw(0, 2.0, 0.05), min_size=T, max_size=T))
    objective = {}
    penalty = draw(st.sampled_from([None, 100.0, 5.0, 1.5, 0.5]))
    if penalty is not None:
        objective["unmet_penalty_cny_per_kwh"] = penalty
    degradation = draw(st.sampled_from([None, 0.0, 0.05, 0.3]))
    if degradation is not None:
        objective["degradation_cny_per_kwh"] = degradation
    peak = draw(st.sampled_from([None, 0.0, 0.2, 1.0]))
    if peak is not None:
        objective["peak_cny_per_kw"] = peak
    if objective:
        data["objective"] = objective
    gridcharge.load_instance(data)  # every drawn instance is valid by construction
    return data


# ------------------------------------------------------------------------------------------------------------------
# helpers


def solve_or_none(data, **options):
    """gridcharge's schedule, or None when it says infeasible — in which case the reference must agree."""
    try:
        return gridcharge.solve(data, **options)
    except gridcharge.InfeasibleError as exc:
        reference = solve_reference(data)
        assert not reference.feasible, (
            f"gridcharge says infeasible ({exc}) but the reference finds a schedule costing "
            f"{reference.objective_cny} CNY:\n{reference.power_kw}"
        )
        return None


def power_array(schedule) -> np.ndarray:
    """(S, T) signed power in instance session order."""
    return schedule.power_kw.to_numpy(dtype=float).T


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=ABS)


# ------------------------------------------------------------------------------------------------------------------
# properties


@given(instances())
def test_every_schedule_passes_the_independent_verifier(data):
    schedule = solve_or_none(data)
    if schedule is None:
        return
    assert_feasible(data, schedule)
    assert schedule.verification is not None and schedule.verification.ok


@given(instances())
def test_optimum_matches_the_reference_milp(data):
    reference = solve_reference(data)
    try:
        schedule = gridcharge.solve(data)
    except gridcharge.InfeasibleError as exc:
        assert not reference.feasible, (
            f"gridcharge says infeasible ({exc}) but the reference finds {reference.objective_cny} CNY")
        return
    assert reference.feasible, (
        f"the reference says infeasible but gridcharge found {schedule.summary['objective_cny']} CNY")
    # the reference's own schedule is feasible for the verifier too, and costs what the reference says
    check = gridcharge.verify(data, reference.power_kw)
    assert check.ok, f"reference schedule rejected by the verifier:\n{check}"
    assert_objective_close(check.cost_cny, reference.objective_cny, rel=REL, abs_=ABS)
    assert_objective_close(schedule.summary["objective_cny"], reference.objective_cny, rel=REL, abs_=ABS)


LIMIT_KINDS = ("import_limit_kw", "export_limit_kw", "phase_import_limit_kw")


@given(instances(), st.data())
def test_raising_or_removing_a_limit_never_costs_more(data, draw):
    finite = [(i, kind) for i, node in enumerate(data["nodes"]) for kind in LIMIT_KINDS
              if node.get(kind) is not None]
    relaxed = copy.deepcopy(data)
    if finite:
        i, kind = draw.draw(st.sampled_from(finite), label="limit")
        raise_by = draw.draw(st.sampled_from([None, 0.5, 3.0, 20.0]), label="raise by (None = remove)")
        relaxed["nodes"][i][kind] = None if raise_by is None else data["nodes"][i][kind] + raise_by
    before = solve_or_none(data)
    if before is None:
        return
    after = gridcharge.solve(relaxed)  # a relaxation of a feasible instance is feasible
    tight, loose = before.summary["objective_cny"], after.summary["objective_cny"]
    assert loose <= tight + max(ABS, REL * abs(tight)), f"relaxing a limit raised the optimum {tight} -> {loose}"


@given(instances())
def test_energy_is_conserved_and_the_summary_adds_up(data):
    schedule = solve_or_none(data)
    if schedule is None:
        return
    inst = gridcharge.load_instance(data)
    chargers = {c.id: c for c in inst.chargers}
    power = power_array(schedule)
    f = presence_fraction(inst)
    step_h = inst.horizon.step_minutes / 60.0
    eta = np.array([chargers[s.charger].efficiency for s in inst.sessions])[:, None]
    request = np.array([s.energy_kwh for s in inst.sessions])

    gained = np.where(power >= 0, eta * power * f * step_h, power * f * step_h / eta)
    delivered = gained.sum(axis=1)
    assert np.all(delivered <= request + 1e-6 * np.maximum(1.0, request)), (delivered, request)
    assert np.all(np.abs(power[f == 0]) <= 1e-9), "power while not plugged in"

    summary = schedule.summary
    discharged = (np.clip(-power, 0, None) * f * step_h).sum()
    unmet = np.clip(request - delivered, 0, None).sum()
    assert summary["energy_requested_kwh"] == pytest.approx(request.sum(), rel=1e-9, abs=1e-9)
    assert summary["energy_delivered_kwh"] == pytest.approx(delivered.sum(), rel=1e-9, abs=1e-9)
    assert summary["unmet_kwh"] == pytest.approx(unmet, rel=1e-9, abs=1e-9)
    assert summary["energy_discharged_kwh"] == pytest.approx(discharged, rel=1e-9, abs=1e-9)

    root = inst.root.id
    root_load = base_net_load(inst)[root] + power.sum(axis=0)
    assert schedule.node_load_kw[root].to_numpy() == pytest.approx(root_load, rel=1e-9, abs=1e-9)
    assert summary["peak_kw"] == pytest.approx(root_load.max(), rel=1e-9, abs=1e-9)


@given(instances())
def test_solving_twice_gives_the_same_answer(data):
    first = solve_or_none(data)
    if first is None:
        return
    second = gridcharge.solve(data)
    assert second.summary["objective_cny"] == first.summary["objective_cny"]
    assert np.array_equal(power_array(first), power_array(second))


@given(instances())
def test_reported_objective_equals_the_verifiers_recomputed_cost(data):
    schedule = solve_or_none(data)
    if schedule is None:
        return
    verified = schedule.verification.cost_cny
    assert_objective_close(schedule.summary["objective_cny"], verified, rel=REL, abs_=ABS)
    if schedule.summary.get("solver_objective_cny") is not None:  # the back-end's own objective value, when given
        assert_objective_close(schedule.summary["solver_objective_cny"], verified, rel=REL, abs_=ABS)


@given(instances())
def test_simplex_and_interior_point_agree_on_the_optimum(data):
    simplex = solve_or_none(data, method="simplex")
    if simplex is None:
        with pytest.raises(gridcharge.InfeasibleError):
            gridcharge.solve(data, method="ipm")
        return
    ipm = gridcharge.solve(data, method="ipm")
    assert_feasible(data, ipm)
    assert_objective_close(ipm.summary["objective_cny"], simplex.summary["objective_cny"], rel=REL, abs_=ABS)


# ------------------------------------------------------------------------------------------------------------------
# the reference model itself, on hand-computed optima (so that a cross-check failure points at gridcharge)


def _tiny_ipm_case():
    # s0 (V2G, wants nothing) in period 0, s1 (V2G, wants 0.5 kWh) for 5 of the 15 minutes of period 1, nobody in
    # period 2. Charging s1 costs 0.1/0.85 CNY per kWh plus 1 CNY per kW of root peak, far more than the 1.5 CNY/kWh
    # unmet penalty saves, and the peak cannot go below 0 (period 2 is empty): optimum = 0.5 kWh unmet * 1.5 = 0.75.
    return instance(
        periods=3, step_minutes=15, import_price=0.1,
        chargers=[charger("c0", max_charge_kw=3.5, max_discharge_kw=3.5, efficiency=0.85)],
        sessions=[session("s0", "c0", at(0), at(0.25), 0.0, max_charge_kw=3.0, max_discharge_kw=3.0),
                  session("s1", "c0", at(0.25), at(20 / 60), 0.5, max_discharge_kw=3.0, battery_kwh=1.0,
                          initial_kwh=0.5, min_kwh=0.0)],
        objective={"unmet_penalty_cny_per_kwh": 1.5, "peak_cny_per_kw": 1.0},
    )


@pytest.mark.parametrize("data, expected", [
    # 10 kWh at 7 kW over prices 1.0, 0.8, 0.3, 0.3 → all in the 0.3 hours
    (instance(periods=4, import_price=[1.0, 0.8, 0.3, 0.3], chargers=[charger("c1")],
              sessions=[session("s1", "c1", at(0), at(4), 10.0)]), 3.0),
    # sell 7 kW at 3.0 and buy back... only 3 kWh above the floor: −3*3 + 3*1
    (instance(periods=2, import_price=1.0, export_price=[3.0, 0.0], chargers=[charger("c1", max_discharge_kw=7.0)],
              sessions=[session("s", "c1", at(0), at(2), 0.0, max_discharge_kw=7.0, battery_kwh=60.0,
                                initial_kwh=30.0, min_kwh=27.0)]), -6.0),
    # half of period 0 and a quarter of period 1 at 8 kW
    (instance(periods=2, import_price=[1.0, 2.0], chargers=[charger("c1", max_charge_kw=8.0)],
              sessions=[session("s", "c1", at(0.5), at(1.25), 5.0)]), 6.0),
    # a 1 CNY/kW peak charge spreads 10 kWh evenly
    (instance(periods=2, import_price=[0.5, 0.6], chargers=[charger("c1", max_charge_kw=10.0)],
              sessions=[session("s", "c1", at(0), at(2), 10.0)], objective={"peak_cny_per_kw": 1.0}), 10.5),
    # 4 kW per phase: two cars on A share 4 kW, the car on B gets 4 kW, 13 kWh unmet at 100
    (instance(periods=1, nodes=[node("T", phase_import_limit_kw=4.0)],
              chargers=[charger("a1", phases="A"), charger("a2", phases="A"), charger("b1", phases="B")],
              sessions=[session("x", "a1", at(0), at(1), 7.0), session("y", "a2", at(0), at(1), 7.0),
                        session("z", "b1", at(0), at(1), 7.0)]), 8.0 + 1300.0),
    (_tiny_ipm_case(), 0.75),
])
def test_reference_model_hits_hand_computed_optima(data, expected):
    result = solve_reference(data)
    assert_objective_close(result.objective_cny, expected)
    assert gridcharge.verify(data, result.power_kw).ok


def test_reference_model_agrees_that_base_load_over_a_limit_is_infeasible():
    data = instance(periods=2, nodes=[node("T", import_limit_kw=100.0, base_load_kw=[90.0, 130.0])])
    assert not solve_reference(data).feasible
    with pytest.raises(gridcharge.InfeasibleError):
        gridcharge.solve(data)


# ------------------------------------------------------------------------------------------------------------------
# defects found by the properties, kept as minimal regressions


def test_tiny_ipm_case_is_solved_by_simplex():
    assert_objective_close(gridcharge.solve(_tiny_ipm_case(), method="simplex").summary["objective_cny"], 0.75)


def test_regression_ipm_ending_unknown_on_a_tiny_v2g_instance_still_gives_the_optimum():
    # found by test_simplex_and_interior_point_agree_on_the_optimum: HiGHS's interior point ended with model status
    # 'Unknown' here (postsolve found a dual infeasibility) and gridcharge raised SolverError; fixed in da9a11c
    schedule = gridcharge.solve(_tiny_ipm_case(), method="ipm")
    assert_objective_close(schedule.summary["objective_cny"], 0.75)


def burn_through_losses_case():
    # 1 kW of PV and no reverse flow allowed at the transformer: the one car must take >= 1 kW for the hour. It wants
    # 0 kWh and has no battery_kwh, so the energy added must stay in [0, 0]: any charge breaks that, and a car never
    # charges and discharges at once, so there is no schedule. (The LP relaxation has one: charge 3.60 kW and
    # discharge 2.60 kW at once, 0.85 * 3.60 = 2.60 / 0.85, burning 1 kWh as round-trip loss.)
    return instance(
        periods=1, import_price=0.1, nodes=[node("T", generation_kw=1.0, export_limit_kw=0.0)],
        chargers=[charger("c", max_charge_kw=7.0, max_discharge_kw=7.0, efficiency=0.85)],
        sessions=[session("s", "c", at(0), at(1), 0.0, max_discharge_kw=7.0)],
    )


def test_burn_through_losses_case_is_infeasible_for_the_reference():
    assert not solve_reference(burn_through_losses_case()).feasible


def test_regression_infeasible_only_by_exclusivity_raises_infeasible_error():
    # found by test_raising_or_removing_a_limit_never_costs_more (the shrunk example had the same mechanism)
    with pytest.raises(gridcharge.InfeasibleError) as caught:
        gridcharge.solve(burn_through_losses_case())
    assert ("T", "export", 0) in {(o.node, o.kind, o.period) for o in caught.value.overloads}


def _binary_residue_case():
    # Three 5-minute sessions in a row on one three-phase charger in period 1 (period 0 is empty); the feeder allows
    # 5.333334 kW per phase, i.e. 16.000002 kW in all, counting every car present in the period at full power.
    # Export (1.35) pays more than import (0.2), efficiency 1. Optimum: the V2G car s2 discharges 5.999998 kW so that
    # s3 and s4 can both charge 11 kW: 100 * 45.5 - 100 * 16.000002/12 + 0.2 * 22/12 - 1.35 * 5.999998/12
    # + 0.2 * 16.000002 (peak) = 4419.558317...
    return instance(
        periods=2, step_minutes=15, start=at(1), import_price=0.2, export_price=1.35,
        nodes=[node("T"), node("M1", "T", kind="feeder", phase_import_limit_kw=5.333334)],
        chargers=[charger("c0", "M1", max_charge_kw=11.0, max_discharge_kw=11.0)],
        sessions=[session("s2", "c0", at(1.25), at(1 + 20 / 60), 15.5, max_discharge_kw=11.0, battery_kwh=30.0,
                          initial_kwh=1.0, min_kwh=0.5),
                  session("s3", "c0", at(1 + 20 / 60), at(1 + 25 / 60), 23.0),
                  session("s4", "c0", at(1 + 25 / 60), at(1.5), 7.0)],
        objective={"peak_cny_per_kw": 0.2},
    )


BINARY_RESIDUE_OPTIMUM = (100 * 45.5 - 100 * 16.000002 / 12 + 0.2 * 22 / 12 - 1.35 * 5.999998 / 12
                          + 0.2 * 16.000002)


def test_binary_residue_case_optimum_for_the_reference():
    result = solve_reference(_binary_residue_case())
    assert_objective_close(result.objective_cny, BINARY_RESIDUE_OPTIMUM)
    assert result.power_kw[:, 1] == pytest.approx([-5.999998, 11.0, 11.0], abs=1e-6)


def test_regression_binary_residue_does_not_loop_forever():
    # found by test_optimum_matches_the_reference_milp (V2G-heavy exploration)
    schedule = gridcharge.solve(_binary_residue_case())
    assert_objective_close(schedule.summary["objective_cny"], BINARY_RESIDUE_OPTIMUM)
