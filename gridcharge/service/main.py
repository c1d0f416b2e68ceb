"""The HTTP API of the schedule service (FastAPI), wired: :func:`create_app` builds the engine, the routers
(:mod:`.routers`), the problem-details handlers and the middleware. Thin: parse, authorise, call the engine,
format. Bodies are in :mod:`.schemas`, shared route pieces in :mod:`.dependencies`, problems in :mod:`.problems`.

Endpoints (``Authorization: Bearer <token>`` everywhere except ``/v1/health`` and ``/openapi.json``)
------------------------------------------------------------------------------------------------
Operator (operator token; a charger token gets 403):

- ``PUT /v1/sites/{site_id}`` — create (201) or replace (200) a site: ``{"instance": <instance-v1 without
  sessions>, "charger_settings": {"<charger id>": {"rate_unit": "W"|"A", "evse_id": 1}}}``
  (a charger's voltage is its instance ``voltage_v``).
  The response carries a fresh token per charger, shown this once (replacing a site issues new tokens, drops its
  sessions and caps). A charger id owned by another site → 409.
- ``GET /v1/sites/{site_id}`` — status: period, sessions, accepted / published event, the publication's source
  and status, re-optimisation latency and solve time statistics.
- ``POST /v1/sites/{site_id}/sessions`` — a plug-in (arrival omitted or past) or a reservation (arrival ahead):
  instance-v1 session fields (``id``, ``charger``, ``departure``, ``energy_kwh`` [kWh], optional ``arrival``,
  ``max_charge_kw`` [kW], ``max_discharge_kw`` [kW] — V2G consent when > 0 —, ``battery_kwh``, ``initial_kwh``,
  ``min_kwh`` [kWh]) → 201. An id already used today or an occupied charger → 409.
- ``PATCH /v1/sites/{site_id}/sessions/{session_id}`` — ``departure``, ``energy_kwh`` [kWh] and/or
  ``energy_delivered_kwh`` [kWh] (a meter reading since arrival) → 200; unknown session → 404.
- ``DELETE /v1/sites/{site_id}/sessions/{session_id}`` — the car left now (or a reservation is cancelled) → 200.
- ``POST /v1/sites/{site_id}/caps`` — a demand-response cap ``{"node", "import_limit_kw" [kW], "start", "end"}``
  (date-times, rounded outwards to the period grid) → 201.

Ids: a site id and a charger id are 1 to 48 visible ASCII characters without ``/`` (a charger id, its OCPP
identity, also without ``:``; :mod:`gridcharge.ocpp.identity`), else 422 naming the field. A session id may hold
any character: in a URL it is one percent-encoded segment (``Location`` headers are encoded so), and the session
routes also take it with a literal ``/`` (the OCPP central system names its sessions ``<charger>/<transaction>``).

Every accepted write is committed to the database before its 2xx and returns ``event_seq``; the re-optimisation
runs afterwards in the worker (``GET /v1/sites/{id}`` says when ``published_seq`` has reached it).

Firmware (charger token; a charger reads only its own profile, 403 otherwise; the operator token may read any):

- ``GET /v1/chargers/{charger_id}/profile?ocpp=1.6|2.0.1|2.1`` — the charger's SetChargingProfile payloads
  (station maximum, fail-safe TxDefaultProfile, and the TxProfile when a car is planned; see
  :mod:`gridcharge.ocpp.plan`), ``ETag`` (``If-None-Match`` → 304) and ``Cache-Control: private,
  max-age=<re-optimisation interval>`` (:mod:`.routers.chargers`: a fast path in front of FastAPI gives the same
  answer as the FastAPI route).

Errors are RFC 9457 problem details (``application/problem+json``): ``type``, ``title``, ``status``, ``detail``,
``instance`` and ``errors``: one entry per bad field with ``field`` (a path in the request such as
``instance.chargers[2].max_charge_kw`` or ``query.ocpp``), ``pointer`` (JSON pointer into the body) or
``parameter`` (a query or path parameter), ``value`` and ``detail`` (what was expected). Status codes: 400 malformed JSON or parameters, 401 missing or unknown token, 403
wrong token, 404 unknown site / session / charger, 409 conflict with stored state, 413 body over the limit, 422
invalid values. A client mistake never yields a 500 and never a partial write.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import OPERATOR_PREFIX, new_token, token_hash
from .middleware import BodyLimit
from .problems import Problem, problem_response, validation_problem
from .routers import chargers, health, sessions, sites
from .runtime import SERVICE_OPTIONS, Engine
from .solver import SOLVER_STALL_S
from .store import Store

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

#: the routes of the API, one router per resource
ROUTERS = (sites.router, sessions.router, chargers.router, health.router)


def ensure_operator_token(store: Store, token: str | None) -> str | None:
    """Store the hash of ``token`` if given; else, if no operator token exists yet, make one and return it (to be
    shown once). Returns the new token or None."""
    if token is not None:
        token = token.strip()
        if len(token) < 16:
            raise ValueError("the operator token must have at least 16 characters")
        if store.operator_hash() != token_hash(token):
            store.set_operator_hash(token_hash(token))
        return None
    if store.operator_hash() is not None:
        return None
    created = new_token(OPERATOR_PREFIX)
    store.set_operator_hash(token_hash(created))
    return created


def create_app(database: str | Store = "sqlite:///gridcharge.db", *, operator_token: str | None = None,
               clock=None, solver: str = "highs", time_limit_s: float | None = None, interval_s: float = 60.0,
               grace_s: int = 300, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, start_worker: bool = True,
               solver_process: bool = True, fast_path: bool = True, solver_stall_s: float = SOLVER_STALL_S):
    """Build the ASGI app.

    Parameters
    ----------
    database : SQLAlchemy URL or Store — default ``sqlite:///gridcharge.db`` (WAL)
    operator_token : str, optional — the operator token (its hash is stored); without one, an existing stored hash
        is kept, or a new token is generated: ``app.state.new_operator_token`` then holds it (print it once)
    clock : callable → tz-aware datetime, optional — the wall clock (tests inject one)
    solver, time_limit_s : the controller's solver and per-solve limit [s]
    interval_s : re-optimisation / polling interval [s] (the profiles' ``Cache-Control: max-age``)
    grace_s : validity of a TxProfile past its period, and 2.1 ``maxOfflineDuration`` [s]
    max_body_bytes : request body limit [bytes] (413 beyond)
    start_worker : run the re-optimisation thread (on startup; tests may drive ``engine.work`` themselves)
    solver_process : run each site's solver controller in a child process (default; keeps re-solves off the
        HTTP process's GIL) rather than in the worker thread
    solver_stall_s : the watchdog of each solve [s]: a solver process that uses no CPU for this long while its
        reply is awaited is killed, rebuilt from the stored events and reported (``solver_stalls`` in the status)
    fast_path : answer profile fetches in the fast path before FastAPI (default; False: through the
        FastAPI route, the same answer, for comparison)

    Returns
    -------
    The ASGI application (:class:`~gridcharge.service.middleware.BodyLimit` around
    :class:`~gridcharge.service.routers.chargers.ProfileFastPath` around the FastAPI app, which is
    ``.fastapi``; ``.state.engine`` is the :class:`~gridcharge.service.runtime.Engine`).
    """
    store = database if isinstance(database, Store) else Store(database)
    new_operator_token = ensure_operator_token(store, operator_token)
    options = dataclasses.replace(SERVICE_OPTIONS, solver=solver, time_limit_s=time_limit_s)
    engine = Engine(store, clock=clock, options=options, interval_s=interval_s, grace_s=grace_s,
                    solver_process=solver_process, solver_stall_s=solver_stall_s)
    engine.load()
    max_age = max(int(math.ceil(interval_s)), 0)

    @asynccontextmanager
    async def lifespan(_app):
        if start_worker:
            engine.start()
        try:
            yield
        finally:
            engine.stop()
            store.close()

    api = FastAPI(title="gridcharge schedule service", version="1", lifespan=lifespan,
                  description="Operators feed sites and sessions; chargers fetch their OCPP charging profiles. "
                              "See the module docstring of gridcharge.service.main.")
    api.state.engine = engine
    api.state.store = store
    api.state.new_operator_token = new_operator_token
    api.state.max_age = max_age
    _handle_problems(api)
    for router in ROUTERS:
        api.include_router(router)
    api.openapi = lambda: _openapi(api)
    wrapped = BodyLimit(chargers.ProfileFastPath(api, engine, max_age) if fast_path else api, max_body_bytes)
    wrapped.fastapi = api
    wrapped.state = api.state
    return wrapped


def _handle_problems(api: FastAPI) -> None:
    """Every error as RFC 9457 problem details."""

    @api.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(request.url.path, exc)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return problem_response(request.url.path, validation_problem(exc))

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: the methods of every route of this path, not only the first's
            headers["Allow"] = _allowed_methods(request.scope)
        return problem_response(request.url.path, Problem(exc.status_code, titles.get(exc.status_code, "Error"),
                                                          str(exc.detail), headers=headers or None))

    @api.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        # no claim that nothing changed: a write may have been committed before the failure
        return problem_response(request.url.path, Problem(500, "Internal Server Error",
                                                          f"internal error ({type(exc).__name__}); a write may "
                                                          f"have been committed: read the resource (GET) before "
                                                          f"retrying"))


def _openapi(api: FastAPI) -> dict:
    """The OpenAPI document with the two bearer schemes (operator, charger)."""
    if api.openapi_schema is None:
        schema = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "operatorToken": {"type": "http", "scheme": "bearer", "description": "the operator token"},
            "chargerToken": {"type": "http", "scheme": "bearer",
                             "description": "a charger's token (from PUT /v1/sites/{site_id})"},
        }
        api.openapi_schema = schema
    return api.openapi_schema


def _allowed_methods(scope) -> str:
    """The ``Allow`` header of a 405: the methods of every route whose path matches ``scope``."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in (route for router in ROUTERS for route in router.routes):
        if getattr(route, "methods", None) and route.matches({**scope, "method": "GET"})[0] != Match.NONE:
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app", "ensure_operator_token"]
