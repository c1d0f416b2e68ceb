"""``gridcharge serve``: the HTTP schedule service (issue 7) on uvicorn.

Chargers fetch their OCPP charging profiles; operators feed sites and sessions (see README, "Schedule service",
and :mod:`gridcharge.service.main` for the endpoints). The operator token comes from ``--operator-token-file``, else
from the environment variable ``GRIDCHARGE_OPERATOR_TOKEN``, else the one stored earlier in the database; at the very
first start without any, one is generated and printed once (only its hash is stored).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from .arguments import positive, whole

PORT = whole(at_least=0, at_most=65535)

ENV_TOKEN = "GRIDCHARGE_OPERATOR_TOKEN"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the HTTP schedule service (OCPP charging profiles for chargers, an API for operators)",
        description="Serve sites, sessions and demand-response caps to operators and OCPP SetChargingProfile "
                    "payloads to chargers, re-optimising with the online controller after every change. State is "
                    "kept in a database (SQLite in WAL mode by default) and survives restarts.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=PORT, default=8080, help="TCP port (default 8080; 0 = any free port)")
    parser.add_argument("--database", default="sqlite:///gridcharge.db", metavar="URL",
                        help="SQLAlchemy database URL (default sqlite:///gridcharge.db in the current directory; "
                             "e.g. postgresql+psycopg://user@host/db with its driver installed)")
    parser.add_argument("--operator-token-file", type=Path, metavar="PATH",
                        help=f"file holding the operator token (>= 16 characters; default: ${ENV_TOKEN}, else the "
                             f"stored one, else a new one printed once)")
    parser.add_argument("--solver", default="highs",
                        help="controller solver: highs (default) or a baseline (equal_share, edf, llf, greedy_cost)")
    parser.add_argument("--time-limit", type=positive, metavar="S",
                        help="HiGHS time budget per re-optimisation pass [seconds] (default: none). A pass that "
                             "runs out of it serves the interim plan (the last plan with new cars filled in, "
                             "verified; else the fallback heuristic) and the next pass continues the same simplex, "
                             "so new events wait at most about this long. With or without it, a new car gets a "
                             "verified provisional plan before the optimum")
    parser.add_argument("--interval", type=positive, default=60.0, metavar="S",
                        help="re-optimisation / polling interval [seconds] (default 60): the worker wakes at least "
                             "this often, and profiles carry Cache-Control max-age of it")
    parser.add_argument("--grace", type=positive, default=300.0, metavar="S",
                        help="a TxProfile stays valid this long after its period ends, and OCPP 2.1 "
                             "maxOfflineDuration [seconds] (default 300); then chargers fall back to the fail-safe "
                             "default profile")
    parser.add_argument("--max-body-bytes", type=positive, default=16 * 1024 * 1024, metavar="BYTES",
                        help="request body limit [bytes] (default 16 MiB; larger bodies get 413)")
    parser.add_argument("--solver-in-process", action="store_true",
                        help="run each site's solver controller in the server's worker thread instead of a child "
                             "process (debugging; re-solves then compete with fetches for the GIL)")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn log level (default warning: no line per request)")
    # --- OCPP central system (issue 8) ---
    ocpp = parser.add_argument_group("OCPP central system")
    ocpp.add_argument("--ocpp", action="store_true",
                      help="also accept OCPP-J websockets at ws://HOST:PORT/ocpp/{charger_id} (subprotocols "
                           "ocpp2.1, ocpp2.0.1, ocpp1.6; HTTP Basic auth: user = charger id, password = its token) "
                           "and push SetChargingProfile to connected chargers")
    ocpp.add_argument("--ocpp-default-stay", type=positive, default=8.0, metavar="H",
                      help="planned stay of a car whose charger does not report a departure [hours] (default 8)")
    ocpp.add_argument("--ocpp-default-energy", type=positive, default=20.0, metavar="KWH",
                      help="energy planned for a car whose charger does not report its needs [kWh] (default 20)")
    ocpp.add_argument("--ocpp-meter-interval", type=positive, default=300.0, metavar="S",
                      help="pass at most one meter reading per transaction per this many [seconds] to the "
                           "controller (default 300)")
    ocpp.add_argument("--ocpp-heartbeat", type=positive, default=300.0, metavar="S",
                      help="heartbeat interval given to chargers at boot [seconds] (default 300)")
    # --- end OCPP ---
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..cli import EXIT_INVALID, EXIT_OK

    token = None
    if args.operator_token_file is not None:
        try:
            token = args.operator_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"gridcharge serve: --operator-token-file {args.operator_token_file}: cannot be read "
                  f"({exc.strerror or exc}); expected a file holding the operator token", file=sys.stderr)
            return EXIT_INVALID
    elif os.environ.get(ENV_TOKEN):
        token = os.environ[ENV_TOKEN]
    if token is not None and len(token) < 16:
        print("gridcharge serve: the operator token must have at least 16 characters", file=sys.stderr)
        return EXIT_INVALID

    if problem_text := _database_file_problem(args.database):  # before the app opens it
        print(problem_text, file=sys.stderr)
        return EXIT_INVALID
    try:
        listener = _listen(args.host, args.port)  # bound first: --port 0 gets its port, a busy port fails early
    except OSError as exc:
        print(f"gridcharge serve: --host {args.host} --port {args.port}: cannot listen there "
              f"({exc.strerror or exc}); expected a free port on a local address", file=sys.stderr)
        return EXIT_INVALID
    port = listener.getsockname()[1]

    import uvicorn

    from ..service import create_app

    try:
        app = create_app(args.database, operator_token=token, solver=args.solver, time_limit_s=args.time_limit,
                         interval_s=args.interval, grace_s=int(args.grace), max_body_bytes=int(args.max_body_bytes),
                         solver_process=not args.solver_in_process)
    except BaseException:
        listener.close()
        raise
    # --- OCPP central system (issue 8) ---
    if args.ocpp:
        from ..service.ocpp_backend import mount_ocpp

        mount_ocpp(app, default_stay_h=args.ocpp_default_stay, default_energy_kwh=args.ocpp_default_energy,
                   meter_interval_s=args.ocpp_meter_interval, heartbeat_s=int(args.ocpp_heartbeat))
        print(f"gridcharge serve: OCPP at ws://{_url_host(args.host)}:{port}/ocpp/{{charger_id}}", file=sys.stderr,
              flush=True)
    # --- end OCPP ---
    created = app.state.new_operator_token
    if created is not None:
        print(f"operator token (shown once; only its hash is stored): {created}", flush=True)
    print(f"gridcharge serve: http://{_url_host(args.host)}:{port} (database {args.database})", file=sys.stderr,
          flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level))
    with listener:
        server.run(sockets=[listener])
    return EXIT_OK


def _listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0 = any free port), as uvicorn would bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on such sockets (as on those it creates itself)
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)  # connections made as soon as the address is printed wait for uvicorn (its backlog)
        listener.set_inheritable(True)
    except OSError:
        listener.close()
        raise
    return listener


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _database_file_problem(url: str) -> str | None:
    """Why an SQLite ``--database`` file cannot be written (other databases are checked when connecting)."""
    from .._files import unwritable_reason

    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:") or url[len(prefix):].startswith("file:"):
        return None
    path = Path(url[len(prefix):].split("?", 1)[0])
    reason = unwritable_reason(path, directory=False)
    return None if reason is None else f"gridcharge serve: --database {url}: {reason}"
