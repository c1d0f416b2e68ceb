"""Build the benchmark instance library: the S-XXL ladder, its manifest, and best-known optima.

Writes ``benchmarks/instances/<kind>-<size>-<variant>.json`` for the committed sizes (S, M, L), records every
instance (committed or generated on demand: XL, XXL) with its generator command in ``manifest.toml``, and stores the
best-known optimum objective [CNY] of the committed ones there (``best_known_cny``: the HiGHS LP optimum, recomputed
by the independent verifier from the emitted schedule). ``gridcharge bench`` reads the optima from that file;
``tests/bench/test_instances.py`` re-solves S and M and checks them.

    /tmp/venv/bin/python benchmarks/bench_instances.py            # write instances + manifest (solves S, M, L)
    /tmp/venv/bin/python benchmarks/bench_instances.py --on-demand XL --out-dir /tmp/instances  # generate XL files
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

import gridcharge  # noqa: E402
from gridcharge.bench.generate import generate  # noqa: E402

INSTANCES = ROOT / "benchmarks" / "instances"
SEED = 7
SIZES = {"S": 20, "M": 200, "L": 2000, "XL": 20000, "XXL": 100000}
#: (kind, size) pairs in the library; S and M of every kind, L residential, XL and XXL feeders (on demand).
LADDER = ([(kind, size) for size in ("S", "M") for kind in ("residential", "office", "carpark", "feeder")]
          + [("residential", "L"), ("feeder", "XL"), ("feeder", "XXL")])
COMMITTED = {"S", "M", "L"}


def entries():
    for kind, size in LADDER:
        for variant in ("tight", "loose"):
            label = f"{kind}-{size}-{variant}"
            yield {"file": f"{label}.json", "kind": kind, "size": size, "n_sessions": SIZES[size], "seed": SEED,
                   "variant": variant, "committed": size in COMMITTED,
                   "command": f"gridcharge generate {kind} --sessions {SIZES[size]} --seed {SEED} --{variant} "
                              f"--label {label} --out benchmarks/instances/{label}.json"}


def build(entry: dict) -> dict:
    """The instance mapping of a manifest entry (what its ``command`` writes)."""
    return generate(entry["kind"], entry["n_sessions"], entry["seed"], capacity=entry["variant"],
                    label=Path(entry["file"]).stem)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # a TOML basic string is JSON-compatible for these plain texts


def write_manifest(rows: list[dict]) -> None:
    lines = ["# gridcharge benchmark instance library (written by benchmarks/bench_instances.py; do not edit by hand)",
             "# committed = true: the file is in this directory; false: run `command` from the repository root.",
             "# best_known_cny: the best objective known [CNY] (HiGHS LP optimum, cost recomputed by gridcharge.verify).",
             ""]
    for row in rows:
        lines.append("[[instance]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in row.items() if value is not None]
        lines.append("")
    tmp = INSTANCES / "manifest.toml.tmp"
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, INSTANCES / "manifest.toml")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--on-demand", metavar="SIZE", help="only generate the files of this size (XL or XXL)")
    parser.add_argument("--out-dir", type=Path, default=INSTANCES, help="where --on-demand writes")
    args = parser.parse_args(argv)
    if args.on_demand:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for entry in entries():
            if entry["size"] == args.on_demand:
                started = time.perf_counter()
                write_json(args.out_dir / entry["file"], build(entry))
                print(f"wrote {args.out_dir / entry['file']} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        return 0
    rows = []
    for entry in entries():
        row = dict(entry)
        if entry["committed"]:
            data = build(entry)
            write_json(INSTANCES / entry["file"], data)
            started = time.perf_counter()
            schedule = gridcharge.solve(data, solver="highs")
            row["best_known_cny"] = round(schedule.verification.cost_cny, 6)
            row["best_known_solver"] = "highs"
            row["best_known_status"] = schedule.summary["status"]
            print(f"{entry['file']}: {row['best_known_cny']} CNY ({time.perf_counter() - started:.1f} s)",
                  file=sys.stderr)
        rows.append(row)
    write_manifest(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
