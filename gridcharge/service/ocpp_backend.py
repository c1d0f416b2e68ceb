"""The schedule service as the backend of the OCPP central system (issue 8): ``gridcharge serve --ocpp``.

:class:`ServiceBackend` adapts the service's :class:`~gridcharge.service.runtime.Engine` to
:class:`gridcharge.ocpp.csms.CsmsBackend`, so that chargers on OCPP websockets and chargers fetching over HTTP see
the same sites, tokens, sessions and profiles:

- identity: HTTP Basic password = the charger's token of ``PUT /v1/sites/{site_id}`` (compared as the firmware
  API compares it: SHA-256, constant time);
- events go through :meth:`Engine.submit` exactly like the operator API's session calls (validated by the site's
  validator controller, committed to the database before the charger's event is considered done, re-optimised by
  the worker): ``plug_in``, ``update`` (departure, energy, meter reading), ``end``. Sessions therefore survive a
  restart, and a session the operator announced on a charger is adopted by the transaction that starts on it;
- profiles are the firmware API's own (:meth:`SiteRuntime.charger_profiles`, :mod:`gridcharge.ocpp.plan`: the
  same payloads as ``GET /v1/chargers/{id}/profile``, as dicts), with ``transactionId`` and the transaction's EVSE
  added by the central system;
- a replaced site revokes its chargers' tokens: the backend tells the central system, which closes their
  connections (and refuses whatever they still send);
- publications: the backend listens on the engine's ``publication_listeners`` and tells the central system which
  chargers' schedules changed; it then re-renders and pushes those.

:func:`mount_ocpp` adds the websocket route ``/ocpp/{charger_id}`` to the service's ASGI app: one port for HTTP and
OCPP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from ..errors import EventRefused, FieldProblem
from ..ocpp.csms import OCPP_PATH, CentralSystem, ChargerInfo, mount
from ..online import feed
from .auth import matches

log = logging.getLogger("gridcharge.service")


class ServiceBackend:
    """:class:`gridcharge.ocpp.csms.CsmsBackend` over the schedule service's engine."""

    def __init__(self, engine):
        self.engine = engine
        self._listeners: list[Callable] = []
        self._subscribed = False
        self._lock = threading.Lock()

    def _runtime(self, charger_id: str):
        runtime = self.engine.charger_site.get(charger_id)
        if runtime is None:
            raise EventRefused("charger", FieldProblem("charger", charger_id, "a charger of a site"))
        return runtime

    # identity --------------------------------------------------------------------------------------------------
    def authenticate(self, charger_id: str, password: str) -> bool:
        runtime = self.engine.charger_site.get(charger_id)
        stored = runtime.token_hashes.get(charger_id) if runtime is not None else None
        return matches(password, stored)

    def charger(self, charger_id: str) -> ChargerInfo | None:
        runtime = self.engine.charger_site.get(charger_id)
        if runtime is None:
            return None
        c = runtime.chargers[charger_id]
        return ChargerInfo(c.id, float(c.max_charge_kw), float(c.max_discharge_kw), float(c.efficiency),
                           runtime.grid.time_of(runtime.periods))

    def now(self) -> datetime:
        return self.engine.clock()

    # events ----------------------------------------------------------------------------------------------------
    def plug_in(self, charger_id: str, session: dict) -> None:
        self.engine.submit(self._runtime(charger_id), feed.PlugIn(dict(session)))

    def update(self, charger_id: str, change: feed.Update) -> None:
        self.engine.submit(self._runtime(charger_id), change)

    def end(self, charger_id: str, session_id: str, at: datetime | None) -> None:
        runtime = self._runtime(charger_id)
        if at is None:  # remove at once: a departure at the start of the current period (stored as a time)
            at = runtime.grid.time_of(runtime.grid.period_of(self.engine.clock()))
        self.engine.submit(runtime, feed.End(session_id, at.isoformat()))

    def active_session(self, charger_id: str) -> str | None:
        runtime = self.engine.charger_site.get(charger_id)
        if runtime is None:
            return None
        now = self.engine.clock()
        with runtime.lock:
            return runtime.validator.car_at(charger_id, now)

    # profiles --------------------------------------------------------------------------------------------------
    def profiles(self, charger_id: str, version: str) -> list[dict]:
        runtime = self.engine.charger_site.get(charger_id)
        if runtime is None:
            return []
        return list(runtime.charger_profiles(charger_id, version, self.engine.clock()).payloads)

    def subscribe(self, listener: Callable) -> None:
        with self._lock:
            self._listeners.append(listener)
            if not self._subscribed:
                self._subscribed = True
                self.engine.publication_listeners.append(self._published)
                self.engine.replacement_listeners.append(self._replaced)

    def _replaced(self, old, new) -> None:
        """A site was replaced: its old chargers' tokens are revoked. The central system re-checks the credentials
        of their connections (and closes them) when told their profiles changed."""
        self._tell(set(old.chargers) | set(new.chargers))

    def _tell(self, chargers) -> None:
        for each in list(self._listeners):
            try:
                each(chargers)
            except Exception:
                log.exception("OCPP publication listener failed")

    def _published(self, runtime, before, served) -> None:
        """The engine published: tell the central system which chargers' schedules changed."""
        chargers = served.changed_since(before)
        if chargers is None:  # a new period: every TxProfile moves on
            chargers = set(runtime.chargers)
        if chargers:
            self._tell(chargers)


def _router_app(app):
    """The Starlette / FastAPI app inside the service's ASGI wrappers (the first object with a ``router``)."""
    seen = 0
    while not hasattr(app, "router"):
        app = getattr(app, "app", None)
        seen += 1
        if app is None or seen > 10:
            raise TypeError("no Starlette/FastAPI app with a router inside the given ASGI app")
    return app


def mount_ocpp(app, engine=None, *, path: str = OCPP_PATH, **options) -> CentralSystem:
    """Serve OCPP-J websockets at ``path`` (default ``/ocpp/{charger_id}``) on the service's app.

    Parameters
    ----------
    app : the ASGI app of :func:`gridcharge.service.create_app` (its wrappers are looked through)
    engine : the service engine (default ``app.state.engine``)
    options : keyword options of :class:`gridcharge.ocpp.csms.CentralSystem` (``default_stay_h`` [h],
        ``default_energy_kwh`` [kWh], ``meter_interval_s`` [s], ``heartbeat_s`` [s], ...)

    Returns
    -------
    CentralSystem — also at ``app.state.csms``
    """
    router_app = _router_app(app)
    engine = engine if engine is not None else router_app.state.engine
    csms = CentralSystem(ServiceBackend(engine), **options)
    mount(router_app, csms, path)
    router_app.state.csms = csms
    return csms


__all__ = ["ServiceBackend", "mount_ocpp"]
