"""The schedule service (issue 7): chargers fetch their OCPP charging profiles over HTTP, from a durable store.

- :mod:`.app` — the HTTP API (FastAPI): endpoints, auth rules, RFC 9457 problem details, body limit;
  :func:`create_app` builds it.
- :mod:`.runtime` — sites in memory, the validator and solver controllers (the solver in a child process), the
  re-optimisation worker thread, the pre-rendered per-charger profiles (ETag = content hash).
- :mod:`.store` — SQLAlchemy tables: sites, hashed tokens, the event log, the last publication (SQLite WAL).
- :mod:`.auth` — tokens (random, shown once, SHA-256 stored, constant-time comparison).

Start it with ``gridcharge serve`` (:mod:`gridcharge.commands.serve`).
"""

__all__ = ["create_app"]


def __getattr__(name: str):  # lazy: the solver child imports gridcharge.service.runtime without FastAPI
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'gridcharge.service' has no attribute {name!r}")
