"""``GET /v1/health``: liveness, without a token."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends

from ..dependencies import get_engine
from ..runtime import Engine

router = APIRouter()


@router.get("/v1/health", summary="Liveness (no token)")
def health(engine: Engine = Depends(get_engine)):
    return {"status": "ok", "sites": len(engine.sites), "time": datetime.now(timezone.utc).isoformat()}


__all__ = ["router"]
