"""A dask.distributed client for the parts of gridcharge that spread work over processes (scenario studies, the
district solve): a local cluster of ``workers`` processes or a running scheduler, closed in order and quietly."""

from __future__ import annotations

import logging
from contextlib import contextmanager

from .errors import FieldProblem, InstanceError

#: Environment the local workers' processes start with, over dask's ``distributed.nanny.pre-spawn-environ``: glibc's
#: malloc thresholds [bytes] at the ceilings its dynamic thresholds rise to in a process left alone. dask sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``, and setting any threshold turns the dynamic ones off: every array above 128 KiB
#: was a fresh ``mmap`` and every free at the heap's top went back to the system, so arrays were faulted in and zeroed
#: page by page again and again, and the district solve's partitions cost ~2.5x the CPU on a worker of what they cost
#: in process (docs/design/district.md, "Workers' malloc"). 32 MiB is the largest mmap threshold glibc takes on 64-bit
#: Linux, the trim threshold twice it as glibc keeps them. A variable set in this process's environment wins (dask's
#: rule), also one a dask cluster started earlier in this process left there: its nannies write their
#: ``pre-spawn-environ`` into this process's environment.
WORKER_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": 32 * 2**20, "MALLOC_TRIM_THRESHOLD_": 64 * 2**20}
#: dask settings of the local cluster, over dask's defaults: its periodic housekeeping, which costs CPU every second
#: whatever the cluster does, on the cores the work runs on. Measured on an idle cluster of 2 workers (30 s; the
#: coordinator process holds the scheduler, the nannies and the client): 45 ms of CPU per second in the coordinator
#: and 30 per worker with dask's defaults, 15 and 5-6 with these (benchmarks/RESULTS.md, "dask's housekeeping"), ~4 %
#: of a 2-core machine. The event-loop tick (dask's detector of a blocked loop, every 20 ms in every scheduler,
#: nanny and worker) every second (a blocked loop is still reported after its 3 s limit), the system monitor every
#: 2 s instead of 0.5 s (its dashboard figures), and no statistical profiler on the workers (a stack sample every
#: 10 ms, for the dashboard's profile page, which gridcharge does not serve). Work stealing and the nannies' memory
#: monitor stay: they balance a study's tasks and guard a worker's memory.
CLUSTER_CONFIG = {"distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "2s",
                  "distributed.worker.profile.enabled": False}


@contextmanager
def dask_client(workers: int | None, scheduler: str | None):
    """A client of the running cluster at ``scheduler``, or of a local cluster of ``workers`` processes (default: the
    CPU count) with one thread each; closed in order on any exit.

    The local workers start with :data:`WORKER_ENVIRON`, the cluster with :data:`CLUSTER_CONFIG`, and the workers with
    SIGINT ignored (they inherit it): Ctrl-C reaches this
    process alone, which cancels the tasks and closes the cluster, instead of every worker dying mid-task with a
    traceback. Closing, dask's own
    shutdown races (a worker's heartbeat to a scheduler that has just closed, messages for cancelled tasks to a
    client that has left) log harmless errors with tracebacks; dask's loggers are quiet for the close only, in this
    process and in the workers. A task's own failure is not a log line: it comes back through its future.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    cluster = None
    if scheduler is None:
        import os

        n = workers or os.cpu_count() or 1
        environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}
        # read when the scheduler and each nanny are made; a nanny hands them to its worker, also on a restart
        with _sigint_ignored(), dask.config.set({**environ, **CLUSTER_CONFIG}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as exc:  # no scheduler answers there: the user's address, not a crash
            raise InstanceError(FieldProblem("--scheduler", scheduler, "the address of a running dask scheduler "
                                             f"(tcp://HOST:PORT); none answered there ({exc})"),
                                what="invalid option") from None
    try:
        yield client
    finally:
        with _quiet_dask_logs():
            if cluster is not None:
                try:
                    client.run(_quiet_dask_logs_for_good)
                except Exception:  # noqa: BLE001 - a worker already gone needs no quieting
                    pass
            client.close()
            if cluster is not None:
                cluster.close()


@contextmanager
def _sigint_ignored():
    """SIGINT ignored while the block starts processes (which inherit it); restored after. A no-op off the main
    thread (signal handlers can only be set there)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


_DASK_LOGGERS = ("distributed", "tornado", "asyncio")


@contextmanager
def _quiet_dask_logs():
    loggers = [logging.getLogger(name) for name in _DASK_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _quiet_dask_logs_for_good() -> None:
    """Run on each worker just before the cluster closes it."""
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
