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
- Every session is an ``EV`` plugged in from the first whole period after its arrival to the last whole period before
  its departure (acnportal works in whole periods; gridcharge allows fractions — the adapter never charges in a
  partial period, which can cost the peer a little energy). Its requested energy at the plug is ``energy_kwh /
  efficiency`` (gridcharge counts energy into the battery), its ``Battery`` holds exactly that (so it cannot
  over-deliver) with max power min(charger, car).
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
        return algorithms.SortedSchedulingAlgo(algorithms.least_laxity_first)
    if name == "round_robin":
        return algorithms.RoundRobin(algorithms.first_come_first_served)
    if name == "uncontrolled":
        return algorithms.UncontrolledCharging()
    raise ValueError(f"acnportal algorithm {name!r}: expected one of {', '.join(PEER_ALGORITHMS)}")


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
    matrix, headroom, names = constraints(problem)
    network = acnsim.ChargingNetwork(violation_tolerance=0.0, relative_tolerance=0.0)
    for charger in inst.chargers:
        network.register_evse(acnsim.EVSE(charger.id, max_rate=charger.max_charge_kw), 1000.0, 0.0)
    if len(names):
        network.constraint_matrix = matrix
        network.magnitudes = headroom[:, 0].copy()
        network.constraint_index = list(names)
    else:  # acnportal needs at least one constraint: one that never binds
        network.constraint_matrix = np.ones((1, len(inst.chargers)))
        network.magnitudes = np.array([math.fsum(c.max_charge_kw for c in inst.chargers) + 1.0])
        network.constraint_index = ["unlimited"]
        headroom = np.repeat(network.magnitudes[:, None], T, axis=1)
    network._update_info_store()

    step_s = inst.horizon.step_minutes * 60.0
    start = inst.horizon.start.timestamp()
    arrive = np.clip(np.ceil((np.array([s.arrival.timestamp() for s in inst.sessions]) - start) / step_s - 1e-9),
                     0, T).astype(np.int64)
    leave = np.clip(np.floor((np.array([s.departure.timestamp() for s in inst.sessions]) - start) / step_s + 1e-9),
                    0, T).astype(np.int64)
    need_at_plug = np.minimum(problem.energy_request_kwh, problem.energy_upper_kwh) / problem.efficiency
    events = []
    for i, s in enumerate(inst.sessions):
        if leave[i] <= arrive[i] or need_at_plug[i] <= 0:
            continue  # never a whole period plugged in, or nothing to deliver
        battery = acnsim.Battery(capacity=float(need_at_plug[i]), init_charge=0.0,
                                 max_power=float(problem.charge_max_kw[i]))
        ev = acnsim.EV(int(arrive[i]), int(leave[i]), float(need_at_plug[i]), s.charger, s.id, battery)
        events.append(acnsim.PluginEvent(int(arrive[i]), ev))
    scheduler = _algorithm(algorithm)
    simulator = acnsim.Simulator(network, scheduler, acnsim.EventQueue(events), inst.horizon.start,
                                 period=inst.horizon.step_minutes, verbose=False)
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
    rates = simulator.charging_rates  # (chargers, periods) [A] = [kW] at 1000 V
    width = min(rates.shape[1], T)
    charger_index = {c.id: i for i, c in enumerate(inst.chargers)}
    rows = np.array([charger_index[s.charger] for s in inst.sessions], dtype=np.int64)
    power = np.zeros((problem.n_sessions, T))
    power[:, :width] = rates[rows, :width]
    t = np.arange(T)
    power *= (t >= arrive[:, None]) & (t < leave[:, None])
    if timings is not None:
        timings.update(adapter_s=built - started, simulate_s=finished - built)
    return power
