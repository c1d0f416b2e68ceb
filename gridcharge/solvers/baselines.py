"""Baseline charging strategies that real systems use, in numpy: the references an optimum is measured against.

``uncontrolled`` (plug in and charge), ``equal_share`` (a load manager's fair split), ``edf`` and ``llf`` (deadline
priority), ``greedy_cost`` (cheapest periods first). On an instance with ``min_current_a`` / ``current_step_a`` each
hands out 0 or an allowed power only: its allocation is rounded down to the grid and the freed headroom handed out
again step by step (:func:`gridcharge.solvers.executable.round_and_refill`), as real load managers quantise. Each is ``name(problem, *, time_limit_s=None, **options) ->
Schedule``; unknown options (``allow_overload``, ``method``, ``verbose`` ...) are accepted and ignored, and so is
``time_limit_s`` (each baseline is a single pass). None uses V2G: power is never negative.

How they are vectorised
-----------------------
The node limits of one period are a set of *resources*: the import limit of every limited node (weight 1 for every
car below it) and each phase of every phase-limited node (weight = the car's phase share). A car's power ``p_s`` must
keep ``sum_s w_rs p_s <= headroom_r`` for every resource ``r`` and ``0 <= p_s <= u_s``, ``u_s`` its max power capped
by its remaining need. Every controlled baseline loops over periods only; inside a period the work is numpy over
(resource, car) membership pairs:

- resources that cannot bind in this period (``sum w u <= headroom``) are dropped, and those with a single present
  car become a cap on that car's ``u`` — in residential trees that leaves the transformer and the feeders;
- *water-filling* (``equal_share``): max-min fair progressive filling. A round computes every resource's water level
  at once (pairs sorted by (resource, u), segment cumulative sums), freezes the cars of the lowest-level resource at
  that level and every car whose ``u`` is below it. Rounds <= number of binding resources + 1;
- *priority filling* (``edf``, ``llf``, ``greedy_cost``): the car-by-car greedy ``p_i = min(u_i, min_r (headroom_r -
  sum_{j before i in r} w_rj p_j) / w_ri)`` is the unique fixed point of that map ``Phi``, and ``Phi`` reverses order
  (more power before i leaves less for i). So from ``u`` the iterates ``Phi(u), Phi^3(u), ...`` rise monotonically to
  the greedy and each is feasible, ``Phi^2(u), Phi^4(u), ...`` fall to it; each ``Phi`` is one cumulative sum per
  resource (pairs sorted by (resource, priority)). Iteration stops when the feasible iterate no longer moves, which
  takes a few rounds (a round fixes at least the next car in priority order, and in practice all cars whose resources
  do not hand room to one another).

Feasibility: headroom is ``limit - base load`` less ``SAFETY_KW``; the energy added never exceeds min(request, battery
room) because ``u`` is capped by the remaining need each period. If base load alone is over an import or phase limit,
no charge-only schedule can meet it: :class:`~gridcharge.errors.InfeasibleError` names node, limit, period and kW
(as the LP does). Charging only raises load, so a node whose base load is below ``-export_limit_kw`` is reported the
same way if the baseline's own charging did not happen to lift it back above (the baselines do not steer charging to
absorb reverse flow).
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, Overload
from ..formulation.lp import INFEASIBLE_TOLERANCE_KW
from ..problem import Problem
from ..schedule import Schedule, drawn_kw, node_loads, overload_kwh, summarise
from .executable import round_and_refill
from .headroom import Resources, node_resources

#: Headroom kept free at every limit, for floating-point sums [kW]; the verifier tolerates 1e-6 x max(1, |limit|).
SAFETY_KW = 1e-9
#: Upper bound on priority-filling rounds per period (the iteration normally settles in a handful).
MAX_PRIORITY_ROUNDS = 10_000
#: A car whose remaining need is below this is done: no dust powers from the safety margin [kWh].
DONE_KWH = 1e-9
#: A feasible priority-filling iterate that moves by less than this is settled [kW].
SETTLED_KW = 1e-12


def _version() -> str:
    try:
        return version("gridcharge")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        return "unknown"


# ------------------------------------------------------------------------------------------------------------------
# the strategies


def uncontrolled(problem: Problem, *, time_limit_s: float | None = None, **options) -> Schedule:
    """Every car charges at its maximum power [kW] from arrival until it has its energy [kWh], whatever the grid.

    Today's reality: the "uncontrolled" (plug-and-charge) reference case of EV hosting-capacity studies.

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — ignored: one pass, no search [s]
    **options — accepted and ignored (``allow_overload``, ``method``, ``verbose`` ...)

    Returns
    -------
    Schedule — status ``"uncontrolled"``; ``overload_kwh``: energy above each node's import, export and phase
        limits [kWh] (also ``summary["overload_kwh"]``, the total). Node limits are ignored on purpose
        (``reports_overload = True``: :func:`gridcharge.solve` keeps the violations in ``schedule.verification``).

    Notes
    -----
    No loop at all: the most energy each period can add is cumulated along time, and each period gets
    ``clip(need - energy before it, 0, most of this period)``.
    """
    started = time.perf_counter()
    p = problem
    step = p.step_hours
    most = (p.efficiency * p.charge_max_kw)[:, None] * p.presence * step  # [kWh] per period at full power
    before = np.cumsum(most, axis=1) - most
    need = np.minimum(p.energy_request_kwh, p.energy_upper_kwh)[:, None]
    energy = np.clip(need - before, 0.0, most)
    ratio = np.divide(energy, most, out=np.zeros_like(energy), where=most > 0)
    power = np.minimum(p.charge_max_kw[:, None] * ratio, p.charge_max_kw[:, None])
    if p.executable:  # what a real charger does: whole steps, the last bit of energy in a step it can follow
        power, _ = round_and_refill(p, power, period_order=np.arange(p.n_periods),
                                    allowed=np.ones(power.shape, dtype=bool), limits=False)
    overload = overload_kwh(p, power)
    seconds = time.perf_counter() - started
    summary = summarise(p, power, status="uncontrolled", solver="uncontrolled", solver_version=_version(),
                        build_seconds=0.0, solve_seconds=seconds, overload_kwh=float(overload.sum()))
    return Schedule(problem=p, power=power, summary=summary,
                    overload_kwh=pd.Series(overload, index=p.node_ids, name="overload_kwh"))


uncontrolled.reports_overload = True


def equal_share(problem: Problem, *, time_limit_s: float | None = None, **options) -> Schedule:
    """Each period, every node's tightest headroom [kW] (import and per phase) is split equally among present cars.

    What commercial load managers do ("equal distribution"), made exact as max-min fair progressive filling
    (Bertsekas & Gallager, *Data Networks*, 1992): a car needing less than its share leaves the rest to the others.

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — ignored: one pass, no search [s]
    **options — accepted and ignored (``allow_overload``, ``method``, ``verbose`` ...)

    Returns
    -------
    Schedule — status ``"heuristic"``; never over any node's import or phase limit.

    Notes
    -----
    A car's share is capped by its max power [kW] and by what it still needs this period. Loop over periods; in each,
    rounds of water-filling over all binding nodes at once (at most one round per binding limit, plus one).
    """
    return _controlled(problem, "equal_share", _water_fill)


def edf(problem: Problem, *, time_limit_s: float | None = None, **options) -> Schedule:
    """Earliest departure first: each period, cars in order of departure [h] take all the node headroom they can.

    Earliest-deadline-first scheduling (Liu & Layland, 1973) applied to charging, up to each car's max power [kW].

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — ignored: one pass, no search [s]
    **options — accepted and ignored (``allow_overload``, ``method``, ``verbose`` ...)

    Returns
    -------
    Schedule — status ``"heuristic"``; never over any node's import or phase limit.

    Notes
    -----
    Each car takes ``min(max power, remaining need / (efficiency x f x step), what every ancestor's import and phase
    headroom left by the cars before it allows)`` — computed as the fixed point of priority filling (module notes).
    """
    departure = _hours_from_start(problem, "departure")
    rank = _rank(departure)
    return _controlled(problem, "edf", _priority_fill, priority=lambda t, remaining: rank)


def llf(problem: Problem, *, time_limit_s: float | None = None, **options) -> Schedule:
    """Least laxity first: each period, cars in order of laxity [h] take all the node headroom they can.

    Least-laxity-first scheduling (Mok, 1983): laxity = time left [h] - energy still needed [kWh] / max power [kW].

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — ignored: one pass, no search [s]
    **options — accepted and ignored (``allow_overload``, ``method``, ``verbose`` ...)

    Returns
    -------
    Schedule — status ``"heuristic"``; never over any node's import or phase limit.

    Notes
    -----
    Laxity is recomputed at the start of every period, with the max power into the battery (efficiency x max
    charge power), so a car falling behind moves up. Ties: session order. Filling as in :func:`edf`.
    """
    p = problem
    departure = _hours_from_start(p, "departure")
    period_h = np.arange(p.n_periods) * p.step_hours
    rate = p.efficiency * p.charge_max_kw  # [kWh/h] into the battery at full power

    def priority(t, remaining):
        return _rank((departure - period_h[t]) - remaining / rate)

    return _controlled(p, "llf", _priority_fill, priority=priority)


def greedy_cost(problem: Problem, *, time_limit_s: float | None = None, **options) -> Schedule:
    """Each car, least laxity first, fills its cheapest periods [CNY/kWh] within the headroom [kW] the others left.

    The price-responsive greedy of smart charging (valley filling by tariff, ordered by least laxity as in LLF).

    Parameters
    ----------
    problem : Problem
    time_limit_s : float, optional — ignored: one pass, no search [s]
    **options — accepted and ignored (``allow_overload``, ``method``, ``verbose`` ...)

    Returns
    -------
    Schedule — status ``"heuristic"``; never over any node's import or phase limit.

    Notes
    -----
    Formulated per period, not per car (no loop over sessions): the price is the same for every car, so every car
    ranks the periods alike (cost per kWh delivered = price / efficiency). Visiting periods from the cheapest up
    (ties: earlier first) and letting cars take headroom in least-laxity order within each period gives exactly the
    car-by-car greedy — each car sees, in every period, the headroom left by the cars before it, and fills its own
    periods in price order — with a loop over periods only. Laxity is static here: plugged-in time [h] - request
    [kWh] / (efficiency x max power [kW]). A period whose price / efficiency is not below the unmet-energy penalty
    is never used (going unmet is cheaper there); the peak charge (``peak_cny_per_kw``) is not considered.
    """
    p = problem
    arrival = np.maximum(_hours_from_start(p, "arrival"), 0.0)
    departure = _hours_from_start(p, "departure")
    laxity = (departure - arrival) - np.minimum(p.energy_request_kwh, p.energy_upper_kwh) / (
        p.efficiency * p.charge_max_kw)
    rank = _rank(laxity)
    worth = p.import_price[None, :] / p.efficiency[:, None] < p.unmet_penalty  # (S, T) charging beats going unmet
    order = np.argsort(p.import_price, kind="stable")
    return _controlled(p, "greedy_cost", _priority_fill, priority=lambda t, remaining: rank,
                       period_order=order, allowed=worth)


BASELINES: dict = {
    "uncontrolled": uncontrolled,
    "equal_share": equal_share,
    "edf": edf,
    "llf": llf,
    "greedy_cost": greedy_cost,
}


# ------------------------------------------------------------------------------------------------------------------
# the common period loop


def _controlled(p: Problem, name: str, allocate, *, priority=None, period_order=None, allowed=None) -> Schedule:
    """Loop over periods; in each, cap every present car by max power and remaining need, then ``allocate``."""
    started = time.perf_counter()
    resources = node_resources(p)
    _raise_if_base_over(p, resources)
    headroom = np.maximum(resources.slack - SAFETY_KW, 0.0)
    S, T, step = p.n_sessions, p.n_periods, p.step_hours
    power = np.zeros((T, S))
    remaining = np.minimum(p.energy_request_kwh, p.energy_upper_kwh).astype(float).clip(0.0, None)
    gain = p.efficiency[None, :] * p.presence.T * step  # (T, S) kWh per kW
    cmax = p.charge_max_kw
    rounds = 0
    for t in (range(T) if period_order is None else period_order):
        on = (gain[t] > 0) & (remaining > DONE_KWH)
        if allowed is not None:
            on &= allowed[:, t]
        if not on.any():
            continue
        u = np.zeros(S)
        u[on] = np.minimum(cmax[on], remaining[on] / gain[t, on])
        u, res, sess, w = _binding(resources, headroom[:, t], u)
        key = None if priority is None else priority(t, remaining)
        power[t], n = allocate(u, res, sess, w, headroom[:, t], key)
        rounds += n
        remaining = np.maximum(remaining - gain[t] * power[t], 0.0)
    power = power.T.copy()
    if p.executable:
        # a real load manager's quantisation: round down to what cars can follow (0 or the minimum, on the step),
        # then hand the freed headroom out again step by step, in the order this baseline visits periods
        power, done = round_and_refill(p, power, period_order=np.arange(T) if period_order is None else period_order,
                                       allowed=np.ones(power.shape, dtype=bool) if allowed is None else allowed)
        rounds += done.rounds
    _raise_if_export_over(p, power)
    seconds = time.perf_counter() - started
    summary = summarise(p, power, status="heuristic", solver=name, solver_version=_version(), build_seconds=0.0,
                        solve_seconds=seconds, overload_kwh=0.0, allocation_rounds=int(rounds))
    return Schedule(problem=p, power=power, summary=summary)


def _binding(r: Resources, headroom: np.ndarray, u: np.ndarray):
    """The membership pairs of resources that can bind this period; single-car resources folded into ``u``."""
    on = u[r.pair_sess] > 0
    res, sess, w = r.pair_res[on], r.pair_sess[on], r.pair_w[on]
    most = np.bincount(res, w * u[sess], minlength=r.n)
    binding = most > headroom
    if not binding.any():
        return u, res[:0], sess[:0], w[:0]
    single = binding & (np.bincount(res, minlength=r.n) == 1)
    if single.any():
        k = single[res]
        np.minimum.at(u, sess[k], headroom[res[k]] / w[k])
        most = np.bincount(res, w * u[sess], minlength=r.n)
        binding = (most > headroom) & ~single
    keep = binding[res]
    return u, res[keep], sess[keep], w[keep]


def _segments(res: np.ndarray, n: int):
    count = np.bincount(res, minlength=n)
    return count, np.cumsum(count) - count


def _water_fill(u, res, sess, w, headroom, key=None):
    """Max-min fair powers: progressive filling with exact per-resource water levels. Returns (power, rounds)."""
    p = u.copy()
    if not len(res):
        return p, 0
    R = len(headroom)
    order = np.lexsort((u[sess], res))
    res, sess, w = res[order], sess[order], w[order]
    d = u[sess]
    frozen = np.ones(len(u), dtype=bool)
    frozen[sess] = False
    rounds = 0
    while True:
        act = ~frozen[sess]
        if not act.any():
            return p, rounds
        rounds += 1
        done = ~act
        used = np.bincount(res[done], w[done] * p[sess[done]], minlength=R)
        room = np.maximum(headroom - used, 0.0)
        ra, sa, wa, da = res[act], sess[act], w[act], d[act]
        count, start = _segments(ra, R)
        wd = wa * da
        cwd, cw = np.cumsum(wd), np.cumsum(wa)
        first = np.minimum(start, len(ra) - 1)
        within_wd = cwd - (cwd - wd)[first][ra]  # sum of w d up to and including this pair, within its resource
        within_w = cw - (cw - wa)[first][ra]
        total_w = np.bincount(ra, wa, minlength=R)
        after_w = total_w[ra] - within_w
        # F(d_j): load of the resource if the water stood at d_j; non-decreasing along each resource's pairs
        below = within_wd + da * after_w <= room[ra]
        n_below = np.bincount(ra[below], minlength=R)
        last = np.clip(start + n_below - 1, 0, len(ra) - 1)
        filled = np.where(n_below > 0, within_wd[last], 0.0)
        rest = np.where(n_below > 0, after_w[last], total_w)
        level = np.full(R, np.inf)
        cut = (count > 0) & (n_below < count)
        level[cut] = (room[cut] - filled[cut]) / rest[cut]
        lowest = level.min()
        if not np.isfinite(lowest):
            p[sa] = da
            return p, rounds
        tight = level <= lowest + 1e-12 * max(1.0, lowest)
        hit = sa[tight[ra]]
        p[hit] = np.minimum(u[hit], lowest)
        frozen[hit] = True
        sated = sa[da <= lowest]
        p[sated] = u[sated]
        frozen[sated] = True


def _priority_fill(u, res, sess, w, headroom, key):
    """Greedy in priority order (``key``: lower first) as the fixed point of ``Phi``. Returns (power, rounds)."""
    if not len(res):
        return u.copy(), 0
    R = len(headroom)
    order = np.lexsort((key[sess], res))
    res, sess, w = res[order], sess[order], w[order]
    _, start = _segments(res, R)
    first = np.minimum(start, len(res) - 1)[res]
    cap = headroom[res]

    def phi(g):
        wg = w * g[sess]
        before = np.cumsum(wg) - wg
        prefix = before - before[first]  # what the cars before this one in the same resource take
        out = u.copy()
        np.minimum.at(out, sess, np.maximum(cap - prefix, 0.0) / w)
        return out

    low = phi(u)
    rounds = 1
    while rounds < MAX_PRIORITY_ROUNDS:
        high = phi(low)
        if np.max(high - low) <= SETTLED_KW:
            break
        new = phi(high)
        rounds += 2
        settled = np.max(new - low) <= SETTLED_KW
        low = np.minimum(new, high)  # an iterate below the greedy: feasible
        if settled:
            break
    return low, rounds


# ------------------------------------------------------------------------------------------------------------------
# helpers


def _hours_from_start(p: Problem, which: str) -> np.ndarray:
    """Arrival or departure of each session [h after the horizon start]; one pass over sessions, not periods."""
    t0 = p.instance.horizon.start.timestamp()
    stamps = np.fromiter((getattr(s, which).timestamp() for s in p.instance.sessions), dtype=float,
                         count=p.n_sessions)
    return (stamps - t0) / 3600.0


def _rank(value: np.ndarray) -> np.ndarray:
    """0 for the smallest value, ties broken by session order."""
    rank = np.empty(len(value), dtype=np.int64)
    rank[np.lexsort((np.arange(len(value)), value))] = np.arange(len(value))
    return rank


def _raise_if_base_over(p: Problem, r: Resources) -> None:
    over_r, over_t = np.nonzero(-r.slack > INFEASIBLE_TOLERANCE_KW)
    if len(over_r):
        overloads = [_overload(p, r.res_node[k], r.res_kind[k], t, -r.slack[k, t]) for k, t in zip(over_r, over_t)]
        raise InfeasibleError(overloads, "base load alone is over a limit, and a charge-only baseline cannot "
                                         "relieve it")


def _raise_if_export_over(p: Problem, power: np.ndarray) -> None:
    limited = np.isfinite(p.export_limit_kw)
    if not limited.any():
        return
    gap = -p.export_limit_kw[:, None] - node_loads(p, drawn_kw(p, power))  # less drawn where a car is full
    over_n, over_t = np.nonzero(limited[:, None] & (gap > INFEASIBLE_TOLERANCE_KW))
    if len(over_n):
        overloads = [_overload(p, n, "export", t, gap[n, t]) for n, t in zip(over_n, over_t)]
        raise InfeasibleError(overloads, "base generation alone is over an export limit, and this baseline's "
                                         "charging does not absorb it")


def _overload(p: Problem, n, kind: str, t, excess: float) -> Overload:
    return Overload(node=p.node_ids[int(n)], kind=str(kind), period=int(t), start=p.period_start[int(t)].isoformat(),
                    excess_kw=float(excess))
