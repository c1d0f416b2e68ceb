"""The local dask cluster gridcharge starts (gridcharge/cluster.py): its workers reuse freed memory for new arrays
instead of faulting in fresh pages for each (the dask path's 2x CPU of issue 17, docs/design/district.md)."""

from __future__ import annotations

import pytest

from gridcharge.cluster import dask_client

#: Size of the arrays allocated and freed [bytes]: above glibc's static mmap threshold (128 KiB), below 32 MiB.
SIZE_BYTES = 2**20


def _page_faults_per_array(n: int = 40) -> float:
    """Minor page faults per allocation of a fresh ``SIZE_BYTES`` array, filled then freed, in this process [-]."""
    import resource

    import numpy as np

    np.ones(SIZE_BYTES // 8)  # the first may fault in its pages wherever it comes from
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        np.ones(SIZE_BYTES // 8)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


def test_local_workers_reuse_freed_memory_for_large_arrays():
    pytest.importorskip("dask.distributed")
    pages = SIZE_BYTES // 4096
    with dask_client(1, None) as client:
        # on a worker thread, like an actor's call; dask's own defaults give ~one fault per page of every array
        faults = client.submit(_page_faults_per_array, pure=False).result()
    assert faults < pages / 16
