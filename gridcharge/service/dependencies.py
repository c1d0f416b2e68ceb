"""What the routes share: the engine of the app, the operator's authorisation, a site by its id, and an event handed
to the engine with its refusal turned into a problem (404 / 409 / 422 from the refusal's type)."""

from __future__ import annotations

from fastapi import Depends, Request

from ..errors import InstanceError
from ..online import feed
from .auth import bearer, matches, token_hash
from .problems import BEARER_CHALLENGE, Problem, event_problem, field_error
from .runtime import Engine, SiteRuntime

def get_engine(request: Request) -> Engine:
    """The app's :class:`~gridcharge.service.runtime.Engine`."""
    return request.app.state.engine


def require_operator(request: Request, engine: Engine = Depends(get_engine)) -> None:
    """The operator token, or 401 (none, unknown) / 403 (a charger's token)."""
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise Problem(401, "Unauthorized", "an operator token is required: Authorization: Bearer <token>",
                      headers=BEARER_CHALLENGE)
    if matches(token, engine.operator_hash):
        return
    if token_hash(token) in engine.hash_charger:
        raise Problem(403, "Forbidden", "a charger token cannot use the operator API")
    raise Problem(401, "Unauthorized", "unknown token", headers=BEARER_CHALLENGE)


def site_of(site_id: str, engine: Engine = Depends(get_engine)) -> SiteRuntime:
    """The site ``site_id`` of the path, or 404."""
    runtime = engine.sites.get(site_id)
    if runtime is None:
        raise Problem(404, "Not Found", f"no site {site_id!r}",
                      [field_error("path.site_id", site_id, "the id of an existing site")])
    return runtime


def submit(engine: Engine, runtime: SiteRuntime, event: feed.Event, rename: dict) -> int:
    """Hand ``event`` to the engine (validated, committed, queued); its stored sequence number. A refusal is a
    problem by its type (:func:`~gridcharge.service.problems.event_problem`; ``rename`` maps the controller's
    field paths onto the request's), a site replaced meanwhile a 409."""
    try:
        return engine.submit(runtime, event)
    except InstanceError as exc:
        raise event_problem(exc, rename) from None
    except LookupError:
        raise Problem(409, "Conflict", f"site {runtime.site_id!r} was replaced while this request ran; "
                                       f"nothing was written") from None


__all__ = ["get_engine", "require_operator", "site_of", "submit"]
