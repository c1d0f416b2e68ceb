"""A HiGHS model kept across re-solves of a changing LP: patched rather than rebuilt, warm-started from the last
optimal basis, stoppable by a time budget or an interrupt and continued where it stopped.

The online controller re-solves after every event; this is its solver, owned here beside the cold one
(:mod:`gridcharge.solvers.highs`, whose set-up it shares). The why and the measurements: docs/design/online.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import highspy
import numpy as np

from ..formulation.lp import LinearProgram
from . import persistent
from .exact import RunResult
from .highs import new_highs, status_name
from .persistent import ExtraRows

#: A re-solve that its time budget stopped continues, at the next call that resumes it, with twice the budget of the
#: slice before, and at least this [s]. Slices of a fixed budget were measured to waste most of their work (one
#: arrival at 880 cars: 13 slices of 0.05 s and 2,781 simplex iterations against 1,221 uninterrupted; with doubling
#: 3 slices and 1,583 iterations); doubling bounds the slices by log2(time needed / budget), and a budget below
#: HiGHS's set-up time still ends at the optimum.
MIN_CONTINUED_BUDGET_S = 0.01
#: How often a re-solve asks the ``interrupt`` callable whether to stop [s].
INTERRUPT_POLL_S = 0.01
#: A re-solve is not interrupted before it has run this long [s], so that a steady stream of events still lets the
#: simplex progress by at least this much per publication.
INTERRUPT_MIN_RUN_S = 0.2
#: Stable keys: ``kind << KIND_SHIFT | serial * T + period`` (serial, node, period < 2**20 each). Kinds 0-14 are the
#: LP's own columns and rows (:func:`lp_keys`); callers key their extra rows with kinds from 15 on.
KIND_SHIFT = 42

#: HiGHS simplex strategies (option ``simplex_strategy``)
DUAL_SIMPLEX, PRIMAL_SIMPLEX = 1, 4

_BASIC = int(highspy.HighsBasisStatus.kBasic)
_LOWER = int(highspy.HighsBasisStatus.kLower)
_UPPER = int(highspy.HighsBasisStatus.kUpper)
_ZERO = int(highspy.HighsBasisStatus.kZero)
_STATUS_LOOKUP = np.empty(max(int(v) for v in highspy.HighsBasisStatus.__members__.values()) + 1, dtype=object)
for _status in highspy.HighsBasisStatus.__members__.values():
    _STATUS_LOOKUP[int(_status)] = _status


@dataclass(frozen=True)
class KeyScheme:
    """How an LP's columns and rows get stable keys: ``serials`` (S,) int64 — a stable number per session (its row
    in the LP); ``first_period`` — absolute index of the LP's period 0; ``total_periods`` — periods of the whole day
    (absolute indices stay below it)."""

    serials: np.ndarray
    first_period: int
    total_periods: int


@dataclass(frozen=True)
class RunInfo:
    """What the HiGHS calls of one solve did (summed over the charge-or-discharge rounds).

    seconds : float — HiGHS's run time [s]
    warm : str or False — ``"kept"`` (the kept model was patched), ``"basis"`` (a fresh model got the saved basis)
    iterations : int — simplex iterations
    stopped : str — the status of the call that did not end optimal (``"time_limit"``, ``"interrupted"``...), or ""
    budget_s : float — the time budget of that call [s]
    """

    seconds: float = 0.0
    warm: str | bool = False
    iterations: int = 0
    stopped: str = ""
    budget_s: float = math.inf


@dataclass(frozen=True)
class SavedBasis:
    """An optimal basis by stable key (keys sorted): int8 HiGHS basis statuses per column and row."""

    col_keys: np.ndarray
    col_status: np.ndarray
    row_keys: np.ndarray
    row_status: np.ndarray


@dataclass(frozen=True)
class Pending:
    """A kept model's simplex that its budget or an interrupt stopped: the strategy it ran and the budget of the
    slice that continues it [s]."""

    strategy: int
    next_budget_s: float


def lp_keys(lp: LinearProgram, scheme: KeyScheme) -> tuple[np.ndarray, np.ndarray]:
    """Stable keys of ``lp``'s columns and rows: the same variable or limit gets the same key in the next re-solve,
    whatever the numbering. Rows of a kind this function does not know get unique keys that match nothing."""
    now, T_day, serial = scheme.first_period, scheme.total_periods, scheme.serials
    S = np.int64(1) << KIND_SHIFT
    pair_key = serial[lp.pair_session] * T_day + lp.pair_period + now
    col = np.full(lp.n_col, -1, dtype=np.int64)
    col[: len(pair_key)] = pair_key
    has = lp.discharge_col >= 0
    col[lp.discharge_col[has]] = 1 * S + pair_key[has]
    has = lp.energy_col >= 0
    col[lp.energy_col[has]] = 2 * S + pair_key[has]
    for block in lp.col_blocks:
        if block.name == "peak_kw":
            col[block.start] = 3 * S
    row = np.full(lp.n_row, -1, dtype=np.int64)
    for block in lp.row_blocks:
        labels = block.labels
        part = row[block.start:block.stop]
        if block.name == "energy_by_departure":
            part[:] = 10 * S + serial[labels["session"]]
        elif block.name == "energy_balance":
            part[:] = 11 * S + pair_key[labels["pair"]]
        elif block.name == "node_limit":
            part[:] = 12 * S + labels["node"] * T_day + labels["period"] + now
        elif block.name == "phase_import_limit":
            part[:] = 13 * S + (labels["node"] * 3 + labels["phase"]) * T_day + labels["period"] + now
        elif block.name == "peak_definition":
            part[:] = 14 * S + labels["period"] + now
        else:
            part[:] = -(np.arange(block.start, block.stop) + 2)
    return col, row


class KeptHighs:
    """One HiGHS object kept between re-solves (module notes).

    Parameters
    ----------
    keep : bool — keep the model and the basis between calls (False: every call is a fresh, cold model)
    threads : int, optional — HiGHS threads
    options : mapping, optional — more HiGHS options (name → value) for every model
    interrupt : callable, optional — asked (no arguments) while HiGHS iterates, at most every ``INTERRUPT_POLL_S``
        and not in the first ``INTERRUPT_MIN_RUN_S`` of a run; True stops the run like its budget (an exception
        counts as False)

    Attributes
    ----------
    last : RunInfo — of the calls since :meth:`begin`
    """

    def __init__(self, *, keep: bool = True, threads: int | None = None, options: Mapping | None = None,
                 interrupt: Callable[[], bool] | None = None):
        self.keep = keep
        self.threads = threads
        self.options = dict(options or {})
        self.interrupt = interrupt
        self.last = RunInfo()
        self._model: persistent.Model | None = None
        self._basis: SavedBasis | None = None
        self._pending: Pending | None = None
        self._watched = None  # the HiGHS object whose simplex asks ``interrupt``
        self._run_started = 0.0  # when the current HiGHS run started [perf_counter s]

    @property
    def optimum_pending(self) -> bool:
        """The last run on the kept model stopped (budget or interrupt): the next resumed run continues it."""
        return self._pending is not None and self._model is not None

    @property
    def run_time_s(self) -> float:
        """HiGHS's cumulative run clock of the kept model [s] (0 without one)."""
        return self._model.highs.getRunTime() if self._model is not None else 0.0

    def forget(self, *, pending: bool = False) -> None:
        """Drop the kept model and the saved basis (and, with ``pending``, the stopped simplex)."""
        self._model = self._basis = None
        if pending:
            self._pending = None

    def begin(self) -> None:
        """Start a new solve: :attr:`last` counts from here."""
        self.last = RunInfo()

    def run(self, lp: LinearProgram, extra: ExtraRows | None, scheme: KeyScheme, *, budget_s: float = math.inf,
            primal: bool = False, resume: bool = False) -> RunResult:
        """One HiGHS call on ``lp`` plus ``extra`` rows: patch the kept model (or pass a fresh one warm-started from
        the saved basis), solve within ``budget_s`` [s] counted from this call.

        ``primal``: a warm start runs the primal simplex (the old basis stays primal feasible, e.g. when only new
        columns came); ``resume``: nothing changed since a stopped run, continue it as it was with its doubled
        budget.
        """
        keep = self.keep and lp.integrality is None and not len(lp.slack_col)
        extra = extra if extra is not None and extra.n else None
        row_lower = np.concatenate([lp.row_lower, extra.lower]) if extra else lp.row_lower
        row_upper = np.concatenate([lp.row_upper, extra.upper]) if extra else lp.row_upper
        warm: str | bool = False
        mapping = keys = None
        if keep:
            col_keys, row_keys = lp_keys(lp, scheme)
            keys = (col_keys, np.concatenate([row_keys, extra.keys]) if extra else row_keys)
            rows, cols, values = persistent.entries(lp, extra)
            if self._model is not None:
                mapping = persistent.patch(self._model, *keys, lp.col_cost, lp.col_lower, lp.col_upper, row_lower,
                                           row_upper, rows, cols, values)
        if mapping is not None:
            h = self._model.highs
            warm = "kept"
        else:
            h = new_highs(lp, threads=self.threads, options=self.options)
            if extra:
                h.addRows(extra.n, extra.lower, extra.upper, len(extra.index), extra.start, extra.index, extra.value)
            if keep:
                self._model = persistent.adopt(h, *keys, lp.col_cost, lp.col_lower, lp.col_upper, row_lower,
                                               row_upper, rows, cols, values)
                mapping = persistent.Mapping(np.arange(lp.n_col), np.arange(len(row_lower)))
                if self._basis is not None:
                    basis = _mapped_basis(self._basis, keys, lp, row_lower, row_upper)
                    warm = "basis" if h.setBasis(basis) != highspy.HighsStatus.kError else False
        strategy = None
        budget = float(budget_s)
        if keep:
            if self._pending is not None and resume:
                # continue the simplex that the last budget stopped, as it was, with a doubled budget
                strategy, budget = self._pending.strategy, max(budget, self._pending.next_budget_s)
            else:
                strategy = (PRIMAL_SIMPLEX if primal else DUAL_SIMPLEX) if warm else DUAL_SIMPLEX
            h.setOptionValue("simplex_strategy", strategy)
        # HiGHS checks time_limit against the object's run clock, which a kept model accumulates over every
        # re-solve: the budget is counted afresh from the time already run, or a kept model would soon have none
        # left (every re-solve then stopped at once)
        h.setOptionValue("time_limit", h.getRunTime() + budget)
        self._pending = None
        if self.interrupt is not None:
            self._watch(h)
        started = self._run_started = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - started
        info = h.getInfo()
        name = status_name(h)
        self.last = replace(self.last, seconds=self.last.seconds + seconds, warm=warm or self.last.warm,
                            iterations=self.last.iterations + int(info.simplex_iteration_count))
        if name != "optimal":
            self.last = replace(self.last, stopped=name, budget_s=budget)
            if keep and name in ("time_limit", "interrupted") and self._model is not None:
                # HiGHS keeps where it stopped: the next resumed call continues from there, with twice the budget
                # after a budget stop (an interrupt says nothing about the budget)
                self._pending = Pending(strategy, max(2.0 * budget, MIN_CONTINUED_BUDGET_S)
                                        if name == "time_limit" else budget)
            elif keep:
                self.forget()
            return RunResult(None, None, name, seconds)
        solution = h.getSolution()
        x = np.asarray(solution.col_value, dtype=float)
        if keep:
            row_value = np.asarray(solution.row_value, dtype=float)
            statuses = _basis_statuses(h, x, row_value, mapping, lp.col_lower, lp.col_upper, row_lower, row_upper)
            x = x[mapping.col]
            if statuses is not None:
                col_status, row_status = statuses
                col_keys, row_keys = keys
                co, ro = np.argsort(col_keys), np.argsort(row_keys)
                self._basis = SavedBasis(col_keys[co], col_status[co], row_keys[ro], row_status[ro])
        return RunResult(x, info.objective_function_value, name, seconds)

    def _watch(self, h: highspy._Highs) -> None:
        """Let HiGHS ask :attr:`interrupt` during its simplex iterations (throttled to ``INTERRUPT_POLL_S``)."""
        if self._watched is h:
            return
        asked = [time.perf_counter()]

        def callback(kind, message, data_out, data_in, user_data) -> None:
            now = time.perf_counter()
            stop = False  # HiGHS keeps the flag between calls (and runs): it is set on every call
            if self.interrupt is not None and now - asked[0] >= INTERRUPT_POLL_S \
                    and now - self._run_started >= INTERRUPT_MIN_RUN_S:
                asked[0] = now
                try:
                    stop = bool(self.interrupt())
                except Exception:  # noqa: BLE001 - a broken predicate must not break the solve
                    stop = False
            data_in.user_interrupt = stop

        h.setCallback(callback, None)
        h.startCallback(highspy.cb.HighsCallbackType.kCallbackSimplexInterrupt)
        self._watched = h


def _mapped_basis(saved: SavedBasis, keys, lp: LinearProgram, row_lower: np.ndarray,
                  row_upper: np.ndarray) -> highspy.HighsBasis:
    """The saved basis on the new model's columns and rows; new columns at a finite bound, new rows basic."""
    col_keys, row_keys = keys

    def mapped(new, old, status, default):
        out = np.full(len(new), default, dtype=np.int8)
        if len(old):
            pos = np.clip(np.searchsorted(old, new), 0, len(old) - 1)
            hit = old[pos] == new
            out[hit] = status[pos[hit]]
        return out

    col_status = _sane(mapped(col_keys, saved.col_keys, saved.col_status, _LOWER), lp.col_lower, lp.col_upper)
    row_status = _sane(mapped(row_keys, saved.row_keys, saved.row_status, _BASIC), row_lower, row_upper)
    basis = highspy.HighsBasis()
    basis.col_status = _STATUS_LOOKUP[col_status].tolist()
    basis.row_status = _STATUS_LOOKUP[row_status].tolist()
    basis.valid = True
    basis.alien = True
    return basis


def _basis_statuses(h, x: np.ndarray, row_value: np.ndarray, mapping, col_lower: np.ndarray, col_upper: np.ndarray,
                    row_lower: np.ndarray, row_upper: np.ndarray):
    """The optimal basis as int8 status arrays (columns, rows) of the new LP, from HiGHS's basic variables and the
    solution values in HiGHS's numbering (``mapping``: where each LP column and row sits there; a nonbasic variable
    sits at the bound it equals); ``getBasis`` would convert ~S x T enum objects in Python. None if HiGHS has no
    basis."""
    status, basic = h.getBasicVariables()
    if status == highspy.HighsStatus.kError:
        return None
    basic = np.asarray(basic, dtype=np.int64)

    def nonbasic(value, lower, upper):
        at_upper = np.isfinite(upper) & (~np.isfinite(lower) | (np.abs(value - upper) < np.abs(value - lower)))
        out = np.where(at_upper, _UPPER, _LOWER).astype(np.int8)
        out[~np.isfinite(lower) & ~np.isfinite(upper)] = _ZERO
        return out

    col_status = nonbasic(x[mapping.col], col_lower, col_upper)
    row_status = nonbasic(row_value[mapping.row], row_lower, row_upper)
    col_basic = np.zeros(len(x), dtype=bool)
    col_basic[basic[basic >= 0]] = True
    row_basic = np.zeros(len(row_value), dtype=bool)
    row_basic[-1 - basic[basic < 0]] = True
    col_status[col_basic[mapping.col]] = _BASIC
    row_status[row_basic[mapping.row]] = _BASIC
    return col_status, row_status


def _sane(status: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Nonbasic statuses only at a finite bound (a bound that became infinite moves to the other one, or zero)."""
    status = status.copy()
    at_lower = (status == _LOWER) & ~np.isfinite(lower)
    status[at_lower] = np.where(np.isfinite(upper[at_lower]), _UPPER, _ZERO)
    at_upper = (status == _UPPER) & ~np.isfinite(upper)
    status[at_upper] = np.where(np.isfinite(lower[at_upper]), _LOWER, _ZERO)
    zero = (status == _ZERO) & (np.isfinite(lower) | np.isfinite(upper))
    status[zero] = np.where(np.isfinite(lower[zero]), _LOWER, _UPPER)
    return status
