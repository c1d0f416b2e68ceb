"""Benchmark: the structured interior point against HiGHS dual simplex, side by side in one run.

For every size and day variant (``v2g``: the residential day with a third of the cars V2G; ``tight``: the same at
tight transformer capacity; ``chargeonly``: no V2G) both solvers run, one after the other, each in a fresh Python
process (no shared caches or memory peak). Each cell records wall and CPU seconds of the solve call (which includes
gridcharge's own verification), iterations, the structured solver's per-stage and per-iteration breakdown, its
certified gap, the peak resident memory and the load average around it. Rows go to CSV after every cell; a Markdown
table with the ratios is printed at the end.

Usage (from the repository root)::

    python benchmarks/bench_structured.py --sizes 1000,3000,10000 --variants v2g,tight,chargeonly --seed 1 \\
        --out benchmarks/out/structured.csv

Districts (``--kind district``, variant ``default``) take ``--transformers`` (one value per size); HiGHS gets
``--highs-time-limit`` seconds (a cell that reaches it records status ``time_limit`` and HiGHS's incumbent, if any).
``--threads 1,2`` runs the structured cell once per numba thread count (default: the solver's own default), each
against the same HiGHS cell.
``--correctors N`` fixes the structured solver's Gondzio correctors per iteration (default: its own rule).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"v2g": {}, "tight": {"capacity": "tight"}, "chargeonly": {"v2g_share": 0.0}, "default": {}}
SOLVERS = ("structured", "highs")
KEYS = ("n_sessions", "variant", "solver", "threads", "status", "fallback", "verified", "wall_s", "cpu_s",
        "solve_call_s", "peak_rss_mb", "load_before", "load_after", "objective_cny", "lower_bound_cny", "gap_rel",
        "iterations", "correctors", "layout_seconds", "iterations_seconds", "certificate_seconds", "writeback_seconds",
        "ipm_iterate_seconds", "ipm_chains_seconds", "ipm_schur_seconds", "ipm_dense_seconds", "ipm_solve_seconds",
        "n_columns", "n_rows", "transformers", "error")


def measure(n_sessions: int, variant: str, solver: str, seed: int, kind: str = "residential", transformers: int = 0,
            highs_time_limit_s: float | None = None, threads: int | None = None,
            correctors: int | None = None) -> dict:
    """One cell in this process: generate, build, solve (verified), time."""
    sys.path.insert(0, str(REPO_ROOT))
    import gridcharge
    from gridcharge.bench.generate import generate

    row = {key: None for key in KEYS}
    row.update(n_sessions=n_sessions, variant=variant if kind == "residential" else f"{kind}-{variant}", solver=solver,
               load_before=os.getloadavg()[0])
    params = dict(VARIANTS[variant], **({"transformers": transformers} if transformers else {}))
    row["transformers"] = transformers or None
    problem = gridcharge.build_problem(generate(kind, n_sessions, seed, **params))
    options = {"method": "simplex", "time_limit_s": highs_time_limit_s} if solver == "highs" else {}
    if solver == "structured" and threads:
        options["threads"] = threads
    if solver == "structured" and correctors is not None:
        options["correctors"] = correctors
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        schedule = gridcharge.solve(problem, solver=solver, **options)
    except Exception as exc:  # noqa: BLE001 — a benchmark row records any failure instead of losing the run
        row.update(status="error", error=str(exc).splitlines()[0][:300], solve_call_s=time.perf_counter() - wall,
                   cpu_s=time.process_time() - cpu)  # e.g. HiGHS's time limit: how long it ran
    else:
        row["solve_call_s"] = time.perf_counter() - wall
        row["cpu_s"] = time.process_time() - cpu
        s = schedule.summary
        row.update({k: s.get(k) for k in KEYS if k in s})
        row.update(status=s["status"], verified=bool(schedule.verification.ok), fallback=s.get("fallback"))
        if solver == "highs":
            row["iterations"] = None
        else:
            import numba

            row["threads"] = numba.get_num_threads()  # what the solve ran on (its default when none was asked)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["load_after"] = os.getloadavg()[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def run_cell(n_sessions: int, variant: str, solver: str, seed: int, kind: str = "residential", transformers: int = 0,
             highs_time_limit_s: float | None = None, threads: int | None = None,
             correctors: int | None = None) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n_sessions), variant, solver, str(seed),
               kind, str(transformers), str(highs_time_limit_s or 0), str(threads or 0),
               str(-1 if correctors is None else correctors)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {**{k: None for k in KEYS}, "n_sessions": n_sessions, "variant": variant, "solver": solver,
                "status": "crashed", "error": done.stderr[-300:]}
    row = json.loads(lines[-1])
    row["wall_s"] = time.perf_counter() - started
    return row


def _git_rev() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=REPO_ROOT).stdout.strip()


def table(rows: list[dict]) -> str:
    """Markdown: one line per (size, variant, structured's threads), structured vs HiGHS."""
    out = ["| sessions | day | threads | HiGHS dual s (CPU) | structured s (CPU) | ratio wall | ratio CPU | "
           "iterations | s / iteration | gap | fallback | peak MB HiGHS / structured |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    by = {(r["n_sessions"], r["variant"], r["solver"]): r for r in rows if r["solver"] == "highs"}
    for s in sorted((r for r in rows if r["solver"] == "structured"),
                    key=lambda r: (r["n_sessions"], r["variant"], r.get("threads") or 0)):
        n, variant = s["n_sessions"], s["variant"]
        h = by.get((n, variant, "highs"))
        if s["solve_call_s"] is None or s["status"] == "error":
            continue
        if not h or h["solve_call_s"] is None or h["status"] == "error":  # HiGHS not run or stopped: structured alone
            h = {"solve_call_s": math.nan, "cpu_s": math.nan, "peak_rss_mb": math.nan}
        per_it = (s["iterations_seconds"] / s["iterations"]) if s.get("iterations") else float("nan")
        gap = f"{s['gap_rel']:.1e}" if s.get("gap_rel") is not None else "-"
        out.append(f"| {n} | {variant} | {s.get('threads')} | {h['solve_call_s']:.2f} ({h['cpu_s']:.2f}) | "
                   f"{s['solve_call_s']:.2f} "
                   f"({s['cpu_s']:.2f}) | {h['solve_call_s'] / s['solve_call_s']:.1f}x | "
                   f"{h['cpu_s'] / s['cpu_s']:.1f}x | {s.get('iterations')} | {per_it:.3f} | {gap} | "
                   f"{s.get('fallback') or '-'} | {h['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--variants", default="v2g,tight,chargeonly")
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kind", default="residential", help="generator kind (residential, feeder, ...)")
    parser.add_argument("--transformers", default="", help="districts: transformers per size, comma-separated")
    parser.add_argument("--highs-time-limit", type=float, default=None, help="HiGHS wall-clock limit per cell [s]")
    parser.add_argument("--threads", default="", help="structured: numba thread counts, comma-separated (one cell "
                        "each; default: the solver's default)")
    parser.add_argument("--correctors", type=int, default=None,
                        help="structured: Gondzio correctors per iteration (default: the solver's rule)")
    parser.add_argument("--out", default="benchmarks/out/structured.csv")
    parser.add_argument("--child", nargs=9, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        n, variant, solver, seed, kind, transformers, limit, threads, correctors = args.child
        print(json.dumps(measure(int(n), variant, solver, int(seed), kind, int(transformers), float(limit) or None,
                                 int(threads) or None, None if int(correctors) < 0 else int(correctors))), flush=True)
        return 0
    sizes = list(map(int, args.sizes.split(",")))
    transformers = list(map(int, args.transformers.split(","))) if args.transformers else [0] * len(sizes)
    if len(transformers) != len(sizes):
        parser.error(f"--transformers: expected one value per size ({len(sizes)}), got {args.transformers!r}")
    try:
        thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [None]
    except ValueError:
        thread_counts = [0]
    if any(t is not None and t < 1 for t in thread_counts):
        parser.error(f"--threads: expected thread counts of 1 or more, comma-separated; got {args.threads!r}")
    rev = _git_rev()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, n_transformers in zip(sizes, transformers):
        for variant in args.variants.split(","):
            cells = [(solver, t) for solver in args.solvers.split(",")
                     for t in (thread_counts if solver == "structured" else [None])]
            for solver, threads in cells:
                row = run_cell(n, variant, solver, args.seed, args.kind, n_transformers, args.highs_time_limit,
                               threads, args.correctors)
                row["git_rev"] = rev
                rows.append(row)
                print(f"{n} {variant} {solver} threads {row.get('threads')}: {row['status']} {row['solve_call_s']} s, "
                      f"cpu {row['cpu_s']}, gap {row['gap_rel']}, fallback {row['fallback']}, load "
                      f"{row['load_before']}-{row['load_after']}", file=sys.stderr, flush=True)
                with out.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=[*KEYS, "git_rev"])
                    writer.writeheader()
                    writer.writerows(rows)
    print(f"revision {rev}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
