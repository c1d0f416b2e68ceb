"""What a solve tells its user beyond the schedule: the structured interior point's progress events and their display
on stderr, the per-transformer report (peaks, hours at a limit, binding rows) and the tables in CSV or Parquet."""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gridcharge
from gridcharge.bench.generate import generate
from gridcharge.cli import main
from gridcharge.progress import timer
from gridcharge.schedule import capacity_report, node_loads, phase_loads
from gridcharge.solvers.progress import IterationProgress
from gridcharge.solvers.structured import solve_auto, solve_structured
from gridcharge.solvers.structured.ipm import INNER_GAP
from tests.builders import at, charger, instance, node, session

REPO = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def v2g_day() -> dict:
    return generate("residential", 120, seed=3)


# ------------------------------------------------------------------------------------------------------------------
# progress events


def test_structured_reports_every_iterate_with_sane_values(v2g_day):
    events: list[IterationProgress] = []
    schedule = solve_structured(gridcharge.build_problem(v2g_day), on_iteration=events.append)
    assert schedule.summary["fallback"] is None
    assert events and all(isinstance(e, IterationProgress) for e in events)
    # one run of the interior point per round of the charge-or-discharge rule, each counting from the start point
    runs = np.split(np.arange(len(events)), np.flatnonzero([e.iteration == 0 for e in events])[1:])
    for run_ in runs:
        steps = [events[i].iteration for i in run_]
        assert steps == list(range(len(steps)))
        elapsed = [events[i].elapsed_s for i in run_]
        assert elapsed[0] >= 0 and all(b >= a for a, b in zip(elapsed, elapsed[1:]))
        last = events[run_[-1]]
        assert last.gap is not None and 0 <= last.gap <= INNER_GAP  # the event that ended the run: certified
        assert last.primal_residual < 1e-9
    assert sum(events[r[-1]].iteration for r in runs) == schedule.summary["iterations"]
    for e in events:
        assert all(math.isfinite(v) and v >= 0 for v in (e.primal_residual, e.dual_residual, e.mu, e.elapsed_s))
        assert math.isfinite(e.objective_cny)
    # the residuals fall: the start point is far off, the end is on the rows
    assert events[0].primal_residual > 1e3 * events[-1].primal_residual
    assert events[-1].objective_cny == pytest.approx(schedule.summary["objective_cny"], rel=1e-6)


def test_auto_on_a_small_day_goes_to_highs_and_reports_no_iterate():
    events = []
    small = instance(nodes=[node("T", import_limit_kw=10.0)], chargers=[charger("c1")],
                     sessions=[session("s1", "c1", at(0), at(2), 5.0)])
    schedule = solve_auto(gridcharge.build_problem(small), on_iteration=events.append)
    assert schedule.summary["solver"] == "highs" and events == []


def test_progress_goes_to_stderr_with_the_flag_and_stdout_keeps_only_the_summary(tmp_path, capsys, v2g_day):
    path = tmp_path / "day.json"
    path.write_text(json.dumps(v2g_day))
    code, out, err = run(capsys, "solve", path, "--solver", "structured", "--progress")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "iteration" in line]
    assert len(lines) >= 10
    assert lines[0].startswith("solving, ") and "iteration 0: primal " in lines[0] and "mu " in lines[0]
    assert "gap " in lines[-1]
    assert "iteration" not in out and "elapsed" not in out
    assert out.startswith("gridcharge solve: ")


def test_no_progress_by_default_when_stderr_is_not_a_terminal(tmp_path, capsys, v2g_day):
    path = tmp_path / "day.json"
    path.write_text(json.dumps(v2g_day))
    code, out, err = run(capsys, "solve", path, "--solver", "structured")
    assert code == 0, err
    assert "iteration" not in err and "elapsed" not in err
    assert "[2/3] solving with structured" in err  # the step lines stay


def test_progress_and_quiet_together_are_refused(tmp_path, capsys, v2g_day):
    path = tmp_path / "day.json"
    path.write_text(json.dumps(v2g_day))
    code, out, err = run(capsys, "solve", path, "--progress", "--quiet")
    assert code == 2 and out == ""
    assert "--progress and --quiet" in err


def test_a_terminal_gets_the_elapsed_time_without_asking(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(instance(nodes=[node("T", import_limit_kw=10.0)], chargers=[charger("c1")],
                                        sessions=[session("s1", "c1", at(0), at(2), 5.0)])))
    leader, follower = pty.openpty()
    # a terminal of 120 columns (a fresh pseudo-terminal has 0, and tqdm cuts its line to the width)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run([sys.executable, "-m", "gridcharge.cli", "solve", str(path), "--solver", "highs"],
                              stdout=subprocess.PIPE, stderr=follower, cwd=REPO, env=env, timeout=120)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything is read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"solving, " in seen and b"elapsed" in seen  # on the terminal
    assert b"elapsed" not in done.stdout


def test_a_log_file_gets_a_line_per_note_and_a_heartbeat_when_none_comes():
    stream = io.StringIO()
    with timer("solving", stream=stream, live=False, every_s=0.02, heartbeat_s=0.1) as status:
        status.note("iteration 0: primal 1.0e+00")
        time.sleep(0.45)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "solving, 0 s elapsed, iteration 0: primal 1.0e+00"
    assert 2 <= len(lines[1:]) <= 5 and all(line == "solving, 0 s elapsed" for line in lines[1:])
    assert "\r" not in stream.getvalue()


def test_a_terminal_line_carries_the_note_and_nothing_is_drawn_when_disabled():
    stream = io.StringIO()
    with timer("solving", stream=stream, live=True) as status:
        status.note("iteration 3: primal 2.0e-01")
    assert "solving, 00:00 elapsed, iteration 3: primal 2.0e-01" in stream.getvalue()
    quiet = io.StringIO()
    with timer("solving", stream=quiet, live=False, enabled=False, every_s=0.01, heartbeat_s=0.01) as status:
        status.note("iteration 3")
        time.sleep(0.05)
    assert quiet.getvalue() == ""


# ------------------------------------------------------------------------------------------------------------------
# per-transformer report


def _report(data: dict):
    problem = gridcharge.build_problem(data)
    schedule = gridcharge.solve(problem, solver="highs")
    return schedule, schedule.capacity_report()


def test_a_transformer_full_in_the_two_cheap_hours_is_at_its_limit_for_those_two_hours():
    # two cars need 10 kWh each; 10 kW through T; only hours 0 and 1 are cheap: T is full then and idle after
    data = instance(import_price=[0.3, 0.3, 1.0, 1.0],
                    nodes=[node("T", import_limit_kw=10.0), node("F", "T", kind="feeder", import_limit_kw=20.0),
                           node("M1", "F", import_limit_kw=7.0), node("M2", "F", import_limit_kw=7.0)],
                    chargers=[charger("c1", "M1"), charger("c2", "M2")],
                    sessions=[session("s1", "c1", at(0), at(4), 10.0), session("s2", "c2", at(0), at(4), 10.0)])
    schedule, report = _report(data)
    t = report.transformers.set_index("node_id")
    assert list(t.index) == ["T", "F"] and list(t["kind"]) == ["transformer", "feeder"]  # meters are not reported
    assert t.loc["T", "peak_import_kw"] == pytest.approx(10.0)
    assert t.loc["T", "peak_import_period"] == 0
    assert t.loc["T", "peak_import_start"] == pd.Timestamp(at(0))
    assert t.loc["T", "peak_loading_pct"] == pytest.approx(100.0)
    assert t.loc["T", "hours_at_limit_h"] == pytest.approx(2.0)
    assert t.loc["T", "import_binding_periods"] == 2 and t.loc["T", "export_binding_periods"] == 0
    assert t.loc["T", "peak_export_kw"] == 0.0 and pd.isna(t.loc["T", "peak_export_period"])
    assert t.loc["F", "hours_at_limit_h"] == 0.0 and t.loc["F", "peak_loading_pct"] == pytest.approx(50.0)
    assert t.loc["F", "parent_id"] == "T"
    binding = report.binding
    assert binding[["node_id", "period", "direction"]].values.tolist() == [["T", 0, "import"], ["T", 1, "import"]]
    assert binding["phase"].isna().all() and (binding["limit_kw"] == 10.0).all()
    assert binding["load_kw"].to_numpy() == pytest.approx([10.0, 10.0])
    summary = report.summary()
    assert summary["nodes"] == 2 and summary["nodes_at_limit"] == 1 and summary["binding_rows"] == 2
    assert summary["nodes_by_kind"] == {"transformer": 1, "feeder": 1}
    assert [n["node_id"] for n in summary["most_loaded"]] == ["T", "F"]
    json.dumps(summary)  # small and plain


def test_a_single_phase_car_binds_its_phase_row():
    data = instance(import_price=[0.3, 0.3, 1.0, 1.0], nodes=[node("T", phase_import_limit_kw=5.0)],
                    chargers=[charger("c1", phases="A")], sessions=[session("s1", "c1", at(0), at(4), 10.0)])
    _, report = _report(data)
    binding = report.binding
    assert binding[["period", "direction", "phase"]].values.tolist() == [[0, "import", "A"], [1, "import", "A"]]
    assert report.transformers.loc[0, "phase_binding_rows"] == 2
    assert report.transformers.loc[0, "peak_phase_kw"] == pytest.approx(5.0)


def test_reverse_flow_at_the_export_limit_is_reported_with_its_sign():
    # 10 kW of PV under an export limit of 4 kW: the car must take 6 kW every hour, and wants no more (24 kWh)
    data = instance(nodes=[node("T", export_limit_kw=4.0, generation_kw=10.0)], chargers=[charger("c1")],
                    sessions=[session("s1", "c1", at(0), at(4), 24.0)])
    _, report = _report(data)
    t = report.transformers.iloc[0]
    assert t["peak_export_kw"] == pytest.approx(4.0) and t["export_binding_periods"] == 4
    assert t["peak_import_kw"] == 0.0 and pd.isna(t["peak_import_period"]) and pd.isna(t["peak_import_start"])
    assert t["hours_at_limit_h"] == pytest.approx(4.0)
    rows = report.binding
    assert (rows["direction"] == "export").all() and len(rows) == 4
    assert rows["load_kw"].to_numpy() == pytest.approx([-4.0] * 4) and (rows["limit_kw"] == -4.0).all()


def test_loads_of_a_subset_of_nodes_are_those_of_the_whole_tree():
    problem = gridcharge.build_problem(generate("feeder", 300, seed=2))
    rng = np.random.default_rng(0)
    power = rng.uniform(-3.0, 7.0, size=(problem.n_sessions, problem.n_periods)) * (problem.presence > 0)
    nodes = np.sort(rng.choice(problem.n_nodes, size=40, replace=False))
    np.testing.assert_allclose(node_loads(problem, power, nodes), node_loads(problem, power)[nodes])
    np.testing.assert_allclose(phase_loads(problem, power, nodes), phase_loads(problem, power)[:, nodes])


def test_the_report_agrees_with_the_nodes_table_on_a_feeder_of_sites(tmp_path):
    schedule = gridcharge.solve(generate("feeder", 300, seed=2), solver="highs")
    report = capacity_report(schedule.problem, schedule.power)
    nodes = schedule.nodes_frame()
    peaks = nodes.groupby("node_id", sort=False)["load_kw"].max().clip(lower=0.0)
    t = report.transformers.set_index("node_id")
    np.testing.assert_allclose(t["peak_import_kw"], peaks.loc[t.index])
    # every binding import row is a row of the nodes table at its limit
    totals = report.binding[report.binding["phase"].isna() & (report.binding["direction"] == "import")]
    merged = totals.merge(nodes, on=["node_id", "period"])
    assert len(merged) == len(totals)
    np.testing.assert_allclose(merged["load_kw_y"], merged["import_limit_kw"], atol=1e-3)


# ------------------------------------------------------------------------------------------------------------------
# tables in CSV or Parquet


def test_parquet_tables_hold_what_the_csv_tables_hold(tmp_path, capsys):
    path = tmp_path / "day.json"
    path.write_text(json.dumps(generate("residential", 60, seed=5)))
    for fmt in ("csv", "parquet"):
        code, out, err = run(capsys, "solve", path, "--solver", "highs", "--out", tmp_path / fmt, "--format", fmt)
        assert code == 0, err
    names = ["binding", "nodes", "schedule", "transformers"]
    assert sorted(p.name for p in (tmp_path / "parquet").iterdir()) == sorted(
        [f"{n}.parquet" for n in names] + ["summary.json"])
    for name in names:
        text = pd.read_csv(tmp_path / "csv" / f"{name}.csv", keep_default_na=True)
        table = pd.read_parquet(tmp_path / "parquet" / f"{name}.parquet")
        assert list(table.columns) == list(text.columns), name
        assert len(table) == len(text), name
        for column in table.columns:
            if column == "start" or column.endswith("_start"):
                assert str(table[column].dt.tz) == "Asia/Shanghai"
                parsed = pd.to_datetime(text[column], format="ISO8601").dt.tz_convert("Asia/Shanghai")
                assert (parsed.isna() == table[column].isna()).all() and (
                    parsed.dropna() == table[column].dropna()).all(), (name, column)
            elif pd.api.types.is_numeric_dtype(table[column]):
                np.testing.assert_allclose(text[column].to_numpy(float), table[column].to_numpy(float),
                                           rtol=1e-9, err_msg=f"{name}.{column}")
            else:
                assert text[column].fillna("").astype(str).tolist() == table[column].fillna("").astype(
                    str).tolist(), (name, column)
    summary = json.loads((tmp_path / "parquet" / "summary.json").read_text())
    assert set(summary["transformers"]) == {"nodes", "nodes_by_kind", "nodes_at_limit", "binding_rows", "most_loaded"}
    assert len(summary["transformers"]["most_loaded"]) <= 5
    assert "transformers    1 transformer, 4 feeders" in out


def test_verify_reads_a_parquet_schedule_and_names_a_bad_row(tmp_path, capsys):
    path = tmp_path / "day.json"
    path.write_text(json.dumps(generate("residential", 40, seed=5)))
    code, _, err = run(capsys, "solve", path, "--solver", "highs", "--out", tmp_path / "out", "--format", "parquet")
    assert code == 0, err
    schedule = tmp_path / "out" / "schedule.parquet"
    code, out, err = run(capsys, "verify", path, schedule)
    assert code == 0 and out.startswith("ok: no violation"), err
    table = pd.read_parquet(schedule)
    busiest = table["power_kw"].idxmax()
    table.loc[busiest, "power_kw"] += 100.0  # far over the charger
    table.to_parquet(tmp_path / "over.parquet", index=False)
    code, out, _ = run(capsys, "verify", path, tmp_path / "over.parquet")
    assert code == 1 and "charge_limit" in out
    table.loc[3, "power_kw"] = float("nan")
    table.to_parquet(tmp_path / "nan.parquet", index=False)
    code, out, err = run(capsys, "verify", path, tmp_path / "nan.parquet")
    assert code == 2 and out == ""
    assert "row 4.power_kw: (empty) — a finite number [kW]" in err  # Parquet rows count from 1; NaN is null
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    code, out, err = run(capsys, "verify", path, tmp_path / "junk.parquet")
    assert code == 2 and "not a readable parquet table" in err and "Traceback" not in err


def test_an_unknown_table_format_is_refused(capsys, tmp_path):
    schedule = gridcharge.solve(instance(), solver="highs")
    with pytest.raises(ValueError, match="table_format: 'xlsx'"):
        schedule.write(tmp_path / "out", table_format="xlsx")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as caught:
        main(["solve", str(REPO / "scenarios" / "beijing-residential-630kva.json"), "--format", "xlsx"])
    assert caught.value.code == 2 and "invalid choice: 'xlsx'" in capsys.readouterr().err
