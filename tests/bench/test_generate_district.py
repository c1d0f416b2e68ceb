"""The district generator: structure, feasibility with a binding substation, determinism, the CLI and its table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridcharge
from gridcharge.bench.generate import POWER_FACTOR, district, generate
from gridcharge.cli import main
from gridcharge.instance import load_instance
from gridcharge.schedule import node_loads
from gridcharge.testing import assert_feasible

#: Evening, local hours [h]: from the end of the working day to the start of the valley tariff.
EVENING = (17, 23)


def _transformers(data: dict) -> list[dict]:
    return [n for n in data["nodes"] if n["kind"] == "transformer" and n["parent"] is not None]


def test_the_shape_of_a_district():
    data = district(400, 2, transformers=7, lines=3)
    inst = load_instance(data)
    nodes = {n.id: n for n in inst.nodes}
    assert inst.root.id == "SUB" and inst.root.kind == "transformer" and inst.root.export_limit_kw == 0
    lines = [n for n in inst.nodes if n.parent == "SUB"]
    assert [n.kind for n in lines] == ["feeder"] * 3
    transformers = _transformers(data)
    assert len(transformers) == 7 and {t["parent"] for t in transformers} == {n.id for n in lines}
    ratings = {round(t["import_limit_kw"] / POWER_FACTOR) for t in transformers}
    assert ratings <= {400, 500, 630, 800}
    # residential (per space) and office transformers have per-phase limits; the car park (three-phase DC) none
    assert sum(t["phase_import_limit_kw"] is not None for t in transformers) == 6
    assert len(inst.sessions) == 400 and sum(s.max_discharge_kw > 0 for s in inst.sessions) > 0  # V2G on a share
    # the Beijing provision: one charger per space in a compound, office and car-park chargers shared by sessions
    office = [c for c in inst.chargers if c.id.startswith("T3-")]
    assert office and all(nodes[c.node].kind == "group" for c in office)
    assert all(n.import_limit_kw is not None for n in lines + [inst.root])


@pytest.mark.parametrize("n_sessions, transformers, seed", [(150, 3, 0), (300, 4, 1), (500, 6, 2), (60, 2, 5)])
def test_a_small_district_is_feasible_and_its_substation_binds_in_the_evening(n_sessions, transformers, seed):
    inst = load_instance(district(n_sessions, seed, transformers=transformers))
    problem = gridcharge.build_problem(inst)
    uncontrolled = gridcharge.solve(problem, solver="uncontrolled")
    overloaded = {v.where for v in uncontrolled.verification.violations if v.kind == "node_import"}
    assert "SUB" in overloaded and any(where.startswith("L") for where in overloaded)  # the lines bind it too
    schedule = gridcharge.solve(problem, solver="highs")
    assert_feasible(inst, schedule)
    assert schedule.summary["unmet_kwh"] < 1e-6 * schedule.summary["energy_requested_kwh"]  # every car served
    load = node_loads(problem, schedule.power)[problem.root]
    limit = problem.import_limit_kw[problem.root]
    hours = problem.period_start.tz_convert("Asia/Shanghai").hour
    binding = load >= limit - 1e-6 * limit
    assert (binding & (hours >= EVENING[0]) & (hours < EVENING[1])).any(), load.max() / limit


def test_the_same_seed_gives_the_same_district_and_another_seed_another():
    a = json.dumps(district(200, 11, transformers=5))
    assert a == json.dumps(district(200, 11, transformers=5))
    assert a != json.dumps(district(200, 12, transformers=5))


def test_many_sessions_per_transformer_upsize_them_and_stay_feasible():
    data = district(1500, 0, transformers=3)
    ratings = {round(t["import_limit_kw"] / POWER_FACTOR) for t in _transformers(data)}
    assert max(ratings) > 800
    inst = load_instance(data)
    problem = gridcharge.build_problem(inst)
    base = node_loads(problem, np.zeros((problem.n_sessions, problem.n_periods)))
    assert (base.max(axis=1) <= problem.import_limit_kw).all()  # a schedule exists: no car charging


def test_wrong_district_arguments_name_the_field():
    with pytest.raises(ValueError, match="n_sessions: 3 — expected at least one session per transformer"):
        district(3, transformers=4)
    with pytest.raises(ValueError, match=r"lines: 5 — expected a whole number in \[1, transformers = 4\]"):
        district(40, transformers=4, lines=5)
    with pytest.raises(ValueError, match=r"substation_share: 0 — expected a number in \(0, 1\]"):
        district(40, transformers=4, substation_share=0)
    with pytest.raises(ValueError, match="capacity, pv_kw: not options of a district"):
        generate("district", 40, capacity="tight")


def test_the_cli_writes_a_district_and_its_sessions_table(tmp_path, capsys):
    whole = tmp_path / "whole.json"
    args = ["generate", "district", "--transformers", "3", "--sessions", "120", "--seed", "9", "--lines", "2"]
    assert main(args + ["--out", str(whole)]) == 0
    assert json.loads(whole.read_text()) == generate("district", 120, 9, transformers=3, lines=2)
    site = tmp_path / "site.json"
    assert main(args + ["--out", str(site), "--sessions-out", str(tmp_path / "tables" / "s.parquet")]) == 0
    written = json.loads(site.read_text())
    assert written["sessions_file"] == "tables/s.parquet" and "sessions" not in written
    assert load_instance(site) == load_instance(whole)
    assert "120 sessions" in capsys.readouterr().out
    assert main(["generate", "office", "--sessions", "5", "--transformers", "2", "--out", str(site)]) == 2
    assert "--transformers: options of `generate district` only" in capsys.readouterr().err
    assert main(args + ["--out", str(site), "--sessions-out", str(tmp_path / "s.txt")]) == 2
    assert "expected a .csv or .parquet file name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--substation-share", "1.5", "--out", str(site)])
    assert "must be <= 1" in capsys.readouterr().err


@settings(max_examples=8, deadline=None)
@given(transformers=st.integers(1, 5), per_transformer=st.integers(1, 60), seed=st.integers(0, 2**16),
       v2g=st.sampled_from([None, 0.0, 1.0]))
def test_any_small_district_is_valid_and_has_a_verified_optimum(transformers, per_transformer, seed, v2g):
    params = {"transformers": transformers} | ({} if v2g is None else {"v2g_share": v2g})
    data = district(transformers * per_transformer, seed, **params)
    assert json.dumps(data) == json.dumps(district(transformers * per_transformer, seed, **params))
    inst = load_instance(data)
    assert len(inst.sessions) == transformers * per_transformer and len(_transformers(data)) == transformers
    schedule = gridcharge.solve(inst, solver="highs")
    assert schedule.summary["status"] == "optimal"
    assert_feasible(inst, schedule)
