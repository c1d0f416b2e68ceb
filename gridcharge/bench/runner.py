"""The benchmark runner: every solver on every instance, every result verified, a leaderboard and scaling plots.

``gridcharge bench`` calls :func:`run_bench`. A *solver spec* is one of

- a registered solver name: ``highs``, ``pyomo:highs``, ``equal_share``, ``edf``, ``llf``, ``greedy_cost``,
  ``uncontrolled`` (see ``gridcharge solvers``);
- a peer: ``acnportal:edf``, ``acnportal:llf``, ``acnportal:round_robin``, ``acnportal:uncontrolled`` (needs the
  ``peers`` extra, see :mod:`gridcharge.bench.peers.acnportal`);
- a researcher's own algorithm by import path, ``package.module:function``: ``function(instance)`` takes an
  :class:`~gridcharge.instance.Instance` and returns a :class:`~gridcharge.schedule.Schedule`, or a signed power array
  of shape (sessions, periods) [kW] in the instance's session order, or a wide DataFrame (periods x session ids).

Every result, whatever it came from, goes through :func:`gridcharge.verify` against the instance file; the objective,
unmet energy and peak in ``results.csv`` are the verifier's, so all solvers are measured by one yardstick. A schedule
that breaks a rule is a row with ``status = violations`` (and the count), never a crash; so is an exception
(``error``), an infeasible instance (``infeasible``) and a cell killed at ``wall_limit_s`` (``timeout``).

Timing (columns [s]): ``build_s`` — reading and validating the instance file and building the arrays
(``load_instance`` + ``build_problem``; for a plug-in, ``load_instance`` only: its own preparation is part of its
solve); ``solve_s`` — the solver call; ``verify_s`` — the independent check; ``total_s`` — their sum. In the default
``fresh`` mode each (instance, solver, repeat) runs in its own Python process (no warm caches, no memory carried over)
and ``peak_memory_mb`` is that process's maximum resident set size (interpreter and imports included); the parent's
progress bar (tqdm) keeps counting the seconds while a run goes on. In ``in-process`` mode cells share one process (a full garbage collection
before each run, so that it does not pay for the previous one's garbage; imports and caches stay warm after the first
run), and ``peak_memory_mb`` is the highest resident set size sampled every 5 ms during the cell (the process's
baseline included).
"""

from __future__ import annotations

import csv
import gc
import glob
import importlib
import io
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._files import atomic_write
from ..instance import DEFAULT_CURRENCY
from ..progress import Bar

#: Columns of ``results.csv``, in order.
COLUMNS = ("instance", "n_sessions", "solver", "repeat", "mode", "status", "verified", "build_s", "solve_s",
           "verify_s", "total_s", "peak_memory_mb", "objective_cny", "best_known_cny", "gap_pct", "gap_basis",
           "unmet_kwh", "delivered_kwh", "peak_kw", "violations", "error", "currency")
PEER_PREFIX = "acnportal:"
MANIFEST = "manifest.toml"


# ----------------------------------------------------------------------------------------------------------------
# solver specs


@dataclass(frozen=True)
class SolverSpec:
    """A parsed ``--solvers`` entry. ``kind``: ``registry``, ``peer`` or ``plugin``."""

    text: str
    kind: str


def parse_solvers(text: str) -> list[SolverSpec]:
    """``"highs,equal_share,mypkg.mod:fn"`` → specs, checked before any work.

    Raises
    ------
    ValueError — an empty entry, an unknown solver name, or a plug-in path that is not ``module:function``
    """
    from ..solvers import get_solver

    specs = []
    for i, raw in enumerate(text.split(",")):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"--solvers entry {i + 1}: empty — expected a solver name or module:function")
        if entry.startswith(PEER_PREFIX):
            from .peers import PEER_ALGORITHMS

            algorithm = entry[len(PEER_PREFIX):]
            if algorithm not in PEER_ALGORITHMS:
                raise ValueError(f"--solvers entry {entry!r}: unknown acnportal algorithm {algorithm!r} — expected "
                                 f"one of {', '.join(PEER_ALGORITHMS)}")
            specs.append(SolverSpec(entry, "peer"))
        elif ":" in entry and not entry.startswith("pyomo:"):
            module, _, function = entry.partition(":")
            if not module or not function or not all(part.isidentifier() for part in module.split(".") + [function]):
                raise ValueError(f"--solvers entry {entry!r}: a plug-in is written package.module:function")
            specs.append(SolverSpec(entry, "plugin"))
        else:
            get_solver(entry)  # UnknownSolverError lists the known names
            specs.append(SolverSpec(entry, "registry"))
    return specs


def load_plugin(text: str):
    """The callable named ``module:function``; the current directory is searched first, like ``python -m``."""
    module_name, _, function_name = text.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    try:
        function = getattr(module, function_name)
    except AttributeError:
        raise ValueError(f"plug-in {text!r}: module {module_name!r} has no attribute {function_name!r}") from None
    if not callable(function):
        raise ValueError(f"plug-in {text!r}: {function_name!r} is not callable")
    return function


# ----------------------------------------------------------------------------------------------------------------
# one cell


class _PeakRss:
    """Highest resident set size of this process while the block runs, sampled every 5 ms [MB]."""

    def __init__(self):
        self.peak_mb = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: the lifetime peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _as_power(instance, result):
    """A plug-in's return value as something :func:`gridcharge.verify` reads: Schedule, DataFrame or (S, T) array."""
    import pandas as pd

    from ..schedule import Schedule

    if isinstance(result, Schedule):
        return result.power
    if isinstance(result, pd.DataFrame):
        return result
    array = np.asarray(result, dtype=float)
    expected = (len(instance.sessions), instance.horizon.periods)
    if array.shape != expected:
        raise ValueError(f"returned an array of shape {array.shape}; expected (sessions, periods) = {expected} [kW]")
    return array


def measure(instance_path: str, solver: str, *, time_limit_s: float | None = None, mode: str = "in-process") -> dict:
    """Run one solver on one instance file, verify the result, and return one results row (without gap columns).

    Parameters
    ----------
    instance_path : str — instance-v1 file
    solver : str — one solver spec (see the module docstring)
    time_limit_s : float, optional — passed to registry solvers as ``time_limit_s`` [s]
    mode : str — recorded in the row (``fresh`` when called in a child process)
    """
    from .. import build_problem, load_instance, verify
    from ..errors import InfeasibleError, InstanceError

    spec = parse_solvers(solver)[0]
    row = dict.fromkeys(COLUMNS)
    row.update(instance=Path(instance_path).stem, solver=solver, mode=mode, error="")
    with _PeakRss() as memory:
        try:
            started = time.perf_counter()
            instance = load_instance(instance_path)
            row["n_sessions"] = len(instance.sessions)
            row["currency"] = instance.tariff.currency  # of objective_cny and best_known_cny (names kept)
            problem = build_problem(instance) if spec.kind == "registry" else None
            row["build_s"] = time.perf_counter() - started
            started = time.perf_counter()
            if spec.kind == "registry":
                from ..solvers import get_solver

                options = {"time_limit_s": time_limit_s} if time_limit_s else {}
                power = get_solver(solver)(problem, **options).power
            elif spec.kind == "peer":
                from .peers.acnportal import schedule as peer_schedule

                power = peer_schedule(instance, solver[len(PEER_PREFIX):])
            else:
                power = _as_power(instance, load_plugin(solver)(instance))
            row["solve_s"] = time.perf_counter() - started
            started = time.perf_counter()
            check = verify(instance, power)
            row["verify_s"] = time.perf_counter() - started
        except InfeasibleError as exc:
            row.update(status="infeasible", verified=False, error=_one_line(exc))
        except InstanceError as exc:
            row.update(status="invalid_instance", verified=False, error=_one_line(exc))
        except Exception as exc:  # a failing algorithm is a result, not a crash of the run
            row.update(status="error", verified=False, error=f"{type(exc).__name__}: {_one_line(exc)}")
        else:
            row.update(status="ok" if check.ok else "violations", verified=check.ok, violations=len(check.violations),
                       objective_cny=check.cost_cny, unmet_kwh=check.unmet_kwh, delivered_kwh=check.delivered_kwh,
                       peak_kw=check.peak_kw, total_s=row["build_s"] + row["solve_s"] + row["verify_s"])
            if not check.ok:
                first = check.violations[0]
                row["error"] = f"{len(check.violations)} violation(s), first: {first}"
    row["peak_memory_mb"] = memory.peak_mb
    return row


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: While a fresh run goes on, the progress bar is redrawn (its elapsed time) this often [s].
TICK_S = 1.0


def _run_child(command: list[str], env: dict, wall_limit_s: float | None, tick) -> subprocess.CompletedProcess:
    """Run the child, calling ``tick()`` every :data:`TICK_S` seconds while it runs; kill it at ``wall_limit_s``.

    Raises
    ------
    subprocess.TimeoutExpired — the wall limit passed (the child has been killed)
    """
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as child:
        while True:
            elapsed = time.perf_counter() - started
            wait = TICK_S if wall_limit_s is None else max(0.0, min(TICK_S, wall_limit_s - elapsed))
            try:
                out, err = child.communicate(timeout=wait)
                return subprocess.CompletedProcess(command, child.returncode, out, err)
            except subprocess.TimeoutExpired:
                elapsed = time.perf_counter() - started
                if wall_limit_s is not None and elapsed >= wall_limit_s:
                    child.kill()
                    child.communicate()
                    raise
                if tick:
                    tick()


def measure_in_fresh_process(instance_path: str, solver: str, time_limit_s: float | None,
                             wall_limit_s: float | None, tick=None) -> dict:
    """:func:`measure` in a new Python process; a killed or crashed child is a row too."""
    job = json.dumps({"instance": instance_path, "solver": solver, "time_limit_s": time_limit_s})
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    row = dict.fromkeys(COLUMNS)
    row.update(instance=Path(instance_path).stem, solver=solver, mode="fresh", verified=False)
    try:
        done = _run_child([sys.executable, "-m", "gridcharge.bench.runner", job], env, wall_limit_s, tick)
    except subprocess.TimeoutExpired:
        row.update(status="timeout", error=f"killed after the wall limit of {wall_limit_s:g} s",
                   n_sessions=_count_sessions(instance_path))
        return row
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        row.update(status="crashed", error=f"exit code {done.returncode}: {tail}"[:300],
                   n_sessions=_count_sessions(instance_path))
        return row
    child = json.loads(lines[-1])
    child["peak_memory_mb"] = child.pop("process_peak_rss_mb")
    row.update(child)
    return row


def _count_sessions(instance_path: str) -> int | None:
    """Sessions in an instance file, for a row whose child never reported (None if the file cannot be read)."""
    import tomllib

    try:
        text = Path(instance_path).read_text(encoding="utf-8")
        data = tomllib.loads(text) if instance_path.lower().endswith(".toml") else json.loads(text)
        return None if "sessions_file" in data else len(data.get("sessions", []))  # a table: not counted here
    except (OSError, ValueError, AttributeError, tomllib.TOMLDecodeError):
        return None


def _child(job_json: str) -> int:
    job = json.loads(job_json)
    row = measure(job["instance"], job["solver"], time_limit_s=job["time_limit_s"], mode="fresh")
    row["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row.pop("peak_memory_mb")
    print(json.dumps(row, default=float))
    return 0


# ----------------------------------------------------------------------------------------------------------------
# best known optima


def best_known(instance_paths: list[str]) -> dict[str, float]:
    """``{instance stem: best-known objective [CNY]}`` from the ``manifest.toml`` beside each instance, if any."""
    import tomllib

    found: dict[str, float] = {}
    for directory in sorted({str(Path(p).resolve().parent) for p in instance_paths}):
        manifest = Path(directory) / MANIFEST
        if not manifest.exists():
            continue
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        for entry in data.get("instance", []):
            if entry.get("best_known_cny") is not None:
                found[Path(entry["file"]).stem] = float(entry["best_known_cny"])
    return found


def add_gaps(rows: list[dict], known: dict[str, float]) -> None:
    """Fill ``best_known_cny``, ``gap_pct`` [%] and ``gap_basis`` in place.

    The reference is the stored best-known optimum when the instance has one (``gap_basis = best_known``), otherwise
    the lowest objective of a verified result in this run (``best_in_run``). Rows without a verified objective get no
    gap. ``gap_pct = 100 (objective - reference) / max(|reference|, 1 CNY)``.
    """
    for row in rows:
        row.update(best_known_cny=None, gap_pct=None, gap_basis="")
    for name in {row["instance"] for row in rows}:
        mine = [r for r in rows if r["instance"] == name]
        verified = [r["objective_cny"] for r in mine if r["verified"] and r["objective_cny"] is not None]
        if name in known:
            reference, basis = known[name], "best_known"
        elif verified:
            reference, basis = min(verified), "best_in_run"
        else:
            continue
        for row in mine:
            row["best_known_cny"], row["gap_basis"] = reference, basis
            if row["objective_cny"] is not None and row["status"] in ("ok", "violations"):
                row["gap_pct"] = 100.0 * (row["objective_cny"] - reference) / max(abs(reference), 1.0)


# ----------------------------------------------------------------------------------------------------------------
# outputs


def write_csv(rows: list[dict], path: Path) -> None:
    """``results.csv``: one row per (instance, solver, repeat), columns :data:`COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]))
                         for k in COLUMNS})
    atomic_write(path, buffer.getvalue())


def read_results(path: str | Path) -> list[dict]:
    """Rows of a ``results.csv`` written by :func:`write_csv`, with numbers and booleans typed again (to re-draw the
    leaderboard or the plot, or to merge runs)."""
    numbers = {"build_s", "solve_s", "verify_s", "total_s", "peak_memory_mb", "objective_cny", "best_known_cny",
               "gap_pct", "unmet_kwh", "delivered_kwh", "peak_kw"}
    whole = {"n_sessions", "repeat", "violations"}
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key in COLUMNS:
                text = raw.get(key, "")
                if text == "":
                    row[key] = "" if key in ("error", "gap_basis") else None
                elif key in numbers:
                    row[key] = float(text)
                elif key in whole:
                    row[key] = int(float(text))
                elif key == "verified":
                    row[key] = text == "True"
                else:
                    row[key] = text
            rows.append(row)
    return rows


def summarise_rows(rows: list[dict]) -> list[dict]:
    """One row per (instance, solver): median times over the repeats, the largest peak memory, the first result."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["instance"], row["solver"]), []).append(row)
    out = []
    for group in groups.values():
        merged = dict(group[0])
        for key in ("build_s", "solve_s", "verify_s", "total_s"):
            values = [r[key] for r in group if r.get(key) is not None]
            merged[key] = float(np.median(values)) if values else None
        memory = [r["peak_memory_mb"] for r in group if r.get("peak_memory_mb") is not None]
        merged["peak_memory_mb"] = max(memory) if memory else None
        merged["repeats"] = len(group)
        out.append(merged)
    return out


def _cell(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if abs(value) < 1e-9:  # solver noise, e.g. 4e-14 kWh unmet
            return "0"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value).replace("|", "\\|")


def leaderboard(rows: list[dict], header: str = "") -> str:
    """Markdown: one table per instance, verified results first, ranked by objective then total time."""
    summary = summarise_rows(rows)
    lines = ["# Leaderboard", ""]
    if header:
        lines += [header, ""]
    lines += ["Ranked per instance: verified results first, by objective (in the instance's tariff currency) then "
              "total time [s]; then results that break a rule (by objective); then failures. Times are medians over "
              "the repeats.", ""]

    def order(r):
        tier = 0 if r["verified"] else (1 if r["status"] == "violations" else 2)
        return (tier, r["objective_cny"] if r["objective_cny"] is not None else math.inf,
                r["total_s"] if r["total_s"] is not None else math.inf)

    for name in sorted({r["instance"] for r in summary}, key=lambda n: (_n(summary, n), n)):
        mine = sorted((r for r in summary if r["instance"] == name), key=order)
        basis = mine[0]["gap_basis"]
        reference = mine[0]["best_known_cny"]
        currency = next((r["currency"] for r in mine if r.get("currency")), DEFAULT_CURRENCY)
        columns = ["rank", "solver", "status", f"objective [{currency}]", "gap [%]", "unmet [kWh]", "peak [kW]",
                   "violations", "build [s]", "solve [s]", "total [s]", "peak memory [MB]", "repeats"]
        lines.append(f"## {name} ({_n(summary, name):,} sessions)")
        lines.append("")
        if reference is not None:
            lines.append(f"Gap against {'the stored best-known optimum' if basis == 'best_known' else 'the best verified result of this run'}"
                         f" {reference:,.4f} {currency}.")
            lines.append("")
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "|".join("---:" if c not in ("solver", "status") else "---" for c in columns) + "|")
        for rank, r in enumerate(mine, 1):
            cells = [rank, r["solver"], r["status"], r["objective_cny"], r["gap_pct"], r["unmet_kwh"], r["peak_kw"],
                     r["violations"], r["build_s"], r["solve_s"], r["total_s"], r["peak_memory_mb"], r["repeats"]]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        failures = [r for r in mine if r["error"]]
        for r in failures:
            lines.append(f"\n- `{r['solver']}`: {_cell(r['error'])}")
        lines.append("")
    return "\n".join(lines)


def _n(rows, name) -> int:
    return next((r["n_sessions"] for r in rows if r["instance"] == name and r["n_sessions"]), 0) or 0


def scaling_plot(rows: list[dict], path: Path, title: str = "") -> bool:
    """Log-log total time [s] vs sessions per solver (medians; verified or violating results). False if no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = [r for r in summarise_rows(rows) if r["total_s"] and r["n_sessions"]]
    if not summary:
        return False
    figure, axes = plt.subplots(figsize=(7.5, 5.0))
    for solver in sorted({r["solver"] for r in summary}):
        by_n: dict[int, list[float]] = {}
        for r in summary:
            if r["solver"] == solver:
                by_n.setdefault(int(r["n_sessions"]), []).append(float(r["total_s"]))
        sizes = sorted(by_n)
        times = [float(np.median(by_n[n])) for n in sizes]
        axes.plot(sizes, times, marker="o", label=solver)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("sessions [-]")
    axes.set_ylabel("total time: build + solve + verify [s]")
    axes.set_title(title or "gridcharge bench: time vs sessions")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(figure)
    return True


def machine_line() -> str:
    """Cores, load average and versions, for the leaderboard header."""
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return (f"Machine: {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min); Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}.")


# ----------------------------------------------------------------------------------------------------------------
# the run


def expand_instances(pattern: str) -> list[str]:
    """Instance files matching a glob (``*.json`` and ``*.toml`` only), sorted by size then name.

    Raises
    ------
    ValueError — nothing matches
    """
    paths = sorted(p for p in glob.glob(pattern, recursive=True)
                   if p.lower().endswith((".json", ".toml")) and Path(p).name != MANIFEST)
    if not paths:
        raise ValueError(f"--instances {pattern!r}: matches no .json or .toml file; expected a glob of instance files")
    return sorted(paths, key=lambda p: (os.path.getsize(p), p))


def run_bench(instances: list[str], solvers: list[str], *, repeat: int = 1, out_dir: str | Path = "bench-out",
              fresh: bool = True, time_limit_s: float | None = None, wall_limit_s: float | None = None,
              progress=None, plot_title: str = "") -> list[dict]:
    """Every solver on every instance, ``repeat`` times; write ``results.csv``, ``leaderboard.md``, ``scaling.png``.

    Parameters
    ----------
    instances : list of str — instance files
    solvers : list of str — solver specs (see the module docstring)
    repeat : int — runs per (instance, solver) [-]
    out_dir : path — created if missing; the files in it are replaced whole after every cell
    fresh : bool — a fresh Python process per cell (default) or all in this process
    time_limit_s : float, optional — solver time limit [s]; wall_limit_s : float, optional — kill a fresh cell after
        this [s]
    progress : callable(str), optional — where the first and last lines go (the CLI prints them on stderr); given,
        a progress bar on stderr counts the runs and each run's result is a line above it

    Returns
    -------
    list of dict — the rows of ``results.csv``
    """
    if repeat < 1:
        raise ValueError(f"repeat: {repeat} — expected a whole number >= 1")
    parse_solvers(",".join(solvers))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    known = best_known(instances)
    rows: list[dict] = []
    total = len(instances) * len(solvers) * repeat
    say = progress or (lambda message: None)
    say(f"gridcharge bench: {len(instances)} instance(s) x {len(solvers)} solver(s) x {repeat} repeat(s), "
        f"{'a fresh process per cell' if fresh else 'in-process'}; {machine_line()}")
    header = (f"{len(instances)} instance(s), solvers {', '.join(solvers)}, {repeat} repeat(s), "
              f"{'fresh process per cell' if fresh else 'in-process timing'}. {machine_line()}")
    cell = 0
    with Bar(total, "      benchmark", "run", enabled=progress is not None) as bar:
        for path in instances:
            for solver in solvers:
                for r in range(repeat):
                    cell += 1
                    started = time.perf_counter()
                    name = f"{Path(path).stem} x {solver}" + (f" (repeat {r + 1})" if repeat > 1 else "")
                    bar.note(name)
                    if fresh:
                        row = measure_in_fresh_process(path, solver, time_limit_s, wall_limit_s, bar.refresh)
                    else:
                        gc.collect()  # garbage of the previous run is not collected on this one's clock
                        row = measure(path, solver, time_limit_s=time_limit_s, mode="in-process")
                    row["repeat"] = r + 1
                    rows.append(row)
                    bar.write(f"[{cell}/{total}] {name}: {row['status']}"
                              + (f", objective {row['objective_cny']:.2f} {row.get('currency') or DEFAULT_CURRENCY}" if row["objective_cny"] is not None
                                 else "")
                              + f", {time.perf_counter() - started:.2f} s wall"
                              + (f" — {row['error']}" if row["error"] else ""))
                    bar.advance(1)
                    add_gaps(rows, known)
                    write_csv(rows, out / "results.csv")
                    atomic_write(out / "leaderboard.md", leaderboard(rows, header) + "\n")
    scaling_plot(rows, out / "scaling.png", plot_title)
    say(f"wrote {out / 'results.csv'}, {out / 'leaderboard.md'}, {out / 'scaling.png'}")
    return rows


if __name__ == "__main__":  # the child of a fresh-process cell: one JSON job in, one JSON row out
    sys.exit(_child(sys.argv[1]))
