"""Load time of a large day as JSON and as a site file with a sessions table (CSV, Parquet), side by side in one run.

Generates a district (``gridcharge generate district``), writes it three ways into a temporary folder and times
``gridcharge.load_instance`` on each (best of ``--repeat``), with the table read alone
(``gridcharge.tables.read_table``) and the per-row pydantic validation of its records beside it; checks that the
three give equal instances. Prints a Markdown table for benchmarks/RESULTS.md.

    python benchmarks/bench_tables.py --sessions 100000 --transformers 500
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridcharge.bench.generate import generate  # noqa: E402
from gridcharge.instance import Session, load_instance  # noqa: E402
from gridcharge.tables import read_table, write_table  # noqa: E402


def best_of(repeat: int, function) -> tuple[float, object]:
    """The shortest wall time of ``repeat`` calls [s], and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions [-]")
    parser.add_argument("--transformers", type=int, default=500, help="distribution transformers [-]")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="timed loads per format; the best is shown")
    args = parser.parse_args()
    started = time.perf_counter()
    data = generate("district", args.sessions, args.seed, transformers=args.transformers)
    generate_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "day.json").write_text(json.dumps(data))
        site = {key: value for key, value in data.items() if key != "sessions"}
        rows = []
        per_row = {}
        instances = {}
        seconds, instances["JSON"] = best_of(args.repeat, lambda: load_instance(folder / "day.json"))
        size = (folder / "day.json").stat().st_size
        rows.append(("JSON (sessions inline)", size, None, seconds))
        for suffix in ("csv", "parquet"):
            table = folder / f"sessions.{suffix}"
            write_table(table, data["sessions"], Session)
            path = folder / f"site-{suffix}.json"
            path.write_text(json.dumps({**site, "sessions_file": table.name}))
            read_s, read = best_of(args.repeat, lambda: read_table(table, Session, zone="Asia/Shanghai"))
            per_row_s, _ = best_of(args.repeat, lambda: [Session.model_validate(r) for r in read.records])
            seconds, instances[suffix] = best_of(args.repeat, lambda: load_instance(path))
            per_row[suffix] = per_row_s
            rows.append((f"site JSON + sessions.{suffix}", path.stat().st_size + table.stat().st_size, read_s,
                         seconds))
    same = instances["JSON"] == instances["csv"] == instances["parquet"]
    print(f"district: {args.sessions:,} sessions, {args.transformers} transformers, seed {args.seed}; generated in "
          f"{generate_s:.1f} s; the three instances are {'equal' if same else 'DIFFERENT'}\n")
    print("| input | size [MB] | table read [s] | load_instance [s] |")
    print("|---|---:|---:|---:|")
    for label, size, read_s, seconds in rows:
        read = "" if read_s is None else f"{read_s:.2f}"
        print(f"| {label} | {size / 1e6:.1f} | {read} | {seconds:.2f} |")
    print(f"\nof which per-row pydantic (Session.model_validate of each read record): "
          + ", ".join(f"{suffix} {seconds:.2f} s" for suffix, seconds in per_row.items()))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
