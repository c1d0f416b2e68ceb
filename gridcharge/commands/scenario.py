"""``gridcharge scenario``: capacity studies of a site from a scenario file (``run``) or a check of the file (``check``)."""

from __future__ import annotations

import sys
from pathlib import Path

from .arguments import count, out_directory_problem, positive_whole


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scenario", help="capacity studies: overload, transformer ageing and hosting capacity from a scenario file",
        description="Simulate a site (scenario-v1 TOML, see scenarios/ and README.md 'Capacity scenarios') over "
                    "Monte Carlo days under each strategy, with the IEC 60076-7 transformer thermal model, and sweep "
                    "EV counts for the hosting capacity.")
    sub = parser.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    run_parser = sub.add_parser(
        "run", help="run the study; print the metrics per strategy; with --out write the report",
        description="Run every (strategy, EV count, day) task on dask.distributed (a local cluster by default) and "
                    "print the metrics per strategy and the hosting capacity. With --out DIR: report.md, report.html "
                    "(images embedded), results.parquet/.csv (one row per simulated day and strategy), "
                    "timeseries.parquet, hosting.csv and the PNG plots.")
    run_parser.add_argument("scenario", type=Path, nargs="+", metavar="FILE",
                            help="scenario file(s) (.toml, gridcharge/scenario-v1); several files are one sweep on "
                                 "one cluster (e.g. one per transformer)")
    run_parser.add_argument("--out", type=Path, metavar="DIR",
                            help="directory for the report, tables and plots (created if missing; files replaced "
                                 "whole, only when all are written); with several files, one sub-directory per file "
                                 "(its name without .toml) and sweep.csv (per file and strategy)")
    run_parser.add_argument("--quick", action="store_true",
                            help="a fast look: 2 days, 4 hosting counts on 2 days, no 'online' strategy")
    run_parser.add_argument("--workers", type=count, metavar="N",
                            help="worker processes of the local dask cluster, one thread each [-] (default: the CPU "
                                 "count); 0 runs the tasks in this process without dask")
    run_parser.add_argument("--scheduler", metavar="URL",
                            help="address of a running dask scheduler, e.g. tcp://HOST:8786 (its workers need "
                                 "gridcharge installed); overrides --workers")
    run_parser.add_argument("--days", type=positive_whole, metavar="N",
                            help="Monte Carlo days per strategy [days] (default: the file's 'days')")
    run_parser.add_argument("--seed", type=count, metavar="N", help="random seed [-] (default: the file's 'seed')")
    run_parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    run_parser.set_defaults(run=run)
    check_parser = sub.add_parser("check", help="validate a scenario file and print what it describes",
                                  description="Validate a scenario file: every problem is reported with its field, "
                                              "value and what was expected (exit 2); nothing is simulated.")
    check_parser.add_argument("scenario", type=Path, nargs="+", metavar="FILE", help="scenario file(s) (.toml)")
    check_parser.set_defaults(run=check)






def _load(args, path: Path | None = None):
    from ..scenarios.spec import load_scenario

    scenario = load_scenario(path if path is not None else args.scenario)
    updates = {}
    if getattr(args, "days", None) is not None:
        updates["days"] = args.days
    if getattr(args, "seed", None) is not None:
        updates["seed"] = args.seed
    if updates:
        scenario = scenario.model_copy(update=updates)
    if getattr(args, "quick", False):
        scenario = scenario.quick()
    return scenario


def check(args) -> int:
    from ..cli import EXIT_OK
    from ..scenarios.runner import plan

    for path in args.scenario:
        s = _load(args, path)
        print(f"{path}: ok — {s.name}")
        print(f"  {s.site.building_type}, {s.site.parking_spaces} spaces, {s.site.charger_count} chargers "
              f"(required {s.site.required_chargers}), {s.transformer.rated_kva:g} kVA, {s.evs} EVs/day")
        print(f"  {len(plan(s))} tasks: {len(s.strategies)} strategies x {s.days} days"
              + (f" + hosting {s.hosting_counts()} EVs x {s.hosting_days()} days x {s.hosting_strategies()}"
                 if s.hosting_counts() else ""))
    return EXIT_OK


def run(args) -> int:
    import time

    from ..cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK
    from ..scenarios.report import (
        compliance,
        hosting_tables,
        strategy_table,
        write_report,
    )
    from ..scenarios.runner import run_studies

    started = time.perf_counter()
    scenarios = [_load(args, path) for path in args.scenario]  # every file is checked before any work
    stems = [path.stem for path in args.scenario]
    if len(set(stems)) != len(stems):
        print(f"gridcharge: scenario files {', '.join(map(str, args.scenario))}: two share a name; expected distinct "
              "file names (each gets its own report folder)", file=sys.stderr)
        return EXIT_INVALID
    if args.out is not None and (problem_text := out_directory_problem(args.out)):
        print(problem_text, file=sys.stderr)
        return EXIT_INVALID
    if not args.quiet:
        for path, scenario in zip(args.scenario, scenarios):
            print(f"[1/3] {path}: {scenario.name}{' (--quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        print("[2/3] simulating ...", file=sys.stderr, flush=True)
    results = run_studies(scenarios, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    several = len(scenarios) > 1
    written = []
    if args.out is not None:
        if not args.quiet:
            print(f"[3/3] writing the report{'s' if several else ''} to {args.out}", file=sys.stderr, flush=True)
        try:
            for stem, result in zip(stems, results):
                written += list(write_report(result, args.out / stem if several else args.out).values())
            if several:
                written.append(_write_sweep(results, stems, args.out / "sweep.csv"))
        except OSError as exc:
            print(f"gridcharge: --out {args.out}: cannot write the report ({exc.strerror or exc})", file=sys.stderr)
            return EXIT_ERROR
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 30):
        for result in results:
            scenario = result.scenario
            print(f"gridcharge scenario run: {scenario.name}")
            print(f"  {compliance(result)}")
            print(f"  {result.tasks} tasks; {'the sweep took' if several else 'in'} {result.wall_seconds:.1f} s "
                  f"({sum(r.tasks for r in results) / max(result.wall_seconds, 1e-9):.1f} tasks/s, "
                  f"{result.workers or 'no'} dask worker(s)); total {time.perf_counter() - started:.1f} s")
            print(f"\nMetrics per strategy ({scenario.evs} EVs, {scenario.days} days):")
            print(strategy_table(result).T.to_string())
            _curve, capacity = hosting_tables(result)
            if len(capacity):
                print(f"\nHosting capacity (alpha {scenario.hosting.alpha:.0%}, {scenario.hosting_days()} days per "
                      "count):")
                print(capacity.to_string(index=False))
            print()
        if written:
            print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _write_sweep(results, stems, path: Path) -> Path:
    """One row per scenario file and strategy: the study's means and the hosting capacity (atomic write)."""
    import pandas as pd

    from .._files import atomic_write

    from ..scenarios.report import hosting_tables

    rows = []
    for stem, result in zip(stems, results):
        study = result.study
        _, capacity = hosting_tables(result)
        hosting = dict(zip(capacity["strategy"], capacity["hosting_evs"])) if len(capacity) else {}
        for strategy, group in study.groupby("strategy", sort=False):
            rows.append({"scenario": stem, "strategy": strategy, "evs": result.scenario.evs, "days": len(group),
                         "rated_kva": result.scenario.transformer.rated_kva,
                         "peak_loading_pct_max": group["peak_loading_pct"].max(),
                         "max_hot_spot_c": group["max_hot_spot_c"].max(),
                         "loss_of_life_h_mean": group["loss_of_life_h"].mean(),
                         "unmet_kwh_mean": group["unmet_kwh"].mean(),
                         "violating_share": group["violates"].mean(),
                         "hosting_evs": hosting.get(strategy)})
    frame = pd.DataFrame(rows)
    frame["hosting_evs"] = frame["hosting_evs"].astype("Int64")  # empty where a strategy was not swept
    return atomic_write(path, frame.to_csv(index=False))
