"""Partitions of :mod:`.partition` as dask actors: the partitions are dealt round robin to the workers (in address
order), each worker's share is one actor whose blocks stay resident across the iterations, and only the partitions'
contributions, the top rows' steps and a few scalars travel (one message per worker and round trip). A share whose
worker is lost is re-created from its slices of the LP on a worker still there and brought back to the state of the
call that failed: its iterates live there too, so every state-changing call since the start is replayed in order
(their arguments are top-row-sized; the replay redoes that share's work so far and gives the same numbers); when that
fails too, :class:`WorkerLost`.
"""

from __future__ import annotations

from ..._memory import give_back
from ...errors import SolverError
from .partition import PartWorker

#: Attempts per call of a worker's share before the solve is abandoned with :class:`WorkerLost` [-].
ATTEMPTS = 3
#: How long a re-creation waits for a worker when the cluster has none (a nanny restarting its process) [s].
WORKER_WAIT_S = 60.0


class WorkerLost(SolverError):
    """A share of the partitions could not be run on any worker of the cluster: the solve stops, no result."""


class Share:
    """The partitions one worker holds (an actor): each call is run on every partition, in order."""

    def __init__(self, parts: list, delta: float, threads: int):
        self.workers = [PartWorker(part, delta, threads) for part in parts]
        give_back()  # the received slices' buffers and the set-up's temporaries

    def call(self, method: str, args: list) -> list:
        return [getattr(w, method)(*a) for w, a in zip(self.workers, args)]


class DaskExecutor:
    """The :class:`~.partition.InProcess` interface (``start``, ``map``, ``close``) on a ``dask.distributed.Client``."""

    def __init__(self, client):
        self.client = client
        self.actors: list = []
        self.futures: list = []  # an actor lives as long as the future that made it

    def start(self, parts: list, delta: float, threads: int) -> None:
        self.parts, self.delta, self.threads = parts, delta, threads
        n = max(1, min(len(parts), len(self._workers())))
        self.shares = [list(range(i, len(parts), n)) for i in range(n)]
        self.replay: list = [[] for _ in self.shares]  # per share, every call that changed its state, in order
        # every share sent before any is waited for: a worker sets up its share (its normal equations and iterates)
        # while the next share's slices are cut and sent
        sent = [self._submit(i, i) for i in range(n)]
        self.futures = [future for future, _ in sent]
        self.actors = [future.result() for future in self.futures]
        del sent  # the slices' futures: the workers' data stores let go of them, the actors hold what they need

    def _workers(self) -> list:
        return sorted(self.client.scheduler_info().get("workers", {}))

    def _create(self, i: int, slot: int):
        """Share ``i`` re-created on the worker ``slot`` (modulo the workers there are), its actor once it is set up."""
        future, slices = self._submit(i, slot)
        actor = future.result()
        del slices  # see start
        self.futures[i] = future
        return actor

    def _submit(self, i: int, slot: int):
        """The future of share ``i``'s actor on the worker ``slot`` (modulo the workers there are), and the futures of
        the slices sent for it (held until the actor is made)."""
        workers = self._workers()
        if not workers:
            try:
                self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - dask's timeout error
                raise WorkerLost(f"the dask cluster has had no workers for {WORKER_WAIT_S:g} s") from exc
            workers = self._workers()
        target = [workers[slot % len(workers)]]
        # the slices go to the worker as data, not inside the task: a task's arguments stay with the scheduler (in the
        # coordinator's process for a local cluster) as long as its future, the whole layout's worth for the solve;
        # one at a time, so that the coordinator holds one slice and its serialised copy at once, not a share's
        slices = [self.client.scatter(self.parts[p], workers=target, hash=False) for p in self.shares[i]]
        return self.client.submit(Share, slices, self.delta, self.threads, actor=True, pure=False,
                                  workers=target), slices

    def map(self, method: str, args: list) -> list:
        share_args = [[args[p] for p in share] for share in self.shares]
        futures = [self._call(actor, method, a) for actor, a in zip(self.actors, share_args)]
        out: list = [None] * len(args)
        for i, (future, a) in enumerate(zip(futures, share_args)):
            try:
                if isinstance(future, Exception):
                    raise future
                results = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker shows as any of dask's comm errors
                results = self._retry(i, method, a, exc)
            for p, result in zip(self.shares[i], results):
                out[p] = result
            if method not in PartWorker.READS:
                self.replay[i].append((method, a))
        return out

    @staticmethod
    def _call(actor, method: str, a: list):
        """The call's future, or the exception of an actor already known lost."""
        try:
            return actor.call(method, a)
        except Exception as exc:  # noqa: BLE001 - see map
            return exc

    def _retry(self, i: int, method: str, a: list, error: Exception) -> list:
        try:
            for attempt in range(ATTEMPTS - 1):
                try:
                    actor = self._create(i, i + attempt + 1)
                    for name, earlier in self.replay[i]:
                        actor.call(name, earlier).result()
                    result = actor.call(method, a).result()
                except Exception as exc:  # noqa: BLE001 - see map
                    error = exc
                    continue
                self.actors[i] = actor
                return result
        finally:  # what the slices were cut from again (partition.Lazy) is let go again
            getattr(self.parts, "release", lambda: None)()
        raise WorkerLost(f"partitions {self.shares[i]} of the district could not be run on the dask cluster: "
                         f"{error}") from error

    def close(self) -> None:
        self.actors, self.futures = [], []
