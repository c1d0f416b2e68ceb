"""The events a controller accepts, as pure functions: ``(day, state, event data) -> new state``.

Each validates everything before it builds anything, and a refusal is an :class:`~gridcharge.errors.EventRefused`
naming the field, the value and what was expected, with a reason (unknown car, id in use, charger occupied,
invalid). The state is frozen, so a refused event changes nothing. The what of each event is documented on the
:class:`~gridcharge.online.Controller` method of the same name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import datetime

import numpy as np
from pydantic import ValidationError

from ..errors import EventRefused, FieldProblem, InstanceError, RefusalReason
from ..instance import Session, battery_problems, field_problems
from ..schedule import battery_power_kw, node_loads
from .state import Cap, Car, ControllerState, Day, Expected, Publication, readonly

#: A measured energy that differs from the controller's own account by less than this is no news [kWh].
MEASURE_TOLERANCE_KWH = 1e-9
#: Keys of an expected car (:func:`expect`); the last two are optional.
EXPECTED_KEYS = ("id", "node", "arrival", "departure", "energy_kwh", "max_charge_kw", "phases", "efficiency")
_UNKNOWN_SESSION_KEY = f"unknown key (allowed: {', '.join(Session.model_fields)})"


# ------------------------------------------------------------------------------------------------------------------
# time


def to_datetime(value, path: str, event: str) -> datetime:
    """A tz-aware date-time from a date-time or an ISO-8601 string with offset; else refused naming ``path``."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise EventRefused(event, FieldProblem(path, value, "an ISO-8601 date-time with UTC offset")) from None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise EventRefused(event, FieldProblem(path, value, "an ISO-8601 date-time with UTC offset"))
    return value


def to_period(day: Day, value, path: str, event: str, *, rounding: str) -> int:
    """A period index from an int or a date-time / ISO string (``rounding``: floor or ceil to a boundary)."""
    if isinstance(value, (bool, np.bool_)):
        raise EventRefused(event, FieldProblem(path, value, "a period index or an ISO-8601 date-time with offset"))
    if isinstance(value, (int, np.integer)):
        return int(value)
    periods = (to_datetime(value, path, event) - day.start) / day.step
    return int(math.floor(periods + 1e-9) if rounding == "floor" else math.ceil(periods - 1e-9))


# ------------------------------------------------------------------------------------------------------------------
# events


def plug_in(day: Day, state: ControllerState, session) -> ControllerState:
    """A car announces itself (:meth:`gridcharge.online.Controller.plug_in`)."""
    event = "plug_in"
    if not isinstance(session, Mapping):
        raise EventRefused(event, FieldProblem("session", type(session).__name__, "a mapping of session fields"))
    data = dict(session)
    data.setdefault("arrival", day.time_of(state.now).isoformat())
    try:
        parsed = Session.model_validate(data)
    except ValidationError as exc:
        raise EventRefused(event, field_problems(exc, prefix="session", unknown_key=_UNKNOWN_SESSION_KEY)) from None
    problems: list[FieldProblem] = []
    reason = RefusalReason.INVALID
    if parsed.id in state.cars or parsed.id in state.finished:
        problems.append(FieldProblem("session.id", parsed.id, "an id not used by another car today"))
        reason = RefusalReason.ID_IN_USE
    if parsed.charger not in day.chargers:
        known = ", ".join(repr(c) for c in list(day.chargers)[:5])
        problems.append(FieldProblem("session.charger", parsed.charger, f"the id of a charger (known: {known})"))
    problems += _departure_problems(day, state, "session.departure", parsed.arrival, parsed.departure)
    problems += battery_problems("session", parsed)
    if not problems:
        problems += _occupied(state, parsed.charger, parsed.arrival, parsed.departure, "session.charger")
        reason = RefusalReason.CHARGER_OCCUPIED
    if problems:
        raise EventRefused(event, problems, reason)
    car = Car(session=parsed, serial=state.next_serial)
    return dataclasses.replace(state, cars={**state.cars, parsed.id: car}, next_serial=state.next_serial + 1)


def depart(day: Day, state: ControllerState, session_id: str, at=None) -> ControllerState:
    """Car ``session_id`` leaves at ``at`` (:meth:`gridcharge.online.Controller.depart`)."""
    event = "depart"
    car = _car(state, session_id, event)
    now = day.time_of(state.now)
    when = now if at is None else to_datetime(at, "at", event)
    if when <= now:
        cars = dict(state.cars)
        del cars[session_id]
        return dataclasses.replace(state, cars=cars, finished={**state.finished, session_id: car})
    return _change_session(day, state, event, car, {"departure": when}, "at")


def update(day: Day, state: ControllerState, session_id: str, departure=None,
           energy_kwh: float | None = None) -> ControllerState:
    """The driver changes their wishes (:meth:`gridcharge.online.Controller.update`)."""
    event = "update"
    car = _car(state, session_id, event)
    if departure is None and energy_kwh is None:
        raise EventRefused(event, FieldProblem("departure", None, "a new departure and/or energy_kwh"))
    change = {}
    if departure is not None:
        change["departure"] = to_datetime(departure, "departure", event)
    if energy_kwh is not None:
        if not _finite_number(energy_kwh) or energy_kwh < 0:
            raise EventRefused(event, FieldProblem("energy_kwh", energy_kwh, "a finite number >= 0 [kWh]"))
        change["energy_kwh"] = float(energy_kwh)
    return _change_session(day, state, event, car, change, "departure")


def measure(state: ControllerState, values: Mapping) -> ControllerState | None:
    """Meter readings ``{session id: energy delivered since arrival [kWh]}``, all or nothing
    (:meth:`gridcharge.online.Controller.measure`); None when none is news."""
    event = "measure"
    problems: list[FieldProblem] = []
    reason = RefusalReason.INVALID
    changed: dict[str, Car] = {}
    for sid, value in values.items():
        if sid not in state.cars:
            problems.append(FieldProblem("session_id", sid, "the id of an announced car that has not left"))
            reason = RefusalReason.UNKNOWN_SESSION
            continue
        car = state.cars[sid]
        path = "energy_delivered_kwh" if len(values) == 1 else f"energy_delivered_kwh[{sid!r}]"
        if not _finite_number(value):
            problems.append(FieldProblem(path, value, "a finite number [kWh]"))
            continue
        low, high = energy_bounds_kwh(car.session)
        if value < low - 1e-9:
            expected = ">= 0: energy delivered cannot be negative" if low == 0 else \
                f">= {low:g} (min_kwh - initial_kwh: the battery cannot go below its floor)"
            problems.append(FieldProblem(path, value, f"must be {expected} [kWh]"))
            continue
        if high is not None and value > high + 1e-9:
            problems.append(FieldProblem(path, value, f"must be <= {high:g} (battery_kwh - initial_kwh) [kWh]"))
            continue
        if abs(float(value) - car.delivered_kwh) > MEASURE_TOLERANCE_KWH:
            changed[sid] = dataclasses.replace(car, delivered_kwh=float(value))
    if problems:
        raise EventRefused(event, problems, reason)
    return dataclasses.replace(state, cars={**state.cars, **changed}) if changed else None


def set_limit(day: Day, state: ControllerState, node_id: str, import_limit_kw: float, start,
              end) -> ControllerState:
    """A demand-response cap (:meth:`gridcharge.online.Controller.set_limit`)."""
    event = "set_limit"
    problems = []
    if node_id not in day.node_index:
        problems.append(FieldProblem("node_id", node_id, f"the id of a node (known: "
                                                         f"{', '.join(map(repr, day.node_ids[:5]))})"))
    if not _finite_number(import_limit_kw) or import_limit_kw < 0:
        problems.append(FieldProblem("import_limit_kw", import_limit_kw, "a finite number >= 0 [kW]"))
    first = to_period(day, start, "start", event, rounding="floor")
    last = to_period(day, end, "end", event, rounding="ceil")
    now, periods = state.now, day.periods
    if first < 0 or first >= periods:
        problems.append(FieldProblem("start", start, f"within the day: period 0 .. {periods - 1}"))
    if last <= first:
        problems.append(FieldProblem("end", end, "after start"))
    elif last <= now:
        problems.append(FieldProblem("end", end, f"after the current period {now} (the window is over)"))
    elif last > periods:
        problems.append(FieldProblem("end", end, f"not after the end of the day (period {periods})"))
    if problems:
        raise EventRefused(event, problems)
    return dataclasses.replace(state, caps=state.caps + (Cap(node_id, float(import_limit_kw), first, last),))


def forecast(day: Day, state: ControllerState, node_id: str, base_load_kw, start: int | None = None) -> ControllerState:
    """A new base-load forecast of one node [kW] (:meth:`gridcharge.online.Controller.forecast`)."""
    event = "forecast"
    problems = []
    now, periods = state.now, day.periods
    if node_id not in day.node_index:
        problems.append(FieldProblem("node_id", node_id, "the id of a node"))
    first = now if start is None else start
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or not now <= first < periods:
        problems.append(FieldProblem("start", start, f"a period index from now ({now}) to {periods - 1}"))
        first = now
    values = np.atleast_1d(np.asarray(base_load_kw, dtype=object))
    try:
        numbers = values.astype(float)
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or values.ndim != 1 or any(isinstance(v, bool) for v in values) \
            or not np.all(np.isfinite(numbers)) or np.any(numbers < 0):
        problems.append(FieldProblem("base_load_kw", base_load_kw, "a finite number >= 0, or a list of them [kW]"))
    elif np.ndim(base_load_kw) and len(numbers) > periods - first:
        problems.append(FieldProblem("base_load_kw", f"a list of {len(numbers)} numbers",
                                     f"at most {periods - first} (one per period to the end of the day)"))
    if problems:
        raise EventRefused(event, problems)
    base = state.base_load_kw.copy()
    i = day.node_index[node_id]
    if np.ndim(base_load_kw):
        base[i, first:first + len(numbers)] = numbers
    else:
        base[i, first:] = numbers[0]
    return dataclasses.replace(state, base_load_kw=readonly(base))


def expect(day: Day, state: ControllerState, cars) -> ControllerState:
    """Replace the arrival forecast (:meth:`gridcharge.online.Controller.expect`)."""
    event = "expect"
    allowed = set(EXPECTED_KEYS)
    problems: list[FieldProblem] = []
    parsed = []
    seen: set = set()
    end = day.time_of(day.periods)
    for i, car in enumerate(cars):
        where = f"cars[{i}]"
        if not isinstance(car, Mapping):
            problems.append(FieldProblem(where, type(car).__name__, "a mapping of expected-car fields"))
            continue
        found = [FieldProblem(f"{where}.{k}", car[k], f"unknown key (allowed: {', '.join(sorted(allowed))})")
                 for k in car if k not in allowed]
        found += [FieldProblem(f"{where}.{k}", "(missing)", "missing required key")
                  for k in EXPECTED_KEYS[:6] if k not in car]
        if found:
            problems += found
            continue
        if not isinstance(car["id"], str) or not car["id"] or car["id"] in seen:
            found.append(FieldProblem(f"{where}.id", car["id"], "a non-empty id not given to another expected car"))
        seen.add(car["id"])
        if car["node"] not in day.node_index:
            found.append(FieldProblem(f"{where}.node", car["node"], "the id of a node"))
        times = []
        for key in ("arrival", "departure"):
            try:
                times.append(to_datetime(car[key], f"{where}.{key}", event))
            except InstanceError as exc:
                found += exc.problems
        if len(times) == 2 and not times[0] < times[1] <= end:
            found.append(FieldProblem(f"{where}.departure", str(car["departure"]),
                                      f"after arrival and not after the end of the day {end.isoformat()}"))
        for key, low, closed, high in (("energy_kwh", 0.0, True, math.inf), ("max_charge_kw", 0.0, False, math.inf),
                                       ("efficiency", 0.0, False, 1.0)):
            value = car.get(key, 1.0)
            if not (_finite_number(value) and (value >= low if closed else value > low) and value <= high):
                found.append(FieldProblem(f"{where}.{key}", value, f"a number {'>=' if closed else '>'} {low:g}"
                                                                   + (f" and <= {high:g}" if high < math.inf else "")))
        if car.get("phases", "ABC") not in ("A", "B", "C", "ABC"):
            found.append(FieldProblem(f"{where}.phases", car["phases"], "one of A, B, C, ABC"))
        if found:
            problems += found
            continue
        parsed.append(Expected(car["id"], car["node"], times[0], times[1], float(car["energy_kwh"]),
                               float(car["max_charge_kw"]), car.get("phases", "ABC"),
                               float(car.get("efficiency", 1.0))))
    if problems:
        raise EventRefused(event, problems)
    return dataclasses.replace(state, expected=tuple(parsed))


def advance(day: Day, state: ControllerState, publication: Publication, to_period_) -> ControllerState | None:
    """Time moves on (:meth:`gridcharge.online.Controller.advance`): each car credited with the energy of its
    published set-points [kWh], the day's peak so far updated [kW], cars that left removed. None when ``to`` is
    now."""
    event = "advance"
    to = to_period(day, to_period_, "to_period", event, rounding="floor")
    if to < state.now or to > day.periods:
        raise EventRefused(event, FieldProblem("to_period", to_period_,
                                               f"a period from now ({state.now}) to the end of the day "
                                               f"({day.periods})"))
    if to == state.now:
        return None
    pub = publication
    cars = dict(state.cars)
    peak = state.peak_so_far_kw
    if pub.schedule is not None and len(pub.session_ids):
        problem = pub.schedule.problem
        a, b = state.now - pub.start_period, to - pub.start_period
        power = pub.power_kw[:, a:b]
        presence = problem.presence[:, a:b]
        gained = (battery_power_kw(power, problem.efficiency[:, None]) * presence).sum(axis=1) * problem.step_hours
        for sid, kwh in zip(pub.session_ids, gained):
            if sid in cars and kwh != 0.0:
                car = cars[sid]
                cars[sid] = dataclasses.replace(car, delivered_kwh=car.delivered_kwh + float(kwh))
        root_load = node_loads(problem, pub.power_kw)[problem.root, a:b]
        if len(root_load):
            peak = max(peak, float(root_load.max()))
    else:  # no car: the root carries every node's own net load
        own = state.base_load_kw - day.generation_kw
        peak = max(peak, float(own[:, state.now:to].sum(axis=0).max()))
    end_time = day.time_of(to)
    finished = dict(state.finished)
    for sid in [sid for sid, car in cars.items() if car.session.departure <= end_time]:
        finished[sid] = cars.pop(sid)
    return dataclasses.replace(state, now=to, cars=cars, finished=finished, peak_so_far_kw=peak)


def car_at(state: ControllerState, charger_id: str, when: datetime) -> str | None:
    """Id of the announced car plugged in at ``charger_id`` at ``when`` (arrival <= when < departure), or None."""
    for session_id, car in state.cars.items():
        s = car.session
        if s.charger == charger_id and s.arrival <= when < s.departure:
            return session_id
    return None


def energy_bounds_kwh(session: Session) -> tuple[float, float | None]:
    """Bounds on the energy added since arrival [kWh]: with a battery [min - initial, battery - initial], else
    [0, None] (no upper bound)."""
    if session.battery_kwh is None:
        return 0.0, None
    initial = session.initial_kwh or 0.0
    floor = initial if session.min_kwh is None else session.min_kwh
    return floor - initial, session.battery_kwh - initial


# ------------------------------------------------------------------------------------------------------------------
# helpers


def _finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and math.isfinite(value)


def _car(state: ControllerState, session_id, event: str) -> Car:
    if session_id not in state.cars:
        raise EventRefused(event, FieldProblem("session_id", session_id,
                                               "the id of an announced car that has not left"),
                           RefusalReason.UNKNOWN_SESSION)
    return state.cars[session_id]


def _departure_problems(day: Day, state: ControllerState, path: str, arrival: datetime,
                        departure: datetime) -> list[FieldProblem]:
    end = day.time_of(day.periods)
    now = day.time_of(state.now)
    if departure <= arrival:
        return [FieldProblem(path, departure.isoformat(), f"must be after arrival {arrival.isoformat()}")]
    if departure <= now:
        return [FieldProblem(path, departure.isoformat(),
                             f"must be after the current time {now.isoformat()} (it is in the past)")]
    if departure > end:
        return [FieldProblem(path, departure.isoformat(), f"must not be after the end of the day {end.isoformat()}")]
    return []


def _occupied(state: ControllerState, charger: str, arrival: datetime, departure: datetime, path: str,
              ignore: str | None = None) -> list[FieldProblem]:
    for other in state.cars.values():
        s = other.session
        if s.id != ignore and s.charger == charger and s.arrival < departure and arrival < s.departure:
            return [FieldProblem(path, charger, f"a free charger: car {s.id!r} is on it from "
                                                f"{s.arrival.isoformat()} to {s.departure.isoformat()}")]
    return []


def _change_session(day: Day, state: ControllerState, event: str, car: Car, change: dict,
                    departure_path: str) -> ControllerState:
    session = car.session
    problems = []
    reason = RefusalReason.INVALID
    if "departure" in change:
        problems += _departure_problems(day, state, departure_path, session.arrival, change["departure"])
        if not problems:
            problems += _occupied(state, session.charger, session.arrival, change["departure"], departure_path,
                                  ignore=session.id)
            reason = RefusalReason.CHARGER_OCCUPIED if problems else reason
    updated = session.model_copy(update=change)
    if "energy_kwh" in change:
        problems += [dataclasses.replace(p, path="energy_kwh") if p.path.endswith(".energy_kwh") else p
                     for p in battery_problems("session", updated)]
    if problems:
        raise EventRefused(event, problems, reason)
    return dataclasses.replace(state, cars={**state.cars, session.id: dataclasses.replace(car, session=updated)})
