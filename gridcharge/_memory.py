"""Giving freed memory back to the system: glibc keeps the pages of freed small blocks in its heap, so a process that
built and dropped large temporaries (the LP, the whole layout) keeps their resident size; ``malloc_trim`` returns the
free pages. Measured on the split district solve (docs/design/district.md, "The coordinator's memory")."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim():
    """glibc's ``malloc_trim``, or None where the C library is not glibc (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def give_back() -> bool:
    """Return the C heap's free pages to the system (``malloc_trim(0)``); False where that is not available."""
    trim = _trim()
    return bool(trim(0)) if trim is not None else False
