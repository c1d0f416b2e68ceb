"""What the interior answer looks like next to HiGHS's vertex on one residential day: how many (session, period)
cells sit strictly between their bounds, how smooth the root load is, how far the two schedules are apart.

Usage (from the repository root)::

    python benchmarks/structured_spread.py --sessions 1000 --seed 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gridcharge  # noqa: E402
from gridcharge.bench.generate import generate  # noqa: E402
from gridcharge.schedule import node_loads  # noqa: E402


def describe(problem, schedule) -> dict:
    p = problem
    power = schedule.power
    present = p.presence > 0
    cmax = p.charge_max_kw[:, None] * np.ones_like(power)
    dmax = p.discharge_max_kw[:, None] * np.ones_like(power)
    tol = 1e-6
    interior = present & (power > tol) & (power < cmax - tol) | present & (power < -tol) & (power > -dmax + tol)
    root = node_loads(p, power)[p.root]
    return {"cost_cny": schedule.summary["objective_cny"], "cells": int(present.sum()),
            "cells_strictly_inside": int(interior.sum()), "cells_discharging": int((present & (power < -tol)).sum()),
            "root_peak_kw": float(root.max()), "root_step_max_kw": float(np.abs(np.diff(root)).max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    problem = gridcharge.build_problem(generate("residential", args.sessions, args.seed))
    highs = gridcharge.solve(problem, solver="highs", method="simplex")
    structured = gridcharge.solve(problem, solver="structured")
    print("| | " + " | ".join(describe(problem, highs)) + " |")
    print("|---|" + "---:|" * len(describe(problem, highs)))
    for name, schedule in (("HiGHS dual simplex", highs), ("structured", structured)):
        print(f"| {name} | " + " | ".join(f"{v:.6g}" if isinstance(v, float) else str(v)
                                         for v in describe(problem, schedule).values()) + " |")
    diff = np.abs(highs.power - structured.power)
    print(f"\nlargest |power difference| {diff.max():.3g} kW; cells differing by > 0.01 kW: {(diff > 0.01).sum()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
