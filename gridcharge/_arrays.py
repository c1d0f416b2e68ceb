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
