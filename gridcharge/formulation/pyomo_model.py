"""The same scheduling model as a Pyomo ``ConcreteModel`` with readable names, for researchers who extend it.

The model is made from the arrays of :func:`gridcharge.formulation.lp.build_lp`, so it is the *same* formulation
as the direct HiGHS path by construction (one definition of the mathematics, two builders), only dressed in names:

=================================  =================================================================================
component                          meaning
=================================  =================================================================================
``charge_kw[k]``                   charging power of plugged-in pair ``k`` [kW]
``discharge_kw[k]``                discharging power [kW] (V2G pairs only)
``energy_kwh[k]``                  energy added to the battery by the end of the period [kWh] (V2G pairs only)
``peak_kw``                        the root's highest net load [kW] (only when ``peak_cny_per_kw > 0``)
``overload_kw[node, limit, t]``    slack over a limit [kW] (only with ``allow_overload``)
``charging_mode[k]``               binary, 1 = may charge (only for pairs that needed it)
``energy_balance[k]``              ``energy[k] = energy[k-1] + eta f dt charge[k] - f dt / eta discharge[k]``
``energy_by_departure[session]``   ``sum eta f dt charge <= energy_kwh`` (charge-only sessions)
``node_limit[node, t]``            ``-export_limit <= base net load + sum(charge - discharge) <= import_limit``
``phase_import_limit[node, ph, t]``  per-phase import limit (``ph`` is ``"A"``, ``"B"`` or ``"C"``)
``peak_definition[t]``             ``peak_kw >= net load of the root``
``cost``                           the objective [CNY]
=================================  =================================================================================

Index sets are flat: a plugged-in (session, period) pair is one integer ``k``. Look one up with
``model.pair[session_id, t]``; the reverse is ``model.pair_session_id[k]``, ``model.pair_period[k]``. Node rows that
can never bind are left out, as in the direct model, so ``node_limit`` has only the (node, period) pairs that matter.

A user constraint, e.g. a car that must not charge before 22:00::

    def no_early_charging(model, instance):
        k = [model.pair["S00001", t] for t in range(88) if ("S00001", t) in model.pair]
        model.wait = pyo.Constraint(k, rule=lambda m, i: m.charge_kw[i] == 0)

    gridcharge.solve(instance, solver="pyomo:highs", extend=no_early_charging)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from ..problem import PHASES, Problem
from .lp import LinearProgram, build_lp


def build_pyomo(problem: Problem, *, allow_overload: bool = False, binary_pairs: np.ndarray | None = None
                ) -> pyo.ConcreteModel:
    """The scheduling model as a Pyomo ``ConcreteModel`` (see the module docstring for its components)."""
    lp = build_lp(problem, allow_overload=allow_overload, binary_pairs=binary_pairs)
    model, _ = model_from_lp(problem, lp)
    return model


def model_from_lp(problem: Problem, lp: LinearProgram) -> tuple[pyo.ConcreteModel, list]:
    """Dress a built :class:`LinearProgram` as a named Pyomo model.

    Returns the model and the list of its variables in LP column order (to read a solution back as an array).
    """
    model = pyo.ConcreteModel(name=problem.instance.name)
    names = _Names(problem)
    columns: list = [None] * lp.n_col
    integer = lp.integrality if lp.integrality is not None else np.zeros(lp.n_col, dtype=np.int32)
    for name, blocks in _grouped(lp.col_blocks).items():
        positions = np.concatenate([np.arange(b.start, b.stop) for b in blocks])
        keys = [key for b in blocks for key in names.keys(b)]
        domain = pyo.Binary if integer[positions].any() else pyo.Reals
        if keys == [None]:  # a scalar variable (peak_kw)
            var = pyo.Var(domain=domain)
            setattr(model, name, var)
            datas = [var]
        else:
            var = pyo.Var(keys, domain=domain, dense=True)
            setattr(model, name, var)
            datas = list(var.values())
        lower = lp.col_lower[positions].tolist()
        upper = lp.col_upper[positions].tolist()
        for data, lo, hi, pos in zip(datas, lower, upper, positions.tolist()):
            if domain is pyo.Reals:
                data.setlb(lo if lo > -np.inf else None)
                data.setub(hi if hi < np.inf else None)
            columns[pos] = data

    # row-wise view of the CSC matrix
    col_of_nz = np.repeat(np.arange(lp.n_col), np.diff(lp.a_start))
    order = np.argsort(lp.a_index, kind="stable")
    row_start = np.zeros(lp.n_row + 1, dtype=np.int64)
    row_start[1:] = np.cumsum(np.bincount(lp.a_index, minlength=lp.n_row))
    row_cols = col_of_nz[order]
    row_vals = lp.a_value[order]
    column_array = np.empty(lp.n_col, dtype=object)
    column_array[:] = columns

    for name, blocks in _grouped(lp.row_blocks).items():
        positions = np.concatenate([np.arange(b.start, b.stop) for b in blocks]).tolist()
        keys = [key for b in blocks for key in names.keys(b)]
        row_of = dict(zip(keys, positions))

        def rule(_model, *key, row_of=row_of):
            row = row_of[key[0] if len(key) == 1 else key]
            lo, hi = lp.row_lower[row], lp.row_upper[row]
            a, b = row_start[row], row_start[row + 1]
            expr = LinearExpression(constant=0.0, linear_coefs=row_vals[a:b].tolist(),
                                    linear_vars=column_array[row_cols[a:b]].tolist())
            if lo == hi:
                return expr == lo
            return (lo if lo > -np.inf else None, expr, hi if hi < np.inf else None)

        setattr(model, name, pyo.Constraint(keys, rule=rule))

    nz = np.flatnonzero(lp.col_cost)
    model.cost = pyo.Objective(expr=LinearExpression(constant=lp.offset, linear_coefs=lp.col_cost[nz].tolist(),
                                                     linear_vars=column_array[nz].tolist()), sense=pyo.minimize)
    session_ids = np.asarray(problem.session_ids, dtype=object)
    model.pair_session_id = session_ids[lp.pair_session].tolist()
    model.pair_period = lp.pair_period.tolist()
    model.pair = dict(zip(zip(model.pair_session_id, model.pair_period), range(len(lp.pair_session))))
    return model, columns


def _grouped(blocks) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for block in blocks:
        out[block.name].append(block)
    return out


class _Names:
    """Turns a block's label arrays into Pyomo index keys (ids instead of integer indices)."""

    def __init__(self, problem: Problem):
        self.node = np.asarray(problem.node_ids, dtype=object)
        self.session = np.asarray(problem.session_ids, dtype=object)
        self.phase = np.asarray(PHASES, dtype=object)

    def keys(self, block) -> list:
        if not block.labels:
            return [None]
        columns = []
        for label, values in block.labels.items():
            if label in ("node", "session", "phase"):
                columns.append(getattr(self, label)[values].tolist())
            else:
                columns.append(np.asarray(values).tolist())
        return columns[0] if len(columns) == 1 else list(zip(*columns))
