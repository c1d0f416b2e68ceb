"""Benchmark of the optimisation core: generate → validate → arrays → LP → HiGHS → extract → verify.

Every (size, method) cell runs in its own fresh Python process, so that no cell inherits another's memory peak,
imports, caches or heap fragmentation, and so that a cell that hangs or runs out of memory can be stopped without
losing the others. The child prints one JSON line; the parent collects the rows, writes them as CSV (after every cell,
so a long run that is interrupted keeps what it measured) and prints a Markdown table.

Usage::

    python benchmarks/bench_core.py --sizes 100,1000,10000,50000 --methods simplex,ipm --seed 1 \\
        --out benchmarks/out/core.csv --time-limit 600

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

#: Keys of the row one cell produces (the child's JSON line), in CSV column order.
ROW_KEYS = (
    "n_sessions", "method", "status", "verified",
    "generate_s", "load_s", "problem_s", "build_s", "solve_s", "extract_s", "verify_s", "solve_call_s", "total_s",
    "cpu_s", "peak_rss_mb",
    "objective_cny", "solver_objective_cny", "unmet_kwh", "peak_kw",
    "n_columns", "n_rows", "n_nonzeros", "n_binaries", "method_used",
    "seed", "time_limit_s", "threads", "error",
)
#: Columns the parent adds to every row: the code and library versions that were measured.
RUN_KEYS = ("wall_s", "git_rev", "highspy_version", "python_version")

#: The repository this runner belongs to.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Seconds between two progress lines on stderr while a cell runs.
PROGRESS_INTERVAL_S = 10.0


# ---------------------------------------------------------------------------------------------------------------------
# child: one cell, in whatever process calls it


def measure_cell(n_sessions: int, method: str, seed: int, time_limit_s: float | None = None,
                 threads: int | None = None) -> dict:
    """Generate, load, build, solve and verify one residential instance; time each stage.

    Parameters
    ----------
    n_sessions : int
        Parking spaces = chargers = sessions of ``gridcharge.bench.generate.residential``.
    method : str
        HiGHS method passed to :func:`gridcharge.solve` (``"simplex"``, ``"ipm"``, ``"auto"``, ...), or a whole
        solver name containing a colon (``"pyomo:highs"``).
    seed : int
        Seed of the instance generator.
    time_limit_s : float, optional
        HiGHS wall-clock limit per HiGHS call [s].
    threads : int, optional
        HiGHS threads (default: HiGHS's choice).

    Returns
    -------
    dict
        One value per key of :data:`ROW_KEYS`. Stage times are wall-clock seconds (``time.perf_counter``);
        ``solve_s`` is HiGHS's own run time as reported in the schedule summary; ``peak_rss_mb`` is this process's
        maximum resident set size so far [MiB]. On a solver or input error the row has ``status`` other than
        ``"optimal"``, ``error`` set, and NaN for what was not measured.
    """
    import gridcharge
    from gridcharge.bench.generate import residential

    row = {key: math.nan for key in ROW_KEYS}
    row.update(n_sessions=int(n_sessions), method=method, seed=int(seed), time_limit_s=time_limit_s,
               threads=threads, status="error", verified=False, error="", method_used="")

    started = time.perf_counter()
    data = residential(n_sessions, seed)
    row["generate_s"] = time.perf_counter() - started

    load_started = time.perf_counter()
    try:
        instance = gridcharge.load_instance(data)
        row["load_s"] = time.perf_counter() - load_started

        started = time.perf_counter()
        problem = gridcharge.build_problem(instance)
        row["problem_s"] = time.perf_counter() - started

        if ":" in method:  # a whole solver name, e.g. pyomo:highs (the Pyomo builder on the same model)
            solver, options = method, {}
        else:
            solver = "highs"
            options = {"method": method} if threads is None else {"method": method, "threads": int(threads)}
        started = time.perf_counter()
        schedule = gridcharge.solve(problem, solver=solver, time_limit_s=time_limit_s, **options)  # verifies
        finished = time.perf_counter()
        row["solve_call_s"] = finished - started
        row["total_s"] = finished - load_started
    except gridcharge.InstanceError as exc:
        row.update(status="invalid_instance", error=_one_line(exc))
    except gridcharge.InfeasibleError as exc:
        row.update(status="infeasible", error=_one_line(exc))
    except gridcharge.SolverError as exc:
        message = _one_line(exc)
        status = "time_limit" if "time_limit" in message else (
            "verification_failed" if "verification" in message else "solver_error")
        row.update(status=status, error=message)
    except Exception as exc:  # noqa: BLE001 — a benchmark row records any failure instead of losing the run
        row.update(status="error", error=_one_line(exc))
    else:
        summary = schedule.summary
        row.update(
            status=summary["status"], verified=bool(schedule.verification.ok),
            build_s=summary["build_seconds"], solve_s=summary["solve_seconds"],
            extract_s=summary["extract_seconds"], method_used=summary["method"],
            objective_cny=summary["objective_cny"], unmet_kwh=summary["unmet_kwh"], peak_kw=summary["peak_kw"],
            n_columns=summary["n_columns"], n_rows=summary["n_rows"], n_nonzeros=summary["n_nonzeros"],
            n_binaries=summary["n_binaries"], solver_objective_cny=summary.get("solver_objective_cny", math.nan),
        )
        started = time.perf_counter()
        check = gridcharge.verify(instance, schedule)  # a second, separately timed run of the verifier
        row["verify_s"] = time.perf_counter() - started
        if not check.ok:
            row.update(verified=False, status="verification_failed", error=_one_line(str(check)))

    usage = resource.getrusage(resource.RUSAGE_SELF)
    row["cpu_s"] = usage.ru_utime + usage.ru_stime
    row["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return {key: _plain(row[key]) for key in ROW_KEYS}


def _one_line(value: object, limit_chars: int = 500) -> str:
    text = " | ".join(line.strip() for line in str(value).splitlines() if line.strip())
    return text if len(text) <= limit_chars else text[: limit_chars - 3] + "..."


def _plain(value):
    """A JSON-safe Python scalar: numpy scalars become Python ones, NaN and infinities become None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _child_main(args: argparse.Namespace) -> int:
    # measure this working tree's gridcharge (the one ``git_rev`` describes), even when another copy is installed
    sys.path.insert(0, str(REPO_ROOT))
    row = measure_cell(args.n_sessions, args.method, args.seed, args.time_limit, args.threads)
    sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# parent: one fresh process per cell


def run_cell(n_sessions: int, method: str, seed: int, time_limit_s: float | None, threads: int | None,
             wall_limit_s: float, label: str) -> dict:
    """Run :func:`measure_cell` in a fresh interpreter (``sys.executable``) and return its row.

    The child is killed after ``wall_limit_s`` [s]; a killed, crashed or silent child gives a row with ``status``
    ``"timeout"`` or ``"crashed"`` and the end of its stderr as ``error``. Progress goes to stderr.
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--n-sessions", str(n_sessions),
               "--method", method, "--seed", str(seed)]
    if time_limit_s is not None:
        command += ["--time-limit", str(time_limit_s)]
    if threads is not None:
        command += ["--threads", str(threads)]

    started = time.perf_counter()
    _progress(f"{label} n_sessions={n_sessions} method={method}: started")
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=REPO_ROOT)
    status, out, err = None, "", ""
    while True:
        elapsed_s = time.perf_counter() - started
        try:
            out, err = child.communicate(timeout=min(PROGRESS_INTERVAL_S, max(0.1, wall_limit_s - elapsed_s)))
            break
        except subprocess.TimeoutExpired:
            elapsed_s = time.perf_counter() - started
            if elapsed_s >= wall_limit_s:
                child.kill()  # only the child this function started
                out, err = child.communicate()
                status = "timeout"
                break
            _progress(f"{label} n_sessions={n_sessions} method={method}: running, {elapsed_s:.0f} s")
    wall_s = time.perf_counter() - started

    row = _last_json_line(out)
    if row is None:
        row = {key: None for key in ROW_KEYS}
        reason = (f"killed after the wall limit of {wall_limit_s:g} s" if status == "timeout"
                  else f"child exited with code {child.returncode} without a result")
        tail = _one_line("\n".join(err.strip().splitlines()[-5:]))
        row.update(n_sessions=n_sessions, method=method, seed=seed, time_limit_s=time_limit_s, threads=threads,
                   verified=False, status=status or "crashed", error=f"{reason}: {tail}" if tail else reason)
    row["wall_s"] = wall_s
    _progress(f"{label} n_sessions={n_sessions} method={method}: {row['status']} "
              f"(verified={row['verified']}) in {wall_s:.1f} s")
    return row


def _last_json_line(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _progress(message: str) -> None:
    print(f"[bench_core {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_versions() -> dict:
    """What was measured: git revision, highspy and Python versions.

    With uncommitted changes under ``gridcharge/`` the revision reads ``<commit>+dirty.<sha1 of the diff, 8 hex>``, so
    rows measured on the same uncommitted code can still be told apart from others.
    """
    from importlib.metadata import version

    root = REPO_ROOT
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "gridcharge"], cwd=root, capture_output=True,
                              check=True).stdout
        git_rev = rev + (f"+dirty.{hashlib.sha1(diff).hexdigest()[:8]}" if diff.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        git_rev = "unknown"
    return {"git_rev": git_rev, "highspy_version": version("highspy"),
            "python_version": ".".join(map(str, sys.version_info[:3]))}


# ---------------------------------------------------------------------------------------------------------------------
# report


def markdown_table(header: list[str], rows: list[list[object]], formats: dict[str, str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned (no dependency on ``tabulate``).

    Parameters
    ----------
    header : list of str
    rows : list of lists — one value per column; None and NaN give an empty cell
    formats : dict, optional — format spec per column name for floats (default: 4 significant digits)
    """
    formats = formats or {}

    def cell(value, spec: str | None = None) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return ""
        if isinstance(value, float):
            if spec:
                return format(value, spec)
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value).replace("|", "\\|")

    def numeric(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    specs = [formats.get(h) for h in header]
    header = [cell(h) for h in header]
    text = [[cell(v, f) for v, f in zip(r, specs)] for r in rows]
    width = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(header)]
    right = [bool(rows) and all(numeric(r[i]) or r[i] is None for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, width)) + " |",
             "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(width, right)) + "|"]
    for r in text:
        lines.append("| " + " | ".join(v.rjust(w) if a else v.ljust(w) for v, w, a in zip(r, width, right)) + " |")
    return "\n".join(lines)


def report(frame, methods: list[str]) -> str:
    """The Markdown report of a run: one line per cell and, with two or more methods, their total times per size.

    ``(build+extract)/solve`` is the time gridcharge spends around HiGHS (LP arrays, solution extraction) per second
    of HiGHS. The method comparison divides each method's ``total_s`` by the first method's, per size; both cells
    ran in the same invocation, one after the other. ``obj rel. diff`` is ``|obj_other - obj_first| / max(1, |obj_first|)``.
    """
    def value(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else (
            x.item() if hasattr(x, "item") else x)

    seconds = {c: frame[c].astype(float) for c in ("build_s", "extract_s", "solve_s")}  # None (failed) → NaN
    ratio = (seconds["build_s"] + seconds["extract_s"]) / seconds["solve_s"]
    header = ["n_sessions", "method", "status", "verified", "columns", "rows", "nonzeros", "binaries",
              "load_s", "problem_s", "build_s", "solve_s", "extract_s", "verify_s", "total_s",
              "(build+extract)/solve", "peak_rss_mb", "objective_cny"]
    rows = [[value(r.n_sessions), r.method, r.status, value(r.verified), value(r.n_columns), value(r.n_rows),
             value(r.n_nonzeros), value(r.n_binaries), value(r.load_s), value(r.problem_s), value(r.build_s),
             value(r.solve_s), value(r.extract_s), value(r.verify_s), value(r.total_s), value(q),
             value(r.peak_rss_mb), value(r.objective_cny)]
            for r, q in zip(frame.itertuples(index=False), ratio)]
    parts = [markdown_table(header, rows, formats={"objective_cny": ",.4f"})]

    if len(methods) >= 2:
        total = {(r.n_sessions, r.method): r.total_s for r in frame.itertuples(index=False)}
        objective = {(r.n_sessions, r.method): r.objective_cny for r in frame.itertuples(index=False)}
        first = methods[0]
        header = ["n_sessions"] + [f"total_s {m}" for m in methods]
        for other in methods[1:]:
            header += [f"total {other}/{first}", f"obj rel. diff {other} vs {first}"]
        rows = []
        for n in sorted(set(frame["n_sessions"])):
            line = [int(n)] + [value(_number(total.get((n, m)))) for m in methods]
            for other in methods[1:]:
                a, b = _number(total.get((n, first))), _number(total.get((n, other)))
                oa, ob = _number(objective.get((n, first))), _number(objective.get((n, other)))
                line += [value(b / a if a > 0 else math.nan), value(abs(ob - oa) / max(1.0, abs(oa)))]
            rows.append(line)
        parts.append(markdown_table(header, rows))

    failed = [r for r in frame.itertuples(index=False) if r.status != "optimal" or not bool(r.verified)]
    if failed:
        parts.append("\n".join(f"- n_sessions={r.n_sessions} method={r.method}: {r.status}: {r.error or ''}"
                               for r in failed))
    return "\n\n".join(parts)


def _number(x) -> float:
    """``x`` as a float; NaN for None or anything not a number."""
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


# ---------------------------------------------------------------------------------------------------------------------
# command line


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="100,1000", help="comma-separated numbers of sessions")
    parser.add_argument("--methods", default="simplex,ipm",
                        help="comma-separated HiGHS methods (simplex, ipm, auto) or whole solver names with a "
                             "colon (pyomo:highs, pyomo:appsi_highs)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the instance generator")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/core.csv"), help="CSV of the rows")
    parser.add_argument("--time-limit", type=float, default=600.0, help="HiGHS time limit per HiGHS call [s]")
    parser.add_argument("--wall-limit", type=float, default=None,
                        help="kill a cell's process after this many seconds [s]; None: 3 x time limit + 600")
    parser.add_argument("--threads", type=int, default=None, help="HiGHS threads; None: HiGHS's choice")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n-sessions", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every (size, method) cell in a fresh process; write the CSV; print the Markdown report."""
    args = _arguments(argv)
    if args.child:
        return _child_main(args)

    import pandas as pd

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    wall_limit_s = args.wall_limit if args.wall_limit is not None else 3 * args.time_limit + 600
    versions = run_versions()
    _progress(f"{len(sizes) * len(methods)} cell(s), seed {args.seed}, code {versions['git_rev']}, "
              f"highspy {versions['highspy_version']}, {os.cpu_count()} CPU(s); CSV {args.out}")
    if "+dirty" in versions["git_rev"]:
        _progress("warning: gridcharge/ has uncommitted changes; the figures are not tied to a commit")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    cells = [(n, m) for n in sizes for m in methods]
    for i, (n, method) in enumerate(cells, start=1):
        row = run_cell(n, method, args.seed, args.time_limit, args.threads, wall_limit_s,
                       label=f"[{i}/{len(cells)}]")
        rows.append({**row, **versions})
        frame = pd.DataFrame(rows, columns=list(ROW_KEYS) + list(RUN_KEYS))
        frame.to_csv(args.out, index=False)  # after every cell: an interrupted run keeps what it measured

    print(report(frame, methods))
    return 0 if (frame["status"] == "optimal").all() and frame["verified"].astype(bool).all() else 1


if __name__ == "__main__":
    sys.exit(main())
