"""Progress of an iterative solve as typed events, for whoever shows them (the command line draws them on stderr; a
solver knows no terminal)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class IterationProgress:
    """One iterate of an interior point, reported through a solver's ``on_iteration`` option.

    Attributes
    ----------
    iteration : int — steps taken so far [-] (0: the starting point; the last event of a certified solve has the
        result's ``iterations``)
    primal_residual : float — worst row residual ``|A x - s|`` relative to ``1 + |x|`` [-]
    dual_residual : float — worst reduced-cost residual [CNY per column unit]
    gap : float or None — relative gap between the iterate's cost and the box-Lagrangian lower bound of its duals
        [-]; None while it is not computed (it is, once the primal residual and complementarity are small)
    mu : float — mean complementarity [CNY]; it falls towards 0 as the iterates converge
    objective_cny : float — cost of the iterate, LP offset included [CNY]
    elapsed_s : float — wall-clock time since the interior point started [s]
    """

    iteration: int
    primal_residual: float
    dual_residual: float
    gap: float | None
    mu: float
    objective_cny: float
    elapsed_s: float


#: What a solver's ``on_iteration`` option takes: called once per iterate, in the solving thread; keep it quick.
OnIteration = Callable[[IterationProgress], object]

__all__ = ["IterationProgress", "OnIteration"]
