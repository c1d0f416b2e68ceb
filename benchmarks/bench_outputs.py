"""Writing a district's solve outputs as CSV and as Parquet, side by side in one run.

Loads a district instance (a site file and its sessions table, as ``gridcharge generate district`` writes them) and
a schedule for it: the ``schedule.csv`` of an earlier ``gridcharge solve --out`` (``--schedule``), else the
uncontrolled baseline's (fast; the table sizes depend on the day, not on the powers). Then, for each format, times
the per-transformer report (``Schedule.capacity_report``) and ``Schedule.write`` (every table built, formatted and
written atomically) and records each file's size. Prints a Markdown table for benchmarks/RESULTS.md.

    python benchmarks/bench_outputs.py --instance district/district.json --schedule district/out/schedule.csv
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gridcharge  # noqa: E402
from gridcharge.schedule import TABLE_FORMATS, Schedule, read_schedule_csv, summarise  # noqa: E402
from gridcharge.solvers.baselines import uncontrolled  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance", type=Path, required=True, help="instance file (site JSON + sessions table)")
    parser.add_argument("--schedule", type=Path, help="schedule.csv of a solve (default: the uncontrolled one)")
    args = parser.parse_args()
    started = time.perf_counter()
    instance = gridcharge.load_instance(args.instance)
    problem = gridcharge.build_problem(instance)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    if args.schedule is not None:
        power = read_schedule_csv(args.schedule, instance)
        schedule = Schedule(problem, power, summarise(problem, power, status="read", solver="schedule.csv"))
        source = f"the schedule in {args.schedule.name}"
    else:
        schedule = uncontrolled(problem)
        source = "the uncontrolled schedule"
    schedule_s = time.perf_counter() - started
    print(f"{problem.n_sessions:,} sessions, {problem.n_nodes:,} nodes, {problem.n_periods} periods; loaded in "
          f"{load_s:.1f} s, {source} in {schedule_s:.1f} s; load average {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    report = schedule.capacity_report()
    report_s = time.perf_counter() - started
    print(f"capacity_report: {report_s:.2f} s ({len(report.transformers):,} transformers and feeders, "
          f"{len(report.binding):,} binding rows)\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.instance.parent) as folder:
        for table_format in TABLE_FORMATS:
            load_before = os.getloadavg()[0]
            wall, cpu = time.perf_counter(), time.process_time()
            paths = schedule.write(Path(folder) / table_format, table_format=table_format)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            sizes = {name: path.stat().st_size / 1e6 for name, path in paths.items()}
            rows.append((table_format, wall, cpu, sizes, load_before, os.getloadavg()[0]))
    names = ["schedule", "nodes", "transformers", "binding"]
    print("| format | write wall s | CPU s | " + " | ".join(f"{n} MB" for n in names) + " | load before-after |")
    print("|---|---:|---:|" + "---:|" * len(names) + "---|")
    for table_format, wall, cpu, sizes, before, after in rows:
        print(f"| {table_format} | {wall:.1f} | {cpu:.1f} | " + " | ".join(f"{sizes[n]:.1f}" for n in names)
              + f" | {before:.1f}-{after:.1f} |")
    csv_row, parquet_row = rows
    print(f"\nCSV / Parquet: write {csv_row[1] / parquet_row[1]:.1f}x wall, {csv_row[2] / parquet_row[2]:.1f}x CPU; "
          f"size {sum(csv_row[3][n] for n in names) / sum(parquet_row[3][n] for n in names):.1f}x; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
