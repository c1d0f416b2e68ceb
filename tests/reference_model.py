"""An independent reference formulation of the gridcharge problem, for cross-checks on small instances only.

Written from the README's "Instance format v1" semantics alone. It deliberately shares nothing with
``gridcharge.problem`` / ``gridcharge.formulation`` / ``gridcharge.solvers`` (only ``gridcharge.instance`` is used, to
parse and validate the input), and it is formulated differently from ``gridcharge/formulation/lp.py``:

- dense matrices, one block of columns per kind of variable, every (session, period) gets a column even where the
  session is not plugged in (its bounds are then 0);
- explicit charge ``c[s, t]`` and discharge ``d[s, t]`` [kW], explicit ``unmet[s]`` [kWh] and ``peak`` [kW];
- a binary ``z[s, t]`` for *every* V2G (session, period) pair: ``c <= cmax z``, ``d <= dmax (1 - z)`` (no
  relax-and-add-binaries loop, no netting);
- battery bounds as cumulative sums (energy added after period t = sum over tau <= t), no state variables;
- a row for every node x period (import/export) and node x phase x period (phase import), none dropped;
- solved with ``scipy.optimize.milp``.

Column layout (S sessions, T periods, flattened session-major ``s * T + t``)::

    c[0 .. S*T)  d[S*T .. 2*S*T)  z[2*S*T .. 3*S*T)  unmet[3*S*T .. 3*S*T+S)  peak[3*S*T+S]

``z`` is fixed to 1 wherever the session cannot discharge in that period (so ``c <= cmax`` is just the bound there)
and is a binary elsewhere.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from gridcharge.instance import load_instance


@dataclass
class ReferenceResult:
    """``status`` is ``"optimal"`` or ``"infeasible"``; the rest is ``None`` when infeasible.

    objective_cny : float — energy cost + degradation − export revenue + unmet penalty + peak term [CNY]
    power_kw : numpy.ndarray (S, T) — signed power, + charge, − discharge [kW]
    unmet_kwh : numpy.ndarray (S,) [kWh]
    peak_kw : float — the peak variable (the root's highest net load when ``peak_cny_per_kw > 0``) [kW]
    """

    status: str
    objective_cny: float | None = None
    power_kw: np.ndarray | None = None
    unmet_kwh: np.ndarray | None = None
    peak_kw: float | None = None

    @property
    def feasible(self) -> bool:
        return self.status == "optimal"


# ------------------------------------------------------------------------------------------------------------------
# the semantics, re-derived from the instance


def series(value, periods: int) -> np.ndarray:
    """``number | [number x periods]`` as a float array of length ``periods``."""
    if isinstance(value, (list, tuple)):
        return np.array([float(v) for v in value])
    return np.full(periods, float(value))


def presence_fraction(inst) -> np.ndarray:
    """f[s, t]: the fraction of period t inside [max(arrival, start), departure), by explicit interval overlap."""
    h = inst.horizon
    T = h.periods
    step = float(h.step_minutes) * 60.0
    f = np.zeros((len(inst.sessions), T))
    for i, sess in enumerate(inst.sessions):
        a = (max(sess.arrival, h.start) - h.start).total_seconds()
        b = (sess.departure - h.start).total_seconds()
        for t in range(T):
            lo, hi = t * step, (t + 1) * step
            overlap = min(b, hi) - max(a, lo)
            if overlap > 0:
                f[i, t] = overlap / step
    return f


def subtree_nodes(inst) -> dict[str, set[str]]:
    """For every node id, the ids of the nodes in its subtree (itself included)."""
    parent = {n.id: n.parent for n in inst.nodes}
    members = {n.id: set() for n in inst.nodes}
    for nid in parent:
        cur = nid
        while cur is not None:
            members[cur].add(nid)
            cur = parent[cur]
    return members


def base_net_load(inst) -> dict[str, np.ndarray]:
    """Base load minus generation of every node's subtree, per period [kW]."""
    T = inst.horizon.periods
    own = {n.id: series(n.base_load_kw, T) - series(n.generation_kw, T) for n in inst.nodes}
    return {nid: sum((own[m] for m in sub), np.zeros(T)) for nid, sub in subtree_nodes(inst).items()}


def session_limits(inst):
    """Per session: (cmax, dmax, efficiency, phase shares (3,), node id, lower, upper, request)."""
    chargers = {c.id: c for c in inst.chargers}
    out = []
    for sess in inst.sessions:
        ch = chargers[sess.charger]
        cmax = ch.max_charge_kw if sess.max_charge_kw is None else min(ch.max_charge_kw, sess.max_charge_kw)
        dmax = min(ch.max_discharge_kw, sess.max_discharge_kw)
        share = np.full(3, 1.0 / 3.0) if ch.phases == "ABC" else np.array([float(ch.phases == p) for p in "ABC"])
        if sess.battery_kwh is None:
            lower, upper = 0.0, sess.energy_kwh
        else:
            initial = 0.0 if sess.initial_kwh is None else sess.initial_kwh
            floor = initial if sess.min_kwh is None else sess.min_kwh
            lower, upper = floor - initial, sess.battery_kwh - initial
        out.append((cmax, dmax, ch.efficiency, share, ch.node, lower, upper, sess.energy_kwh))
    return out


# ------------------------------------------------------------------------------------------------------------------
# the model


def solve_reference(instance, time_limit_s: float = 60.0) -> ReferenceResult:
    """Build the dense MILP of ``instance`` (anything ``load_instance`` reads) and solve it with scipy's milp."""
    inst = load_instance(instance)
    T = inst.horizon.periods
    S = len(inst.sessions)
    dt = inst.horizon.step_minutes / 60.0
    f = presence_fraction(inst)
    limits = session_limits(inst)
    cmax = np.array([x[0] for x in limits]).reshape(S)
    dmax = np.array([x[1] for x in limits]).reshape(S)
    eta = np.array([x[2] for x in limits]).reshape(S)
    share = np.array([x[3] for x in limits]).reshape(S, 3)
    s_node = [x[4] for x in limits]
    e_lo = np.array([x[5] for x in limits]).reshape(S)
    e_hi = np.array([x[6] for x in limits]).reshape(S)
    request = np.array([x[7] for x in limits]).reshape(S)

    price_in = series(inst.tariff.import_cny_per_kwh, T)
    price_out = series(inst.tariff.export_cny_per_kwh, T)
    obj = inst.objective

    ST = S * T
    C0, D0, Z0, U0, P0 = 0, ST, 2 * ST, 3 * ST, 3 * ST + S
    n = 3 * ST + S + 1

    def idx(base, s, t):
        return base + s * T + t

    present = f > 0
    can_discharge = present & (dmax[:, None] > 0)

    # bounds and integrality
    lb = np.zeros(n)
    ub = np.zeros(n)
    integrality = np.zeros(n)
    ub[C0:C0 + ST] = np.where(present, cmax[:, None], 0.0).ravel()
    ub[D0:D0 + ST] = np.where(can_discharge, dmax[:, None], 0.0).ravel()
    lb[Z0:Z0 + ST] = np.where(can_discharge, 0.0, 1.0).ravel()
    ub[Z0:Z0 + ST] = 1.0
    integrality[Z0:Z0 + ST] = can_discharge.ravel().astype(float)
    ub[U0:U0 + S] = np.inf
    lb[P0], ub[P0] = -np.inf, np.inf

    # objective
    cost = np.zeros(n)
    cost[C0:C0 + ST] = (f * dt * price_in[None, :]).ravel()
    cost[D0:D0 + ST] = (f * dt * (obj.degradation_cny_per_kwh - price_out[None, :])).ravel()
    cost[U0:U0 + S] = obj.unmet_penalty_cny_per_kwh
    cost[P0] = obj.peak_cny_per_kw

    rows, row_lo, row_hi = [], [], []

    def add_row(coeffs: np.ndarray, lo: float, hi: float):
        rows.append(coeffs)
        row_lo.append(lo)
        row_hi.append(hi)

    # battery: energy added after period t = sum over tau <= t of (eta f dt c - f dt / eta d)
    for s in range(S):
        for t in range(T):
            a = np.zeros(n)
            for tau in range(t + 1):
                a[idx(C0, s, tau)] = eta[s] * f[s, tau] * dt
                a[idx(D0, s, tau)] = -f[s, tau] * dt / eta[s]
            add_row(a, e_lo[s], e_hi[s])
            if t == T - 1:
                # by departure: added <= energy_kwh; unmet >= energy_kwh - added
                add_row(a.copy(), -np.inf, request[s])
                b = a.copy()
                b[U0 + s] = 1.0
                add_row(b, request[s], np.inf)

    # charge or discharge, never both
    for s in range(S):
        for t in range(T):
            if not can_discharge[s, t]:
                continue
            a = np.zeros(n)
            a[idx(C0, s, t)] = 1.0
            a[idx(Z0, s, t)] = -cmax[s]
            add_row(a, -np.inf, 0.0)
            a = np.zeros(n)
            a[idx(D0, s, t)] = 1.0
            a[idx(Z0, s, t)] = dmax[s]
            add_row(a, -np.inf, dmax[s])

    # the tree: every node, every period, both directions; every phase
    subtree = subtree_nodes(inst)
    base = base_net_load(inst)
    for node in inst.nodes:
        inside = [s for s in range(S) if s_node[s] in subtree[node.id]]
        imp = np.inf if node.import_limit_kw is None else node.import_limit_kw
        exp = np.inf if node.export_limit_kw is None else node.export_limit_kw
        ph = np.inf if node.phase_import_limit_kw is None else node.phase_import_limit_kw
        for t in range(T):
            a = np.zeros(n)
            for s in inside:
                a[idx(C0, s, t)] = 1.0
                a[idx(D0, s, t)] = -1.0
            add_row(a, -exp - base[node.id][t], imp - base[node.id][t])
            for k in range(3):
                a = np.zeros(n)
                for s in inside:
                    a[idx(C0, s, t)] = share[s, k]
                    a[idx(D0, s, t)] = -share[s, k]
                add_row(a, -np.inf, ph - base[node.id][t] / 3.0)

    # peak >= the root's net load in every period
    root = next(nd.id for nd in inst.nodes if nd.parent is None)
    for t in range(T):
        a = np.zeros(n)
        a[P0] = 1.0
        for s in range(S):
            a[idx(C0, s, t)] = -1.0
            a[idx(D0, s, t)] = 1.0
        add_row(a, base[root][t], np.inf)

    A = np.array(rows).reshape(len(rows), n)
    constraint = LinearConstraint(A, np.array(row_lo), np.array(row_hi))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mip_abs_gap is passed to HiGHS verbatim
        res = milp(cost, integrality=integrality, bounds=Bounds(lb, ub), constraints=constraint,
                   options={"mip_rel_gap": 1e-10, "mip_abs_gap": 1e-10, "time_limit": time_limit_s})
    if res.status == 2:
        return ReferenceResult("infeasible")
    if res.status != 0:
        raise RuntimeError(f"reference milp ended with status {res.status}: {res.message}")

    x = res.x
    if integrality.any():
        # polish: fix the binaries to their rounded values and solve the remaining LP exactly
        z = np.round(x[Z0:Z0 + ST])
        lb2, ub2 = lb.copy(), ub.copy()
        lb2[Z0:Z0 + ST] = ub2[Z0:Z0 + ST] = z
        polished = milp(cost, bounds=Bounds(lb2, ub2), constraints=constraint)
        if polished.status == 0 and polished.fun <= res.fun + 1e-9 * max(1.0, abs(res.fun)):
            x = polished.x
            res = polished
    power = (x[C0:C0 + ST] - x[D0:D0 + ST]).reshape(S, T)
    return ReferenceResult("optimal", objective_cny=float(cost @ x), power_kw=power,
                           unmet_kwh=x[U0:U0 + S].copy(), peak_kw=float(x[P0]))
