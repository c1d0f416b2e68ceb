"""The firmware API: ``GET /v1/chargers/{charger_id}/profile?ocpp=1.6|2.0.1|2.1`` — a charger's SetChargingProfile
payloads (:mod:`gridcharge.ocpp.plan`), ``ETag`` (``If-None-Match`` → 304) and ``Cache-Control: private,
max-age=<re-optimisation interval>``. A charger token reads only its own profile (403 otherwise); the operator token
may read any.

The fetch is the hot path (thousands of chargers every minute): :class:`ProfileFastPath` answers it straight from
ASGI, in front of FastAPI, through the same :func:`profile_answer` as the FastAPI route (which stays for the OpenAPI
document and for ``fast_path=False``).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ...ocpp.profiles import VERSIONS
from ..auth import bearer, matches, token_hash
from ..dependencies import get_engine
from ..problems import BEARER_CHALLENGE, Problem, field_error, problem_response
from ..runtime import Engine
from ..schemas import ERRORS

router = APIRouter()


def profile_answer(engine: Engine, charger_id: str, ocpp: str | None, authorization: str | None,
                   if_none_match: str | None, max_age: int) -> tuple[int, list, bytes]:
    """The answer to ``GET /v1/chargers/{charger_id}/profile?ocpp=...``: (status, raw headers, body), or a raised
    :class:`Problem` (401 no or unknown token, 403 another charger's token, 404 unknown charger, 400/422 ocpp)."""
    token = bearer(authorization)
    if token is None:
        raise Problem(401, "Unauthorized", "a charger token is required: Authorization: Bearer <token>",
                      headers=BEARER_CHALLENGE)
    runtime = engine.charger_site.get(charger_id)
    if not (runtime is not None and matches(token, runtime.token_hashes.get(charger_id))) \
            and not matches(token, engine.operator_hash):
        if token_hash(token) in engine.hash_charger:
            raise Problem(403, "Forbidden", "a charger may read only its own profile")
        raise Problem(401, "Unauthorized", "unknown token", headers=BEARER_CHALLENGE)
    if runtime is None:
        raise Problem(404, "Not Found", f"no charger {charger_id!r}",
                      [field_error("path.charger_id", charger_id, "the id of a charger of a site")])
    if ocpp not in VERSIONS:
        raise Problem(400 if ocpp is None else 422, "Bad Request" if ocpp is None else "Unprocessable Content",
                      f"query parameter ocpp: expected one of {', '.join(VERSIONS)}",
                      [field_error("query.ocpp", ocpp, f"one of {', '.join(VERSIONS)}")])
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
            return await problem_response(path, problem)(scope, receive, send)
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_OCPP_PARAMETER = {"name": "ocpp", "in": "query", "required": True, "description": "OCPP version",
                   "schema": {"type": "string", "enum": list(VERSIONS)}}


@router.get("/v1/chargers/{charger_id}/profile", responses={304: {"description": "unchanged (If-None-Match)"},
                                                           **ERRORS},
            openapi_extra={"security": [{"chargerToken": []}, {"operatorToken": []}],
                           "parameters": [_OCPP_PARAMETER]},
            summary="The charger's OCPP SetChargingProfile payloads")
async def get_profile(charger_id: str, request: Request, engine: Engine = Depends(get_engine)):
    # ``ocpp`` is read here rather than declared: it is required (the OpenAPI document says so, through
    # _OCPP_PARAMETER) and a missing one is a 400 problem of profile_answer, as on the fast path
    given = request.query_params.getlist("ocpp")
    ocpp = given[-1] if given else None
    status, headers, body = profile_answer(engine, charger_id, ocpp, request.headers.get("authorization"),
                                           request.headers.get("if-none-match"), request.app.state.max_age)
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


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


__all__ = ["ProfileFastPath", "profile_answer", "router"]
