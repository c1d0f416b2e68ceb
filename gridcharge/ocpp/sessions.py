"""OCPP transactions → controller sessions: what the charger reports (transactions, meter values, ISO 15118
charging needs) becomes the typed events of the backend (:class:`gridcharge.ocpp.csms.CsmsBackend`: ``plug_in``,
``update`` with a :class:`gridcharge.online.feed.Update`, ``end``).

- ``Started`` (1.6 ``StartTransaction``) plugs a session in with a default stay and energy
  (:attr:`CentralSystem.default_stay_h <gridcharge.ocpp.csms.CentralSystem>`, ``default_energy_kwh``), or adopts a
  session announced on the charger by someone else (the operator API), or picks up our own after a restart.
- Meter values (import minus export register from the transaction's first reading, into the battery: import x
  efficiency − export / efficiency) are passed on at most every ``meter_interval_s``.
- ``NotifyEVChargingNeeds`` (:func:`needs_to_session`) updates departure and energy; what a controller fixes at
  plug-in (power limits, V2G consent, battery) replaces the session: the old one ends now, its successor starts now
  with the energy still wanted (ISO 15118 requests count from the car's present state).
- ``Ended`` (1.6 ``StopTransaction``) removes the session at once: its capacity is free for the rest of the period.

A refused event (:class:`gridcharge.errors.EventRefused`, the field named) is kept in ``CentralSystem.problems`` and
counted per reason in ``stats["refusals"]``; the charger was answered before (OCPP has no way to refuse a
transaction event), and a charger without a session stays on its fail-safe default.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import EventRefused
from ..online import feed
from .wire import energy_registers, parse_time, utc_text

if TYPE_CHECKING:
    from .csms import CentralSystem, ChargerInfo, Link

#: 2.1 transfer modes that allow discharge (bidirectional power transfer)
BIDIRECTIONAL_MODES = frozenset({"AC_BPT", "AC_BPT_DER", "DC_BPT", "DC_ACDP_BPT"})


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


PLUG_TIME_FIELDS = ("max_charge_kw", "max_discharge_kw", "battery_kwh", "initial_kwh", "min_kwh")


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


class Sessions:
    """The transactions of every charger of a central system and the controller sessions standing for them.

    Parameters
    ----------
    csms : CentralSystem — its backend, defaults (``default_stay``, ``default_energy_kwh``, ``meter_interval_s``),
        ``problem()`` and ``stats``

    Attributes
    ----------
    transactions : dict charger id → {transaction id: Transaction}
    """

    def __init__(self, csms: CentralSystem):
        self.csms = csms
        self.backend = csms.backend
        self.transactions: dict[str, dict[str, Transaction]] = {}
        self._pending_needs: dict[tuple[str, int], dict] = {}
        self._tx_ids = itertools.count(secrets.randbelow(1 << 30) + 1)

    def new_transaction_id(self) -> int:
        """A fresh OCPP 1.6 transaction id (int32)."""
        return next(self._tx_ids) % ((1 << 31) - 1) or 1

    # typed entry points (the handlers queue them; they run in the order the charger sent its requests) ----------
    async def transaction_event(self, link: Link, tx_id: str, evse: int, event_type: str | None,
                                meter_values) -> None:
        """2.x ``TransactionEvent``: ``Started`` (or a transaction not seen before) plans a session; meter values
        update what it has received; ``Ended`` ends it."""
        tx = self.transactions.get(link.charger_id, {}).get(tx_id)
        if tx is None:  # Started, or a transaction we have not seen (our restart): plan it / pick it up
            tx = await (self._resume(link, tx_id, evse) if event_type == "Ended" else self._start(link, tx_id, evse))
        if tx is None:
            return
        await self._meter(link, tx, meter_values, final=event_type == "Ended")
        if event_type == "Ended":
            await self._end(link, tx)

    async def needs(self, link: Link, evse: int, charging_needs: dict) -> None:
        """2.x ``NotifyEVChargingNeeds`` (its ``chargingNeeds``): the session's departure and energy, or a new
        session when what a controller fixes at plug-in changed; kept for the transaction when none runs yet."""
        tx = self._open_transaction(link.charger_id, evse)
        if tx is None:  # needs before the transaction: apply them when it starts
            self._pending_needs[(link.charger_id, evse)] = charging_needs
            return
        await self._needs(link, tx, charging_needs)

    async def started(self, link: Link, tx_id: str, connector: int, meter_start_wh: float) -> None:
        """1.6 ``StartTransaction`` (the transaction id we answered with)."""
        tx = await self._start(link, tx_id, connector)
        if tx is not None and tx.import_start_wh is None:
            tx.import_start_wh = meter_start_wh

    async def meter(self, link: Link, tx_id: str, connector: int, meter_values) -> None:
        """1.6 ``MeterValues`` of a transaction."""
        tx = self.transactions.get(link.charger_id, {}).get(tx_id) or await self._start(link, tx_id, connector)
        if tx is not None:
            await self._meter(link, tx, meter_values)

    async def stopped(self, link: Link, tx_id: str, meter_stop_wh, transaction_data: list) -> None:
        """1.6 ``StopTransaction``: the last readings, then the session ends."""
        tx = self.transactions.get(link.charger_id, {}).get(tx_id) or await self._resume(link, tx_id, 1)
        if tx is None:
            return
        readings = [{"sampledValue": [{"value": str(meter_stop_wh), "measurand": "Energy.Active.Import.Register",
                                       "unit": "Wh"}]}] if meter_stop_wh is not None else []
        await self._meter(link, tx, readings + transaction_data, final=True)
        await self._end(link, tx)

    def open_transaction(self, cid: str) -> Transaction | None:
        """The charger's running transaction (the newest), or None."""
        open_ = [t for t in self.transactions.get(cid, {}).values() if not t.ended]
        return open_[-1] if open_ else None

    # the steps -------------------------------------------------------------------------------------------------
    def _open_transaction(self, cid: str, evse: int) -> Transaction | None:
        open_ = [t for t in self.transactions.get(cid, {}).values() if not t.ended and t.evse_id == evse]
        return open_[-1] if open_ else None

    async def _call_backend(self, what: str, fn, *args) -> bool:
        try:
            await asyncio.to_thread(fn, *args)
            return True
        except Exception as exc:  # noqa: BLE001 - a refusal, a store error: say so, go on
            stats = self.csms.stats
            stats["refused_events"] += 1
            reason = exc.reason.value if isinstance(exc, EventRefused) else type(exc).__name__
            stats["refusals"][reason] = stats["refusals"].get(reason, 0) + 1
            self.csms.problem(f"{what} ({reason}): {exc}")
            return False

    async def _start(self, link: Link, tx_id: str, evse: int) -> Transaction | None:
        cid = link.charger_id
        backend = self.backend
        info = backend.charger(cid)
        if info is None:
            self.csms.problem(f"{cid}: transaction {tx_id}: charger not in the site")
            return None
        for other in [t for t in self.transactions.get(cid, {}).values() if not t.ended]:
            self.csms.problem(f"{cid}: transaction {other.transaction_id} never ended; ending it for {tx_id}")
            await self._end(link, other)
        tx = Transaction(transaction_id=tx_id, evse_id=evse)
        self.transactions.setdefault(cid, {})[tx_id] = tx
        adopted = await asyncio.to_thread(backend.active_session, cid)
        now = backend.now()
        departure = min(now + self.csms.default_stay, info.horizon_end)
        own = f"{cid}/{tx_id}"
        if adopted is not None and (adopted == own or adopted.startswith(own + "/")):
            # our own session from before a restart of the central system (the charger kept its transaction)
            suffix = adopted[len(own) + 1:]
            tx.generation = int(suffix) if suffix.isdigit() else 0
            tx.session_id = adopted
            tx.session = {"id": adopted, "charger": cid, "departure": departure.isoformat(),
                          "energy_kwh": self.csms.default_energy_kwh}
            tx.resumed = True  # its start register is unknown to us: meter readings are not passed on
        elif adopted is not None:
            tx.session_id, tx.adopted = adopted, True
        else:
            session = {"id": self._session_id(cid, tx), "charger": cid, "arrival": now.isoformat(),
                       "departure": departure.isoformat(), "energy_kwh": self.csms.default_energy_kwh}
            if await self._call_backend(f"{cid}: transaction {tx_id}: plug-in refused", backend.plug_in, cid,
                                        session):
                tx.session_id, tx.session = session["id"], session
        pending = self._pending_needs.pop((cid, evse), None)
        if pending is not None:
            await self._needs(link, tx, pending)
        link.dirty.set()
        return tx

    async def _resume(self, link: Link, tx_id: str, evse: int) -> Transaction | None:
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

    async def _needs(self, link: Link, tx: Transaction, needs: dict) -> None:
        cid = link.charger_id
        backend = self.backend
        info = backend.charger(cid)
        if info is None or tx.session_id is None:
            return
        now = backend.now()
        fields, notes = needs_to_session(needs, link.version, info, now)
        for note in notes:
            self.csms.problem(f"{cid}: transaction {tx.transaction_id}: {note}")
        plug_time = {k: fields[k] for k in PLUG_TIME_FIELDS if k in fields}
        current = {k: tx.session[k] for k in PLUG_TIME_FIELDS if k in tx.session}
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
            fallback = {k: v for k, v in session.items() if k not in PLUG_TIME_FIELDS}
            fallback["id"] = session["id"] + "-plain"
            if await self._call_backend(f"{cid}: transaction {tx.transaction_id}: plain plug-in refused",
                                        backend.plug_in, cid, fallback):
                tx.session_id, tx.session = fallback["id"], fallback
            else:
                tx.session_id = None

    async def _meter(self, link: Link, tx: Transaction, meter_values, final: bool = False) -> None:
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
        if clock - tx.last_measure_s < self.csms.meter_interval_s:
            return
        tx.last_measure_s = clock
        value = tx.delivered_kwh - tx.offset_kwh
        await self._call_backend(f"{link.charger_id}: transaction {tx.transaction_id}: meter reading refused",
                                 self.backend.update, link.charger_id,
                                 feed.Update(tx.session_id, energy_delivered_kwh=value))

    async def _end(self, link: Link, tx: Transaction) -> None:
        tx.ended = True
        link.forget("TxProfile")  # the charger drops a TxProfile with its transaction
        if tx.session_id is not None and not tx.adopted:
            # removed at once (not kept to the end of the current period): the car is physically gone, its
            # capacity is free now, and a car plugging in next on this charger in the same period must not find
            # the old one's set-point added to its own
            await self._call_backend(f"{link.charger_id}: transaction {tx.transaction_id}: end refused",
                                     self.backend.end, link.charger_id, tx.session_id, None)
        del_after = [k for k, t in self.transactions.get(link.charger_id, {}).items() if t.ended]
        for key in del_after[:-8]:  # keep a few ended ones for inspection
            del self.transactions[link.charger_id][key]


__all__ = ["BIDIRECTIONAL_MODES", "PLUG_TIME_FIELDS", "Sessions", "Transaction", "needs_to_session"]
