"""The ``gridcharge`` command line. Thin: parse, call the library, format.

Exit codes: 0 done; 1 anything else (a verification failure, a solver failure, an internal error); 2 invalid input;
3 infeasible (which node, which period, by how many kW); 141 when the reader of the output closed the pipe
(``gridcharge verify ... | head``), quietly, as a shell reports it for ``cat``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from .commands.arguments import count, out_directory_problem, positive

EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_INFEASIBLE = 0, 1, 2, 3
#: The reader of the output closed the pipe: 128 + SIGPIPE, what a shell reports for cat or grep in that case.
EXIT_BROKEN_PIPE = 141

#: Further subcommands, one module each in ``gridcharge/commands/``. Each module has ``register(subparsers)``,
#: which adds its parser and sets ``run=callable(args) -> exit code`` as the parser's default. The modules import
#: the library lazily inside ``run`` so that ``--help`` stays fast.
COMMAND_MODULES: tuple[str, ...] = ("generate", "bench", "scenario", "serve")




def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridcharge",
        description="Schedule EV charging under the limits of a transformer → feeder → meter tree.",
        epilog="Exit codes: 0 ok, 1 error, 2 invalid input, 3 infeasible (141: the reader of the output closed the "
               "pipe, as in `| head`). Instance format: see README.md.",
    )
    parser.add_argument("--debug", action="store_true", help="show a traceback on internal errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    solve = sub.add_parser(
        "solve", help="find the optimal schedule of an instance",
        description="Solve an instance-v1 file (JSON or TOML), verify the result independently, print a summary "
                    "and, with --out, write its tables (schedule, nodes, transformers, binding; CSV or Parquet) and "
                    "summary.json.",
    )
    solve.add_argument("instance", type=Path,
                       help="instance file (.json or .toml, format gridcharge/instance-v1); its sessions inline or in "
                            "the .csv/.parquet table its sessions_file key names")
    solve.add_argument("--solver", default="auto",
                       help="solver name (default: auto, the certified structured interior point on V2G and large "
                            "days, HiGHS elsewhere; `gridcharge solvers` lists them)")
    solve.add_argument("--time-limit", type=positive, metavar="S",
                       help="wall-clock limit for the solver [seconds] (default: none)")
    solve.add_argument("--out", type=Path, metavar="DIR",
                       help="directory to write schedule.csv (session_id, period, start, power_kw [kW]), "
                            "nodes.csv (node_id, period, start, load_kw [kW], phase loads and limits [kW]), "
                            "transformers.csv (per transformer and feeder: peak import and export [kW] and when, "
                            "hours at a limit [h], binding rows counted), binding.csv (node_id, period, start, "
                            "direction, phase, load_kw, limit_kw [kW] of every transformer or feeder row at its "
                            "limit) and summary.json (created if missing; files are replaced whole; the tables as "
                            ".parquet with --format parquet)")
    solve.add_argument("--allow-overload", action="store_true",
                       help="turn node limits into penalised slack (objective.overload_penalty_cny_per_kwh, default "
                            "1000 per kWh in the tariff's currency) and report overload energy per node [kWh] "
                            "instead of failing")
    solve.add_argument("--method", choices=["auto", "simplex", "ipm"], default="auto",
                       help="HiGHS LP method (default auto: simplex for small models, interior point for large)")
    solve.add_argument("--workers", type=count, metavar="N",
                       help="structured solver: split the district by transformer subtree and run the parts on a "
                            "local dask cluster of N worker processes, one thread each [-]; 0 splits it in this "
                            "process; the optimum is the same for every N (default: one process, unsplit)")
    solve.add_argument("--scheduler", metavar="URL",
                       help="structured solver: run the parts on the running dask scheduler at URL, e.g. "
                            "tcp://HOST:8786 (its workers need gridcharge installed); overrides --workers")
    solve.add_argument("--quiet", action="store_true", help="print only the summary, no progress lines on stderr")
    solve.add_argument("--verbose", action="store_true", help="show the solver's own log")
    solve.add_argument("--format", choices=["csv", "parquet"], default="csv", dest="table_format",
                       help="format of the --out tables (default csv; parquet: the same columns, period starts as "
                            "time-zone-aware timestamps, for districts of millions of rows); summary.json either way")
    solve.add_argument("--progress", action="store_true",
                       help="show the solve's progress on stderr even when stderr is not a terminal (then one line "
                            "per iteration, and the elapsed time after 30 s without one): the structured interior "
                            "point's iteration, primal residual [-], dual residual [CNY per unit] and gap [-] once "
                            "known; HiGHS only its elapsed time [s] (its own log: --verbose). Default: shown, on one "
                            "redrawn line, when stderr is a terminal; stdout carries the summary alone either way")

    verify = sub.add_parser(
        "verify", help="check a schedule against every limit of an instance",
        description="Re-derive node loads, phase loads and battery energy from the instance and the signed power "
                    "in SCHEDULE.csv alone; print each violation. Exit 0 when there is none, 1 otherwise.",
    )
    verify.add_argument("instance", type=Path, help="instance file (.json or .toml)")
    verify.add_argument("schedule", type=Path,
                        help="schedule CSV with columns session_id, period, power_kw [kW] (as written by solve), or "
                             "the schedule.parquet of solve --format parquet")

    sub.add_parser("solvers", help="list the solver names --solver accepts")
    for name in COMMAND_MODULES:
        importlib.import_module(f"gridcharge.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import InfeasibleError, InstanceError, SolverError, UnknownSolverError

    try:
        code = _run(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        # the reader of our output left (`gridcharge verify ... | head`): stop quietly, like cat or grep; point
        # stdout at /dev/null so that the interpreter's last flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (InstanceError, UnknownSolverError) as exc:
        print(f"gridcharge: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except InfeasibleError as exc:
        print(f"gridcharge: {exc}", file=sys.stderr)
        return EXIT_INFEASIBLE
    except SolverError as exc:
        print(f"gridcharge: solver error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gridcharge: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # an internal error: say so plainly, traceback only on request
        if args.debug:
            traceback.print_exc()
        print(f"gridcharge: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


def _run(args) -> int:
    if args.command == "solve":
        return _solve(args)
    if args.command == "verify":
        return _verify(args)
    if getattr(args, "run", None) is not None:
        return args.run(args)
    if args.command == "solvers":
        from .solvers import available

        print("\n".join(available()))
        return EXIT_OK
    return EXIT_ERROR  # pragma: no cover - argparse requires a command


def _say(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _solve(args) -> int:
    from . import build_problem, load_instance, solve
    from .progress import timer
    from .solvers import get_solver

    if args.progress and args.quiet:
        print("gridcharge: --progress and --quiet: expected one of them, not both", file=sys.stderr)
        return EXIT_INVALID
    get_solver(args.solver)  # an unknown name fails before any work
    if (args.workers is not None or args.scheduler is not None) and args.solver not in ("auto", "structured"):
        print(f"gridcharge: --workers/--scheduler: the {args.solver!r} solver does not split a district "
              "(expected --solver structured or auto)", file=sys.stderr)
        return EXIT_INVALID
    started = time.perf_counter()
    instance = load_instance(args.instance)
    problem = build_problem(instance)
    _say(args, f"[1/3] loaded {args.instance}: {problem.n_sessions} sessions, {problem.n_nodes} nodes, "
               f"{problem.n_periods} periods x {instance.horizon.step_minutes} min "
               f"({time.perf_counter() - started:.2f} s)")
    if args.out is not None and (problem_text := out_directory_problem(args.out)):  # fails before the solve
        print(problem_text, file=sys.stderr)
        return EXIT_INVALID
    _say(args, f"[2/3] solving with {args.solver} ...")
    options = {"allow_overload": args.allow_overload}
    if args.solver in ("highs", "auto", "structured"):  # auto and structured pass --method to HiGHS on a fallback
        options.update(method=args.method, verbose=args.verbose)
    if args.workers is not None or args.scheduler is not None:
        options.update(workers=args.workers, scheduler=args.scheduler)
    # the timer shares the terminal with nothing: not with --quiet, not with HiGHS's own log (--verbose)
    shown = (args.progress or sys.stderr.isatty()) and not (args.quiet or args.verbose)
    with timer("      solving", enabled=shown, live=sys.stderr.isatty()) as status:
        if args.solver in ("auto", "structured"):
            options["on_iteration"] = lambda event: status.note(_iteration_text(event))
        schedule = solve(problem, solver=args.solver, time_limit_s=args.time_limit, **options)
    _say(args, f"[3/3] verified: {'ok' if schedule.verification.ok else 'overloads reported'}")
    try:
        paths = schedule.write(args.out, table_format=args.table_format) if args.out else {}
    except OSError as exc:
        print(f"gridcharge: --out {args.out}: cannot write the results ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_ERROR
    print(_format_summary(instance, problem, schedule, paths, schedule.capacity_report().summary()))
    # every schedule that reaches here passed gridcharge.solve's verification (an optimum, a heuristic's feasible
    # schedule, or the overloads that --allow-overload and `uncontrolled` report as their finding)
    return EXIT_OK


def _iteration_text(event) -> str:
    """One iterate of the structured interior point as ``gridcharge solve`` shows it on stderr."""
    known = f"gap {event.gap:.1e}" if event.gap is not None else f"mu {event.mu:.1e}"
    return (f"iteration {event.iteration}: primal {event.primal_residual:.1e}, dual {event.dual_residual:.1e}, "
            f"{known}")


def _format_summary(instance, problem, schedule, paths, capacity: dict) -> str:
    s = schedule.summary
    root = problem.root
    limit = problem.import_limit_kw[root]
    lines = [
        f"gridcharge solve: {instance.name}",
        f"  status          {s['status']} ({s.get('solver')} {s.get('solver_version', '')}"
        f"{', ' + s['method'] if s.get('method') else ''})",
        f"  objective       {s['objective_cny']:.2f} {instance.tariff.currency}",
        f"  energy          requested {s['energy_requested_kwh']:.1f} kWh, delivered "
        f"{s['energy_delivered_kwh']:.1f} kWh, unmet {s['unmet_kwh']:.1f} kWh",
        f"  V2G discharged  {s['energy_discharged_kwh']:.1f} kWh",
        f"  peak load       {s['peak_kw']:.1f} kW at {problem.node_ids[root]!r}"
        + (f" (import limit {limit:.1f} kW)" if limit < float("inf") else ""),
        f"  time            build {s.get('build_seconds', 0):.2f} s, solve {s.get('solve_seconds', 0):.2f} s",
    ]
    if s.get("overload_kwh", 0) > 0:
        worst = schedule.overload_kwh.sort_values(ascending=False)
        worst = worst[worst > 0].head(5)
        lines.append(f"  overload        {s['overload_kwh']:.2f} kWh over node limits: "
                     + ", ".join(f"{n} {v:.2f} kWh" for n, v in worst.items()))
    counted = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in capacity["nodes_by_kind"].items())
    if capacity["nodes"]:
        top = capacity["most_loaded"][0] if capacity["most_loaded"] else None
        lines.append(f"  transformers    {counted}: {capacity['nodes_at_limit']} at a limit, "
                     f"{capacity['binding_rows']} binding row(s)"
                     + (f"; most loaded {top['node_id']} {top['peak_loading_pct']:.1f} % at "
                        f"{(top['peak_import_start'] or '')[:16].replace('T', ' ')}" if top else ""))
    v = schedule.verification
    lines.append(f"  verified        {'ok, no violation' if v.ok else f'{len(v.violations)} limit violation(s) (overload)'}")
    if paths:
        lines.append("  wrote           " + ", ".join(str(p) for p in paths.values()))
    return "\n".join(lines)


def _verify(args) -> int:
    from . import load_instance, verify
    from .schedule import read_schedule_csv

    instance = load_instance(args.instance)
    power = read_schedule_csv(args.schedule, instance)
    result = verify(instance, power)
    print(format_violations(instance, result.violations))
    print(f"cost {result.cost_cny:.2f} {instance.tariff.currency}, delivered {result.delivered_kwh:.1f} kWh, "
          f"unmet {result.unmet_kwh:.1f} kWh, peak {result.peak_kw:.1f} kW")
    return EXIT_OK if result.ok else EXIT_ERROR


#: How each kind of violation reads, in the order they are shown (after ``not_finite``, which voids the rest): the
#: tree's limits first (they concern everyone on the transformer), then each car's. (what the schedule gives, the
#: comparison, the bound, unit, sign of the values as verify reports them)
_VIOLATION_TEXT = {
    "node_import": ("net load", ">", "import limit", "kW", 1),
    "node_export": ("reverse flow", ">", "export limit", "kW", 1),
    "phase_import": ("phase load", ">", "phase import limit", "kW", 1),
    "charge_limit": ("charging", ">", "charge limit", "kW", 1),
    "discharge_limit": ("discharging", ">", "discharge limit", "kW", 1),
    "not_plugged_in": ("power", "while not plugged in; limit", "", "kW", 1),
    # a set-point is a limit (a full car draws less): the energy scheduled up to and including a period may pass the
    # request or the battery bound by at most the last increment's allowance (gridcharge.verify)
    "over_request": ("energy scheduled so far", ">", "request (and last-increment allowance)", "kWh", 1),
    "battery_upper": ("energy scheduled so far", ">", "battery upper bound (and last-increment allowance)", "kWh", 1),
    "battery_lower": ("energy added so far", "<", "battery floor", "kWh", -1),  # verify negates both
}
#: Violations listed per kind (all are counted).
_SHOWN_PER_KIND = 10


def format_violations(instance, violations) -> str:
    """What ``gridcharge verify`` prints: the count per kind first, then the first violations of each kind, node and
    phase limits before per-car ones, each with its period's start time and units."""
    if not violations:
        return "ok: no violation"
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    by_kind: dict[str, list] = {}
    for v in violations:
        by_kind.setdefault(v.kind, []).append(v)
    kinds = [k for k in ("not_finite", *_VIOLATION_TEXT) if k in by_kind] + sorted(set(by_kind) - set(_VIOLATION_TEXT))
    horizon = instance.horizon
    zone = ZoneInfo(horizon.timezone)

    def start(period: int) -> str:
        return (horizon.start + timedelta(minutes=horizon.step_minutes * period)).astimezone(zone).strftime(
            "%Y-%m-%d %H:%M")

    lines = [f"{len(violations):,} violation(s): " + ", ".join(f"{len(by_kind[k]):,} {k}" for k in kinds)]
    for kind in kinds:
        shown = by_kind[kind][:_SHOWN_PER_KIND]
        what, compare, bound, unit, sign = _VIOLATION_TEXT.get(kind, ("value", ">", "limit", "", 1))
        lines.append(f"{kind} ({len(by_kind[kind]):,}):")
        for v in shown:
            value, limit = sign * v.value, sign * v.limit
            if kind == "not_finite":
                text = f"power {v.value} kW is not a finite number"
            else:
                text = (f"{what} {value:.6g} {unit} {compare} {bound} {limit:.6g} {unit}".replace("  ", " ")
                        + f", by {abs(value - limit):.6g} {unit}")
            lines.append(f"  {kind}: {v.where} period {v.period} ({start(v.period)}): {text}")
        if len(by_kind[kind]) > len(shown):
            lines.append(f"  ... and {len(by_kind[kind]) - len(shown):,} more {kind}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
