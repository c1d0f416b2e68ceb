"""The verifier's fast paths give what the slow ones give: each session's figures read in one vectorised pass
(``_cars``) equal the rules written one session at a time, with every optional field present or absent; a Schedule is
read from its power array, not its frame, with the same verdict."""

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridcharge
from gridcharge import load_instance
from gridcharge.bench.generate import generate
from tests.builders import at, charger, instance, session

verify_module = importlib.import_module("gridcharge.verify")  # the module, not the function gridcharge exports

optional = st.none() | st.floats(0.0, 80.0)


@st.composite
def instances(draw):
    n = draw(st.integers(0, 6))
    chargers = [charger(f"c{k}", max_charge_kw=draw(st.floats(1.0, 22.0)),
                        max_discharge_kw=draw(st.floats(0.0, 11.0)), efficiency=draw(st.floats(0.8, 1.0)))
                for k in range(n)]
    order = draw(st.permutations(range(n)))  # sessions meet their chargers out of order (one each: no overlap)
    sessions = []
    for i in range(n):
        fields = {}
        car_kw, battery, initial, floor = draw(optional), draw(optional), draw(optional), draw(optional)
        energy = draw(st.floats(0.0, 9.0))
        if car_kw is not None and car_kw > 0:
            fields["max_charge_kw"] = car_kw
        if battery is not None:
            fields["battery_kwh"] = battery + energy + 10.0  # room for the request above any start
            if initial is not None:
                fields["initial_kwh"] = min(initial, battery)
            if floor is not None:
                fields["min_kwh"] = min(floor, battery)
        fields["max_discharge_kw"] = draw(st.floats(0.0, 11.0))
        first = draw(st.integers(0, 3))
        sessions.append(session(f"s{i}", f"c{order[i]}", at(first + 0.25), at(draw(st.integers(first + 1, 4))),
                                energy, **fields))
    return instance(chargers=chargers, sessions=sessions)


@settings(max_examples=60, deadline=None)
@given(instances())
def test_cars_equal_the_rules_one_session_at_a_time(data):
    try:
        inst = load_instance(data)
    except Exception:  # a combination the instance rules refuse (e.g. the request above the battery's room)
        return
    cars = verify_module._cars(inst)
    chargers = {c.id: c for c in inst.chargers}
    for i, s in enumerate(inst.sessions):
        c = chargers[s.charger]
        assert inst.chargers[cars.charger[i]].id == s.charger
        assert cars.arrival_s[i] == s.arrival.timestamp() and cars.departure_s[i] == s.departure.timestamp()
        assert cars.max_charge_kw[i, 0] == min(c.max_charge_kw, c.max_charge_kw if s.max_charge_kw is None
                                               else s.max_charge_kw)
        assert cars.max_discharge_kw[i, 0] == min(c.max_discharge_kw, s.max_discharge_kw)
        assert cars.efficiency[i, 0] == c.efficiency and cars.request_kwh[i, 0] == s.energy_kwh
        if s.battery_kwh is None:
            lower, upper = 0.0, s.energy_kwh
        else:
            start = s.initial_kwh or 0.0
            lower, upper = (start if s.min_kwh is None else s.min_kwh) - start, s.battery_kwh - start
        assert (cars.lower_kwh[i, 0], cars.upper_kwh[i, 0]) == (lower, upper)
    assert cars.max_charge_kw.shape == (len(inst.sessions), 1) and np.all(np.isfinite(cars.lower_kwh))


@pytest.mark.parametrize("scale", [1.0, 1.5])  # the optimum, and one breaking limits everywhere
def test_a_schedule_is_read_as_its_frame_would_be(scale):
    problem = gridcharge.build_problem(generate("residential", 60, 2))
    schedule = gridcharge.solve(problem, solver="highs")
    schedule.power = schedule.power * scale
    verdicts = [verify_module.verify(problem.instance, given) for given in
                (schedule, schedule.power_kw, schedule.power_kw[schedule.power_kw.columns[::-1]], schedule.power)]
    assert all(v == verdicts[0] for v in verdicts)
    frame_read = verify_module._power_array(problem.instance, schedule.power_kw[schedule.power_kw.columns[::-1]])
    assert np.array_equal(verify_module._power_array(problem.instance, schedule), frame_read)
    assert verdicts[0].ok == (scale == 1.0)
    assert verify_module._power_array(problem.instance, schedule) is not schedule.power  # a copy
