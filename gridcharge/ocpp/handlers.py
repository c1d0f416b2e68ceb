"""The charger's requests, per OCPP version: answer at once, and hand what the controller needs to the session
keeper (:class:`gridcharge.ocpp.sessions.Sessions`) as a typed call that runs after the answer, in the order the
charger sent its requests.

Answers are the ``ocpp`` package's public ``call_result`` dataclasses of the version (simple keys only), which the
package validates before sending. :func:`station_class` mixes a version's handlers and the version-neutral routing
(:class:`gridcharge.ocpp.routing.Station`) into the package's ``ChargePoint`` of that version.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import ModuleType

from ocpp.routing import after, on

from .routing import Station
from .wire import utc_text


def _now_text() -> str:
    return utc_text(datetime.now(timezone.utc))


class _Common(Station):
    """Handlers of every version."""

    results: ModuleType  # the version's ``ocpp.v*.call_result``

    @on("Heartbeat")
    def _heartbeat(self, **_):
        return self.results.Heartbeat(current_time=_now_text())

    @after("BootNotification")
    def _booted(self, **_):
        self.link.booted()

    def _boot_answer(self):
        return self.results.BootNotification(current_time=_now_text(), interval=self.link.heartbeat_s,
                                             status="Accepted")


class Handlers2x(_Common):
    """OCPP 2.0.1 and 2.1."""

    @on("BootNotification")
    def _boot(self, **_):
        self.link.record(boot=self.wire.get("chargingStation", {}), boot_reason=self.wire.get("reason"))
        return self._boot_answer()

    @on("StatusNotification")
    def _status(self, **_):
        self.link.record(status={self.wire.get("evseId"): self.wire.get("connectorStatus")})
        return self.results.StatusNotification()

    @on("Authorize")
    def _authorize(self, **_):
        return self.results.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def _transaction_event(self, **_):
        wire = self.wire
        info = wire.get("transactionInfo", {})
        self.link.later(self.link.sessions.transaction_event, str(info.get("transactionId")),
                        int((wire.get("evse") or {}).get("id", 1)), wire.get("eventType"), wire.get("meterValue"))
        if wire.get("idToken"):
            return self.results.TransactionEvent(id_token_info={"status": "Accepted"})
        return self.results.TransactionEvent()

    @on("MeterValues")
    def _meter_values(self, **_):
        return self.results.MeterValues()

    @on("DataTransfer")
    def _data_transfer(self, **_):
        return self.results.DataTransfer(status="UnknownVendorId")

    @on("NotifyEVChargingNeeds")
    def _needs(self, **_):
        self.link.later(self.link.sessions.needs, int(self.wire.get("evseId", 1)),
                        self.wire.get("chargingNeeds", {}))
        return self.results.NotifyEVChargingNeeds(status="Accepted")

    @on("NotifyEVChargingSchedule")
    def _ev_schedule(self, **_):
        return self.results.NotifyEVChargingSchedule(status="Accepted")

    @on("NotifyEvent")
    def _notify_event(self, **_):
        return self.results.NotifyEvent()

    @on("NotifyReport")
    def _notify_report(self, **_):
        return self.results.NotifyReport()

    @on("SecurityEventNotification")
    def _security_event(self, **_):
        return self.results.SecurityEventNotification()

    @on("FirmwareStatusNotification")
    def _firmware_status(self, **_):
        return self.results.FirmwareStatusNotification()


class Handlers16(_Common):
    """OCPP 1.6."""

    @on("BootNotification")
    def _boot(self, **_):
        self.link.record(boot={k: v for k, v in self.wire.items() if k.startswith("chargePoint")})
        return self._boot_answer()

    @on("StatusNotification")
    def _status(self, **_):
        self.link.record(status={self.wire.get("connectorId"): self.wire.get("status")})
        return self.results.StatusNotification()

    @on("Authorize")
    def _authorize(self, **_):
        return self.results.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def _start(self, **_):
        sessions = self.link.sessions
        transaction_id = sessions.new_transaction_id()
        self.link.later(sessions.started, str(transaction_id), int(self.wire.get("connectorId", 1)),
                        float(self.wire.get("meterStart", 0)))
        return self.results.StartTransaction(transaction_id=transaction_id, id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def _meter_values(self, **_):
        if self.wire.get("transactionId") is not None:
            self.link.later(self.link.sessions.meter, str(self.wire["transactionId"]),
                            int(self.wire.get("connectorId", 1)), self.wire.get("meterValue"))
        return self.results.MeterValues()

    @on("StopTransaction")
    def _stop(self, **_):
        self.link.later(self.link.sessions.stopped, str(self.wire.get("transactionId")), self.wire.get("meterStop"),
                        list(self.wire.get("transactionData") or []))
        return self.results.StopTransaction()

    @on("DataTransfer")
    def _data_transfer(self, **_):
        return self.results.DataTransfer(status="UnknownVendorId")

    @on("FirmwareStatusNotification")
    def _firmware_status(self, **_):
        return self.results.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    def _diagnostics_status(self, **_):
        return self.results.DiagnosticsStatusNotification()


def _make(version: str) -> type:
    if version == "1.6":
        from ocpp.v16 import ChargePoint, call_result
        handlers = Handlers16
    elif version == "2.0.1":
        from ocpp.v201 import ChargePoint, call_result
        handlers = Handlers2x
    else:
        from ocpp.v21 import ChargePoint, call_result
        handlers = Handlers2x
    return type(f"Station{version.replace('.', '')}", (handlers, ChargePoint), {"results": call_result})


_CLASSES: dict[str, type] = {}


def station_class(version: str) -> type:
    """The ``ocpp`` package's ChargePoint of ``version`` with our routing and that version's handlers."""
    cls = _CLASSES.get(version)
    if cls is None:
        cls = _CLASSES[version] = _make(version)
    return cls


__all__ = ["Handlers16", "Handlers2x", "station_class"]
