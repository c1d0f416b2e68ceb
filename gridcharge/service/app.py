"""The HTTP API of the schedule service (FastAPI). Thin: parse, authorise, call the engine, format.

Endpoints (``Authorization: Bearer <token>`` everywhere except ``/v1/health`` and ``/openapi.json``)
------------------------------------------------------------------------------------------------
Operator (operator token; a charger token gets 403):

- ``PUT /v1/sites/{site_id}`` — create (201) or replace (200) a site: ``{"instance": <instance-v1 without
  sessions>, "charger_settings": {"<charger id>": {"rate_unit": "W"|"A", "voltage_v": 230, "evse_id": 1}}}``.
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
  :mod:`gridcharge.service.runtime`), ``ETag`` (``If-None-Match`` → 304) and ``Cache-Control: private,
  max-age=<re-optimisation interval>``. Answered by :class:`ProfileFastPath` in front of FastAPI (the FastAPI route
  gives the same answer through the same :func:`profile_answer`, and documents it in the OpenAPI document).

Errors are RFC 9457 problem details (``application/problem+json``): ``type``, ``title``, ``status``, ``detail``,
``instance`` and ``errors``: one entry per bad field with ``field`` (a path in the request such as
``instance.chargers[2].max_charge_kw`` or ``query.ocpp``), ``pointer`` (JSON pointer into the body) or
``parameter`` (a query or path parameter), ``value`` and ``detail`` (what was expected). Status codes: 400 malformed JSON or parameters, 401 missing or unknown token, 403
wrong token, 404 unknown site / session / charger, 409 conflict with stored state, 413 body over the limit, 422
invalid values. A client mistake never yields a 500 and never a partial write.
"""

from __future__ import annotations

import dataclasses
import json
import math
from urllib.parse import parse_qs, quote
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import EventRefused, FieldProblem, InstanceError, RefusalReason
from ..instance import MAX_CHARGER_KW, MAX_ENERGY_KWH, MAX_NODE_KW, field_problems
from ..ocpp.identity import CHARGER_ID_EXPECTED, SITE_ID_EXPECTED, is_charger_id, is_site_id
from ..ocpp.profiles import VERSIONS
from ..online import feed
from .auth import CHARGER_PREFIX, OPERATOR_PREFIX, bearer, matches, new_token, token_hash
from .runtime import SERVICE_OPTIONS, SOLVER_STALL_S, Engine
from .store import ConflictError, Store

PROBLEM_JSON = "application/problem+json"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


# ----------------------------------------------------------------------------------------------------------------
# request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ChargerSettingsIn(_Body):
    """OCPP settings of one charger."""

    rate_unit: Literal["W", "A"] = Field("W", description="chargingRateUnit of its profiles")
    voltage_v: Annotated[float, Field(ge=50, le=1000, description="phase-to-neutral voltage [V], for rate_unit A, "
                                                                  "within [50, 1000] (low-voltage AC and DC)")] = 230.0
    evse_id: Annotated[int, Field(ge=0, le=999, description="EVSE / connector id of its TxProfile, 0..999")] = 1


class SiteIn(_Body):
    """A site: an instance-v1 without sessions, and OCPP settings per charger (default: W, 230 V, EVSE 1)."""

    instance: dict[str, Any] = Field(description="instance-v1 (format, name, horizon, nodes, chargers, tariff, "
                                                 "objective); no sessions")
    charger_settings: dict[str, ChargerSettingsIn] = Field(default_factory=dict)


#: An ISO-8601 date-time with UTC offset, kept as text (the controller parses it and names the field if it is not
#: one); documented as ``format: date-time`` in the OpenAPI document.
DateTimeText = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class SessionIn(_Body):
    """A plug-in or reservation (instance-v1 session fields)."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    charger: Annotated[str, Field(min_length=1, max_length=200)]
    departure: DateTimeText = Field(description="ISO-8601 date-time with UTC offset")
    energy_kwh: Annotated[float, Field(ge=0, le=MAX_ENERGY_KWH, description="energy to add by departure [kWh]")]
    arrival: DateTimeText | None = Field(None, description="ISO-8601 date-time with offset; default: now (plug-in); "
                                                           "a future arrival is a reservation")
    max_charge_kw: Annotated[float | None, Field(gt=0, le=MAX_CHARGER_KW,
                                                 description="the car's charge limit [kW]")] = None
    max_discharge_kw: Annotated[float, Field(ge=0, le=MAX_CHARGER_KW,
                                             description="V2G consent: discharge limit [kW], 0 = none")] = 0.0
    battery_kwh: Annotated[float | None, Field(gt=0, le=MAX_ENERGY_KWH, description="[kWh]")] = None
    initial_kwh: Annotated[float | None, Field(ge=0, le=MAX_ENERGY_KWH, description="[kWh]")] = None
    min_kwh: Annotated[float | None, Field(ge=0, le=MAX_ENERGY_KWH, description="[kWh]")] = None


class SessionPatch(_Body):
    """A change of a session: new departure, new energy wish, and/or a meter reading."""

    departure: DateTimeText | None = Field(None, description="ISO-8601 date-time with UTC offset")
    energy_kwh: Annotated[float | None, Field(ge=0, le=MAX_ENERGY_KWH,
                                              description="total energy to add since arrival [kWh]")] = None
    energy_delivered_kwh: float | None = Field(None, ge=-MAX_ENERGY_KWH, le=MAX_ENERGY_KWH,
                                               description="energy delivered since arrival (meter) [kWh]")


class CapIn(_Body):
    """A demand-response cap on a node's net import for a time window."""

    node: Annotated[str, Field(min_length=1)]
    import_limit_kw: Annotated[float, Field(ge=0, le=MAX_NODE_KW, description="[kW]")]
    start: DateTimeText = Field(description="ISO-8601 date-time with UTC offset (rounded down to the period grid)")
    end: DateTimeText = Field(description="ISO-8601 date-time with UTC offset (rounded up to the period grid)")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] = []


_ERRORS = {code: {"model": ProblemDetails, "content": {PROBLEM_JSON: {}}, "description": text}
           for code, text in [(400, "malformed request"), (401, "missing or unknown token"), (403, "wrong token"),
                              (404, "not found"), (409, "conflict"), (413, "body too large"),
                              (422, "invalid values (each field named)")]}


# ----------------------------------------------------------------------------------------------------------------
# problems


class Problem(Exception):
    """An HTTP problem to answer with (status, title, detail, field errors)."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict] | None = None,
                 headers: dict | None = None):
        self.status, self.title, self.detail, self.errors, self.headers = status, title, detail, errors or [], headers
        super().__init__(detail)


_TYPES = {400: "malformed-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
          409: "conflict", 413: "body-too-large", 415: "unsupported-media-type", 422: "invalid-field",
          500: "internal-error"}


def _problem_response(request_path: str, problem: Problem) -> JSONResponse:
    body = {"type": f"urn:gridcharge:problem:{_TYPES.get(problem.status, 'error')}", "title": problem.title,
            "status": problem.status, "detail": problem.detail, "instance": request_path}
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers)


def _jsonable(value):
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _pointer(path: str) -> str:
    """``instance.chargers[2].id`` → ``/instance/chargers/2/id``; ``body`` (the whole body) → ``""``."""
    if path == "body":
        return ""
    parts = path.replace("]", "").replace("[", ".").split(".") if path else []
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts if p != "")


def _field_error(path: str, value, expected: str) -> dict:
    """One bad field: ``pointer`` (JSON pointer) for the body, ``parameter`` for a query / path parameter."""
    where = path.split(".", 1)
    if where[0] in ("query", "path", "header") and len(where) == 2:
        return {"field": path, "parameter": where[1], "value": _jsonable(value), "detail": expected}
    return {"field": path, "pointer": _pointer(path), "value": _jsonable(value), "detail": expected}


def _problems_from_instance_error(exc: InstanceError, prefix: str = "", rename: dict | None = None) -> list[dict]:
    out = []
    for p in exc.problems:
        path = p.path
        for old, new in (rename or {}).items():
            if path == old:
                path = new
            elif path.startswith(old + ".") or path.startswith(old + "["):
                rest = path[len(old):]
                path = new + rest if new else rest.lstrip(".")
        path = f"{prefix}.{path}" if prefix and path else (prefix or path)
        out.append(_field_error(path, p.value, p.expected))
    return out


#: HTTP status of each reason a controller refuses an event for
_REFUSAL_STATUS = {RefusalReason.UNKNOWN_SESSION: 404, RefusalReason.ID_IN_USE: 409,
                   RefusalReason.CHARGER_OCCUPIED: 409, RefusalReason.INVALID: 422}


def _event_problem(exc: InstanceError, rename: dict) -> Problem:
    """A controller's refusal → 404 (unknown session), 409 (id used today, charger occupied) or 422, by its
    reason (:class:`~gridcharge.errors.EventRefused`)."""
    status = _REFUSAL_STATUS[exc.reason] if isinstance(exc, EventRefused) else 422
    if status == 404:
        p = next(p for p in exc.problems if p.path == "session_id")
        return Problem(404, "Not Found", f"no active session {p.value!r} on this site",
                       [_field_error("path.session_id", p.value, p.expected)])
    errors = _problems_from_instance_error(exc, rename=rename)
    conflict = status == 409
    return Problem(status, "Conflict" if conflict else "Unprocessable Content",
                   "; ".join(f"{e['field']}: {e['detail']}" for e in errors), errors)


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = []
    fields = []  # pydantic's errors on fields, ``loc`` from the body's top (the one translation does the rest)
    malformed = False
    for error in exc.errors():
        loc = list(error.get("loc", ()))
        kind = error.get("type", "")
        if kind in ("json_invalid", "json_type") or (loc[:1] == ["body"] and kind == "model_attributes_type"):
            malformed = True
        if loc and loc[0] == "body":
            loc = loc[1:]
        if kind == "json_invalid":
            ctx = error.get("ctx") or {}
            errors.append(_field_error("body", f"position {loc[-1] if loc else '?'}",
                                       f"valid JSON ({ctx.get('error', 'JSON decode error')})"))
            continue
        fields.append({**error, "loc": tuple(loc)})
    for p in field_problems(fields, unknown_key="no such field (unknown key)"):
        errors.append(_field_error(p.path or "body", p.value, p.expected))
    status = 400 if malformed else 422
    title = "Bad Request" if malformed else "Unprocessable Content"
    return Problem(status, title, "; ".join(f"{e['field']}: {e['detail']}" for e in errors), errors)


# ----------------------------------------------------------------------------------------------------------------
# body size limit (pure ASGI, before any parsing)


class BodyLimit:
    """Answer 413 to a request whose body is over ``max_bytes``: by its Content-Length at once, or while it is
    being read (chunked) — then the body is buffered up to the limit and handed on whole."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
        if length is not None and length < 0:
            return await self._reject(scope, send, 400, "Bad Request", "Content-Length is not a whole number")
        if length is not None and length > self.max_bytes:
            return await self._too_large(scope, send, length)
        if length is not None:
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(scope, send, size)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, send, size):
        return await self._reject(scope, send, 413, "Content Too Large",
                                  f"request body of {size} bytes (at least) is over the limit of {self.max_bytes} "
                                  f"bytes", [_field_error("body", f"{size} bytes", f"at most {self.max_bytes} bytes")])

    async def _reject(self, scope, send, status, title, detail, errors=None):
        response = _problem_response(scope.get("path", ""), Problem(status, title, detail, errors))
        await response(scope, _empty_receive, send)


async def _empty_receive():
    return {"type": "http.disconnect"}


# ----------------------------------------------------------------------------------------------------------------
# the firmware fetch: one function, served by a fast path in front of FastAPI

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gridcharge"'}


def profile_answer(engine: Engine, charger_id: str, ocpp: str | None, authorization: str | None,
                   if_none_match: str | None, max_age: int) -> tuple[int, list, bytes]:
    """The answer to ``GET /v1/chargers/{charger_id}/profile?ocpp=...``: (status, raw headers, body), or a raised
    :class:`Problem` (401 no or unknown token, 403 another charger's token, 404 unknown charger, 400/422 ocpp)."""
    token = bearer(authorization)
    if token is None:
        raise Problem(401, "Unauthorized", "a charger token is required: Authorization: Bearer <token>",
                      headers=_CHALLENGE)
    runtime = engine.charger_site.get(charger_id)
    if not (runtime is not None and matches(token, runtime.token_hashes.get(charger_id))) \
            and not matches(token, engine.operator_hash):
        if token_hash(token) in engine.hash_charger:
            raise Problem(403, "Forbidden", "a charger may read only its own profile")
        raise Problem(401, "Unauthorized", "unknown token", headers=_CHALLENGE)
    if runtime is None:
        raise Problem(404, "Not Found", f"no charger {charger_id!r}",
                      [_field_error("path.charger_id", charger_id, "the id of a charger of a site")])
    if ocpp not in VERSIONS:
        raise Problem(400 if ocpp is None else 422, "Bad Request" if ocpp is None else "Unprocessable Content",
                      f"query parameter ocpp: expected one of {', '.join(VERSIONS)}",
                      [_field_error("query.ocpp", ocpp, f"one of {', '.join(VERSIONS)}")])
    body, etag = runtime.document(charger_id, ocpp, engine.clock())
    headers = [(b"etag", etag.encode()), (b"cache-control", f"private, max-age={max_age}".encode())]
    if if_none_match is not None and _etag_matches(if_none_match, etag):
        return 304, headers, b""
    return 200, headers + [(b"content-type", b"application/json")], body


class ProfileFastPath:
    """Answers ``GET /v1/chargers/{id}/profile`` straight from ASGI (the same :func:`profile_answer` as the
    FastAPI route, which stays for the OpenAPI document), skipping FastAPI's routing, dependency and middleware
    layers: the fetch is the hot path (thousands of chargers every minute). Everything else goes to ``app``."""

    def __init__(self, app, engine: Engine, max_age: int):
        self.app, self.engine, self.max_age = app, engine, max_age

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (scope.get("method") == "GET" and path.startswith("/v1/chargers/") and path.endswith("/profile")):
            return await self.app(scope, receive, send)
        charger_id = path[len("/v1/chargers/"):-len("/profile")]
        if not charger_id or "/" in charger_id:
            return await self.app(scope, receive, send)
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get("ocpp")
        try:
            status, headers, body = profile_answer(self.engine, charger_id, query[-1] if query else None,
                                                   authorization, if_none_match, self.max_age)
        except Problem as problem:
            return await _problem_response(path, problem)(scope, receive, send)
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------------------------------------------
# the app


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
    fast_path : answer profile fetches in :class:`ProfileFastPath` before FastAPI (default; False: through the
        FastAPI route, the same answer, for comparison)

    Returns
    -------
    The ASGI application (:class:`BodyLimit` around :class:`ProfileFastPath` around the FastAPI app, which is
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
                              "See the module docstring of gridcharge.service.app.")
    api.state.engine = engine
    api.state.store = store
    api.state.new_operator_token = new_operator_token

    @api.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return _problem_response(request.url.path, exc)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _problem_response(request.url.path, _validation_problem(exc))

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: the methods of every route of this path, not only the first's
            headers["Allow"] = _allowed_methods(api, request.scope)
        return _problem_response(request.url.path, Problem(exc.status_code, titles.get(exc.status_code, "Error"),
                                                           str(exc.detail), headers=headers or None))

    @api.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        # no claim that nothing changed: a write may have been committed before the failure
        return _problem_response(request.url.path, Problem(500, "Internal Server Error",
                                                           f"internal error ({type(exc).__name__}); a write may "
                                                           f"have been committed: read the resource (GET) before "
                                                           f"retrying"))

    # auth ------------------------------------------------------------------------------------------------------
    def unauthorized(detail: str) -> Problem:
        return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="gridcharge"'})

    def require_operator(request: Request) -> None:
        token = bearer(request.headers.get("authorization"))
        if token is None:
            raise unauthorized("an operator token is required: Authorization: Bearer <token>")
        if matches(token, engine.operator_hash):
            return
        if token_hash(token) in engine.hash_charger:
            raise Problem(403, "Forbidden", "a charger token cannot use the operator API")
        raise unauthorized("unknown token")

    def check_site_id(site_id: str) -> None:
        if not is_site_id(site_id):
            raise Problem(422, "Unprocessable Content", f"path parameter site_id: {SITE_ID_EXPECTED}",
                          [_field_error("path.site_id", site_id, SITE_ID_EXPECTED)])

    def site_of(site_id: str):
        runtime = engine.sites.get(site_id)
        if runtime is None:
            raise Problem(404, "Not Found", f"no site {site_id!r}",
                          [_field_error("path.site_id", site_id, "the id of an existing site")])
        return runtime

    def submit(runtime, event, rename: dict) -> int:
        try:
            return engine.submit(runtime, event)
        except InstanceError as exc:
            raise _event_problem(exc, rename) from None
        except LookupError:
            raise Problem(409, "Conflict", f"site {runtime.site_id!r} was replaced while this request ran; "
                                           f"nothing was written") from None

    def now_text() -> str:
        return engine.clock().isoformat()

    operator_only = {"security": [{"operatorToken": []}]}

    # operator API ----------------------------------------------------------------------------------------------
    @api.put("/v1/sites/{site_id}", status_code=200, responses={201: {"description": "site created"}, **_ERRORS},
             openapi_extra=operator_only, summary="Create or replace a site (issues charger tokens, shown once)")
    def put_site(site_id: str, body: SiteIn, request: Request):
        require_operator(request)
        check_site_id(site_id)
        instance = body.instance
        chargers = instance.get("chargers") if isinstance(instance.get("chargers"), list) else []
        bad_ids = [_field_error(f"instance.chargers[{i}].id", c["id"], CHARGER_ID_EXPECTED)
                   for i, c in enumerate(chargers) if isinstance(c, dict) and isinstance(c.get("id"), str)
                   and not is_charger_id(c["id"])]
        if bad_ids:
            raise Problem(422, "Unprocessable Content", "; ".join(f"{e['field']}: {e['detail']}" for e in bad_ids),
                          bad_ids)
        ids = [c["id"] for c in chargers if isinstance(c, dict) and isinstance(c.get("id"), str)]
        known = set(ids)
        unknown = [cid for cid in body.charger_settings if cid not in known]
        if unknown:
            raise Problem(422, "Unprocessable Content", "charger_settings names chargers the instance lacks",
                          [_field_error(f"charger_settings.{cid}", cid, "the id of a charger of the instance")
                           for cid in unknown])
        tokens = {cid: new_token(CHARGER_PREFIX) for cid in ids}
        settings = {cid: s.model_dump() for cid, s in body.charger_settings.items()}
        existed = site_id in engine.sites
        try:
            runtime = engine.replace_site(site_id, instance, settings, tokens)
        except InstanceError as exc:
            errors = _problems_from_instance_error(exc, prefix="instance")
            raise Problem(422, "Unprocessable Content", "; ".join(f"{e['field']}: {e['detail']}" for e in errors),
                          errors) from None
        except ConflictError as exc:
            raise Problem(409, "Conflict", exc.detail, [_field_error(exc.field, exc.value, exc.detail)]) from None
        content = {"site_id": site_id, "generation": runtime.generation, "chargers": len(tokens),
                   "charger_tokens": tokens,
                   "note": "charger tokens are shown only in this response; only their hashes are stored"}
        return JSONResponse(content, status_code=200 if existed else 201,
                            headers={"Location": _location(site_id), "Cache-Control": "no-store"})

    @api.get("/v1/sites/{site_id}", responses=_ERRORS, openapi_extra=operator_only, summary="Site status")
    def get_site(site_id: str, request: Request):
        require_operator(request)
        return engine.status(site_of(site_id))

    @api.post("/v1/sites/{site_id}/sessions", status_code=201, responses=_ERRORS, openapi_extra=operator_only,
              summary="Plug-in or reservation")
    def post_session(site_id: str, body: SessionIn, request: Request, response: Response):
        require_operator(request)
        runtime = site_of(site_id)
        data = body.model_dump(exclude_none=True)
        data.setdefault("arrival", now_text())
        seq = submit(runtime, feed.PlugIn(data), {"session": ""})
        response.headers["Location"] = _location(site_id, "sessions", body.id)
        return {"event_seq": seq, "site_id": site_id, "session_id": body.id, "accepted": data}

    @api.patch("/v1/sites/{site_id}/sessions/{session_id:path}", responses=_ERRORS, openapi_extra=operator_only,
               summary="Change a session (departure, energy, meter reading)")
    def patch_session(site_id: str, session_id: str, body: SessionPatch, request: Request):
        require_operator(request)
        runtime = site_of(site_id)
        data = body.model_dump(exclude_none=True)
        if not data:
            raise Problem(422, "Unprocessable Content", "give departure, energy_kwh and/or energy_delivered_kwh",
                          [_field_error("body", {}, "at least one of departure, energy_kwh, energy_delivered_kwh")])
        data["session_id"] = session_id
        seq = submit(runtime, feed.Update(**data), {})
        return {"event_seq": seq, "site_id": site_id, "session_id": session_id, "accepted": data}

    @api.delete("/v1/sites/{site_id}/sessions/{session_id:path}", responses=_ERRORS, openapi_extra=operator_only,
                summary="End a session now (the car left, or the reservation is cancelled)")
    def delete_session(site_id: str, session_id: str, request: Request):
        require_operator(request)
        runtime = site_of(site_id)
        # the car is gone from now on: it leaves the plan at once (a departure at the start of the current period
        # removes it; a later one would keep it planned for the rest of this period)
        at = runtime.grid.time_of(runtime.grid.period_of(engine.clock()))
        data = {"session_id": session_id, "at": at.isoformat()}
        seq = submit(runtime, feed.End(session_id, data["at"]), {"at": "at"})
        return {"event_seq": seq, "site_id": site_id, "session_id": session_id, "accepted": data}

    @api.post("/v1/sites/{site_id}/caps", status_code=201, responses=_ERRORS, openapi_extra=operator_only,
              summary="Demand-response cap on a node for a time window")
    def post_cap(site_id: str, body: CapIn, request: Request):
        require_operator(request)
        runtime = site_of(site_id)
        data = body.model_dump()
        seq = submit(runtime, feed.CapEvent(**data), {"node_id": "node"})
        return {"event_seq": seq, "site_id": site_id, "accepted": data}

    # firmware API ----------------------------------------------------------------------------------------------
    @api.get("/v1/chargers/{charger_id}/profile", responses={304: {"description": "unchanged (If-None-Match)"},
                                                            **_ERRORS},
             openapi_extra={"security": [{"chargerToken": []}, {"operatorToken": []}],
                            "parameters": [_OCPP_PARAMETER]},
             summary="The charger's OCPP SetChargingProfile payloads")
    async def get_profile(charger_id: str, request: Request):
        # ``ocpp`` is read here rather than declared: it is required (the OpenAPI document says so, through
        # _OCPP_PARAMETER) and a missing one is a 400 problem of profile_answer, as on the fast path
        given = request.query_params.getlist("ocpp")
        ocpp = given[-1] if given else None
        status, headers, body = profile_answer(engine, charger_id, ocpp, request.headers.get("authorization"),
                                               request.headers.get("if-none-match"), max_age)
        return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})

    @api.get("/v1/health", summary="Liveness (no token)")
    def health():
        return {"status": "ok", "sites": len(engine.sites), "time": datetime.now(timezone.utc).isoformat()}

    def openapi():
        if api.openapi_schema is None:
            schema = get_openapi(title=api.title, version=api.version, description=api.description,
                                 routes=api.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "the operator token"},
                "chargerToken": {"type": "http", "scheme": "bearer",
                                 "description": "a charger's token (from PUT /v1/sites/{site_id})"},
            }
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi
    wrapped = BodyLimit(ProfileFastPath(api, engine, max_age) if fast_path else api, max_body_bytes)
    wrapped.fastapi = api
    wrapped.state = api.state
    return wrapped


_OCPP_PARAMETER = {"name": "ocpp", "in": "query", "required": True, "description": "OCPP version",
                   "schema": {"type": "string", "enum": list(VERSIONS)}}


def _location(*segments: str) -> str:
    """``/v1/sites/<segment>/...`` with each segment percent-encoded (RFC 3986): a header holds ASCII only, and an id
    with ``/``, ``?`` or non-ASCII characters stays one segment that the routes decode back to the id."""
    return "/v1/sites/" + "/".join(quote(s, safe="") for s in segments)


def _allowed_methods(api, scope) -> str:
    """The ``Allow`` header of a 405: the methods of every route whose path matches ``scope``."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in api.router.routes:
        if getattr(route, "methods", None) and route.matches({**scope, "method": "GET"})[0] != Match.NONE:
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


__all__ = ["BodyLimit", "FieldProblem", "create_app", "ensure_operator_token"]
