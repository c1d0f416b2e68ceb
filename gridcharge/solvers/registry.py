"""Solver names → callables. The names are the CLI's ``--solver`` values.

Every solver has the signature ``solve(problem, **options) -> Schedule``:

- ``highs`` — the LP of :mod:`gridcharge.formulation.lp` straight into HiGHS (the fast, exact path);
- ``structured`` — the same LP by a block-eliminating interior point, returned only with a certified gap, HiGHS
  otherwise (:mod:`gridcharge.solvers.structured`); ``auto`` — ``structured`` on large days, HiGHS on small ones;
- ``pyomo:<name>`` — the same model built with Pyomo (:mod:`gridcharge.formulation.pyomo_model`) and solved by any
  solver Pyomo knows (``pyomo:highs`` / ``pyomo:appsi_highs`` always; ``glpk``, ``cbc``, ``gurobi``... where installed);
- the baselines of :mod:`gridcharge.solvers.baselines` (``uncontrolled``, ``equal_share``, ``edf``, ``llf``,
  ``greedy_cost``).

A solver function with the attribute ``reports_overload = True`` (``uncontrolled``) ignores node limits on purpose:
its limit violations are the finding and are kept in ``schedule.verification`` instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..errors import UnknownSolverError
from ..schedule import Schedule
from .baselines import BASELINES
from .highs import solve_highs
from .structured import solve_auto, solve_structured

SolverFunction = Callable[..., Schedule]

_SOLVERS: dict[str, SolverFunction] = {"highs": solve_highs, "structured": solve_structured, "auto": solve_auto,
                                       **BASELINES}
PYOMO_PREFIX = "pyomo:"


def register(name: str, function: SolverFunction) -> None:
    """Make ``function(problem, **options) -> Schedule`` available as ``solver=name``."""
    _SOLVERS[name] = function


def available() -> list[str]:
    """Registered solver names, sorted, plus ``pyomo:<name>`` for each Pyomo solver available on this machine."""
    from .pyomo import available_pyomo_solvers

    return sorted(_SOLVERS) + [PYOMO_PREFIX + name for name in available_pyomo_solvers()]


def get_solver(name: str) -> SolverFunction:
    """The solver registered as ``name``; an unknown name is an error that lists the known ones."""
    if name in _SOLVERS:
        return _SOLVERS[name]
    if name.startswith(PYOMO_PREFIX):
        from .pyomo import pyomo_solver_available, solve_pyomo

        solver_name = name[len(PYOMO_PREFIX):]
        if not pyomo_solver_available(solver_name):
            raise UnknownSolverError(f"Pyomo solver {solver_name!r} is not available on this machine; available: "
                                     f"{', '.join(available())}")
        function = partial(solve_pyomo, solver_name=solver_name)
        function.__name__ = name  # type: ignore[attr-defined]
        return function
    raise UnknownSolverError(f"unknown solver {name!r}; available: {', '.join(available())}")
