"""What every schedule passes before it is published, and the ladder of what is published when a solve fails.

The check is the independent verifier on the window's real cars plus what instance-v1 cannot say (demand-response
caps, over-request bounds); a schedule that fails it is a :class:`~gridcharge.errors.PublicationRejected`. The
ladder: the solver's plan, else the ``fallback`` baseline, else zero power (docs/design/online.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import PublicationRejected
from ..problem import Problem
from ..schedule import Schedule, delivered_kwh, node_loads, summarise, taken_kwh
from ..solvers.baselines import BASELINES
from ..verify import Verification, tolerance, verify
from .window import Window


def check_schedule(problem: Problem, power: np.ndarray, window: Window, never_above_request: bool = False,
                   caps_kw: np.ndarray | None = None) -> Verification:
    """The independent verifier on the window's *real* cars (forecast phantoms removed: they exist only in the plan
    and must not relieve any limit), plus demand-response caps (``caps_kw``, default the window's) and over-request
    bounds. Raises PublicationRejected saying what failed; else returns the verifier's verdict."""
    n_real = window.n_real
    caps = window.caps_kw if caps_kw is None else caps_kw
    result = verify(window.real_instance, power[:n_real])
    if result.violations:
        shown = "; ".join(str(v) for v in result.violations[:3])
        raise PublicationRejected(f"the schedule failed independent verification ({len(result.violations)} "
                                  f"violation(s)): {shown}")
    finite = np.isfinite(caps)
    if finite.any():
        real_power = power.copy()
        real_power[n_real:] = 0.0
        load = node_loads(problem, real_power)
        limit = np.where(finite, caps, 0.0)
        over = finite & (load > limit + tolerance(limit))
        if over.any():
            n, t = (int(v[0]) for v in np.nonzero(over))
            raise PublicationRejected(f"the schedule breaks the demand-response cap on node {problem.node_ids[n]!r} in "
                                      f"period {window.now + t}: {load[n, t]:.6g} kW > {caps[n, t]:.6g} kW "
                                      f"({int(over.sum())} period(s) in all)")
    upper = window.final_upper_kwh
    bounded = bounded_cars(problem, never_above_request)
    if bounded.any():
        running = np.cumsum(taken_kwh(problem, power), axis=1)  # a full car draws less: what it takes
        bound = np.where(np.isfinite(upper), upper, problem.energy_request_kwh)
        above = bounded & (running.max(axis=1, initial=0.0) > np.maximum(bound, 0.0) + tolerance(bound))
        if above.any():
            s = int(np.flatnonzero(above)[0])
            raise PublicationRejected(f"car {problem.session_ids[s]!r} would hold more than its request at some "
                                      f"period ({running[s].max():.6g} kWh added vs {bound[s]:.6g} kWh)")
    if np.isfinite(upper).any():
        added = delivered_kwh(problem, power)
        bad = np.isfinite(upper) & (added > upper + tolerance(upper))
        if bad.any():
            s = int(np.flatnonzero(bad)[0])
            raise PublicationRejected(f"car {problem.session_ids[s]!r} would leave with more than its request "
                                      f"({added[s]:.6g} kWh added vs at most {upper[s]:.6g} kWh)")
    return result


def bounded_cars(problem: Problem, never_above_request: bool) -> np.ndarray:
    """The cars whose energy added stays within their request at *every* period, shape (S,) bool: every car with
    ``never_above_request``, and always a car with a minimum current. Such a V2G car, once above its request, may
    have no executable way back (its give-back rounded to whole steps can break its battery floor, rounded down it
    stays above), and then nothing can be published for the site: so it never goes above (docs/design/online.md)."""
    return np.full(problem.n_sessions, bool(never_above_request)) | (problem.min_power_kw > 0)


@dataclass(frozen=True)
class Fallback:
    """What the ladder publishes after a failed solve: ``source`` (``"fallback:<name>"`` or ``"zero"``), ``status``
    (why, in words), the schedule and its verification."""

    source: str
    status: str
    schedule: Schedule
    verification: Verification


def fall_back(problem: Problem, window: Window, solver: str, fallback: str, failure: BaseException,
              never_above_request: bool = False) -> Fallback:
    """The ``fallback`` baseline's schedule (caps folded in as base load), checked; zero power when that fails."""
    reason = f"{type(failure).__name__}: {first_line(failure)}"
    status = f"fallback {fallback}: the {solver} re-solve failed ({reason})"
    try:
        # a cap that base load alone breaks cannot be met by any charging: there the fallback charges
        # nothing below the capped node, and says so (rather than stopping every charger of the site)
        caps, unattainable = attainable_caps(problem, window.caps_kw, window.now)
        schedule = rebased(problem, BASELINES[fallback](capped_problem(problem, caps)))
        verification = check_schedule(problem, schedule.power, window, never_above_request, caps)
        if unattainable:
            status += (f"; demand-response cap unattainable, base load alone is over it ({unattainable}): "
                       f"no car below that node charges then")
        return Fallback(f"fallback:{fallback}", status, schedule, verification)
    except Exception as exc:  # noqa: BLE001 - the last resort is zero power
        status = (f"zero power for every charger: the {solver} re-solve failed ({reason}) and the {fallback} "
                  f"fallback failed ({type(exc).__name__}: {first_line(exc)}); zero adds no load, but it cannot "
                  f"relieve a limit that base load alone breaks")
        power = np.zeros((problem.n_sessions, problem.n_periods))
        schedule = Schedule(problem=problem, power=power, summary=summarise(problem, power, status="zero"))
        verification = verify(window.real_instance, power[:window.n_real])
        if not verification.ok:
            status += f" ({len(verification.violations)} violation(s) remain at zero power)"
        return Fallback("zero", status, schedule, verification)


def attainable_caps(problem: Problem, caps: np.ndarray, now: int) -> tuple[np.ndarray, str]:
    """Caps raised to the base load where base load alone is over them [kW], and those places in words."""
    finite = np.isfinite(caps)
    base = np.where(finite, problem.base_net_kw, -np.inf)
    low = finite & (caps < base)
    if not low.any():
        return caps, ""
    n_idx, t_idx = np.nonzero(low)
    words = ", ".join(f"node {problem.node_ids[n]!r} period {now + t} by {base[n, t] - caps[n, t]:.3g} kW"
                      for n, t in zip(n_idx[:3], t_idx[:3]))
    if len(n_idx) > 3:
        words += f" and {len(n_idx) - 3} more"
    return np.where(low, base, caps), words


def capped_problem(problem: Problem, caps: np.ndarray) -> Problem:
    """The caps folded into a Problem for the baselines: at a capped node, base load raised by (limit - cap) in
    the window, and a node without an import limit given one that cannot bind outside it. Only that node's own
    rows change (``base_net_kw`` is per subtree); its per-phase headroom shrinks by a third of it (conservative)."""
    finite = np.isfinite(caps)
    if not finite.any():
        return problem
    capped = finite.any(axis=1)
    most = np.zeros(problem.n_nodes)
    np.add.at(most, problem.member_node, problem.charge_max_kw[problem.member_session])
    limit = problem.import_limit_kw.copy()
    no_limit = capped & ~np.isfinite(limit)
    limit[no_limit] = (problem.base_net_kw.max(axis=1) + most + 1.0)[no_limit]
    delta = np.where(finite, np.maximum(limit[:, None] - np.where(finite, caps, 0.0), 0.0), 0.0)
    return dataclasses.replace(problem, import_limit_kw=limit, base_net_kw=problem.base_net_kw + delta)


def rebased(problem: Problem, schedule: Schedule) -> Schedule:
    """A baseline's schedule (maybe on the capped Problem) as a schedule of the real sub-problem."""
    power = schedule.power
    summary = summarise(problem, power, status=schedule.summary.get("status", "heuristic"),
                        solver=schedule.summary.get("solver"), solve_seconds=schedule.summary.get("solve_seconds"))
    return Schedule(problem=problem, power=power, summary=summary)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
