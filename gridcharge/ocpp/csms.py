"""An OCPP central system (CSMS) over websockets: chargers hold an OCPP-J connection, report their sessions, and get
the online controller's set-points pushed as ``SetChargingProfile``.

Built on the ``ocpp`` package and independent of HTTP: the central system talks to a *backend* (:class:`CsmsBackend`)
that owns the controller: :class:`gridcharge.ocpp.memory.MemoryBackend` (in memory) or the schedule service's engine
(:mod:`gridcharge.service.ocpp_backend`). One module per step of a charger's frame:

- :mod:`.routing` — version-neutral OCPP-J routing (malformed frames, unknown actions, our CALLs and their answers);
- :mod:`.handlers` — each version's answers to the charger's requests, handing typed calls to :mod:`.sessions`;
- :mod:`.sessions` — transactions → the backend's typed events (plug-in, update, end);
- this module — connections (handshake, credentials, one :class:`Link` per charger) and pushes: after each
  publication of the backend, every connected charger's wanted profiles (the backend's payload dicts, from
  :mod:`gridcharge.ocpp.plan`) are diffed per purpose against what it accepted and the differences sent, the
  TxProfile bound to the running transaction; after a new TxProfile a ``GetCompositeSchedule`` checks the charger's
  composite limit (``min(TxProfile, station maximum)``).

Connections: ``ws://host:port/ocpp/{charger_id}`` with HTTP Basic auth (user = the charger id, password = its
token; 401 before the websocket opens otherwise), subprotocols ``ocpp2.1``, ``ocpp2.0.1``, ``ocpp1.6`` (the
charger's first one we speak; none → closed with 1002). A second connection of a charger replaces the first. The
credentials are checked again before each frame and push: once revoked (the site was replaced) the connection is
closed (1008). After ``BootNotification`` (or at once, for a charger accepted before that reconnects) the station
maximum and the fail-safe ``TxDefaultProfile`` are pushed, then the ``TxProfile`` of a running transaction.
Payloads are checked against the version's JSON schema right before they are sent; one that fails is not sent.

Threads: one asyncio loop. Backend calls that may block run in worker threads, one at a time per charger, in the
order the charger sent its requests, after the charger was answered. Publications arrive from any thread and hop
onto the loop with ``call_soon_threadsafe``.

Known limits: one EVSE per OCPP identity; departures beyond the site's horizon are planned to its end (logged);
``Authorize`` accepts every id token. Design, and a plug-in's path one module per step: ``docs/design/ocpp.md``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ..online import feed
from .handlers import station_class
from .profiles import PayloadError
from .routing import SUBPROTOCOLS, OneLineLog, frame_error
from .sessions import BIDIRECTIONAL_MODES, Sessions, Transaction, needs_to_session
from .wire import (energy_registers, limit_at, parse_time, profile_of, purpose_of, schedule_of, utc_text,
                   with_transaction)

log = logging.getLogger("gridcharge.ocpp")

_MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")
_PUSH_ORDER = {"ChargePointMaxProfile": 0, "ChargingStationMaxProfile": 0, "TxDefaultProfile": 1, "TxProfile": 2}


@dataclass(frozen=True)
class ChargerInfo:
    """What the central system needs to know about a charger of the site.

    charger_id : str
    max_charge_kw, max_discharge_kw : float — the charger's limits [kW] (discharge 0 = no V2G)
    efficiency : float — grid → battery efficiency (0, 1]
    horizon_end : datetime — end of the site's planning horizon (a departure is planned no later)
    """

    charger_id: str
    max_charge_kw: float
    max_discharge_kw: float
    efficiency: float
    horizon_end: datetime


@runtime_checkable
class CsmsBackend(Protocol):
    """What the central system needs from the scheduling side. Methods may block (they run in worker threads),
    except :meth:`authenticate` and :meth:`profiles`, which must be cheap.

    Event methods raise :class:`gridcharge.errors.EventRefused` (its ``reason`` typed, the fields named) when the
    controller refuses the event; the state is then unchanged.
    """

    def authenticate(self, charger_id: str, password: str) -> bool:
        """Whether ``password`` is charger ``charger_id``'s token (constant-time)."""

    def charger(self, charger_id: str) -> ChargerInfo | None:
        """The charger's data, or None for an unknown charger."""

    def now(self) -> datetime:
        """The backend's clock (tz-aware)."""

    def plug_in(self, charger_id: str, session: dict) -> None:
        """A car plugs in: instance-v1 session fields (``id``, ``charger``, ``arrival``, ``departure`` as ISO
        strings, ``energy_kwh`` [kWh], optional ``max_charge_kw``, ``max_discharge_kw`` [kW], ``battery_kwh``,
        ``initial_kwh``, ``min_kwh`` [kWh])."""

    def update(self, charger_id: str, change: feed.Update) -> None:
        """A running session changes: any of ``departure`` (ISO), ``energy_kwh`` (total since arrival) [kWh],
        ``energy_delivered_kwh`` (meter, into the battery since arrival) [kWh]."""

    def end(self, charger_id: str, session_id: str, at: datetime | None) -> None:
        """The car left at ``at``; ``at=None``: remove the session at once, as if it had left at the start of the
        current period (the central system does this when it replaces a session by its successor)."""

    def active_session(self, charger_id: str) -> str | None:
        """The id of a session announced on this charger by someone else (e.g. the operator API) and running now,
        which a transaction that starts on the charger should adopt; None if there is none."""

    def profiles(self, charger_id: str, version: str) -> list[dict]:
        """The SetChargingProfile request payloads the charger should hold now (wire dicts of
        :mod:`gridcharge.ocpp.profiles`): station maximum, fail-safe TxDefaultProfile, and the TxProfile when a car
        is planned on it (without ``transactionId``; the central system adds it)."""

    def subscribe(self, listener: Callable[[Collection[str] | None], None]) -> None:
        """Call ``listener(charger_ids)`` (from any thread) after each publication; ``charger_ids``: the chargers
        whose profiles may have changed, or None for all."""


# ----------------------------------------------------------------------------------------------------------------
# one connection


class Link:
    """One open connection: the station object (the ``ocpp`` package's ChargePoint with our routing and handlers),
    its queue of session calls, what the charger last accepted per purpose, the push task. It implements
    :class:`gridcharge.ocpp.routing.Link` for the routing and offers the handlers :meth:`record`, :meth:`later`,
    :meth:`booted`, ``sessions`` and ``heartbeat_s``."""

    def __init__(self, csms: CentralSystem, charger_id: str, version: str, connection,
                 password: str | None = None):
        self.csms, self.charger_id, self.version = csms, charger_id, version
        self.connection = connection
        self.password = password  # of the handshake, checked again before each frame (None: not checked)
        self.sessions = csms.sessions
        self.heartbeat_s = csms.heartbeat_s
        self.response_timeout_s = csms.response_timeout_s
        self.station = station_class(version)(charger_id, connection, response_timeout=csms.response_timeout_s,
                                              logger=OneLineLog(logging.getLogger("ocpp"), {"charger_id": charger_id}))
        self.station.link = self
        self.call_lock = asyncio.Lock()
        self.waiting: dict[str, asyncio.Future] = {}  # our CALLs' ids → their answers
        self.revoked = False
        self.ready = asyncio.Event()
        self.dirty = asyncio.Event()
        self.dirty.set()
        self.calls: asyncio.Queue = asyncio.Queue()  # (coroutine function, arguments) for the session keeper
        self.accepted: dict[str, dict] = {}  # purpose → the payload the charger accepted (or last answered)
        self.closed = False
        self.connected_at = time.perf_counter()

    # for the handlers --------------------------------------------------------------------------------------------
    def record(self, **facts) -> None:
        """Keep boot data and statuses (``status`` merges per EVSE) in :attr:`CentralSystem.records`."""
        record = self.csms.records.setdefault(self.charger_id, {})
        for key, value in facts.items():
            if isinstance(value, dict) and isinstance(record.get(key), dict) and key == "status":
                record[key] = {**record[key], **value}
            else:
                record[key] = value

    def later(self, call: Callable, *args) -> None:
        """Run ``await call(self, *args)`` after the current request is answered, in the order of the requests."""
        self.calls.put_nowait((call, args))

    def booted(self) -> None:
        """The charger (re)booted: accepted; do not assume it kept what it held, push all again."""
        self.csms.accepted.add(self.charger_id)
        self.accepted.clear()
        self.dirty.set()
        self.ready.set()

    def forget(self, purpose: str) -> None:
        """The charger dropped its profile of ``purpose`` (a TxProfile ends with its transaction)."""
        self.accepted.pop(purpose, None)

    # credentials -------------------------------------------------------------------------------------------------
    def authorised(self) -> bool:
        """Whether the credentials of the handshake still hold (a replaced site revokes its chargers' tokens)."""
        if self.revoked:
            return False
        if self.password is not None and not self.csms.backend.authenticate(self.charger_id, self.password):
            self.revoked = True
        return not self.revoked

    async def revoke(self) -> None:
        """Close a connection whose credentials were revoked (1008, policy violation); nothing of it is handled."""
        if self.closed:
            return
        self.closed = True
        self.csms.problem(f"{self.charger_id}: credentials revoked (site replaced): connection closed, its "
                          f"messages refused")
        with contextlib.suppress(Exception):
            await self.connection.close(code=1008, reason="credentials revoked: log in with the new token")

    # the tasks ---------------------------------------------------------------------------------------------------
    async def run(self) -> None:
        if self.charger_id in self.csms.accepted:
            self.ready.set()
        tasks = [asyncio.create_task(self._consume()), asyncio.create_task(self._push())]
        try:
            await self.station.start()
        finally:
            # Python 3.11's asyncio.wait_for (inside the ocpp package's call) can swallow a cancellation that
            # races with a response: the tasks also stop on this flag, woken by the event and the queue.
            self.closed = True
            self.ready.set()
            self.dirty.set()
            self.calls.put_nowait(None)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5)

    async def _consume(self) -> None:
        while not self.closed:
            item = await self.calls.get()
            if item is None:
                return
            call, args = item
            if not self.authorised():  # queued before the site was replaced: not for the new site
                await self.revoke()
                return
            try:
                await call(self, *args)
            except Exception:
                log.exception("%s: %s failed", self.charger_id, getattr(call, "__name__", call))

    async def _push(self) -> None:
        await self.ready.wait()
        while not self.closed:
            await self.dirty.wait()
            self.dirty.clear()
            if self.closed:
                return
            if not self.authorised():
                await self.revoke()
                return
            try:
                await self.csms.push(self)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("%s: push failed (%s)", self.charger_id, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if type(exc).__name__ in ("WebSocketDisconnect", "ConnectionClosed"):
                    return
                log.exception("%s: push failed", self.charger_id)


# ----------------------------------------------------------------------------------------------------------------
# the central system


class CentralSystem:
    """The OCPP central system of one backend.

    Parameters
    ----------
    backend : CsmsBackend
    default_stay_h : float — planned stay of a car whose charger does not say its departure [hours] (default 8;
        cut at the site's horizon)
    default_energy_kwh : float — energy planned for such a car [kWh] (default 20)
    meter_interval_s : float — at most one meter reading per transaction is passed on per this many seconds [s]
        (default 300; the controller credits its own set-points between readings)
    heartbeat_s : int — heartbeat interval told to chargers at boot [s] (default 300)
    response_timeout_s : float — how long to wait for a charger's answer to a call [s] (default 30)
    confirm : bool — send ``GetCompositeSchedule`` after each new TxProfile (default True)

    Attributes
    ----------
    links : dict charger id → the open connection
    records : dict charger id → boot data and last statuses
    sessions : Sessions — the transactions (``sessions.transactions``) and the sessions standing for them
    problems : list of str — refused events and dropped data, newest last (at most 1,000 kept)
    stats : dict — counters: ``connections``, ``pushed`` (per purpose), ``rejected``, ``payload_errors``,
        ``confirmed``, ``composite_mismatch``, ``refused_events`` and ``refusals`` (per refusal reason)
    """

    def __init__(self, backend: CsmsBackend, *, default_stay_h: float = 8.0, default_energy_kwh: float = 20.0,
                 meter_interval_s: float = 300.0, heartbeat_s: int = 300, response_timeout_s: float = 30.0,
                 confirm: bool = True):
        if not (default_stay_h > 0 and default_energy_kwh >= 0 and meter_interval_s >= 0 and heartbeat_s > 0):
            raise ValueError("default_stay_h > 0 [h], default_energy_kwh >= 0 [kWh], meter_interval_s >= 0 [s] and "
                             "heartbeat_s > 0 [s] expected")
        self.backend = backend
        self.default_stay = timedelta(hours=default_stay_h)
        self.default_energy_kwh = float(default_energy_kwh)
        self.meter_interval_s = float(meter_interval_s)
        self.heartbeat_s = int(heartbeat_s)
        self.response_timeout_s = float(response_timeout_s)
        self.confirm = confirm
        self.links: dict[str, Link] = {}
        self.records: dict[str, dict] = {}
        self.accepted: set[str] = set()
        self.problems: list[str] = []
        self.stats: dict[str, Any] = {"connections": 0, "pushed": {}, "rejected": 0, "payload_errors": 0,
                                      "confirmed": 0, "composite_mismatch": 0, "refused_events": 0,
                                      "refusals": {}}
        self.sessions = Sessions(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.denials = _DenialNoiseFilter.install()
        backend.subscribe(self._published)

    # backend → us ----------------------------------------------------------------------------------------------
    def _published(self, charger_ids) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        ids = None if charger_ids is None else frozenset(charger_ids)
        with contextlib.suppress(RuntimeError):  # loop closed meanwhile
            loop.call_soon_threadsafe(self._mark, ids)

    def _mark(self, ids) -> None:
        for cid, link in list(self.links.items()):
            if ids is None or cid in ids:
                link.dirty.set()

    @property
    def transactions(self) -> dict:
        """charger id → {transaction id: Transaction}"""
        return self.sessions.transactions

    def problem(self, text: str) -> None:
        """Log and keep a problem (a refused event, dropped data, a rejected profile)."""
        log.warning(text)
        self.problems.append(text)
        del self.problems[:-1000]

    # connections -----------------------------------------------------------------------------------------------
    async def serve(self, connection, charger_id: str, version: str, password: str | None = None) -> None:
        """Run one accepted connection until it closes. ``connection`` has ``async recv() -> str``,
        ``async send(str)`` and ``async close(code, reason)``; the charger is already authenticated and ``version``
        negotiated. With ``password`` (the handshake's), the credentials are checked again before each frame and
        each push: once the backend no longer accepts them the connection is closed (1008)."""
        self._loop = asyncio.get_running_loop()
        link = Link(self, charger_id, version, connection, password)
        old = self.links.get(charger_id)
        self.links[charger_id] = link
        self.stats["connections"] += 1
        if old is not None:
            with contextlib.suppress(Exception):
                await old.connection.close(code=1000, reason="replaced by a new connection")
        try:
            await link.run()
        except Exception as exc:
            if type(exc).__name__ not in ("WebSocketDisconnect", "ConnectionClosed", "ConnectionClosedOK",
                                          "ConnectionClosedError"):
                log.exception("%s: connection failed", charger_id)
        finally:
            if self.links.get(charger_id) is link:
                del self.links[charger_id]

    def check_credentials(self, charger_id: str, authorization: str | None) -> bool:
        """HTTP Basic credentials (``Authorization`` header value) → whether they are charger ``charger_id``'s."""
        return self._password(charger_id, authorization) is not None

    def _password(self, charger_id: str, authorization: str | None) -> str | None:
        """The password of valid HTTP Basic credentials of charger ``charger_id``, else None."""
        if not authorization:
            return None
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not sep or user != charger_id:
            return None
        return password if self.backend.authenticate(charger_id, password) else None

    async def websocket_endpoint(self, websocket) -> None:
        """Starlette websocket endpoint for ``/ocpp/{charger_id}``: Basic auth, subprotocol, then :meth:`serve`."""
        from starlette.responses import PlainTextResponse
        from starlette.websockets import WebSocketDisconnect

        charger_id = websocket.path_params["charger_id"]
        password = self._password(charger_id, websocket.headers.get("authorization"))
        if password is None:
            response = PlainTextResponse("HTTP Basic credentials required: user = the charger id of the URL, "
                                         "password = the charger's token", status_code=401,
                                         headers={"WWW-Authenticate": 'Basic realm="gridcharge OCPP"'})
            await websocket.send_denial_response(response)
            self.denials.expect()
            return
        offered = [p.strip() for p in websocket.scope.get("subprotocols", [])]
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        if chosen is None:
            await websocket.accept()
            await websocket.close(code=1002, reason=f"no supported subprotocol: {', '.join(SUBPROTOCOLS)}")
            return
        await websocket.accept(subprotocol=chosen)
        connection = StarletteConnection(websocket)
        try:
            await self.serve(connection, charger_id, SUBPROTOCOLS[chosen], password)
        except WebSocketDisconnect:
            pass

    # pushing profiles ------------------------------------------------------------------------------------------
    def wanted(self, link: Link, payloads: list[dict]) -> list[dict]:
        """The SetChargingProfile payloads charger ``link`` should hold now, in push order (station maximum,
        default, TxProfile for its running transaction), from the backend's ``payloads``."""
        tx = self.sessions.open_transaction(link.charger_id)
        out = []
        for payload in payloads:
            purpose = purpose_of(payload)
            if purpose == "TxProfile":
                if tx is None or tx.session_id is None:
                    continue
                payload = with_transaction(payload, tx.transaction_id, tx.evse_id, link.version)
            out.append(payload)
        return sorted(out, key=lambda p: _PUSH_ORDER[purpose_of(p)])

    async def push(self, link: Link) -> None:
        """Send charger ``link`` each wanted profile that differs from what it accepted (per purpose)."""
        payloads = await asyncio.to_thread(self.backend.profiles, link.charger_id, link.version)
        wanted = self.wanted(link, payloads)
        for payload in wanted:
            purpose = purpose_of(payload)
            if link.accepted.get(purpose) == payload:
                continue
            try:
                answer = await link.station.send_call("SetChargingProfile", payload)
            except PayloadError as exc:
                self.stats["payload_errors"] += 1
                self.problem(f"{link.charger_id}: {purpose} not sent or badly answered: {exc}")
                link.accepted[purpose] = payload  # do not retry the same payload
                continue
            link.accepted[purpose] = payload
            pushed = self.stats["pushed"]
            pushed[purpose] = pushed.get(purpose, 0) + 1
            if answer.get("status") != "Accepted":
                self.stats["rejected"] += 1
                self.problem(f"{link.charger_id}: {purpose} answered {answer.get('status')!r}")
                continue
            if purpose == "TxProfile" and self.confirm:
                await self._confirm(link, payload, wanted)

    async def _confirm(self, link: Link, tx_payload: dict, wanted: list[dict]) -> None:
        schedule = schedule_of(tx_payload)
        unit = schedule["chargingRateUnit"]
        evse = tx_payload.get("evseId", tx_payload.get("connectorId", 1))
        duration = int(min(3600, schedule.get("duration", 3600)))
        request = ({"connectorId": evse, "duration": duration, "chargingRateUnit": unit} if link.version == "1.6"
                   else {"duration": duration, "chargingRateUnit": unit, "evseId": evse})
        now = self.backend.now()
        try:
            answer = await link.station.send_call("GetCompositeSchedule", request)
        except PayloadError as exc:
            self.stats["payload_errors"] += 1
            self.problem(f"{link.charger_id}: GetCompositeSchedule: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - CALLERROR: the charger does not support it; a closed link
            if link.closed or type(exc).__name__ in ("WebSocketDisconnect", "ConnectionClosed"):
                return
            self.problem(f"{link.charger_id}: GetCompositeSchedule failed: {type(exc).__name__}: {exc}")
            return
        composite = answer.get("chargingSchedule") if link.version == "1.6" else answer.get("schedule")
        if answer.get("status") != "Accepted" or not composite or not composite.get("chargingSchedulePeriod"):
            self.stats["composite_mismatch"] += 1
            self.problem(f"{link.charger_id}: GetCompositeSchedule answered {answer.get('status')!r} without a "
                          f"schedule")
            return
        expected = limit_at(tx_payload, now)
        for payload in wanted:
            if purpose_of(payload) in _MAX_PURPOSES and expected is not None:
                cap = limit_at(payload, now)
                if cap is not None:
                    expected = min(expected, cap)
        got = float(composite["chargingSchedulePeriod"][0].get("limit", 0.0))
        same_unit = composite.get("chargingRateUnit") == unit
        resolution = 1.0 if unit == "W" else 0.1
        if expected is None or (same_unit and abs(got - expected) <= resolution + 1e-9):
            self.stats["confirmed"] += 1
            link.record(composite_ok=True)
        else:
            self.stats["composite_mismatch"] += 1
            link.record(composite_ok=False)
            self.problem(f"{link.charger_id}: composite limit now {got} {composite.get('chargingRateUnit')}, "
                          f"expected {expected} {unit}")


_UVICORN_DENIAL_NOISE = "ASGI callable returned without completing handshake."


class _DenialNoiseFilter(logging.Filter):
    """uvicorn (0.54, websockets-sansio) logs an error after every websocket denial response (it does not count
    the 401 as a completed handshake). Drop exactly one such record per denial we sent (:meth:`expect`); any other
    stays."""

    def __init__(self):
        super().__init__()
        self.expected = 0

    @classmethod
    def install(cls) -> _DenialNoiseFilter:
        instance = cls()
        logging.getLogger("uvicorn.error").addFilter(instance)
        return instance

    def expect(self) -> None:
        """A denial was sent: drop the one record uvicorn logs about it."""
        self.expected += 1

    def filter(self, record: logging.LogRecord) -> bool:
        if self.expected > 0 and record.getMessage() == _UVICORN_DENIAL_NOISE:
            self.expected -= 1
            return False
        return True


class StarletteConnection:
    """A Starlette WebSocket as the ``ocpp`` package expects a connection: ``recv()`` / ``send()`` / ``close()``."""

    def __init__(self, websocket):
        self.websocket = websocket

    async def recv(self) -> str:
        return await self.websocket.receive_text()

    async def send(self, message: str) -> None:
        await self.websocket.send_text(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.websocket.close(code=code, reason=reason)


OCPP_PATH = "/ocpp/{charger_id}"


def mount(app, csms: CentralSystem, path: str = OCPP_PATH) -> None:
    """Add the OCPP websocket route to a Starlette / FastAPI ``app``."""
    from starlette.routing import WebSocketRoute

    app.router.routes.append(WebSocketRoute(path, csms.websocket_endpoint))


def ocpp_app(csms: CentralSystem, path: str = OCPP_PATH):
    """A stand-alone ASGI app (Starlette) serving only the OCPP websocket route."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    return Starlette(routes=[WebSocketRoute(path, csms.websocket_endpoint)])


__all__ = [
    "BIDIRECTIONAL_MODES",
    "OCPP_PATH",
    "SUBPROTOCOLS",
    "CentralSystem",
    "ChargerInfo",
    "CsmsBackend",
    "Link",
    "StarletteConnection",
    "Transaction",
    "energy_registers",
    "frame_error",
    "limit_at",
    "mount",
    "needs_to_session",
    "ocpp_app",
    "parse_time",
    "profile_of",
    "purpose_of",
    "schedule_of",
    "utc_text",
]
