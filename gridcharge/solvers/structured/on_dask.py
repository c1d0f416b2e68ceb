"""Partitions of :mod:`.partition` as dask actors: each partition's blocks stay resident on one worker across the
iterations, and only its contributions and the top rows' steps travel. A partition whose worker is lost is re-created
from its slice of the LP on a worker still there and brought back to the state of the call that failed (its last
factorisation and right side are replayed, which gives the same numbers); when that fails too, :class:`WorkerLost`.
"""

from __future__ import annotations

from .partition import PartWorker

#: Attempts per call of a partition before the solve is abandoned with :class:`WorkerLost` [-].
ATTEMPTS = 3


class WorkerLost(RuntimeError):
    """A partition could not be run on any worker of the cluster."""


class DaskExecutor:
    """The :class:`~.partition.InProcess` interface (``start``, ``map``, ``close``) on a ``dask.distributed.Client``.
    Partitions go to the workers round robin in address order."""

    def __init__(self, client):
        self.client = client
        self.actors: list = []
        self.futures: list = []  # an actor lives as long as the future that made it

    def start(self, parts: list, delta: float, threads: int) -> None:
        self.parts, self.delta, self.threads = parts, delta, threads
        self.replay: list = [[] for _ in parts]  # per partition, the calls since its last factor
        self.futures = [None] * len(parts)
        self.actors = [self._create(p, p) for p in range(len(parts))]

    def _workers(self) -> list:
        return sorted(self.client.scheduler_info().get("workers", {}))

    def _create(self, p: int, slot: int):
        workers = self._workers()
        if not workers:
            raise WorkerLost("the dask cluster has no workers left")
        future = self.client.submit(PartWorker, self.parts[p], self.delta, self.threads, actor=True, pure=False,
                                    workers=[workers[slot % len(workers)]])
        actor = future.result()
        self.futures[p] = future
        return actor

    def map(self, method: str, args: list) -> list:
        futures = [self._call(actor, method, a) for actor, a in zip(self.actors, args)]
        out = []
        for p, (future, a) in enumerate(zip(futures, args)):
            try:
                if isinstance(future, Exception):
                    raise future
                out.append(future.result())
            except Exception as exc:  # noqa: BLE001 - a lost worker shows as any of dask's comm errors
                out.append(self._retry(p, method, a, exc))
            if method == "factor":
                self.replay[p] = [("factor", a)]
            elif method == "forward":
                self.replay[p] = self.replay[p][:1] + [("forward", a)]
        return out

    @staticmethod
    def _call(actor, method: str, a: tuple):
        """The call's future, or the exception of an actor already known lost."""
        try:
            return getattr(actor, method)(*a)
        except Exception as exc:  # noqa: BLE001 - see map
            return exc

    def _retry(self, p: int, method: str, a: tuple, error: Exception):
        for attempt in range(ATTEMPTS - 1):
            try:
                actor = self._create(p, p + attempt + 1)
                for name, earlier in self.replay[p] if method != "factor" else []:
                    if name == "forward" and method == "forward":
                        continue
                    getattr(actor, name)(*earlier).result()
                result = getattr(actor, method)(*a).result()
            except Exception as exc:  # noqa: BLE001 - see map
                error = exc
                continue
            self.actors[p] = actor
            return result
        raise WorkerLost(f"partition {p} of the district could not be run on the dask cluster: {error}") from error

    def close(self) -> None:
        self.actors, self.futures = [], []
