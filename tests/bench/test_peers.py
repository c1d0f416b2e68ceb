"""The acnportal adapter (extra [peers]): the linear constraints by hand, and its results verified by gridcharge."""

import numpy as np
import pytest

import gridcharge
from gridcharge.bench import runner
from gridcharge.bench.generate import generate

pytest.importorskip("acnportal")  # the optional extra; installed in the test environment

from gridcharge.bench.peers.acnportal import MARGIN_KW, constraints, schedule  # noqa: E402

SITE = {
    "format": "gridcharge/instance-v1", "name": "hand-made",
    "horizon": {"start": "2026-01-15T18:00:00+08:00", "step_minutes": 60, "periods": 3},
    "nodes": [
        {"id": "T", "kind": "transformer", "import_limit_kw": 12.0, "phase_import_limit_kw": 5.0,
         "base_load_kw": [2.0, 4.0, 11.0]},
        {"id": "M1", "parent": "T", "kind": "meter", "import_limit_kw": 7.0},  # = its charger: cannot bind
        {"id": "M2", "parent": "T", "kind": "meter", "import_limit_kw": 3.0},
    ],
    "chargers": [{"id": "C1", "node": "M1", "max_charge_kw": 7.0, "phases": "A"},
                 {"id": "C2", "node": "M2", "max_charge_kw": 7.0, "phases": "ABC"}],
    "sessions": [
        {"id": "s1", "charger": "C1", "arrival": "2026-01-15T18:00:00+08:00",
         "departure": "2026-01-15T21:00:00+08:00", "energy_kwh": 6.0},
        {"id": "s2", "charger": "C2", "arrival": "2026-01-15T18:30:00+08:00",
         "departure": "2026-01-15T21:00:00+08:00", "energy_kwh": 4.0},
    ],
    "tariff": {"import_cny_per_kwh": 1.0},
}


def test_constraints_by_hand():
    matrix, headroom, names = constraints(gridcharge.build_problem(SITE))
    # T import: both chargers; T phases: C1 on A only, C2 a third on each; M2: C2; M1 dropped (7 kW >= 7 kW)
    assert names == ["T/import", "T/A", "T/B", "T/C", "M2/import"]
    assert np.allclose(matrix, [[1, 1], [1, 1 / 3], [0, 1 / 3], [0, 1 / 3], [0, 1]])
    # T/B and T/C could not bind by the charger sum (7/3 kW) alone, but base load takes their room: kept
    phase = [5 - 2 / 3, 5 - 4 / 3, 5 - 11 / 3]  # phase limit - base / 3
    expected = np.array([[10.0, 8.0, 1.0], phase, phase, phase, [3.0, 3.0, 3.0]])  # import: 12 - base
    assert np.allclose(headroom, np.clip(expected - np.maximum(MARGIN_KW, 1e-7 * expected), 0, None), atol=1e-12)


def test_edf_on_the_hand_made_site_is_feasible_and_charges_in_partial_periods():
    power = schedule(SITE, "edf")
    check = gridcharge.verify(SITE, power)
    assert check.ok, check
    assert power[:, 2].sum() <= 1.0  # 1 kW of transformer headroom left in period 2
    # period 0: s1 alone (s2, from 18:30, gets what phase A leaves: nothing), capped by the phase-A room 5 - 2/3;
    # acnportal's bisection for the largest feasible rate stops short of it by its own resolution
    assert power[1, 0] < 0.01
    assert 5 - 2 / 3 - 0.01 <= power[0, 0] <= 5 - 2 / 3 - MARGIN_KW


def _one_car(arrival, departure, energy_kwh):
    return {"format": "gridcharge/instance-v1", "name": "one car",
            "horizon": {"start": "2026-01-15T18:00:00+08:00", "step_minutes": 60, "periods": 3},
            "nodes": [{"id": "T", "kind": "transformer", "import_limit_kw": 100.0}],
            "chargers": [{"id": "C1", "node": "T", "max_charge_kw": 7.0}],
            "sessions": [{"id": "s1", "charger": "C1", "arrival": f"2026-01-15T{arrival}:00+08:00",
                          "departure": f"2026-01-15T{departure}:00+08:00", "energy_kwh": energy_kwh}],
            "tariff": {"import_cny_per_kwh": 1.0}}


@pytest.mark.parametrize("algorithm", ["edf", "llf", "round_robin", "uncontrolled"])
def test_a_stay_of_half_periods_charges_in_them_as_gridcharge_counts_them(algorithm):
    # 18:30 -> 20:30 on hourly periods: plugged in for 1/2, 1 and 1/2 of periods 0, 1, 2. At 7 kW (the power while
    # plugged in) that is 3.5 + 7 kWh, and the last 1.5 kWh take 3 kW for the half hour left: 12 kWh, all delivered.
    # (Rounded to its one whole period, as the adapter used to, the stay got 7 kWh.)
    data = _one_car("18:30", "20:30", 12.0)
    power = schedule(data, algorithm)
    check = gridcharge.verify(data, power)
    assert check.ok, check
    np.testing.assert_allclose(power, [[7.0, 7.0, 3.0]], atol=0.02)  # bisection resolution of the sorted algorithms
    assert check.delivered_kwh == pytest.approx(12.0, abs=0.02)


def _aligned(data):
    """The instance with every stay shrunk to the whole periods in it (arrival up, departure down; at least one)."""
    import copy

    import pandas as pd

    out, step = copy.deepcopy(data), f"{data['horizon']['step_minutes']}min"
    for s in out["sessions"]:
        arrival = pd.Timestamp(s["arrival"]).ceil(step)
        departure = max(pd.Timestamp(s["departure"]).floor(step), arrival + pd.Timedelta(step))
        s["arrival"], s["departure"] = arrival.isoformat(), departure.isoformat()
    return out


@pytest.mark.parametrize("capacity", ["tight", "loose"])
@pytest.mark.parametrize("aligned", [True, False], ids=["period-aligned", "unaligned"])
@pytest.mark.parametrize("algorithm", ["edf", "llf"])
def test_acnportal_delivers_what_gridcharge_delivers_under_the_same_rule(algorithm, aligned, capacity):
    # Equal terms: the same rule on the same instance delivers the same energy, whether the stays are period-aligned
    # or not. A car park (stays of a few hours, chargers turning over, arrivals at any minute) under a tight and a
    # loose transformer. Before the adapter modelled partial periods, the unaligned tight case differed by 146 kWh
    # (rounding the stays freed headroom the cars' partial periods hold in gridcharge's model), the loose one
    # delivered less; the period-aligned ones agreed.
    data = generate("carpark", 40, 3, capacity=capacity)
    data = _aligned(data) if aligned else data
    assert aligned or (gridcharge.build_problem(data).presence % 1 > 0).any(axis=1).mean() > 0.9
    theirs = gridcharge.verify(data, schedule(data, algorithm))
    ours = gridcharge.verify(data, gridcharge.solve(data, solver=algorithm).power)
    assert theirs.ok, theirs
    assert theirs.delivered_kwh == pytest.approx(ours.delivered_kwh, abs=0.15)  # acnportal's bisection: 0.01 kW


@pytest.mark.parametrize("algorithm", ["edf", "llf", "round_robin"])
def test_peer_results_pass_the_verifier_on_a_generated_compound(algorithm):
    data = generate("residential", 6, 5, capacity="tight")
    power = schedule(data, algorithm)
    check = gridcharge.verify(data, power)
    assert check.ok, check
    assert np.all(power >= 0) and check.delivered_kwh > 0


def test_the_runner_runs_a_peer_like_any_solver(tmp_path):
    path = tmp_path / "r.json"
    import json

    path.write_text(json.dumps(generate("residential", 10, 2, capacity="loose")))
    row = runner.measure(str(path), "acnportal:edf")
    assert row["status"] == "ok" and row["verified"] is True and row["solve_s"] > 0
    uncontrolled = runner.measure(str(path), "acnportal:uncontrolled")
    ours = runner.measure(str(path), "uncontrolled")
    assert uncontrolled["status"] in ("ok", "violations")
    # the same physics (partial periods included) and the same rule: the same energy
    assert uncontrolled["delivered_kwh"] == pytest.approx(ours["delivered_kwh"], abs=0.05)
