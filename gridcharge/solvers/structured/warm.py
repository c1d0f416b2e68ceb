"""Bring numba's compiler up ahead of the first kernel: its typing and target registries load once per process
(~0.2 s), which a solve can overlap with its LP build and layout (numpy, mostly outside the GIL) on a thread."""

from __future__ import annotations

import threading

from numba import njit


@njit(cache=True)
def _one_more(x):
    return x + 1


def warm_up() -> None:
    """Load one tiny cached function, which loads numba's registries (a no-op after the first time)."""
    _one_more(1)


def warm_up_beside() -> threading.Thread:
    """:func:`warm_up` on a daemon thread, started; the kernels wait for it on numba's own lock if they come first."""
    thread = threading.Thread(target=warm_up, name="gridcharge-numba-warm-up", daemon=True)
    thread.start()
    return thread
