"""The model one HiGHS object holds, and the patch that turns it into a new LP: snapshot, diff, apply.

Columns and rows are matched by stable keys; what is gone is retired (not deleted, so HiGHS's numbering and basis
survive), what differs is changed, what is new is added. A patch is refused (None) when a coefficient of what stays
changed. The why and the measurements: docs/design/online.md, "The kept HiGHS model".
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np

from ..formulation.lp import LinearProgram

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class Model:
    """The model one HiGHS object holds, in HiGHS's numbering."""

    highs: highspy._Highs
    col_keys: np.ndarray  # int64, one per HiGHS column (retired ones included)
    row_keys: np.ndarray  # int64, one per HiGHS row
    entry_col: np.ndarray  # int64, HiGHS column of each matrix entry
    entry_row: np.ndarray  # int64, HiGHS row of each matrix entry
    entry_value: np.ndarray
    live_cols: np.ndarray  # bool, column not retired
    live_rows: np.ndarray  # bool
    col_cost: np.ndarray  # what HiGHS holds, per HiGHS column and row: only differences are sent
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray

    @property
    def n_col(self) -> int:
        return len(self.col_keys)

    @property
    def n_row(self) -> int:
        return len(self.row_keys)


@dataclass(frozen=True)
class Mapping:
    """Where the new LP's columns and rows sit in HiGHS's model: ``x_new = x_highs[col]``."""

    col: np.ndarray
    row: np.ndarray


@dataclass(frozen=True)
class ExtraRows:
    """Rows appended after an LP's own rows: ``lower <= sum(value * x[index]) <= upper``.

    lower, upper : numpy.ndarray, shape (n,) — row bounds
    keys : numpy.ndarray of int64, shape (n,) — a stable key per row (matched across re-solves)
    start, index, value : numpy.ndarray — the entries row-wise (compressed), in the LP's column numbering
    """

    lower: np.ndarray
    upper: np.ndarray
    keys: np.ndarray
    start: np.ndarray
    index: np.ndarray
    value: np.ndarray

    @property
    def n(self) -> int:
        return len(self.lower)


def entries(lp: LinearProgram, extra: ExtraRows | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All matrix entries (row, column, value) of ``lp`` plus ``extra`` rows appended after ``lp``'s rows."""
    cols = np.repeat(np.arange(lp.n_col, dtype=np.int64), np.diff(lp.a_start))
    rows = np.asarray(lp.a_index, dtype=np.int64)
    values = np.asarray(lp.a_value, dtype=float)
    if extra is not None and extra.n:
        counts = np.diff(np.r_[extra.start, len(extra.index)])
        rows = np.concatenate([rows, lp.n_row + np.repeat(np.arange(extra.n, dtype=np.int64), counts)])
        cols = np.concatenate([cols, np.asarray(extra.index, dtype=np.int64)])
        values = np.concatenate([values, np.asarray(extra.value, dtype=float)])
    return rows, cols, values


def adopt(highs: highspy._Highs, col_keys: np.ndarray, row_keys: np.ndarray, cost: np.ndarray, col_lower: np.ndarray,
          col_upper: np.ndarray, row_lower: np.ndarray, row_upper: np.ndarray, rows: np.ndarray, cols: np.ndarray,
          values: np.ndarray) -> Model:
    """Remember a model just passed to ``highs`` (new LP numbering = HiGHS numbering); arguments as :func:`patch`."""
    return Model(highs, col_keys.copy(), row_keys.copy(), cols.copy(), rows.copy(), values.copy(),
                 np.ones(len(col_keys), dtype=bool), np.ones(len(row_keys), dtype=bool), cost.copy(),
                 col_lower.copy(), col_upper.copy(), row_lower.copy(), row_upper.copy())


def patch(model: Model, col_keys: np.ndarray, row_keys: np.ndarray, cost: np.ndarray, col_lower: np.ndarray,
          col_upper: np.ndarray, row_lower: np.ndarray, row_upper: np.ndarray, rows: np.ndarray, cols: np.ndarray,
          values: np.ndarray) -> Mapping | None:
    """Turn the model HiGHS holds into the new LP, or return None (nothing changed) when that is not safe.

    Parameters
    ----------
    model : Model — what HiGHS holds
    col_keys, row_keys : numpy.ndarray of int64 — stable keys of the new LP's columns and rows
    cost, col_lower, col_upper : numpy.ndarray — the new LP's columns
    row_lower, row_upper : numpy.ndarray — the new LP's rows (extra rows included)
    rows, cols, values : numpy.ndarray — the new LP's matrix entries, as :func:`entries` gives them

    Returns
    -------
    Mapping or None
    """
    col_in_old = _positions(model.col_keys, model.live_cols, col_keys)
    row_in_old = _positions(model.row_keys, model.live_rows, row_keys)
    new_cols = np.flatnonzero(col_in_old < 0)
    new_rows = np.flatnonzero(row_in_old < 0)
    kept_cols = col_in_old[col_in_old >= 0]
    retired_cols = np.setdiff1d(np.flatnonzero(model.live_cols), kept_cols, assume_unique=True)
    retired_rows = np.setdiff1d(np.flatnonzero(model.live_rows), row_in_old[row_in_old >= 0], assume_unique=True)
    if (~model.live_cols).sum() + len(retired_cols) > len(col_keys):
        return None  # more dead than live columns: a fresh model is smaller
    if not _same_coefficients(model, col_in_old, row_in_old, row_keys, rows, cols, values):
        return None

    h = model.highs
    n_old_cols, n_old_rows = model.n_col, model.n_row
    # HiGHS position of every new-LP column and row after the patch: kept ones where they are, new ones appended
    col_pos = col_in_old.copy()
    col_pos[new_cols] = n_old_cols + np.arange(len(new_cols))
    row_pos = row_in_old.copy()
    row_pos[new_rows] = n_old_rows + np.arange(len(new_rows))

    # retired columns: fixed at 0, no cost; retired rows: free
    target_cost, target_lower, target_upper = model.col_cost.copy(), model.col_lower.copy(), model.col_upper.copy()
    target_cost[retired_cols] = target_lower[retired_cols] = target_upper[retired_cols] = 0.0
    row_target_lower, row_target_upper = model.row_lower.copy(), model.row_upper.copy()
    row_target_lower[retired_rows], row_target_upper[retired_rows] = -np.inf, np.inf
    kept = np.flatnonzero(col_in_old >= 0)
    target_cost[col_in_old[kept]] = cost[kept]
    target_lower[col_in_old[kept]] = col_lower[kept]
    target_upper[col_in_old[kept]] = col_upper[kept]
    kept_r = np.flatnonzero(row_in_old >= 0)
    row_target_lower[row_in_old[kept_r]] = row_lower[kept_r]
    row_target_upper[row_in_old[kept_r]] = row_upper[kept_r]
    # send only what differs from what HiGHS holds
    moved = np.flatnonzero((target_lower != model.col_lower) | (target_upper != model.col_upper))
    if len(moved):
        h.changeColsBounds(len(moved), moved.astype(np.int32), target_lower[moved], target_upper[moved])
    repriced = np.flatnonzero(target_cost != model.col_cost)
    if len(repriced):
        h.changeColsCost(len(repriced), repriced.astype(np.int32), target_cost[repriced])
    moved = np.flatnonzero((row_target_lower != model.row_lower) | (row_target_upper != model.row_upper))
    if len(moved):
        h.changeRowsBounds(len(moved), moved.astype(np.int32), row_target_lower[moved], row_target_upper[moved])

    entry_is_new_col = col_in_old[cols] < 0
    entry_is_new_row = row_in_old[rows] < 0
    if len(new_cols):  # new columns with their entries in the rows HiGHS already has
        pick = entry_is_new_col & ~entry_is_new_row
        start, index, value = _compressed(col_pos[cols[pick]] - n_old_cols, row_pos[rows[pick]], values[pick],
                                          len(new_cols))
        h.addCols(len(new_cols), cost[new_cols], col_lower[new_cols], col_upper[new_cols], len(index), start,
                  index, value)
    if len(new_rows):  # then new rows with their entries in every live column
        pick = entry_is_new_row
        start, index, value = _compressed(row_pos[rows[pick]] - n_old_rows, col_pos[cols[pick]], values[pick],
                                          len(new_rows))
        h.addRows(len(new_rows), row_lower[new_rows], row_upper[new_rows], len(index), start, index, value)

    # the model HiGHS now holds
    added = entry_is_new_col | entry_is_new_row
    live_cols = model.live_cols.copy()
    live_cols[retired_cols] = False
    live_rows = model.live_rows.copy()
    live_rows[retired_rows] = False
    model.col_keys = np.concatenate([model.col_keys, col_keys[new_cols]])
    model.row_keys = np.concatenate([model.row_keys, row_keys[new_rows]])
    model.live_cols = np.concatenate([live_cols, np.ones(len(new_cols), dtype=bool)])
    model.live_rows = np.concatenate([live_rows, np.ones(len(new_rows), dtype=bool)])
    model.entry_col = np.concatenate([model.entry_col, col_pos[cols[added]]])
    model.entry_row = np.concatenate([model.entry_row, row_pos[rows[added]]])
    model.entry_value = np.concatenate([model.entry_value, values[added]])
    model.col_cost = np.concatenate([target_cost, cost[new_cols]])
    model.col_lower = np.concatenate([target_lower, col_lower[new_cols]])
    model.col_upper = np.concatenate([target_upper, col_upper[new_cols]])
    model.row_lower = np.concatenate([row_target_lower, row_lower[new_rows]])
    model.row_upper = np.concatenate([row_target_upper, row_upper[new_rows]])
    return Mapping(col_pos, row_pos)


def _positions(old_keys: np.ndarray, live: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """Index in ``old_keys`` of each new key among the live ones, -1 where it is not there."""
    live_index = np.flatnonzero(live)
    order = live_index[np.argsort(old_keys[live_index], kind="stable")]
    sorted_keys = old_keys[order]
    out = np.full(len(new_keys), -1, dtype=np.int64)
    if len(order):
        pos = np.clip(np.searchsorted(sorted_keys, new_keys), 0, len(order) - 1)
        hit = sorted_keys[pos] == new_keys
        out[hit] = order[pos[hit]]
    return out


def _row_weight(keys: np.ndarray) -> np.ndarray:
    """A pseudo-random weight in [1, 2) per row key, the same for the same key."""
    mixed = keys.astype(np.uint64) * _HASH_MULTIPLIER
    return 1.0 + (mixed >> np.uint64(11)).astype(float) / float(1 << 53)


def _same_coefficients(model: Model, col_in_old, row_in_old, row_keys, rows, cols, values) -> bool:
    """Do the columns that stay have the same entries on the rows that stay, in HiGHS's model and in the new LP?"""
    n_old = model.n_col
    # the new LP's entries on kept columns and kept rows, by HiGHS column
    keep = (col_in_old[cols] >= 0) & (row_in_old[rows] >= 0)
    new_fp = _fingerprint(col_in_old[cols[keep]], row_keys[rows[keep]], values[keep], n_old)
    # HiGHS's entries on the same columns and rows (a retired or dropped row is not among them)
    row_stays = np.zeros(model.n_row, dtype=bool)
    row_stays[row_in_old[row_in_old >= 0]] = True
    col_stays = np.zeros(n_old, dtype=bool)
    col_stays[col_in_old[col_in_old >= 0]] = True
    keep = col_stays[model.entry_col] & row_stays[model.entry_row]
    old_fp = _fingerprint(model.entry_col[keep], model.row_keys[model.entry_row[keep]], model.entry_value[keep],
                          n_old)
    if not np.array_equal(new_fp[0], old_fp[0]):
        return False
    scale = np.maximum(1.0, np.abs(old_fp[1]))
    return bool(np.all(np.abs(new_fp[1] - old_fp[1]) <= 1e-12 * scale)
                and np.all(np.abs(new_fp[2] - old_fp[2]) <= 1e-12 * np.maximum(1.0, np.abs(old_fp[2]))))


def _fingerprint(col, row_key, value, n_col):
    count = np.bincount(col, minlength=n_col)
    total = np.bincount(col, weights=value, minlength=n_col)
    weighted = np.bincount(col, weights=value * _row_weight(row_key), minlength=n_col)
    return count, total, weighted


def _compressed(major, minor, value, n_major):
    """Entries grouped by ``major`` (0 .. n_major-1) in HiGHS's compressed form: start, index, value."""
    order = np.argsort(major, kind="stable")
    start = np.zeros(n_major, dtype=np.int32)
    start[1:] = np.cumsum(np.bincount(major, minlength=n_major))[:-1]
    return start, minor[order].astype(np.int32), value[order]
