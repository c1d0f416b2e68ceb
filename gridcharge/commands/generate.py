"""``gridcharge generate KIND --sessions N --seed S [--tight|--loose] [--v2g-share X] [--pv-kw P] --out FILE``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .._files import atomic_write
from .arguments import count, non_negative, out_file_problem, positive_whole, share


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="write a seeded synthetic instance (residential, office, carpark, feeder)",
        description="Generate a realistic instance-v1 file with gridcharge.generate: a Beijing residential compound "
                    "(one meter per space), an office (chargers on 25 %% of spaces), a public car park (short "
                    "visits on DC chargers) or a feeder of several transformers mixing them. The file's name field "
                    "records the generator, its parameters and the seed; the same arguments give the same bytes.")
    parser.add_argument("kind", choices=["residential", "office", "carpark", "feeder"], help="kind of site")
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
    parser.add_argument("--label", metavar="TEXT", help="short name put in front of the instance's name field")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="instance file to write (.json; replaced whole, parent directories created)")
    parser.set_defaults(run=run)








def run(args) -> int:
    from ..bench.generate import generate
    from ..cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK

    params = {}
    if args.capacity:
        params["capacity"] = args.capacity
    if args.v2g_share is not None:
        params["v2g_share"] = args.v2g_share
    if args.pv_kw:
        params["pv_kw"] = args.pv_kw
    if args.no_phase_limits:
        params["phase_limits"] = False
    if args.out.suffix.lower() != ".json":
        print(f"gridcharge: --out {args.out}: expected a .json file name", file=sys.stderr)
        return EXIT_INVALID
    if problem_text := out_file_problem(args.out):  # before the (possibly long) generation
        print(problem_text, file=sys.stderr)
        return EXIT_INVALID
    try:
        data = generate(args.kind, args.sessions, args.seed, label=args.label, **params)
    except ValueError as exc:
        print(f"gridcharge: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        atomic_write(args.out, json.dumps(data, indent=1))  # as the committed instances
    except OSError as exc:
        print(f"gridcharge: --out {args.out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {args.out}: {len(data['sessions'])} sessions, {len(data['chargers'])} chargers, "
          f"{len(data['nodes'])} nodes — {data['name']}")
    return EXIT_OK
