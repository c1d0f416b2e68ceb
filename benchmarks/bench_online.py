"""Benchmarks of online control (issue 4): re-solve latency after one arrival, warm against cold, and the closed-loop
comparison of strategies on a residential day.

Usage (from the repository root)::

    # latency: every period with arrivals at 1,000 cars; three evening periods at 10,000 cars
    python benchmarks/bench_online.py latency --size 1000 --seed 2026 --out benchmarks/out/online_latency_1000.csv
    python benchmarks/bench_online.py latency --size 10000 --seed 2026 --periods 28,32,36 \\
        --out benchmarks/out/online_latency_10000.csv

    # closed loop: every strategy on residential(300, seed=2026, transformer_kw=598.5), without and with noise,
    # and online control with an arrival forecast (the cars of residential(300, seed=2027, ...))
    python benchmarks/bench_online.py compare --out benchmarks/out/online_compare.csv

    # a whole simulated day of online control
    python benchmarks/bench_online.py day --size 1000 --seed 2026

    # the shipped residential day, online: continuous chargers against 6 A / 1 A ones, side by side in one run
    python benchmarks/bench_online.py executable scenarios/beijing-residential-630kva.json

How ``latency`` measures
------------------------
``gridcharge.bench.generate.residential(size, seed)`` is replayed through one :class:`~gridcharge.online.Controller`
(``solver="highs"``, warm start, ``simplex="auto"``), no noise. At each measured period ``t``: one batch of events
(``advance(t)`` and the plug-in of every car revealed at ``t`` except the last; one re-solve, kind ``batch``, or
``reuse`` when nothing changed and the rest of the last plan is re-verified and published again), then
the last car's ``plug_in`` alone (kind ``warm``: the re-solve it triggers, warm-started from the batch's basis,
primal simplex), then, on exactly the same state, a re-solve without a basis (kind ``cold``: dual simplex with
presolve, HiGHS's default). ``--ipm`` also solves that state's sub-instance with ``gridcharge.solve(method="ipm")``
(kind ``ipm``; its ``total_s`` is the whole call, verification included). Periods not measured are one batch each.
A car is revealed at the first period boundary at or after its arrival. Every row records the controller's own
timings (``instance_s`` sub-instance, ``problem_s`` arrays, ``solve_s`` LP build + HiGHS + write-back, ``highs_s``
HiGHS alone, ``verify_s`` independent verification, ``total_s`` all of the publication) and the 1-minute load
average at that moment (the machine is shared). ``wall_s`` is the event call as the caller sees it.

``--time-limit S`` gives every re-solve a HiGHS budget of ``S`` seconds (``Controller(time_limit_s=S)``). A batch
stopped by it is finished before the measured arrival (untimed), so each arrival meets an optimal state; the
arrival's ``warm`` row is then its own call (publications up to the budget), and an extra row of kind ``optimum``
times the arrival until its optimum is published, through every budgeted re-solve it took (``slices``; ``highs_s``
and ``iterations`` summed). ``--v2g-share`` sets the generator's share of V2G cars (default 1/3).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import gridcharge  # noqa: E402
from gridcharge.bench.generate import residential  # noqa: E402
from gridcharge.online import Controller, ControllerOptions, Noise, compare, simulate  # noqa: E402

ROW_TIMINGS = ("total_s", "highs_s", "iterations", "instance_s", "problem_s", "solve_s", "verify_s")


def load() -> float:
    """1-minute load average."""
    return round(os.getloadavg()[0], 2)


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _row(controller: Controller, kind: str, period: int, wall: float, size: int) -> dict:
    entry = controller.log[-1].row()
    if kind == "batch" and entry.get("solve_s") is None:
        kind = "reuse"  # nothing changed: the rest of the last plan, re-verified
    return {"size": size, "period": period, "time": controller.time.strftime("%H:%M"), "kind": kind,
            "active_cars": entry["active_cars"], "wall_s": wall, **{k: entry.get(k) for k in ROW_TIMINGS},
            "warm": entry.get("warm"), "status": entry["status"], "load_1m": load()}


def _finish(controller: Controller) -> tuple[int, float, float, int]:
    """Publish until the optimum is no longer pending (each call one budgeted slice); (slices, wall [s], HiGHS [s],
    simplex iterations) of those calls."""
    slices, wall, highs, iterations = 0, 0.0, 0.0, 0
    while controller.optimum_pending:
        began = time.perf_counter()
        controller.refresh()
        wall += time.perf_counter() - began
        slices += 1
        highs += controller.log[-1].timings.highs_s or 0.0
        iterations += controller.log[-1].timings.iterations or 0
    return slices, wall, highs, iterations


def latency(size: int, seed: int, periods: list[int] | None, ipm: bool, out: Path | None,
            simplex: str = "auto", highs_options: dict | None = None, provisional: bool = False,
            budget_s: float | None = None, v2g_share: float | None = None, cold: bool = True) -> pd.DataFrame:
    day = residential(size, seed=seed, **({} if v2g_share is None else {"v2g_share": v2g_share}))
    sessions = day.pop("sessions")
    day["sessions"] = []
    planned = gridcharge.load_instance({**day, "sessions": sessions})
    start, step = planned.horizon.start, timedelta(minutes=planned.horizon.step_minutes)
    arrival = np.array([(s.arrival - start) / step for s in planned.sessions])
    reveal = np.maximum(np.ceil(arrival - 1e-9), 0).astype(int)
    controller = Controller(day, ControllerOptions(solver="highs", simplex=simplex, highs_options=highs_options or {},
                                                   provisional=provisional, time_limit_s=budget_s))
    T = planned.horizon.periods
    measured = set(range(T)) if periods is None else set(periods)
    rows: list[dict] = []
    print(f"# size {size}: load {load()} at start", file=sys.stderr, flush=True)
    for t in range(T):
        new = [sessions[i] for i in np.flatnonzero(reveal == t)]
        if periods is not None and t > max(measured):
            break
        timed = t in measured and len(new) >= 1
        if periods is not None and t not in measured:
            # not measured: fold this period's arrivals into the next measured batch (no re-solve in between)
            controller.auto_resolve = False
            controller.advance(t)
            for s in new:
                controller.plug_in(s)
            continue
        controller.auto_resolve = True
        began = time.perf_counter()
        with controller.batch():
            if t:
                controller.advance(t)
            for s in (new[:-1] if timed else new):
                controller.plug_in(s)
        if controller.log and controller.log[-1].period == t:
            rows.append(_row(controller, "batch", t, time.perf_counter() - began, size))
        _finish(controller)  # a batch stopped by the budget: its optimum first (not timed), so each arrival below
        if not timed:        # meets an optimal state as without a budget
            continue
        began = time.perf_counter()
        logged = len(controller.log)
        controller.plug_in(new[-1])
        warm = _row(controller, "warm", t, time.perf_counter() - began, size)
        if budget_s is not None:  # the time until the optimum is published: the call above, then its slices
            slices, wall, highs, iterations = _finish(controller)
            rows.append({**warm, "kind": "optimum", "wall_s": warm["wall_s"] + wall,
                         "total_s": warm["wall_s"] + wall, "highs_s": warm["highs_s"] + highs,
                         "iterations": warm["iterations"] + iterations, "slices": 1 + slices,
                         "status": controller.status, "load_1m": load()})
        first = controller.log[logged].row() if len(controller.log) > logged + 1 else None
        if first is not None and first["source"] == "provisional":  # published before the re-solve started
            rows.append({"size": size, "period": t, "time": warm["time"], "kind": "provisional",
                         "active_cars": first["active_cars"], "wall_s": first["total_s"],
                         **{k: first.get(k) for k in ROW_TIMINGS}, "warm": None, "status": first["status"],
                         "load_1m": load()})
        rows.append(warm)
        if not cold:
            print(f"# t={t} {warm['time']} active={warm['active_cars']} warm={warm['total_s']:.3f}s "
                  f"load={warm['load_1m']}", file=sys.stderr, flush=True)
            if out is not None:
                _write(pd.DataFrame(rows), out)
            continue
        began = time.perf_counter()
        budgeted = controller.options
        controller.options = dataclasses.replace(budgeted, time_limit_s=None)  # the cold solve runs to the optimum
        controller.resolve(cold=True)  # the same state, solved without a kept model or basis
        controller.options = budgeted
        cold_row = _row(controller, "cold", t, time.perf_counter() - began, size)
        rows.append(cold_row)
        if ipm:
            sub, _ = controller.window()
            began = time.perf_counter()
            schedule = gridcharge.solve(sub, method="ipm")
            wall = time.perf_counter() - began
            rows.append({"size": size, "period": t, "time": controller.time.strftime("%H:%M"), "kind": "ipm",
                         "active_cars": len(sub.sessions), "wall_s": wall, "total_s": wall,
                         "highs_s": schedule.summary["solve_seconds"], "iterations": None,
                         "status": schedule.summary["status"], "load_1m": load()})
        print(f"# t={t} {warm['time']} active={warm['active_cars']} warm={warm['total_s']:.3f}s "
              f"cold={cold_row['total_s']:.3f}s load={rows[-1]['load_1m']}", file=sys.stderr, flush=True)
        if out is not None:
            _write(pd.DataFrame(rows), out)
    frame = pd.DataFrame(rows)
    if out is not None:
        _write(frame, out)
    print(f"# size {size}: load {load()} at end", file=sys.stderr, flush=True)
    return frame


def _write(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(out)


def latency_table(frame: pd.DataFrame) -> str:
    """Median and p95 per kind: total, HiGHS alone, iterations, active cars, load average."""
    lines = ["| size | kind | events | active cars (median, max) | total_s median | total_s p95 | HiGHS s median "
             "| HiGHS s p95 | simplex iterations median | verify_s median | load 1m (min-max) |",
             "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for (size, kind), g in frame.groupby(["size", "kind"], sort=False):
        it = g["iterations"].dropna()
        ver = g["verify_s"].dropna() if "verify_s" in g else pd.Series(dtype=float)
        lines.append(
            f"| {size:,} | {kind} | {len(g)} | {int(g['active_cars'].median()):,}, {int(g['active_cars'].max()):,} | "
            f"{g['total_s'].median():.3f} | {g['total_s'].quantile(0.95):.3f} | {g['highs_s'].median():.3f} | "
            f"{g['highs_s'].quantile(0.95):.3f} | {(f'{it.median():.0f}' if len(it) else '-')} | "
            f"{(f'{ver.median():.3f}' if len(ver) else '-')} | {g['load_1m'].min():.2f}-{g['load_1m'].max():.2f} |")
    return "\n".join(lines)


def typical_day(size: int, seed: int, **options) -> list[dict]:
    """An arrival forecast: the cars of another day of the same generator (another seed: the distribution, not this
    day's draw), each placed on the feeder of its parking space (it holds shared capacity, not a meter)."""
    day = residential(size, seed=seed, **options)
    feeder = {n["id"]: n["parent"] for n in day["nodes"]}
    chargers = {c["id"]: c for c in day["chargers"]}
    return [{"id": s["id"], "node": feeder[chargers[s["charger"]]["node"]], "arrival": s["arrival"],
             "departure": s["departure"], "energy_kwh": s["energy_kwh"],
             "max_charge_kw": chargers[s["charger"]]["max_charge_kw"], "phases": chargers[s["charger"]]["phases"],
             "efficiency": chargers[s["charger"]]["efficiency"]} for s in day["sessions"]]


def run_compare(out: Path | None) -> pd.DataFrame:
    site = residential(300, seed=2026, transformer_kw=598.5)
    strategies = ["uncontrolled", "equal_share", "edf", "llf", "greedy_cost", "online", "optimal"]
    noise = Noise(underdraw=0.2, early_departure_prob=0.3, early_departure_max_h=2.0, base_load_sigma=0.05)
    forecast = typical_day(300, 2027, transformer_kw=598.5)
    variants = {
        "online + forecast": {"expected_arrivals": forecast},
        "online + forecast x1.2": {"expected_arrivals": [{**c, "energy_kwh": 1.2 * c["energy_kwh"]} for c in forecast]},
    }
    frames = []
    for label, kwargs in (("none", {}), ("noisy", {"noise": noise, "seed": 1})):
        print(f"# compare noise={label}: load {load()}", file=sys.stderr, flush=True)
        table = compare(site, strategies=strategies, **kwargs)
        if label == "noisy":
            variants["online + forecast x1.2, never_above_request"] = {**variants["online + forecast x1.2"],
                                                                       "never_above_request": True}
        for name, options in variants.items():
            result = simulate(site, strategy="online", controller_options=options, **kwargs)
            table.loc[name] = pd.Series(result.summary())
        table.insert(0, "noise", label)
        table["load_1m_after"] = load()
        frames.append(table)
        print(table.to_string(), file=sys.stderr, flush=True)
    frame = pd.concat(frames)
    if out is not None:
        _write(frame.reset_index(), out)
    return frame


def compare_table(frame: pd.DataFrame) -> str:
    lines = ["| noise | strategy | unmet kWh | peak kW | cost CNY | overload kWh | limit violations | solve s | "
             "re-solves | fallbacks | wall s | load 1m after |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for strategy, r in frame.iterrows():
        lines.append(f"| {r['noise']} | {strategy} | {r['unmet_kwh']:.2f} | {r['peak_kw']:.1f} | {r['cost_cny']:.2f} | "
                     f"{r['overload_kwh']:.2f} | {int(r['limit_violations'])} | {r['solve_seconds']:.2f} | "
                     f"{int(r['resolves'])} | {int(r['fallbacks'])} | {r['wall_seconds']:.1f} | "
                     f"{r['load_1m_after']:.2f} |")
    return "\n".join(lines)


def run_day(size: int, seed: int) -> dict:
    site = residential(size, seed=seed)
    before = load()
    result = simulate(site, strategy="online")
    row = {"size": size, "seed": seed, **result.summary(), "load_1m_before": before, "load_1m_after": load()}
    print(json.dumps(row), flush=True)
    return row


def run_executable(path: Path, min_current_a: float, step_a: float) -> str:
    """One simulated day of online control on the instance at ``path``, as given (continuous) and with every charger
    at ``min_current_a`` / ``step_a`` [A], one after the other in this process; a markdown table."""
    from bench_executable import executable_copy

    data = json.loads(path.read_text())
    lines = [f"| {path.name} | chargers | wall s | solve s | re-solves | fallbacks | cost CNY | unmet kWh | "
             "violations | load 1m after |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, site in (("continuous", data),
                        (f"{min_current_a:g} A / {step_a:g} A", executable_copy(data, min_current_a, step_a))):
        started = time.perf_counter()
        result = simulate(site, strategy="online", controller_options={"threads": 1})
        wall = time.perf_counter() - started
        r = result.summary()
        lines.append(f"| online | {label} | {wall:.1f} | {r['solve_seconds']:.1f} | {r['resolves']} | "
                     f"{r['fallbacks']} | {r['cost_cny']:.2f} | {r['unmet_kwh']:.2f} | {r['violations']} | "
                     f"{load():.2f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency", help="re-solve latency after one arrival, warm vs cold")
    lat.add_argument("--size", type=int, required=True, help="cars of the residential day")
    lat.add_argument("--seed", type=int, default=2026)
    lat.add_argument("--periods", default=None, help="comma-separated periods to measure (default: every period)")
    lat.add_argument("--ipm", action="store_true", help="also a cold interior-point solve of each measured state")
    lat.add_argument("--simplex", default="auto", choices=["auto", "primal", "dual"],
                     help="simplex variant of warm-started re-solves (Controller(simplex=...))")
    lat.add_argument("--highs-option", action="append", default=[], metavar="NAME=INT",
                     help="an integer HiGHS option for every re-solve (repeatable)")
    lat.add_argument("--provisional", action="store_true",
                     help="Controller(provisional=True): rows of kind 'provisional' time the plan published before "
                          "the re-solve (total_s up to its publication)")
    lat.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                     help="Controller(time_limit_s=...): HiGHS budget per re-solve [s]; rows of kind 'optimum' time "
                          "the arrival until its optimum is published, through as many budgeted re-solves as it takes")
    lat.add_argument("--no-cold", action="store_true",
                     help="skip the cold re-solve of each measured state (at 10,000 cars 40-80 s each)")
    lat.add_argument("--v2g-share", type=float, default=None, help="share of V2G cars [-] (generator default 1/3)")
    lat.add_argument("--out", type=Path, default=None)
    cmp_ = sub.add_parser("compare", help="closed-loop comparison on residential(300, 2026, 598.5 kW)")
    cmp_.add_argument("--out", type=Path, default=None)
    day = sub.add_parser("day", help="one simulated day of online control")
    day.add_argument("--size", type=int, default=1000)
    day.add_argument("--seed", type=int, default=2026)
    exe = sub.add_parser("executable", help="one online day: continuous chargers vs a minimum current and a step")
    exe.add_argument("instance", type=Path, help="an instance-v1 file (.json) with the day's sessions")
    exe.add_argument("--min-current-a", type=float, default=6.0, help="every charger's min_current_a [A]")
    exe.add_argument("--step-a", type=float, default=1.0, help="every charger's current_step_a [A]")
    args = parser.parse_args(argv)
    print(f"# git {git_rev()}, highspy {version('highspy')}, load {load()}",
          file=sys.stderr, flush=True)
    if args.command == "latency":
        periods = None if args.periods is None else [int(p) for p in args.periods.split(",")]
        options = {k: int(v) for k, v in (o.split("=", 1) for o in args.highs_option)}
        frame = latency(args.size, args.seed, periods, args.ipm, args.out, args.simplex, options, args.provisional,
                        args.time_limit, args.v2g_share, not args.no_cold)
        print(latency_table(frame))
    elif args.command == "compare":
        print(compare_table(run_compare(args.out)))
    elif args.command == "executable":
        print(run_executable(args.instance, args.min_current_a, args.step_a))
    else:
        run_day(args.size, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
