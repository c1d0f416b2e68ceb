"""Benchmark: first touch of fresh numpy memory in a new process, with and without numpy's huge-page advice.

Each cell is a fresh Python process that imports numpy (``NUMPY_MADVISE_HUGEPAGE`` unset: numpy's default, advice on
for arrays of 4 MB and more where the kernel's THP mode is ``madvise``; or ``0``) and fills ``--arrays`` new arrays
of 32 MB, timed. A cell runs after ``--idle`` seconds of nothing (a virtual machine with free page reporting has then
handed the memory freed before back to its host) and again right after. Why gridcharge imports numpy without the
advice: docs/design/structured.md, "Serial work around the iteration".

Usage (from the repository root)::

    python benchmarks/bench_first_touch.py --rounds 3 --idle 15
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import time, numpy as np
started = time.perf_counter()
arrays = [np.ones(4_000_000) for _ in range({arrays})]
print(time.perf_counter() - started)
"""


def touch_seconds(advice: bool, arrays: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if not advice:
        env["NUMPY_MADVISE_HUGEPAGE"] = "0"
    done = subprocess.run([sys.executable, "-c", CHILD.format(arrays=arrays)], capture_output=True, text=True,
                          env=env, check=True)
    return float(done.stdout.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of idle before each first cell [s]")
    parser.add_argument("--arrays", type=int, default=20, help="arrays of 32 MB per cell")
    args = parser.parse_args(argv)
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    print(f"THP: {thp.read_text().strip() if thp.exists() else 'n/a'}; {args.arrays * 32} MB per cell\n")
    print("| round | advice | load before | after idle s | right after s |\n|---:|---|---:|---:|---:|")
    for round_ in range(1, args.rounds + 1):
        for advice in (True, False):
            time.sleep(args.idle)
            load = os.getloadavg()[0]
            cold = touch_seconds(advice, args.arrays)
            warm = touch_seconds(advice, args.arrays)
            print(f"| {round_} | {'numpy default' if advice else 'off'} | {load:.1f} | {cold:.3f} | {warm:.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
