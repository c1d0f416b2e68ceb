"""The baseline strategies: hand-checked cases, slow reference implementations, and properties on random instances.

The references at the bottom are plain Python loops over cars and periods (what the vectorised code must equal):
a car-by-car greedy for ``edf``/``llf``/``greedy_cost`` and event-by-event progressive filling for ``equal_share``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gridcharge
from gridcharge.errors import InfeasibleError
from gridcharge.schedule import delivered_kwh, node_loads
from gridcharge.solvers.baselines import BASELINES, SAFETY_KW
from tests.builders import at, charger, instance, node, session

CONTROLLED = ["equal_share", "edf", "llf", "greedy_cost"]
ALL = ["uncontrolled", *CONTROLLED]


def run(data, name, **options):
    return gridcharge.solve(data, solver=name, **options)


def power(schedule) -> np.ndarray:
    return schedule.power


# ------------------------------------------------------------------------------------------------------------------
# registry and common contract


def test_all_registered_and_listed_in_unknown_solver_error():
    assert list(BASELINES) == ALL
    assert set(ALL) <= set(gridcharge.available_solvers())
    with pytest.raises(gridcharge.UnknownSolverError) as err:
        gridcharge.solve(instance(), solver="nope")
    for name in ALL:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ALL)
def test_summary_and_ignored_options(name):
    data = instance(chargers=[charger("C1")], sessions=[session("S1", "C1", at(0), at(2), 5.0)])
    schedule = run(data, name, allow_overload=False, method="ipm", verbose=True, time_limit_s=1.0)
    s = schedule.summary
    assert s["status"] == ("uncontrolled" if name == "uncontrolled" else "heuristic")
    assert s["solver"] == name
    assert s["solver_version"] == gridcharge.__version__
    assert s["build_seconds"] == 0
    assert s["solve_seconds"] >= 0
    assert s["overload_kwh"] == 0
    assert s["objective_cny"] == pytest.approx(5.0)
    assert schedule.verification.ok


# ------------------------------------------------------------------------------------------------------------------
# hand-checked cases (1-hour periods, efficiency 1, so kW in a full period = kWh)


def two_cars_under_meter(meter_kw=7.0, first=(0, 2, 14.0), second=(0, 4, 14.0), periods=4, **kw):
    return instance(
        periods=periods,
        nodes=[node("T"), node("M", "T", import_limit_kw=meter_kw)],
        chargers=[charger("C1", "M"), charger("C2", "M")],
        sessions=[session("S1", "C1", at(first[0]), at(first[1]), first[2]),
                  session("S2", "C2", at(second[0]), at(second[1]), second[2])],
        **kw,
    )


def test_uncontrolled_charges_at_max_from_arrival_and_reports_overload():
    data = two_cars_under_meter(first=(1, 4, 10.0), second=(0, 4, 10.0))
    schedule = run(data, "uncontrolled")
    np.testing.assert_allclose(power(schedule), [[0, 7, 3, 0], [7, 3, 0, 0]], atol=1e-12)
    # meter load 7, 10, 3, 0 against 7 kW: 3 kWh over; the root has no limit
    assert schedule.overload_kwh["M"] == pytest.approx(3.0)
    assert schedule.overload_kwh["T"] == 0.0
    assert schedule.summary["overload_kwh"] == pytest.approx(3.0)
    assert schedule.summary["status"] == "uncontrolled"
    assert not schedule.verification.ok  # the violation is the finding, kept instead of raised
    assert {v.kind for v in schedule.verification.violations} == {"node_import"}
    assert schedule.verification.overload_kwh == {"M": pytest.approx(3.0)}


def test_uncontrolled_partial_periods_and_efficiency():
    data = instance(chargers=[charger("C1", efficiency=0.8)],
                    sessions=[session("S1", "C1", at(0.5), at(3), 8.0)])
    # 0.5 h at 7 kW x 0.8 = 2.8 kWh, then 5.2 kWh in period 1: 6.5 kW
    np.testing.assert_allclose(power(run(data, "uncontrolled")), [[7, 6.5, 0, 0]])


def test_equal_share_splits_a_tight_meter_in_half():
    schedule = run(two_cars_under_meter(first=(0, 4, 28.0)), "equal_share")
    np.testing.assert_allclose(power(schedule), np.full((2, 4), 3.5), atol=1e-8)


def test_equal_share_water_fills_what_a_car_does_not_need():
    data = instance(periods=1, nodes=[node("T", import_limit_kw=10.0)],
                    chargers=[charger("C1"), charger("C2", max_charge_kw=11.0)],
                    sessions=[session("S1", "C1", at(0), at(1), 2.0), session("S2", "C2", at(0), at(1), 20.0)])
    np.testing.assert_allclose(power(run(data, "equal_share")), [[2.0], [8.0]], atol=1e-8)


def test_equal_share_through_the_tree():
    # feeder F (10 kW) holds two cars at 5 kW each; the root (16 kW) gives the third car the rest, 6 kW
    data = instance(periods=1, nodes=[node("T", import_limit_kw=16.0), node("F", "T", import_limit_kw=10.0),
                                      node("M", "T")],
                    chargers=[charger("C1", "F", 11.0), charger("C2", "F", 11.0), charger("C3", "M", 11.0)],
                    sessions=[session(f"S{i}", f"C{i}", at(0), at(1), 20.0) for i in (1, 2, 3)])
    np.testing.assert_allclose(power(run(data, "equal_share")), [[5.0], [5.0], [6.0]], atol=1e-8)


def test_equal_share_per_phase():
    # phase A: a third of the three-phase car plus the single-phase car <= 10 kW; the single-phase car is full at 7,
    # so the three-phase car gets 9 kW (3 kW on phase A); phases B and C are slack
    data = instance(periods=1, nodes=[node("T", phase_import_limit_kw=10.0)],
                    chargers=[charger("C1", max_charge_kw=22.0, phases="ABC"), charger("C2", phases="A")],
                    sessions=[session("S1", "C1", at(0), at(1), 40.0), session("S2", "C2", at(0), at(1), 20.0)])
    np.testing.assert_allclose(power(run(data, "equal_share")), [[9.0], [7.0]], atol=1e-8)


def test_edf_serves_the_earlier_departure_first():
    schedule = run(two_cars_under_meter(), "edf")
    np.testing.assert_allclose(power(schedule), [[7, 7, 0, 0], [0, 0, 7, 7]], atol=1e-8)


def test_edf_leaves_the_rest_to_the_next_car():
    schedule = run(two_cars_under_meter(first=(0, 2, 2.0), second=(0, 4, 25.0)), "edf")
    np.testing.assert_allclose(power(schedule), [[2, 0, 0, 0], [5, 7, 7, 6]], atol=1e-8)


def test_llf_serves_the_least_laxity_first():
    # S1 leaves first but has slack (laxity 2 - 2/7 h); S2 needs 25 kWh in 4 h (laxity 4 - 25/7 h): S2 goes first,
    # and stays first (period 1: 1 - 2/7 = 0.71 h against 3 - 18/7 = 0.43 h), so S1 leaves empty-handed
    schedule = run(two_cars_under_meter(first=(0, 2, 2.0), second=(0, 4, 25.0)), "llf")
    np.testing.assert_allclose(power(schedule), [[0, 0, 0, 0], [7, 7, 7, 4]], atol=1e-8)


def test_llf_laxity_is_recomputed_every_period():
    data = two_cars_under_meter(first=(0, 3, 7.0), second=(0, 4, 15.0))
    schedule = run(data, "llf")
    # t0: S1 2.0, S2 4 - 15/7 = 1.857 → S2; t1: S1 2 - 1 = 1.0, S2 3 - 8/7 = 1.857 → S1; t2: S1 done → S2
    np.testing.assert_allclose(power(schedule), [[0, 7, 0, 0], [7, 0, 7, 1]], atol=1e-8)


def test_greedy_cost_charges_in_the_cheapest_periods():
    prices = [1.0, 0.3, 0.5, 0.2]
    data = two_cars_under_meter(first=(0, 4, 14.0), second=(0, 4, 7.0), import_price=prices)
    schedule = run(data, "greedy_cost")
    # S1 (laxity 4 - 2 = 2 h) takes the two cheapest periods, S2 (laxity 3 h) the next cheapest
    np.testing.assert_allclose(power(schedule), [[0, 7, 0, 7], [0, 0, 7, 0]], atol=1e-8)
    assert schedule.summary["objective_cny"] == pytest.approx(7 * 0.2 + 7 * 0.3 + 7 * 0.5, abs=1e-6)


def test_greedy_cost_skips_periods_dearer_than_going_unmet():
    data = instance(periods=2, chargers=[charger("C1", efficiency=0.5)],
                    sessions=[session("S1", "C1", at(0), at(2), 7.0)], import_price=[0.4, 0.6],
                    objective={"unmet_penalty_cny_per_kwh": 1.0})
    # 0.4 / 0.5 = 0.8 < 1 CNY/kWh: worth it; 0.6 / 0.5 = 1.2: cheaper to leave it unmet
    np.testing.assert_allclose(power(run(data, "greedy_cost")), [[7, 0]], atol=1e-8)


@pytest.mark.parametrize("name", CONTROLLED)
def test_base_load_over_a_limit_is_infeasible(name):
    data = instance(periods=3, nodes=[node("T", import_limit_kw=20.0, base_load_kw=[5, 24, 5])],
                    chargers=[charger("C1")], sessions=[session("S1", "C1", at(0), at(3), 10.0)])
    with pytest.raises(InfeasibleError) as err:
        run(data, name)
    [overload] = err.value.overloads
    assert (overload.node, overload.kind, overload.period) == ("T", "import", 1)
    assert overload.excess_kw == pytest.approx(4.0)


@pytest.mark.parametrize("name", CONTROLLED)
def test_phase_base_load_over_a_limit_is_infeasible(name):
    data = instance(periods=1, nodes=[node("T", phase_import_limit_kw=3.0, base_load_kw=12.0)])
    with pytest.raises(InfeasibleError) as err:
        run(data, name)
    assert {(o.kind, round(o.excess_kw, 9)) for o in err.value.overloads} == {
        ("phase_A", 1.0), ("phase_B", 1.0), ("phase_C", 1.0)}


@pytest.mark.parametrize("name", CONTROLLED)
def test_reverse_flow_is_infeasible_unless_charging_absorbs_it(name):
    pv = {"nodes": [node("T", export_limit_kw=0.0, generation_kw=3.0)], "periods": 2}
    with pytest.raises(InfeasibleError) as err:
        run(instance(**pv), name)
    assert {(o.kind, o.period) for o in err.value.overloads} == {("export", 0), ("export", 1)}
    absorbed = run(instance(**pv, chargers=[charger("C1")], sessions=[session("S1", "C1", at(0), at(2), 14.0)]),
                   name)
    assert absorbed.verification.ok


def test_uncontrolled_never_raises_on_base_overload():
    data = instance(periods=1, nodes=[node("T", import_limit_kw=1.0, base_load_kw=2.0)])
    schedule = run(data, "uncontrolled")
    assert schedule.overload_kwh["T"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ALL)
def test_empty_instance(name):
    schedule = run(instance(), name)
    assert schedule.power.shape == (0, 4)


def test_cli_solve_with_a_baseline(tmp_path, capsys):
    from gridcharge.cli import main

    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "beijing-residential-630kva.json"
    main(["solve", str(scenario), "--solver", "equal_share", "--quiet",
          "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "heuristic (equal_share" in out
    assert "verified        ok" in out
    assert (tmp_path / "schedule.csv").exists()


# ------------------------------------------------------------------------------------------------------------------
# random valid small instances

START = datetime(2026, 7, 1, 0, 0, tzinfo=timezone(timedelta(hours=8)))


def _kw(lo, hi, step=0.5):
    return st.integers(int(lo / step), int(hi / step)).map(lambda k: round(k * step, 6))


def _maybe(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def instances(draw, limits=True):
    """1-3 levels, 1-5 cars on single- and three-phase chargers, some V2G, partial periods, optional limits/PV."""
    periods = draw(st.integers(1, 5))
    step = draw(st.sampled_from([30, 60]))

    def loads():
        return st.one_of(_kw(0, 3), st.lists(_kw(0, 3), min_size=periods, max_size=periods))

    nodes = [node("T")]
    for i in range(draw(st.integers(0, 2))):
        nodes.append(node(f"F{i}", "T", kind="feeder"))
        for j in range(draw(st.integers(0, 2))):
            nodes.append(node(f"M{i}{j}", f"F{i}"))
    for n in nodes:
        if draw(st.integers(0, 2)) == 0:
            n["base_load_kw"] = draw(loads())
        if draw(st.integers(0, 5)) == 0:
            n["generation_kw"] = draw(loads())
        if limits:
            n["import_limit_kw"] = draw(_maybe(_kw(2, 25)))
            n["phase_import_limit_kw"] = draw(_maybe(_kw(1, 10)))
            n["export_limit_kw"] = draw(_maybe(_kw(0, 5)))
    chargers, sessions = [], []
    horizon = periods * step
    for k in range(draw(st.integers(1, 5))):
        v2g = draw(st.integers(0, 3)) == 0
        chargers.append(charger(f"C{k}", draw(st.sampled_from([n["id"] for n in nodes])), draw(_kw(1, 11)),
                                phases=draw(st.sampled_from(["A", "B", "C", "ABC"])),
                                efficiency=draw(st.sampled_from([1.0, 0.95, 0.85])),
                                max_discharge_kw=7.0 if v2g else 0.0))
        arrive = draw(st.integers(-2, horizon // 15 - 1)) * 15
        leave = draw(st.integers(max(arrive // 15 + 1, 1), horizon // 15)) * 15
        extra = {}
        energy = draw(_kw(0, 30))
        if v2g:
            extra = {"max_discharge_kw": 7.0, "battery_kwh": 60.0, "initial_kwh": 20.0, "min_kwh": 10.0}
        sessions.append(session(f"S{k}", f"C{k}", (START + timedelta(minutes=arrive)).isoformat(),
                                (START + timedelta(minutes=leave)).isoformat(), energy, **extra))
    prices = draw(st.lists(_kw(0.1, 2, 0.1), min_size=periods, max_size=periods))
    objective = {"peak_cny_per_kw": draw(st.sampled_from([0.0, 0.5])),
                 "unmet_penalty_cny_per_kwh": draw(st.sampled_from([100.0, 1.5]))}
    return instance(periods=periods, step_minutes=step, start=START.isoformat(), nodes=nodes, chargers=chargers,
                    sessions=sessions, import_price=prices, export_price=draw(_kw(0, 1.5, 0.1)), objective=objective)


def _base_over(problem) -> bool:
    """Is some import or phase limit broken by base load alone (what a charge-only baseline cannot fix)?"""
    base = problem.base_net_kw
    return bool(np.any(base > problem.import_limit_kw[:, None] + 1e-9)
                or np.any(base / 3 > problem.phase_import_limit_kw[:, None] + 1e-9))


def _solve_or_none(data, name):
    """The schedule, or None when the baseline says infeasible (then checked to be justified)."""
    try:
        return gridcharge.solve(data, solver=name)
    except InfeasibleError as exc:
        problem = data if isinstance(data, gridcharge.Problem) else gridcharge.build_problem(data)
        kinds = {o.kind for o in exc.overloads}
        if "export" in kinds:
            assert kinds == {"export"}
            assert np.any(problem.base_net_kw < -problem.export_limit_kw[:, None])
        else:
            assert _base_over(problem)
        return None


@given(instances())
def test_controlled_baselines_always_verify_and_never_beat_the_lp(data):
    problem = gridcharge.build_problem(data)
    try:
        optimum = gridcharge.solve(problem, solver="highs").summary["objective_cny"]
    except InfeasibleError:
        optimum = None
    for name in CONTROLLED:
        schedule = _solve_or_none(problem, name)
        if schedule is None:
            continue
        assert schedule.verification.ok, (name, str(schedule.verification))
        assert np.all(schedule.power >= 0)
        assert np.all(schedule.power[problem.presence == 0] == 0)
        if optimum is not None:
            assert schedule.summary["objective_cny"] >= optimum - 1e-6 * max(1.0, abs(optimum)), name


@given(instances())
def test_no_baseline_delivers_more_than_requested(data):
    problem = gridcharge.build_problem(data)
    for name in ALL:
        schedule = _solve_or_none(problem, name)
        if schedule is None:
            continue
        assert np.all(delivered_kwh(problem, schedule.power) <= problem.energy_request_kwh + 1e-9), name
        assert np.all(schedule.power >= 0)


@given(instances(limits=False))
def test_uncontrolled_delivers_at_least_as_much_without_limits(data):
    problem = gridcharge.build_problem(data)
    most = delivered_kwh(problem, gridcharge.solve(problem, solver="uncontrolled").power)
    assert np.all(most <= problem.energy_request_kwh + 1e-9)
    for name in CONTROLLED:
        schedule = _solve_or_none(problem, name)
        if schedule is None:
            continue
        assert np.all(delivered_kwh(problem, schedule.power) <= most + 1e-9), name


@given(instances())
def test_vectorised_baselines_equal_the_slow_references(data):
    problem = gridcharge.build_problem(data)
    for name, reference in (("equal_share", reference_equal_share), ("edf", reference_edf),
                            ("llf", reference_llf), ("greedy_cost", reference_greedy_cost)):
        schedule = _solve_or_none(problem, name)
        if schedule is None:
            continue
        np.testing.assert_allclose(schedule.power, reference(problem), atol=1e-7, err_msg=name)


# ------------------------------------------------------------------------------------------------------------------
# slow references: loops over cars and periods


def _limits(problem):
    """(weights (S,), headroom (T,)) per import limit and per phase limit [kW]."""
    member = problem.node_member_matrix()
    out = []
    for n in range(problem.n_nodes):
        base = problem.base_net_kw[n]
        if np.isfinite(problem.import_limit_kw[n]):
            out.append((member[n], np.maximum(problem.import_limit_kw[n] - base - SAFETY_KW, 0.0)))
        if np.isfinite(problem.phase_import_limit_kw[n]):
            for k in range(3):
                out.append((member[n] * problem.phase_share[:, k],
                            np.maximum(problem.phase_import_limit_kw[n] - base / 3 - SAFETY_KW, 0.0)))
    return out


def _hours(problem, which):
    t0 = problem.instance.horizon.start
    return np.array([(getattr(s, which) - t0).total_seconds() / 3600 for s in problem.instance.sessions])


def _caps(problem, remaining, t):
    gain = problem.efficiency * problem.presence[:, t] * problem.step_hours
    u = np.zeros(problem.n_sessions)
    for s in range(problem.n_sessions):
        if gain[s] > 0 and remaining[s] > 0:
            u[s] = min(problem.charge_max_kw[s], remaining[s] / gain[s])
    return u, gain


def _greedy_period(problem, limits, u, order, t, room=None):
    p = np.zeros(problem.n_sessions)
    room = [h[t] for _, h in limits] if room is None else room
    for s in order:
        take = u[s]
        for r, (w, _) in enumerate(limits):
            if w[s] > 0:
                take = min(take, max(room[r], 0.0) / w[s])
        p[s] = take
        for r, (w, _) in enumerate(limits):
            room[r] -= w[s] * take
    return p


def _reference_priority(problem, order_of):
    limits = _limits(problem)
    remaining = np.minimum(problem.energy_request_kwh, problem.energy_upper_kwh)
    power = np.zeros((problem.n_sessions, problem.n_periods))
    for t in range(problem.n_periods):
        u, gain = _caps(problem, remaining, t)
        power[:, t] = _greedy_period(problem, limits, u, order_of(t, remaining), t)
        remaining = np.maximum(remaining - gain * power[:, t], 0.0)
    return power


def reference_edf(problem):
    departure = _hours(problem, "departure")
    order = sorted(range(problem.n_sessions), key=lambda s: (departure[s], s))
    return _reference_priority(problem, lambda t, remaining: order)


def reference_llf(problem):
    departure = _hours(problem, "departure")

    def order_of(t, remaining):
        laxity = [(departure[s] - t * problem.step_hours)
                  - remaining[s] / (problem.efficiency[s] * problem.charge_max_kw[s]) for s in range(len(remaining))]
        return sorted(range(len(remaining)), key=lambda s: (laxity[s], s))

    return _reference_priority(problem, order_of)


def reference_greedy_cost(problem):
    """Car by car (least static laxity first), each filling its cheapest periods within the headroom left."""
    limits = _limits(problem)
    room = np.array([h for _, h in limits]).reshape(len(limits), problem.n_periods)
    arrival, departure = np.maximum(_hours(problem, "arrival"), 0.0), _hours(problem, "departure")
    need = np.minimum(problem.energy_request_kwh, problem.energy_upper_kwh)
    laxity = (departure - arrival) - need / (problem.efficiency * problem.charge_max_kw)
    power = np.zeros((problem.n_sessions, problem.n_periods))
    periods = sorted(range(problem.n_periods), key=lambda t: (problem.import_price[t], t))
    for s in sorted(range(problem.n_sessions), key=lambda s: (laxity[s], s)):
        remaining = need[s]
        for t in periods:
            gain = problem.efficiency[s] * problem.presence[s, t] * problem.step_hours
            if gain <= 0 or remaining <= 0 or problem.import_price[t] / problem.efficiency[s] >= problem.unmet_penalty:
                continue
            take = min(problem.charge_max_kw[s], remaining / gain)
            for r, (w, _) in enumerate(limits):
                if w[s] > 0:
                    take = min(take, max(room[r, t], 0.0) / w[s])
            power[s, t] = take
            remaining = max(remaining - gain * take, 0.0)
            for r, (w, _) in enumerate(limits):
                room[r, t] -= w[s] * take
    return power


def reference_equal_share(problem):
    """Progressive filling, one event at a time: raise every unfrozen car equally until a car or a limit is full."""
    limits = _limits(problem)
    remaining = np.minimum(problem.energy_request_kwh, problem.energy_upper_kwh)
    power = np.zeros((problem.n_sessions, problem.n_periods))
    for t in range(problem.n_periods):
        u, gain = _caps(problem, remaining, t)
        p = np.zeros(problem.n_sessions)
        active = u > 0
        while active.any():
            step = min(u[s] - p[s] for s in np.flatnonzero(active))
            for w, h in limits:
                weight = sum(w[s] for s in np.flatnonzero(active))
                if weight > 0:
                    step = min(step, max(h[t] - w @ p, 0.0) / weight)
            p[active] += step
            full = active & (p >= u - 1e-12)
            for w, h in limits:
                if h[t] - w @ p <= 1e-12 * max(1.0, h[t]):
                    full |= active & (w > 0)
            active &= ~full
        power[:, t] = p
        remaining = np.maximum(remaining - gain * p, 0.0)
    return power


def test_references_agree_on_a_hand_case():
    problem = gridcharge.build_problem(two_cars_under_meter())
    np.testing.assert_allclose(reference_edf(problem), [[7, 7, 0, 0], [0, 0, 7, 7]], atol=1e-8)
    np.testing.assert_allclose(reference_equal_share(problem), [[3.5, 3.5, 0, 0], [3.5, 3.5, 7, 0]], atol=1e-8)


def test_node_loads_of_equal_share_fill_the_meter():
    problem = gridcharge.build_problem(two_cars_under_meter(first=(0, 4, 28.0)))
    schedule = gridcharge.solve(problem, solver="equal_share")
    assert node_loads(problem, schedule.power)[problem.node_ids.index("M")] == pytest.approx(np.full(4, 7.0))
