"""Benchmark: the structured solver on a district, unsplit and split by transformer subtree on 0, 1, 2 ... dask
workers, side by side in one run (one fresh process per cell; a cell with workers starts its own local cluster).

A cell ``N/dask`` starts its ``N`` workers with dask's own defaults instead of as gridcharge's local cluster does
(``gridcharge.cluster.dask_client``: its ``WORKER_ENVIRON``), to compare the two side by side.

Per cell: wall seconds of the solve call, CPU seconds of this process (the coordinator) and of the workers (their
``getrusage`` before and after, summed), iterations, gap, objective, the coordinator's peak RSS and the workers' peak
RSS (largest), the load average around it; of the split interior point, the coordinator's wall seconds waiting for the
partitions (``ipm_partitions_seconds``), its own wall seconds in the loop besides (``ipm_iterate_seconds``, what does
not shrink with workers) and its CPU seconds over the loop (``ipm_cpu_seconds``, dask client threads included). The numbers must not depend on the worker count: the script checks that
every split cell has the objective of the 0-worker cell exactly.

Usage (from the repository root)::

    python benchmarks/bench_district_workers.py --sessions 10000 --transformers 50 --workers none,0,1,2 \\
        --out benchmarks/out/district_workers.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS = ("sessions", "transformers", "workers", "status", "fallback", "verified", "wall_s", "coordinator_cpu_s",
        "workers_cpu_s", "iterations", "gap_rel", "objective_cny", "coordinator_peak_mb", "worker_peak_mb",
        "load_before", "load_after", "ipm_partitions_seconds", "ipm_iterate_seconds", "ipm_cpu_seconds",
        "iterations_seconds", "layout_seconds", "error")


def _usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of the calling process; run on each worker."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def measure(sessions: int, transformers: int, workers: str, seed: int) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    import gridcharge
    from gridcharge.bench.generate import generate

    row = {k: None for k in KEYS}
    row.update(sessions=sessions, transformers=transformers, workers=workers, load_before=os.getloadavg()[0])
    problem = gridcharge.build_problem(generate("district", sessions, seed, transformers=transformers))
    options: dict = {}
    client, stack = None, ExitStack()
    if workers not in ("none", "0"):
        from dask.distributed import Client, LocalCluster

        from gridcharge.cluster import dask_client

        count, _, defaults = workers.partition("/")
        if defaults:  # dask's own worker environment, without gridcharge's (cluster.WORKER_ENVIRON)
            cluster = stack.enter_context(LocalCluster(n_workers=int(count), threads_per_worker=1, processes=True,
                                                       dashboard_address=":0"))
            client = stack.enter_context(Client(cluster))
        else:  # the local cluster gridcharge starts
            client = stack.enter_context(dask_client(int(count), None))
        client.run(lambda: __import__("gridcharge.solvers.structured.partition"))  # imports before the clock
        options["scheduler"] = client.scheduler.address
    elif workers == "0":
        options["workers"] = 0
    before = client.run(_usage) if client else {}
    wall, cpu = time.perf_counter(), time.process_time()
    schedule = gridcharge.solve(problem, solver="structured", **options)
    row["wall_s"] = time.perf_counter() - wall
    row["coordinator_cpu_s"] = time.process_time() - cpu
    if client:
        after = client.run(_usage)
        row["workers_cpu_s"] = sum(after[w][0] - before.get(w, (0.0, 0.0))[0] for w in after)
        row["worker_peak_mb"] = max(after[w][1] for w in after)
        stack.close()
    s = schedule.summary
    row.update({k: s.get(k) for k in KEYS if k in s})
    row.update(status=s["status"], verified=bool(schedule.verification.ok), fallback=s.get("fallback"),
               coordinator_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               load_after=os.getloadavg()[0])
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--transformers", type=int, default=50)
    parser.add_argument("--workers", default="none,0,1,2",
                        help="cells: 'none' (unsplit), a worker count, 'N/dask' (N workers, dask's defaults)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/out/district_workers.csv")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        n, t, w, seed = args.child
        print(json.dumps(measure(int(n), int(t), w, int(seed))), flush=True)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in args.workers.split(","):
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(args.sessions),
                   str(args.transformers), w, str(args.seed)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        row = json.loads(lines[-1]) if lines else {**{k: None for k in KEYS}, "workers": w, "status": "crashed",
                                                   "error": done.stderr[-300:]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=KEYS)
            writer.writeheader()
            writer.writerows(rows)
    split = [r for r in rows if r["workers"] not in ("none",) and r["objective_cny"] is not None]
    if split and len({r["objective_cny"] for r in split}) != 1:
        print("MISMATCH: the split cells' objectives differ", file=sys.stderr)
        return 1
    one = next((r for r in rows if r["workers"] == "1" and r["wall_s"]), None)
    two = next((r for r in rows if r["workers"] == "2" and r["wall_s"]), None)
    if one and two:
        print(f"efficiency 1 -> 2 workers (wall): {one['wall_s'] / (2 * two['wall_s']):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
