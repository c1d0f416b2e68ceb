"""The window a re-solve sees: an instance-v1 over ``[now, end)`` with what each car still wants, and what that
instance cannot say (caps, over-request bounds, phantoms of the arrival forecast).

Built anew from the state at each re-solve (docs/design/online.md, "How a re-solve works", step 1); unchanged
nodes and cars are reused from the window before, so that building it costs little next to the solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np

from ..instance import Charger, Horizon, Instance, Session, Tariff
from .state import EXPECTED_PREFIX, PHANTOM_SERIAL, Car, ControllerState, Day


@dataclass(frozen=True)
class Window:
    """The part of the day a re-solve plans, beside its sub-instance.

    now, end : int — absolute periods: the window is ``now .. end - 1``
    serials : numpy.ndarray of int64, shape (S,) — each session's stable serial (phantoms from ``PHANTOM_SERIAL``)
    final_upper_kwh : numpy.ndarray, shape (S,) — energy added by departure <= this [kWh] for a V2G car above its
        request (negative: it gives back what it took above it); NaN elsewhere
    n_real : int — sessions ``0 .. n_real - 1`` are real cars, the rest forecast phantoms
    real_instance : Instance — the sub-instance without phantoms (what the verifier checks)
    caps_kw : numpy.ndarray, shape (N, end - now) — demand-response caps per node and window period [kW]; inf where
        none
    """

    now: int
    end: int
    serials: np.ndarray
    final_upper_kwh: np.ndarray
    n_real: int
    real_instance: Instance
    caps_kw: np.ndarray


@dataclass(frozen=True)
class _CachedSession:
    car: Car
    end_time: object
    session: Session
    final_upper_kwh: float


class WindowBuilder:
    """Builds the :class:`Window` of a state for one site's day.

    Parameters
    ----------
    day : Day — the site's day (its constant arrays)
    horizon_periods : int, optional — the receding horizon [periods]; default to the end of the day
    """

    def __init__(self, day: Day, horizon_periods: int | None = None):
        self.day = day
        self.horizon_periods = horizon_periods
        self._nodes = None  # ((now, end), base-load array, node copies) of the last window
        self._sessions: dict[str, _CachedSession] = {}

    def bounds(self, now: int) -> tuple[int, int]:
        """The window ``(now, end)`` at period ``now``."""
        periods = self.day.periods
        end = periods if self.horizon_periods is None else min(periods, now + self.horizon_periods)
        return now, (max(end, now + 1) if now < periods else now + 1)

    def build(self, state: ControllerState) -> tuple[Instance, Window]:
        """The sub-instance over ``[now, end)`` (real cars, then forecast phantoms) and its :class:`Window`."""
        day = self.day
        site = day.site
        now, end = self.bounds(state.now)
        start_time, end_time = day.time_of(now), day.time_of(end)
        horizon = Horizon.model_construct(start=start_time, step_minutes=site.horizon.step_minutes,
                                          periods=end - now, timezone=site.horizon.timezone)
        inside = now < day.periods
        cached = self._nodes
        if cached is not None and cached[0] == (now, end) and cached[1] is state.base_load_kw:
            nodes = cached[2]
        else:
            base = state.base_load_kw[:, now:end] if inside else np.zeros((len(site.nodes), 1))
            gen = day.generation_kw[:, now:end] if inside else np.zeros((len(site.nodes), 1))
            nodes = [n.model_copy(update={"base_load_kw": _series(base[i]), "generation_kw": _series(gen[i])})
                     for i, n in enumerate(site.nodes)]
            self._nodes = ((now, end), state.base_load_kw, nodes)
        tariff = Tariff.model_construct(
            import_cny_per_kwh=_series(day.import_price[now:end] if inside else np.zeros(1)),
            export_cny_per_kwh=_series(day.export_price[now:end] if inside else np.zeros(1)))
        sessions, serials, final_upper = [], [], []
        kept: dict[str, _CachedSession] = {}
        for car in sorted(state.cars.values(), key=lambda c: c.serial):
            s = car.session
            if s.departure <= start_time or s.arrival >= end_time:
                continue
            hit = self._sessions.get(s.id)
            if hit is None or hit.car is not car or hit.end_time != end_time:
                session, over = self._remaining(car, end_time)
                hit = _CachedSession(car, end_time, session, over)
            kept[s.id] = hit
            sessions.append(hit.session)
            serials.append(car.serial)
            final_upper.append(hit.final_upper_kwh)
        self._sessions = kept
        n_real = len(sessions)
        chargers = site.chargers
        for k, e in enumerate(state.expected):
            if not start_time < e.arrival < end_time:
                continue
            if chargers is site.chargers:
                chargers = list(chargers)
            name = EXPECTED_PREFIX + e.id
            chargers.append(Charger.model_construct(id=name, node=e.node, max_charge_kw=e.max_charge_kw,
                                                    max_discharge_kw=0.0, phases=e.phases, efficiency=e.efficiency))
            sessions.append(Session.model_construct(
                id=name, charger=name, arrival=e.arrival, departure=min(e.departure, end_time),
                energy_kwh=e.energy_kwh, max_charge_kw=None, max_discharge_kw=0.0, battery_kwh=None,
                initial_kwh=None, min_kwh=None))
            serials.append(PHANTOM_SERIAL + k)
            final_upper.append(math.nan)
        sub = Instance.model_construct(format=site.format, name=f"{site.name} [online, period {now}]",
                                       horizon=horizon, nodes=nodes, chargers=chargers, sessions=sessions,
                                       tariff=tariff, objective=site.objective)
        real = sub if n_real == len(sessions) else Instance.model_construct(
            format=site.format, name=sub.name, horizon=horizon, nodes=nodes, chargers=site.chargers,
            sessions=sessions[:n_real], tariff=tariff, objective=site.objective)
        window = Window(now=now, end=end, serials=np.asarray(serials, dtype=np.int64),
                        final_upper_kwh=np.asarray(final_upper, dtype=float), n_real=n_real, real_instance=real,
                        caps_kw=self.caps(state, now, end))
        return sub, window

    def caps(self, state: ControllerState, now: int, end: int) -> np.ndarray:
        """Demand-response caps per node and window period, shape (N, end - now) [kW]; inf where none."""
        caps = np.full((len(self.day.node_ids), end - now), np.inf)
        for cap in state.caps:
            a, b = max(cap.start - now, 0), min(cap.end - now, end - now)
            if a < b:
                i = self.day.node_index[cap.node]
                caps[i, a:b] = np.minimum(caps[i, a:b], cap.import_limit_kw)
        return caps

    def _remaining(self, car: Car, end_time) -> tuple[Session, float]:
        """The car's session for the window: what it still wants, and its over-request bound [kWh] (NaN: none)."""
        s = car.session
        d = car.delivered_kwh
        update = {"energy_kwh": max(s.energy_kwh - d, 0.0)}
        if s.departure > end_time:
            update["departure"] = end_time
        over = math.nan
        v2g = min(self.day.chargers[s.charger].max_discharge_kw, s.max_discharge_kw) > 0
        if s.battery_kwh is not None:
            initial = s.initial_kwh or 0.0
            floor = initial if s.min_kwh is None else s.min_kwh
            update["initial_kwh"] = min(max(initial + d, floor), s.battery_kwh)
            update["min_kwh"] = floor
            update["energy_kwh"] = min(update["energy_kwh"], s.battery_kwh - update["initial_kwh"])
            if v2g and d > s.energy_kwh:
                over = s.energy_kwh - d  # negative: the car must give back what it took above its request
        elif v2g and s.energy_kwh > 0:
            # the same bounds [0, energy] on energy added, as a battery, so that what was delivered shifts them
            update.update(battery_kwh=s.energy_kwh, initial_kwh=min(max(d, 0.0), s.energy_kwh), min_kwh=0.0)
            update["energy_kwh"] = s.energy_kwh - update["initial_kwh"]
        return s.model_copy(update=update), over


def _series(values: np.ndarray):
    """One number when every period has the same value, else the list (instance-v1's two forms)."""
    if len(values) == 0:
        return 0.0
    return float(values[0]) if np.all(values == values[0]) else values.tolist()
