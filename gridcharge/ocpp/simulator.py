"""Simulated charging stations: real ``ocpp`` package ChargePoints (1.6, 2.0.1, 2.1) on a ``websockets`` client
connection, for tests and benchmarks of the central system (:mod:`gridcharge.ocpp.csms`).

A :class:`SimulatedCharger` connects with a subprotocol and HTTP Basic credentials, boots, starts and ends
transactions with energy meter readings, reports ISO 15118 charging needs (2.x; V2G parameters in 2.1), accepts
``SetChargingProfile`` (keeping the wire payload as received, with the time it arrived) and answers
``GetCompositeSchedule`` from what it holds: at each instant the TxProfile (else the TxDefaultProfile) limited by
the station maximum — the stacking rule of OCPP for these three purposes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from datetime import datetime, timezone

from ocpp.messages import MessageType, unpack
from ocpp.routing import on

from .wire import limit_at, parse_time, profile_of, purpose_of, schedule_of, utc_text

_SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}


class _ClientMixin:
    sim: SimulatedCharger
    wire: dict  # set by route_message before any handler runs
    results: object  # the version's ``ocpp.v*.call_result``

    async def route_message(self, raw_msg):
        """Keep the wire payload of a CALL (camelCase, as sent) for the handlers, then route it as the package
        does."""
        try:
            msg = unpack(raw_msg)
        except Exception:  # noqa: BLE001 - the package answers a malformed frame itself
            msg = None
        if msg is not None and msg.message_type_id == MessageType.Call:
            self.wire = msg.payload
        return await super().route_message(raw_msg)

    @on("SetChargingProfile")
    def _set_profile(self, **_):
        self.sim.receive_profile(self.wire)
        return self.results.SetChargingProfile(status=self.sim.answer_profiles)

    @on("ClearChargingProfile")
    def _clear_profile(self, **_):
        return self.results.ClearChargingProfile(status="Accepted")

    @on("GetCompositeSchedule")
    def _composite(self, **_):
        request = self.wire
        evse = request.get("evseId", request.get("connectorId", 1))
        periods, unit = self.sim.composite(int(request["duration"]), request.get("chargingRateUnit"))
        start = utc_text(datetime.now(timezone.utc))
        if not periods:
            return self.results.GetCompositeSchedule(status="Rejected")
        if self.sim.version == "1.6":
            return self.results.GetCompositeSchedule(
                status="Accepted", connector_id=evse, schedule_start=start,
                charging_schedule={"duration": int(request["duration"]), "startSchedule": start,
                                   "chargingRateUnit": unit, "chargingSchedulePeriod": periods})
        return self.results.GetCompositeSchedule(
            status="Accepted", schedule={"evseId": evse, "duration": int(request["duration"]), "scheduleStart": start,
                                         "chargingRateUnit": unit, "chargingSchedulePeriod": periods})


def _client_class(version: str) -> type:
    if version == "1.6":
        from ocpp.v16 import ChargePoint, call_result
    elif version == "2.0.1":
        from ocpp.v201 import ChargePoint, call_result
    else:
        from ocpp.v21 import ChargePoint, call_result
    return type(f"SimulatedStation{version.replace('.', '')}", (_ClientMixin, ChargePoint), {"results": call_result})


_CLASSES: dict[str, type] = {}


class SimulatedCharger:
    """One simulated charging station.

    Parameters
    ----------
    charger_id : str — its OCPP identity (the last part of the URL, the Basic-auth user)
    version : ``"1.6"``, ``"2.0.1"`` or ``"2.1"``
    url : str — the central system's base URL, e.g. ``ws://127.0.0.1:8080/ocpp`` (the id is appended)
    password : str — its token
    evse_id : int — the EVSE (connector in 1.6) its transactions use

    Attributes
    ----------
    received : list of (monotonic time [s], payload) — every SetChargingProfile request as received
    installed : dict purpose → payload — what it holds now (the last one per purpose)
    answer_profiles : str — status to answer SetChargingProfile with (default ``"Accepted"``)
    """

    def __init__(self, charger_id: str, version: str, url: str, password: str, *, evse_id: int = 1,
                 response_timeout: float = 30):
        self.charger_id, self.version, self.password = charger_id, version, password
        self.url = url.rstrip("/") + "/" + charger_id
        self.evse_id = evse_id
        self.response_timeout = response_timeout
        self.received: list[tuple[float, dict]] = []
        self.installed: dict[str, dict] = {}
        self.answer_profiles = "Accepted"
        self.transaction_id: str | int | None = None
        self.websocket = None
        self.station = None
        self._task: asyncio.Task | None = None
        self._seq = 0
        self._changed = asyncio.Event()

    # connection ------------------------------------------------------------------------------------------------
    def headers(self, password: str | None = None) -> dict:
        secret = f"{self.charger_id}:{self.password if password is None else password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(secret).decode()}

    async def connect(self, *, subprotocols: list[str] | None = None, password: str | None = None) -> str:
        """Open the websocket and start answering the central system. Returns the negotiated subprotocol."""
        import websockets

        offered = subprotocols or [_SUBPROTOCOL[self.version]]
        self.websocket = await websockets.connect(self.url, subprotocols=offered,
                                                  additional_headers=self.headers(password), open_timeout=30,
                                                  max_size=None)
        cls = _CLASSES.get(self.version) or _CLASSES.setdefault(self.version, _client_class(self.version))
        self.station = cls(self.charger_id, self.websocket, response_timeout=self.response_timeout)
        self.station.sim = self
        self._task = asyncio.create_task(self._serve())
        return self.websocket.subprotocol

    async def _serve(self):
        with contextlib.suppress(Exception):
            await self.station.start()

    async def close(self) -> None:
        """Close the connection (a clean close)."""
        if self.websocket is not None:
            await self.websocket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def drop(self) -> None:
        """Drop the connection without a closing handshake (a lost network)."""
        if self.websocket is not None:
            self.websocket.transport.abort()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # what arrives ----------------------------------------------------------------------------------------------
    def receive_profile(self, payload: dict) -> None:
        """A SetChargingProfile request arrived: record it and install it under its purpose."""
        self.received.append((time.perf_counter(), payload))
        self.installed[purpose_of(payload)] = payload
        self._changed.set()

    async def wait_for(self, predicate, timeout: float = 10.0):
        """Wait until ``predicate(self)`` is true (checked after each profile received); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.charger_id}: condition not met within {timeout} s; received "
                                   f"{[purpose_of(p) for _, p in self.received]}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    def tx_profile(self) -> dict | None:
        return self.installed.get("TxProfile")

    def composite(self, duration_s: int, unit: str | None) -> tuple[list[dict], str]:
        """The composite schedule from now for ``duration_s`` [s]: per instant, the TxProfile (else the default)
        capped by the station maximum. Only profiles in ``unit`` (default: the TxProfile's) take part."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        tx = self.installed.get("TxProfile")
        default = self.installed.get("TxDefaultProfile")
        station = self.installed.get("ChargingStationMaxProfile", self.installed.get("ChargePointMaxProfile"))
        if unit is None:
            held = tx or default or station
            unit = schedule_of(held)["chargingRateUnit"] if held is not None else "W"
        boundaries = {0}
        for payload in (tx, default, station):
            if payload is None:
                continue
            schedule = schedule_of(payload)
            start = parse_time(schedule["startSchedule"])
            for period in schedule["chargingSchedulePeriod"]:
                offset = (start - now).total_seconds() + period["startPeriod"]
                if 0 < offset < duration_s:
                    boundaries.add(int(offset))
        periods = []
        for offset in sorted(boundaries):
            moment = now.fromtimestamp(now.timestamp() + offset, timezone.utc)
            limits = []
            main = None
            for payload in (tx, default):
                if payload is not None and schedule_of(payload)["chargingRateUnit"] == unit:
                    main = limit_at(payload, moment)
                    if main is not None:
                        break
            if main is not None:
                limits.append(main)
            if station is not None and schedule_of(station)["chargingRateUnit"] == unit:
                cap = limit_at(station, moment)
                if cap is not None:
                    limits.append(cap)
            if not limits:
                continue
            value = min(limits)
            if periods and periods[-1]["limit"] == value:
                continue
            periods.append({"startPeriod": offset, "limit": value})
        return periods, unit

    # what it sends ---------------------------------------------------------------------------------------------
    def _calls(self):
        if self.version == "1.6":
            from ocpp.v16 import call
        elif self.version == "2.0.1":
            from ocpp.v201 import call
        else:
            from ocpp.v21 import call
        return call

    async def boot(self) -> str:
        call = self._calls()
        if self.version == "1.6":
            answer = await self.station.call(call.BootNotification(charge_point_model="sim",
                                                                   charge_point_vendor="gridcharge"))
        else:
            answer = await self.station.call(call.BootNotification(
                charging_station={"model": "sim", "vendorName": "gridcharge"}, reason="PowerUp"))
        return answer.status

    async def heartbeat(self) -> str:
        return (await self.station.call(self._calls().Heartbeat())).current_time

    async def status(self, status: str = "Occupied") -> None:
        """``StatusNotification`` of its connector (2.x ``connectorStatus``: Available, Occupied, ...; 1.6
        ``status``: Available, Preparing, Charging, ...)."""
        call = self._calls()
        if self.version == "1.6":
            await self.station.call(call.StatusNotification(connector_id=self.evse_id, error_code="NoError",
                                                            status=status))
        else:
            await self.station.call(call.StatusNotification(
                timestamp=utc_text(datetime.now(timezone.utc)), connector_status=status, evse_id=self.evse_id,
                connector_id=1))

    def _meter_value(self, import_wh: float, export_wh: float | None, context: str) -> list[dict]:
        stamp = utc_text(datetime.now(timezone.utc))
        if self.version == "1.6":
            samples = [{"value": f"{import_wh:.0f}", "context": context, "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh"}]
            if export_wh is not None:
                samples.append({"value": f"{export_wh:.0f}", "context": context,
                                "measurand": "Energy.Active.Export.Register", "unit": "Wh"})
        else:
            samples = [{"value": float(import_wh), "context": context, "measurand": "Energy.Active.Import.Register",
                        "unitOfMeasure": {"unit": "Wh"}}]
            if export_wh is not None:
                samples.append({"value": float(export_wh), "context": context,
                                "measurand": "Energy.Active.Export.Register", "unitOfMeasure": {"unit": "Wh"}})
        return [{"timestamp": stamp, "sampledValue": samples}]

    async def _transaction_event(self, event_type: str, trigger: str, meter: list | None = None, **extra):
        call = self._calls()
        self._seq += 1
        return await self.station.call(call.TransactionEvent(
            event_type=event_type, timestamp=utc_text(datetime.now(timezone.utc)), trigger_reason=trigger,
            seq_no=self._seq, transaction_info={"transactionId": str(self.transaction_id), **extra.pop("info", {})},
            evse={"id": self.evse_id, "connectorId": 1}, meter_value=meter, **extra))

    async def start_transaction(self, transaction_id: str = "tx-1", meter_wh: float = 0.0) -> float:
        """Plug in: ``TransactionEvent(Started)`` (2.x, with the ``Transaction.Begin`` register reading) or
        ``StartTransaction`` (1.6). Returns the monotonic time [s] just before it was sent."""
        sent = time.perf_counter()
        if self.version == "1.6":
            answer = await self.station.call(self._calls().StartTransaction(
                connector_id=self.evse_id, id_tag="SIM", meter_start=int(meter_wh),
                timestamp=utc_text(datetime.now(timezone.utc))))
            self.transaction_id = answer.transaction_id
        else:
            self.transaction_id = transaction_id
            self._seq = -1
            await self._transaction_event("Started", "CablePluggedIn",
                                          self._meter_value(meter_wh, None, "Transaction.Begin"),
                                          info={"chargingState": "EVConnected"})
        return sent

    async def meter(self, import_wh: float, export_wh: float | None = None) -> None:
        """A periodic energy register reading of the running transaction [Wh]."""
        if self.version == "1.6":
            await self.station.call(self._calls().MeterValues(
                connector_id=self.evse_id, transaction_id=self.transaction_id,
                meter_value=self._meter_value(import_wh, export_wh, "Sample.Periodic")))
        else:
            await self._transaction_event("Updated", "MeterValuePeriodic",
                                          self._meter_value(import_wh, export_wh, "Sample.Periodic"))

    async def needs(self, charging_needs: dict) -> str:
        """``NotifyEVChargingNeeds`` (2.x) with a wire ``chargingNeeds`` object; returns the answer's status."""
        answer = await self.station.call(self._calls().NotifyEVChargingNeeds(charging_needs=charging_needs,
                                                                             evse_id=self.evse_id))
        return answer.status

    async def end_transaction(self, meter_wh: float = 0.0) -> None:
        """Unplug: ``TransactionEvent(Ended)`` / ``StopTransaction`` with the final register reading."""
        if self.version == "1.6":
            await self.station.call(self._calls().StopTransaction(
                meter_stop=int(meter_wh), timestamp=utc_text(datetime.now(timezone.utc)),
                transaction_id=self.transaction_id, reason="EVDisconnected"))
        else:
            await self._transaction_event("Ended", "EVDeparted",
                                          self._meter_value(meter_wh, None, "Transaction.End"),
                                          info={"stoppedReason": "EVDisconnected"})
        self.installed.pop("TxProfile", None)
        self.transaction_id = None


__all__ = ["SimulatedCharger", "profile_of"]
