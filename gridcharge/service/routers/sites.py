"""The operator API of sites: ``PUT /v1/sites/{site_id}`` (create 201 / replace 200; a fresh token per charger,
shown this once), ``GET /v1/sites/{site_id}`` (status) and ``POST /v1/sites/{site_id}/caps`` (a demand-response
cap)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ...errors import InstanceError
from ...instance import DEFAULT_VOLTAGE_V
from ...ocpp.identity import CHARGER_ID_EXPECTED, SITE_ID_EXPECTED, is_charger_id, is_site_id
from ...online import feed
from ..auth import CHARGER_PREFIX, new_token
from ..dependencies import get_engine, require_operator, site_of, submit
from ..problems import Problem, field_error, joined, problems_from_instance_error
from ..runtime import Engine, SiteRuntime
from ..schemas import ERRORS, CapIn, SiteIn
from ..store import ConflictError

#: the operator token opens these routes (checked before anything else)
OPERATOR_ONLY = {"security": [{"operatorToken": []}]}

router = APIRouter(dependencies=[Depends(require_operator)])


def location(*segments: str) -> str:
    """``/v1/sites/<segment>/...`` with each segment percent-encoded (RFC 3986): a header holds ASCII only, and an id
    with ``/``, ``?`` or non-ASCII characters stays one segment that the routes decode back to the id."""
    return "/v1/sites/" + "/".join(quote(s, safe="") for s in segments)


@router.put("/v1/sites/{site_id}", status_code=200, responses={201: {"description": "site created"}, **ERRORS},
            openapi_extra=OPERATOR_ONLY, summary="Create or replace a site (issues charger tokens, shown once)")
def put_site(site_id: str, body: SiteIn, engine: Engine = Depends(get_engine)):
    if not is_site_id(site_id):
        raise Problem(422, "Unprocessable Content", f"path parameter site_id: {SITE_ID_EXPECTED}",
                      [field_error("path.site_id", site_id, SITE_ID_EXPECTED)])
    instance = body.instance
    chargers = instance.get("chargers") if isinstance(instance.get("chargers"), list) else []
    bad_ids = [field_error(f"instance.chargers[{i}].id", c["id"], CHARGER_ID_EXPECTED)
               for i, c in enumerate(chargers) if isinstance(c, dict) and isinstance(c.get("id"), str)
               and not is_charger_id(c["id"])]
    if bad_ids:
        raise Problem(422, "Unprocessable Content", joined(bad_ids), bad_ids)
    ids = [c["id"] for c in chargers if isinstance(c, dict) and isinstance(c.get("id"), str)]
    known = set(ids)
    unknown = [cid for cid in body.charger_settings if cid not in known]
    if unknown:
        raise Problem(422, "Unprocessable Content", "charger_settings names chargers the instance lacks",
                      [field_error(f"charger_settings.{cid}", cid, "the id of a charger of the instance")
                       for cid in unknown])
    volts = [field_error(f"charger_settings.{cid}.voltage_v", s.voltage_v,
                         f"the charger's voltage_v in the instance ({voltage:g} V): a charger's voltage is set once, "
                         f"in instance.chargers[].voltage_v")
             for cid, s in body.charger_settings.items() if s.voltage_v is not None
             and (voltage := _instance_voltage_v(chargers, cid)) is not None and s.voltage_v != voltage]
    if volts:
        raise Problem(422, "Unprocessable Content", joined(volts), volts)
    tokens = {cid: new_token(CHARGER_PREFIX) for cid in ids}
    settings = {cid: s.model_dump(exclude={"voltage_v"}) for cid, s in body.charger_settings.items()}
    existed = site_id in engine.sites
    try:
        runtime = engine.replace_site(site_id, instance, settings, tokens)
    except InstanceError as exc:
        errors = problems_from_instance_error(exc, prefix="instance")
        raise Problem(422, "Unprocessable Content", joined(errors), errors) from None
    except ConflictError as exc:
        raise Problem(409, "Conflict", exc.detail, [field_error(exc.field, exc.value, exc.detail)]) from None
    content = {"site_id": site_id, "generation": runtime.generation, "chargers": len(tokens),
               "charger_tokens": tokens,
               "note": "charger tokens are shown only in this response; only their hashes are stored"}
    return JSONResponse(content, status_code=200 if existed else 201,
                        headers={"Location": location(site_id), "Cache-Control": "no-store"})


def _instance_voltage_v(chargers: list, charger_id: str) -> float | None:
    """The voltage [V] the instance gives charger ``charger_id`` (its default when it gives none); None when the
    charger's entry is not readable (the instance's own validation then names the field)."""
    for c in chargers:
        if isinstance(c, dict) and c.get("id") == charger_id:
            value = c.get("voltage_v", DEFAULT_VOLTAGE_V)
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return None


@router.get("/v1/sites/{site_id}", responses=ERRORS, openapi_extra=OPERATOR_ONLY, summary="Site status")
def get_site(runtime: SiteRuntime = Depends(site_of), engine: Engine = Depends(get_engine)):
    return engine.status(runtime)


@router.post("/v1/sites/{site_id}/caps", status_code=201, responses=ERRORS, openapi_extra=OPERATOR_ONLY,
             summary="Demand-response cap on a node for a time window")
def post_cap(site_id: str, body: CapIn, runtime: SiteRuntime = Depends(site_of),
             engine: Engine = Depends(get_engine)):
    data = body.model_dump()
    seq = submit(engine, runtime, feed.CapEvent(**data), {"node_id": "node"})
    return {"event_seq": seq, "site_id": site_id, "accepted": data}


__all__ = ["location", "router"]
