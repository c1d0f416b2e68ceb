"""The scheduling LP as CSC arrays, built from :class:`~gridcharge.problem.Problem` with numpy only.

Variables exist only where a session is plugged in (``presence > 0``); ``k`` numbers those (session, period) pairs,
session-major.

=====================  ===========================================================================================
column                 meaning
=====================  ===========================================================================================
``charge[k]``          charging power at the charger [kW], 0 .. min(charger, car) max charge
``discharge[k]``       discharging power [kW], 0 .. max discharge; V2G sessions only
``energy[k]``          energy added to the battery by the end of the period [kWh], within the battery bounds;
                       V2G sessions only (a charge-only session's energy only grows, so its final value is the
                       only bound that can bind and no state is needed)
``peak``               the root's highest net load [kW]; only when ``peak_cny_per_kw > 0``
``on_charge[k]``       binary, 1 = may charge, 0 = may discharge; only for the pairs the solver asks for
``overload[r]``        slack on a node-limit row [kW]; only with ``allow_overload``
``charge_steps[k]``    with ``executable``: semi-integer number of current steps, 0 or within [minimum's steps,
                       max charge's steps]; ``charge = step_kw * charge_steps`` (a car with a step)
``discharge_steps[k]`` the same for discharge (V2G sessions with a step)
``delivered[s]``       with ``executable``: energy a floored car takes by departure [kWh], <= request and <= its
                       scheduled energy, which may exceed it by at most one minimum-power quantum (a set-point is a
                       limit: a full car draws less; docs/design/executable.md); for a V2G car only by what its
                       last plugged-in period charges
=====================  ===========================================================================================

With ``executable``, a car with a minimum power but no step has its charge (and discharge) column semi-continuous:
0 or within [min_power_kw, max]. HiGHS takes both kinds natively (integrality 2 and 3).

Rows: energy by departure (charge-only sessions), energy dynamics (V2G sessions), node import/export limits,
phase import limits, peak epigraph, and the charge-or-discharge pair for binary pairs.

Unmet energy is not a variable: ``unmet = request - delivered >= 0`` is the energy row (or the bound on the last
energy state), and its penalty enters the objective as ``penalty * request`` (a constant) minus
``penalty * delivered``.

Node rows whose every possible activity already lies within the limit are left out (they can never bind); rows that
no schedule can satisfy are reported as :class:`~gridcharge.errors.InfeasibleError` with node, period and kW, unless
``allow_overload`` turns limits into penalised slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._arrays import summed_grid
from ..errors import InfeasibleError, Overload
from ..problem import PHASES, Problem

#: A limit row counts as infeasible only when the bound gap exceeds this [kW] (solver tolerance is far below).
INFEASIBLE_TOLERANCE_KW = 1e-9


@dataclass(frozen=True)
class Block:
    """A named group of consecutive columns or rows, ``[start, stop)``, with label arrays for each position.

    ``labels`` maps a label name (``pair``, ``session``, ``node``, ``phase``, ``period``, ``limit``) to an array of
    the block's length; indices, not ids (``node`` 3 is ``problem.node_ids[3]``). Used to give the Pyomo model readable
    names; the direct HiGHS path ignores it.
    """

    name: str
    start: int
    stop: int
    labels: dict


@dataclass(eq=False)
class LinearProgram:
    """A built LP/MIP in HiGHS's column-wise form, with the maps needed to write a solution back.

    ``a_start, a_index, a_value`` are the CSC matrix; ``integrality`` is ``None`` for a pure LP.
    """

    col_cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    a_start: np.ndarray
    a_index: np.ndarray
    a_value: np.ndarray
    offset: float
    integrality: np.ndarray | None
    pair_session: np.ndarray
    pair_period: np.ndarray
    pair_fraction: np.ndarray
    discharge_col: np.ndarray  # per pair, -1 where the session cannot discharge
    energy_col: np.ndarray  # per pair, -1 where there is no energy state
    slack_node: np.ndarray  # per overload column: node index
    slack_kind: np.ndarray  # per overload column: "import" | "export" | "phase_A" ...
    slack_period: np.ndarray
    slack_col: np.ndarray
    col_blocks: list = field(default_factory=list)  # Block per named group of columns, in column order
    row_blocks: list = field(default_factory=list)  # Block per named group of rows, in row order
    mip_rel_gap: float | None = None  # a MIP's relative gap tolerance [-]; None = the back-end's tight default
    mip_time_limit_s: float | None = None  # a cap on this MIP's solve time [s]; None = the run's own limit

    @property
    def n_col(self) -> int:
        return len(self.col_cost)

    @property
    def n_row(self) -> int:
        return len(self.row_lower)

    @property
    def n_nz(self) -> int:
        return len(self.a_value)

    @property
    def charge_col(self) -> np.ndarray:
        return np.arange(len(self.pair_session))

    def power_kw(self, x: np.ndarray, n_sessions: int, n_periods: int) -> np.ndarray:
        """Signed charger power [kW], shape (S, T), from a solution vector ``x``."""
        power = np.zeros((n_sessions, n_periods))
        signed = x[: len(self.pair_session)].copy()
        has_d = self.discharge_col >= 0
        signed[has_d] -= x[self.discharge_col[has_d]]
        power[self.pair_session, self.pair_period] = signed
        return power


class _Builder:
    """Collects columns and COO entries, then assembles CSC."""

    def __init__(self):
        self.cost, self.lower, self.upper, self.integer = [], [], [], []
        self.row_lower, self.row_upper = [], []
        self.rows, self.cols, self.vals = [], [], []
        self.n_col = 0
        self.n_row = 0
        self.col_blocks: list[Block] = []
        self.row_blocks: list[Block] = []

    def add_cols(self, name, labels, cost, lower, upper, integer=False) -> np.ndarray:
        cost = np.asarray(cost, dtype=float)
        n = len(cost)
        self.cost.append(cost)
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (n,)))
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (n,)))
        self.integer.append(np.full(n, 1 if integer else 0, dtype=np.int32))
        first = self.n_col
        self.n_col += n
        self.col_blocks.append(Block(name, first, first + n, labels))
        return np.arange(first, first + n)

    def add_rows(self, name, labels, lower, upper) -> np.ndarray:
        lower = np.asarray(lower, dtype=float)
        n = len(lower)
        self.row_lower.append(lower)
        self.row_upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (n,)))
        first = self.n_row
        self.n_row += n
        self.row_blocks.append(Block(name, first, first + n, labels))
        return np.arange(first, first + n)

    def add_entries(self, rows, cols, vals):
        rows = np.asarray(rows, dtype=np.int64)
        self.rows.append(rows)
        self.cols.append(np.asarray(cols, dtype=np.int64))
        self.vals.append(np.broadcast_to(np.asarray(vals, dtype=float), rows.shape))

    def assemble(self):
        cat = lambda parts, dtype=float: np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)  # noqa: E731
        rows, cols, vals = cat(self.rows, np.int64), cat(self.cols, np.int64), cat(self.vals)
        keep = vals != 0.0
        if not keep.all():  # three copies of every entry otherwise (0.1-0.3 s at 10,000 sessions)
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        order = np.argsort(cols, kind="stable")
        start = np.zeros(self.n_col + 1, dtype=np.int32)
        start[1:] = np.cumsum(np.bincount(cols, minlength=self.n_col))
        return (
            cat(self.cost), cat(self.lower), cat(self.upper), cat(self.row_lower), cat(self.row_upper),
            start, rows[order].astype(np.int32), vals[order], cat(self.integer, np.int32),
        )


def _expand(member_node, member_session, pair_first, pair_count):
    """Expand (node, session) membership to (node, pair k) for every period the session is present."""
    counts = pair_count[member_session]
    total = int(counts.sum())
    block = np.cumsum(counts) - counts
    k = np.repeat(pair_first[member_session] - block, counts) + np.arange(total)
    return np.repeat(member_node, counts), k


#: HiGHS integrality codes (HighsVarType): semi-continuous and semi-integer columns.
SEMI_CONTINUOUS, SEMI_INTEGER = 2, 3


def build_lp(problem: Problem, *, allow_overload: bool = False, binary_pairs: np.ndarray | None = None,
             executable: bool = False, overshoot: bool = True) -> LinearProgram:
    """Build the LP (a MIP when ``binary_pairs`` is given).

    Parameters
    ----------
    problem : Problem
    allow_overload : bool
        Node and phase limits become penalised slack (``objective.overload_penalty_cny_per_kwh``) instead of hard
        rows; the model is then always feasible.
    binary_pairs : numpy.ndarray of int, optional
        Pair indices ``k`` (of V2G sessions) that get a binary forbidding simultaneous charge and discharge.
    executable : bool
        Charge and discharge of cars with a minimum power or a step (``problem.min_power_kw > 0``) become
        semi-continuous / semi-integer (a MIP): 0 or an allowed power only.
    overshoot : bool
        With ``executable``: a floored car without V2G may be set above what it still needs in its last increment
        (the ``delivered`` column); False: its scheduled energy stays within its request.

    Raises
    ------
    InfeasibleError
        When, without ``allow_overload``, some node limit cannot be met whatever the chargers do.
    """
    p = problem
    S, T, dt = p.n_sessions, p.n_periods, p.step_hours
    b = _Builder()

    pair_session, pair_period = np.nonzero(p.presence)
    f = p.presence[pair_session, pair_period]
    K = len(pair_session)
    pair_count = np.bincount(pair_session, minlength=S)
    pair_first = np.cumsum(pair_count) - pair_count
    eta = p.efficiency[pair_session]
    v2g_session = p.v2g
    v2g_pair = v2g_session[pair_session]
    penalty = p.unmet_penalty

    # executable: a floored car that only charges may be set above what it still needs in its last increment (a
    # set-point is a limit; a full car draws less): its delivered energy is a column of its own (below)
    tops_up = executable & overshoot & (p.min_power_kw > 0) & (pair_count > 0)
    overshoot = tops_up & ~v2g_session
    # the cheapest price of each such car's periods [CNY/kWh]: its surplus is credited at it (see below)
    cheapest = np.full(S, np.inf)
    np.minimum.at(cheapest, pair_session, p.import_price[pair_period])
    credit = np.where(overshoot, cheapest, 0.0)[pair_session]

    # charge columns (k = 0 .. K-1): energy cost, minus the unmet penalty on delivered energy of charge-only sessions
    # (of an overshooting car: minus the credit of its surplus)
    charge_cost = f * dt * (p.import_price[pair_period] - credit) - np.where(
        v2g_pair | overshoot[pair_session], 0.0, penalty * eta * f * dt)
    b.add_cols("charge_kw", {"pair": np.arange(K)}, charge_cost, 0.0, p.charge_max_kw[pair_session])

    vk = np.flatnonzero(v2g_pair)
    V = len(vk)
    discharge_col = np.full(K, -1, dtype=np.int64)
    energy_col = np.full(K, -1, dtype=np.int64)
    if V:
        vs, vt = pair_session[vk], pair_period[vk]
        discharge_col[vk] = b.add_cols(
            "discharge_kw", {"pair": vk}, f[vk] * dt * (p.degradation_cost - p.export_price[vt]), 0.0, p.discharge_max_kw[vs]
        )
        last = np.zeros(V, dtype=bool)
        last[np.flatnonzero(np.r_[vs[1:] != vs[:-1], True])] = True
        # a floored V2G car (executable) may overshoot in its last plugged-in period only: its final state may pass
        # the request by what that period charges, up to one quantum; delivered = min(request, final) below
        top = last & tops_up[vs]
        upper = np.where(last & ~top, np.minimum(p.energy_upper_kwh[vs], p.energy_request_kwh[vs]),
                         p.energy_upper_kwh[vs])
        # the surplus (final - delivered) is not drawn: credited at the last period's price
        energy_cost = np.where(top, -p.import_price[vt] / eta[vk], np.where(last, -penalty, 0.0))
        energy_col[vk] = b.add_cols("energy_kwh", {"pair": vk}, energy_cost, p.energy_lower_kwh[vs], upper)
        # dynamics: energy[k] - energy[k-1] - eta f dt charge[k] + f dt / eta discharge[k] = 0
        rows = b.add_rows("energy_balance", {"pair": vk}, np.zeros(V), 0.0)
        first = np.r_[True, vs[1:] != vs[:-1]]
        b.add_entries(rows, energy_col[vk], 1.0)
        b.add_entries(rows[~first], energy_col[vk][:-1][~first[1:]], -1.0)
        b.add_entries(rows, vk, -eta[vk] * f[vk] * dt)
        b.add_entries(rows, discharge_col[vk], f[vk] * dt / eta[vk])
        kt = vk[top]
        if len(kt):
            ts = pair_session[kt]
            limit = np.minimum(p.energy_upper_kwh[ts], p.energy_request_kwh[ts])
            d = b.add_cols("delivered_kwh", {"session": ts}, -penalty + p.import_price[pair_period[kt]] / eta[kt], 0.0,
                           limit)
            rows = b.add_rows("final_surplus", {"session": ts}, np.zeros(len(kt)),
                              eta[kt] * f[kt] * dt * p.min_power_kw[ts])
            b.add_entries(rows, energy_col[kt], 1.0)
            b.add_entries(rows, d, -1.0)
            rows = b.add_rows("surplus_from_last_period", {"session": ts}, np.full(len(kt), -np.inf), 0.0)
            b.add_entries(rows, energy_col[kt], 1.0)
            b.add_entries(rows, d, -1.0)
            b.add_entries(rows, kt, -eta[kt] * f[kt] * dt)

    # energy by departure for charge-only sessions: sum eta f dt charge <= request. An overshooting car (above):
    # delivered = min(request, scheduled) as a column d <= request, with 0 <= scheduled - d <= one quantum (the
    # energy of its minimum power in its longest period: no trimmed schedule overshoots more). Its set-points are
    # billed in full and its surplus (scheduled - d) credited at its cheapest price: never below what its draw costs,
    # equal when it fills up in its cheapest period
    charge_only = np.flatnonzero(~v2g_session & (pair_count > 0))
    if len(charge_only):
        over = overshoot[charge_only]
        longest = np.zeros(S)
        np.maximum.at(longest, pair_session, f)
        quantum = p.efficiency * longest * dt * p.min_power_kw
        rows = b.add_rows("energy_by_departure", {"session": charge_only},
                          np.where(over, 0.0, -np.inf), np.where(over, quantum[charge_only],
                                                                 p.energy_request_kwh[charge_only]))
        row_of_session = np.full(S, -1, dtype=np.int64)
        row_of_session[charge_only] = rows
        ck = np.flatnonzero(~v2g_pair)
        b.add_entries(row_of_session[pair_session[ck]], ck, eta[ck] * f[ck] * dt)
        ds = charge_only[over]
        if len(ds):
            d = b.add_cols("delivered_kwh", {"session": ds}, -penalty + cheapest[ds] / p.efficiency[ds], 0.0,
                           p.energy_request_kwh[ds])
            b.add_entries(row_of_session[ds], d, -1.0)

    slack = {"node": [], "kind": [], "period": [], "col": []}
    infeasible: list[Overload] = []

    # node import / export limits on the signed sum of charger powers in the subtree
    limited = np.isfinite(p.import_limit_kw) | np.isfinite(p.export_limit_kw)
    mask = limited[p.member_node]
    node_e, k_e = _expand(p.member_node[mask], p.member_session[mask], pair_first, pair_count)
    if len(node_e) or np.any(limited):
        upper = p.import_limit_kw[:, None] - p.base_net_kw
        lower = -p.export_limit_kw[:, None] - p.base_net_kw
        most = summed_grid((p.n_nodes, T), node_e, pair_period[k_e], p.charge_max_kw[pair_session[k_e]])
        least = summed_grid((p.n_nodes, T), node_e, pair_period[k_e], -p.discharge_max_kw[pair_session[k_e]])
        for kind, gap in (("import", least - upper), ("export", lower - most)):
            bad_n, bad_t = np.nonzero(limited[:, None] & (gap > INFEASIBLE_TOLERANCE_KW))
            infeasible += [_overload(p, n, kind, t, gap[n, t]) for n, t in zip(bad_n, bad_t)]
        needed = limited[:, None] & ((most > upper) | (least < lower))
        _limit_rows(b, p, "node_limit", {}, needed, lower, upper, node_e, k_e, pair_period, discharge_col, 1.0,
                    allow_overload, slack, ("import", "export"))

    # phase import limits: base net load split evenly, chargers by their phase share
    phase_limited = np.isfinite(p.phase_import_limit_kw)
    if np.any(phase_limited):
        mask = phase_limited[p.member_node]
        node_e, k_e = _expand(p.member_node[mask], p.member_session[mask], pair_first, pair_count)
        for ph, name in enumerate(PHASES):
            share = p.phase_share[pair_session[k_e], ph]
            on = share > 0
            upper = p.phase_import_limit_kw[:, None] - p.base_net_kw / 3.0
            cells = ((p.n_nodes, T), node_e[on], pair_period[k_e[on]])
            most = summed_grid(*cells, share[on] * p.charge_max_kw[pair_session[k_e[on]]])
            least = summed_grid(*cells, -share[on] * p.discharge_max_kw[pair_session[k_e[on]]])
            gap = least - upper
            bad_n, bad_t = np.nonzero(phase_limited[:, None] & (gap > INFEASIBLE_TOLERANCE_KW))
            infeasible += [_overload(p, n, f"phase_{name}", t, gap[n, t]) for n, t in zip(bad_n, bad_t)]
            needed = phase_limited[:, None] & (most > upper)
            _limit_rows(b, p, "phase_import_limit", {"phase": ph}, needed, np.full_like(upper, -np.inf), upper,
                        node_e[on], k_e[on], pair_period, discharge_col, share[on], allow_overload, slack,
                        (f"phase_{name}", None))

    if infeasible and not allow_overload:
        raise InfeasibleError(infeasible, "base load (minus the most every charger below can give back) is over a limit")

    # peak: peak >= net load of the root at every period
    if p.peak_cost > 0:
        peak_col = b.add_cols("peak_kw", {}, [p.peak_cost], -np.inf, np.inf)[0]
        rows = b.add_rows("peak_definition", {"period": np.arange(T)}, p.base_net_kw[p.root], np.inf)
        b.add_entries(rows, np.full(T, peak_col), 1.0)
        b.add_entries(rows[pair_period], np.arange(K), -1.0)
        if V:
            b.add_entries(rows[pair_period[vk]], discharge_col[vk], 1.0)

    # charge or discharge, never both: charge <= cmax * z, discharge <= dmax * (1 - z)
    integer = False
    if binary_pairs is not None and len(binary_pairs):
        bk = np.asarray(binary_pairs, dtype=np.int64)
        z = b.add_cols("charging_mode", {"pair": bk}, np.zeros(len(bk)), 0.0, 1.0, integer=True)
        cmax, dmax = p.charge_max_kw[pair_session[bk]], p.discharge_max_kw[pair_session[bk]]
        rows = b.add_rows("charge_only_if_charging", {"pair": bk}, np.full(len(bk), -np.inf), 0.0)
        b.add_entries(rows, bk, 1.0)
        b.add_entries(rows, z, -cmax)
        rows = b.add_rows("discharge_only_if_not_charging", {"pair": bk}, np.full(len(bk), -np.inf), dmax)
        b.add_entries(rows, discharge_col[bk], 1.0)
        b.add_entries(rows, z, dmax)
        integer = True

    semi = {}
    if executable and np.any(p.min_power_kw > 0):
        semi = _executable_columns(b, p, pair_session, discharge_col)
        integer = True

    cost, lower, upper, row_lower, row_upper, start, index, value, integrality = b.assemble()
    for cols, low in semi.values():
        integrality[cols] = SEMI_CONTINUOUS
        lower[cols] = low
    return LinearProgram(
        col_cost=cost, col_lower=lower, col_upper=upper, row_lower=row_lower, row_upper=row_upper,
        a_start=start, a_index=index, a_value=value,
        offset=float(penalty * p.energy_request_kwh.sum()),
        integrality=integrality if integer else None,
        pair_session=pair_session, pair_period=pair_period, pair_fraction=f,
        discharge_col=discharge_col, energy_col=energy_col,
        slack_node=np.asarray(slack["node"], dtype=np.int64),
        slack_kind=np.asarray(slack["kind"], dtype=object),
        slack_period=np.asarray(slack["period"], dtype=np.int64),
        slack_col=np.asarray(slack["col"], dtype=np.int64),
        col_blocks=b.col_blocks, row_blocks=b.row_blocks,
    )


def _executable_columns(b: _Builder, p: Problem, pair_session: np.ndarray, discharge_col: np.ndarray) -> dict:
    """Columns and rows making charge/discharge of floored or stepped cars executable; returns the columns to make
    semi-continuous after assembly, with their lower bound (the minimum power) [kW]."""
    lowest, step = p.min_power_kw[pair_session], p.power_step_kw[pair_session]
    semi = {}
    for which, cols, most in (("charge", np.arange(len(pair_session)), p.top_power_kw("charge")[pair_session]),
                              ("discharge", discharge_col, p.top_power_kw("discharge")[pair_session])):
        on = (cols >= 0) & (lowest > 0) & (most > 0)
        # 0 or exactly the minimum (= the top): a binary times it. HiGHS (1.x) treats a semi-continuous or
        # semi-integer column whose lower bound equals its upper bound as fixed at 0
        only = on & (lowest >= most * (1 - 1e-12))
        k = np.flatnonzero(only)
        if len(k):
            z = b.add_cols(f"{which}_on", {"pair": k}, np.zeros(len(k)), 0.0, 1.0, integer=True)
            rows = b.add_rows(f"{which}_on_or_off", {"pair": k}, np.zeros(len(k)), 0.0)
            b.add_entries(rows, cols[k], 1.0)
            b.add_entries(rows, z, -most[k])
        on &= ~only
        stepped = on & (step > 0)
        k = np.flatnonzero(stepped)
        if len(k):
            size = step[k]
            fewest = np.round(lowest[k] / size)
            most_steps = np.round(most[k] / size)  # the top is a whole number of steps
            n = b.add_cols(f"{which}_steps", {"pair": k}, np.zeros(len(k)), fewest, most_steps, integer=True)
            b.integer[-1][:] = SEMI_INTEGER
            rows = b.add_rows(f"{which}_on_steps", {"pair": k}, np.zeros(len(k)), 0.0)
            b.add_entries(rows, cols[k], 1.0)
            b.add_entries(rows, n, -size)
        k = np.flatnonzero(on & ~stepped)
        if len(k):
            semi[which] = (cols[k], lowest[k])
    return semi


def _limit_rows(b, p, name, fixed_labels, needed, lower, upper, node_e, k_e, pair_period, discharge_col, weight, allow_overload, slack,
                kinds):
    """Add one row per needed (node, period) on sum(weight * (charge - discharge)) within [lower, upper]."""
    row_id = np.full(needed.shape, -1, dtype=np.int64)
    need_n, need_t = np.nonzero(needed)
    if not len(need_n):
        return
    labels = {"node": need_n, **{k: np.full(len(need_n), v) for k, v in fixed_labels.items()}, "period": need_t}
    row_id[need_n, need_t] = b.add_rows(name, labels, lower[need_n, need_t], upper[need_n, need_t])
    rows = row_id[node_e, pair_period[k_e]]
    on = rows >= 0
    weight = np.broadcast_to(weight, rows.shape)
    b.add_entries(rows[on], k_e[on], weight[on])
    d = discharge_col[k_e]
    on_d = on & (d >= 0)
    b.add_entries(rows[on_d], d[on_d], -weight[on_d])
    if allow_overload:
        cost = p.overload_penalty * p.step_hours
        for sign, kind, bound in ((-1.0, kinds[0], upper), (1.0, kinds[1], lower)):
            if kind is None:
                continue
            finite = np.isfinite(bound[need_n, need_t])
            n_s, t_s = need_n[finite], need_t[finite]
            cols = b.add_cols("overload_kw", {"node": n_s, "limit": np.full(len(n_s), kind, dtype=object), "period": t_s},
                              np.full(len(n_s), cost), 0.0, np.inf)
            b.add_entries(row_id[n_s, t_s], cols, sign)
            slack["node"] += n_s.tolist()
            slack["kind"] += [kind] * len(n_s)
            slack["period"] += t_s.tolist()
            slack["col"] += cols.tolist()


def _overload(p: Problem, n: int, kind: str, t: int, excess: float) -> Overload:
    return Overload(node=p.node_ids[n], kind=kind, period=int(t), start=p.period_start[t].isoformat(),
                    excess_kw=float(excess))
