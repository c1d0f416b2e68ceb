"""Benchmark: the structured interior point's iterations and CPU seconds with and without Gondzio's centrality
correctors, the interior point alone (no layout, write-back or verification), one numba and one BLAS thread.

Every (instance, variant) cell runs in a fresh Python process, one after the other; a variant is ``rule`` (the
solver's own choice, :func:`gridcharge.solvers.structured.ipm.correctors_for`) or ``key=value`` pairs of
:class:`~gridcharge.solvers.structured.ipm.Correctors` joined by commas (``count=0``: Mehrotra alone). Rows go to CSV;
a Markdown table is printed at the end.

Usage (from the repository root)::

    python benchmarks/bench_correctors.py --kind district --sizes 2000,10000 --transformers 10,50 \\
        --variants "count=0;rule" --seed 1 --out benchmarks/out/correctors.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS = ("kind", "n_sessions", "transformers", "variant", "status", "iterations", "correctors", "correctors_kept",
        "ipm_cpu_s", "ipm_wall_s", "objective_cny", "load_before", "load_after")


def measure(kind: str, n_sessions: int, transformers: int, seed: int, variant: str) -> dict:
    """One cell in this process: generate, build the LP and its layout, then time the interior point alone."""
    sys.path.insert(0, str(REPO_ROOT))
    import numba
    from threadpoolctl import threadpool_limits

    import gridcharge
    from gridcharge.bench.generate import generate
    from gridcharge.formulation.lp import build_lp
    from gridcharge.solvers.structured.ipm import Correctors, interior_point
    from gridcharge.solvers.structured.layout import derive_layout

    params = {"transformers": transformers} if transformers else {}
    lp = build_lp(gridcharge.build_problem(generate(kind, n_sessions, seed, **params)))
    layout = derive_layout(lp)
    correctors = None if variant == "rule" else Correctors(
        **{k: (int(v) if k == "count" else float(v)) for k, v in (p.split("=") for p in variant.split(","))})
    numba.set_num_threads(1)
    row = dict(kind=kind, n_sessions=n_sessions, transformers=transformers or None, variant=variant,
               load_before=os.getloadavg()[0])
    with threadpool_limits(limits=1, user_api="blas"):
        wall, cpu = time.perf_counter(), time.process_time()
        result = interior_point(layout, lp.col_cost, offset=lp.offset, max_iterations=200, correctors=correctors)
        row.update(ipm_cpu_s=time.process_time() - cpu, ipm_wall_s=time.perf_counter() - wall)
    row.update(status=result.status, iterations=result.iterations, correctors=result.correctors,
               correctors_kept=result.correctors_kept, objective_cny=result.primal_objective + lp.offset,
               load_after=os.getloadavg()[0])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="district")
    parser.add_argument("--sizes", default="2000")
    parser.add_argument("--transformers", default="", help="districts: transformers per size, comma-separated")
    parser.add_argument("--variants", default="count=0;rule", help="';'-separated variants (module docstring)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/out/correctors.csv")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, n, transformers, seed, variant = args.child
        print(json.dumps(measure(kind, int(n), int(transformers), int(seed), variant)), flush=True)
        return 0
    sizes = list(map(int, args.sizes.split(",")))
    transformers = list(map(int, args.transformers.split(","))) if args.transformers else [0] * len(sizes)
    if len(transformers) != len(sizes):
        parser.error(f"--transformers: expected one value per size ({len(sizes)}), got {args.transformers!r}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, n_transformers in zip(sizes, transformers):
        for variant in args.variants.split(";"):
            command = [sys.executable, str(Path(__file__).resolve()), "--child", args.kind, str(n), str(n_transformers),
                       str(args.seed), variant]
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"kind": args.kind, "n_sessions": n, "variant": variant,
                                                       "status": "crashed: " + done.stderr[-300:]}
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
            with out.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=KEYS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
    print("| instance | variant | iterations | correctors tried / kept | IPM CPU s | load |\n|---|---|---:|---:|---:|---|")
    for r in rows:
        if "iterations" not in r:
            continue
        where = f"{r['n_sessions']:,}" + (f" / {r['transformers']}" if r.get("transformers") else f" {r['kind']}")
        print(f"| {where} | {r['variant']} | {r['iterations']} | {r['correctors']} / {r['correctors_kept']} | "
              f"{r['ipm_cpu_s']:.2f} | {r['load_before']:.1f}-{r['load_after']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
