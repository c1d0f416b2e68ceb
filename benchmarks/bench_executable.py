"""Cost of executable schedules (IEC 61851 minimum current, whole-amp steps) against the continuous optimum, and the
exact MIP against the rounding of the LP optimum, side by side in one process per instance.

Each instance is solved three times with HiGHS: as given without the current fields (the continuous optimum, the LP
bound), with every charger at ``--min-current-a`` / ``--step-a`` by the exact MIP (``executable="exact"``), and by
the rounding (``executable="rounding"``). Every schedule goes through the verifier (``gridcharge.solve``). Prints
one markdown row per instance; ``--generate kind:n`` adds a generated instance (``gridcharge.bench.generate``).

    python benchmarks/bench_executable.py scenarios/beijing-residential-630kva.json benchmarks/instances/*-S-*.json
    python benchmarks/bench_executable.py --generate residential:1000 --generate residential:10000 --no-exact-above 2000
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gridcharge  # noqa: E402
from gridcharge.bench.generate import generate  # noqa: E402
from gridcharge.errors import SolverError  # noqa: E402


def executable_copy(data: dict, min_current_a: float, step_a: float) -> dict:
    """The instance with every charger at this minimum current and step [A]."""
    out = copy.deepcopy(data)
    for charger in out["chargers"]:
        charger["min_current_a"] = min_current_a
        charger["current_step_a"] = step_a
    return out


def timed(data, **options):
    started = time.perf_counter()
    try:
        schedule = gridcharge.solve(data, **options)
    except SolverError as exc:
        return None, time.perf_counter() - started, str(exc).splitlines()[0]
    return schedule, time.perf_counter() - started, None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="instance files (.json)")
    parser.add_argument("--generate", action="append", default=[], help="kind:n_sessions, generated with seed 7")
    parser.add_argument("--min-current-a", type=float, default=6.0, help="charger min_current_a [A]")
    parser.add_argument("--step-a", type=float, default=1.0, help="charger current_step_a [A]")
    parser.add_argument("--no-exact-above", type=int, default=10**9, help="skip the exact MIP above this many sessions")
    parser.add_argument("--mip-rel-gap", type=float, default=None, help="HiGHS mip_rel_gap for the exact MIP [-]")
    parser.add_argument("--mip-time-limit", type=float, default=None, help="HiGHS time limit per call of the MIP [s]")
    args = parser.parse_args(argv)
    cases = [(Path(f).name, json.loads(Path(f).read_text())) for f in args.files]
    for spec in args.generate:
        kind, n = spec.split(":")
        cases.append((f"{kind}-{n} (generated)", generate(kind, int(n), seed=7)))
    print("| instance | sessions | LP [CNY] | LP s | MIP [CNY] | MIP s | MIP gap | MIP vs LP | rounding [CNY] | "
          "rounding s | rounding s / LP s | rounding vs LP | unmet LP / MIP / rounding [kWh] | "
          "energy cost LP / MIP / rounding [CNY] |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, data in cases:
        n = len(data["sessions"])
        lp, lp_s, _ = timed(data)
        stepped = executable_copy(data, args.min_current_a, args.step_a)
        mip, mip_s, mip_error = (None, 0.0, "skipped") if n > args.no_exact_above else timed(
            stepped, executable="exact", mip_rel_gap=args.mip_rel_gap, time_limit_s=args.mip_time_limit)
        rnd, rnd_s, rnd_error = timed(stepped, executable="rounding")
        bound = lp.summary["objective_cny"]

        def rel(s):
            return f"{(s.summary['objective_cny'] - bound) / abs(bound) * 100:+.2f} %" if s else "-"

        def cost(s, error):
            return f"{s.summary['objective_cny']:.2f}" if s else f"({error[:40]})"

        mip_gap = f"{mip.summary['mip_gap'] * 100:.3f} %" if mip and mip.summary.get("mip_gap") is not None else "-"
        if mip and mip.status != "optimal":  # stopped by the time limit: its incumbent and gap
            mip_gap += f" ({mip.status})"
        if mip and mip.summary.get("executable_method") != "exact_mip":
            mip_gap += f" [{mip.summary.get('executable_method')}]"
        unmet = " / ".join(f"{s.summary['unmet_kwh']:.2f}" if s else "-" for s in (lp, mip, rnd))
        penalty = lp.problem.unmet_penalty
        # the objective without the unmet-energy penalty: what the energy itself cost
        energy = " / ".join(f"{s.summary['objective_cny'] - penalty * s.summary['unmet_kwh']:.2f}" if s else "-"
                            for s in (lp, mip, rnd))
        print(f"| {name} | {n} | {bound:.2f} | {lp_s:.2f} | {cost(mip, mip_error)} | {mip_s:.2f} | {mip_gap} | "
              f"{rel(mip)} | {cost(rnd, rnd_error)} | {rnd_s:.2f} | {rnd_s / lp_s:.2f} | {rel(rnd)} | {unmet} | {energy} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
