"""How truthful is the time left that ``gridcharge scenario run`` prints? Run the README's main job, read the progress
bar's updates from stderr, and compare each estimate with the time that was really left.

    python benchmarks/bench_progress_eta.py [--quick] [--workers N] [SCENARIO]

Prints, per update, the seconds elapsed, the estimate, the seconds really left and their ratio, then the worst factor
(max of estimate/real and real/estimate) from the first finished task on: of the run time (elapsed + estimate against
the real end), and of the time left up to 90 % of the run (in the last seconds a ratio of small numbers says little).
The end is the simulation's end (the progress bar's last update).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time

UPDATE = re.compile(r"(\d+)/(\d+) tasks \[(?:(\d+):)?(\d+):(\d+) elapsed(?:, ~([\d.]+) (s|min|h) left)?")


def _seconds(h, m, s) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="scenarios/beijing-residential-630kva.toml")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "gridcharge.cli", "scenario", "run", args.scenario, "--out", out]
        command += ["--quick"] if args.quick else []
        command += ["--workers", str(args.workers)] if args.workers is not None else []
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    updates = []
    for m in UPDATE.finditer(done.stderr):
        n, total = int(m.group(1)), int(m.group(2))
        elapsed = _seconds(m.group(3), m.group(4), m.group(5))
        if m.group(6) is None:
            continue
        left = float(m.group(6)) * {"s": 1, "min": 60, "h": 3600}[m.group(7)]
        updates.append((n, total, elapsed, left))
    end = max(u[2] for u in updates)  # the bar's clock at its last update: the end of the simulation
    print(f"command: {' '.join(command[1:])}")
    print(f"wall {wall:.1f} s (process), simulation {end} s (progress bar), {len(updates)} updates")
    print(f"{'done':>9} {'elapsed s':>9} {'estimate s':>10} {'real s':>7} {'ratio':>6}")
    worst_left, worst_total = 1.0, 1.0
    for n, total, elapsed, left in updates:
        real = end - elapsed
        ratio = (left + 1) / (real + 1)  # +1 s: the bar shows whole seconds
        print(f"{n:>4}/{total:<4} {elapsed:>9} {left:>10.0f} {real:>7.0f} {ratio:>6.2f}")
        if n > 0:
            worst_total = max(worst_total, (elapsed + left) / end, end / (elapsed + left))
            if elapsed <= 0.9 * end:
                worst_left = max(worst_left, ratio, 1 / ratio)
    print(f"worst factor between the estimated and the real run time (elapsed + estimate vs the end), from the first "
          f"finished task: {worst_total:.2f}")
    print(f"worst factor between the estimated and the real time left, from the first finished task to 90 % of the "
          f"run: {worst_left:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
