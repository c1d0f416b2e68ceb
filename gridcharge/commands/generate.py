"""``gridcharge generate KIND --sessions N --seed S [--tight|--loose] [--v2g-share X] [--pv-kw P] --out FILE
[--sessions-out TABLE]``; ``district`` also takes ``--transformers N [--lines L] [--substation-share X]
[--line-share X]``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .._files import atomic_write
from .arguments import count, non_negative, number, out_file_problem, positive_whole, share

#: A share in (0, 1] [-].
fraction = number(above=0.0, at_most=1.0)
#: Options only a district has: argparse dest → generator parameter.
DISTRICT_OPTIONS = {"transformers": "transformers", "lines": "lines", "substation_share": "substation_share",
                    "line_share": "line_share"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="write a seeded synthetic instance (residential, office, carpark, feeder, district)",
        description="Generate a realistic instance-v1 file with gridcharge.generate: a Beijing residential compound "
                    "(one meter per space), an office (chargers on 25 %% of spaces), a public car park (short "
                    "visits on DC chargers), a feeder of several transformers mixing them, or a district: a 110/10 kV "
                    "substation, its 10 kV lines and 400-800 kVA distribution transformers of those kinds, the "
                    "substation limit calibrated to bind in the evening. The file's name field records the "
                    "generator, its parameters and the seed; the same arguments give the same bytes.")
    parser.add_argument("kind", choices=["residential", "office", "carpark", "feeder", "district"],
                        help="kind of site")
    parser.add_argument("--sessions", type=positive_whole, required=True, metavar="N",
                        help="number of charging sessions (cars) [-], >= 1")
    parser.add_argument("--seed", type=count, default=0, metavar="S", help="random seed [-] (default 0)")
    capacity = parser.add_mutually_exclusive_group()
    capacity.add_argument("--tight", dest="capacity", action="store_const", const="tight",
                          help="tight transformer: little headroom for charging [kW per charger, see README]")
    capacity.add_argument("--loose", dest="capacity", action="store_const", const="loose",
                          help="loose transformer: ample headroom for charging [kW per charger, see README]")
    parser.add_argument("--v2g-share", type=share, metavar="X",
                        help="share of cars that allow discharge, 0..1 [-] (default: the kind's own)")
    parser.add_argument("--pv-kw", type=non_negative, metavar="P",
                        help="rooftop PV on each transformer [kW peak] (default 0, none)")
    parser.add_argument("--no-phase-limits", action="store_true",
                        help="no per-phase import limit on the transformers")
    district = parser.add_argument_group("district options")
    district.add_argument("--transformers", type=positive_whole, metavar="N",
                          help="district: distribution transformers [-], >= 1 and <= --sessions (default 10)")
    district.add_argument("--lines", type=positive_whole, metavar="L",
                          help="district: 10 kV lines from the substation [-], <= --transformers (default "
                               "ceil(N / 30), at least 2)")
    district.add_argument("--substation-share", type=fraction, metavar="X",
                          help="district: where the substation's import limit sits between its base-load peak (0) "
                               "and its uncontrolled evening peak (1) [-], in (0, 1] (default 0.1: binds in the "
                               "evening)")
    district.add_argument("--line-share", type=fraction, metavar="X",
                          help="district: the same for each 10 kV line [-], in (0, 1] (default 0.5)")
    parser.add_argument("--label", metavar="TEXT", help="short name put in front of the instance's name field")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="instance file to write (.json; replaced whole, parent directories created)")
    parser.add_argument("--sessions-out", type=Path, metavar="TABLE",
                        help="write the sessions to this table (.csv or .parquet) instead of into --out, which then "
                             "names it in its sessions_file key (relative to --out's folder, so keep the two "
                             "together); for large days, e.g. 100,000 sessions")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..bench.generate import generate
    from ..cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK
    from ..instance import SESSIONS_FILE, Session
    from ..tables import SUFFIXES, write_table

    params = {}
    if args.capacity:
        params["capacity"] = args.capacity
    if args.v2g_share is not None:
        params["v2g_share"] = args.v2g_share
    if args.pv_kw:
        params["pv_kw"] = args.pv_kw
    if args.no_phase_limits:
        params["phase_limits"] = False
    given = {dest: getattr(args, dest) for dest in DISTRICT_OPTIONS if getattr(args, dest) is not None}
    if given and args.kind != "district":
        names = ", ".join("--" + dest.replace("_", "-") for dest in given)
        print(f"gridcharge: {names}: options of `generate district` only, not of {args.kind}", file=sys.stderr)
        return EXIT_INVALID
    params.update({DISTRICT_OPTIONS[dest]: value for dest, value in given.items()})
    if args.out.suffix.lower() != ".json":
        print(f"gridcharge: --out {args.out}: expected a .json file name", file=sys.stderr)
        return EXIT_INVALID
    table = args.sessions_out
    if table is not None and table.suffix.lower() not in SUFFIXES:
        print(f"gridcharge: --sessions-out {table}: expected a .csv or .parquet file name", file=sys.stderr)
        return EXIT_INVALID
    for option, path in (("--out", args.out), ("--sessions-out", table)):
        if path is not None and (problem_text := out_file_problem(path)):  # before the (possibly long) generation
            print(problem_text.replace("--out", option, 1), file=sys.stderr)
            return EXIT_INVALID
    try:
        data = generate(args.kind, args.sessions, args.seed, label=args.label, **params)
    except ValueError as exc:
        print(f"gridcharge: {exc}", file=sys.stderr)
        return EXIT_INVALID
    n_sessions = len(data["sessions"])
    written = [str(args.out)]
    try:
        if table is not None:
            write_table(table, data["sessions"], Session)
            written.append(str(table))
            reference = os.path.relpath(table.resolve(), args.out.resolve().parent)
            data = {(SESSIONS_FILE if key == "sessions" else key): (reference if key == "sessions" else value)
                    for key, value in data.items()}
        atomic_write(args.out, json.dumps(data, indent=1))  # as the committed instances
    except OSError as exc:
        print(f"gridcharge: --out {args.out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {' and '.join(written)}: {n_sessions} sessions, {len(data['chargers'])} chargers, "
          f"{len(data['nodes'])} nodes — {data['name']}")
    return EXIT_OK
