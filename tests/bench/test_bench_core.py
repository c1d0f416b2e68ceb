"""The core benchmark's per-cell function, run in-process on a tiny instance (the runner itself uses a subprocess)."""

import importlib.util
import json
import math
import time
from pathlib import Path

BENCH_CORE = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_core.py"


def _bench_core():
    spec = importlib.util.spec_from_file_location("bench_core", BENCH_CORE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_cell_gives_a_complete_verified_row_quickly():
    bench = _bench_core()
    started = time.perf_counter()
    row = bench.measure_cell(20, "simplex", seed=1, time_limit_s=30)
    elapsed_s = time.perf_counter() - started

    assert json.loads(json.dumps(row)) == row  # the child prints exactly this as one JSON line
    required = {"n_sessions", "method", "generate_s", "load_s", "problem_s", "build_s", "solve_s", "extract_s",
                "verify_s", "total_s", "peak_rss_mb", "objective_cny", "unmet_kwh", "peak_kw", "n_columns",
                "n_rows", "n_nonzeros", "n_binaries", "verified", "status", "error"}
    assert required <= set(row)
    assert set(row) == set(bench.ROW_KEYS)
    assert row["status"] == "optimal", row["error"]
    assert row["verified"] is True
    assert row["n_sessions"] == 20 and row["method"] == "simplex"
    assert row["total_s"] > 0
    stages_s = row["load_s"] + row["problem_s"] + row["solve_call_s"]
    assert math.isclose(row["total_s"], stages_s, rel_tol=0.05, abs_tol=1e-3)
    assert row["solve_s"] <= row["solve_call_s"]
    assert row["n_columns"] > 0 and row["n_rows"] > 0 and row["n_nonzeros"] > 0
    assert row["peak_rss_mb"] > 0
    assert elapsed_s < 5


def test_markdown_table_is_well_formed_and_escapes_pipes():
    bench = _bench_core()
    table = bench.markdown_table(["n", "a|b"], [[1000, "x|y"], [None, 0.5]])
    lines = table.splitlines()
    assert len(lines) == 4
    assert {line.count("|") - line.count("\\|") for line in lines} == {3}
    assert "1,000" in lines[2] and "x\\|y" in lines[2]
