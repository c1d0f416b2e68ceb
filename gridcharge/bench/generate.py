"""Seeded instance generators: realistic sites as instance-v1 mappings.

:func:`generate` is the entry point (``gridcharge.generate`` and ``gridcharge generate`` on the CLI). Kinds:

- ``residential`` — a Beijing residential compound in the one-meter-per-space model (一表一车位, 100 % build-out):
  a distribution transformer, feeders, one meter per parking space with its own charger; evening arrivals and
  overnight dwell (:func:`residential`);
- ``office`` — an office car park with chargers on 25 % of the spaces: morning arrivals, a working day's dwell,
  7 kW single-phase chargers on distribution boards of 10 under the building's transformer (:func:`office`);
- ``carpark`` — a public car park: 60 kW three-phase DC chargers in cabinets of 4, several short visits per charger
  over the day (:func:`carpark`);
- ``feeder`` — a 10 kV feeder (the root node) with several transformers beneath, each one a residential, office or
  car-park site of about ``site_sessions`` sessions (:func:`feeder`); the XL and XXL benchmark instances;
- ``district`` — a 110/10 kV substation, its 10 kV lines and ``transformers`` 400-800 kVA distribution transformers
  of those three kinds, the substation and line limits calibrated to bind (:func:`district`).

Options on every kind: ``capacity`` (``"tight"``, ``"loose"`` or ``"default"`` transformer headroom for charging),
``v2g_share`` (share of cars that allow discharge), ``phase_limits`` (a per-phase import limit on each transformer)
and ``pv_kw`` (rooftop PV on each transformer [kW peak], as the node's ``generation_kw``, with an export limit equal to
it). Every generated instance records its generator, parameters and seed in ``name`` (instance-v1 has no other free
field). The same arguments always give the same bytes.

No Python loop over sessions does anything but build the output dicts: the draws, times and ISO strings are numpy.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from ..grid.profiles import HOUSEHOLD_PEAK_KW, HOUSEHOLD_SHAPE, hourly_to_periods
from ..grid.tariffs import tou_prices
from ..instance import load_instance
from ..problem import build_problem
from ..schedule import node_loads
from ..solvers.baselines import uncontrolled

BEIJING = timezone(timedelta(hours=8))

#: The kinds :func:`generate` knows.
KINDS = ("residential", "office", "carpark", "feeder", "district")
#: EV headroom of the transformer per charger for each capacity variant [kW], by kind: the transformer is sized at
#: the site's base-load peak plus this times the number of chargers (residential: per space = per charger).
CAPACITY_KW_PER_CHARGER = {
    "residential": {"tight": 0.8, "default": 1.6, "loose": 4.0},
    "office": {"tight": 1.5, "default": 3.0, "loose": 6.0},
    "carpark": {"tight": 6.0, "default": 15.0, "loose": 40.0},
}
#: Feeder root limit as a share of the sum of its transformers' limits, per capacity variant [-].
FEEDER_DIVERSITY = {"tight": 0.8, "default": 0.9, "loose": 1.2}

#: Office building demand shape, hourly from 00:00, as a fraction of its daily peak [-] (working hours 08:00-18:00).
OFFICE_SHAPE = np.array([
    0.25, 0.24, 0.24, 0.24, 0.24, 0.26, 0.32, 0.50, 0.80, 0.95, 1.00, 1.00,
    0.92, 0.95, 1.00, 0.98, 0.92, 0.80, 0.55, 0.40, 0.35, 0.30, 0.28, 0.26,
])
#: Office building peak demand per parking space (floor area served by one space) [kW].
OFFICE_PEAK_KW_PER_SPACE = 1.5
#: Public car park lighting, ventilation and pay stations per space, flat [kW].
CARPARK_BASE_KW_PER_SPACE = 0.1
#: Clear-sky PV output in winter, hourly from 00:00, as a fraction of peak [-].
PV_SHAPE = np.array([
    0, 0, 0, 0, 0, 0, 0, 0.02, 0.15, 0.38, 0.60, 0.75,
    0.80, 0.75, 0.60, 0.38, 0.15, 0.02, 0, 0, 0, 0, 0, 0,
], dtype=float)


def generate(kind: str, n_sessions: int, seed: int = 0, *, label: str | None = None, **params) -> dict:
    """A seeded instance-v1 mapping of a realistic site.

    Parameters
    ----------
    kind : str — one of :data:`KINDS`: ``residential``, ``office``, ``carpark``, ``feeder``, ``district``
    n_sessions : int — charging sessions (cars) [-], >= 1
    seed : int — random seed; the same arguments give the same instance, byte for byte
    label : str, optional — a short name put in front of ``name`` (e.g. ``residential-M-tight``)
    **params — passed to the kind's generator: ``capacity`` (``"tight"`` / ``"default"`` / ``"loose"``),
        ``v2g_share`` [-], ``phase_limits`` (bool), ``pv_kw`` [kW] and the kind's own options (see :func:`residential`,
        :func:`office`, :func:`carpark`, :func:`feeder`, :func:`district`; a district takes no ``capacity`` or
        ``pv_kw``: its limits are calibrated)

    Returns
    -------
    dict — an instance-v1 mapping; ``name`` records the generator, its parameters and the seed

    Raises
    ------
    ValueError — an unknown kind, a bad size or option (the message names it, its value and what was expected)
    """
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} — expected one of {', '.join(KINDS)}")
    if isinstance(n_sessions, bool) or not isinstance(n_sessions, (int, np.integer)) or n_sessions < 1:
        raise ValueError(f"n_sessions: {n_sessions!r} — expected a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: {seed!r} — expected a whole number >= 0")
    if kind == "district" and {"capacity", "pv_kw"} & params.keys():
        raise ValueError("capacity, pv_kw: not options of a district (its limits are calibrated: substation_share, "
                         "line_share)")
    capacity = params.get("capacity", "default")
    if capacity not in ("tight", "default", "loose"):
        raise ValueError(f"capacity: {capacity!r} — expected 'tight', 'default' or 'loose'")
    share = params.get("v2g_share")
    if share is not None and not (isinstance(share, (int, float)) and 0.0 <= share <= 1.0):
        raise ValueError(f"v2g_share: {share!r} — expected a number in [0, 1]")
    pv = params.get("pv_kw", 0.0)
    if not (isinstance(pv, (int, float)) and pv >= 0):
        raise ValueError(f"pv_kw: {pv!r} — expected a number >= 0 [kW]")
    if kind == "residential":
        params = dict(params)
        capacity = params.pop("capacity", None)
        extra = ""
        if capacity is not None:
            if "ev_kw_per_space" in params:
                raise ValueError("capacity and ev_kw_per_space: give one of them, not both")
            params["ev_kw_per_space"] = CAPACITY_KW_PER_CHARGER["residential"][capacity]  # recorded as such
        data = residential(int(n_sessions), int(seed), **params)
        # record every explicitly given parameter that the residential name does not already show
        shown = {"v2g_share", "feeders", "transformer_kw"}
        extra += "".join(f" {k}={params[k]}" for k in sorted(params) if k not in shown)
        data["name"] = data["name"] + extra
    else:
        builder = {"office": office, "carpark": carpark, "feeder": feeder, "district": district}[kind]
        data = builder(int(n_sessions), int(seed), **params)
    if label:
        data["name"] = f"{label}: {data['name']}"
    return data


# ----------------------------------------------------------------------------------------------------------------
# shared pieces


def _iso(day0: datetime, minutes: np.ndarray) -> list[str]:
    """ISO-8601 strings of ``day0 + minutes`` with ``day0``'s UTC offset, as ``datetime.isoformat`` writes them."""
    base = np.datetime64(day0.replace(tzinfo=None), "m")
    stamps = np.datetime_as_string(base + np.asarray(minutes, dtype=np.int64).astype("timedelta64[m]"), unit="s")
    suffix = day0.isoformat()[19:]
    return [stamp + suffix for stamp in stamps.tolist()]


def _horizon(start: str, step_minutes: int, periods: int):
    t0 = datetime.fromisoformat(start)
    day0 = t0.replace(hour=0, minute=0, second=0, microsecond=0)
    start_hour = t0.hour + t0.minute / 60
    end_min = int((t0 - day0).total_seconds() // 60) + step_minutes * periods
    return t0, day0, start_hour, end_min


def _sessions(prefix: str, charger_ids: list[str], arrive_min, leave_min, energy, v2g, battery, initial,
              discharge_kw, day0: datetime) -> list[dict]:
    """Session dicts; battery fields only for V2G cars. Times as minutes from ``day0`` (local wall clock)."""
    n = len(charger_ids)
    arrival, departure = _iso(day0, arrive_min), _iso(day0, leave_min)
    energy = np.minimum(energy, battery - initial).tolist()
    floor = np.minimum(np.round(0.2 * battery, 2), initial).tolist()  # 20 % floor, never above the state at arrival
    battery, initial, v2g = battery.tolist(), initial.tolist(), v2g.tolist()
    discharge_kw = np.broadcast_to(np.asarray(discharge_kw, dtype=float), (n,)).tolist()
    sessions = []
    for i in range(n):
        session = {"id": f"{prefix}S{i + 1:05d}", "charger": charger_ids[i], "arrival": arrival[i],
                   "departure": departure[i], "energy_kwh": energy[i]}
        if v2g[i]:
            session.update(max_discharge_kw=discharge_kw[i], battery_kwh=battery[i], initial_kwh=initial[i],
                           min_kwh=floor[i])
        sessions.append(session)
    return sessions


def _pv(pv_kw: float, start_hour: float, step_minutes: int, periods: int) -> list[float]:
    return np.round(pv_kw * hourly_to_periods(PV_SHAPE, start_hour, step_minutes, periods), 3).tolist()


def _tariff_objective(start_hour: float, step_minutes: int, periods: int) -> dict:
    tou = tou_prices(start_hour, step_minutes, periods)
    return {
        "tariff": {"import_cny_per_kwh": tou.tolist(), "export_cny_per_kwh": np.round(tou * 0.9, 4).tolist()},
        "objective": {"unmet_penalty_cny_per_kwh": 100.0, "degradation_cny_per_kwh": 0.1},
    }


def _instance(name: str, t0: datetime, step_minutes: int, periods: int, nodes, chargers, sessions,
              start_hour: float) -> dict:
    return {"format": "gridcharge/instance-v1", "name": name,
            "horizon": {"start": t0.isoformat(), "step_minutes": step_minutes, "periods": periods},
            "nodes": nodes, "chargers": chargers, "sessions": sessions,
            **_tariff_objective(start_hour, step_minutes, periods)}


def _transformer(node_id: str, parent: str | None, limit_kw: float, phase_limits: bool, pv: list[float] | None,
                 pv_kw: float) -> dict:
    node = {"id": node_id, "parent": parent, "kind": "transformer", "import_limit_kw": limit_kw,
            "export_limit_kw": float(pv_kw) if pv else 0.0,
            "phase_import_limit_kw": round(0.36 * limit_kw, 3) if phase_limits else None}
    if pv:
        node["generation_kw"] = pv
    return node


# ----------------------------------------------------------------------------------------------------------------
# residential


def _residential_draws(rng: np.random.Generator, n: int, v2g_share: float):
    """Arrival/departure hours (from 00:00 of the first day), energy, V2G flags, battery size and state at arrival."""
    arrive_h = np.clip(rng.normal(18.8, 1.6, n), 14.0, 23.5)
    leave_h = np.clip(rng.normal(31.5, 1.2, n), arrive_h + 1.0, 35.9)  # next morning, hours after 00:00 day 1
    energy = np.round(np.clip(rng.gamma(4.0, 3.5, n), 2.0, 45.0), 2)
    v2g = rng.random(n) < v2g_share
    battery = rng.choice([50.0, 60.0, 75.0], n)
    initial = np.round(battery * rng.uniform(0.3, 0.5, n), 2)
    return arrive_h, leave_h, energy, v2g, battery, initial


def _residential_site(rng, n: int, prefix: str, parent: str | None, horizon, *, v2g_share: float, feeders: int,
                      households_per_space: float, transformer_kw: float | None, ev_kw_per_space: float,
                      phase_limits: bool, charger_kw: float, pv_kw: float):
    """Nodes, chargers and sessions of one compound; ``transformer_kw`` None sizes it from ``ev_kw_per_space``."""
    t0, day0, start_hour, end_min, step_minutes, periods = horizon
    base = HOUSEHOLD_PEAK_KW * households_per_space * n * hourly_to_periods(HOUSEHOLD_SHAPE, start_hour,
                                                                             step_minutes, periods)
    if transformer_kw is None:
        transformer_kw = float(np.ceil(base.max() + ev_kw_per_space * n))
    feeder_kw = float(np.ceil(transformer_kw / feeders * 1.1))
    pv = _pv(pv_kw, start_hour, step_minutes, periods) if pv_kw > 0 else None
    nodes = [_transformer(f"{prefix}T1", parent, transformer_kw, phase_limits, pv, pv_kw)]
    share = np.full(feeders, 1.0 / feeders)
    for i in range(feeders):
        nodes.append({"id": f"{prefix}F{i + 1}", "parent": f"{prefix}T1", "kind": "feeder",
                      "import_limit_kw": feeder_kw, "base_load_kw": np.round(base * share[i], 3).tolist()})
    arrive_h, leave_h, energy, v2g, battery, initial = _residential_draws(rng, n, v2g_share)
    phases = ("A", "B", "C")
    meters = [f"{prefix}M{i + 1:05d}" for i in range(n)]
    charger_ids = [f"{prefix}C{i + 1:05d}" for i in range(n)]
    v2g_list = v2g.tolist()
    nodes += [{"id": meters[i], "parent": f"{prefix}F{i % feeders + 1}", "kind": "meter",
               "import_limit_kw": charger_kw} for i in range(n)]
    chargers = [{"id": charger_ids[i], "node": meters[i], "max_charge_kw": charger_kw,
                 "max_discharge_kw": charger_kw if v2g_list[i] else 0.0, "phases": phases[i % 3],
                 "efficiency": 0.95} for i in range(n)]
    arrive_min = np.rint(arrive_h * 60).astype(np.int64)
    leave_min = np.minimum(np.rint(leave_h * 60).astype(np.int64), end_min)
    sessions = _sessions(prefix, charger_ids, arrive_min, leave_min, energy, v2g, battery, initial, charger_kw, day0)
    return nodes, chargers, sessions, transformer_kw


def residential(n_sessions: int, seed: int = 0, *, v2g_share: float = 1 / 3, feeders: int = 4,
                step_minutes: int = 15, periods: int = 96, start: str = "2026-01-15T12:00:00+08:00",
                households_per_space: float = 1.4, transformer_kw: float | None = None,
                ev_kw_per_space: float = 1.6, phase_limits: bool = True, charger_kw: float = 7.0,
                pv_kw: float = 0.0) -> dict:
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
    pv_kw : float — rooftop PV on the transformer [kW peak] (winter clear-sky shape); 0 = none (the default, which
        leaves the instance exactly as without this option)
    """
    rng = np.random.default_rng(seed)
    horizon = (*_horizon(start, step_minutes, periods), step_minutes, periods)
    nodes, chargers, sessions, transformer_kw = _residential_site(
        rng, n_sessions, "", None, horizon, v2g_share=v2g_share, feeders=feeders,
        households_per_space=households_per_space, transformer_kw=transformer_kw, ev_kw_per_space=ev_kw_per_space,
        phase_limits=phase_limits, charger_kw=charger_kw, pv_kw=pv_kw)
    name = (f"residential n_sessions={n_sessions} seed={seed} v2g_share={v2g_share:.3f} feeders={feeders} "
            f"transformer_kw={transformer_kw} (gridcharge.bench.generate.residential)")
    return _instance(name, horizon[0], step_minutes, periods, nodes, chargers, sessions, horizon[2])


# ----------------------------------------------------------------------------------------------------------------
# office and public car park


def _office_site(rng, n: int, prefix: str, parent: str | None, horizon, *, v2g_share: float, capacity: str,
                 transformer_kw: float | None, phase_limits: bool, charger_kw: float, pv_kw: float,
                 spaces_per_charger: float, board_size: int):
    t0, day0, start_hour, end_min, step_minutes, periods = horizon
    spaces = spaces_per_charger * n
    base = OFFICE_PEAK_KW_PER_SPACE * spaces * hourly_to_periods(OFFICE_SHAPE, start_hour, step_minutes, periods)
    if transformer_kw is None:
        transformer_kw = float(np.ceil(base.max() + CAPACITY_KW_PER_CHARGER["office"][capacity] * n))
    boards = -(-n // board_size)
    board_kw = float(np.ceil(0.7 * board_size * charger_kw))
    pv = _pv(pv_kw, start_hour, step_minutes, periods) if pv_kw > 0 else None
    nodes = [_transformer(f"{prefix}T1", parent, transformer_kw, phase_limits, pv, pv_kw),
             {"id": f"{prefix}B0", "parent": f"{prefix}T1", "kind": "group", "base_load_kw": np.round(base, 3).tolist()}]
    nodes += [{"id": f"{prefix}B{b + 1}", "parent": f"{prefix}T1", "kind": "group", "import_limit_kw": board_kw}
              for b in range(boards)]
    # morning arrivals, a working day's dwell (hours from 00:00 of the first day)
    arrive_h = np.clip(rng.normal(8.8, 0.7, n), 7.0, 11.5)
    dwell_h = np.clip(rng.normal(8.8, 1.3, n), 2.0, 11.0)
    energy = np.round(np.clip(rng.gamma(3.0, 4.0, n), 2.0, 40.0), 2)
    v2g = rng.random(n) < v2g_share
    battery = rng.choice([50.0, 60.0, 75.0], n)
    initial = np.round(battery * rng.uniform(0.3, 0.6, n), 2)
    arrive_min = np.rint(arrive_h * 60).astype(np.int64)
    leave_min = np.minimum(arrive_min + np.rint(dwell_h * 60).astype(np.int64), end_min)
    ok = leave_min > arrive_min + 15
    arrive_min = np.where(ok, arrive_min, end_min - 60)  # a horizon too short for the day: a last hour
    leave_min = np.where(ok, leave_min, end_min)
    charger_ids = [f"{prefix}C{i + 1:05d}" for i in range(n)]
    boards_of = [f"{prefix}B{i // board_size + 1}" for i in range(n)]
    phases = ("A", "B", "C")
    v2g_list = v2g.tolist()
    chargers = [{"id": charger_ids[i], "node": boards_of[i], "max_charge_kw": charger_kw,
                 "max_discharge_kw": charger_kw if v2g_list[i] else 0.0, "phases": phases[i % 3],
                 "efficiency": 0.95} for i in range(n)]
    sessions = _sessions(prefix, charger_ids, arrive_min, leave_min, energy, v2g, battery, initial, charger_kw, day0)
    return nodes, chargers, sessions, transformer_kw


def _carpark_site(rng, n: int, prefix: str, parent: str | None, horizon, *, v2g_share: float, capacity: str,
                  transformer_kw: float | None, phase_limits: bool, charger_kw: float, pv_kw: float,
                  sessions_per_charger: int, cabinet_size: int, spaces_per_charger: float):
    t0, day0, start_hour, end_min, step_minutes, periods = horizon
    n_chargers = -(-n // sessions_per_charger)
    base = np.full(periods, CARPARK_BASE_KW_PER_SPACE * spaces_per_charger * n_chargers)
    if transformer_kw is None:
        transformer_kw = float(np.ceil(base.max() + CAPACITY_KW_PER_CHARGER["carpark"][capacity] * n_chargers))
    cabinets = -(-n_chargers // cabinet_size)
    cabinet_kw = float(np.ceil(0.75 * cabinet_size * charger_kw))
    pv = _pv(pv_kw, start_hour, step_minutes, periods) if pv_kw > 0 else None
    nodes = [_transformer(f"{prefix}T1", parent, transformer_kw, phase_limits, pv, pv_kw),
             {"id": f"{prefix}K0", "parent": f"{prefix}T1", "kind": "group",
              "base_load_kw": float(round(base[0], 3))}]
    nodes += [{"id": f"{prefix}K{k + 1}", "parent": f"{prefix}T1", "kind": "group", "import_limit_kw": cabinet_kw}
              for k in range(cabinets)]
    # visits one after another on each charger: (charger, visit) grids of gaps and dwells [minutes from 00:00]
    k = sessions_per_charger
    first = rng.uniform(7.5, 11.0, (n_chargers, 1)) * 60
    gap = rng.exponential(40.0, (n_chargers, k)).clip(5.0, 150.0)
    gap[:, 0] = 0.0
    dwell = rng.lognormal(np.log(80.0), 0.45, (n_chargers, k)).clip(20.0, 210.0)
    ends = np.cumsum(gap, axis=1) + np.cumsum(dwell, axis=1)  # minutes after the first arrival
    starts = ends - dwell
    # a charger whose visits would run past the horizon has its day compressed to fit (order and gaps kept)
    scale = np.minimum(1.0, (end_min - 10 - first) / ends[:, -1:])
    arrive = np.rint(first + starts * scale).astype(np.int64).ravel()[:n]
    leave = np.rint(first + ends * scale).astype(np.int64).ravel()[:n]
    charger_index = np.arange(n) // k
    energy = np.round(np.clip(rng.gamma(3.0, 7.0, n), 3.0, 60.0), 2)
    v2g = rng.random(n) < v2g_share
    battery = rng.choice([50.0, 60.0, 75.0, 90.0], n)
    initial = np.round(battery * rng.uniform(0.15, 0.5, n), 2)
    charger_ids = [f"{prefix}C{c + 1:05d}" for c in range(n_chargers)]
    chargers = [{"id": charger_ids[c], "node": f"{prefix}K{c // cabinet_size + 1}", "max_charge_kw": charger_kw,
                 "max_discharge_kw": charger_kw if v2g_share > 0 else 0.0, "phases": "ABC", "efficiency": 0.93}
                for c in range(n_chargers)]
    session_chargers = [charger_ids[c] for c in charger_index.tolist()]
    sessions = _sessions(prefix, session_chargers, arrive, leave, energy, v2g, battery, initial, charger_kw, day0)
    return nodes, chargers, sessions, transformer_kw


def _kind_name(kind: str, n: int, seed: int, shown: dict) -> str:
    described = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    return f"{kind} n_sessions={n} seed={seed} {described} (gridcharge.bench.generate.{kind})"


def office(n_sessions: int, seed: int = 0, *, capacity: str = "default", v2g_share: float = 0.2,
           phase_limits: bool = True, pv_kw: float = 0.0, charger_kw: float = 7.0, spaces_per_charger: float = 4.0,
           board_size: int = 10, transformer_kw: float | None = None, step_minutes: int = 15, periods: int = 64,
           start: str = "2026-01-15T06:00:00+08:00") -> dict:
    """An office car park with chargers on 1 / ``spaces_per_charger`` of its spaces (25 % by default).

    Morning arrivals (normal 08:48, σ 0.7 h), a working day's dwell (normal 8.8 h, σ 1.3 h), energy gamma mean
    12 kWh; 7 kW single-phase chargers (A/B/C in turn) on distribution boards of ``board_size`` rated 70 % of their
    chargers, under the building transformer, whose base load is the office shape at 1.5 kW per space. Horizon:
    ``periods`` quarter-hours from ``start`` (06:00-22:00).

    Parameters
    ----------
    n_sessions : int — chargers = sessions (one car per charger per day)
    seed : int
    capacity : str — transformer headroom for EVs: tight 1.5, default 3, loose 6 [kW per charger]
    v2g_share : float [-]; phase_limits : bool; pv_kw : float [kW peak]; charger_kw : float [kW]
    spaces_per_charger : float [-]; board_size : int [chargers]; transformer_kw : float, optional [kW]
    step_minutes : int [minutes]; periods : int; start : str (ISO-8601 with offset)
    """
    rng = np.random.default_rng(seed)
    horizon = (*_horizon(start, step_minutes, periods), step_minutes, periods)
    nodes, chargers, sessions, limit = _office_site(
        rng, n_sessions, "", None, horizon, v2g_share=v2g_share, capacity=capacity, transformer_kw=transformer_kw,
        phase_limits=phase_limits, charger_kw=charger_kw, pv_kw=pv_kw, spaces_per_charger=spaces_per_charger,
        board_size=board_size)
    name = _kind_name("office", n_sessions, seed, {"capacity": capacity, "v2g_share": float(v2g_share),
                                                   "phase_limits": phase_limits, "pv_kw": pv_kw,
                                                   "transformer_kw": limit})
    return _instance(name, horizon[0], step_minutes, periods, nodes, chargers, sessions, horizon[2])


def carpark(n_sessions: int, seed: int = 0, *, capacity: str = "default", v2g_share: float = 0.0,
            phase_limits: bool = False, pv_kw: float = 0.0, charger_kw: float = 60.0, sessions_per_charger: int = 3,
            cabinet_size: int = 4, spaces_per_charger: float = 5.0, transformer_kw: float | None = None,
            step_minutes: int = 15, periods: int = 64, start: str = "2026-01-15T06:00:00+08:00") -> dict:
    """A public car park: ``sessions_per_charger`` short visits one after another on each DC charger.

    First visit 07:30-11:00 (uniform), gaps exponential (mean 40 min), dwell log-normal (median 80 min, 20-210 min),
    energy gamma mean 21 kWh; 60 kW three-phase chargers, efficiency 0.93, in cabinets of ``cabinet_size`` rated
    75 % of their chargers; a flat 0.1 kW per space of lighting and ventilation (20 % of spaces have chargers).
    No V2G by default.

    Parameters
    ----------
    n_sessions : int — visits [-]; chargers = ceil(n_sessions / sessions_per_charger)
    seed : int
    capacity : str — transformer headroom: tight 6, default 15, loose 40 [kW per charger]
    v2g_share : float [-]; phase_limits : bool; pv_kw : float [kW peak]; charger_kw : float [kW]
    sessions_per_charger : int; cabinet_size : int [chargers]; spaces_per_charger : float [-]
    transformer_kw : float, optional [kW]; step_minutes : int [minutes]; periods : int; start : str
    """
    rng = np.random.default_rng(seed)
    horizon = (*_horizon(start, step_minutes, periods), step_minutes, periods)
    nodes, chargers, sessions, limit = _carpark_site(
        rng, n_sessions, "", None, horizon, v2g_share=v2g_share, capacity=capacity, transformer_kw=transformer_kw,
        phase_limits=phase_limits, charger_kw=charger_kw, pv_kw=pv_kw, sessions_per_charger=sessions_per_charger,
        cabinet_size=cabinet_size, spaces_per_charger=spaces_per_charger)
    name = _kind_name("carpark", n_sessions, seed, {"capacity": capacity, "v2g_share": float(v2g_share),
                                                    "phase_limits": phase_limits, "pv_kw": pv_kw,
                                                    "transformer_kw": limit})
    return _instance(name, horizon[0], step_minutes, periods, nodes, chargers, sessions, horizon[2])


# ----------------------------------------------------------------------------------------------------------------
# feeder of several transformers

#: Site kinds of the transformers under a feeder, in turn: three compounds, an office, a public car park.
FEEDER_MIX = ("residential", "residential", "office", "residential", "carpark")


#: Each site kind's default share of cars that allow discharge [-] (as :func:`residential`, :func:`office`,
#: :func:`carpark`).
SITE_V2G_SHARE = {"residential": 1 / 3, "office": 0.2, "carpark": 0.0}


def _site(kind: str, rng, size: int, prefix: str, parent: str, horizon, *, v2g_share: float | None, capacity: str,
          phase_limits: bool, pv_kw: float, transformer_kw: float | None = None):
    """One site of ``kind`` under ``parent`` with the builders' default layout (the feeder's and district's sites):
    nodes, chargers, sessions and the transformer limit [kW]."""
    share = SITE_V2G_SHARE[kind] if v2g_share is None else v2g_share
    if kind == "residential":
        return _residential_site(
            rng, size, prefix, parent, horizon, v2g_share=share, feeders=4, households_per_space=1.4,
            transformer_kw=transformer_kw, ev_kw_per_space=CAPACITY_KW_PER_CHARGER["residential"][capacity],
            phase_limits=phase_limits, charger_kw=7.0, pv_kw=pv_kw)
    if kind == "office":
        return _office_site(rng, size, prefix, parent, horizon, v2g_share=share, capacity=capacity,
                            transformer_kw=transformer_kw, phase_limits=phase_limits, charger_kw=7.0, pv_kw=pv_kw,
                            spaces_per_charger=4.0, board_size=10)
    return _carpark_site(rng, size, prefix, parent, horizon, v2g_share=share, capacity=capacity,
                         transformer_kw=transformer_kw, phase_limits=False, charger_kw=60.0, pv_kw=pv_kw,
                         sessions_per_charger=3, cabinet_size=4, spaces_per_charger=5.0)


def feeder(n_sessions: int, seed: int = 0, *, capacity: str = "default", v2g_share: float | None = None,
           phase_limits: bool = True, pv_kw: float = 0.0, site_sessions: int = 2000,
           mix: tuple[str, ...] = FEEDER_MIX, step_minutes: int = 15, periods: int = 96,
           start: str = "2026-01-15T07:00:00+08:00") -> dict:
    """A 10 kV feeder (root, kind ``feeder``) with transformers beneath, each a site from ``mix`` in turn.

    ``n_sessions`` is split as evenly as possible over ``max(2, ceil(n_sessions / site_sessions))`` transformers
    (one for a single session).
    Each site is built as by :func:`residential`, :func:`office` or :func:`carpark` (ids prefixed ``Tnn-``) on the
    feeder's common horizon (96 quarter-hours from 07:00: residential departures after 07:00 are cut to 07:00); the
    feeder's import limit is :data:`FEEDER_DIVERSITY` [capacity] times the sum of its transformers' limits.

    Parameters
    ----------
    n_sessions : int [-]; seed : int; capacity : str — ``tight`` / ``default`` / ``loose`` for every transformer and
        the feeder
    v2g_share : float, optional — override every site's default V2G share [-]
    phase_limits : bool — per-phase limits on the residential and office transformers
    pv_kw : float — PV on each transformer [kW peak]
    site_sessions : int — sessions per transformer, about [-]
    mix : tuple of str — site kinds in turn
    step_minutes : int [minutes]; periods : int; start : str (ISO-8601 with offset)
    """
    for i, kind in enumerate(mix):
        if kind not in ("residential", "office", "carpark"):
            raise ValueError(f"mix[{i}]: {kind!r} — expected 'residential', 'office' or 'carpark'")
    rng = np.random.default_rng(seed)
    horizon = (*_horizon(start, step_minutes, periods), step_minutes, periods)
    n_sites = min(n_sessions, max(2, -(-n_sessions // site_sessions)))  # at least 2 unless 1 session
    sizes = [len(part) for part in np.array_split(np.arange(n_sessions), n_sites)]
    nodes = [{"id": "FDR", "parent": None, "kind": "feeder", "import_limit_kw": 0.0, "export_limit_kw": 0.0}]
    chargers, sessions, limits = [], [], []
    for k, size in enumerate(sizes):
        kind = mix[k % len(mix)]
        prefix = f"T{k + 1:02d}-"
        site_rng = np.random.default_rng([seed, k])
        parts = _site(kind, site_rng, size, prefix, "FDR", horizon, v2g_share=v2g_share, capacity=capacity,
                      phase_limits=phase_limits, pv_kw=pv_kw)
        site_nodes, site_chargers, site_sessions_list, limit = parts
        # the session counter restarts per site; the prefix keeps ids unique
        nodes += site_nodes
        chargers += site_chargers
        sessions += site_sessions_list
        limits.append(limit)
    feeder_kw = float(np.ceil(FEEDER_DIVERSITY[capacity] * sum(limits)))
    nodes[0]["import_limit_kw"] = feeder_kw
    nodes[0]["export_limit_kw"] = float(pv_kw * len(limits)) if pv_kw > 0 else 0.0
    del rng  # every site draws from its own stream (seed, site index), so sites do not shift when one changes
    name = _kind_name("feeder", n_sessions, seed, {"capacity": capacity, "v2g_share": v2g_share,
                                                   "phase_limits": phase_limits, "pv_kw": pv_kw,
                                                   "site_sessions": site_sessions, "transformers": len(limits),
                                                   "mix": "/".join(mix), "feeder_kw": feeder_kw})
    return _instance(name, horizon[0], step_minutes, periods, nodes, chargers, sessions, horizon[2])


# ----------------------------------------------------------------------------------------------------------------
# district: a 110/10 kV substation, its 10 kV lines, their distribution transformers

#: Standard ratings of 10/0.4 kV distribution transformers [kVA]; a district's are drawn from the first four.
TRANSFORMER_KVA = (400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500)
#: Power factor that turns a transformer's rating into its import limit [kW per kVA].
POWER_FACTOR = 0.95
#: Sessions a transformer of each kind carries per kVA of rating at a typical Beijing loading [sessions/kVA]: a
#: compound's evening base load is then about 60 % of its limit, an office's about 50 %.
SESSIONS_PER_KVA = {"residential": 0.35, "office": 0.08, "carpark": 0.15}
#: Most sessions per kVA, as a multiple of :data:`SESSIONS_PER_KVA`, before the transformers are upsized: above it
#: a compound's base load alone would come near its limit [-].
MAX_LOADING = 1.4
#: Transformers per 10 kV line, about [-] (the default number of lines is ``ceil(transformers / this)``, at least 2).
TRANSFORMERS_PER_LINE = 30


def district(n_sessions: int, seed: int = 0, *, transformers: int = 10, lines: int | None = None,
             substation_share: float = 0.1, line_share: float = 0.5, v2g_share: float | None = None,
             phase_limits: bool = True, mix: tuple[str, ...] = FEEDER_MIX, step_minutes: int = 15,
             periods: int = 96, start: str = "2026-01-15T07:00:00+08:00") -> dict:
    """A Beijing-style district: a 110/10 kV substation (the root, kind ``transformer``), 10 kV lines (``feeder``)
    and beneath them 400-800 kVA distribution transformers, each a residential compound, an office or a public car
    park (:data:`FEEDER_MIX` in turn) built as by :func:`residential`, :func:`office` and :func:`carpark` (chargers
    on 100 %, 25 % and 20 % of the spaces).

    Each transformer's rating is drawn from 400, 500, 630 and 800 kVA; its import limit is the rating times
    :data:`POWER_FACTOR`, its per-phase limit 36 % of that, and it may back-feed its line up to half its limit (V2G
    under one transformer can serve cars under another). The sessions are split over the transformers in proportion
    to rating times :data:`SESSIONS_PER_KVA` of its kind; more than :data:`MAX_LOADING` times that upsizes every
    transformer to the next standard rating that carries it. The substation exports nothing to 110 kV.

    The line and substation limits are calibrated on this day: with the uncontrolled schedule (every car at full
    power from arrival, :func:`gridcharge.solvers.baselines.uncontrolled`) the substation's peak ``U`` falls in the
    evening, above its base-load peak ``B``; its limit is ``B + substation_share * (U - B)``, and each line's likewise
    with ``line_share``. Below ``U`` the uncontrolled evening is infeasible; at or above ``B`` a schedule exists
    (no car charging), and the optimum shifts charging until the substation row binds.

    Parameters
    ----------
    n_sessions : int — charging sessions (cars) [-], >= ``transformers``
    seed : int — random seed; the same arguments give the same instance, byte for byte
    transformers : int — distribution transformers [-], >= 1
    lines : int, optional — 10 kV lines [-] (default ``max(2, ceil(transformers / 30))``, at most ``transformers``)
    substation_share, line_share : float — where the substation's and each line's import limit sits between its
        base-load peak (0) and its uncontrolled peak (1) [-], in (0, 1]
    v2g_share : float, optional — share of cars that allow discharge [-] (default each kind's own: 1/3, 0.2, 0)
    phase_limits : bool — per-phase limits on the residential and office transformers
    mix : tuple of str — site kinds in turn
    step_minutes : int [minutes]; periods : int; start : str (ISO-8601 with offset; default 07:00, one day)
    """
    for name, value in (("transformers", transformers), ("n_sessions", n_sessions)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: {value!r} — expected a whole number >= 1")
    if n_sessions < transformers:
        raise ValueError(f"n_sessions: {n_sessions} — expected at least one session per transformer "
                         f"(>= transformers = {transformers})")
    if lines is None:
        lines = min(transformers, max(2, -(-transformers // TRANSFORMERS_PER_LINE)))
    if isinstance(lines, bool) or not isinstance(lines, (int, np.integer)) or not 1 <= lines <= transformers:
        raise ValueError(f"lines: {lines!r} — expected a whole number in [1, transformers = {transformers}]")
    for name, value in (("substation_share", substation_share), ("line_share", line_share)):
        if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
            raise ValueError(f"{name}: {value!r} — expected a number in (0, 1]")
    for i, kind in enumerate(mix):
        if kind not in SITE_V2G_SHARE:
            raise ValueError(f"mix[{i}]: {kind!r} — expected 'residential', 'office' or 'carpark'")
    rng = np.random.default_rng([seed, 0])
    horizon = (*_horizon(start, step_minutes, periods), step_minutes, periods)
    kinds = [mix[k % len(mix)] for k in range(transformers)]
    density = np.array([SESSIONS_PER_KVA[kind] for kind in kinds])
    kva = rng.choice(np.array(TRANSFORMER_KVA[:4], dtype=float), transformers)
    loading = n_sessions / float((kva * density).sum())
    if loading > MAX_LOADING:  # upsize each to the smallest standard rating that carries its share
        wanted = kva * loading / MAX_LOADING
        sizes = np.array(TRANSFORMER_KVA, dtype=float)
        kva = sizes[np.minimum(np.searchsorted(sizes, wanted), len(sizes) - 1)]
    sizes_n = _split(n_sessions, kva * density)
    line_of = np.repeat(np.arange(lines), [len(part) for part in np.array_split(np.arange(transformers), lines)])
    nodes = [{"id": "SUB", "parent": None, "kind": "transformer", "import_limit_kw": None, "export_limit_kw": 0.0}]
    nodes += [{"id": f"L{j + 1:02d}", "parent": "SUB", "kind": "feeder", "import_limit_kw": None,
               "export_limit_kw": None} for j in range(lines)]
    chargers, sessions = [], []
    width = len(str(transformers))
    for k, (kind, size) in enumerate(zip(kinds, sizes_n.tolist())):
        limit_kw = round(float(kva[k]) * POWER_FACTOR, 3)
        site_nodes, site_chargers, site_sessions, _ = _site(
            kind, np.random.default_rng([seed, 1, k]), size, f"T{k + 1:0{width}d}-", f"L{line_of[k] + 1:02d}",
            horizon, v2g_share=v2g_share, capacity="default", phase_limits=phase_limits, pv_kw=0.0,
            transformer_kw=limit_kw)
        site_nodes[0]["export_limit_kw"] = round(0.5 * limit_kw, 3)
        nodes += site_nodes
        chargers += site_chargers
        sessions += site_sessions
    name = _kind_name("district", n_sessions, seed, {"transformers": transformers, "lines": lines,
                                                     "substation_share": float(substation_share),
                                                     "line_share": float(line_share), "v2g_share": v2g_share,
                                                     "phase_limits": phase_limits, "mix": "/".join(mix),
                                                     "kva": int(kva.sum())})
    data = _instance(name, horizon[0], step_minutes, periods, nodes, chargers, sessions, horizon[2])
    _calibrate(data, lines, substation_share, line_share)
    return data


def _split(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights``, each part >= 1, by largest remainders (whole numbers)."""
    spare = total - len(weights)
    exact = spare * weights / weights.sum()
    parts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[:spare - parts.sum()]] += 1
    return parts + 1


def _calibrate(data: dict, lines: int, substation_share: float, line_share: float) -> None:
    """Set the substation's and the lines' import limits between their base-load and uncontrolled peaks [kW].

    Computed on the day reduced to the substation and its lines: every charger hung from its line, each line carrying
    its subtree's base load. The uncontrolled schedule ignores the tree (each car at full power from arrival), so its
    power is the same; the arrays of the 85,000 meters of a 100,000-session district are never built (3.9 GB).
    """
    top = 1 + lines
    periods = data["horizon"]["periods"]
    line_ids = [node["id"] for node in data["nodes"][1:top]]
    line_of = {line: line for line in line_ids}
    line_base = {line: np.zeros(periods) for line in line_ids}
    for node in data["nodes"][top:]:  # every site lists a parent before its children
        line = line_of[node["id"]] = line_of[node["parent"]]
        own = np.asarray(node.get("base_load_kw", 0.0), dtype=float) - np.asarray(node.get("generation_kw", 0.0),
                                                                                  dtype=float)
        line_base[line] += own
    reduced = {**data, "nodes": [{"id": "SUB", "parent": None, "kind": "transformer"}]
               + [{"id": line, "parent": "SUB", "kind": "feeder", "base_load_kw": line_base[line].tolist()}
                  for line in line_ids],
               "chargers": [{**charger, "node": line_of[charger["node"]]} for charger in data["chargers"]]}
    problem = build_problem(load_instance(reduced))
    base = problem.base_net_kw
    free = node_loads(problem, uncontrolled(problem).power)
    for j, node_id in enumerate(["SUB", *line_ids]):
        row = problem.node_ids.index(node_id)
        share = substation_share if j == 0 else line_share
        low, high = float(base[row].max()), float(free[row].max())
        data["nodes"][j]["import_limit_kw"] = float(np.ceil(low + share * (high - low)))
        if j:
            data["nodes"][j]["export_limit_kw"] = data["nodes"][j]["import_limit_kw"]
