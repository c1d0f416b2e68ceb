"""Plug-in algorithms for ``gridcharge bench --solvers tests.bench_plugin_example:<name>``, run from the repository
root (used by the tests).

``flat`` is the README's worked example: every car charges at the constant power that delivers its energy by
departure, spread evenly over its plugged-in time, whatever the grid.
"""

import numpy as np

import gridcharge


def flat(instance):
    """Constant power per car: energy_kwh / (efficiency x plugged-in hours), capped at the car's max [kW]."""
    problem = gridcharge.build_problem(instance)
    hours = problem.presence.sum(axis=1) * problem.step_hours  # plugged-in time [h]
    need = np.minimum(problem.energy_request_kwh, problem.energy_upper_kwh) / problem.efficiency  # at the plug [kWh]
    power = np.divide(need, hours, out=np.zeros_like(need), where=hours > 0)
    power = np.minimum(power, problem.charge_max_kw)
    return power[:, None] * (problem.presence > 0)  # (sessions, periods) [kW]


def nothing(instance):
    """Charge no car at all: always feasible, all energy unmet."""
    return np.zeros((len(instance.sessions), instance.horizon.periods))


def flat_schedule(instance):
    """``flat`` through the registry's equal-share solver's Schedule type: a plug-in may return a Schedule."""
    return gridcharge.solve(instance, solver="equal_share")


def wrong_shape(instance):
    return np.zeros((len(instance.sessions) + 1, instance.horizon.periods))


def boom(instance):
    raise RuntimeError("this algorithm fails on purpose")
