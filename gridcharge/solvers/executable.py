"""Schedules a real charger can follow: powers on the allowed grid (0, or at least the minimum current's power, on the
current step), by rounding a schedule down and re-filling the headroom step by step.

Rounding down a charging power never raises a node load, a phase load or a battery's energy, so it keeps every
import, phase and battery limit the schedule kept. The re-fill then adds one step (or the jump from 0 to the minimum)
at a time, only where every limit above the car still has room for it and the car still needs energy, so it keeps
them too; a car's last increment may carry more energy than it still needs (a set-point is a limit: a full car
draws less), and :func:`trim` lowers every set-point to the smallest allowed power covering what the car still
takes. Design notes: docs/design/executable.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._arrays import request_from
from ..instance import STEP_SLACK
from ..problem import Problem
from ..schedule import (battery_power_kw, delivered_kwh, drawn_kw, energy_caps, node_loads, scheduled_gain_kwh,
                        taken_kwh)
from .headroom import Resources, node_resources

#: Headroom kept free at every limit while re-filling, for floating-point sums [kW].
SAFETY_KW = 1e-9
#: A car whose remaining need is below this is done [kWh].
DONE_KWH = 1e-9
#: :func:`round_up` treats a power up to this as 0 [kW], and a power this far (in steps) above a whole number of
#: steps as that number: twice the verifier's tolerance, so that a trimmed set-point is never above what the
#: verifier's overshoot allowance permits.
FULL_KW = 2e-6
ROOM_SLACK_STEPS = 2e-6


def round_down(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Each power's magnitude rounded down to the allowed grid [kW], shape (S, T): below the minimum → 0, else the
    whole step at or below it (continuous sessions unchanged)."""
    lowest = problem.min_power_kw[:, None]
    step = problem.power_step_kw[:, None]
    size = np.abs(power)
    safe = np.where(step > 0, step, 1.0)
    size = np.where(step > 0, np.floor(size / safe + STEP_SLACK) * safe, size)
    size = np.where(size < lowest * (1 - STEP_SLACK), 0.0, size)
    return np.sign(power) * size


def round_signed_down(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Each power moved down (in signed terms) to the allowed grid [kW]: a charge rounded down (below the minimum →
    0), a discharge's magnitude rounded up to a step (a discharge below the minimum → the minimum). Loads and
    energies only fall, so import, phase and battery-upper limits hold; the battery floor, export limits and a
    discharge above the car's top allowed power (set to that top) are the caller's to check."""
    charge = round_down(problem, np.clip(power, 0.0, None))
    lowest, step = problem.min_power_kw[:, None], problem.power_step_kw[:, None]
    out = np.clip(-power, 0.0, None)
    safe = np.where(step > 0, step, 1.0)
    size = np.where(step > 0, np.ceil(out / safe - STEP_SLACK) * safe, out)
    size = np.where(size > 0, np.maximum(size, lowest), 0.0)
    size = np.minimum(size, problem.top_power_kw("discharge")[:, None])
    return charge - size


def round_up(problem: Problem, power: np.ndarray) -> np.ndarray:
    """The smallest allowed power at or above each (non-negative) power [kW], shape (S, T): 0 up to
    :data:`FULL_KW`, else the minimum or the whole step at or above it (continuous sessions unchanged). May exceed
    the car's top power."""
    lowest = problem.min_power_kw[:, None]
    step = problem.power_step_kw[:, None]
    safe = np.where(step > 0, step, 1.0)
    size = np.where(step > 0, np.ceil(power / safe - ROOM_SLACK_STEPS) * safe, power)
    return np.where(power > FULL_KW, np.maximum(size, lowest), 0.0)


def trim(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Every charging set-point lowered to the smallest allowed power covering the energy the car still takes in
    that period (0 once it is full) [kW], shape (S, T).

    A set-point is a limit and a full car draws less (:func:`gridcharge.schedule.drawn_kw`), so this leaves the
    energy each car takes, and the power it draws, unchanged (to :data:`FULL_KW`); set-points, and with them import
    and phase loads, only fall, and no set-point carries more than the last increment's overshoot the verifier
    allows. Discharge untouched."""
    taken = taken_kwh(problem, power)
    cap = energy_caps(problem).per_period(scheduled_gain_kwh(problem, power))
    room = np.clip(cap - (np.cumsum(taken, axis=1) - taken), 0.0, None)
    per_kw = problem.efficiency[:, None] * problem.presence * problem.step_hours  # [kWh per kW]
    cover = round_up(problem, room / np.where(per_kw > 0, per_kw, 1.0))
    return np.where((power > 0) & (per_kw > 0), np.minimum(power, cover), power)


def snap(problem: Problem, power: np.ndarray) -> np.ndarray:
    """Each power moved to the nearest allowed value [kW]: for a MIP solution, which lies on the grid up to the
    solver's integrality tolerance."""
    lowest = problem.min_power_kw[:, None]
    step = problem.power_step_kw[:, None]
    size = np.abs(power)
    safe = np.where(step > 0, step, 1.0)
    size = np.where(step > 0, np.round(size / safe) * safe, size)
    size = np.where(size < lowest * 0.5, 0.0, np.maximum(size, np.where(size > 0, lowest, 0.0)))
    return np.sign(power) * size


def off_grid(problem: Problem, power: np.ndarray, tol_kw: float = 1e-6) -> np.ndarray:
    """Cells (S, T) whose power a car cannot follow: magnitude inside (0, minimum) or off the step (plugged-in
    periods only)."""
    size = np.abs(power)
    step = problem.power_step_kw[:, None]
    safe = np.where(step > 0, step, 1.0)
    below = size < problem.min_power_kw[:, None] - tol_kw
    off = (step > 0) & (np.abs(size / safe - np.round(size / safe)) * safe > tol_kw)
    return (problem.presence > 0) & (size > tol_kw) & (below | off)


@dataclass(frozen=True)
class Refill:
    """What :func:`refill` did: rounds of vectorised step-taking and the energy it added back [kWh]."""

    rounds: int
    added_kwh: float


def refill(problem: Problem, power: np.ndarray, *, period_order: np.ndarray | None = None,
           allowed: np.ndarray | None = None, peak_cap_kw: float | None = None,
           limits: bool = True, overshoot: bool | np.ndarray = True) -> tuple[np.ndarray, Refill]:
    """Give cars back energy in whole steps where every limit above them has room, periods in ``period_order``.

    Parameters
    ----------
    problem : Problem
    power : numpy.ndarray, shape (S, T) — an executable schedule that keeps every limit; only periods where a car
        does not discharge get more (a car's battery room from each period on bounds what it gets) [kW]
    period_order : numpy.ndarray of int, optional — periods to visit, in order (default: cheapest import price first,
        ties earlier first)
    allowed : numpy.ndarray of bool, shape (S, T), optional — cells that may receive power (default: where charging
        costs less than going unmet)
    peak_cap_kw : float, optional — keep the root's net load at or below this [kW] (with a peak charge)
    limits : bool — respect node and phase import limits (False only for the ``uncontrolled`` reference)
    overshoot : bool or numpy.ndarray of bool, shape (S,) — (for these cars) after its last discharge a car may take a last increment that carries more energy than it
        still needs (it draws only what it needs: a set-point is a limit); :func:`trim` afterwards. False: never
        above the need

    Returns
    -------
    (numpy.ndarray, Refill) — the new schedule (every cell on the grid) and what was done

    Notes
    -----
    Each round, every candidate car asks for its next increment: the minimum power from 0, else one step (a car
    without a step: all it may still take). A car's request is dropped if some limit above it has no room for it
    alone, or if it would add more energy than the car still needs (with ``overshoot`` after the car's last
    discharge, where its draw stops at its request: only once it needs nothing more). The rest are taken in order of need (largest
    first) per resource: a car is granted its increment if, on every resource above it, the increments of the cars
    before it and its own fit the room. The first car in order always fits, so each round grants at least one; loads
    only rise by what fits, so no limit breaks. Loop over periods and rounds only; numpy inside.
    """
    p = problem
    S, T = p.n_sessions, p.n_periods
    power = power.copy()
    if not S or not T:
        return power, Refill(0, 0.0)
    gain = p.efficiency[:, None] * p.presence * p.step_hours  # kWh per kW
    # room in the battery from each period on: adding charge in period t raises the energy of t and every later
    # period, so a car's need at t is the least room from t on (by departure: what it still asked for)
    slack = _battery_room(p, power)
    room_after = _suffix_min(slack)
    lowest = p.min_power_kw
    step = p.power_step_kw
    top = p.top_power_kw()
    if allowed is None:
        allowed = (p.import_price[None, :] / p.efficiency[:, None]) < p.unmet_penalty
    if period_order is None:
        period_order = np.argsort(p.import_price, kind="stable")
    r = _resources(p, power, peak_cap_kw) if limits else None
    # after its last discharge (from the start for a car that only charges) a car stops drawing at its request, so
    # its last increment there may overshoot the need (discharges are not changed here)
    overshoot_from = np.where(np.broadcast_to(overshoot, (S,)), request_from(scheduled_gain_kwh(p, power)), T)
    rounds = 0
    before = float(delivered_kwh(p, power).sum())
    for t in period_order:
        need = np.clip(room_after[:, t], 0.0, None)
        cand = (gain[:, t] > 0) & allowed[:, t] & (power[:, t] >= 0) & (need > DONE_KWH) & (power[:, t] < top - 1e-12)
        if not cand.any():
            continue
        room = None if r is None else np.maximum(r.room[:, t], 0.0)
        while True:
            s = np.flatnonzero(cand)
            if not len(s):
                break
            rounds += 1
            now = power[s, t]
            stepped = step[s] > 0
            jump = (now <= 0) & (lowest[s] > 0)  # from 0 to the minimum (raised to a whole step)
            # a car without a step, once at its minimum (or without one), may take any part of what is left
            free = ~stepped & ~jump
            want = np.where(jump, lowest[s], np.where(stepped, step[s], top[s] - now))
            want = np.minimum(want, top[s] - now)
            want = np.where(free, np.minimum(want, need[s] / gain[s, t]), want)
            if r is not None:
                want = _fit_alone(r, s, want, free, room)
            ok = (want > 1e-12) & ((gain[s, t] * want <= need[s] + 1e-12) | (t >= overshoot_from[s]))
            cand[s[~ok]] = False
            s, want = s[ok], want[ok]
            if not len(s):
                break
            granted = np.ones(len(s), dtype=bool) if r is None else _fits_in_order(r, s, want, need[s], room)
            g, d = s[granted], want[granted]
            power[g, t] += d
            need[g] = np.maximum(need[g] - gain[g, t] * d, 0.0)
            slack[g, t:] -= (gain[g, t] * d)[:, None]
            room_after[g] = _suffix_min(slack[g])
            if r is not None:
                _take(r, g, d, room)
            cand[g] &= (need[g] > DONE_KWH) & (power[g, t] < top[g] - 1e-12)
            if not granted.any():
                break
    return power, Refill(rounds, float(delivered_kwh(p, power).sum()) - before)


def _battery_room(p: Problem, power: np.ndarray) -> np.ndarray:
    """Energy each battery may still gain at each period's end [kWh], shape (S, T): its upper bound (the request in
    the last period) minus the energy added so far."""
    added = np.cumsum(scheduled_gain_kwh(p, power), axis=1)
    room = p.energy_upper_kwh[:, None] - added
    room[:, -1] = np.minimum(p.energy_upper_kwh, p.energy_request_kwh) - added[:, -1]
    return room


def _suffix_min(values: np.ndarray) -> np.ndarray:
    """``out[..., t] = min(values[..., t:])``."""
    return np.minimum.accumulate(values[..., ::-1], axis=-1)[..., ::-1]


@dataclass(frozen=True)
class _Room:
    """Resources with the room a schedule leaves, per period [kW]; pairs sorted by resource."""

    res: np.ndarray
    sess: np.ndarray
    w: np.ndarray
    room: np.ndarray  # (R, T)
    pairs_of: np.ndarray  # CSR over sessions: pair positions of each session
    ptr: np.ndarray


def _resources(p: Problem, power: np.ndarray, peak_cap_kw: float | None) -> _Room:
    base: Resources = node_resources(p)
    res, sess, w = base.pair_res, base.pair_sess, base.pair_w
    # the room the schedule leaves: slack - load of the cars on each resource
    used = np.zeros((base.n, p.n_periods))
    np.add.at(used, res, w[:, None] * power[sess])
    room = base.slack - used - SAFETY_KW
    if peak_cap_kw is not None and np.isfinite(peak_cap_kw):
        root_room = peak_cap_kw - node_loads(p, power)[p.root] - SAFETY_KW
        res = np.r_[res, np.full(p.n_sessions, base.n)]
        sess = np.r_[sess, np.arange(p.n_sessions)]
        w = np.r_[w, np.ones(p.n_sessions)]
        room = np.vstack([room, root_room[None, :]])
    order = np.argsort(sess, kind="stable")
    ptr = np.zeros(p.n_sessions + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(np.bincount(sess, minlength=p.n_sessions))
    return _Room(res=res, sess=sess, w=w, room=room, pairs_of=order, ptr=ptr)


def _pairs(r: _Room, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair positions of sessions ``s`` and, for each, the index into ``s`` it belongs to."""
    counts = r.ptr[s + 1] - r.ptr[s]
    owner = np.repeat(np.arange(len(s)), counts)
    offsets = np.repeat(r.ptr[s] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    return r.pairs_of[offsets], owner


def _fit_alone(r: _Room, s, want, free, room) -> np.ndarray:
    """Each car's increment if it fits every resource above it alone: a car with ``free`` is cut to the room, any
    other car gets 0 where it does not fit."""
    k, owner = _pairs(r, s)
    if not len(k):
        return want
    most = room[r.res[k]] / r.w[k]
    cap = np.full(len(s), np.inf)
    np.minimum.at(cap, owner, most)
    return np.where(free, np.minimum(want, cap), np.where(want <= cap, want, 0.0))


def _fits_in_order(r: _Room, s, want, need, room) -> np.ndarray:
    """Cars granted this round: on every resource, the increments of the cars before it (larger need first) and its
    own fit the room."""
    k, owner = _pairs(r, s)
    granted = np.ones(len(s), dtype=bool)
    if not len(k):
        return granted
    rank = np.empty(len(s), dtype=np.int64)
    rank[np.lexsort((s, -need))] = np.arange(len(s))
    order = np.lexsort((rank[owner], r.res[k]))
    k, owner = k[order], owner[order]
    load = r.w[k] * want[owner]
    res = r.res[k]
    start = np.r_[True, res[1:] != res[:-1]]
    total = np.cumsum(load)
    within = total - (total - load)[np.flatnonzero(start)][np.cumsum(start) - 1]
    bad = within > room[res] + 1e-12
    granted[owner[bad]] = False
    return granted


def _take(r: _Room, g, d, room) -> None:
    k, owner = _pairs(r, g)
    np.subtract.at(room, r.res[k], r.w[k] * d[owner])


def export_limits_hold(problem: Problem, power: np.ndarray, tol_kw: float = 1e-9) -> bool:
    """True when ``power`` keeps every export (reverse-flow) limit at the power the cars draw
    (:func:`gridcharge.schedule.drawn_kw`): the one limit rounding a charge down can break."""
    limited = np.isfinite(problem.export_limit_kw)
    if not limited.any():
        return True
    floor = -problem.export_limit_kw[limited, None]
    return bool(np.all(node_loads(problem, drawn_kw(problem, power))[limited] >= floor - tol_kw))


def round_and_refill(problem: Problem, power: np.ndarray, *, overshoot: bool = True,
                     **options) -> tuple[np.ndarray, Refill]:
    """An executable schedule from any schedule without discharge of a stepped or floored car: :func:`round_down`,
    then :func:`refill` (``options`` are refill's), then :func:`trim`. Keeps every import, phase and battery limit
    ``power`` kept; check export limits (at the power drawn) with :func:`export_limits_hold`.

    With ``overshoot`` a car's last increment may carry more energy than it needs (it draws only what it needs).
    A car that fills up earlier than before draws less in its later periods, which can break an export limit that
    the rounded-down schedule kept: the re-fill is then done again without overshoot for the cars drawing less than
    in the rounded-down schedule under a broken limit (a few times, then for every car).
    """
    down = round_down(problem, power)
    allowed = np.full(problem.n_sessions, overshoot)
    guard = not export_limits_hold(problem, down)  # broken before the re-fill: not the re-fill's to keep
    for attempt in range(EXPORT_RETRIES + 1):
        out, done = refill(problem, down, overshoot=allowed, **options)
        out = trim(problem, out)
        if guard or not allowed.any():
            break
        cut = _cut_under_broken_export(problem, out, down) & allowed
        if not cut.any():
            break
        allowed &= ~cut if attempt < EXPORT_RETRIES - 1 else False
    return out, done


#: Re-fills :func:`round_and_refill` tries with overshoot withheld from cars under a broken export limit.
EXPORT_RETRIES = 3


def _cut_under_broken_export(problem: Problem, power: np.ndarray, before: np.ndarray,
                             tol_kw: float = 1e-9) -> np.ndarray:
    """Cars, shape (S,), that draw less than in ``before`` in a period where a node above them exports more than
    its limit at the drawn power."""
    limited = np.isfinite(problem.export_limit_kw)
    if not limited.any():
        return np.zeros(problem.n_sessions, dtype=bool)
    drawn = drawn_kw(problem, power)
    broken = limited[:, None] & (node_loads(problem, drawn) < -problem.export_limit_kw[:, None] - tol_kw)
    less = drawn < drawn_kw(problem, before) - 1e-12
    hit = less[problem.member_session] & broken[problem.member_node]
    cut = np.zeros(problem.n_sessions, dtype=bool)
    cut[problem.member_session[hit.any(axis=1)]] = True
    return cut


#: :func:`trade_steps` tries every combination of up to this many charge steps and this many discharge steps [-].
TRADE_STEPS = 12
#: ... re-picks a car's combination this many times when the one it picked breaks its battery bounds,
TRADE_PASSES = 3
#: ... and gives the cars set back because others took the room this many more rounds.
TRADE_ROUNDS = 8


def trade_steps(problem: Problem, power: np.ndarray, *, peak_cap_kw: float | None = None,
                max_steps: int = TRADE_STEPS) -> np.ndarray:
    """Close the remainder of V2G cars left short by trading charge steps against discharge steps [kW], shape
    (S, T).

    Above all cars that end their stay selling: such a car takes every scheduled kWh (nothing after its last
    discharge is cut at its request), so a remainder below one quantum stays unmet (and a car that charges after
    its last sale but found no room there gains the same way). A charge step adds ``eta f dt step`` to the battery, a discharge step takes
    ``f dt step / eta``; their difference is small, so adding (or removing) ``a`` charge steps in one of its
    charging periods and ``b`` discharge steps in one of its selling periods lands close below its request. Per
    car (vectorised over cars and the ``(2 max_steps + 1)^2`` combinations) the combination that costs it least
    (energy bought, sold, and the unmet penalty) with the battery ending at most at its request, within the room
    every limit above it leaves alone in those periods (import, phase, the peak cap with ``peak_cap_kw`` where the
    load rises; export where it falls); a car whose choice takes its energy outside its battery bounds at some
    period (or to a cap, where it would be cut) picks again. Cars that together overfill a limit are set back
    (:func:`_set_back_where_limits_break`) and try again on the room left, a few rounds: every limit ``power``
    kept still holds, and a car only changes where it costs it less.
    """
    p = problem
    S, T = p.n_sessions, p.n_periods
    if not S or not T:
        return power
    gain = scheduled_gain_kwh(p, power)
    last = request_from(gain)
    wanted = (p.v2g & (last > 0) & (p.power_step_kw > 0)
              & (p.energy_request_kwh - delivered_kwh(p, power) > DONE_KWH)
              & np.isclose(taken_kwh(p, power), gain, rtol=0.0, atol=1e-12).all(axis=1))
    out = power
    for _ in range(TRADE_ROUNDS):
        if not wanted.any():
            break
        trial = _trade_once(p, out, np.flatnonzero(wanted), peak_cap_kw, max_steps)
        tried = (np.abs(trial - out) > 1e-12).any(axis=1)
        trial = np.where(_fit_in_order(p, trial, out, peak_cap_kw)[:, None], trial, out)
        kept = _set_back_where_limits_break(p, trial, out, peak_cap_kw)
        moved = (np.abs(kept - out) > 1e-12).any(axis=1)
        out = kept
        wanted &= tried & ~moved  # set back because others took the room: again on what is left
    return out


def _trade_once(p: Problem, power: np.ndarray, cars: np.ndarray, peak_cap_kw: float | None,
                max_steps: int) -> np.ndarray:
    """One pick of :func:`trade_steps` for ``cars``: the schedule with each car's cheapest combination that keeps
    its battery bounds and fits the room each limit above it leaves alone."""
    P, f = power[cars], p.presence[cars]
    step, lowest = p.power_step_kw[cars, None], p.min_power_kw[cars, None]
    eta = p.efficiency[cars, None]
    short = p.energy_request_kwh[cars] - delivered_kwh(p, power)[cars]
    rise, fall = _room_per_car(p, power, peak_cap_kw)
    rise, fall = np.floor(rise[cars] / step + STEP_SLACK), np.floor(fall[cars] / step + STEP_SLACK)
    # whole steps each cell may move by: on the grid, a charge (discharge) at or above the minimum, within the room
    charging, selling = (P > 0) & (f > 0), (P < 0) & (f > 0)
    moves = [np.where(charging, np.minimum(np.floor((p.top_power_kw()[cars, None] - P) / step + STEP_SLACK), rise), 0),
             np.where(charging, np.minimum(np.floor((P - lowest) / step + STEP_SLACK), fall), 0),
             np.where(selling, np.minimum(np.floor((p.top_power_kw("discharge")[cars, None] + P) / step
                                                   + STEP_SLACK), fall), 0),
             np.where(selling, np.minimum(np.floor((-P - lowest) / step + STEP_SLACK), rise), 0)]
    buy = np.broadcast_to(p.import_price[None, :], P.shape)
    sale = np.broadcast_to(p.export_price[None, :] - p.degradation_cost, P.shape)
    rows = np.arange(len(cars))
    # per direction, the best cell: cheapest to buy more, dearest to buy less, best to sell more, worst to sell less
    cells = [np.argmin(np.where(moves[0] >= 1, buy, np.inf), axis=1),
             np.argmax(np.where(moves[1] >= 1, buy, -np.inf), axis=1),
             np.argmax(np.where(moves[2] >= 1, sale, -np.inf), axis=1),
             np.argmin(np.where(moves[3] >= 1, sale, np.inf), axis=1)]
    most = [np.clip(m[rows, c], 0.0, None) for m, c in zip(moves, cells)]
    per_step = step[:, 0] * p.step_hours  # [kWh at the charger per step and unit of presence]
    at = [f[rows, c] * per_step for c in cells]
    k = np.arange(-max_steps, max_steps + 1, dtype=float)
    a, b = (v.ravel()[None, :] for v in np.meshgrid(k, k, indexing="ij"))  # charge, discharge steps (+: more)

    def pick(up, values):  # (cars, combinations): the value of the cell an increase / a decrease uses
        return np.where(up, values[0][:, None], values[1][:, None])

    up_a, up_b = a > 0, b > 0
    feasible = (np.abs(a) <= pick(up_a, most[:2])) & (np.abs(b) <= pick(up_b, most[2:]))
    charge_kwh, sell_kwh = a * pick(up_a, at[:2]), b * pick(up_b, at[2:])  # at the charger
    net = eta * charge_kwh - sell_kwh / eta  # into the battery [kWh]
    feasible &= (net >= 0.0) & (net <= short[:, None])  # never less energy, never above the request
    cost = (charge_kwh * pick(up_a, [buy[rows, cells[0]], buy[rows, cells[1]]])
            - sell_kwh * pick(up_b, [sale[rows, cells[2]], sale[rows, cells[3]]]) - p.unmet_penalty * net)
    cost = np.where(feasible, cost, np.inf)
    lower, upper = p.energy_lower_kwh[cars, None], p.energy_upper_kwh[cars, None]
    final = np.minimum(p.energy_upper_kwh, p.energy_request_kwh)[cars]
    before = np.cumsum(scheduled_gain_kwh(p, power)[cars], axis=1)
    new = P.copy()
    settled = np.zeros(len(cars), dtype=bool)
    for _ in range(TRADE_PASSES):
        choice = np.argmin(cost, axis=1)
        better = ~settled & (cost[rows, choice] < -1e-9)
        if not better.any():
            break
        da, db = a[0, choice], b[0, choice]
        trial = P.copy()
        trial[rows, np.where(da > 0, cells[0], cells[1])] += da * step[:, 0]
        trial[rows, np.where(db > 0, cells[2], cells[3])] -= db * step[:, 0]
        energy = np.cumsum(battery_power_kw(trial, eta) * f * p.step_hours, axis=1)
        # strictly inside the bounds where it moved (so no charge is cut at a cap), as before where it did not
        fits = ((energy >= np.minimum(lower + 1e-9, before)).all(axis=1)
                & (energy <= np.maximum(upper - 1e-9, before)).all(axis=1) & (energy[:, -1] <= final + 1e-9))
        ok = better & fits
        new[ok] = trial[ok]
        settled |= ok
        cost[rows[better & ~fits], choice[better & ~fits]] = np.inf
    out = power.copy()
    out[cars] = new
    return out


def _fit_in_order(p: Problem, changed: np.ndarray, before: np.ndarray, peak_cap_kw: float | None) -> np.ndarray:
    """Cars, shape (S,), whose change from ``before`` fits every limit together with the changes of the cars before
    them (session order): rises in the room of the import, phase (and peak cap) resources above them, falls in the
    export room of the limited nodes above them. A car that fits alone and comes first always fits."""
    delta = changed - before
    ok = np.ones(p.n_sessions, dtype=bool)
    r = _resources(p, before, peak_cap_kw)
    rise_s, rise_t = np.nonzero(delta > 1e-12)
    if len(rise_s):
        k, owner = _pairs(r, rise_s)
        ok &= _prefix_fits(p, r.res[k], rise_t[owner], rise_s[owner], r.w[k] * delta[rise_s, rise_t][owner],
                           r.room[r.res[k], rise_t[owner]])
    limited = np.isfinite(p.export_limit_kw)
    fall_s, fall_t = np.nonzero(delta < -1e-12)
    if limited.any() and len(fall_s):
        slack = node_loads(p, drawn_kw(p, before)) + p.export_limit_kw[:, None] - SAFETY_KW
        on = limited[p.member_node]
        sess, node = p.member_session[on], p.member_node[on]
        cell = np.zeros(p.n_sessions, dtype=bool)
        cell[fall_s] = True
        pair = cell[sess]
        sess, node = sess[pair], node[pair]
        # every (member pair, falling cell) of the same car
        order = np.argsort(fall_s, kind="stable")
        fs, ft = fall_s[order], fall_t[order]
        start = np.searchsorted(fs, sess)
        count = np.searchsorted(fs, sess, side="right") - start
        which = np.repeat(start - np.cumsum(count) + count, count) + np.arange(count.sum())
        nodes = np.repeat(node, count)
        ok &= _prefix_fits(p, nodes, ft[which], fs[which], -delta[fs[which], ft[which]], slack[nodes, ft[which]])
    return ok


def _prefix_fits(p: Problem, res: np.ndarray, t: np.ndarray, sess: np.ndarray, load: np.ndarray,
                 room: np.ndarray) -> np.ndarray:
    """Cars, shape (S,), none of whose loads makes the running sum over its (resource, period) group, in session
    order, exceed the room."""
    ok = np.ones(p.n_sessions, dtype=bool)
    if not len(res):
        return ok
    order = np.lexsort((sess, t, res))
    res, t, sess, load, room = res[order], t[order], sess[order], load[order], room[order]
    start = np.r_[True, (res[1:] != res[:-1]) | (t[1:] != t[:-1])]
    total = np.cumsum(load)
    within = total - (total - load)[np.flatnonzero(start)][np.cumsum(start) - 1]
    ok[sess[within > room + 1e-12]] = False
    return ok


def _room_per_car(p: Problem, power: np.ndarray, peak_cap_kw: float | None) -> tuple[np.ndarray, np.ndarray]:
    """How far each car's power may rise (import, phase, peak cap at the set-points) and fall (export at the drawn
    power) in each period with every other car as it is [kW], shapes (S, T); inf where nothing limits it."""
    r = _resources(p, power, peak_cap_kw)
    rise = np.full(power.shape, np.inf)
    np.minimum.at(rise, r.sess, np.clip(r.room[r.res], 0.0, None) / r.w[:, None])
    fall = np.full(power.shape, np.inf)
    limited = np.isfinite(p.export_limit_kw)
    if limited.any():
        slack = np.clip(node_loads(p, drawn_kw(p, power)) + p.export_limit_kw[:, None] - SAFETY_KW, 0.0, None)
        on = limited[p.member_node]
        np.minimum.at(fall, p.member_session[on], slack[p.member_node[on]])
    return rise, fall


def _set_back_where_limits_break(p: Problem, changed: np.ndarray, before: np.ndarray,
                                 peak_cap_kw: float | None) -> np.ndarray:
    """``changed`` with every car that differs from ``before`` in a period where a resource above it (import,
    phase, peak cap at the set-points; export at the drawn power) is broken and worse than in ``before`` set back,
    until none is."""
    old = _resources(p, before, peak_cap_kw)
    limited = np.isfinite(p.export_limit_kw)
    floor = -p.export_limit_kw[:, None]
    old_export = node_loads(p, drawn_kw(p, before))
    while True:
        differs = np.abs(changed - before) > 1e-12
        if not differs.any():
            return changed
        room = _resources(p, changed, peak_cap_kw).room
        broken = (room < -SAFETY_KW) & (room < old.room - 1e-12)
        hit = (differs[old.sess] & broken[old.res]).any(axis=1)
        cut = np.zeros(p.n_sessions, dtype=bool)
        cut[old.sess[hit]] = True
        if limited.any():
            load = node_loads(p, drawn_kw(p, changed))
            bad = limited[:, None] & (load < floor - 1e-9) & (load < old_export - 1e-12)
            on = (differs[p.member_session] & bad[p.member_node]).any(axis=1)
            cut[p.member_session[on]] = True
        if not cut.any():
            return changed
        changed = changed.copy()
        changed[cut] = before[cut]
