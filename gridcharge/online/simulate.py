"""Closed-loop simulation: replay a day period by period, revealing each car only when it arrives, apply a
strategy's set-points to simulated cars and grid, and record what actually happened.

Strategies
----------
``"uncontrolled"``
    Plug and charge: every car draws its maximum power from its actual arrival (mid-period included) until it has
    its energy; no controller, limits ignored (its overload is the finding).
a controlled baseline (``"equal_share"``, ``"edf"``, ``"llf"``, ``"greedy_cost"``)
    A :class:`~gridcharge.online.Controller` running that heuristic on the cars announced so far (closed loop, the
    same events as ``"online"``).
``"online"``
    The :class:`~gridcharge.online.Controller` with the LP (model-predictive control: re-optimise over the rest of the
    day after each batch of events, apply the first period).
``"optimal"``
    Perfect foresight: ``gridcharge.solve`` of the whole day with every car's arrival, announced departure and
    energy and the forecast base load known in advance, applied open loop. Without noise it is the best any
    strategy can do (an upper bound on what control achieves); with noise it is a plan that does not react.

The loop, the checks of what actually happened and the noise: docs/design/online.md, "Closed-loop simulation".
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from ..instance import Instance, load_instance
from ..problem import Problem, build_problem
from ..schedule import battery_power_kw, delivered_kwh, node_load_frame, power_frame
from ..verify import Verification, verify
from .controller import Controller
from .events import energy_bounds_kwh
from .state import CONTROLLER_SOLVERS

STRATEGIES = ("uncontrolled", "equal_share", "edf", "llf", "greedy_cost", "online", "optimal")
#: The strategies :func:`compare` runs by default.
DEFAULT_COMPARISON = ("uncontrolled", "equal_share", "greedy_cost", "online", "optimal")


@dataclass(frozen=True)
class Noise:
    """How reality differs from what the controller is told. Every field defaults to no deviation.

    underdraw : float in [0, 1) — a charging car draws ``u`` x its set-point, ``u`` uniform in
        ``[1 - underdraw, 1]``, drawn per car and period [-]
    early_departure_prob : float in [0, 1] — probability that a car leaves before its announced departure [-]
    early_departure_max_h : float >= 0 — how much earlier at most, uniform in ``[0, max]`` [h]; a car never leaves
        before a quarter of its announced stay (from its arrival or the start of the day) has passed
    base_load_sigma : float >= 0 — actual base load of every node and period is the forecast x ``max(0, 1 + sigma
        x z)``, ``z`` standard normal, independent per node and period [-]
    """

    underdraw: float = 0.0
    early_departure_prob: float = 0.0
    early_departure_max_h: float = 0.0
    base_load_sigma: float = 0.0

    def __post_init__(self):
        checks = {
            "underdraw": 0.0 <= self.underdraw < 1.0,
            "early_departure_prob": 0.0 <= self.early_departure_prob <= 1.0,
            "early_departure_max_h": self.early_departure_max_h >= 0.0 and math.isfinite(self.early_departure_max_h),
            "base_load_sigma": self.base_load_sigma >= 0.0 and math.isfinite(self.base_load_sigma),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"Noise: out of range: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")


@dataclass(eq=False)
class SimulationResult:
    """What happened in one simulated day under one strategy.

    Attributes
    ----------
    strategy : str
    instance : Instance — the actual day: every car with its true departure, nodes with the actual base load
    problem : Problem — its arrays (presence fractions of what actually happened)
    power : numpy.ndarray, shape (S, T) — realised signed charger power [kW]
    verification : Verification — :func:`gridcharge.verify` of ``power`` on ``instance``
    solve_seconds : float — wall time spent deciding [s]: for controller strategies every publication (sub-instance,
        arrays, LP build, HiGHS or the heuristic, verification); for ``optimal`` the whole-day ``gridcharge.solve``
        (verification included); 0 for ``uncontrolled``
    resolves : int — publications that ran a solver; fallbacks : int — publications of a fallback or of zero power
    statuses : list of str — the controller's status after each batch of events (empty without a controller)
    log : pandas.DataFrame or None — the controller's publication log (period, source, status, timings ...)
    wall_seconds : float — the whole simulation [s]
    """

    strategy: str
    instance: Instance
    problem: Problem = field(repr=False)
    power: np.ndarray = field(repr=False)
    verification: Verification = field(repr=False)
    solve_seconds: float = 0.0
    resolves: int = 0
    fallbacks: int = 0
    statuses: list = field(default_factory=list, repr=False)
    log: pd.DataFrame | None = field(default=None, repr=False)
    wall_seconds: float = 0.0

    @property
    def power_kw(self) -> pd.DataFrame:
        """Realised power, periods (tz-aware) x sessions [kW]."""
        return power_frame(self.problem, self.power)

    @property
    def node_load_kw(self) -> pd.DataFrame:
        """Actual net load, periods x nodes [kW]: actual base load plus realised charger power."""
        return node_load_frame(self.problem, self.power)

    @property
    def delivered_kwh(self) -> pd.Series:
        """Energy added to each car's battery by its actual departure [kWh]."""
        p = self.problem
        return pd.Series(delivered_kwh(p, self.power), index=pd.Index(p.session_ids, name="session_id"),
                         name="delivered_kwh")

    @property
    def requested_kwh(self) -> pd.Series:
        return pd.Series(self.problem.energy_request_kwh, index=pd.Index(self.problem.session_ids, name="session_id"),
                         name="requested_kwh")

    @property
    def violations(self) -> list:
        return self.verification.violations

    @property
    def limit_violations(self) -> list:
        """Violations of node import/export and phase limits (the grid's, not the cars')."""
        return [v for v in self.violations if v.kind in ("node_import", "node_export", "phase_import")]

    def summary(self) -> dict:
        """unmet_kwh, peak_kw, cost_cny, overload_kwh, violations, solve_seconds ... as one row."""
        v = self.verification
        return {
            "strategy": self.strategy,
            "unmet_kwh": v.unmet_kwh,
            "peak_kw": v.peak_kw,
            "cost_cny": v.cost_cny,
            "overload_kwh": float(sum(v.overload_kwh.values())),
            "delivered_kwh": v.delivered_kwh,
            "limit_violations": len(self.limit_violations),
            "violations": len(v.violations),
            "solve_seconds": self.solve_seconds,
            "resolves": self.resolves,
            "fallbacks": self.fallbacks,
            "wall_seconds": self.wall_seconds,
        }


def simulate(site, sessions: Sequence[Mapping] | None = None, strategy: str = "online", *,
             noise: Noise | Mapping | None = None, seed: int = 0, reveal: str = "arrival",
             time_limit_s: float | None = None, controller_options: Mapping | None = None) -> SimulationResult:
    """Replay one day under ``strategy`` (module notes) and record what happened.

    Parameters
    ----------
    site : Instance, mapping or path
        The site (nodes with the base-load *forecast*, chargers, tariff, objective, the day's horizon). If it has
        sessions and ``sessions`` is None, they are the day's cars.
    sessions : sequence of instance-v1 session mappings, optional
        The day's cars as each announces itself on arrival (``departure`` and ``energy_kwh`` are its wishes).
    strategy : str
        ``"uncontrolled"``, a controlled baseline, ``"online"`` or ``"optimal"``.
    noise : Noise or mapping of its fields, optional
    seed : int — seed of the noise draws
    reveal : {"arrival", "start"} — when a controller learns of a car (module notes)
    time_limit_s : float, optional — HiGHS limit per re-solve (``online``) or for the whole-day solve (``optimal``) [s]
    controller_options : mapping, optional — more keyword arguments for :class:`~gridcharge.online.Controller`:
        fields of :class:`~gridcharge.online.ControllerOptions` (``warm_start``, ``always_resolve``, ``fallback``,
        ``horizon_periods`` ...) and ``expected_arrivals``

    Raises
    ------
    InstanceError — the site and sessions are not a valid instance-v1 day
    InfeasibleError — ``optimal`` on a day no schedule can serve within the limits
    """
    started = time.perf_counter()
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if reveal not in ("arrival", "start"):
        raise ValueError(f"reveal {reveal!r}: expected 'arrival' or 'start'")
    noise = _noise(noise)
    site_data, session_data = _split(site, sessions)
    planned = load_instance({**site_data, "sessions": session_data})
    reality = _reality(planned, noise, seed)
    actual_problem = build_problem(reality.instance)

    runner = _CONTROLLED if strategy in CONTROLLER_SOLVERS or strategy == "online" else _OPEN_LOOP
    result = runner(strategy, site_data, session_data, planned, reality, actual_problem, reveal=reveal,
                    time_limit_s=time_limit_s, controller_options=dict(controller_options or {}))
    power, solve_s, resolves, fallbacks, statuses, log = result
    verification = verify(reality.instance, power)
    return SimulationResult(strategy=strategy, instance=reality.instance, problem=actual_problem, power=power,
                            verification=verification, solve_seconds=solve_s, resolves=resolves,
                            fallbacks=fallbacks, statuses=statuses, log=log,
                            wall_seconds=time.perf_counter() - started)


def compare(site, sessions: Sequence[Mapping] | None = None, strategies: Sequence[str] = DEFAULT_COMPARISON, *,
            noise: Noise | Mapping | None = None, seed: int = 0, **options) -> pd.DataFrame:
    """Simulate the same day (same noise) under each strategy; one row per strategy.

    Columns: ``unmet_kwh`` [kWh], ``peak_kw`` (root's highest actual net load) [kW], ``cost_cny`` (energy bought -
    sold + degradation + unmet penalty + peak charge, on the actual day) [CNY], ``overload_kwh`` (energy above node
    and phase limits) [kWh], ``delivered_kwh`` [kWh], ``limit_violations`` and ``violations`` (counts of
    (node or car, period) pairs the verifier flags), ``solve_seconds`` (time spent deciding, see
    :class:`SimulationResult`) [s], ``resolves``,
    ``fallbacks``, ``wall_seconds`` [s]. ``options`` go to :func:`simulate`.
    """
    rows = [simulate(site, sessions, strategy, noise=noise, seed=seed, **options).summary() for strategy in strategies]
    return pd.DataFrame(rows).set_index("strategy")


# ------------------------------------------------------------------------------------------------------------------
# reality


@dataclass(frozen=True)
class _Reality:
    instance: Instance  # true departures, actual base load
    underdraw: np.ndarray  # (S, T) factor u <= 1 on charging set-points


def _noise(noise) -> Noise:
    if noise is None:
        return Noise()
    if isinstance(noise, Noise):
        return noise
    if isinstance(noise, Mapping):
        return Noise(**noise)
    raise TypeError(f"noise: expected a Noise or a mapping of its fields, not {type(noise).__name__}")


def _split(site, sessions) -> tuple[dict, list[dict]]:
    """The site without sessions (a mapping) and the day's sessions (mappings)."""
    inst = load_instance(site)
    data = inst.to_dict()
    own = data.pop("sessions")
    data["sessions"] = []
    if sessions is None:
        sessions = own
    return data, [dict(s) for s in sessions]


def _reality(planned: Instance, noise: Noise, seed: int) -> _Reality:
    """Draw what actually happens (fixed draw order: underdraw, early leavers, how early, base load)."""
    rng = np.random.default_rng(seed)
    S, T, N = len(planned.sessions), planned.horizon.periods, len(planned.nodes)
    underdraw = 1.0 - noise.underdraw * rng.random((S, T))
    leaves_early = rng.random(S) < noise.early_departure_prob
    earlier_h = rng.random(S) * noise.early_departure_max_h
    factor = np.maximum(1.0 + noise.base_load_sigma * rng.standard_normal((N, T)), 0.0)

    start = planned.horizon.start
    sessions = []
    for s, early, hours in zip(planned.sessions, leaves_early, earlier_h):
        data = s.model_dump(mode="json")
        if early and hours > 0:
            begin = max(s.arrival, start)
            earliest = begin + (s.departure - begin) / 4
            departure = max(s.departure - timedelta(hours=float(hours)), earliest)
            departure = departure.replace(microsecond=0)
            if departure > begin and departure < s.departure:
                data["departure"] = departure.isoformat()
        sessions.append(data)
    nodes = []
    for i, n in enumerate(planned.nodes):
        data = n.model_dump(mode="json")
        base = np.broadcast_to(np.asarray(n.base_load_kw, dtype=float), (T,))
        if noise.base_load_sigma > 0 and np.any(base > 0):
            data["base_load_kw"] = (base * factor[i]).tolist()
        nodes.append(data)
    actual = load_instance({**planned.to_dict(), "nodes": nodes, "sessions": sessions})
    return _Reality(instance=actual, underdraw=underdraw)


def _apply(setpoint: np.ndarray, t: int, reality: _Reality, problem: Problem, delivered: np.ndarray) -> np.ndarray:
    """Realised power of period ``t`` [kW], shape (S,); adds the energy to ``delivered`` [kWh] in place."""
    present = problem.presence[:, t]
    power = np.where(setpoint > 0, setpoint * reality.underdraw[:, t], setpoint)
    power = np.where(present > 0, power, 0.0)
    delivered += battery_power_kw(power, problem.efficiency) * present * problem.step_hours
    return power


# ------------------------------------------------------------------------------------------------------------------
# strategies


def _run_open_loop(strategy, site_data, session_data, planned, reality, problem, *, reveal, time_limit_s,
                   controller_options):
    """``uncontrolled`` (plug and charge, causal by nature) and ``optimal`` (perfect foresight, open loop)."""
    S, T = problem.n_sessions, problem.n_periods
    power = np.zeros((S, T))
    delivered = np.zeros(S)
    solve_time = 0.0
    plan = None
    if strategy == "optimal":
        import gridcharge

        started = time.perf_counter()
        plan = gridcharge.solve(planned, solver="highs", time_limit_s=time_limit_s).power
        solve_time = time.perf_counter() - started
    need = np.minimum(problem.energy_request_kwh, problem.energy_upper_kwh)
    gain = problem.efficiency * problem.step_hours
    for t in range(T):
        if plan is not None:
            setpoint = plan[:, t]
        else:  # every present car at full power until it has its energy
            f = problem.presence[:, t]
            remaining = np.maximum(need - delivered, 0.0)
            most = np.divide(remaining, gain * f, out=np.zeros(S), where=f > 0)
            setpoint = np.where(remaining > 1e-9, np.minimum(problem.charge_max_kw, most), 0.0)
        power[:, t] = _apply(setpoint, t, reality, problem, delivered)
    return power, solve_time, int(plan is not None), 0, [], None


def _run_controlled(strategy, site_data, session_data, planned, reality, problem, *, reveal, time_limit_s,
                    controller_options):
    """A Controller fed the day's events period by period (module notes)."""
    solver = "highs" if strategy == "online" else strategy
    controller = Controller(site_data, solver=solver, time_limit_s=time_limit_s, **controller_options)
    S, T = problem.n_sessions, problem.n_periods
    start, step = planned.horizon.start, timedelta(minutes=planned.horizon.step_minutes)
    announced = planned.sessions
    ids = [s.id for s in announced]
    arrival = np.array([(s.arrival - start) / step for s in announced]).reshape(S)
    true_departure = np.array([(s.departure - start) / step for s in reality.instance.sessions]).reshape(S)
    # a car is noticed at the first boundary at or after its arrival; with reveal="start", all at 0
    reveal_at = np.zeros(S, dtype=np.int64) if reveal == "start" else np.maximum(np.ceil(arrival - 1e-9), 0).astype(
        np.int64)
    told = np.zeros(S, dtype=bool)
    gone = np.zeros(S, dtype=bool)
    power = np.zeros((S, T))
    delivered = np.zeros(S)
    statuses = []
    session_dicts = [s.model_dump(mode="json", exclude_none=True) for s in announced]
    for t in range(T):
        with controller.batch():
            if t > 0:
                controller.advance(t)
            active = set(controller.state.cars)
            left = np.flatnonzero(told & ~gone & (true_departure <= t + 1e-9))
            for s in left:
                gone[s] = True
                if ids[s] in active:
                    controller.depart(ids[s])
                    active.discard(ids[s])
            present = np.flatnonzero(told & ~gone & (arrival < t))
            readings = {ids[s]: float(delivered[s]) for s in present if ids[s] in active}
            if readings:
                controller.measure(_within_bounds(controller, readings))
            new = np.flatnonzero(~told & (reveal_at == t) & ((true_departure > t) | (reveal == "start")))
            for s in new:
                controller.plug_in(session_dicts[s])
                told[s] = True
        statuses.append(controller.status)
        setpoint = controller.setpoints().reindex(ids).fillna(0.0).to_numpy()
        power[:, t] = _apply(setpoint, t, reality, problem, delivered)
    log = pd.DataFrame([entry.row() for entry in controller.log])
    solved = log[log["source"] != "idle"] if len(log) else log
    solve_time = float(log["total_s"].sum()) if len(log) else 0.0
    resolves = int((solved["solve_s"].notna()).sum()) if "solve_s" in solved else 0
    fallbacks = int(solved["source"].str.startswith(("fallback", "zero")).sum()) if len(solved) else 0
    return power, solve_time, resolves, fallbacks, statuses, log


def _within_bounds(controller: Controller, readings: dict) -> dict:
    """Meter readings a hair outside a car's battery bounds (solver tolerance, < 1e-6 kWh) put on the bound."""
    out = {}
    for sid, value in readings.items():
        low, high = energy_bounds_kwh(controller.state.cars[sid].session)
        high = math.inf if high is None else high
        out[sid] = min(max(value, low), high) if low - 1e-6 < value < high + 1e-6 else value
    return out


_OPEN_LOOP = _run_open_loop
_CONTROLLED = _run_controlled
__all__ = ["DEFAULT_COMPARISON", "Noise", "STRATEGIES", "SimulationResult", "compare", "simulate"]
