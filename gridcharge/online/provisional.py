"""Provisional plans: the last published plan carried over to a new window, each new car filled greedily into
the headroom it leaves. Published before a re-solve (a charger gets a safe set-point at once) or when a re-solve
runs out of its budget; checked like every publication (docs/design/online.md, "How a re-solve works", step 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PublicationRejected
from ..problem import Problem
from ..schedule import node_loads, phase_loads
from ..solvers.executable import round_and_refill
from ..verify import Verification
from .checks import capped_problem, check_schedule
from .state import Publication
from .window import Window


@dataclass(frozen=True)
class InterimPlan:
    """A plan that passed the checks without a solve: ``power_kw`` (S, T) [kW], its ``verification`` and how many
    cars were ``new`` in it (filled greedily)."""

    power_kw: np.ndarray
    verification: Verification
    new: int


def last_plan(publication: Publication, now: int, problem: Problem) -> tuple[np.ndarray, np.ndarray] | None:
    """The publication's set-points from ``now`` on, in the order of ``problem``'s sessions (zero rows for cars it
    did not have) [kW], and each session's row in it (-1: new). None when it does not cover ``problem``'s periods."""
    index = {sid: i for i, sid in enumerate(publication.session_ids)}
    rows = np.array([index.get(sid, -1) for sid in problem.session_ids], dtype=np.int64)
    a = now - publication.start_period
    if a < 0 or publication.power_kw.shape[1] - a < problem.n_periods:
        return None
    power = np.zeros((problem.n_sessions, problem.n_periods))
    known = rows >= 0
    power[known] = publication.power_kw[rows[known], a:a + problem.n_periods]
    return np.where(problem.presence > 0, power, 0.0), rows


def plan_tail(publication: Publication, now: int, problem: Problem) -> np.ndarray | None:
    """The publication's set-points from ``now`` on for ``problem``'s sessions [kW]; None if a car is new to it."""
    last = last_plan(publication, now, problem)
    return None if last is None or (last[1] < 0).any() else last[0]


def interim_plan(publication: Publication, problem: Problem, window: Window,
                 never_above_request: bool = False) -> InterimPlan | None:
    """The last plan from now on, each new car filled into the headroom it leaves, if it passes the checks of every
    publication; None otherwise (or when the last plan does not cover the window)."""
    last = last_plan(publication, window.now, problem)
    if last is None:
        return None
    n_real = window.n_real
    new = np.flatnonzero(last[1][:n_real] < 0)
    power = last[0]
    power[n_real:] = 0.0  # forecast phantoms hold no real load
    power = fill_new_cars(problem, power, new, window.caps_kw)
    try:
        verification = check_schedule(problem, power, window, never_above_request)
    except PublicationRejected:
        return None  # the old plan no longer fits (or the greedy fill missed a rule)
    return InterimPlan(power, verification, len(new))


def fill_new_cars(problem: Problem, power: np.ndarray, new: np.ndarray, caps_kw: np.ndarray) -> np.ndarray:
    """``power`` [kW] with each car of ``new`` charging in its cheapest periods, at what every node above it (import
    limit, demand-response cap ``caps_kw`` (N, T), per-phase limit) still has free, until its request or its battery
    is full.

    A loop over the new cars, not over periods: the node and phase loads are summed once, each car's headroom is one
    vectorised minimum over its ancestors, its periods are taken in price order by a cumulative sum, and its power is
    then added to the loads of its ancestors only. Never discharges. On chargers with a minimum current or a step,
    the new cars' powers are then rounded down to what a car can follow and the headroom re-filled step by step
    (:func:`gridcharge.solvers.executable.round_and_refill`, new cars only, caps folded in): every set-point is 0 or
    executable. The result is a candidate; the caller checks it.
    """
    power = power.copy()
    power[new] = 0.0
    limit = np.minimum(problem.import_limit_kw[:, None], caps_kw)
    load = node_loads(problem, power)
    # per-phase loads only where a node has a per-phase limit (none on most sites: at 10,000 nodes summing all
    # three phases of every node was a fifth of the provisional plan's time)
    phased = np.isfinite(problem.phase_import_limit_kw).any()
    phases = phase_loads(problem, power) if phased else None
    order = np.argsort(problem.import_price, kind="stable")  # cheapest first, earlier first on a tie
    for s in new:
        above = problem.member_node[problem.member_session == s]
        free = (limit[above] - load[above]).min(axis=0)
        share = problem.phase_share[s]
        for k in np.flatnonzero(share > 0) if phased else ():
            free = np.minimum(free, ((problem.phase_import_limit_kw[above, None] - phases[k, above]) / share[k])
                              .min(axis=0))
        present = problem.presence[s]
        rate = np.where(present > 0, np.clip(free, 0.0, problem.charge_max_kw[s]), 0.0)  # [kW]
        gain = rate * present * problem.efficiency[s] * problem.step_hours  # energy into the battery per period
        want = max(min(problem.energy_request_kwh[s], problem.energy_upper_kwh[s]), 0.0)
        before = np.cumsum(gain[order]) - gain[order]  # energy already taken before each period in that order
        fraction = np.clip((want - before) / np.where(gain[order] > 0, gain[order], 1.0), 0.0, 1.0)
        taken = np.zeros(problem.n_periods)
        taken[order] = np.where(gain[order] > 0, fraction, 0.0)
        power[s] = rate * taken
        load[above] += power[s]
        if phased:
            phases[:, above] += share[:, None, None] * power[s]
    if problem.executable and len(new):
        # the cars it had keep their (published, hence executable) set-points: only the new cars' rows re-fill
        allowed = np.zeros(power.shape, dtype=bool)
        allowed[new] = problem.presence[new] > 0
        power, _ = round_and_refill(capped_problem(problem, caps_kw), power, allowed=allowed)
    return power
