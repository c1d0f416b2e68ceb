"""The command line: exit codes, messages a user can act on, the files ``solve --out`` writes, ``verify`` on written
and tampered schedules. Most tests run ``gridcharge.cli.main`` in-process; a few run ``python -m gridcharge.cli`` to
see exactly what a user sees (and that no traceback is printed)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gridcharge.cli import main
from tests.builders import at, charger, instance, modified, node, session

REPO = Path(__file__).resolve().parent.parent
SCENARIO = REPO / "scenarios" / "beijing-residential-630kva.json"


def small() -> dict:
    """T (20 kW) → M (10 kW); charger c1 (7 kW) on M with two back-to-back sessions of 5 kWh; prices fall at night."""
    return instance(
        periods=4, import_price=[1.0, 0.8, 0.3, 0.3],
        nodes=[node("T", import_limit_kw=20.0), node("M", "T", import_limit_kw=10.0)],
        chargers=[charger("c1", "M")],
        sessions=[session("s1", "c1", at(0), at(2), 5.0), session("s2", "c1", at(2), at(4), 5.0)],
    )


def overloaded() -> dict:
    """Base load alone is 30 kW over the transformer limit in period 1 (of two half-hour periods)."""
    return instance(periods=2, step_minutes=30, nodes=[node("T", import_limit_kw=100.0, base_load_kw=[90.0, 130.0])])


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def run(capsys, *argv):
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*argv, cwd=None):
    """``python -m gridcharge.cli argv`` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "gridcharge.cli", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=120)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def solved(tmp_path, capsys):
    """The small instance solved with ``--out``: (instance path, output directory, stdout)."""
    path = write_json(tmp_path / "small.json", small())
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "solve", path, "--out", out_dir)
    assert code == 0, err
    return path, out_dir, out


# ------------------------------------------------------------------------------------------------------------------
# solve


def test_solve_writes_its_files(solved):
    _, out_dir, out = solved
    assert sorted(p.name for p in out_dir.iterdir()) == ["binding.csv", "nodes.csv", "schedule.csv", "summary.json",
                                                         "transformers.csv"]
    assert "status          optimal" in out and "objective       5.50 CNY" in out
    assert "verified        ok, no violation" in out


def test_schedule_csv_columns_and_content(solved):
    _, out_dir, _ = solved
    with (out_dir / "schedule.csv").open() as handle:
        assert handle.readline().strip() == "session_id,period,start,power_kw"
    rows = read_csv(out_dir / "schedule.csv")
    # one row per session and period plugged in: s1 in periods 0, 1 and s2 in 2, 3
    assert [(r["session_id"], int(r["period"])) for r in rows] == [("s1", 0), ("s1", 1), ("s2", 2), ("s2", 3)]
    assert rows[0]["start"] == "2026-07-01T00:00:00+08:00"
    power = {(r["session_id"], int(r["period"])): float(r["power_kw"]) for r in rows}
    # s1 buys its 5 kWh at 0.8 in period 1 rather than at 1.0 in period 0; s2 at 0.3 in periods 2 and 3
    assert power[("s1", 0)] == pytest.approx(0.0, abs=1e-9)
    assert power[("s1", 1)] == pytest.approx(5.0)
    assert power[("s2", 2)] + power[("s2", 3)] == pytest.approx(5.0)


def test_nodes_csv_columns_and_loads(solved):
    _, out_dir, _ = solved
    with (out_dir / "nodes.csv").open() as handle:
        header = handle.readline().strip().split(",")
    assert header[:4] == ["node_id", "period", "start", "load_kw"]
    assert header[4:] == ["phase_A_kw", "phase_B_kw", "phase_C_kw", "import_limit_kw", "export_limit_kw",
                          "phase_import_limit_kw", "headroom_kw"]
    rows = read_csv(out_dir / "nodes.csv")
    assert len(rows) == 2 * 4
    m1 = next(r for r in rows if r["node_id"] == "M" and r["period"] == "1")
    assert float(m1["load_kw"]) == pytest.approx(5.0)
    assert float(m1["import_limit_kw"]) == 10.0 and float(m1["headroom_kw"]) == pytest.approx(5.0)
    assert m1["export_limit_kw"] == "" and m1["phase_import_limit_kw"] == ""  # no limit: an empty cell, not "inf"


def test_summary_json(solved):
    _, out_dir, _ = solved
    summary = json.loads((out_dir / "summary.json").read_text())
    for key in ("status", "objective_cny", "unmet_kwh", "peak_kw", "build_seconds", "solve_seconds"):
        assert key in summary, key
    assert summary["status"] == "optimal"
    # s1 can only buy in periods 0-1 (1.0, 0.8): 5 kWh at 0.8 = 4.0; s2 in periods 2-3 at 0.3: 1.5
    assert summary["objective_cny"] == pytest.approx(5.5)
    assert summary["unmet_kwh"] == pytest.approx(0.0, abs=1e-9)
    assert summary["peak_kw"] == pytest.approx(5.0)
    assert summary["build_seconds"] >= 0 and summary["solve_seconds"] >= 0


def test_solve_reads_toml(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text("""
format = "gridcharge/instance-v1"
name = "tiny"
horizon = { start = 2026-07-01T00:00:00+08:00, step_minutes = 60, periods = 2 }
nodes = [ { id = "T", kind = "transformer", import_limit_kw = 5.0 } ]
chargers = [ { id = "c", node = "T", max_charge_kw = 7.0 } ]
tariff = { import_cny_per_kwh = [1.0, 0.5] }

[[sessions]]
id = "s"
charger = "c"
arrival = 2026-07-01T00:00:00+08:00
departure = 2026-07-01T02:00:00+08:00
energy_kwh = 8.0
""")
    code, out, err = run(capsys, "solve", path, "--quiet")
    assert code == 0, err
    assert err == ""  # --quiet: no progress lines
    assert "objective       5.50 CNY" in out  # 5 kWh at 0.5 (the 5 kW limit), 3 kWh at 1.0


def test_the_shipped_scenario_solves(tmp_path, capsys):
    out_dir = tmp_path / "out"
    result = run_process("solve", SCENARIO, "--out", out_dir)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "[1/3] loaded" in result.stderr and "verified        ok, no violation" in result.stdout
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "optimal" and summary["verified"] is True
    assert summary["n_sessions"] > 0
    rows = read_csv(out_dir / "schedule.csv")
    assert rows and list(rows[0]) == ["session_id", "period", "start", "power_kw"]
    code, out, err = run(capsys, "verify", SCENARIO, out_dir / "schedule.csv")
    assert code == 0, out + err
    assert out.startswith("ok: no violation")


# ------------------------------------------------------------------------------------------------------------------
# invalid input: exit 2, one message naming the field, no traceback


def test_missing_instance_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code, out, err = run(capsys, "solve", missing)
    assert code == 2 and out == ""
    assert err.strip() == f"gridcharge: invalid instance: {missing} — no such file; expected an instance file " \
                          f"(.json or .toml)"


def test_malformed_json(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "gridcharge/instance-v1", "name": }')
    code, _, err = run(capsys, "solve", path)
    assert code == 2
    assert err.strip() == f"gridcharge: invalid instance {path}: line 1 column 46 — is not valid JSON: " \
                          f"Expecting value"


def test_a_bad_field_is_named_with_its_value(tmp_path, capsys):
    path = write_json(tmp_path / "bad.json", modified(small(), "sessions[1].departure", at(8)))
    code, _, err = run(capsys, "solve", path)
    assert code == 2
    assert err.strip() == (f"gridcharge: invalid instance {path}: sessions[1].departure: 2026-07-01T08:00:00+08:00 — "
                           f"must not be after the horizon end 2026-07-01T04:00:00+08:00")


def test_invalid_input_prints_no_traceback_in_a_real_process(tmp_path):
    path = write_json(tmp_path / "neg.json", modified(small(), "nodes[1].import_limit_kw", -5.0))
    result = run_process("solve", path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr == f"gridcharge: invalid instance {path}: nodes[1].import_limit_kw: -5.0 — must be >= 0 "\
                            "(its physical range is [0, 1,000,000])\n"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run_process("verify", bad, tmp_path / "schedule.csv")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr == f"gridcharge: invalid instance {bad}: line 1 column 2 — is not valid JSON: " \
                            f"Expecting property name enclosed in double quotes\n"


def test_unknown_solver_lists_the_available_names(tmp_path, capsys):
    path = write_json(tmp_path / "small.json", small())
    code, out, err = run(capsys, "solve", path, "--solver", "gurobi")
    assert code == 2 and out == ""
    assert err.startswith("gridcharge: unknown solver 'gurobi'; available: ")
    assert "highs" in err.split("available: ")[1]


def test_unknown_solver_fails_before_reading_the_instance(tmp_path, capsys):
    code, _, err = run(capsys, "solve", tmp_path / "nope.json", "--solver", "nosuch")
    assert code == 2 and "unknown solver 'nosuch'" in err


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_time_limit_must_be_a_positive_number(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as caught:
        main(["solve", str(tmp_path / "x.json"), "--time-limit", value])
    assert caught.value.code == 2
    assert "--time-limit" in capsys.readouterr().err


def test_out_that_is_a_file(tmp_path, capsys):
    path = write_json(tmp_path / "small.json", small())
    blocker = tmp_path / "taken"
    blocker.write_text("")
    code, out, err = run(capsys, "solve", path, "--out", blocker, "--quiet")
    assert code == 2 and out == ""
    assert err.strip() == f"gridcharge: --out {blocker}: is a file; expected a directory (created if missing)"
    code, _, err = run(capsys, "solve", path, "--out", blocker / "sub", "--quiet")
    assert code == 2 and f"--out {blocker / 'sub'}" in err


# ------------------------------------------------------------------------------------------------------------------
# infeasible and --allow-overload


def test_base_load_over_a_limit_exits_3_naming_node_period_and_kw(tmp_path, capsys):
    path = write_json(tmp_path / "over.json", overloaded())
    code, out, err = run(capsys, "solve", path, "--quiet")
    assert code == 3 and out == ""
    assert "infeasible" in err
    assert "node 'T' import limit, period 1 (2026-07-01T00:30:00+08:00): over by 30.000 kW" in err
    assert "period 0" not in err


def test_allow_overload_exits_0_and_reports_the_overload_energy(tmp_path, capsys):
    path = write_json(tmp_path / "over.json", overloaded())
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "solve", path, "--allow-overload", "--quiet", "--out", out_dir)
    assert code == 0, err
    # 30 kW over for half an hour
    assert "overload        15.00 kWh over node limits: T 15.00 kWh" in out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["overload_kwh"] == pytest.approx(15.0)
    assert summary["overload_kwh_by_node"] == {"T": pytest.approx(15.0)}


# ------------------------------------------------------------------------------------------------------------------
# verify


def test_verify_accepts_the_written_schedule(solved, capsys):
    path, out_dir, _ = solved
    code, out, err = run(capsys, "verify", path, out_dir / "schedule.csv")
    assert code == 0, err
    assert out.splitlines()[0] == "ok: no violation"
    assert "cost 5.50 CNY" in out


def tamper(schedule_csv: Path, session_id: str, period: int, power_kw: str, to: Path) -> Path:
    rows = read_csv(schedule_csv)
    hit = [r for r in rows if r["session_id"] == session_id and r["period"] == str(period)]
    assert len(hit) == 1
    hit[0]["power_kw"] = power_kw
    with to.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return to


def test_verify_rejects_a_tampered_schedule(solved, capsys, tmp_path):
    path, out_dir, _ = solved
    # s1 charges its 5 kWh in period 1; 7.5 kW there is over the 7 kW charger and 2.5 kWh over the request
    tampered = tamper(out_dir / "schedule.csv", "s1", 1, "7.5", tmp_path / "tampered.csv")
    code, out, err = run(capsys, "verify", path, tampered)
    assert code == 1, err
    lines = out.splitlines()
    # a full car draws less: the overshoot is reported in the period that schedules it, not in every later one
    assert lines[0] == "3 violation(s): 1 charge_limit, 1 over_request, 1 battery_upper"
    assert "  charge_limit: s1 period 1 (2026-07-01 01:00): charging 7.5 kW > charge limit 7 kW, by 0.5 kW" in lines
    assert ("  over_request: s1 period 1 (2026-07-01 01:00): energy scheduled so far 7.5 kWh > request (and "
            "last-increment allowance) 5 kWh, by 2.5 kWh") in lines
    assert [line.split(":")[0].strip() for line in lines].count("battery_upper") == 1


def test_verify_tampered_schedule_in_a_real_process(solved, tmp_path):
    path, out_dir, _ = solved
    tampered = tamper(out_dir / "schedule.csv", "s1", 1, "12.5", tmp_path / "tampered.csv")
    result = run_process("verify", path, tampered)
    assert result.returncode == 1
    assert "charge_limit: s1 period 1 (2026-07-01 01:00): charging 12.5 kW > charge limit 7 kW" in result.stdout
    assert "node_import: M period 1 (2026-07-01 01:00): net load 12.5 kW > import limit 10 kW" in result.stdout
    assert result.stdout.index("node_import") < result.stdout.index("charge_limit")  # the tree's limits first
    assert "Traceback" not in result.stderr


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("session_id,period,start\ns1,0,x\n",
     "columns: session_id,period,start — must include session_id, period, power_kw (missing power_kw)"),
    ("session_id,period,power_kw\ns9,0,1.0\n",
     "row 2.session_id: s9 — a session id of the instance ('s1', 's2')"),
    ("session_id,period,power_kw\ns1,0,1.0\ns1,1,fast\n",
     "row 3.power_kw: fast — a finite number [kW]"),
    ("session_id,period,power_kw\ns1,0,\n",
     "row 2.power_kw: (empty) — a finite number [kW]"),
    ("session_id,period,power_kw\ns1,0,inf\n",
     "row 2.power_kw: inf — a finite number [kW]"),
    ("session_id,period,power_kw\ns1,4,1.0\n",
     "row 2.period: 4 — an integer period 0 .. 3"),
    ("session_id,period,power_kw\ns1,0.5,1.0\n",
     "row 2.period: 0.5 — an integer period 0 .. 3"),
    ("session_id,period,power_kw\ns1,-1,1.0\n",
     "row 2.period: -1 — an integer period 0 .. 3"),
    ("session_id,period,power_kw\ns1,0,1.0\ns1,0,2.0\n",
     "row 3: s1, period 0 — one row per session and period"),
    ("", "empty file — expected a header line session_id,period,power_kw"),
])
def test_verify_on_a_malformed_schedule_exits_2(tmp_path, capsys, text, expected):
    path = write_json(tmp_path / "small.json", small())
    schedule = write_text(tmp_path / "schedule.csv", text)
    code, out, err = run(capsys, "verify", path, schedule)
    assert code == 2, out + err
    assert out == ""
    assert err.startswith(f"gridcharge: invalid schedule {schedule}")
    assert expected in err


def test_verify_reports_several_bad_rows_and_counts_the_rest(tmp_path, capsys):
    path = write_json(tmp_path / "small.json", small())
    lines = ["session_id,period,power_kw"] + [f"s1,0,x{i}" for i in range(8)]
    code, _, err = run(capsys, "verify", path, write_text(tmp_path / "s.csv", "\n".join(lines) + "\n"))
    assert code == 2
    assert "8 problems" not in err and "6 problems" in err
    assert "row 2.power_kw: x0" in err and "row 6.power_kw: x4" in err and "row 7.power_kw" not in err
    assert "power_kw: 3 more rows like these — a finite number [kW]" in err


def test_verify_malformed_schedule_in_a_real_process(tmp_path, capsys):
    path = write_json(tmp_path / "small.json", small())
    schedule = write_text(tmp_path / "schedule.csv", "session_id,period,power_kw\nghost,0,1\n")
    result = run_process("verify", path, schedule)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"gridcharge: invalid schedule {schedule}: row 2.session_id: ghost — "
                                     f"a session id of the instance ('s1', 's2')")
    code, _, err = run(capsys, "verify", path, tmp_path / "absent.csv")
    assert code == 2
    assert err.strip() == (f"gridcharge: invalid schedule {tmp_path / 'absent.csv'}: no such file — "
                           f"expected a schedule CSV as written by gridcharge solve")


def test_verify_a_schedule_missing_rows_is_zero_power(tmp_path, capsys):
    path = write_json(tmp_path / "small.json", small())
    schedule = write_text(tmp_path / "schedule.csv", "session_id,period,power_kw\ns1,1,5\n")
    code, out, _ = run(capsys, "verify", path, schedule)
    assert code == 0
    assert "unmet 5.0 kWh" in out  # s2 got nothing


def test_verify_power_while_not_plugged_in(tmp_path, capsys):
    path = write_json(tmp_path / "small.json", small())
    schedule = write_text(tmp_path / "schedule.csv", "session_id,period,power_kw\ns1,3,2\n")
    code, out, _ = run(capsys, "verify", path, schedule)
    assert code == 1
    assert "not_plugged_in: s1 period 3 (2026-07-01 03:00): power 2 kW while not plugged in; limit 0 kW" in out


# ------------------------------------------------------------------------------------------------------------------
# help and listing


def test_solve_help_mentions_units(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["solve", "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--time-limit S wall-clock limit for the solver [seconds]" in text
    assert "power_kw [kW]" in text and "load_kw [kW]" in text and "[kWh]" in text
    for option in ("--solver", "--out", "--allow-overload", "--method", "--quiet", "--verbose"):
        assert option in text


def test_top_level_help_lists_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "solve" in text and "verify" in text and "solvers" in text
    assert "Exit codes: 0 ok, 1 error, 2 invalid input, 3 infeasible" in text


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "usage: gridcharge" in capsys.readouterr().err


def test_solvers_lists_highs(capsys):
    code, out, _ = run(capsys, "solvers")
    assert code == 0
    assert "highs" in out.split()


@pytest.mark.parametrize("solver", ["equal_share", "edf", "llf", "greedy_cost", "uncontrolled"])
def test_heuristic_and_uncontrolled_schedules_exit_zero_and_say_what_they_are(solver, capsys):
    code = main(["solve", "scenarios/beijing-residential-630kva.json", "--solver", solver, "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"({solver} " in out
    if solver == "uncontrolled":
        assert "overload" in out and "limit violation" in out
    else:
        assert "ok, no violation" in out


@pytest.mark.parametrize("argv, message", [
    (["solve", "x.json", "--time-limit", "0"], "'0' must be > 0"),
    (["serve", "--port", "70000"], "'70000' must be <= 65535"),
    (["generate", "office", "--sessions", "0", "--out", "x.json"], "'0' must be >= 1"),
    (["generate", "office", "--sessions", "5", "--v2g-share", "1.5", "--out", "x.json"], "'1.5' must be <= 1"),
    (["scenario", "run", "x.toml", "--days", "two"], "'two' is not a whole number"),
    (["bench", "--wall-limit", "-1"], "'-1' must be > 0"),
])
def test_every_subcommand_refuses_an_out_of_range_option_naming_value_and_rule(argv, message, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------------
# errors before work, never after (issue 15)

#: An existing folder no process (not even root) can create files in.
UNWRITABLE = Path("/sys")


def _is_unwritable(folder: Path) -> bool:
    import tempfile

    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return True
    return False


needs_unwritable = pytest.mark.skipif(not _is_unwritable(UNWRITABLE), reason="needs a read-only /sys")


@needs_unwritable
def test_an_unwritable_out_is_refused_before_any_work_in_every_command(tmp_path, capsys):
    small_path = write_json(tmp_path / "small.json", small())
    out = UNWRITABLE / "gridcharge-out"
    expected = f"gridcharge: --out {out}: cannot create files in {UNWRITABLE} (Permission denied)"
    cases = [
        (["solve", small_path, "--out", out], "[2/3] solving"),
        (["bench", "--instances", str(small_path), "--solvers", "edf", "--in-process", "--out", out], "edf"),
        (["scenario", "run", REPO / "scenarios" / "beijing-residential-630kva.toml", "--quick", "--workers", "0",
          "--out", out], "simulating"),
        (["generate", "office", "--sessions", "5", "--out", out / "office.json"], "wrote"),
    ]
    for argv, sign_of_work in cases:
        code, stdout, err = run(capsys, *argv)
        assert code == 2, (argv, err)
        assert sign_of_work not in stdout + err, argv
        assert err.strip().endswith(expected.replace(f"--out {out}", f"--out {argv[-1]}")), (argv, err)


@needs_unwritable
def test_serve_refuses_a_database_it_cannot_create_before_listening(capsys):
    code, out, err = run(capsys, "serve", "--port", "0", "--database", f"sqlite:///{UNWRITABLE}/gridcharge.db")
    assert code == 2 and out == ""
    assert err.strip() == (f"gridcharge serve: --database sqlite:///{UNWRITABLE}/gridcharge.db: cannot create files "
                           f"in {UNWRITABLE} (Permission denied)")


def test_an_infeasible_solve_leaves_no_out_folder(tmp_path, capsys):
    path = write_json(tmp_path / "over.json", overloaded())
    out_dir = tmp_path / "new" / "out"
    code, _, err = run(capsys, "solve", path, "--quiet", "--out", out_dir)
    assert code == 3, err
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["over.json"]


def test_solve_files_are_ordinary_permissions_and_no_temporary_is_left(solved):
    import os
    import stat

    _, out_dir, _ = solved
    umask = os.umask(0)
    os.umask(umask)
    for path in out_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert sorted(p.name for p in out_dir.iterdir()) == ["binding.csv", "nodes.csv", "schedule.csv", "summary.json",
                                                         "transformers.csv"]


def test_solve_of_a_scenario_file_names_the_command_that_reads_it(capsys):
    toml = REPO / "scenarios" / "beijing-residential-630kva.toml"
    code, out, err = run(capsys, "solve", toml)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "scenario" in err and "`gridcharge scenario run FILE`" in err


def test_scenario_run_of_an_instance_file_names_the_command_that_reads_it(capsys):
    code, out, err = run(capsys, "scenario", "run", SCENARIO, "--workers", "0")
    assert code == 2 and out == ""
    assert "not valid TOML" not in err and "`gridcharge solve FILE`" in err and err.count("\n") == 1


def test_verify_counts_each_kind_first_and_shows_node_limits_before_cars(tmp_path, capsys):
    """issue 15: 50 charge_limit lines hid 2,935 transformer violations in '... and 13950 more'."""
    data = instance(periods=40, step_minutes=15, nodes=[node("T", import_limit_kw=5.0)],
                    chargers=[charger(f"c{i}", "T") for i in range(8)],
                    sessions=[session(f"s{i}", f"c{i}", at(0), at(10), 70.0) for i in range(8)])
    path = write_json(tmp_path / "many.json", data)
    rows = "".join(f"s{i},{t},9\n" for i in range(8) for t in range(40))  # over the 7 kW chargers, all the time
    schedule = write_text(tmp_path / "schedule.csv", "session_id,period,power_kw\n" + rows)
    code, out, _ = run(capsys, "verify", path, schedule)
    assert code == 1
    lines = out.splitlines()
    # full after 31 periods: each later set-point is an overshoot beyond the last increment (both bounds: 70 kWh)
    assert lines[0] == "504 violation(s): 40 node_import, 320 charge_limit, 72 over_request, 72 battery_upper"
    assert lines[1] == "node_import (40):"
    assert lines[2] == ("  node_import: T period 0 (2026-07-01 00:00): net load 72 kW > import limit 5 kW, by 67 kW")
    assert "  ... and 30 more node_import" in lines and "  ... and 310 more charge_limit" in lines
    for line in lines[1:-1]:
        assert line.endswith(":") or line.startswith("  ...") or " kW" in line or " kWh" in line, line


def test_verify_into_a_closed_pipe_stops_quietly(solved, tmp_path):
    path, out_dir, _ = solved
    tampered = tamper(out_dir / "schedule.csv", "s1", 1, "7.5", tmp_path / "tampered.csv")
    process = subprocess.Popen([sys.executable, "-m", "gridcharge.cli", "verify", str(path), str(tampered)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    process.stdout.close()  # the reader leaves before anything is written, as `| head` does after its lines
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    process.stderr.close()
    assert process.returncode == 141, err
    assert err == ""


def test_costs_are_printed_and_written_in_the_tariffs_currency(tmp_path, capsys):
    """issue 15: prices were labelled CNY whatever the tariff's currency (the keys keep their _cny names)."""
    data = small()
    data["tariff"]["currency"] = "EUR"
    path = write_json(tmp_path / "eur.json", data)
    code, out, err = run(capsys, "solve", path, "--quiet", "--out", tmp_path / "out")
    assert code == 0, err
    assert "objective       5.50 EUR" in out and "CNY" not in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["currency"] == "EUR" and summary["objective_cny"] == pytest.approx(5.5)
    code, out, _ = run(capsys, "verify", path, tmp_path / "out" / "schedule.csv")
    assert code == 0 and "cost 5.50 EUR" in out
