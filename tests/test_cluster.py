"""The local dask cluster gridcharge starts (gridcharge/cluster.py): its workers reuse freed memory for new arrays
instead of faulting in fresh pages for each (the dask path's 2x CPU of issue 17, docs/design/district.md)."""

from __future__ import annotations

import pytest

from gridcharge.cluster import WORKER_ENVIRON, dask_client

#: Size of the arrays allocated and freed [bytes]: above glibc's static mmap threshold (128 KiB), below 32 MiB.
SIZE_BYTES = 2**20


def _page_faults_per_round(n: int = 30) -> float:
    """Minor page faults per round of two fresh arrays (``SIZE_BYTES`` and half that) filled then freed, the larger
    first, in this process [-]: a fresh ``mmap`` for each, or a trim of the heap's top after each round, faults their
    pages in again."""
    import resource

    import numpy as np

    def round_() -> None:
        large = np.ones(SIZE_BYTES // 8)
        small = np.ones(SIZE_BYTES // 16)
        del large, small

    round_()  # the first round may fault its pages in wherever they come from
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        round_()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


def test_local_workers_reuse_freed_memory_for_large_arrays(monkeypatch):
    pytest.importorskip("dask.distributed")
    for name in WORKER_ENVIRON:  # as in a fresh process: not what an earlier cluster in this one left (cluster.py)
        monkeypatch.delenv(name, raising=False)
    pages = int(1.5 * SIZE_BYTES) // 4096
    with dask_client(1, None) as client:
        # on a worker thread, like an actor's call; dask's defaults (or the mmap threshold alone) fault ~every page
        faults = client.submit(_page_faults_per_round, pure=False).result()
    assert faults < pages / 16


def _housekeeping() -> dict:
    """The periodic callbacks of the worker this runs on: name -> period [ms]."""
    from distributed import get_worker

    return {name: pc.callback_time for name, pc in get_worker().periodic_callbacks.items()}


def test_the_local_cluster_keeps_its_housekeeping_to_what_gridcharge_uses():
    pytest.importorskip("dask.distributed")
    with dask_client(1, None) as client:
        worker = client.submit(_housekeeping, pure=False).result()
        scheduler = client.run_on_scheduler(
            lambda dask_scheduler: {n: pc.callback_time for n, pc in dask_scheduler.periodic_callbacks.items()})
    # no statistical profiler on the workers; the blocked-loop detector and the system monitor run less often
    assert "profile" not in worker and "profile-cycle" not in worker
    assert worker["tick"] == scheduler["tick"] == 1000
    assert scheduler["monitor"] == 2000
    assert "heartbeat" in worker  # the rest is dask's


def test_an_address_where_no_scheduler_answers_is_a_named_input_error(monkeypatch):
    pytest.importorskip("dask.distributed")
    import dask

    from gridcharge.errors import InstanceError

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(InstanceError, match=r"--scheduler: tcp://127\.0\.0\.1:9 — the address of a running dask"):
            with dask_client(None, "tcp://127.0.0.1:9"):
                pass
