"""gridcharge bench: rows, gaps, leaderboard ranking, plug-ins (good, violating, failing), the CLI end to end."""

import csv
import json
import math

import numpy as np
import pytest

import gridcharge
from gridcharge.bench import runner
from gridcharge.bench.generate import generate
from gridcharge.cli import main

# tests/ is a regular package (tests/__init__.py), so a site-packages "tests" (acnportal 0.3.3 installs one) cannot
# shadow it; the runner imports the plug-in by this path, from the repository root the tests run in
PLUGIN = "tests.bench_plugin_example"


@pytest.fixture(scope="module")
def tight_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inst") / "res-tight.json"
    path.write_text(json.dumps(generate("residential", 12, 3, capacity="tight", label="res-tight")))
    return path


def test_a_registry_solver_row_is_verified_and_matches_the_verifier(tight_file):
    row = runner.measure(str(tight_file), "highs")
    assert set(runner.COLUMNS) <= set(row)
    assert row["status"] == "ok" and row["verified"] is True and row["violations"] == 0
    direct = gridcharge.solve(str(tight_file), solver="highs")
    assert math.isclose(row["objective_cny"], direct.verification.cost_cny, rel_tol=1e-9)
    assert math.isclose(row["total_s"], row["build_s"] + row["solve_s"] + row["verify_s"], rel_tol=1e-12)
    assert row["n_sessions"] == 12 and row["peak_memory_mb"] > 0


def test_plugins_a_good_one_a_violating_one_and_failing_ones_are_rows_not_crashes(tight_file):
    nothing = runner.measure(str(tight_file), f"{PLUGIN}:nothing")
    requested = sum(s["energy_kwh"] for s in json.loads(tight_file.read_text())["sessions"])
    assert nothing["status"] == "ok" and nothing["delivered_kwh"] == 0
    assert math.isclose(nothing["unmet_kwh"], requested, rel_tol=1e-12)  # all energy unmet, computed by hand
    assert math.isclose(nothing["objective_cny"], 100.0 * requested, rel_tol=1e-12)  # only the unmet penalty

    flat = runner.measure(str(tight_file), f"{PLUGIN}:flat")  # ignores the tight transformer
    check = gridcharge.verify(str(tight_file), runner.load_plugin(f"{PLUGIN}:flat")(gridcharge.load_instance(str(tight_file))))
    assert flat["status"] == "violations" and flat["verified"] is False
    assert flat["violations"] == len(check.violations) > 0
    assert any(kind in flat["error"] for kind in ("node_import", "phase_import"))

    as_schedule = runner.measure(str(tight_file), f"{PLUGIN}:flat_schedule")
    assert as_schedule["status"] == "ok"
    assert math.isclose(as_schedule["objective_cny"], runner.measure(str(tight_file), "equal_share")["objective_cny"])

    shape = runner.measure(str(tight_file), f"{PLUGIN}:wrong_shape")
    assert shape["status"] == "error" and "shape" in shape["error"] and shape["objective_cny"] is None
    boom = runner.measure(str(tight_file), f"{PLUGIN}:boom")
    assert boom["status"] == "error" and "fails on purpose" in boom["error"]
    missing = runner.measure(str(tight_file), f"{PLUGIN}:no_such_function")
    assert missing["status"] == "error" and "no_such_function" in missing["error"]


def test_solver_specs_are_checked_before_any_work():
    kinds = [s.kind for s in runner.parse_solvers("highs,pyomo:highs,acnportal:edf,a.b:c")]
    assert kinds == ["registry", "registry", "peer", "plugin"]
    for bad in ("nosuch", "highs,,edf", "a.b:", "acnportal:fifo", "1a:b"):
        with pytest.raises(ValueError):
            runner.parse_solvers(bad)


def _row(instance, solver, objective, total, status="ok", n=10):
    row = dict.fromkeys(runner.COLUMNS)
    row.update(instance=instance, solver=solver, objective_cny=objective, total_s=total, status=status,
               verified=status == "ok", n_sessions=n, error="", build_s=0.0, solve_s=total, verify_s=0.0,
               peak_memory_mb=1.0)
    return row


def test_gaps_against_best_known_or_best_in_run_by_hand():
    rows = [_row("a", "x", 110.0, 1.0), _row("a", "y", 100.0, 2.0), _row("b", "x", 50.0, 1.0),
            _row("b", "y", 40.0, 1.0, status="violations"), _row("b", "z", None, None, status="error")]
    runner.add_gaps(rows, {"a": 80.0})
    assert [r["gap_basis"] for r in rows] == ["best_known"] * 2 + ["best_in_run"] * 3
    assert rows[0]["gap_pct"] == pytest.approx(37.5) and rows[1]["gap_pct"] == pytest.approx(25.0)
    # a violating result does not set the reference (50, the verified one, does), but it gets a gap
    assert rows[2]["gap_pct"] == 0.0 and rows[3]["gap_pct"] == pytest.approx(-20.0) and rows[4]["gap_pct"] is None


def test_leaderboard_ranks_verified_first_by_objective_then_time_and_medians_repeats():
    rows = [_row("a", "slow", 100.0, 5.0), _row("a", "fast", 100.0, 1.0), _row("a", "cheat", 10.0, 0.1, "violations"),
            _row("a", "worse", 120.0, 0.5), _row("a", "fast", 100.0, 3.0)]
    runner.add_gaps(rows, {})
    table = runner.leaderboard(rows)
    order = [line.split("|")[2].strip() for line in table.splitlines() if line.startswith("| ") and "rank" not in line]
    assert order == ["fast", "slow", "worse", "cheat"]
    fast = next(line for line in table.splitlines() if "| fast |" in line)
    assert "| 2 |" in fast  # median of 1 s and 3 s


def test_cli_bench_in_process_writes_csv_leaderboard_and_plot(tmp_path, tight_file, capsys):
    out = tmp_path / "out"
    code = main(["bench", "--instances", str(tight_file), "--solvers", f"equal_share,{PLUGIN}:nothing",
                 "--repeat", "2", "--in-process", "--out", str(out)])
    assert code == 0
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["solver"], r["repeat"]) for r in rows] == [("equal_share", "1"), ("equal_share", "2"),
                                                         (f"{PLUGIN}:nothing", "1"), (f"{PLUGIN}:nothing", "2")]
    assert all(r["mode"] == "in-process" and r["status"] == "ok" for r in rows)
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = (out / "leaderboard.md").read_text()
    assert board.index("| equal_share |") < board.index(f"| {PLUGIN}:nothing |")
    assert "[1/4]" in capsys.readouterr().err


def test_cli_bench_fresh_process_and_bad_input(tmp_path, tight_file, capsys):
    out = tmp_path / "fresh"
    assert main(["bench", "--instances", str(tight_file), "--solvers", "edf", "--out", str(out)]) == 0
    with open(out / "results.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["mode"] == "fresh" and row["status"] == "ok" and float(row["peak_memory_mb"]) > 10
    assert main(["bench", "--instances", str(tmp_path / "none*.json"), "--out", str(out)]) == 2
    assert "matches no" in capsys.readouterr().err
    assert main(["bench", "--instances", str(tight_file), "--solvers", "nosuch", "--out", str(out)]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_flat_plugin_power_is_the_hand_computed_constant(tight_file):
    instance = gridcharge.load_instance(str(tight_file))
    power = runner.load_plugin(f"{PLUGIN}:flat")(instance)
    problem = gridcharge.build_problem(instance)
    for s in range(problem.n_sessions):
        present = problem.presence[s] > 0
        level = power[s, present]
        assert np.allclose(level, level[0]) and np.all(power[s, ~present] == 0)
        want = min(problem.energy_request_kwh[s], problem.energy_upper_kwh[s])
        got = problem.efficiency[s] * (power[s] * problem.presence[s]).sum() * problem.step_hours
        capped = level[0] >= problem.charge_max_kw[s] - 1e-12
        assert got <= want + 1e-9 and (capped or math.isclose(got, want, rel_tol=1e-9))


def test_results_csv_reads_back_to_the_same_rows(tmp_path):
    rows = [_row("a", "x", 110.0, 1.0), _row("a", "y", None, None, status="error")]
    rows[1]["error"] = "boom, with a comma"
    runner.add_gaps(rows, {"a": 100.0})
    runner.write_csv(rows, tmp_path / "results.csv")
    again = runner.read_results(tmp_path / "results.csv")
    assert again[0]["objective_cny"] == 110.0 and again[0]["gap_pct"] == pytest.approx(10.0)
    assert again[0]["verified"] is True and again[1]["verified"] is False and again[1]["total_s"] is None
    assert again[1]["error"] == "boom, with a comma" and again[0]["n_sessions"] == 10
    assert runner.leaderboard(again) == runner.leaderboard(rows)


def test_a_fresh_run_past_the_wall_limit_is_a_timeout_row_with_its_size(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(generate("residential", 30, 1)))
    row = runner.measure_in_fresh_process(str(path), "highs", None, 0.05)  # no interpreter starts in 50 ms
    assert row["status"] == "timeout" and row["verified"] is False and row["n_sessions"] == 30
    assert "wall limit" in row["error"]


def test_a_long_fresh_run_keeps_the_progress_bar_ticking(tmp_path, monkeypatch):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(generate("residential", 5, 1)))
    monkeypatch.setattr(runner, "TICK_S", 0.2)
    ticks = []
    row = runner.measure_in_fresh_process(str(path), "equal_share", None, 60.0, lambda: ticks.append(1))
    assert row["status"] == "ok" and row["mode"] == "fresh"
    assert ticks  # a child takes > 0.2 s to start


def test_leaderboard_labels_objectives_in_each_instance_tariff_currency():
    """issue 15: objectives were labelled CNY whatever the tariff's currency."""
    rows = [dict(_row("eu", "x", 100.0, 1.0), currency="EUR"), dict(_row("cn", "x", 50.0, 1.0), currency="CNY"),
            _row("old", "x", 10.0, 1.0)]  # a results.csv from before the currency column: CNY
    runner.add_gaps(rows, {"eu": 90.0})
    table = runner.leaderboard(rows)
    sections = {part.split(" ", 1)[0]: part for part in table.split("\n## ")[1:]}
    assert "objective [EUR]" in sections["eu"] and "90.0000 EUR." in sections["eu"] and "CNY" not in sections["eu"]
    assert "objective [CNY]" in sections["cn"] and "objective [CNY]" in sections["old"]


def test_cli_bench_runs_auto_as_its_optimum_by_default(tmp_path, tight_file):
    """Without --solvers the optimum is ``auto`` (the certified structured interior point where it wins by
    measurement, HiGHS elsewhere: benchmarks/RESULTS.md, issue 13), next to the baselines."""
    out = tmp_path / "default"
    assert main(["bench", "--instances", str(tight_file), "--in-process", "--out", str(out)]) == 0
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["solver"] for r in rows] == ["auto", "equal_share", "edf", "llf", "greedy_cost", "uncontrolled"]
    assert rows[0]["status"] == "ok"
