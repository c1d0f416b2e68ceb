"""The schedule service (issue 7): chargers fetch their OCPP charging profiles over HTTP, from a durable store.

- :mod:`.main` — :func:`create_app`: the HTTP API (FastAPI) wired from :mod:`.routers` (one module per resource),
  :mod:`.schemas` (bodies), :mod:`.dependencies` (auth, site look-up), :mod:`.problems` (RFC 9457), :mod:`.middleware`
  (body limit); :mod:`.ocpp_backend` mounts the OCPP central system on it.
- :mod:`.runtime` — sites in memory, the validator controllers, the re-optimisation worker thread, what chargers are
  served (ETag = content hash); :mod:`.solver` — the solver controllers (a child process per site).
- :mod:`.store` — SQLAlchemy tables: sites, hashed tokens, the event log, the last publication (SQLite WAL).
- :mod:`.auth` — tokens (random, shown once, SHA-256 stored, constant-time comparison).

Start it with ``gridcharge serve`` (:mod:`gridcharge.commands.serve`).
"""

__all__ = ["create_app"]


def __getattr__(name: str):  # lazy: the solver child imports gridcharge.service.solver without FastAPI
    if name == "create_app":
        from .main import create_app

        return create_app
    raise AttributeError(f"module 'gridcharge.service' has no attribute {name!r}")
