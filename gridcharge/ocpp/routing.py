"""Version-neutral OCPP-J routing of one charger's connection: frames in (answered as OCPP-J asks when they are
malformed or name an action without a handler), our CALLs out with their answers matched by message id.

:class:`Station` is mixed (by :func:`gridcharge.ocpp.handlers.station_class`) into the ``ocpp`` package's
``ChargePoint`` of the connection's version together with that version's handlers, as the package itself keeps its
routing (``ocpp.charge_point``) apart from its per-version classes. It talks to its connection through the
:class:`Link` protocol (:class:`gridcharge.ocpp.csms.Link` implements it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from typing import Protocol

from ocpp.exceptions import FormatViolationError, OCPPError, ProtocolError
from ocpp.messages import Call, CallError, MessageType, unpack

from .profiles import validate_payload

log = logging.getLogger("gridcharge.ocpp")

#: websocket subprotocol → OCPP version, in our order of preference
SUBPROTOCOLS = {"ocpp2.1": "2.1", "ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}


class Link(Protocol):
    """What the routing needs of a connection."""

    charger_id: str
    version: str
    connection: object  # async send(str), close(code, reason)
    waiting: dict  # our CALLs' message ids → futures of their answers
    call_lock: asyncio.Lock  # OCPP-J: one CALL of ours outstanding at a time
    ready: asyncio.Event  # the charger may be sent CALLs
    response_timeout_s: float

    def authorised(self) -> bool:
        """Whether the handshake's credentials still hold."""

    async def revoke(self) -> None:
        """Close the connection: its credentials were revoked."""


def _actions(version: str) -> frozenset[str]:
    if version == "1.6":
        from ocpp.v16.enums import Action
    elif version == "2.0.1":
        from ocpp.v201.enums import Action
    else:
        from ocpp.v21.enums import Action
    return frozenset(a.value for a in Action)


#: the actions of each OCPP version (an unhandled one is answered NotImplemented, any other NotSupported)
ACTIONS = {version: _actions(version) for version in SUBPROTOCOLS.values()}


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


class OneLineLog(logging.LoggerAdapter):
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


class Station:
    """Routing shared by all versions; the handlers of the connection's version come with the class it is mixed
    into. Handlers read the wire payload (``self.wire``, camelCase, as the charger sent it and the package validated
    it) rather than the package's snake_case keyword arguments, so that no key is lost in translation."""

    link: Link
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
            code = "NotImplemented" if msg.action in ACTIONS[link.version] else "NotSupported"
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
        asyncio.TimeoutError.

        Calls are sent as raw OCPP-J frames, not through the ``ocpp`` package's dataclass serializer, which spells
        some 2.1 keys wrongly (``limit_L2`` -> ``limitL2``, ``LimitAtSoC.soc``)."""
        link = self.link
        version = link.version
        # in a worker thread: a 96-period 2.1 TxProfile takes ~10-25 ms of jsonschema; the loop keeps answering
        # other chargers meanwhile (a new period re-sends every running TxProfile at once)
        await asyncio.to_thread(validate_payload, version, action, payload)
        call = Call(unique_id=str(uuid.uuid4()), action=action, payload=payload)
        async with link.call_lock:
            waiter = asyncio.get_running_loop().create_future()
            link.waiting[call.unique_id] = waiter
            try:
                await link.connection.send(call.to_json())
                response = await asyncio.wait_for(waiter, link.response_timeout_s)
            finally:
                link.waiting.pop(call.unique_id, None)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        validate_payload(version, action + "Response", response.payload)
        return response.payload


__all__ = ["ACTIONS", "Link", "OneLineLog", "SUBPROTOCOLS", "Station", "frame_error"]
