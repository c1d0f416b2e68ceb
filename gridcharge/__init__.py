"""gridcharge — schedule EV charging so that crowded residential transformers can carry it.

The flow: ``load_instance`` (validated input) → ``build_problem`` (arrays) → formulation → solver → ``Schedule`` →
``verify`` → outputs.
"""

from __future__ import annotations

from .errors import InfeasibleError, InstanceError, SolverError, UnknownSolverError
from .instance import Instance, load_instance
from .problem import Problem, build_problem
from .schedule import Schedule
from .solvers import available as available_solvers
from .solvers import get_solver
from .verify import Verification, Violation, verify

__version__ = "0.1.0"


def solve(instance, solver: str = "highs", time_limit_s: float | None = None, **options) -> Schedule:
    """Find a schedule for an instance.

    Parameters
    ----------
    instance : Instance, path or mapping — anything :func:`load_instance` reads
    solver : str — a registered solver name (see :func:`available_solvers`), default ``"highs"``
    time_limit_s : float, optional — wall-clock limit for the solver [s]
    **options — passed to the solver, e.g. ``allow_overload=True``, ``method="ipm"``

    Returns
    -------
    Schedule

    Raises
    ------
    InstanceError — invalid input; InfeasibleError — some limit cannot be met (node, period, kW);
    UnknownSolverError; SolverError
    """
    function = get_solver(solver)
    problem = instance if isinstance(instance, Problem) else build_problem(instance)
    return function(problem, time_limit_s=time_limit_s, **options)


__all__ = [
    "Instance", "InstanceError", "InfeasibleError", "Problem", "Schedule", "SolverError", "UnknownSolverError",
    "Verification", "Violation", "available_solvers", "build_problem", "load_instance", "solve", "verify",
]
