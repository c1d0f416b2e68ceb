"""Instance → arrays: period fractions, subtree membership, phase shares, bounds, prices.

Everything a formulation or a heuristic needs, as numpy arrays indexed by integer ids (sessions ``s``, nodes ``n``,
periods ``t``). No solver here, and no Python loop over sessions x periods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._arrays import add_rows_at
from .instance import STEP_SLACK, Instance, load_instance, lowest_current_a

PHASES = ("A", "B", "C")


@dataclass(frozen=True, eq=False)
class Problem:
    """The arrays of one instance.

    Attributes
    ----------
    instance : Instance
    period_start : pandas.DatetimeIndex — start of each period, tz-aware (``horizon.timezone``)
    step_hours : float — period length [h]
    session_ids : list of str
    presence : numpy.ndarray, shape (S, T) — fraction f of period t during which session s is plugged in [0..1]
    charge_max_kw, discharge_max_kw : numpy.ndarray, shape (S,) — min(charger, car) limits [kW]
    efficiency : numpy.ndarray, shape (S,) — charger efficiency [-]
    energy_lower_kwh, energy_upper_kwh : numpy.ndarray, shape (S,) — bounds on energy added so far [kWh]
    energy_request_kwh : numpy.ndarray, shape (S,) — energy wanted by departure [kWh]
    phase_share : numpy.ndarray, shape (S, 3) — share of the charger power on phases A, B, C [-]
    session_node : numpy.ndarray, shape (S,) — index of the node the session's charger hangs from
    node_ids : list of str; node_parent : numpy.ndarray, shape (N,) — parent index, -1 at the root
    member_node, member_session : numpy.ndarray — pairs (n, s): session s is in the subtree of node n
    base_net_kw : numpy.ndarray, shape (N, T) — base load minus generation of the node and its subtree [kW]
    import_limit_kw, export_limit_kw, phase_import_limit_kw : numpy.ndarray, shape (N,) — inf where none [kW]
    import_price, export_price : numpy.ndarray, shape (T,) — [CNY/kWh]
    min_power_kw : numpy.ndarray, shape (S,) — smallest positive power the car may draw or give back, charge and
        discharge alike (the charger's and car's min_current_a, raised to a whole step) [kW]; 0 = continuous
    power_step_kw : numpy.ndarray, shape (S,) — power of one current step (current_step_a) [kW]; 0 = continuous.
        Executable powers are 0 and ``k * power_step_kw >= min_power_kw`` (whole k), or any value >= min_power_kw
        without a step; a period's value is the set-point while the car is plugged in, partial periods alike
    phase_count : numpy.ndarray, shape (S,) — phases the charger draws on (1 or 3) [-]
    """

    instance: Instance
    period_start: pd.DatetimeIndex
    step_hours: float
    session_ids: list[str]
    presence: np.ndarray
    charge_max_kw: np.ndarray
    discharge_max_kw: np.ndarray
    efficiency: np.ndarray
    energy_lower_kwh: np.ndarray
    energy_upper_kwh: np.ndarray
    energy_request_kwh: np.ndarray
    phase_share: np.ndarray
    session_node: np.ndarray
    node_ids: list[str]
    node_parent: np.ndarray
    member_node: np.ndarray
    member_session: np.ndarray
    base_net_kw: np.ndarray
    import_limit_kw: np.ndarray
    export_limit_kw: np.ndarray
    phase_import_limit_kw: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    unmet_penalty: float
    degradation_cost: float
    peak_cost: float
    overload_penalty: float
    min_power_kw: np.ndarray | None = None
    power_step_kw: np.ndarray | None = None
    phase_count: np.ndarray | None = None

    def __post_init__(self):
        # problems built field by field (tests, the online controller's windows) are continuous unless told otherwise
        S = len(self.session_ids)
        for name in ("min_power_kw", "power_step_kw"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(S))
        if self.phase_count is None:
            object.__setattr__(self, "phase_count", np.where(self.phase_share.max(axis=1) >= 1.0, 1, 3)
                               if S else np.zeros(0, dtype=np.int64))

    @property
    def executable(self) -> bool:
        """True when some session has a minimum power or a step (the instance declares min_current_a or
        current_step_a): every schedule must then give it 0 or an allowed value."""
        return bool(np.any(self.min_power_kw > 0))

    @property
    def n_sessions(self) -> int:
        return len(self.session_ids)

    @property
    def n_periods(self) -> int:
        return len(self.period_start)

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def root(self) -> int:
        """Index of the root node."""
        return int(np.flatnonzero(self.node_parent < 0)[0])

    def top_power_kw(self, which: str = "charge") -> np.ndarray:
        """The largest power each session may draw (``"charge"``) or give back (``"discharge"``) [kW], shape (S,):
        its max power, rounded down to a whole step where it has one."""
        most = self.charge_max_kw if which == "charge" else self.discharge_max_kw
        step = self.power_step_kw
        stepped = step > 0
        top = most.astype(float).copy()
        top[stepped] = np.floor(most[stepped] / step[stepped] + STEP_SLACK) * step[stepped]
        return top

    def undeliverable_kwh(self) -> np.ndarray:
        """Energy each session asks for beyond what its charger could deliver over its whole stay at its largest
        allowed power, whatever the grid [kWh], shape (S,)."""
        most = self.efficiency * self.top_power_kw() * (self.presence.sum(axis=1) * self.step_hours)
        return np.clip(self.energy_request_kwh - most, 0.0, None)

    @property
    def v2g(self) -> np.ndarray:
        """Sessions that may discharge, shape (S,) bool."""
        return self.discharge_max_kw > 0

    def node_member_matrix(self) -> np.ndarray:
        """Dense (N, S) 0/1 matrix of subtree membership; for small problems and heuristics only."""
        matrix = np.zeros((self.n_nodes, self.n_sessions))
        matrix[self.member_node, self.member_session] = 1.0
        return matrix


def build_problem(instance: Instance | object) -> Problem:
    """Turn an instance (or anything :func:`~gridcharge.load_instance` reads) into arrays."""
    inst = load_instance(instance)
    horizon = inst.horizon
    T = horizon.periods
    step_h = horizon.step_hours
    period_start = pd.date_range(
        pd.Timestamp(horizon.start), periods=T, freq=pd.Timedelta(minutes=horizon.step_minutes)
    ).tz_convert(horizon.timezone)

    node_ids = [n.id for n in inst.nodes]
    node_index = {nid: i for i, nid in enumerate(node_ids)}
    node_parent = np.array([-1 if n.parent is None else node_index[n.parent] for n in inst.nodes], dtype=np.int64)
    anc_ptr, anc_idx = _ancestors(node_parent)

    chargers = {c.id: c for c in inst.chargers}
    sessions = inst.sessions
    S = len(sessions)
    charger_of = [chargers[s.charger] for s in sessions]

    # presence fraction f[s, t] = |[arrival, departure) ∩ period t| / step, vectorised over sessions x periods
    t0 = horizon.start.timestamp()
    step_s = horizon.step_minutes * 60.0
    arrival = np.array([s.arrival.timestamp() for s in sessions]).reshape(S, 1) - t0
    departure = np.array([s.departure.timestamp() for s in sessions]).reshape(S, 1) - t0
    lo = np.arange(T) * step_s
    overlap = np.minimum(departure, lo + step_s) - np.maximum(arrival, lo)
    presence = np.clip(overlap / step_s, 0.0, 1.0)
    presence[presence < 1e-12] = 0.0

    charge_max = np.array(
        [min(c.max_charge_kw, s.max_charge_kw if s.max_charge_kw is not None else c.max_charge_kw)
         for s, c in zip(sessions, charger_of)], dtype=float)
    discharge_max = np.array([min(c.max_discharge_kw, s.max_discharge_kw) for s, c in zip(sessions, charger_of)],
                             dtype=float)
    efficiency = np.array([c.efficiency for c in charger_of], dtype=float)
    request = np.array([s.energy_kwh for s in sessions], dtype=float)
    bounds = np.array([_energy_bounds(s) for s in sessions], dtype=float).reshape(S, 2)

    phase_share = np.zeros((S, 3))
    phase_code = np.array(["ABC".find(c.phases) if c.phases != "ABC" else 3 for c in charger_of], dtype=int)
    single = phase_code < 3
    phase_share[np.flatnonzero(single), phase_code[single]] = 1.0
    phase_share[~single] = 1.0 / 3.0

    session_node = np.array([node_index[c.node] for c in charger_of], dtype=np.int64)
    counts = np.diff(anc_ptr)[session_node]
    member_session = np.repeat(np.arange(S), counts)
    offsets = np.repeat(anc_ptr[session_node] - np.cumsum(counts) + counts, counts)
    member_node = anc_idx[offsets + np.arange(counts.sum())] if S else np.zeros(0, dtype=np.int64)

    own = inst.own_net_load_kw()
    # every node with a load of its own adds it to each of its ancestors (itself included)
    node_counts = np.diff(anc_ptr)
    owner = np.repeat(np.arange(len(node_ids)), node_counts)
    loaded = own.any(axis=1)[owner]
    base_net = np.zeros_like(own)
    add_rows_at(base_net, anc_idx[loaded], own[owner[loaded]])

    kw_per_a = np.array([c.kw_per_a for c in charger_of], dtype=float)
    min_power = np.array([lowest_current_a(c, s) for s, c in zip(sessions, charger_of)], dtype=float) * kw_per_a
    step_power = np.array([c.current_step_a or 0.0 for c in charger_of], dtype=float) * kw_per_a

    def limit(values):
        return np.array([np.inf if v is None else float(v) for v in values])

    return Problem(
        instance=inst,
        period_start=period_start,
        step_hours=step_h,
        session_ids=[s.id for s in sessions],
        presence=presence,
        charge_max_kw=charge_max,
        discharge_max_kw=discharge_max,
        efficiency=efficiency,
        energy_lower_kwh=bounds[:, 0],
        energy_upper_kwh=bounds[:, 1],
        energy_request_kwh=request,
        phase_share=phase_share,
        session_node=session_node,
        node_ids=node_ids,
        node_parent=node_parent,
        member_node=member_node,
        member_session=member_session,
        base_net_kw=base_net,
        import_limit_kw=limit(n.import_limit_kw for n in inst.nodes),
        export_limit_kw=limit(n.export_limit_kw for n in inst.nodes),
        phase_import_limit_kw=limit(n.phase_import_limit_kw for n in inst.nodes),
        import_price=_series(inst.tariff.import_cny_per_kwh, T),
        export_price=_series(inst.tariff.export_cny_per_kwh, T),
        unmet_penalty=inst.objective.unmet_penalty_cny_per_kwh,
        degradation_cost=inst.objective.degradation_cny_per_kwh,
        peak_cost=inst.objective.peak_cny_per_kw,
        overload_penalty=inst.objective.overload_penalty_cny_per_kwh,
        min_power_kw=min_power,
        power_step_kw=step_power,
        phase_count=np.where(single, 1, 3).astype(np.int64),
    )


def _series(value, periods: int) -> np.ndarray:
    """``number | [number x periods]`` → array of length ``periods``."""
    return np.broadcast_to(np.asarray(value, dtype=float), (periods,)).copy()


def _energy_bounds(session) -> tuple[float, float]:
    """Bounds on the energy added so far [kWh]: battery given → [min - initial, battery - initial], else [0, energy]."""
    if session.battery_kwh is None:
        return 0.0, session.energy_kwh
    initial = session.initial_kwh if session.initial_kwh is not None else 0.0
    floor = session.min_kwh if session.min_kwh is not None else initial
    return floor - initial, session.battery_kwh - initial


def _ancestors(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of each node's ancestors, itself first: ``anc_idx[anc_ptr[n]:anc_ptr[n+1]]``."""
    levels = [np.arange(len(parent), dtype=np.int64)]  # levels[k][n]: n's k-th ancestor, -1 above the root
    while (levels[-1] >= 0).any():
        up = levels[-1]
        levels.append(np.where(up >= 0, parent[np.maximum(up, 0)], -1))
    table = np.stack(levels[:-1], axis=1)  # (nodes, depth + 1), one pass per level of the tree, all nodes at once
    present = table >= 0
    ptr = np.zeros(len(parent) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(present.sum(axis=1))
    return ptr, table[present].astype(np.int64)
