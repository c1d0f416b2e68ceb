"""Scaling of every solver with the number of sessions, to 100,000, on one family of instances.

Generates ``feeder`` instances (a 10 kV feeder over transformers of ~2,000 sessions each: residential compounds,
an office, a public car park; see ``gridcharge.bench.generate.feeder``) of the given sizes into ``--instances-dir``
(not committed), then runs ``gridcharge.bench.runner.run_bench`` twice, each run a fresh process per cell: the
baselines on every size, and the exact solvers only up to ``--exact-max`` sessions (HiGHS took 31 min and 4.3 GB at
50,000 residential sessions, see RESULTS.md). Writes ``results.csv`` (both runs), ``leaderboard.md`` and
``scaling.png`` (log-log total time vs sessions per solver) into ``--out``.

    /tmp/venv/bin/python benchmarks/bench_scaling.py --sizes 20,200,2000,20000,100000 --variant tight \\
        --exact highs --exact-max 20000 --out benchmarks/out/scaling --wall-limit 3600
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridcharge.bench import runner  # noqa: E402
from gridcharge.bench.generate import generate  # noqa: E402

BASELINES = "equal_share,edf,llf,greedy_cost,uncontrolled"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,200,2000,20000,100000", help="sessions per instance, comma-separated")
    parser.add_argument("--kind", default="feeder", help="generator kind (default feeder)")
    parser.add_argument("--variant", default="tight", choices=["tight", "default", "loose"], help="capacity variant")
    parser.add_argument("--seed", type=int, default=7, help="generator seed")
    parser.add_argument("--baselines", default=BASELINES, help="solvers run at every size")
    parser.add_argument("--exact", default="highs", help="solvers run only up to --exact-max sessions")
    parser.add_argument("--exact-max", type=int, default=20000, help="largest size for --exact [sessions]")
    parser.add_argument("--instances-dir", type=Path, default=Path("/tmp/gridcharge-scaling"),
                        help="where the generated instances go")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/scaling"), help="output directory")
    parser.add_argument("--wall-limit", type=float, default=3600.0, help="kill a cell after this many seconds [s]")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="CSV",
                        help="no run: merge these results.csv files into --out (csv, leaderboard, plot)")
    args = parser.parse_args(argv)
    if args.merge:
        rows = [row for path in args.merge for row in runner.read_results(path)]
        return write_outputs(rows, args)

    def say(message):
        print(message, file=sys.stderr, flush=True)

    sizes = [int(s) for s in args.sizes.split(",")]
    args.instances_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for n in sizes:
        path = args.instances_dir / f"{args.kind}-{n}-{args.variant}.json"
        if not path.exists():
            started = time.perf_counter()
            data = generate(args.kind, n, args.seed, capacity=args.variant, label=path.stem)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)
            say(f"generated {path} ({time.perf_counter() - started:.1f} s)")
        paths[n] = str(path)
    rows = []
    if args.exact:
        small = [paths[n] for n in sizes if n <= args.exact_max]
        rows += runner.run_bench(small, args.exact.split(","), out_dir=args.out / "exact", fresh=True,
                                 wall_limit_s=args.wall_limit, progress=say)
    rows += runner.run_bench([paths[n] for n in sizes], args.baselines.split(","), out_dir=args.out / "baselines",
                             fresh=True, wall_limit_s=args.wall_limit, progress=say)
    return write_outputs(rows, args)


def write_outputs(rows: list[dict], args) -> int:
    runner.add_gaps(rows, {})
    args.out.mkdir(parents=True, exist_ok=True)
    runner.write_csv(rows, args.out / "results.csv")
    header = f"Scaling run: {args.kind} {args.variant}, seed {args.seed}. {runner.machine_line()}"
    (args.out / "leaderboard.md").write_text(runner.leaderboard(rows, header) + "\n", encoding="utf-8")
    runner.scaling_plot(rows, args.out / "scaling.png",
                        f"{args.kind} ({args.variant}): total time vs sessions, fresh process per run")
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'leaderboard.md'}, {args.out / 'scaling.png'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
