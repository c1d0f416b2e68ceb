"""The independent checker: does a signed power schedule keep every rule of an instance?

It re-derives everything from the :class:`~gridcharge.instance.Instance` and the power alone and imports nothing
else from gridcharge but a pure numpy helper (no ``problem``, no formulation), so a mistake there cannot hide itself here. Its arithmetic is
written differently on purpose: presence comes from first/last period indices and edge fractions (``problem`` clips
interval overlaps), subtree loads are summed level by level up the tree (``problem`` uses ancestor lists).

Rules checked, at every period, on every phase, in both directions:

- power only while plugged in; charge <= min(charger, car) max charge; discharge <= min(charger, car) max discharge;
- a charger set-point is a limit and a full car draws less: the energy a car *takes* is the scheduled energy cut
  where it reaches its cap (its battery's upper bound while it still discharges later in its stay; after its last
  discharge, and throughout for a car that never discharges, its request min(energy_kwh, battery room)); that is the
  delivered energy (``min(energy_kwh, scheduled)`` for a car that only charges), and the battery floor holds at it;
- only the last increment may overshoot: where a period's set-point gives more energy than the car still takes, it
  must be the smallest allowed power that covers the room left (``up(room / (eta f dt))``: the room rounded up to
  the minimum current and the step; for a continuous car the room itself). A set-point beyond that is reported as
  ``battery_upper`` where it passes the battery bound and as ``over_request`` where it passes the request while the
  request is the cap (value: energy scheduled so far, limit: energy the allowance permits) [kWh];
- each node's net load <= import_limit_kw and each phase <= phase_import_limit_kw at the set-points (the most the
  cars can draw); >= -export_limit_kw at the power the cars draw (less charging means more export); each side at
  its worst. The cost counts the power drawn (energy, peak) and the unmet energy ``energy_kwh - delivered``;
- where the instance declares ``min_current_a`` or ``current_step_a``: in every period a car is plugged in (a partial
  period too: the value is the set-point while plugged in), its power is 0 or an allowed value, charge and discharge
  magnitude alike (``not_executable``).
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import weakref
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ._arrays import add_rows_at, energy_taken, request_from
from .instance import Instance, load_instance, lowest_current_a

#: Differences below this are numerical noise of the solver, not violations [kW or kWh], scaled by max(1, |limit|)
TOLERANCE = 1e-6
#: ... but never more than this [kW or kWh], so that the scaling cannot hide a real violation at a large limit
#: (1e-3 kW over a 2500 kW transformer is a violation; solver noise there stays below 1e-6).
MAX_TOLERANCE = 1e-4


def tolerance(limit):
    """Allowed excess over ``limit`` [kW or kWh]: relative for small limits, capped for large ones."""
    return np.minimum(TOLERANCE * np.maximum(1.0, np.abs(limit)), MAX_TOLERANCE)


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    kind : str — ``not_plugged_in``, ``charge_limit``, ``discharge_limit``, ``battery_upper``, ``battery_lower``,
        ``over_request``, ``node_import``, ``node_export``, ``phase_import``, ``not_finite``, ``not_executable``
    where : str — the session id or node id (with ``/A``, ``/B``, ``/C`` for a phase)
    period : int — period index
    value : float — what the schedule gives [kW or kWh]
    limit : float — the bound it breaks [kW or kWh]; for ``not_executable`` the nearest allowed power [kW]
    allowed : (float, float) or None — for ``not_executable``: the nearest allowed powers below and above ``value``
        (signed like it; 0 is allowed) [kW]
    """

    kind: str
    where: str
    period: int
    value: float
    limit: float
    allowed: tuple[float, float] | None = None

    def __str__(self) -> str:
        if self.allowed is not None:
            return (f"{self.kind}: {self.where} period {self.period}: {self.value:.6g} kW is not a power the car can "
                    f"follow; nearest allowed {self.allowed[0]:.6g} or {self.allowed[1]:.6g} kW")
        return f"{self.kind}: {self.where} period {self.period}: {self.value:.6g} vs limit {self.limit:.6g}"


@dataclass
class Verification:
    """The verdict. ``ok`` is true when ``violations`` is empty.

    cost_cny : float — the objective recomputed from the power alone [CNY]
    delivered_kwh, unmet_kwh : float — energy added by departure, shortfall, summed over sessions [kWh]
    peak_kw : float — the root's highest net load [kW]
    overload_kwh : dict — energy above import/export/phase limits per node [kWh]
    """

    violations: list[Violation]
    cost_cny: float
    delivered_kwh: float
    unmet_kwh: float
    peak_kw: float
    overload_kwh: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def frame(self) -> pd.DataFrame:
        """The violations as a table (kind, where, period, value, limit)."""
        return pd.DataFrame([v.__dict__ for v in self.violations],
                            columns=["kind", "where", "period", "value", "limit", "allowed"])

    def __str__(self) -> str:
        if self.ok:
            return "ok: no violation"
        lines = [f"{len(self.violations)} violation(s):"] + [f"  {v}" for v in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"  ... and {len(self.violations) - 50} more")
        return "\n".join(lines)


def verify(instance, schedule) -> Verification:
    """Check a schedule against every limit of an instance.

    Parameters
    ----------
    instance : Instance or anything :func:`gridcharge.load_instance` reads
    schedule : Schedule, pandas.DataFrame or numpy.ndarray
        A :class:`~gridcharge.schedule.Schedule`; a wide frame (periods x session-id columns) of signed power [kW];
        a long frame with columns ``session_id, period, power_kw``; or an array of shape (sessions, periods).

    Returns
    -------
    Verification
    """
    inst = load_instance(instance)
    power = _power_array(inst, schedule)
    # a pure function of a frozen instance and the power: the same pair checked twice in a row (a solver's own
    # acceptance test, then gridcharge.solve's gate) is answered from the last verdict
    key = (power.shape, hashlib.blake2b(np.ascontiguousarray(power).view(np.uint8)).digest())
    with _LAST_LOCK:
        last = _LAST.get("entry")
    if last is not None and last[0]() is inst and last[1] == key:
        return _fresh(last[2])  # a copy: a caller's edit of its verdict never reaches the next caller
    result = _verify(inst, power)
    try:
        entry = (weakref.ref(inst), key, _fresh(result))
    except TypeError:  # an instance that cannot be referenced weakly is not remembered
        return result
    with _LAST_LOCK:
        _LAST["entry"] = entry
    return result


#: The last verdict: (weak reference to the instance, power digest, Verification).
_LAST: dict = {}
_LAST_LOCK = threading.Lock()


def _fresh(result: Verification) -> Verification:
    """A copy of a verdict whose list and dict are its own (violations themselves are frozen)."""
    return replace(result, violations=list(result.violations), overload_kwh=dict(result.overload_kwh))


def _verify(inst: Instance, power: np.ndarray) -> Verification:
    """:func:`verify` of an instance and its (sessions, periods) power [kW]."""
    S, T = power.shape
    step_h = inst.horizon.step_minutes / 60.0
    violations: list[Violation] = []
    session_ids = [s.id for s in inst.sessions]

    bad = ~np.isfinite(power)
    violations += _collect("not_finite", session_ids, bad, power, np.zeros_like(power))
    power = np.where(bad, 0.0, power)

    cars = _cars(inst)
    frac = _presence(inst, cars.arrival_s, cars.departure_s)
    tol_kw = TOLERANCE
    violations += _collect("not_plugged_in", session_ids, (frac <= 0) & (np.abs(power) > tol_kw), power,
                           np.zeros_like(power))

    cmax, dmax = cars.max_charge_kw, cars.max_discharge_kw
    grid = _allowed_grid(inst)
    violations += _not_executable(grid, session_ids, power, frac)
    violations += _exceeds("charge_limit", session_ids, power, np.broadcast_to(cmax, power.shape))
    violations += _exceeds("discharge_limit", session_ids, -power, np.broadcast_to(dmax, power.shape))

    # battery: a set-point is a limit and a full car draws less, so the energy a car takes is the scheduled energy
    # cut where it reaches its cap (the battery's upper bound while the car will still give energy back later, the
    # request after its last discharge, i.e. always for a car that only charges); the battery bounds hold at what it
    # takes, the set-point may carry more only in the last increment (within the allowance below)
    eta = cars.efficiency
    kwh_per_kw = eta * frac * step_h  # energy into the battery of 1 kW charging [kWh per kW]
    gained = np.where(power > 0, power * eta, power / eta) * frac * step_h
    request, lower, upper = cars.request_kwh, cars.lower_kwh, cars.upper_kwh
    plugged = frac > 0
    final_cap = np.minimum(upper, request)[:, 0]
    taken = energy_taken(gained, upper[:, 0], final_cap)
    added = np.cumsum(taken, axis=1)
    before = added - taken
    request_in_force = np.arange(T)[None, :] >= request_from(gained)[:, None]
    up = _smallest_allowed_at_least(grid)
    charging = (gained > 0) & plugged
    over_request_at = set()
    for kind, bound, where_in_force in (("battery_upper", upper, charging),
                                        ("over_request", request, charging & request_in_force)):
        room = np.clip(bound - before, 0.0, None)
        allowed = kwh_per_kw * up(room / np.where(kwh_per_kw > 0, kwh_per_kw, 1.0))
        over = where_in_force & (gained > allowed + tolerance(np.broadcast_to(bound, gained.shape)))
        violations += _collect(kind, session_ids, over, before + gained, before + allowed)
        if kind == "over_request":
            over_request_at = {session_ids[i] for i in np.flatnonzero(over.any(axis=1))}
    violations += _exceeds("battery_lower", session_ids, -added, np.broadcast_to(-lower, added.shape))
    final = added[:, -1:] if T else np.zeros((S, 1))
    over = final > request + tolerance(request)
    last = T - 1 - np.argmax(plugged[:, ::-1], axis=1) if T else np.zeros(S, dtype=int)
    for i in np.flatnonzero(over[:, 0]):  # more than the request still held after the last discharge
        if session_ids[i] not in over_request_at:
            violations.append(Violation("over_request", session_ids[i], int(last[i]), float(final[i, 0]),
                                        float(request[i, 0])))
    drawn = np.where(gained > 0, power * taken / np.where(gained > 0, gained, 1.0), power)

    # the tree, level by level from the leaves up
    node_ids = [n.id for n in inst.nodes]
    index = {nid: i for i, nid in enumerate(node_ids)}
    N = len(node_ids)
    parent = np.array([-1 if n.parent is None else index[n.parent] for n in inst.nodes])
    depth = np.zeros(N, dtype=int)
    above = parent.copy()
    while (up := above >= 0).any():  # one step up the tree per pass, all nodes at once
        depth[up] += 1
        above[up] = parent[above[up]]

    own = inst.own_net_load_kw()
    session_node = np.array([index[c.node] for c in inst.chargers], dtype=int)[cars.charger]
    # each charger's share of its power per phase, looked up per session (not built per session)
    charger_shares = np.array([[1 / 3] * 3 if c.phases == "ABC" else [float(c.phases == ph) for ph in "ABC"]
                               for c in inst.chargers]).reshape(len(inst.chargers), 3)
    # the sessions' power and drawn power summed per (node, kind of phase share): a few kinds (three-phase, A, B,
    # C), so the phases follow from these sums instead of from three scaled copies of every session's power
    kinds, kind = np.unique(charger_shares, axis=0, return_inverse=True)
    kind = kind.reshape(-1)[cars.charger]
    by_kind = np.zeros((N * len(kinds), 2, T))
    add_rows_at(by_kind, session_node * len(kinds) + kind, np.stack([power, drawn], axis=1))
    by_kind = by_kind.reshape(N, len(kinds), 2, T)
    # one array (node, total at the set-points + three phases at the set-points + total at the drawn power,
    # period): each node's own load, then its chargers', then up the tree
    loads = np.concatenate([own[:, None, :], np.repeat(own[:, None, :] / 3.0, 3, axis=1), own[:, None, :]], axis=1)
    loads[:, 0] += by_kind[:, :, 0].sum(axis=1)
    loads[:, 1:4] += np.einsum("kp,nkt->npt", kinds, by_kind[:, :, 0])
    loads[:, 4] += by_kind[:, :, 1].sum(axis=1)
    for level in range(depth.max(initial=0), 0, -1):
        at = np.flatnonzero(depth == level)
        add_rows_at(loads, parent[at], loads[at])
    load, phase, drawn_load = loads[:, 0, :], loads[:, 1:4, :].transpose(1, 0, 2), loads[:, 4, :]

    def limit_of(attr):
        return np.array([np.inf if getattr(n, attr) is None else getattr(n, attr) for n in inst.nodes]).reshape(N, 1)

    imp, exp, ph_lim = limit_of("import_limit_kw"), limit_of("export_limit_kw"), limit_of("phase_import_limit_kw")
    violations += _exceeds("node_import", node_ids, load, np.broadcast_to(imp, load.shape))
    violations += _exceeds("node_export", node_ids, -drawn_load, np.broadcast_to(exp, load.shape))
    for k, name in enumerate("ABC"):
        violations += _exceeds("phase_import", [f"{n}/{name}" for n in node_ids], phase[k],
                               np.broadcast_to(ph_lim, load.shape))
    per_node = (np.clip(load - imp, 0, None).sum(axis=1) + np.clip(-drawn_load - exp, 0, None).sum(axis=1)
                + np.clip(phase - ph_lim[None], 0, None).sum(axis=(0, 2))) * step_h
    overload = {node_ids[i]: float(per_node[i]) for i in np.flatnonzero(per_node > 0)}

    # the objective, from the power alone
    price_in = np.broadcast_to(np.asarray(inst.tariff.import_cny_per_kwh, dtype=float), (T,))
    price_out = np.broadcast_to(np.asarray(inst.tariff.export_cny_per_kwh, dtype=float), (T,))
    obj = inst.objective
    charge_kwh = np.clip(drawn, 0, None) * frac * step_h  # the bill counts what the cars draw
    discharge_kwh = np.clip(-drawn, 0, None) * frac * step_h
    delivered = added[:, -1] if T else np.zeros(S)
    unmet = np.clip(request[:, 0] - delivered, 0, None)
    root = int(np.flatnonzero(parent < 0)[0])
    peak = float(drawn_load[root].max()) if T else 0.0
    cost = float((charge_kwh * price_in).sum() - (discharge_kwh * price_out).sum()
                 + obj.degradation_cny_per_kwh * discharge_kwh.sum()
                 + obj.unmet_penalty_cny_per_kwh * unmet.sum() + obj.peak_cny_per_kw * peak)
    return Verification(violations=violations, cost_cny=cost, delivered_kwh=float(delivered.sum()),
                        unmet_kwh=float(unmet.sum()), peak_kw=peak, overload_kwh=overload)


@dataclass(frozen=True)
class _Cars:
    """Each session's figures, read from the instance in one pass over its sessions; shape (S, 1) unless said.

    charger : numpy.ndarray of int, shape (S,) — position of its charger in ``inst.chargers``
    arrival_s, departure_s : numpy.ndarray, shape (S,) — POSIX timestamps [s]
    max_charge_kw, max_discharge_kw : the least of the charger's and the car's [kW]
    efficiency : the charger's [-]
    request_kwh : ``energy_kwh`` [kWh]
    lower_kwh, upper_kwh : the battery's bounds on the energy added, relative to its start (no battery: 0 and the
        request) [kWh]
    """

    charger: np.ndarray
    arrival_s: np.ndarray
    departure_s: np.ndarray
    max_charge_kw: np.ndarray
    max_discharge_kw: np.ndarray
    efficiency: np.ndarray
    request_kwh: np.ndarray
    lower_kwh: np.ndarray
    upper_kwh: np.ndarray


def _cars(inst: Instance) -> _Cars:
    """:class:`_Cars` of an instance (absent optional figures read as NaN, then replaced as the rules say)."""
    S = len(inst.sessions)
    position = {c.id: k for k, c in enumerate(inst.chargers)}
    per_charger = np.array([(c.max_charge_kw, c.max_discharge_kw, c.efficiency) for c in inst.chargers],
                           dtype=float).reshape(len(inst.chargers), 3)
    nan = float("nan")

    def row(s) -> tuple:
        return (position[s.charger], s.arrival.timestamp(), s.departure.timestamp(),
                nan if s.max_charge_kw is None else s.max_charge_kw, s.max_discharge_kw, s.energy_kwh,
                nan if s.battery_kwh is None else s.battery_kwh, s.initial_kwh or 0.0,
                nan if s.min_kwh is None else s.min_kwh)

    # streamed: each row's tuple is freed as it is read, so no 10,000 live tuples wake the garbage collector
    table = np.fromiter(itertools.chain.from_iterable(map(row, inst.sessions)), dtype=float,
                        count=9 * S).reshape(S, 9)
    charger = table[:, 0].astype(np.int64)
    charger_kw = per_charger[charger, 0]
    car_kw, battery, start, floor = table[:, 3], table[:, 6], table[:, 7], table[:, 8]
    floor = np.where(np.isnan(floor), start, floor)
    has_battery = ~np.isnan(battery)
    column = lambda values: values.reshape(S, 1)  # noqa: E731
    return _Cars(
        charger=charger, arrival_s=table[:, 1], departure_s=table[:, 2],
        max_charge_kw=column(np.minimum(charger_kw, np.where(np.isnan(car_kw), charger_kw, car_kw))),
        max_discharge_kw=column(np.minimum(per_charger[charger, 1], table[:, 4])),
        efficiency=column(per_charger[charger, 2]), request_kwh=column(table[:, 5]),
        lower_kwh=column(np.where(has_battery, floor - start, 0.0)),
        upper_kwh=column(np.where(has_battery, battery - start, table[:, 5])))


def _presence(inst: Instance, arrival_s: np.ndarray, departure_s: np.ndarray) -> np.ndarray:
    """Fraction of each period each session is plugged in, from first/last period indices and edge fractions;
    ``arrival_s``, ``departure_s``: the sessions' timestamps [s]."""
    S, T = len(inst.sessions), inst.horizon.periods
    step = inst.horizon.step_minutes * 60.0
    start = inst.horizon.start.timestamp()
    arrive = np.maximum(arrival_s, start) - start
    leave = departure_s - start
    first = np.floor(arrive / step).astype(int)
    last = np.ceil(leave / step).astype(int) - 1
    t = np.arange(T)
    frac = ((t >= first[:, None]) & (t <= last[:, None])).astype(float)
    rows = np.arange(S)
    np.add.at(frac, (rows, np.clip(first, 0, T - 1)), -(arrive - first * step) / step)
    np.add.at(frac, (rows, np.clip(last, 0, T - 1)), -((last + 1) * step - leave) / step)
    frac[np.abs(frac) < 1e-12] = 0.0
    return frac


def _allowed_grid(inst: Instance) -> tuple[np.ndarray, np.ndarray] | None:
    """Each session's smallest allowed power and power step [kW], shape (S, 1) each (0 = none); None when the
    instance declares no ``min_current_a`` / ``current_step_a`` (every power is allowed)."""
    chargers = {c.id: c for c in inst.chargers}
    on = [chargers[s.charger] for s in inst.sessions]
    if not any(c.min_current_a > 0 or c.current_step_a is not None for c in on) and not any(
            s.min_current_a > 0 for s in inst.sessions):
        return None
    S = len(inst.sessions)
    volts_per_phase = np.array([c.voltage_v * (3 if c.phases == "ABC" else 1) for c in on]) / 1000.0  # [kW/A]
    lowest = (np.array([lowest_current_a(c, s) for s, c in zip(inst.sessions, on)]) * volts_per_phase).reshape(S, 1)
    step = (np.array([c.current_step_a or 0.0 for c in on]) * volts_per_phase).reshape(S, 1)
    return lowest, step


def _smallest_allowed_at_least(grid: tuple[np.ndarray, np.ndarray] | None):
    """``up(x)``: for an (S, T) array of powers [kW], the smallest power each car may be set to that is at least
    ``x`` (0 for ``x`` up to the verifier's tolerance; ``x`` itself where every power is allowed); ``grid`` is
    :func:`_allowed_grid` of the instance."""

    def up(x: np.ndarray) -> np.ndarray:
        if grid is None:
            return np.where(x > TOLERANCE, x, 0.0)
        lowest, step = grid
        safe = np.where(step > 0, step, 1.0)
        stepped = np.where(step > 0, np.ceil(x / safe - TOLERANCE) * safe, x)
        return np.where(x > TOLERANCE, np.maximum(stepped, lowest), 0.0)

    return up


def _not_executable(grid: tuple[np.ndarray, np.ndarray] | None, names: list[str], power: np.ndarray,
                    frac: np.ndarray) -> list[Violation]:
    """Powers a car cannot follow: inside (0, smallest current's power) or off the current step, by magnitude;
    ``grid`` is :func:`_allowed_grid` of the instance."""
    if grid is None:
        return []
    lowest, step = grid
    size = np.abs(power)
    tol = tolerance(size)
    counted = (frac > 0) & (size > TOLERANCE)
    below = size < lowest - tol
    stepped = np.broadcast_to(step > 0, size.shape)
    safe_step = np.where(step > 0, step, 1.0)
    steps = size / safe_step
    off = stepped & (np.abs(steps - np.round(steps)) * safe_step > tol)
    bad = counted & (below | off)
    rows, cols = np.nonzero(bad)
    if not len(rows):
        return []
    m, lo, st = size[rows, cols], lowest[rows, 0], step[rows, 0]
    safe = np.where(st > 0, st, 1.0)
    down = np.where(st > 0, np.floor(m / safe) * safe, m)
    down = np.where(down < lo - tolerance(lo), 0.0, down)
    up = np.where(st > 0, np.maximum(np.ceil(m / safe) * safe, lo), lo)
    sign = np.sign(power[rows, cols])
    nearest = np.where(m - down <= up - m, down, up)
    return [Violation("not_executable", names[r], int(c), float(power[r, c]), float(sg * n),
                      (float(sg * d), float(sg * u)))
            for r, c, sg, n, d, u in zip(rows, cols, sign, nearest, down, up)]


def _exceeds(kind, names, value, limit) -> list[Violation]:
    finite = np.isfinite(limit)
    over = finite & (value > limit + tolerance(np.where(finite, limit, 0.0)))
    return _collect(kind, names, over, value, limit)


def _collect(kind, names, mask, value, limit) -> list[Violation]:
    rows, cols = np.nonzero(mask)
    return [Violation(kind, names[r], int(c), float(value[r, c]), float(limit[r, c])) for r, c in zip(rows, cols)]


def _power_array(inst: Instance, schedule) -> np.ndarray:
    """Signed power as an (S, T) array in the instance's session order."""
    ids = [s.id for s in inst.sessions]
    S, T = len(ids), inst.horizon.periods
    # a Schedule: its power array, whose rows its power_kw frame names by its problem's session ids; taken without
    # building that frame when they are the instance's sessions in its order (else the frame below matches by name)
    power, problem = getattr(schedule, "power", None), getattr(schedule, "problem", None)
    if (hasattr(schedule, "power_kw") and isinstance(power, np.ndarray) and power.shape == (S, T)
            and list(map(str, getattr(problem, "session_ids", ()))) == ids):
        return power.astype(float)
    # a long frame has a ``power_kw`` column, which attribute access would return in place of the frame
    frame = schedule if isinstance(schedule, (pd.DataFrame, np.ndarray)) else getattr(schedule, "power_kw", schedule)
    if isinstance(frame, pd.DataFrame):
        if {"session_id", "period", "power_kw"} <= set(frame.columns):
            out = np.zeros((S, T))
            pos = pd.Index(ids).get_indexer(frame["session_id"].astype(str))
            if (pos < 0).any():
                raise ValueError(f"schedule names sessions the instance does not have: "
                                 f"{sorted(set(frame['session_id'][pos < 0]))[:5]}")
            period = frame["period"].to_numpy()
            bad = (period < 0) | (period >= T) | (period != np.round(period))
            if bad.any():  # a negative index would silently wrap around to the last periods
                raise ValueError(f"schedule periods must be integers 0 .. {T - 1}; "
                                 f"got {sorted(set(period[bad].tolist()))[:5]}")
            out[pos, period.astype(int)] = frame["power_kw"].to_numpy(dtype=float)
            return out
        columns = list(map(str, frame.columns))
        if columns != ids and sorted(columns) == sorted(ids) and len(set(columns)) == len(columns):
            frame = frame.set_axis(columns, axis=1)[ids]  # the same sessions in another order: match by name
            columns = ids
        if columns != ids or len(frame) != T:
            missing = sorted(set(ids) - set(map(str, frame.columns)))[:5]
            raise ValueError(f"schedule must have one column per session (named by its id) and {T} rows; "
                             f"got {frame.shape[1]} columns x {len(frame)} rows (missing e.g. {missing})")
        return frame.to_numpy(dtype=float).T.copy()
    array = np.asarray(frame, dtype=float)
    if array.shape != (S, T):
        raise ValueError(f"schedule array must have shape (sessions, periods) = {(S, T)}; got {array.shape}")
    return array.copy()
