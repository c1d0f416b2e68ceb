"""Events as records fed to a :class:`~gridcharge.online.Controller`, all or nothing.

Every front end that feeds a controller from outside (the OCPP in-memory backend, the schedule service, which also
stores the events and replays them after a restart) describes an event as one of these records and applies it with
:func:`apply`; ``kind`` and :meth:`body` are the stored form, :func:`event_of` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class PlugIn:
    """A car plugs in (or reserves): instance-v1 session fields (see :meth:`Controller.plug_in`)."""

    kind: ClassVar[str] = "plug_in"
    session: Mapping

    def body(self) -> dict:
        return dict(self.session)


@dataclass(frozen=True)
class Update:
    """A running session changes: a new ``departure`` (ISO), ``energy_kwh`` (total since arrival) [kWh], and/or a
    meter reading ``energy_delivered_kwh`` (into the battery since arrival) [kWh]; None = unchanged."""

    kind: ClassVar[str] = "update"
    session_id: str
    departure: object = None
    energy_kwh: float | None = None
    energy_delivered_kwh: float | None = None

    def body(self) -> dict:
        changes = {"departure": self.departure, "energy_kwh": self.energy_kwh,
                   "energy_delivered_kwh": self.energy_delivered_kwh}
        return {"session_id": self.session_id, **{k: v for k, v in changes.items() if v is not None}}


@dataclass(frozen=True)
class End:
    """Car ``session_id`` leaves at ``at`` (date-time or ISO string; None: now, the controller's current period
    start, which removes it at once)."""

    kind: ClassVar[str] = "end"
    session_id: str
    at: object = None

    def body(self) -> dict:
        at = self.at.isoformat() if hasattr(self.at, "isoformat") else self.at
        return {"session_id": self.session_id, "at": at}


@dataclass(frozen=True)
class CapEvent:
    """A demand-response cap: ``node``'s net import <= ``import_limit_kw`` [kW] from ``start`` to ``end``."""

    kind: ClassVar[str] = "cap"
    node: str
    import_limit_kw: float
    start: object
    end: object

    def body(self) -> dict:
        return {"node": self.node, "import_limit_kw": self.import_limit_kw, "start": self.start, "end": self.end}


Event = PlugIn | Update | End | CapEvent

_KINDS = {cls.kind: cls for cls in (PlugIn, Update, End, CapEvent)}


def event_of(kind: str, body: Mapping) -> Event:
    """The record of a stored event (``kind``, ``body`` as :meth:`body` wrote them)."""
    if kind == PlugIn.kind:
        return PlugIn(dict(body))
    if kind not in _KINDS:
        raise ValueError(f"event kind {kind!r}: expected one of {', '.join(_KINDS)}")
    return _KINDS[kind](**body)


def apply(controller, event: Event) -> None:
    """Apply ``event`` to ``controller``, all or nothing: on a refusal (:class:`~gridcharge.errors.EventRefused`,
    the fields named) its immutable state is restored and the error raised."""
    old = controller.state
    try:
        if isinstance(event, PlugIn):
            controller.plug_in(event.session)
        elif isinstance(event, Update):
            if event.energy_delivered_kwh is not None:
                controller.measure(event.session_id, event.energy_delivered_kwh)
            if event.departure is not None or event.energy_kwh is not None:
                controller.update(event.session_id, departure=event.departure, energy_kwh=event.energy_kwh)
        elif isinstance(event, End):
            controller.depart(event.session_id, at=controller.time if event.at is None else event.at)
        elif isinstance(event, CapEvent):
            controller.set_limit(event.node, event.import_limit_kw, event.start, event.end)
        else:
            raise TypeError(f"not an event record: {event!r}")
    except BaseException:
        controller.state = old
        raise


__all__ = ["CapEvent", "End", "Event", "PlugIn", "Update", "apply", "event_of"]
