"""Benchmark: the CPU an idle local dask cluster costs per second — in the process that starts it (scheduler, nannies,
client) and in each worker — as gridcharge starts it (``gridcharge.cluster.dask_client``: its ``CLUSTER_CONFIG`` and
``WORKER_ENVIRON``) and with dask's own defaults, side by side in one run, each cell in a fresh process.

That cost is paid every second of a district solve or a scenario study, on the cores the work runs on.

Usage (from the repository root)::

    python benchmarks/bench_cluster_idle.py --workers 2 --seconds 30 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpu_s() -> float:
    """CPU seconds of the calling process, all threads (run on each worker too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(kind: str, workers: int, seconds: float) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    from contextlib import ExitStack

    stack = ExitStack()
    with stack:
        if kind == "gridcharge":
            from gridcharge.cluster import dask_client

            client = stack.enter_context(dask_client(workers, None))
        else:
            from dask.distributed import Client, LocalCluster

            cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0"))
            client = stack.enter_context(Client(cluster))
        time.sleep(3.0)  # past the start-up
        before, own, started = client.run(_cpu_s), _cpu_s(), time.perf_counter()
        time.sleep(seconds)
        after, own_after, ended = client.run(_cpu_s), _cpu_s(), time.perf_counter()
        wall = ended - started
        per_worker = sorted((after[w] - before[w]) / wall * 1e3 for w in after)
        return {"cluster": kind, "workers": workers, "seconds": round(wall, 1),
                "coordinator_ms_per_s": round((own_after - own) / wall * 1e3, 1),
                "worker_ms_per_s": [round(v, 1) for v in per_worker]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster [-]")
    parser.add_argument("--seconds", type=float, default=30.0, help="idle time measured per cell [s]")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each pair of cells [-]")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, workers, seconds = args.child
        print(json.dumps(measure(kind, int(workers), float(seconds))))
        return
    print("| cluster | workers | idle s | coordinator CPU [ms/s] | each worker's CPU [ms/s] |")
    print("|---|---:|---:|---:|---|")
    for _ in range(args.repeat):
        for kind in ("dask defaults", "gridcharge"):
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(args.workers), str(args.seconds)],
                                 capture_output=True, text=True, check=True, cwd=REPO_ROOT)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {row['cluster']} | {row['workers']} | {row['seconds']} | {row['coordinator_ms_per_s']} | "
                  f"{', '.join(map(str, row['worker_ms_per_s']))} |", flush=True)


if __name__ == "__main__":
    main()
