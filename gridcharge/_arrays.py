"""Small numpy helpers shared by the array builders and the verifier (pure numpy; no gridcharge imports)."""

from __future__ import annotations

import numpy as np


def add_rows_at(target: np.ndarray, index: np.ndarray, rows: np.ndarray) -> None:
    """``target[index[i]] += rows[i]`` for every ``i``, rows of a repeated index summed (in place).

    What ``np.add.at(target, index, rows)`` does for 2-D ``rows``, by one stable sort and ``np.add.reduceat``,
    which is several times faster for many rows.

    Parameters
    ----------
    target : numpy.ndarray — shape (n, ...), updated in place
    index : numpy.ndarray of int — shape (m,), row of ``target`` each row of ``rows`` goes to
    rows : numpy.ndarray — shape (m, ...)
    """
    index = np.asarray(index)
    if index.size == 0:
        return
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
    target[sorted_index[starts]] += np.add.reduceat(np.asarray(rows)[order], starts, axis=0)


def summed_grid(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A (rows x columns) array whose cell ``(r, c)`` is the sum of the ``weights`` given at ``(r, c)``.

    What ``np.add.at(np.zeros(shape), (rows, cols), weights)`` gives, by one ``np.bincount`` (much faster).

    Parameters
    ----------
    shape : (int, int) — shape of the result
    rows, cols : numpy.ndarray of int — cell of each weight
    weights : numpy.ndarray — values to sum

    Returns
    -------
    numpy.ndarray of float — shape ``shape``
    """
    n_rows, n_cols = shape
    flat = np.asarray(rows, dtype=np.int64) * n_cols + np.asarray(cols, dtype=np.int64)
    return np.bincount(flat, weights=weights, minlength=n_rows * n_cols).astype(float).reshape(shape)


def request_from(gain: np.ndarray) -> np.ndarray:
    """Each row's first period after its last negative entry (0 when it has none), shape (S,): for a schedule's
    energy per period, the period from which a car gives nothing back any more."""
    S, T = gain.shape
    if not T:
        return np.zeros(S, dtype=np.int64)
    negative = gain < 0
    return np.where(negative.any(axis=1), T - np.argmax(negative[:, ::-1], axis=1), 0).astype(np.int64)


def energy_taken(gain: np.ndarray, cap: np.ndarray, final_cap: np.ndarray) -> np.ndarray:
    """Energy a battery actually takes per period when charging stops at a cap: a charger set-point is a limit, a
    full car draws less (docs/design/executable.md, "A set-point is a limit") [kWh].

    The energy added so far follows the schedule's ``gain``, except that a charging period adds at most the room
    left below the cap: ``cap`` until the car's last discharge, ``final_cap`` (<= ``cap``) after it
    (:func:`request_from`; from the start for a car that never discharges). Discharge is taken as scheduled.
    Vectorised: up to the last discharge the trajectory is the running sum minus its running largest excess over
    the cap (a walk reflected at the cap); after it only charging follows, which stops at ``final_cap``.

    Parameters
    ----------
    gain : numpy.ndarray, shape (S, T) — energy into each battery per period at the set-points [kWh]; + charging
    cap, final_cap : numpy.ndarray, shape (S,) — the most the energy added so far may reach until / after the
        last discharge [kWh]; ``final_cap <= cap``, both >= 0

    Returns
    -------
    numpy.ndarray, shape (S, T) — energy taken per period [kWh]: ``gain`` where discharging or below the cap, less
    where the car is full
    """
    S, T = gain.shape
    if not S or not T:
        return gain.copy()
    running = np.cumsum(gain, axis=1)
    added = running - np.clip(np.maximum.accumulate(running - cap[:, None], axis=1), 0.0, None)
    start = request_from(gain)
    rows = np.arange(S)
    base = np.where(start >= 1, added[rows, np.clip(start - 1, 0, T - 1)], 0.0)
    after = np.arange(T)[None, :] >= start[:, None]
    charged = np.cumsum(np.where(after, gain, 0.0), axis=1)  # only charging from ``start`` on
    final = base[:, None] + np.minimum(charged, np.clip(final_cap - base, 0.0, None)[:, None])
    added = np.where(after, final, added)
    return np.diff(added, axis=1, prepend=0.0)
