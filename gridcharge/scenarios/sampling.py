"""Scenario → one instance-v1 day: the site, the day's base load, PV and ambient, and its EVs.

Random numbers and common random numbers
----------------------------------------
Day ``d`` draws from ``numpy.random.default_rng(SeedSequence(scenario.seed, spawn_key=(d,)))`` in a fixed order:
the day's factors (base load, PV clearness, ambient offset), then ``n_draw`` EVs (arrival, dwell, energy, battery,
initial state of charge, V2G consent), each attribute in one vectorised call. A day with ``n`` EVs takes the first
``n`` of them. The draws therefore do not depend on the strategy, the EV count or the worker that runs the task:
every strategy meets the same cars on day ``d``, and a sweep over EV counts adds cars to the same day (common random
numbers), so the hosting-capacity curve is monotone up to the effect of charger turnover.

Charger assignment
------------------
Residential (one meter per space): EV ``i`` charges at its own space's charger ``i``. Other building types share
``site.charger_count`` chargers: EVs in arrival order take the lowest-numbered free charger; an EV that finds none
free is turned away (counted, with its energy, in ``turned_away`` / ``turned_away_kwh``). A charger is free again
from the first period boundary after its car left.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ..grid.profiles import BEIJING_DAYLIGHT_H, LOAD_SHAPES, ambient_preset, hourly_to_periods, pv_shape
from ..grid.tariffs import preset_prices, tou_prices
from .spec import Scenario

_SEASON_BY_MONTH = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
                    6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}


@dataclass(frozen=True)
class Day:
    """One simulated day.

    instance : dict — instance-v1 mapping (site, tariff, the day's sessions)
    ambient_c : numpy.ndarray, shape (T,) — ambient temperature per period [°C]
    base_kw : numpy.ndarray, shape (T,) — base load of the whole site per period, before PV [kW]
    pv_kw : numpy.ndarray, shape (T,) — PV generation per period [kW]
    evs : int — EVs that came; turned_away : int — of those, how many found no free charger
    turned_away_kwh : float — energy those wanted [kWh]
    """

    instance: dict
    ambient_c: np.ndarray
    base_kw: np.ndarray
    pv_kw: np.ndarray
    evs: int
    turned_away: int
    turned_away_kwh: float


def day_rng(seed: int, day: int) -> np.random.Generator:
    """The random generator of day ``day`` (module notes)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(day),)))


def horizon_start(scenario: Scenario) -> datetime:
    h = scenario.horizon
    start = datetime.combine(h.date, time(0), tzinfo=ZoneInfo(h.timezone))
    return start + timedelta(hours=h.start_hour)


def period_hours(scenario: Scenario) -> np.ndarray:
    """Hour of day at the start of each period [h]."""
    h = scenario.horizon
    return (h.start_hour + np.arange(h.periods) * h.step_minutes / 60.0) % 24


def _from_midnight(values: np.ndarray, scenario: Scenario) -> np.ndarray:
    """A profile of 24 hourly values or one per period, both from 00:00, on the horizon's periods."""
    h = scenario.horizon
    if len(values) == 24:
        return hourly_to_periods(values, h.start_hour, h.step_minutes, h.periods)
    first = round(h.start_hour * 60 / h.step_minutes)
    return np.asarray(values, dtype=float)[(first + np.arange(h.periods)) % h.periods]


def base_shape_kw(scenario: Scenario) -> np.ndarray:
    """Expected base load per period before PV [kW] (the shipped shape x peak, or the CSV)."""
    b = scenario.base_load
    if scenario.base_csv_kw is not None:
        return _from_midnight(scenario.base_csv_kw, scenario)
    return b.peak() * _from_midnight(LOAD_SHAPES[b.shape], scenario)


def ambient_shape_c(scenario: Scenario) -> np.ndarray:
    """Expected ambient temperature per period [°C] (preset or CSV, plus ``offset_c``)."""
    a = scenario.transformer.ambient
    hourly = scenario.ambient_csv_c if a.csv is not None else ambient_preset(a.preset or "beijing-winter")
    return _from_midnight(hourly, scenario) + a.offset_c


def pv_shape_kw(scenario: Scenario) -> np.ndarray:
    """Clear-sky PV per period [kW], with Beijing's daylight for the season of ``horizon.date``."""
    if scenario.base_load.pv_peak_kw <= 0:
        return np.zeros(scenario.horizon.periods)
    season = "beijing-" + _SEASON_BY_MONTH[scenario.horizon.date.month]
    sunrise, sunset = BEIJING_DAYLIGHT_H[season]
    return scenario.base_load.pv_peak_kw * _from_midnight(pv_shape(sunrise, sunset, scenario.horizon.step_minutes),
                                                          scenario)


def prices(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Import and export price per period [CNY/kWh]."""
    h, t = scenario.horizon, scenario.tariff
    if t.period_by_hour is not None:
        imp = tou_prices(h.start_hour, h.step_minutes, h.periods, np.asarray(t.prices_cny_per_kwh, dtype=float),
                         np.asarray(t.period_by_hour))
    else:
        imp = preset_prices(t.preset or "beijing-tou", h.start_hour, h.step_minutes, h.periods)
    if t.export_cny_per_kwh is not None:
        exp = np.full_like(imp, t.export_cny_per_kwh)
    else:
        exp = imp * (t.export_fraction_of_import or 0.0)
    return imp, exp


def draw_size(scenario: Scenario) -> int:
    """EVs drawn per day: enough for the study's count and every hosting count (common random numbers)."""
    return max([scenario.evs, *scenario.hosting_counts(), 0])


def build_day(scenario: Scenario, day: int, evs: int | None = None) -> Day:
    """Day ``day`` of ``scenario`` with ``evs`` EVs (default: the scenario's count) as an instance-v1 mapping."""
    s = scenario
    n = s.evs if evs is None else int(evs)
    n_draw = max(draw_size(s), n)
    h, site, tr, f = s.horizon, s.site, s.transformer, s.fleet
    T, step = h.periods, h.step_minutes
    rng = day_rng(s.seed, day)
    # the day's factors, then the fleet (fixed order, module notes)
    base_factor = max(1.0 + s.base_load.daily_sd * rng.standard_normal(), 0.0)
    clearness = rng.uniform(s.base_load.pv_clearness_min, 1.0)
    ambient_offset = tr.ambient.daily_sd_c * rng.standard_normal()
    arrival_h = f.arrival_hour.sample(rng, n_draw)
    dwell_h = f.dwell_hours.sample(rng, n_draw)
    energy = f.energy_kwh.sample(rng, n_draw)
    weights = None if f.battery_weights is None else np.asarray(f.battery_weights) / np.sum(f.battery_weights)
    battery = np.asarray(f.battery_kwh, dtype=float)[rng.choice(len(f.battery_kwh), n_draw, p=weights)]
    soc0 = np.clip(f.initial_soc.sample(rng, n_draw), 0.0, 1.0)
    v2g = rng.random(n_draw) < f.v2g_share
    arrival_h, dwell_h, energy, battery, soc0, v2g = (a[:n] for a in (arrival_h, dwell_h, energy, battery, soc0, v2g))

    base = base_shape_kw(s) * base_factor
    pv = pv_shape_kw(s) * clearness
    ambient = ambient_shape_c(s) + ambient_offset

    # times in whole minutes from the horizon start; a car stays within the day
    arrive_min = np.minimum(np.round(((arrival_h - h.start_hour) % 24) * 60), 1440 - 5).astype(np.int64)
    leave_min = np.minimum(arrive_min + np.maximum(np.round(dwell_h * 60), 1), 1440).astype(np.int64)
    stay_h = (leave_min - arrive_min) / 60.0
    rate = min(site.charger_kw, site.meter_limit_kw)
    initial = np.round(battery * soc0, 3)
    request = np.minimum.reduce([energy, battery - initial, rate * site.efficiency * stay_h * 0.999])
    request = np.round(np.maximum(request, 0.0), 3)

    charger_of = assign_chargers(site.building_type == "residential", arrive_min, leave_min, site.charger_count, step)
    served = charger_of >= 0
    start = horizon_start(s)
    feeders = site.feeders
    nodes = [{"id": "T1", "parent": None, "kind": "transformer", "import_limit_kw": round(tr.control_limit_kw, 6),
              "export_limit_kw": round(tr.control_limit_kw, 6),
              "phase_import_limit_kw": None if tr.phase_limit_pct is None else
              round(tr.rated_kw / 3 * tr.phase_limit_pct / 100, 6)}]
    if feeders:
        for i in range(feeders):
            nodes.append({"id": f"F{i + 1}", "parent": "T1", "kind": "feeder",
                          "import_limit_kw": site.feeder_limit_kw,
                          "base_load_kw": np.round(base / feeders, 4).tolist()})
    else:
        nodes[0]["base_load_kw"] = np.round(base, 4).tolist()
    if np.any(pv > 0):
        nodes[0]["generation_kw"] = np.round(pv, 4).tolist()
    used = np.unique(charger_of[served])
    phases = {"rotate": None, "A": "A", "B": "B", "C": "C"}[site.phase_assignment]
    chargers = []
    for c in used.tolist():
        meter = f"M{c + 1:05d}"
        nodes.append({"id": meter, "parent": f"F{c % feeders + 1}" if feeders else "T1", "kind": "meter",
                      "import_limit_kw": site.meter_limit_kw})
        phase = "ABC" if site.charger_phases == "three" else (phases or "ABC"[c % 3])
        chargers.append({"id": f"C{c + 1:05d}", "node": meter, "max_charge_kw": site.charger_kw,
                         "max_discharge_kw": site.charger_kw if f.v2g_share > 0 else 0.0, "phases": phase,
                         "efficiency": site.efficiency, "min_current_a": site.min_current_a,
                         **({"current_step_a": site.current_step_a} if site.current_step_a else {})})
    times = pd.Timestamp(start) + pd.to_timedelta(np.r_[arrive_min, leave_min], unit="min")
    iso = [t.isoformat() for t in times]
    sessions = []
    for i in np.flatnonzero(served).tolist():
        session = {"id": f"S{i + 1:05d}", "charger": f"C{charger_of[i] + 1:05d}", "arrival": iso[i],
                   "departure": iso[n + i], "energy_kwh": float(request[i])}
        if v2g[i]:
            floor = min(initial[i], round(f.v2g_min_soc * battery[i], 3))
            session.update(max_discharge_kw=site.charger_kw, battery_kwh=float(battery[i]),
                           initial_kwh=float(initial[i]), min_kwh=float(floor))
        sessions.append(session)
    imp, exp = prices(s)
    instance = {
        "format": "gridcharge/instance-v1",
        "name": f"{s.name} day={day} evs={n} (gridcharge scenario, seed={s.seed})",
        "horizon": {"start": start.isoformat(), "step_minutes": step, "periods": T, "timezone": h.timezone},
        "nodes": nodes, "chargers": chargers, "sessions": sessions,
        "tariff": {"import_cny_per_kwh": np.round(imp, 6).tolist(), "export_cny_per_kwh": np.round(exp, 6).tolist(),
                   "currency": s.tariff.currency},
        "objective": {"unmet_penalty_cny_per_kwh": s.tariff.unmet_penalty_cny_per_kwh,
                      "degradation_cny_per_kwh": s.tariff.degradation_cny_per_kwh},
    }
    return Day(instance=instance, ambient_c=ambient, base_kw=base, pv_kw=pv, evs=n,
               turned_away=int((~served).sum()), turned_away_kwh=float(request[~served].sum()))


def assign_chargers(own_space: bool, arrive_min: np.ndarray, leave_min: np.ndarray, chargers: int,
            step_minutes: int) -> np.ndarray:
    """Charger index of each EV, -1 when turned away (module notes).

    A charger is free again at the end of the period in which its car left: instance-v1 counts every car present
    in a period with its full power (conservative), so two cars on one charger in one period would double its
    meter's load.
    """
    n = len(arrive_min)
    if own_space:
        return np.where(np.arange(n) < chargers, np.arange(n), -1)
    out = np.full(n, -1, dtype=np.int64)
    free = list(range(chargers))  # heap of free charger indices
    busy: list[tuple[int, int]] = []  # heap of (free again at [min], charger)
    for i in np.argsort(arrive_min, kind="stable").tolist():  # one pass over EVs (not EVs x periods)
        while busy and busy[0][0] <= arrive_min[i]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            c = heapq.heappop(free)
            out[i] = c
            free_at = -(-int(leave_min[i]) // step_minutes) * step_minutes  # end of the departure's period
            heapq.heappush(busy, (free_at, c))
    return out
