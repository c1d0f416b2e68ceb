"""Solve the named Pyomo model (:mod:`gridcharge.formulation.pyomo_model`) with any solver Pyomo knows.

``solver="pyomo:highs"`` (or ``pyomo:appsi_highs``) always works through highspy; ``pyomo:glpk``, ``pyomo:cbc``,
``pyomo:gurobi``, ``pyomo:cplex`` ... where installed. ``extend=fn`` lets a researcher add to the model before each
solve: ``fn(model, instance)``. The result comes back as a normal :class:`~gridcharge.schedule.Schedule` and goes
through the same charge-or-discharge rule and the same independent verification as the direct path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pyomo
import pyomo.environ as pyo
from pyomo.opt import TerminationCondition

from ..errors import UnknownSolverError
from ..formulation.lp import LinearProgram
from ..formulation.pyomo_model import model_from_lp
from ..problem import Problem
from ..schedule import Schedule
from .exact import RunResult, solve_exactly

#: Solvers looked for by :func:`available_pyomo_solvers` (any other name Pyomo knows is accepted too).
KNOWN_SOLVERS = ("highs", "appsi_highs", "glpk", "cbc", "gurobi", "gurobi_direct", "cplex", "cplex_direct",
                 "xpress_direct", "scip")
#: How each legacy solver interface spells a time limit [s].
_TIME_LIMIT_OPTION = {"glpk": "tmlim", "cbc": "sec", "gurobi": "TimeLimit", "gurobi_direct": "TimeLimit",
                      "cplex": "timelimit", "cplex_direct": "timelimit", "scip": "limits/time"}


def pyomo_solver_available(name: str) -> bool:
    """Whether Pyomo can run the solver ``name`` on this machine."""
    logging.getLogger("pyomo").setLevel(logging.ERROR)  # an absent solver logs a warning on each probe
    try:
        return bool(pyo.SolverFactory(name).available(exception_flag=False))
    except Exception:  # Pyomo raises assorted errors for names it does not know
        return False


def available_pyomo_solvers() -> list[str]:
    """The names of :data:`KNOWN_SOLVERS` that Pyomo can run on this machine."""
    return [name for name in KNOWN_SOLVERS if pyomo_solver_available(name)]


def check_pyomo_solver(name: str) -> None:
    """Raise :class:`UnknownSolverError` (listing the Pyomo solvers available) unless Pyomo can run ``name``."""
    if not pyomo_solver_available(name):
        raise UnknownSolverError(f"Pyomo solver {name!r} is not available on this machine; available: "
                                 f"{', '.join('pyomo:' + n for n in available_pyomo_solvers())}")


def solve_pyomo(problem: Problem, *, solver_name: str = "highs", time_limit_s: float | None = None,
                allow_overload: bool = False, extend: Callable | None = None, verbose: bool = False,
                **ignored) -> Schedule:
    """Optimal schedule through Pyomo.

    Parameters
    ----------
    problem : Problem
    solver_name : str — a Pyomo solver name (``highs``, ``appsi_highs``, ``glpk``, ``cbc``, ``gurobi``, ...)
    time_limit_s : float, optional — wall-clock limit per solver call [s]
    allow_overload : bool — node limits as penalised slack
    extend : callable, optional — ``extend(model, instance)`` adds variables and constraints before each solve
    verbose : bool — the solver's log on the console
    """
    check_pyomo_solver(solver_name)
    run = partial(_run_pyomo, problem=problem, solver_name=solver_name, time_limit_s=time_limit_s, extend=extend,
                  verbose=verbose)
    # netting moves change charge and discharge separately; a user constraint may forbid that, so with extend the
    # charge-or-discharge rule is enforced by binaries alone
    return solve_exactly(problem, run, allow_overload=allow_overload, net=extend is None, mip_capable=False,
                         solver=f"pyomo:{solver_name}", solver_version=f"pyomo {pyomo.version.version}",
                         method=solver_name, extended=extend is not None)


def _run_pyomo(lp: LinearProgram, *, problem: Problem, solver_name: str, time_limit_s, extend, verbose) -> RunResult:
    started = time.perf_counter()
    model, columns = model_from_lp(problem, lp)
    if extend is not None:
        extend(model, problem.instance)
    build_s = time.perf_counter() - started
    opt = pyo.SolverFactory(solver_name)
    kwargs = {"tee": verbose, "load_solutions": False}
    if time_limit_s is not None:
        if solver_name == "highs":
            kwargs["timelimit"] = time_limit_s
        elif solver_name == "appsi_highs":
            opt.config.time_limit = time_limit_s
        elif solver_name in _TIME_LIMIT_OPTION:
            opt.options[_TIME_LIMIT_OPTION[solver_name]] = time_limit_s
    started = time.perf_counter()
    results = opt.solve(model, **kwargs)
    seconds = time.perf_counter() - started
    condition = results.solver.termination_condition
    if condition in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded):
        return RunResult(None, None, "infeasible", seconds, build_s)
    if condition != TerminationCondition.optimal:
        return RunResult(None, None, str(condition), seconds, build_s)
    model.solutions.load_from(results)
    x = np.array([c.value if c.value is not None else 0.0 for c in columns], dtype=float)
    return RunResult(x, pyo.value(model.cost) - lp.offset, "optimal", seconds, build_s)
