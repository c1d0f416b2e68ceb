"""Quality table: every solver on every benchmark instance, side by side in one run.

For each instance the LP optimum (``highs``) is the reference; each other solver's objective gap to it, unmet
energy, peak load, overload and run time are reported, and every result is verified independently (``uncontrolled``
ignores node limits on purpose: its overload is the finding, not a failure).

    python benchmarks/bench_quality.py --instances 'benchmarks/instances/*.json' \\
        --solvers highs,pyomo:highs,uncontrolled,equal_share,edf,llf,greedy_cost --out benchmarks/out/quality.csv

Timing is in-process (``time.perf_counter`` around ``gridcharge.solve``, which includes verification); each solver
runs on the same already-validated :class:`~gridcharge.problem.Problem`, one after the other.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import pandas as pd

import gridcharge

DEFAULT_SOLVERS = "highs,pyomo:highs,uncontrolled,equal_share,edf,llf,greedy_cost"


def run(instance_paths: list[str], solvers: list[str]) -> pd.DataFrame:
    """One row per (instance, solver): objective [CNY], gap to the optimum [%], unmet [kWh], peak [kW],
    overload [kWh], time [s], verified."""
    rows = []
    for path in instance_paths:
        problem = gridcharge.build_problem(gridcharge.load_instance(path))
        optimum = None
        for solver in solvers:
            print(f"{Path(path).name}: {solver} ...", file=sys.stderr, flush=True)
            row = {"instance": Path(path).stem, "sessions": problem.n_sessions, "solver": solver}
            started = time.perf_counter()
            try:
                schedule = gridcharge.solve(problem, solver=solver)
            except gridcharge.InfeasibleError as exc:
                row.update(status="infeasible", error=str(exc).splitlines()[0])
            else:
                s = schedule.summary
                row.update(status=s["status"], objective_cny=s["objective_cny"], unmet_kwh=s["unmet_kwh"],
                           peak_kw=s["peak_kw"], overload_kwh=sum(schedule.verification.overload_kwh.values()),
                           verified=schedule.verification.ok, violations=len(schedule.verification.violations))
                if solver == "highs":
                    optimum = s["objective_cny"]
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
        for row in rows:
            if row["instance"] == Path(path).stem and optimum is not None and "objective_cny" in row:
                row["gap_pct"] = 100.0 * (row["objective_cny"] - optimum) / max(abs(optimum), 1e-9)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """The table as Markdown (formatted here: tabulate is not a dependency)."""
    columns = ["instance", "sessions", "solver", "status", "objective_cny", "gap_pct", "unmet_kwh", "peak_kw",
               "overload_kwh", "seconds", "verified"]
    fmt = {"objective_cny": "{:.2f}", "gap_pct": "{:+.2f}", "unmet_kwh": "{:.1f}", "peak_kw": "{:.1f}",
           "overload_kwh": "{:.1f}", "seconds": "{:.3f}"}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in frame.to_dict("records"):
        cells = []
        for c in columns:
            value = record.get(c)
            if value is None or (isinstance(value, float) and pd.isna(value)):
                cells.append("")
            elif c in fmt:
                cells.append(fmt[c].format(value))
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="benchmarks/instances/*.json", help="glob of instance files")
    parser.add_argument("--solvers", default=DEFAULT_SOLVERS, help="comma-separated solver names; highs first")
    parser.add_argument("--out", type=Path, help="CSV file for the rows")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(args.instances))
    if not paths:
        parser.error(f"no instance matches {args.instances!r}")
    frame = run(paths, [s.strip() for s in args.solvers.split(",") if s.strip()])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    print(markdown(frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
