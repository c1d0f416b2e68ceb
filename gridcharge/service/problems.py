"""HTTP problems (RFC 9457 problem details): the :class:`Problem` a route raises, its JSON response, and the
translations of what the library raises (field problems, a controller's typed refusal, pydantic's errors) into one."""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import EventRefused, InstanceError, RefusalReason
from ..instance import field_problems
from .schemas import PROBLEM_JSON


#: the ``WWW-Authenticate`` header of a 401
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gridcharge"'}


class Problem(Exception):
    """An HTTP problem to answer with (status, title, detail, field errors)."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict] | None = None,
                 headers: dict | None = None):
        self.status, self.title, self.detail, self.errors, self.headers = status, title, detail, errors or [], headers
        super().__init__(detail)


TYPES = {400: "malformed-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
          409: "conflict", 413: "body-too-large", 415: "unsupported-media-type", 422: "invalid-field",
          500: "internal-error"}


def problem_response(request_path: str, problem: Problem) -> JSONResponse:
    body = {"type": f"urn:gridcharge:problem:{TYPES.get(problem.status, 'error')}", "title": problem.title,
            "status": problem.status, "detail": problem.detail, "instance": request_path}
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers)


def jsonable(value):
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def pointer(path: str) -> str:
    """``instance.chargers[2].id`` → ``/instance/chargers/2/id``; ``body`` (the whole body) → ``""``."""
    if path == "body":
        return ""
    parts = path.replace("]", "").replace("[", ".").split(".") if path else []
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts if p != "")


def field_error(path: str, value, expected: str) -> dict:
    """One bad field: ``pointer`` (JSON pointer) for the body, ``parameter`` for a query / path parameter."""
    where = path.split(".", 1)
    if where[0] in ("query", "path", "header") and len(where) == 2:
        return {"field": path, "parameter": where[1], "value": jsonable(value), "detail": expected}
    return {"field": path, "pointer": pointer(path), "value": jsonable(value), "detail": expected}


def problems_from_instance_error(exc: InstanceError, prefix: str = "", rename: dict | None = None) -> list[dict]:
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
        out.append(field_error(path, p.value, p.expected))
    return out


#: HTTP status of each reason a controller refuses an event for
REFUSAL_STATUS = {RefusalReason.UNKNOWN_SESSION: 404, RefusalReason.ID_IN_USE: 409,
                   RefusalReason.CHARGER_OCCUPIED: 409, RefusalReason.INVALID: 422}


def event_problem(exc: InstanceError, rename: dict) -> Problem:
    """A controller's refusal → 404 (unknown session), 409 (id used today, charger occupied) or 422, by its
    reason (:class:`~gridcharge.errors.EventRefused`)."""
    status = REFUSAL_STATUS[exc.reason] if isinstance(exc, EventRefused) else 422
    if status == 404:
        p = next(p for p in exc.problems if p.path == "session_id")
        return Problem(404, "Not Found", f"no active session {p.value!r} on this site",
                       [field_error("path.session_id", p.value, p.expected)])
    errors = problems_from_instance_error(exc, rename=rename)
    conflict = status == 409
    return Problem(status, "Conflict" if conflict else "Unprocessable Content",
                   joined(errors), errors)


def validation_problem(exc: RequestValidationError) -> Problem:
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
            errors.append(field_error("body", f"position {loc[-1] if loc else '?'}",
                                       f"valid JSON ({ctx.get('error', 'JSON decode error')})"))
            continue
        fields.append({**error, "loc": tuple(loc)})
    for p in field_problems(fields, unknown_key="no such field (unknown key)"):
        errors.append(field_error(p.path or "body", p.value, p.expected))
    status = 400 if malformed else 422
    title = "Bad Request" if malformed else "Unprocessable Content"
    return Problem(status, title, joined(errors), errors)


def joined(errors: list[dict]) -> str:
    """The ``detail`` of a problem from its field errors."""
    return "; ".join(f"{e['field']}: {e['detail']}" for e in errors)


__all__ = ["BEARER_CHALLENGE", "Problem", "REFUSAL_STATUS", "TYPES", "event_problem", "field_error", "joined",
           "problem_response", "problems_from_instance_error", "validation_problem"]
