"""Solver names → callables. The names are the CLI's ``--solver`` values.

Every solver has the signature ``solve(problem, **options) -> Schedule``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnknownSolverError
from ..problem import Problem
from ..schedule import Schedule
from .highs import solve_highs

SolverFunction = Callable[..., Schedule]

_SOLVERS: dict[str, SolverFunction] = {
    "highs": solve_highs,
}


def register(name: str, function: SolverFunction) -> None:
    """Make ``function(problem, **options) -> Schedule`` available as ``solver=name``."""
    _SOLVERS[name] = function


def available() -> list[str]:
    """Registered solver names, sorted."""
    return sorted(_SOLVERS)


def get_solver(name: str) -> SolverFunction:
    """The solver registered as ``name``; an unknown name is an error that lists the known ones."""
    try:
        return _SOLVERS[name]
    except KeyError:
        raise UnknownSolverError(f"unknown solver {name!r}; available: {', '.join(available())}") from None


def run(problem: Problem, solver: str = "highs", **options) -> Schedule:
    """Solve ``problem`` with the solver registered as ``solver``."""
    return get_solver(solver)(problem, **options)
