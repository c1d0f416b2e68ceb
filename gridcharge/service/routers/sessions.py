"""The operator API of sessions: ``POST /v1/sites/{site_id}/sessions`` (a plug-in or reservation → 201),
``PATCH`` / ``DELETE /v1/sites/{site_id}/sessions/{session_id}`` (departure, energy, meter reading; the car left).
A session id may hold any character: one percent-encoded segment, or a literal ``/`` (the OCPP central system
names its sessions ``<charger>/<transaction>``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from ...online import feed
from ..dependencies import get_engine, require_operator, site_of, submit
from ..problems import Problem, field_error
from ..runtime import Engine, SiteRuntime
from ..schemas import ERRORS, SessionIn, SessionPatch
from .sites import OPERATOR_ONLY, location

router = APIRouter(dependencies=[Depends(require_operator)])


@router.post("/v1/sites/{site_id}/sessions", status_code=201, responses=ERRORS, openapi_extra=OPERATOR_ONLY,
             summary="Plug-in or reservation")
def post_session(site_id: str, body: SessionIn, response: Response, runtime: SiteRuntime = Depends(site_of),
                 engine: Engine = Depends(get_engine)):
    data = body.model_dump(exclude_none=True)
    data.setdefault("arrival", engine.clock().isoformat())
    seq = submit(engine, runtime, feed.PlugIn(data), {"session": ""})
    response.headers["Location"] = location(site_id, "sessions", body.id)
    return {"event_seq": seq, "site_id": site_id, "session_id": body.id, "accepted": data}


@router.patch("/v1/sites/{site_id}/sessions/{session_id:path}", responses=ERRORS, openapi_extra=OPERATOR_ONLY,
              summary="Change a session (departure, energy, meter reading)")
def patch_session(site_id: str, session_id: str, body: SessionPatch, runtime: SiteRuntime = Depends(site_of),
                  engine: Engine = Depends(get_engine)):
    data = body.model_dump(exclude_none=True)
    if not data:
        raise Problem(422, "Unprocessable Content", "give departure, energy_kwh and/or energy_delivered_kwh",
                      [field_error("body", {}, "at least one of departure, energy_kwh, energy_delivered_kwh")])
    data["session_id"] = session_id
    seq = submit(engine, runtime, feed.Update(**data), {})
    return {"event_seq": seq, "site_id": site_id, "session_id": session_id, "accepted": data}


@router.delete("/v1/sites/{site_id}/sessions/{session_id:path}", responses=ERRORS, openapi_extra=OPERATOR_ONLY,
               summary="End a session now (the car left, or the reservation is cancelled)")
def delete_session(site_id: str, session_id: str, runtime: SiteRuntime = Depends(site_of),
                   engine: Engine = Depends(get_engine)):
    # the car is gone from now on: it leaves the plan at once (a departure at the start of the current period
    # removes it; a later one would keep it planned for the rest of this period)
    at = runtime.grid.time_of(runtime.grid.period_of(engine.clock()))
    data = {"session_id": session_id, "at": at.isoformat()}
    seq = submit(engine, runtime, feed.End(session_id, data["at"]), {"at": "at"})
    return {"event_seq": seq, "site_id": site_id, "session_id": session_id, "accepted": data}


__all__ = ["router"]
