"""``gridcharge bench``: every solver on every instance, verified; results.csv, leaderboard.md, scaling.png."""

from __future__ import annotations

import sys
from pathlib import Path

from .arguments import out_directory_problem, positive, positive_whole

#: the optimum by `auto`: the certified structured interior point where it wins by measurement (V2G days, large
#: days; benchmarks/RESULTS.md, issue 13), HiGHS elsewhere
DEFAULT_SOLVERS = "auto,equal_share,edf,llf,greedy_cost,uncontrolled"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="run solvers on benchmark instances; write results.csv, leaderboard.md, scaling.png",
        description="Run every solver on every instance, verify every result independently, and write "
                    "results.csv (one row per instance, solver and repeat), leaderboard.md (a table per instance, "
                    "ranked by objective then time) and scaling.png (log-log total time vs sessions per solver). "
                    "A solver is a registered name (gridcharge solvers), acnportal:edf|llf|round_robin|uncontrolled "
                    "(extra [peers]) or your own function as package.module:function, called with an Instance and "
                    "returning a Schedule or a (sessions x periods) power array [kW].")
    parser.add_argument("--instances", default="benchmarks/instances/*.json", metavar="GLOB",
                        help="glob of instance files (.json/.toml; default benchmarks/instances/*.json); "
                             "best-known optima are read from manifest.toml beside them")
    parser.add_argument("--solvers", default=DEFAULT_SOLVERS, metavar="LIST",
                        help=f"comma-separated solver specs (default {DEFAULT_SOLVERS})")
    parser.add_argument("--repeat", type=positive_whole, default=1, metavar="N",
                        help="runs per instance and solver [-]; times are reported per run and as medians")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), metavar="DIR",
                        help="output directory (default bench-out; created if missing, files replaced whole)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fresh-process", dest="fresh", action="store_true", default=True,
                      help="a new Python process per run: no warm caches, per-run peak memory (default)")
    mode.add_argument("--in-process", dest="fresh", action="store_false",
                      help="all runs in this process (faster to run; memory is the sampled process peak)")
    parser.add_argument("--time-limit", type=positive, metavar="S",
                        help="solver time limit passed to registered solvers [s] (default none)")
    parser.add_argument("--wall-limit", type=positive, metavar="S",
                        help="kill a fresh-process run after this many seconds and record 'timeout' [s]")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(run=run)






def run(args) -> int:
    from ..bench.runner import expand_instances, parse_solvers, run_bench
    from ..cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK

    try:
        instances = expand_instances(args.instances)
        specs = parse_solvers(args.solvers)
    except ValueError as exc:  # UnknownSolverError is one too: it lists the known names
        print(f"gridcharge: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if problem_text := out_directory_problem(args.out):
        print(problem_text, file=sys.stderr)
        return EXIT_INVALID
    say = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    rows = run_bench(instances, [s.text for s in specs], repeat=args.repeat, out_dir=args.out, fresh=args.fresh,
                     time_limit_s=args.time_limit, wall_limit_s=args.wall_limit, progress=say)
    bad = [r for r in rows if r["status"] not in ("ok", "violations", "infeasible")]
    print(f"{len(rows)} run(s): {sum(r['status'] == 'ok' for r in rows)} verified, "
          f"{sum(r['status'] == 'violations' for r in rows)} with violations, "
          f"{sum(r['status'] == 'infeasible' for r in rows)} infeasible, {len(bad)} failed; "
          f"see {args.out / 'leaderboard.md'}")
    return EXIT_OK if not bad else EXIT_ERROR
