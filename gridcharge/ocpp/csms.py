"""An OCPP central system (CSMS) over websockets: chargers hold an OCPP-J connection, report their sessions, and get
the online controller's set-points pushed as ``SetChargingProfile``.

Built on the ``ocpp`` package (its ``ChargePoint`` classes for 1.6, 2.0.1 and 2.1 route the charger's requests to
``@on`` handlers and match responses to calls) and independent of HTTP: the central system talks to a *backend*
(:class:`CsmsBackend`, a Protocol) that owns the controller. Two backends exist: :class:`gridcharge.ocpp.memory.
MemoryBackend` (an in-memory site driving a :class:`gridcharge.online.Controller`; tests, ``gridcharge ocpp-serve``
style use) and the schedule service's engine (:mod:`gridcharge.service.ocpp_backend`, ``gridcharge serve --ocpp``).
The transport is a Starlette websocket route (:meth:`CentralSystem.websocket_endpoint`, or :func:`ocpp_app` for a
stand-alone ASGI app): same port as the HTTP API.

What a connection goes through
------------------------------
1. **Handshake**: ``ws://host:port/ocpp/{charger_id}``. HTTP Basic auth (OCPP security profile 1; profile 2 is the
   same over TLS): user = the charger id of the URL, password = the charger's token; anything else is refused with
   HTTP 401 before the websocket opens. Subprotocols ``ocpp2.1``, ``ocpp2.0.1``, ``ocpp1.6``: the first one the
   charger offers that we speak is chosen (the charger lists them in its order of preference); none → the handshake
   completes without a subprotocol and the connection is closed at once (code 1002), as OCPP-J asks. A second
   connection of the same charger replaces the first. The credentials are checked again before each frame and
   push: once the backend revokes them (the service replaced the site) the connection is closed (1008) and
   nothing more of it is handled. A malformed frame or an action we have no handler for gets the CALLERROR of
   OCPP-J (:meth:`_Station.route_message`, :func:`frame_error`) and one log line.
2. **Boot**: ``BootNotification`` → ``Accepted`` (interval :attr:`CentralSystem.heartbeat_s`). Right after the
   response — or at once, for a charger already accepted by this process that reconnects without booting again —
   the central system pushes, before it sends anything else, the station maximum (``ChargePointMaxProfile`` 1.6 /
   ``ChargingStationMaxProfile`` 2.x) and the fail-safe ``TxDefaultProfile`` (a limit that is safe if every charger
   of the site draws it at once; see :func:`gridcharge.ocpp.profiles.failsafe_limits_kw`), then the current
   ``TxProfile`` when a transaction is running.
3. **Sessions**: ``TransactionEvent`` ``Started`` (1.6: ``StartTransaction``) → a session on that charger is
   plugged into the controller with a default stay and energy (:attr:`CentralSystem.default_stay_h`,
   :attr:`~CentralSystem.default_energy_kwh`; a charger without ISO 15118 never says more). Meter values
   (``Energy.Active.Import.Register`` minus ``Energy.Active.Export.Register``, from the transaction's first reading)
   → the energy delivered so far (into the battery: import x efficiency − export / efficiency), at most every
   :attr:`~CentralSystem.meter_interval_s`. ``NotifyEVChargingNeeds`` → departure time and energy
   (``energyAmount``; 2.1 ``v2xChargingParameters.evTargetEnergyRequest``), the EV's maximum power
   (``maxChargePower``, DC ``evMaxPower``), and in 2.1 with a bidirectional transfer mode (``*_BPT``) and
   ``maxDischargePower`` > 0 the V2G consent, with the cycling window ``evMinV2XEnergyRequest`` ..
   ``evMaxEnergyRequest`` as a battery. Departure and energy are an update of the session; what a controller fixes
   at plug-in (power limits, V2G, battery) replaces it: the old session ends now and a new one starts now with the
   energy still wanted (ISO 15118 requests are counted from the car's present state, so nothing is counted twice);
   the old session is removed at once (not kept for the part of the period already gone), so the two never
   overlap on the charger.
   ``Ended`` (1.6 ``StopTransaction``) → the session ends now (removed at once: its capacity is free for the rest
   of the period, and a next car on the charger does not inherit its set-point). A refused event (the controller names the field) is
   logged and kept in :attr:`CentralSystem.problems`; the charger is still answered (OCPP has no way to refuse a
   transaction event), and without a session its charger stays on the fail-safe default.
4. **Profiles**: after each publication of the backend (a re-optimisation, or a new period), every connected
   charger's wanted profiles are rendered again; each one that differs from what that charger last accepted is sent
   (``SetChargingProfile``), and after a new ``TxProfile`` a ``GetCompositeSchedule`` checks that the charger's
   composite limit now is what we meant (``min(TxProfile, station maximum)``; a mismatch is logged and counted).
   A ``TxProfile`` is only sent for a running transaction, with its ``transactionId`` and EVSE (OCPP binds a
   TxProfile to one). ``TxProfile`` payloads carry ``validTo`` (end of the period + grace) so a charger that loses
   contact falls back to its default: they are re-pushed each period.

Payloads
--------
Every ``SetChargingProfile`` comes from :mod:`gridcharge.ocpp.profiles` (via the backend) as a wire dict and is
checked against the official JSON schema of the connection's version (:func:`gridcharge.ocpp.profiles.
validate_payload`) right before it is sent; a payload that fails is *not* sent (logged, counted in
``stats["payload_errors"]``). Calls are sent as raw OCPP-J frames on the connection, their answers matched by
message id (:meth:`_Station.send_call`), not through the ``ocpp`` package's dataclass serializer, which spells some
2.1 keys wrongly (``limit_L2`` -> ``limitL2``, ``LimitAtSoC.soc``). Responses of the charger are validated against
the schema too. Our responses to the charger's requests use the package's
``call_result`` dataclasses (simple keys only), which the package validates before sending.

Threads
-------
The central system lives on one asyncio event loop. Backend calls that may block (a store write, the controller's
event checks) run in worker threads (:func:`asyncio.to_thread`), one at a time per charger in the order the
charger sent them; a charger's requests are answered before its event reaches the backend, so a slow
re-optimisation never delays an OCPP response. The backend announces publications from any thread
(:meth:`CsmsBackend.subscribe`); the central system hops onto its loop with ``call_soon_threadsafe``.

Design choices (where the brief left room, and why)
---------------------------------------------------
- Same port as the HTTP API: a Starlette websocket route with a four-method adapter (:class:`StarletteConnection`)
  gives the ``ocpp`` package the ``recv()`` / ``send()`` it expects; the 401 is a real HTTP answer at the handshake
  (ASGI websocket denial response, which uvicorn supports).
- Boot and status data stay here (:attr:`CentralSystem.records`); the backend only sees what the controller needs.
- The backend is told *events* (plug-in, update, end) and asked for rendered *payloads*, so the HTTP firmware API and
  OCPP serve identical profiles; the central system only binds a TxProfile to its transaction.
- What a controller fixes at plug-in (power limits, V2G consent, battery) is learnt from ISO 15118 needs only after
  the transaction started: the session is then replaced (removed at once, successor from now) rather than patched,
  since :class:`gridcharge.online.Controller` can change only departure and energy of a running session.
- Pushes are diffed per purpose against what the charger accepted, so a publication that does not change a
  charger's plan sends it nothing; a new period re-sends running TxProfiles (``validTo`` moves on).
- The backend that drives the schedule service lives in :mod:`gridcharge.service.ocpp_backend` (the service may
  import ``ocpp``, not the reverse).

Known limits: one EVSE per OCPP identity (the instance's charger id is the charging station's identity; a
multi-EVSE station would need one instance charger per EVSE and an id mapping); departures beyond the site's
horizon are planned to the horizon's end (logged); ``Authorize`` accepts every id token (authorisation of drivers
is not this module's business).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import math
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable

from ocpp.exceptions import FormatViolationError, OCPPError, ProtocolError
from ocpp.messages import Call, CallError, MessageType, unpack
from ocpp.routing import after, on

from ..online import feed
from .profiles import PayloadError, validate_payload

log = logging.getLogger("gridcharge.ocpp")

#: websocket subprotocol → OCPP version, in our order of preference
SUBPROTOCOLS = {"ocpp2.1": "2.1", "ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}
#: 2.1 transfer modes that allow discharge (bidirectional power transfer)
BIDIRECTIONAL_MODES = frozenset({"AC_BPT", "AC_BPT_DER", "DC_BPT", "DC_ACDP_BPT"})
_MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")
_PUSH_ORDER = {"ChargePointMaxProfile": 0, "ChargingStationMaxProfile": 0, "TxDefaultProfile": 1, "TxProfile": 2}


class RefusedEvent(Exception):
    """A backend refused an event (the message names the field, the value and what was expected)."""


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

    Event methods raise :class:`RefusedEvent` (or :class:`gridcharge.errors.InstanceError`) when the controller
    refuses the event; the state is then unchanged.
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
# wire helpers


def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, whole seconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text) -> datetime | None:
    """An OCPP date-time → tz-aware datetime (None if absent or unreadable)."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def profile_of(payload: dict) -> dict:
    """The charging profile inside a SetChargingProfile request (1.6 ``csChargingProfiles``, 2.x
    ``chargingProfile``)."""
    return payload["csChargingProfiles"] if "csChargingProfiles" in payload else payload["chargingProfile"]


def purpose_of(payload: dict) -> str:
    return profile_of(payload)["chargingProfilePurpose"]


def schedule_of(payload: dict) -> dict:
    schedule = profile_of(payload)["chargingSchedule"]
    return schedule[0] if isinstance(schedule, list) else schedule


def limit_at(payload: dict, moment: datetime) -> float | None:
    """The ``limit`` of a SetChargingProfile payload's period that holds at ``moment`` (None outside it)."""
    schedule = schedule_of(payload)
    start = parse_time(schedule.get("startSchedule"))
    if start is None:
        return None
    offset = (moment - start).total_seconds()
    if offset < 0 or ("duration" in schedule and offset >= schedule["duration"]):
        return None
    current = None
    for period in schedule["chargingSchedulePeriod"]:
        if period["startPeriod"] <= offset:
            current = period
    return None if current is None else float(current.get("limit", 0.0))


def energy_registers(meter_values, version: str) -> tuple[float | None, float | None]:
    """The last total (phase-less) ``Energy.Active.Import.Register`` and ``...Export.Register`` readings [Wh] of an
    OCPP ``meterValue`` list (1.6 ``sampledValue.value`` is a string, ``unit`` Wh or kWh; 2.x a number with
    ``unitOfMeasure`` {unit, multiplier}). A sampled value without ``measurand`` is an import register reading."""
    imported = exported = None
    for meter in meter_values or ():
        for sample in meter.get("sampledValue", ()):
            if sample.get("phase"):
                continue
            measurand = sample.get("measurand", "Energy.Active.Import.Register")
            if measurand not in ("Energy.Active.Import.Register", "Energy.Active.Export.Register"):
                continue
            try:
                value = float(sample["value"])
            except (KeyError, TypeError, ValueError):
                continue
            if version == "1.6":
                unit, multiplier = sample.get("unit", "Wh"), 0
            else:
                uom = sample.get("unitOfMeasure") or {}
                unit, multiplier = uom.get("unit", "Wh"), int(uom.get("multiplier", 0))
            if unit not in ("Wh", "kWh"):
                continue
            wh = value * (1000.0 if unit == "kWh" else 1.0) * 10.0 ** multiplier
            if not math.isfinite(wh):
                continue
            if measurand.endswith("Import.Register"):
                imported = wh
            else:
                exported = wh
    return imported, exported


# ----------------------------------------------------------------------------------------------------------------
# sessions and transactions


@dataclass
class Transaction:
    """An OCPP transaction on a charger and the controller session that stands for it.

    transaction_id : str — as on the wire (1.6: the integer we assigned, as text)
    evse_id : int — EVSE (2.x) / connector (1.6)
    session_id : str or None — the controller session (None: the plug-in was refused; the charger keeps its default)
    session : dict — the session fields last sent (plug-in fields and the current departure / energy)
    adopted : bool — the session was announced by someone else (operator API); we do not end it ourselves
    import_start_wh, export_start_wh : float — energy registers at the start [Wh]
    delivered_kwh : float — battery energy since the start of the transaction, from the meter [kWh]
    offset_kwh : float — battery energy delivered before the current session id (after a replacement) [kWh]
    resumed : bool — picked up after a restart of the central system: the energy register at the start is unknown,
        so meter readings are not passed on (the controller keeps crediting its set-points)
    """

    transaction_id: str
    evse_id: int
    session_id: str | None = None
    session: dict = field(default_factory=dict)
    adopted: bool = False
    generation: int = 0
    import_start_wh: float | None = None
    export_start_wh: float | None = None
    delivered_kwh: float = 0.0
    offset_kwh: float = 0.0
    last_measure_s: float = -math.inf
    ended: bool = False
    resumed: bool = False


_PLUG_TIME_FIELDS = ("max_charge_kw", "max_discharge_kw", "battery_kwh", "initial_kwh", "min_kwh")


def needs_to_session(needs: dict, version: str, info: ChargerInfo, now: datetime) -> tuple[dict, list[str]]:
    """ISO 15118 charging needs (``NotifyEVChargingNeeds.chargingNeeds``, wire form) → session fields.

    Returns (fields, notes): ``departure`` (ISO, at most the horizon's end), ``energy_kwh`` [kWh] still wanted from
    now, and the plug-time fields ``max_charge_kw``, ``max_discharge_kw`` and (V2G with a cycling window)
    ``battery_kwh``, ``initial_kwh``, ``min_kwh`` [kWh] relative to now. Fields the needs do not give are absent.
    """
    out: dict = {}
    notes: list[str] = []
    departure = parse_time(needs.get("departureTime"))
    if departure is not None:
        if departure <= now:
            notes.append(f"chargingNeeds.departureTime {needs['departureTime']}: not after now; ignored")
        else:
            if departure > info.horizon_end:
                notes.append(f"chargingNeeds.departureTime {needs['departureTime']}: after the site's horizon; "
                             f"planned to {utc_text(info.horizon_end)}")
                departure = info.horizon_end
            out["departure"] = departure.isoformat()
    ac, dc = needs.get("acChargingParameters") or {}, needs.get("dcChargingParameters") or {}
    v2x = needs.get("v2xChargingParameters") or {}
    energy_wh = v2x.get("evTargetEnergyRequest", dc.get("energyAmount", ac.get("energyAmount")))
    if energy_wh is not None:
        out["energy_kwh"] = max(float(energy_wh), 0.0) / 1000.0
    power_w = v2x.get("maxChargePower", dc.get("evMaxPower"))
    if power_w is not None and float(power_w) / 1000.0 > 0:  # (in kW: a power that underflows is none)
        out["max_charge_kw"] = float(power_w) / 1000.0
    discharge_kw = float(v2x.get("maxDischargePower", 0) or 0) / 1000.0
    bidirectional = (version == "2.1" and needs.get("requestedEnergyTransfer") in BIDIRECTIONAL_MODES
                     and discharge_kw > 0 and info.max_discharge_kw > 0)
    if bidirectional:
        out["max_discharge_kw"] = min(discharge_kw, info.max_discharge_kw)
        low = v2x.get("evMinV2XEnergyRequest", v2x.get("evMinEnergyRequest"))
        high = v2x.get("evMaxEnergyRequest", v2x.get("evMaxV2XEnergyRequest"))
        if low is not None and high is not None:
            room_down = max(-float(low), 0.0) / 1000.0  # energy the car may give from now [kWh]
            room_up = max(float(high) / 1000.0, out.get("energy_kwh", 0.0))  # energy it may take from now [kWh]
            if room_down + room_up > 0:
                out.update(battery_kwh=room_down + room_up, initial_kwh=room_down, min_kwh=0.0)
    elif version == "2.1" and needs.get("requestedEnergyTransfer") in BIDIRECTIONAL_MODES:
        notes.append("bidirectional transfer requested but no discharge power (EV or charger): charge only")
    return out, notes


# ----------------------------------------------------------------------------------------------------------------
# the charging-station side of a connection (the ocpp package's ChargePoint, one class per version)


class _Station:
    """Handlers shared by all versions; mixed into the ``ocpp`` package's ChargePoint of the connection's version.

    The package calls handlers with snake_case keyword arguments; handlers here read the wire payload
    (``self.wire``, camelCase, as the charger sent it and the package validated it) instead, so that no key is
    lost in translation.
    """

    link: _Link
    wire: dict  # set by route_message before any handler runs

    async def route_message(self, raw_msg):
        """One frame of the charger, answered as OCPP-J asks (this overrides the package's public
        ``ChargePoint.route_message``, which leaves a malformed frame and, in 2.1, an action without a handler
        unanswered): a frame that is not a valid RPC message gets a CALLERROR (:func:`frame_error`; id ``"-1"``
        when its id cannot be read), a CALL of an action without a handler ``NotImplemented`` (an action of the
        version) or ``NotSupported`` (any other); one log line each. Answers to our calls go to
        :meth:`send_call`. A connection whose credentials were revoked (its site replaced) is closed instead."""
        link = self.link
        if not link.authorised():
            await link.revoke()
            return
        try:
            msg = unpack(raw_msg)
        except OCPPError as error:
            unique_id, code, text = frame_error(raw_msg, error, link.version)
            log.warning("%s: malformed frame answered %s: %s", link.charger_id, code, text)
            await link.connection.send(CallError(unique_id, code, text, {}).to_json())
            return
        if msg.message_type_id != MessageType.Call:
            waiter = link.waiting.get(msg.unique_id)
            if waiter is None or waiter.done():
                log.warning("%s: an answer to no call of ours (id %r) ignored", link.charger_id, msg.unique_id)
            else:
                waiter.set_result(msg)
            return
        if "_on_action" not in self.route_map.get(msg.action, {}):
            code = "NotImplemented" if msg.action in _ACTIONS[link.version] else "NotSupported"
            log.warning("%s: %s answered %s", link.charger_id, msg.action, code)
            text = (f"no handler for {msg.action}" if code == "NotImplemented"
                    else f"{msg.action} is not an action of OCPP {link.version}")
            await link.connection.send(CallError(msg.unique_id, code, text, {}).to_json())
            return
        self.wire = msg.payload
        await super().route_message(raw_msg)
        if msg.action != "BootNotification":
            link.ready.set()  # a charger that talks without booting (e.g. after our restart) is accepted

    async def send_call(self, action: str, payload: dict) -> dict:
        """Send a CALL with a wire ``payload`` (validated against this version's schema first) and return the
        response payload (validated too). Raises PayloadError (not sent / bad answer), OCPPError (CALLERROR),
        asyncio.TimeoutError."""
        link = self.link
        version = link.version
        # in a worker thread: a 96-period 2.1 TxProfile takes ~10-25 ms of jsonschema; the loop keeps answering
        # other chargers meanwhile (a new period re-sends every running TxProfile at once)
        await asyncio.to_thread(validate_payload, version, action, payload)
        call = Call(unique_id=str(uuid.uuid4()), action=action, payload=payload)
        async with link.call_lock:  # OCPP-J: one CALL of ours outstanding at a time
            waiter = asyncio.get_running_loop().create_future()
            link.waiting[call.unique_id] = waiter
            try:
                await link.connection.send(call.to_json())
                response = await asyncio.wait_for(waiter, link.csms.response_timeout_s)
            finally:
                link.waiting.pop(call.unique_id, None)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        validate_payload(version, action + "Response", response.payload)
        return response.payload

    # common -------------------------------------------------------------------------------------------------
    @on("Heartbeat")
    def _heartbeat(self, **_):
        return self._call_result.Heartbeat(current_time=utc_text(datetime.now(timezone.utc)))

    @after("BootNotification")
    def _booted(self, **_):
        self.link.csms.accepted.add(self.link.charger_id)
        self.link.accepted.clear()  # a (re)boot: do not assume the charger kept what it held; push all again
        self.link.dirty.set()
        self.link.ready.set()


class _Station2x(_Station):
    @on("BootNotification")
    def _boot(self, **_):
        self.link.record(boot=self.wire.get("chargingStation", {}), boot_reason=self.wire.get("reason"))
        return self._call_result.BootNotification(current_time=utc_text(datetime.now(timezone.utc)),
                                                  interval=self.link.csms.heartbeat_s, status="Accepted")

    @on("StatusNotification")
    def _status(self, **_):
        self.link.record(status={self.wire.get("evseId"): self.wire.get("connectorStatus")})
        return self._call_result.StatusNotification()

    @on("Authorize")
    def _authorize(self, **_):
        return self._call_result.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def _transaction_event(self, **_):
        payload = self.wire
        self.link.queue(("transaction_event", payload))
        if payload.get("idToken"):
            return self._call_result.TransactionEvent(id_token_info={"status": "Accepted"})
        return self._call_result.TransactionEvent()

    @on("MeterValues")
    def _meter_values(self, **_):
        return self._call_result.MeterValues()

    @on("DataTransfer")
    def _data_transfer(self, **_):
        return self._call_result.DataTransfer(status="UnknownVendorId")

    @on("NotifyEVChargingNeeds")
    def _needs(self, **_):
        self.link.queue(("needs", self.wire))
        return self._call_result.NotifyEVChargingNeeds(status="Accepted")

    @on("NotifyEVChargingSchedule")
    def _ev_schedule(self, **_):
        return self._call_result.NotifyEVChargingSchedule(status="Accepted")

    @on("NotifyEvent")
    def _notify_event(self, **_):
        return self._call_result.NotifyEvent()

    @on("NotifyReport")
    def _notify_report(self, **_):
        return self._call_result.NotifyReport()

    @on("SecurityEventNotification")
    def _security_event(self, **_):
        return self._call_result.SecurityEventNotification()

    @on("FirmwareStatusNotification")
    def _firmware_status(self, **_):
        return self._call_result.FirmwareStatusNotification()


class _Station16(_Station):
    @on("BootNotification")
    def _boot(self, **_):
        self.link.record(boot={k: v for k, v in self.wire.items() if k.startswith("chargePoint")})
        return self._call_result.BootNotification(current_time=utc_text(datetime.now(timezone.utc)),
                                                  interval=self.link.csms.heartbeat_s, status="Accepted")

    @on("StatusNotification")
    def _status(self, **_):
        self.link.record(status={self.wire.get("connectorId"): self.wire.get("status")})
        return self._call_result.StatusNotification()

    @on("Authorize")
    def _authorize(self, **_):
        return self._call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def _start(self, **_):
        transaction_id = self.link.csms.new_transaction_id()
        self.link.queue(("start16", {**self.wire, "transactionId": transaction_id}))
        return self._call_result.StartTransaction(transaction_id=transaction_id, id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def _meter_values(self, **_):
        if self.wire.get("transactionId") is not None:
            self.link.queue(("meter16", self.wire))
        return self._call_result.MeterValues()

    @on("StopTransaction")
    def _stop(self, **_):
        self.link.queue(("stop16", self.wire))
        return self._call_result.StopTransaction()

    @on("DataTransfer")
    def _data_transfer(self, **_):
        return self._call_result.DataTransfer(status="UnknownVendorId")

    @on("FirmwareStatusNotification")
    def _firmware_status(self, **_):
        return self._call_result.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    def _diagnostics_status(self, **_):
        return self._call_result.DiagnosticsStatusNotification()


def _actions(version: str) -> frozenset[str]:
    if version == "1.6":
        from ocpp.v16.enums import Action
    elif version == "2.0.1":
        from ocpp.v201.enums import Action
    else:
        from ocpp.v21.enums import Action
    return frozenset(a.value for a in Action)


#: the actions of each OCPP version (an unhandled one is answered NotImplemented, any other NotSupported)
_ACTIONS = {version: _actions(version) for version in SUBPROTOCOLS.values()}


def frame_error(raw_msg, error: OCPPError, version: str) -> tuple[str, str, str]:
    """The CALLERROR that answers a frame ``ocpp.messages.unpack`` refused: (message id, error code, description).

    OCPP-J 2.x: a frame that is not a valid RPC message (not JSON, not an array of the right length) gets
    ``RpcFrameworkError``, an unknown MessageTypeId ``MessageTypeNotSupported``; 1.6, which lacks those codes:
    ``FormatViolation`` (not JSON) and ``ProtocolError`` (any other). The message id is ``"-1"`` when it cannot be
    read (OCPP 2.0.1 part 4, 4.2.3)."""
    try:
        frame = json.loads(raw_msg)
    except (TypeError, ValueError):
        frame = None
    unique_id = frame[1] if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) else "-1"
    if frame is None:
        code, text = ("FormatViolation" if version == "1.6" else "RpcFrameworkError"), "the frame is not JSON"
    elif not isinstance(frame, list) or isinstance(error, (FormatViolationError, ProtocolError)):
        code, text = ("ProtocolError" if version == "1.6" else "RpcFrameworkError"), \
            "the frame is not an OCPP-J array [MessageTypeId, MessageId, ...] of the right length"
    else:
        code = "ProtocolError" if version == "1.6" else "MessageTypeNotSupported"
        text = f"MessageTypeId {frame[0]!r} is not one of 2 (CALL), 3 (CALLRESULT), 4 (CALLERROR)"
    return unique_id, code, text


class _OneLineLog(logging.LoggerAdapter):
    """The ``ocpp`` package's logger with a charger's protocol mistake (an OCPPError: a payload against the schema,
    say, which the package answers with a CALLERROR) logged as one line, not a traceback per frame. Any other
    exception (a bug of a handler) keeps its traceback."""

    def exception(self, msg, *args, exc_info=True, **kwargs):
        error = sys.exc_info()[1]
        if isinstance(error, OCPPError):
            self.warning("%s: " + str(msg) + " — %s: %s", self.extra["charger_id"], *args, type(error).__name__,
                         error, **kwargs)
        else:
            self.error("%s: " + str(msg), self.extra["charger_id"], *args, exc_info=exc_info, **kwargs)


def _station_class(version: str) -> type:
    if version == "1.6":
        from ocpp.v16 import ChargePoint
        mixin = _Station16
    elif version == "2.0.1":
        from ocpp.v201 import ChargePoint
        mixin = _Station2x
    else:
        from ocpp.v21 import ChargePoint
        mixin = _Station2x
    return type(f"Station{version.replace('.', '')}", (mixin, ChargePoint), {})


_STATION_CLASSES: dict[str, type] = {}


# ----------------------------------------------------------------------------------------------------------------
# one connection


class _Link:
    """One open connection: the station object, its event queue, what it last accepted, the push task."""

    def __init__(self, csms: CentralSystem, charger_id: str, version: str, connection,
                 password: str | None = None):
        self.csms, self.charger_id, self.version = csms, charger_id, version
        self.connection = connection
        self.password = password  # of the handshake, checked again before each frame (None: not checked)
        cls = _STATION_CLASSES.get(version) or _STATION_CLASSES.setdefault(version, _station_class(version))
        self.station = cls(charger_id, connection, response_timeout=csms.response_timeout_s,
                           logger=_OneLineLog(logging.getLogger("ocpp"), {"charger_id": charger_id}))
        self.station.link = self
        self.call_lock = asyncio.Lock()
        self.waiting: dict[str, asyncio.Future] = {}  # our CALLs' ids → their answers
        self.revoked = False
        self.ready = asyncio.Event()
        self.dirty = asyncio.Event()
        self.dirty.set()
        self.events: asyncio.Queue = asyncio.Queue()
        self.accepted: dict[str, dict] = {}  # purpose → the payload the charger accepted (or last answered)
        self.closed = False
        self.connected_at = time.perf_counter()

    def record(self, **facts) -> None:
        record = self.csms.records.setdefault(self.charger_id, {})
        for key, value in facts.items():
            if isinstance(value, dict) and isinstance(record.get(key), dict) and key == "status":
                record[key] = {**record[key], **value}
            else:
                record[key] = value

    def queue(self, event) -> None:
        self.events.put_nowait(event)

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
        self.csms._problem(f"{self.charger_id}: credentials revoked (site replaced): connection closed, its "
                           f"messages refused")
        with contextlib.suppress(Exception):
            await self.connection.close(code=1008, reason="credentials revoked: log in with the new token")

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
            self.events.put_nowait(None)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5)

    async def _consume(self) -> None:
        while not self.closed:
            item = await self.events.get()
            if item is None:
                return
            kind, payload = item
            if not self.authorised():  # queued before the site was replaced: not for the new site
                await self.revoke()
                return
            try:
                await self.csms._event(self, kind, payload)
            except Exception:
                log.exception("%s: handling %s failed", self.charger_id, kind)

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
                await self.csms._sync(self)
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
    transactions : dict charger id → {transaction id: Transaction}
    problems : list of str — refused events and dropped data, newest last (at most 1,000 kept)
    stats : dict — counters: ``connections``, ``pushed`` (per purpose), ``rejected``, ``payload_errors``,
        ``confirmed``, ``composite_mismatch``, ``refused_events``
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
        self.links: dict[str, _Link] = {}
        self.records: dict[str, dict] = {}
        self.accepted: set[str] = set()
        self.transactions: dict[str, dict[str, Transaction]] = {}
        self.problems: list[str] = []
        self.stats: dict[str, Any] = {"connections": 0, "pushed": {}, "rejected": 0, "payload_errors": 0,
                                      "confirmed": 0, "composite_mismatch": 0, "refused_events": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tx_ids = itertools.count(secrets.randbelow(1 << 30) + 1)
        self._pending_needs: dict[tuple[str, int], dict] = {}
        self._denials = 0
        backend.subscribe(self._published)
        _quiet_denials(self)

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

    def new_transaction_id(self) -> int:
        """A fresh OCPP 1.6 transaction id (int32)."""
        return next(self._tx_ids) % ((1 << 31) - 1) or 1

    def _problem(self, text: str) -> None:
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
        link = _Link(self, charger_id, version, connection, password)
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
            self._denials += 1
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

    # events ----------------------------------------------------------------------------------------------------
    async def _event(self, link: _Link, kind: str, payload: dict) -> None:
        cid = link.charger_id
        if kind == "transaction_event":
            info = payload.get("transactionInfo", {})
            tx_id = str(info.get("transactionId"))
            evse = int((payload.get("evse") or {}).get("id", 1))
            event_type = payload.get("eventType")
            tx = self.transactions.get(cid, {}).get(tx_id)
            if tx is None:  # Started, or a transaction we have not seen (our restart): plan it / pick it up
                tx = await (self._resume(link, tx_id, evse) if event_type == "Ended" else self._start(link, tx_id, evse))
            if tx is None:
                return
            await self._meter(link, tx, payload.get("meterValue"), final=event_type == "Ended")
            if event_type == "Ended":
                await self._end(link, tx)
        elif kind == "needs":
            evse = int(payload.get("evseId", 1))
            tx = self._open_transaction(cid, evse)
            if tx is None:  # needs before the transaction: apply them when it starts
                self._pending_needs[(cid, evse)] = payload
                return
            await self._needs(link, tx, payload.get("chargingNeeds", {}))
        elif kind == "start16":
            tx = await self._start(link, str(payload["transactionId"]), int(payload.get("connectorId", 1)))
            if tx is not None and tx.import_start_wh is None:
                tx.import_start_wh = float(payload.get("meterStart", 0))
        elif kind == "meter16":
            tx_id = str(payload["transactionId"])
            tx = self.transactions.get(cid, {}).get(tx_id) \
                or await self._start(link, tx_id, int(payload.get("connectorId", 1)))
            if tx is not None:
                await self._meter(link, tx, payload.get("meterValue"))
        elif kind == "stop16":
            tx_id = str(payload.get("transactionId"))
            tx = self.transactions.get(cid, {}).get(tx_id) or await self._resume(link, tx_id, 1)
            if tx is not None:
                stop = payload.get("meterStop")
                readings = [{"sampledValue": [{"value": str(stop), "measurand": "Energy.Active.Import.Register",
                                               "unit": "Wh"}]}] if stop is not None else []
                await self._meter(link, tx, readings + list(payload.get("transactionData") or []), final=True)
                await self._end(link, tx)

    def _open_transaction(self, cid: str, evse: int) -> Transaction | None:
        open_ = [t for t in self.transactions.get(cid, {}).values() if not t.ended and t.evse_id == evse]
        return open_[-1] if open_ else None

    async def _call_backend(self, what: str, fn, *args) -> bool:
        try:
            await asyncio.to_thread(fn, *args)
            return True
        except Exception as exc:  # noqa: BLE001 - InstanceError, RefusedEvent, store errors: say so, go on
            self.stats["refused_events"] += 1
            self._problem(f"{what}: {exc}")
            return False

    async def _start(self, link: _Link, tx_id: str, evse: int) -> Transaction | None:
        cid = link.charger_id
        backend = self.backend
        info = backend.charger(cid)
        if info is None:
            self._problem(f"{cid}: transaction {tx_id}: charger not in the site")
            return None
        for other in [t for t in self.transactions.get(cid, {}).values() if not t.ended]:
            self._problem(f"{cid}: transaction {other.transaction_id} never ended; ending it for {tx_id}")
            await self._end(link, other)
        tx = Transaction(transaction_id=tx_id, evse_id=evse)
        self.transactions.setdefault(cid, {})[tx_id] = tx
        adopted = await asyncio.to_thread(backend.active_session, cid)
        now = backend.now()
        departure = min(now + self.default_stay, info.horizon_end)
        own = f"{cid}/{tx_id}"
        if adopted is not None and (adopted == own or adopted.startswith(own + "/")):
            # our own session from before a restart of the central system (the charger kept its transaction)
            suffix = adopted[len(own) + 1:]
            tx.generation = int(suffix) if suffix.isdigit() else 0
            tx.session_id = adopted
            tx.session = {"id": adopted, "charger": cid, "departure": departure.isoformat(),
                          "energy_kwh": self.default_energy_kwh}
            tx.resumed = True  # its start register is unknown to us: meter readings are not passed on
        elif adopted is not None:
            tx.session_id, tx.adopted = adopted, True
        else:
            session = {"id": self._session_id(cid, tx), "charger": cid, "arrival": now.isoformat(),
                       "departure": departure.isoformat(), "energy_kwh": self.default_energy_kwh}
            if await self._call_backend(f"{cid}: transaction {tx_id}: plug-in refused", backend.plug_in, cid,
                                        session):
                tx.session_id, tx.session = session["id"], session
        pending = self._pending_needs.pop((cid, evse), None)
        if pending is not None:
            await self._needs(link, tx, pending.get("chargingNeeds", {}))
        link.dirty.set()
        return tx

    async def _resume(self, link: _Link, tx_id: str, evse: int) -> Transaction | None:
        """A transaction this process has not seen but the backend has our session of (a restart of the central
        system): pick it up (so that it can end); None when there is no such session."""
        cid = link.charger_id
        own = f"{cid}/{tx_id}"
        active = await asyncio.to_thread(self.backend.active_session, cid)
        if active is None or not (active == own or active.startswith(own + "/")):
            return None
        return await self._start(link, tx_id, evse)

    @staticmethod
    def _session_id(cid: str, tx: Transaction) -> str:
        return f"{cid}/{tx.transaction_id}" + (f"/{tx.generation}" if tx.generation else "")

    async def _needs(self, link: _Link, tx: Transaction, needs: dict) -> None:
        cid = link.charger_id
        backend = self.backend
        info = backend.charger(cid)
        if info is None or tx.session_id is None:
            return
        now = backend.now()
        fields, notes = needs_to_session(needs, link.version, info, now)
        for note in notes:
            self._problem(f"{cid}: transaction {tx.transaction_id}: {note}")
        plug_time = {k: fields[k] for k in _PLUG_TIME_FIELDS if k in fields}
        current = {k: tx.session[k] for k in _PLUG_TIME_FIELDS if k in tx.session}
        if tx.adopted or plug_time == current:
            changes = {}
            if "departure" in fields:
                changes["departure"] = fields["departure"]
            if "energy_kwh" in fields:
                changes["energy_kwh"] = tx.delivered_kwh - tx.offset_kwh + fields["energy_kwh"]
            if changes and await self._call_backend(f"{cid}: transaction {tx.transaction_id}: needs refused",
                                                    backend.update, cid, feed.Update(tx.session_id, **changes)):
                tx.session = {**tx.session, **changes}
            return
        # what the controller fixes at plug-in changed: end the session now, start its successor now
        old_id, old_session = tx.session_id, dict(tx.session)
        if not await self._call_backend(f"{cid}: transaction {tx.transaction_id}: end for new needs refused",
                                        backend.end, cid, old_id, None):
            return
        tx.generation += 1
        session = {"id": self._session_id(cid, tx), "charger": cid, "arrival": now.isoformat(),
                   "departure": fields.get("departure", old_session.get("departure")),
                   "energy_kwh": fields.get("energy_kwh",
                                            max(old_session.get("energy_kwh", 0.0) - (tx.delivered_kwh - tx.offset_kwh),
                                                0.0)),
                   **plug_time}
        tx.offset_kwh = tx.delivered_kwh
        if await self._call_backend(f"{cid}: transaction {tx.transaction_id}: plug-in with needs refused",
                                    backend.plug_in, cid, session):
            tx.session_id, tx.session = session["id"], session
        else:  # fall back to the plain session so that the car still gets planned
            fallback = {k: v for k, v in session.items() if k not in _PLUG_TIME_FIELDS}
            fallback["id"] = session["id"] + "-plain"
            if await self._call_backend(f"{cid}: transaction {tx.transaction_id}: plain plug-in refused",
                                        backend.plug_in, cid, fallback):
                tx.session_id, tx.session = fallback["id"], fallback
            else:
                tx.session_id = None

    async def _meter(self, link: _Link, tx: Transaction, meter_values, final: bool = False) -> None:
        imported, exported = energy_registers(meter_values, link.version)
        if imported is None and exported is None:
            return
        if tx.import_start_wh is None and imported is not None:
            tx.import_start_wh = imported
        if tx.export_start_wh is None and exported is not None:
            tx.export_start_wh = exported
        info = self.backend.charger(link.charger_id)
        efficiency = info.efficiency if info is not None else 1.0
        import_kwh = max((imported or 0.0) - (tx.import_start_wh or 0.0), 0.0) / 1000.0 if imported is not None \
            else 0.0
        export_kwh = max((exported or 0.0) - (tx.export_start_wh or 0.0), 0.0) / 1000.0 if exported is not None \
            else 0.0
        tx.delivered_kwh = import_kwh * efficiency - export_kwh / efficiency
        if final or tx.session_id is None or tx.adopted or tx.resumed:
            return
        clock = time.monotonic()
        if clock - tx.last_measure_s < self.meter_interval_s:
            return
        tx.last_measure_s = clock
        value = tx.delivered_kwh - tx.offset_kwh
        await self._call_backend(f"{link.charger_id}: transaction {tx.transaction_id}: meter reading refused",
                                 self.backend.update, link.charger_id,
                                 feed.Update(tx.session_id, energy_delivered_kwh=value))

    async def _end(self, link: _Link, tx: Transaction) -> None:
        tx.ended = True
        link.accepted.pop("TxProfile", None)  # the charger drops a TxProfile with its transaction
        if tx.session_id is not None and not tx.adopted:
            # removed at once (not kept to the end of the current period): the car is physically gone, its
            # capacity is free now, and a car plugging in next on this charger in the same period must not find
            # the old one's set-point added to its own
            await self._call_backend(f"{link.charger_id}: transaction {tx.transaction_id}: end refused",
                                     self.backend.end, link.charger_id, tx.session_id, None)
        del_after = [k for k, t in self.transactions.get(link.charger_id, {}).items() if t.ended]
        for key in del_after[:-8]:  # keep a few ended ones for inspection
            del self.transactions[link.charger_id][key]

    # pushing profiles ------------------------------------------------------------------------------------------
    def wanted(self, link: _Link, payloads: list[dict]) -> list[dict]:
        """The SetChargingProfile payloads charger ``link`` should hold now, in push order (station maximum,
        default, TxProfile for its running transaction), from the backend's ``payloads``."""
        tx = self._open_transaction_any(link.charger_id)
        out = []
        for payload in payloads:
            purpose = purpose_of(payload)
            if purpose == "TxProfile":
                if tx is None or tx.session_id is None:
                    continue
                payload = _with_transaction(payload, tx, link.version)
            out.append(payload)
        return sorted(out, key=lambda p: _PUSH_ORDER[purpose_of(p)])

    def _open_transaction_any(self, cid: str) -> Transaction | None:
        open_ = [t for t in self.transactions.get(cid, {}).values() if not t.ended]
        return open_[-1] if open_ else None

    async def _sync(self, link: _Link) -> None:
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
                self._problem(f"{link.charger_id}: {purpose} not sent or badly answered: {exc}")
                link.accepted[purpose] = payload  # do not retry the same payload
                continue
            link.accepted[purpose] = payload
            pushed = self.stats["pushed"]
            pushed[purpose] = pushed.get(purpose, 0) + 1
            if answer.get("status") != "Accepted":
                self.stats["rejected"] += 1
                self._problem(f"{link.charger_id}: {purpose} answered {answer.get('status')!r}")
                continue
            if purpose == "TxProfile" and self.confirm:
                await self._confirm(link, payload, wanted)

    async def _confirm(self, link: _Link, tx_payload: dict, wanted: list[dict]) -> None:
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
            self._problem(f"{link.charger_id}: GetCompositeSchedule: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - CALLERROR: the charger does not support it; a closed link
            if link.closed or type(exc).__name__ in ("WebSocketDisconnect", "ConnectionClosed"):
                return
            self._problem(f"{link.charger_id}: GetCompositeSchedule failed: {type(exc).__name__}: {exc}")
            return
        composite = answer.get("chargingSchedule") if link.version == "1.6" else answer.get("schedule")
        if answer.get("status") != "Accepted" or not composite or not composite.get("chargingSchedulePeriod"):
            self.stats["composite_mismatch"] += 1
            self._problem(f"{link.charger_id}: GetCompositeSchedule answered {answer.get('status')!r} without a "
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
            self._problem(f"{link.charger_id}: composite limit now {got} {composite.get('chargingRateUnit')}, "
                          f"expected {expected} {unit}")


def _with_transaction(payload: dict, tx: Transaction, version: str) -> dict:
    """A TxProfile payload bound to ``tx``: its transaction id and EVSE (connector in 1.6)."""
    if version == "1.6":
        profile = dict(payload["csChargingProfiles"])
        profile["transactionId"] = int(tx.transaction_id)
        return {**payload, "connectorId": tx.evse_id, "csChargingProfiles": profile}
    profile = dict(payload["chargingProfile"])
    profile["transactionId"] = str(tx.transaction_id)
    return {**payload, "evseId": tx.evse_id, "chargingProfile": profile}


_UVICORN_DENIAL_NOISE = "ASGI callable returned without completing handshake."


class _DenialNoiseFilter(logging.Filter):
    """uvicorn (0.54, websockets-sansio) logs an error after every websocket denial response (it does not count
    the 401 as a completed handshake). Drop exactly one such record per denial we sent; any other stays."""

    def __init__(self, csms: CentralSystem):
        super().__init__()
        self.csms = csms

    def filter(self, record: logging.LogRecord) -> bool:
        if self.csms._denials > 0 and record.getMessage() == _UVICORN_DENIAL_NOISE:
            self.csms._denials -= 1
            return False
        return True


def _quiet_denials(csms: CentralSystem) -> None:
    logging.getLogger("uvicorn.error").addFilter(_DenialNoiseFilter(csms))


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
    "RefusedEvent",
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
