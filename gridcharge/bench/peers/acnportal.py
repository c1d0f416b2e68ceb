"""instance-v1 → acnportal's simulator (``pip install gridcharge[peers]``): its EDF, LLF, round robin and uncontrolled
charging on gridcharge's instances, their result back as a signed power array for gridcharge's verifier.

The mapping
-----------
- Every charger is an acnportal ``EVSE`` (continuous pilot, ``max_rate`` = the charger's max power). Voltages are set
  to 1000 V and every phase angle to 0°, so that 1 A of pilot is 1 kW and acnportal's aggregate-current constraints
  are exactly gridcharge's linear kW limits.
- Every node import limit is one linear constraint over the chargers in the node's subtree (coefficient 1); every
  per-phase limit is three constraints (coefficient = the charger's share of that phase: 1 or 0 for a single-phase
  charger, 1/3 for a three-phase one). A limit that no combination of its chargers at full power can reach over the
  whole horizon is left out (it cannot bind; in residential trees that drops one constraint per meter).
- acnportal's limits are constants, gridcharge's headroom (limit - base load + generation) changes per period: before
  each scheduling call the constraint magnitudes are set to the current period's headroom (acnportal's sorted
  algorithms re-schedule every period, ``max_recompute = 1``). Negative headroom (base load alone over the limit) is 0.
- Every session is an ``EV`` present in every period it overlaps, charging for the fraction ``f`` of a period it is
  plugged in, as in gridcharge's model (power ``p`` on the node, ``p · f · Δt`` kWh): a ``Battery`` that draws for
  ``f`` of the period, an ``Interface`` that sizes the finishing rate for ``f``, the exact departure as
  ``estimated_departure``, a second EVSE where two stays share a charger's period. Rounding stays to whole periods
  (the first version) changed the instance, not the algorithm; why and what it did: docs/design/acnportal-peer.md.
- Its requested energy at the plug is ``energy_kwh / efficiency`` (gridcharge counts energy into the battery), its
  ``Battery`` holds exactly that (so it cannot over-deliver) with max power min(charger, car).
- No V2G: acnportal's algorithms only charge.

:func:`schedule` returns the (sessions, periods) power [kW]; the runner verifies it like any other result.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from ...problem import build_problem
from . import PEER_ALGORITHMS

#: Headroom kept free at each limit for acnportal's own feasibility tolerance (its interface accepts 1e-5 A over a
#: limit; here 1 A = 1 kW) [kW]: the larger of this and ``MARGIN_SHARE`` x the headroom.
MARGIN_KW = 2e-5
MARGIN_SHARE = 1e-7


def _require():
    try:
        import acnportal  # noqa: F401
    except ImportError as exc:
        raise ImportError("the acnportal peer needs the optional extra: pip install 'gridcharge[peers]' "
                          f"(acnportal could not be imported: {exc})") from None


def _algorithm(name: str):
    from acnportal import algorithms

    if name == "edf":
        return algorithms.SortedSchedulingAlgo(algorithms.earliest_deadline_first)
    if name == "llf":
        return algorithms.SortedSchedulingAlgo(_least_laxity_first_in_whole_periods)
    if name == "round_robin":
        return algorithms.RoundRobin(algorithms.first_come_first_served)
    if name == "uncontrolled":
        return algorithms.UncontrolledCharging()
    raise ValueError(f"acnportal algorithm {name!r}: expected one of {', '.join(PEER_ALGORITHMS)}")


class _WholePeriods:
    """An acnportal interface seen with its own whole-period count of a car's remaining demand."""

    def __init__(self, interface):
        self._interface = interface

    def __getattr__(self, name):
        return getattr(self._interface, name)

    def remaining_amp_periods(self, ev):
        return self._interface.whole_amp_periods(ev)


def _least_laxity_first_in_whole_periods(evs, interface):
    """acnportal's least-laxity-first order, its laxity on its own whole-period demand count: the partial-period
    count (:func:`_partial_period_models`) sizes a car's rate in a period it is present for part of, but would make
    a car that just arrived look urgent."""
    from acnportal import algorithms

    return algorithms.least_laxity_first(evs, _WholePeriods(interface))


def _partial_period_models(presence: dict):
    """acnportal's ``Battery`` and ``Interface`` for cars plugged in for a fraction of some periods (module notes).

    ``presence`` maps a session id to its fraction plugged in per period [-], shape (T,).
    """
    from acnportal import acnsim

    class PartialPeriodBattery(acnsim.Battery):
        """A battery with a max power [kW] and a capacity [kWh] that is plugged in for ``fraction[t]`` of period
        ``t``; ``clock()`` is the simulator's current period."""

        def __init__(self, capacity_kwh, max_power_kw, fraction, clock):
            super().__init__(capacity_kwh, 0.0, max_power_kw)
            self._fraction = fraction
            self._clock = clock

        def charge(self, pilot, voltage, period):
            fraction = self._fraction[min(self._clock(), len(self._fraction) - 1)]
            while_plugged = min(pilot, self.max_charging_power * 1000.0 / voltage)  # [A]
            return super().charge(fraction * while_plugged, voltage, period)  # the period's mean rate [A]

    class PartialPeriodInterface(acnsim.Interface):
        """acnportal's interface to its algorithms, with a car's remaining demand counted in pilot-periods of the
        current period as the car sees it: present for ``f`` of it, a pilot of ``X / (f · Δt)`` delivers ``X``."""

        def remaining_amp_periods(self, ev):
            fraction = presence[ev.session_id]
            now = fraction[min(self.current_time, len(fraction) - 1)]
            whole = super().remaining_amp_periods(ev)
            return whole / now if now > 0 else whole

        def whole_amp_periods(self, ev):
            """acnportal's own count: the remaining demand in pilot x whole periods."""
            return super().remaining_amp_periods(ev)

    return PartialPeriodBattery, PartialPeriodInterface


def _evse_slots(session_charger, arrive, leave, plugged, n_chargers):
    """acnportal EVSEs for gridcharge's chargers: one per charger, plus one more wherever a car leaves a charger
    and the next arrives within the same period (acnportal holds one EV per EVSE; gridcharge lets both have their
    fraction of that period). Returns each EVSE's charger (the first ``n_chargers`` are the chargers themselves) and
    each session's EVSE (-1 when not plugged). A loop over sessions, not periods."""
    evse_charger = list(range(n_chargers))
    free_from = [[0] for _ in range(n_chargers)]  # per charger: each of its EVSEs' first free period
    slot_evse = [[c] for c in range(n_chargers)]
    session_evse = np.full(len(session_charger), -1, dtype=np.int64)
    for i in sorted(np.flatnonzero(plugged), key=lambda i: (arrive[i], leave[i])):
        c = session_charger[i]
        k = next((k for k, free in enumerate(free_from[c]) if free <= arrive[i]), None)
        if k is None:  # every EVSE of this charger is still busy in the arrival period: a second one
            k = len(free_from[c])
            free_from[c].append(0)
            slot_evse[c].append(len(evse_charger))
            evse_charger.append(c)
        free_from[c][k] = leave[i]
        session_evse[i] = slot_evse[c][k]
    return np.array(evse_charger, dtype=np.int64), session_evse


def constraints(problem):
    """The linear constraints: (matrix [constraints x chargers], headroom [constraints x periods] [kW], names).

    Chargers in ``problem.instance.chargers`` order.
    """
    inst = problem.instance
    charger_ids = [c.id for c in inst.chargers]
    charger_index = {cid: i for i, cid in enumerate(charger_ids)}
    charger_max = np.array([c.max_charge_kw for c in inst.chargers])
    session_charger = np.array([charger_index[s.charger] for s in inst.sessions], dtype=np.int64)
    N, C = problem.n_nodes, len(charger_ids)
    member = np.zeros((N, C))
    member[problem.member_node, session_charger[problem.member_session]] = 1.0
    # a charger with no session is in no subtree by the member pairs: add it by its node's ancestors
    node_index = {nid: i for i, nid in enumerate(problem.node_ids)}
    charger_node = np.array([node_index[c.node] for c in inst.chargers], dtype=np.int64)
    ancestor = charger_node.copy()
    while (alive := ancestor >= 0).any():
        member[ancestor[alive], np.flatnonzero(alive)] = 1.0
        ancestor[alive] = problem.node_parent[ancestor[alive]]
    phase = np.zeros((C, 3))
    for i, c in enumerate(inst.chargers):
        phase[i] = [1 / 3] * 3 if c.phases == "ABC" else [float(c.phases == p) for p in "ABC"]
    rows, room, names = [], [], []
    base = problem.base_net_kw
    for n in range(N):
        limit = problem.import_limit_kw[n]
        if np.isfinite(limit):
            headroom = np.clip(limit - base[n], 0.0, None)
            if member[n] @ charger_max > headroom.min():
                rows.append(member[n])
                room.append(headroom)
                names.append(f"{problem.node_ids[n]}/import")
        limit = problem.phase_import_limit_kw[n]
        if np.isfinite(limit):
            headroom = np.clip(limit - base[n] / 3.0, 0.0, None)
            for k, p in enumerate("ABC"):
                coefficient = member[n] * phase[:, k]
                if coefficient @ charger_max > headroom.min():
                    rows.append(coefficient)
                    room.append(headroom)
                    names.append(f"{problem.node_ids[n]}/{p}")
    if not rows:
        return np.zeros((0, C)), np.zeros((0, problem.n_periods)), []
    room = np.array(room)
    return np.array(rows), np.clip(room - np.maximum(MARGIN_KW, MARGIN_SHARE * room), 0.0, None), names


def schedule(instance, algorithm: str = "edf", *, timings: dict | None = None) -> np.ndarray:
    """Run an acnportal algorithm on an instance; the signed power per session and period [kW], shape (S, T).

    Parameters
    ----------
    instance : Instance (or anything :func:`gridcharge.load_instance` reads)
    algorithm : str — ``edf``, ``llf``, ``round_robin`` or ``uncontrolled``
    timings : dict, optional — filled with ``adapter_s`` (building acnportal's network and events) and
        ``simulate_s`` (acnportal's simulation, the algorithm's calls included) [s]

    Raises
    ------
    ImportError — acnportal is not installed (the message says how to install it)
    """
    _require()
    from acnportal import acnsim

    started = time.perf_counter()
    problem = build_problem(instance)
    inst = problem.instance
    T = problem.n_periods
    step_s = inst.horizon.step_minutes * 60.0
    start = inst.horizon.start.timestamp()
    # every period a session overlaps, [arrive, leave), and the fraction of each it is plugged in (problem.presence)
    arrive = np.clip(np.floor((np.array([s.arrival.timestamp() for s in inst.sessions]) - start) / step_s + 1e-9),
                     0, T).astype(np.int64)
    departure = np.clip((np.array([s.departure.timestamp() for s in inst.sessions]) - start) / step_s, 0, T)
    leave = np.ceil(departure - 1e-9).astype(np.int64)
    presence = problem.presence
    need_at_plug = np.minimum(problem.energy_request_kwh, problem.energy_upper_kwh) / problem.efficiency
    plugged = (leave > arrive) & (need_at_plug > 0)  # else not plugged in within the horizon, or nothing to deliver
    charger_index = {c.id: i for i, c in enumerate(inst.chargers)}
    session_charger = np.array([charger_index[s.charger] for s in inst.sessions], dtype=np.int64)
    evse_charger, session_evse = _evse_slots(session_charger, arrive, leave, plugged, len(inst.chargers))
    evse_ids = [inst.chargers[c].id if k == c else f"{inst.chargers[c].id}#{k}" for k, c in enumerate(evse_charger)]

    matrix, headroom, names = constraints(problem)
    network = acnsim.ChargingNetwork(violation_tolerance=0.0, relative_tolerance=0.0)
    for evse_id, c in zip(evse_ids, evse_charger, strict=True):
        network.register_evse(acnsim.EVSE(evse_id, max_rate=inst.chargers[c].max_charge_kw), 1000.0, 0.0)
    if len(names):
        network.constraint_matrix = matrix[:, evse_charger]
        network.magnitudes = headroom[:, 0].copy()
        network.constraint_index = list(names)
    else:  # acnportal needs at least one constraint: one that never binds
        network.constraint_matrix = np.ones((1, len(evse_ids)))
        network.magnitudes = np.array([math.fsum(inst.chargers[c].max_charge_kw for c in evse_charger) + 1.0])
        network.constraint_index = ["unlimited"]
        headroom = np.repeat(network.magnitudes[:, None], T, axis=1)

    battery_class, interface_class = _partial_period_models(
        {s.id: presence[i] for i, s in enumerate(inst.sessions)})
    clock = []  # the simulator, once built: the batteries read its current period

    def now():
        return clock[0].iteration

    events = []
    for i in np.flatnonzero(plugged):
        battery = battery_class(float(need_at_plug[i]), float(problem.charge_max_kw[i]), presence[i], now)
        ev = acnsim.EV(int(arrive[i]), int(leave[i]), float(need_at_plug[i]), evse_ids[session_evse[i]],
                       inst.sessions[i].id, battery, estimated_departure=float(departure[i]))
        events.append(acnsim.PluginEvent(int(arrive[i]), ev))
    scheduler = _algorithm(algorithm)
    simulator = acnsim.Simulator(network, scheduler, acnsim.EventQueue(events), inst.horizon.start,
                                 period=inst.horizon.step_minutes, verbose=False, interface_type=interface_class)
    clock.append(simulator)
    run_algorithm = scheduler.run

    def run_with_current_headroom():
        network.magnitudes = headroom[:, min(simulator.iteration, T - 1)].copy()
        return run_algorithm()

    scheduler.run = run_with_current_headroom
    built = time.perf_counter()
    if events:
        with warnings.catch_warnings():  # acnportal warns of its own 1e-5 A tolerance; gridcharge's verifier judges
            warnings.simplefilter("ignore", UserWarning)
            simulator.run()
    finished = time.perf_counter()
    rates = simulator.charging_rates  # (EVSEs, periods) mean rate over each period [A] = [kW] at 1000 V
    width = min(rates.shape[1], T)
    mean_kw = np.zeros((problem.n_sessions, T))
    mean_kw[:, :width] = rates[session_evse, :width]
    t = np.arange(T)
    mean_kw *= plugged[:, None] & (t >= arrive[:, None]) & (t < leave[:, None])
    # the power while plugged in: the period's mean over the fraction plugged in
    power = np.divide(mean_kw, presence, out=np.zeros_like(mean_kw), where=presence > 0)
    if timings is not None:
        timings.update(adapter_s=built - started, simulate_s=finished - built)
    return power
