"""Seeded instance generators: realistic sites as instance-v1 mappings.

``residential`` builds a Beijing residential compound in the one-meter-per-space model (一表一车位): a distribution
transformer, feeders, and one meter per parking space, each with its own charger; evening arrivals and overnight
dwell. Every generated instance records its generator, parameters and seed in ``name``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from ..grid.profiles import HOUSEHOLD_PEAK_KW, HOUSEHOLD_SHAPE, hourly_to_periods
from ..grid.tariffs import tou_prices

BEIJING = timezone(timedelta(hours=8))


def residential(n_sessions: int, seed: int = 0, *, v2g_share: float = 1 / 3, feeders: int = 4,
                step_minutes: int = 15, periods: int = 96, start: str = "2026-01-15T12:00:00+08:00",
                households_per_space: float = 1.4, transformer_kw: float | None = None,
                ev_kw_per_space: float = 1.6, phase_limits: bool = True, charger_kw: float = 7.0) -> dict:
    """A residential compound, one charger per parking space, one session per charger over a winter day.

    Parameters
    ----------
    n_sessions : int — parking spaces = chargers = sessions
    seed : int — random seed; the same seed gives the same instance
    v2g_share : float — share of cars that consent to discharge [-]
    feeders : int — feeders under the transformer
    step_minutes, periods : the horizon (default 96 quarter-hours from ``start``)
    households_per_space : float — flats per parking space, for the base load [-]
    transformer_kw : float, optional — transformer import limit [kW]; default: household evening peak plus
        ``ev_kw_per_space`` per space (a tight compound: far below 7 kW per space)
    ev_kw_per_space : float — EV headroom per space used for the default transformer size [kW]
    phase_limits : bool — put a per-phase limit (36 % of the transformer limit) on the transformer
    charger_kw : float — charger and meter rating [kW]
    """
    rng = np.random.default_rng(seed)
    t0 = datetime.fromisoformat(start)
    start_hour = t0.hour + t0.minute / 60
    households = households_per_space * n_sessions
    base = HOUSEHOLD_PEAK_KW * households * hourly_to_periods(HOUSEHOLD_SHAPE, start_hour, step_minutes, periods)
    if transformer_kw is None:
        transformer_kw = float(np.ceil(base.max() + ev_kw_per_space * n_sessions))
    feeder_kw = float(np.ceil(transformer_kw / feeders * 1.1))

    nodes = [{
        "id": "T1", "parent": None, "kind": "transformer", "import_limit_kw": transformer_kw,
        "export_limit_kw": 0.0, "phase_import_limit_kw": round(0.36 * transformer_kw, 3) if phase_limits else None,
    }]
    share = np.full(feeders, 1.0 / feeders)
    for i in range(feeders):
        nodes.append({"id": f"F{i + 1}", "parent": "T1", "kind": "feeder", "import_limit_kw": feeder_kw,
                      "base_load_kw": np.round(base * share[i], 3).tolist()})
    chargers, sessions = [], []
    end = t0 + timedelta(minutes=step_minutes * periods)
    arrive_h = np.clip(rng.normal(18.8, 1.6, n_sessions), 14.0, 23.5)
    leave_h = np.clip(rng.normal(31.5, 1.2, n_sessions), arrive_h + 1.0, 35.9)  # next morning, hours after 00:00 day 1
    energy = np.round(np.clip(rng.gamma(4.0, 3.5, n_sessions), 2.0, 45.0), 2)
    v2g = rng.random(n_sessions) < v2g_share
    battery = rng.choice([50.0, 60.0, 75.0], n_sessions)
    initial = np.round(battery * rng.uniform(0.3, 0.5, n_sessions), 2)
    phases = np.array(["A", "B", "C"])[np.arange(n_sessions) % 3]
    day0 = t0.replace(hour=0, minute=0, second=0, microsecond=0)
    for i in range(n_sessions):
        meter, charger = f"M{i + 1:05d}", f"C{i + 1:05d}"
        nodes.append({"id": meter, "parent": f"F{i % feeders + 1}", "kind": "meter", "import_limit_kw": charger_kw})
        chargers.append({"id": charger, "node": meter, "max_charge_kw": charger_kw,
                         "max_discharge_kw": charger_kw if v2g[i] else 0.0, "phases": str(phases[i]),
                         "efficiency": 0.95})
        arrival = day0 + timedelta(minutes=int(round(arrive_h[i] * 60)))
        departure = min(day0 + timedelta(minutes=int(round(leave_h[i] * 60))), end)
        session = {"id": f"S{i + 1:05d}", "charger": charger, "arrival": arrival.isoformat(),
                   "departure": departure.isoformat(), "energy_kwh": float(min(energy[i], battery[i] - initial[i]))}
        if v2g[i]:
            session.update(max_discharge_kw=charger_kw, battery_kwh=float(battery[i]), initial_kwh=float(initial[i]),
                           min_kwh=float(round(0.2 * battery[i], 2)))
        sessions.append(session)

    tou = tou_prices(start_hour, step_minutes, periods)
    return {
        "format": "gridcharge/instance-v1",
        "name": f"residential n_sessions={n_sessions} seed={seed} v2g_share={v2g_share:.3f} feeders={feeders} "
                f"transformer_kw={transformer_kw} (gridcharge.bench.generate.residential)",
        "horizon": {"start": t0.isoformat(), "step_minutes": step_minutes, "periods": periods},
        "nodes": nodes,
        "chargers": chargers,
        "sessions": sessions,
        "tariff": {"import_cny_per_kwh": tou.tolist(), "export_cny_per_kwh": np.round(tou * 0.9, 4).tolist()},
        "objective": {"unmet_penalty_cny_per_kwh": 100.0, "degradation_cny_per_kwh": 0.1},
    }
