"""Capacity-scenario throughput: one study run with several dask worker counts, side by side in one process.

For each worker count (``0`` = in-process, no dask) the whole study of a scenario file runs (local cluster start and
shutdown included in the wall time), and the result rows are compared with the first run's: the numbers must be
identical whatever the worker count (timing columns aside). Prints a Markdown table (wall time, tasks, tasks/s,
ratio to the first count, identical?) and writes a CSV.

    .venv/bin/python benchmarks/bench_scenarios.py scenarios/beijing-residential-630kva.toml --workers 1,2 \
        --out benchmarks/out/scenarios.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure this working tree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", type=Path, help="scenario file (.toml)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts [-] (0 = in-process)")
    parser.add_argument("--quick", action="store_true", help="the --quick study (2 days, no online)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "scenarios.csv",
                        help="CSV of the measurements")
    args = parser.parse_args(argv)

    import pandas as pd

    from gridcharge.scenarios.runner import TIMING_COLUMNS, run_study
    from gridcharge.scenarios.spec import load_scenario

    scenario = load_scenario(args.scenario)
    if args.quick:
        scenario = scenario.quick()
    counts = [int(x) for x in args.workers.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    records, first = [], None
    for n in counts:
        print(f"running {args.scenario} with {n} worker(s) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = run_study(scenario, workers=n, progress=False)
        wall = time.perf_counter() - started
        rows = result.rows.drop(columns=list(TIMING_COLUMNS))
        identical = True
        if first is None:
            first = rows
        else:
            try:
                pd.testing.assert_frame_equal(first, rows, check_exact=True)
            except AssertionError:
                identical = False
        busy = float(result.rows["task_seconds"].sum())
        records.append({"scenario": args.scenario.name, "quick": args.quick, "workers": n, "tasks": result.tasks,
                        "wall_s": wall, "tasks_per_s": result.tasks / wall, "task_cpu_s": busy,
                        "identical_to_first": identical, "load_avg_1min_before": load})
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    frame = pd.DataFrame(records)
    frame["ratio_to_first"] = frame["wall_s"].iloc[0] / frame["wall_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print("| workers | tasks | wall [s] | tasks/s | speed-up vs first | sum of task times [s] | identical | "
          "load avg before |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in records:
        print(f"| {r['workers']} | {r['tasks']} | {r['wall_s']:.1f} | {r['tasks_per_s']:.1f} | "
              f"{frame.loc[frame.workers == r['workers'], 'ratio_to_first'].iloc[0]:.2f} | {r['task_cpu_s']:.1f} | "
              f"{'yes' if r['identical_to_first'] else 'NO'} | {r['load_avg_1min_before']:.1f} |")
    return 0 if frame["identical_to_first"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
