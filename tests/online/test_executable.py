"""issue 16, online: every set-point the controller publishes (optimal re-solve, provisional plan, fallback) is 0 or
a power the car can follow, keeps every limit, and a non-executable plan is never published.

Hand cases first, then hypothesis properties on the small random days of ``test_controller`` with drawn minimum
currents and steps (``tests.solvers.test_executable.with_currents``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import gridcharge
from gridcharge.errors import PublicationRejected
from gridcharge.online import Controller, simulate
from gridcharge.online.checks import check_schedule
from gridcharge.online.provisional import fill_new_cars
from gridcharge.problem import build_problem
from gridcharge.schedule import node_loads
from gridcharge.solvers.executable import off_grid
from tests.builders import at, charger, instance, node, session
from tests.online.test_controller import PROPERTY_SETTINGS, days
from tests.solvers.test_executable import with_currents

PRICES = [1.0, 0.5, 0.4, 0.9, 1.2, 0.3, 0.6, 1.1]


def stepped_site() -> dict:
    """Eight hourly periods; transformer T (10 kW, 1 kW base load) over meter M (6 kW); three single-phase 7 kW
    chargers at 220 V, 6 A minimum, 1 A steps (1.32 kW, then 0.22 kW a step)."""
    currents = {"phases": "A", "min_current_a": 6.0, "current_step_a": 1.0}
    return instance(periods=8, step_minutes=60, import_price=PRICES,
                    nodes=[node("T", import_limit_kw=10.0, base_load_kw=1.0), node("M", "T", import_limit_kw=6.0)],
                    chargers=[charger(f"C{i}", "M", **currents) for i in range(1, 4)])


def assert_executable(problem, power) -> None:
    """No power inside (0, minimum) nor off the step, and every rule of the instance kept (independent verifier)."""
    assert not off_grid(problem, power).any(), power[off_grid(problem, power)]
    verdict = gridcharge.verify(problem.instance, power)
    assert verdict.ok, str(verdict)


def test_a_re_solve_on_stepped_chargers_rounds_the_lp_instead_of_solving_the_mip():
    """The exact MIP at every event cost 95 s per simulated day: the window's continuous optimum is rounded."""
    c = Controller(stepped_site())
    c.plug_in(session("S1", "C1", at(0), at(6), 9.0))
    c.plug_in(session("S2", "C2", at(0), at(5), 7.5))
    pub = c.publication
    assert pub.source == "highs" and c.status == "optimal"
    assert pub.schedule.summary["executable_method"] == "rounding"
    assert pub.schedule.summary["executable_gap_rel"] >= -1e-9  # never below the continuous optimum
    assert_executable(pub.schedule.problem, pub.power_kw)
    # the two cars share meter M (6 kW): the rounding re-filled them to whole steps, not just rounded down
    loads = node_loads(pub.schedule.problem, pub.power_kw)
    assert loads[1].max() > 6.0 - 0.22 - 1e-9


def test_a_demand_response_cap_holds_through_the_rounding_s_re_fill():
    """The re-fill adds steps where the Problem has room; a cap (an extra row of the controller's model) must bound
    it too."""
    c = Controller(stepped_site())
    c.set_limit("T", 3.5, 0, 8)  # 2.5 kW for the cars over the 1 kW base load
    for i in (1, 2, 3):
        c.plug_in(session(f"S{i}", f"C{i}", at(0), at(8), 30.0))
    pub = c.publication
    assert pub.source == "highs", c.status
    assert_executable(pub.schedule.problem, pub.power_kw)
    assert (node_loads(pub.schedule.problem, pub.power_kw)[0] <= 3.5 + 1e-9).all()
    assert pub.power_kw.sum(axis=0).max() > 2.5 - 0.22 - 1e-9  # re-filled up to the cap, within one step


def test_a_provisional_plan_gives_a_new_car_executable_set_points():
    published = []
    c = Controller(stepped_site(), provisional=True, on_publish=published.append)
    c.plug_in(session("S1", "C1", at(0), at(6), 9.0))
    published.clear()
    c.plug_in(session("S2", "C2", at(0), at(5), 7.5))
    provisional = [pub for pub in published if pub.source == "provisional"]
    assert provisional, [pub.source for pub in published]
    for pub in provisional:
        assert_executable(pub.schedule.problem, pub.power_kw)
        assert pub.power_kw[list(pub.session_ids).index("S2")].sum() > 0


def test_the_pre_publication_check_refuses_a_set_point_inside_the_minimum():
    c = Controller(stepped_site())
    c.plug_in(session("S1", "C1", at(0), at(6), 9.0))
    problem = c.publication.schedule.problem
    _, window = c.window()
    power = np.array(c.publication.power_kw)
    check_schedule(problem, power, window)  # the published plan passes
    power[0, np.argmax(power[0] == 0)] = 0.5  # 0.5 kW: below 6 A (1.32 kW), within every limit
    with pytest.raises(PublicationRejected, match="not_executable"):
        check_schedule(problem, power, window)
    power[0, np.argmax(power[0] == 0.5)] = 1.4  # 1.4 kW: above the minimum, off the 0.22 kW step
    with pytest.raises(PublicationRejected, match="not_executable"):
        check_schedule(problem, power, window)


# ------------------------------------------------------------------------------------------------------------------
# properties


@PROPERTY_SETTINGS
@given(day=days(), draw=st.data())
def test_every_publication_on_stepped_chargers_is_executable_and_keeps_every_limit(day, draw):
    """Cars plugged in as they arrive, time advancing, a demand-response cap on some periods, provisional plans on:
    every publication (optimal, provisional, fallback, zero) has no power inside (0, minimum) nor off the step,
    passes the independent verifier and keeps the cap; the closed-loop day verifies on the actual day too."""
    day = with_currents(day, draw.draw)
    assume(day is not None)
    sessions = day.pop("sessions")
    site = {**day, "sessions": []}
    start = gridcharge.load_instance({**site, "sessions": sessions})
    published = []
    c = Controller(site, provisional=True, on_publish=published.append)
    periods = day["horizon"]["periods"]
    cap_kw = None
    cap = draw.draw(st.sampled_from([None, 0.5, 0.8]))
    if cap is not None:
        cap_kw = cap * day["nodes"][0]["import_limit_kw"]
        base = max(day["nodes"][0]["base_load_kw"])
        assume(cap_kw >= base)
        c.set_limit("T", cap_kw, 1, periods)
    step_s = start.horizon.step_minutes * 60
    for t in range(periods):
        c.advance(t)
        arriving = [raw for s, raw in zip(start.sessions, sessions)
                    if t * step_s <= (s.arrival - start.horizon.start).total_seconds() < (t + 1) * step_s]
        for raw in arriving:
            c.plug_in(raw)
    assert published
    for pub in published:
        if pub.schedule is None:  # nothing to plan (no car yet, or the day is over)
            continue
        problem = pub.schedule.problem
        real = len(pub.session_ids)
        assert not off_grid(problem, pub.power_kw[:real]).any(), (pub.source, pub.power_kw)
        assert pub.verification is not None and pub.verification.ok, (pub.source, str(pub.verification))
        if cap_kw is not None:
            loads = node_loads(problem, pub.power_kw)[0]
            a = max(1 - pub.start_period, 0)
            assert (loads[a:] <= cap_kw + 1e-6).all(), (pub.source, loads)
    closed = simulate({**site, "sessions": sessions}, strategy="online", controller_options={"provisional": True})
    assert closed.verification.ok, str(closed.verification)


@PROPERTY_SETTINGS
@given(day=days(), draw=st.data())
def test_the_provisional_fill_is_executable_and_keeps_caps_and_limits(day, draw):
    """``fill_new_cars`` on stepped chargers: every new car's set-point is 0 or executable, no node goes over its
    import limit or a demand-response cap, and the verifier passes."""
    day = with_currents(day, draw.draw)
    assume(day is not None)
    problem = build_problem(gridcharge.load_instance(day))
    caps = np.full((problem.n_nodes, problem.n_periods), np.inf)
    caps[0, ::2] = np.maximum(problem.import_limit_kw[0] * 0.7, problem.base_net_kw[0, ::2])
    filled = fill_new_cars(problem, np.zeros((problem.n_sessions, problem.n_periods)),
                           np.arange(problem.n_sessions), caps)
    assert_executable(problem, filled)
    loads = node_loads(problem, filled)
    assert (loads <= np.minimum(problem.import_limit_kw[:, None], caps) + 1e-6).all()
