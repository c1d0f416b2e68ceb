"""The durable store of the schedule service (SQLAlchemy 2 Core; SQLite in WAL mode by default).

What is stored (and why that is enough to rebuild everything after a restart)
---------------------------------------------------------------------------
- ``meta``: the operator token's SHA-256 (never the token).
- ``sites``: each site's instance-v1 (without sessions) and its per-charger OCPP settings, with a ``generation``
  that a replacement increments.
- ``charger_tokens``: charger id → site, SHA-256 of the charger's token. A charger id is unique across sites (the
  firmware URL names only the charger).
- ``events``: every accepted operator write to a site (plug-in, update, end, cap) in arrival order (``seq``), with
  explicit times (an omitted arrival is stored as the moment it was received) and the period of the site's grid at
  which it was accepted. Replaying them into a fresh :class:`gridcharge.online.Controller` rebuilds its state.
- ``publications``: the last published schedule of each site (set-points per session [kW], the period it starts,
  which event it includes, the controller's delivered-energy account per car), so a restarted service serves the
  very same profiles (same bytes, same ETag) before its first re-solve, and delivered energy is not forgotten.

Durability: each write is one transaction, committed before the call returns (the HTTP layer answers 2xx only
after that). SQLite runs with ``journal_mode=WAL`` and ``synchronous=FULL`` (a committed transaction survives a
power cut, not only a process crash), ``busy_timeout`` 10 s; writes are serialised by a lock in this process.
Any other SQLAlchemy URL (e.g. ``postgresql+psycopg://...``, driver installed separately) works with the same
tables.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import (Column, Integer, LargeBinary, MetaData, String, Table, Text, create_engine, delete, event,
                        insert, select, update)
from sqlalchemy.engine import Engine

metadata = MetaData()

meta_table = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
sites_table = Table(
    "sites", metadata,
    Column("site_id", String(), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("instance_json", Text, nullable=False),
    Column("settings_json", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)
tokens_table = Table(
    "charger_tokens", metadata,
    Column("charger_id", String(), primary_key=True),
    Column("site_id", String(), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False),
)
events_table = Table(
    "events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("site_id", String(), nullable=False, index=True),
    Column("generation", Integer, nullable=False),
    Column("period", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("body_json", Text, nullable=False),
    Column("received_at", String(40), nullable=False),
)
publications_table = Table(
    "publications", metadata,
    Column("site_id", String(), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("after_seq", Integer, nullable=False),
    Column("now", Integer, nullable=False),
    Column("start_period", Integer, nullable=False),
    Column("session_ids_json", Text, nullable=False),
    Column("power", LargeBinary, nullable=False),
    Column("source", String(), nullable=False),
    Column("status", Text, nullable=False),
    Column("delivered_json", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)


class ConflictError(Exception):
    """A write that contradicts stored state (e.g. a charger id that another site owns). ``field``, ``value``."""

    def __init__(self, field: str, value, detail: str):
        self.field, self.value, self.detail = field, value, detail
        super().__init__(f"{field}: {value!r} — {detail}")


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    period: int
    kind: str
    body: dict
    received_at: str


@dataclass(frozen=True)
class StoredPublication:
    generation: int
    after_seq: int
    now: int
    start_period: int
    session_ids: tuple
    power_kw: np.ndarray
    source: str
    status: str
    delivered_kwh: dict


@dataclass(frozen=True)
class StoredSite:
    site_id: str
    generation: int
    instance: dict
    settings: dict
    token_hashes: dict
    events: list
    publication: StoredPublication | None


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=float), allow_pickle=False)
    return buffer.getvalue()


class Store:
    """The service's tables behind one SQLAlchemy engine.

    Parameters
    ----------
    url : str — SQLAlchemy URL, e.g. ``sqlite:///gridcharge.db`` (a plain path is taken as a SQLite file)
    """

    def __init__(self, url: str):
        if "://" not in url:
            url = f"sqlite:///{url}"
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": 10}} if self.is_sqlite else {}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self._write_lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    def journal_mode(self) -> str | None:
        """SQLite's journal mode (``wal``), None for other databases."""
        if not self.is_sqlite:
            return None
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA journal_mode").scalar()

    # operator token --------------------------------------------------------------------------------------------
    def operator_hash(self) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(meta_table.c.value).where(meta_table.c.key == "operator_token_sha256")).scalar()

    def set_operator_hash(self, value: str) -> None:
        with self._write_lock, self.engine.begin() as conn:
            done = conn.execute(update(meta_table).where(meta_table.c.key == "operator_token_sha256")
                                .values(value=value)).rowcount
            if not done:
                conn.execute(insert(meta_table).values(key="operator_token_sha256", value=value))

    # sites -----------------------------------------------------------------------------------------------------
    def replace_site(self, site_id: str, instance: dict, settings: dict, token_hashes: dict) -> int:
        """Create or replace a site with new charger tokens; its events and publication are dropped. Returns the new
        generation. Raises :class:`ConflictError` if a charger id belongs to another site (nothing is written)."""
        with self._write_lock, self.engine.begin() as conn:
            ids = list(token_hashes)
            taken = {}
            for i in range(0, len(ids), 500):
                rows = conn.execute(select(tokens_table.c.charger_id, tokens_table.c.site_id)
                                    .where(tokens_table.c.charger_id.in_(ids[i:i + 500]))
                                    .where(tokens_table.c.site_id != site_id)).all()
                taken.update(dict(rows))
            if taken:
                charger_id, other = next(iter(taken.items()))
                position = ids.index(charger_id)
                raise ConflictError(f"instance.chargers[{position}].id", charger_id,
                                    f"a charger id not used by another site (site {other!r} has it; "
                                    f"{len(taken)} such id(s))")
            old = conn.execute(select(sites_table.c.generation).where(sites_table.c.site_id == site_id)).scalar()
            generation = 1 if old is None else old + 1
            conn.execute(delete(events_table).where(events_table.c.site_id == site_id))
            conn.execute(delete(publications_table).where(publications_table.c.site_id == site_id))
            conn.execute(delete(tokens_table).where(tokens_table.c.site_id == site_id))
            row = dict(generation=generation, instance_json=json.dumps(instance), settings_json=json.dumps(settings),
                       created_at=_now_text())
            if old is None:
                conn.execute(insert(sites_table).values(site_id=site_id, **row))
            else:
                conn.execute(update(sites_table).where(sites_table.c.site_id == site_id).values(**row))
            if token_hashes:
                conn.execute(insert(tokens_table), [{"charger_id": c, "site_id": site_id, "token_hash": h}
                                                    for c, h in token_hashes.items()])
        return generation

    def add_event(self, site_id: str, generation: int, period: int, kind: str, body: dict) -> int:
        """Append an accepted event; returns its sequence number (committed when this returns)."""
        with self._write_lock, self.engine.begin() as conn:
            result = conn.execute(insert(events_table).values(site_id=site_id, generation=generation, period=period,
                                                              kind=kind, body_json=json.dumps(body),
                                                              received_at=_now_text()))
            return int(result.inserted_primary_key[0])

    def save_publication(self, site_id: str, generation: int, after_seq: int, now: int, start_period: int,
                         session_ids, power_kw: np.ndarray, source: str, status: str, delivered_kwh: dict) -> bool:
        """Keep the site's latest publication (replacing the previous); False if the site changed generation."""
        row = dict(generation=generation, after_seq=after_seq, now=now, start_period=start_period,
                   session_ids_json=json.dumps(list(session_ids)), power=_array_bytes(power_kw), source=source,
                   status=status, delivered_json=json.dumps(delivered_kwh), created_at=_now_text())
        with self._write_lock, self.engine.begin() as conn:
            current = conn.execute(select(sites_table.c.generation).where(sites_table.c.site_id == site_id)).scalar()
            if current != generation:
                return False
            done = conn.execute(update(publications_table).where(publications_table.c.site_id == site_id)
                                .values(**row)).rowcount
            if not done:
                conn.execute(insert(publications_table).values(site_id=site_id, **row))
        return True

    def load_sites(self) -> list[StoredSite]:
        """Every site with its tokens, events (in order) and last publication."""
        out = []
        with self.engine.connect() as conn:
            for site in conn.execute(select(sites_table).order_by(sites_table.c.site_id)).mappings().all():
                sid = site["site_id"]
                tokens = dict(conn.execute(select(tokens_table.c.charger_id, tokens_table.c.token_hash)
                                           .where(tokens_table.c.site_id == sid)).all())
                events = [StoredEvent(r["seq"], r["period"], r["kind"], json.loads(r["body_json"]), r["received_at"])
                          for r in conn.execute(select(events_table).where(events_table.c.site_id == sid)
                                                .where(events_table.c.generation == site["generation"])
                                                .order_by(events_table.c.seq)).mappings()]
                pub_row = conn.execute(select(publications_table).where(publications_table.c.site_id == sid)
                                       .where(publications_table.c.generation == site["generation"])
                                       ).mappings().first()
                publication = None
                if pub_row is not None:
                    power = np.load(io.BytesIO(pub_row["power"]), allow_pickle=False)
                    publication = StoredPublication(pub_row["generation"], pub_row["after_seq"], pub_row["now"],
                                                    pub_row["start_period"],
                                                    tuple(json.loads(pub_row["session_ids_json"])), power,
                                                    pub_row["source"], pub_row["status"],
                                                    json.loads(pub_row["delivered_json"]))
                out.append(StoredSite(sid, site["generation"], json.loads(site["instance_json"]),
                                      json.loads(site["settings_json"]), tokens, events, publication))
        return out


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
