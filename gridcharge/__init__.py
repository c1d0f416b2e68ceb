"""gridcharge — schedule EV charging so that crowded residential transformers can carry it.

The flow: ``load_instance`` (validated input) → ``build_problem`` (arrays) → formulation → solver → ``Schedule`` →
``verify`` → outputs.
"""

from __future__ import annotations

import os as _os
import sys as _sys

#: numpy asks the kernel for transparent huge pages on every array of 4 MB or more (``madvise``), as set once at its
#: import by ``NUMPY_MADVISE_HUGEPAGE``. A solve's big arrays are short-lived temporaries, and on a virtual machine
#: that hands free memory back to its host (free page reporting) a huge page touched first after a few seconds of
#: idle is faulted in from the host: 0.7 s of a 3.6 s solve of the 10,000-session V2G day, nothing gained in the
#: iterations (docs/design/structured.md, "Huge pages"). So a numpy that gridcharge imports first does without; a
#: value the user set wins, a numpy imported before keeps its setting, and child processes get their own default.
if "numpy" not in _sys.modules and "NUMPY_MADVISE_HUGEPAGE" not in _os.environ:
    _os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
    try:
        import numpy as _numpy  # noqa: F401 — reads the variable now
    finally:
        del _os.environ["NUMPY_MADVISE_HUGEPAGE"]

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
    schedule = function(problem, time_limit_s=time_limit_s, **options)
    overload_allowed = bool(options.get("allow_overload")) or getattr(function, "reports_overload", False)
    return _checked(problem, schedule, solver, overload_allowed=overload_allowed)


def build_pyomo(instance, **options):
    """The scheduling model as a named Pyomo ``ConcreteModel`` (see :mod:`gridcharge.formulation.pyomo_model`).

    ``instance`` is an Instance, path, mapping or Problem; ``options``: ``allow_overload``, ``binary_pairs``.
    Pyomo is imported only here, so ``import gridcharge`` stays quick.
    """
    from .formulation.pyomo_model import build_pyomo as build

    return build(instance if isinstance(instance, Problem) else build_problem(instance), **options)


#: Violations that ``allow_overload`` permits (they are the finding); every other kind is a bug.
_LIMIT_KINDS = {"node_import", "node_export", "phase_import"}


def _checked(problem: Problem, schedule: Schedule, solver: str, overload_allowed: bool) -> Schedule:
    """Verify independently before anything is emitted; attach the verdict to the schedule."""
    result = verify(problem.instance, schedule)
    schedule.verification = result
    schedule.summary["verified"] = result.ok
    schedule.summary["verify_cost_cny"] = result.cost_cny
    allowed = _LIMIT_KINDS if overload_allowed else set()
    broken = [v for v in result.violations if v.kind not in allowed]
    if broken:
        shown = "\n  ".join(str(v) for v in broken[:10])
        raise SolverError(f"the {solver!r} schedule failed independent verification "
                          f"({len(broken)} violation(s)); nothing is emitted:\n  {shown}")
    return schedule


__all__ = [
    "Instance", "InstanceError", "InfeasibleError", "Problem", "Schedule", "SolverError", "UnknownSolverError",
    "Verification", "Violation", "available_solvers", "build_problem", "build_pyomo", "load_instance", "solve",
    "verify",
]


#: Public names imported on first use (module, attribute; None: the module itself), so that ``import gridcharge``
#: stays light: the simulator, the instance generator and the transformer thermal model (``gridcharge.thermal`` is
#: ``gridcharge.grid.thermal``, the name issue 6 gives it).
_LAZY = {"simulate": (".online", "simulate"), "generate": (".bench.generate", "generate"),
         "thermal": (".grid.thermal", None)}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'gridcharge' has no attribute {name!r}")
    from importlib import import_module

    module_name, attribute = _LAZY[name]
    module = import_module(module_name, __name__)
    return module if attribute is None else getattr(module, attribute)
