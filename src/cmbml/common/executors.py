"""Where simulation work runs: in this process, in forked worker processes, or on a Dask cluster.

The simulations split their work into jobs (chunks of sample indices) that are pure functions of
``(shared, job)``: every sample draws from a generator seeded by its own index, so a job's result
does not depend on which process, or how many, computed it. :meth:`Executor.map` yields the results
in job order; the files written from them are therefore byte-identical for every executor.

``local`` with ``workers > 1`` forks a process pool that inherits ``shared`` (copy-on-write, never
pickled). ``dask`` sends ``shared`` once to every worker of a ``dask.distributed`` scheduler and keeps
a few jobs per worker in flight, so memory stays bounded on both sides whatever the number of jobs.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

EXECUTORS = ["local", "dask"]
SCHEDULER_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://")


@dataclass(frozen=True)
class ExecutorSpec:
    """What the parameters ask for: ``kind`` (local | dask), the local process count and the Dask scheduler.

    ``scheduler_address`` None means Dask's own configuration (``DASK_SCHEDULER_ADDRESS``)."""

    kind: str = "local"
    workers: int = 1
    scheduler_address: str | None = None

    def resolved_address(self) -> str | None:
        return self.scheduler_address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


class Executor:
    """Maps a function over jobs and yields the results in job order."""

    name = "in-process"

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, jobs: Iterable[Any]) -> Iterator[Any]:
        for job in jobs:
            yield fn(shared, job)


class ForkExecutor(Executor):
    """``workers`` forked processes; ``shared`` is inherited, not pickled (full-sky maps stay in one copy)."""

    def __init__(self, workers: int):
        self.workers = int(workers)
        self.name = f"{self.workers} local processes"

    def map(self, fn, shared, jobs):
        import multiprocessing as mp

        jobs = list(jobs)
        if self.workers < 2 or len(jobs) < 2:
            yield from super().map(fn, shared, jobs)
            return
        _FORKED["call"] = (fn, shared)
        try:
            with mp.get_context("fork").Pool(min(self.workers, len(jobs))) as pool:
                yield from pool.imap(_call_forked, jobs)
        finally:
            _FORKED.clear()


_FORKED: dict[str, tuple[Callable, Any]] = {}


def _call_forked(job):
    fn, shared = _FORKED["call"]
    return fn(shared, job)


class DaskExecutor(Executor):
    """Jobs on a ``dask.distributed`` cluster through ``client``; ``ahead`` jobs per worker in flight."""

    def __init__(self, client, ahead: int = 2):
        self.client, self.ahead = client, int(ahead)
        self.name = f"Dask scheduler {client.scheduler.address}"

    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(self, fn, shared, jobs):
        # A list, so that Dask sends the object itself (it would scatter a dict's values one by one).
        [shared_future] = self.client.scatter([shared], broadcast=True, hash=False)
        jobs = iter(jobs)
        window = self.ahead * self.n_workers()
        pending = deque()

        def submit_next() -> None:
            for job in jobs:
                # pure=False: equal arguments must never be answered from another job's result
                pending.append(self.client.submit(fn, shared_future, job, pure=False))
                return

        try:
            for _ in range(window):
                submit_next()
            while pending:
                future = pending.popleft()
                result = future.result()
                future.release()
                submit_next()
                yield result
        finally:
            for future in pending:
                future.cancel()
            shared_future.release()


@contextlib.contextmanager
def open_executor(spec: ExecutorSpec) -> Iterator[Executor]:
    """The executor of ``spec``, connected (Dask) before any work starts; closed on exit.

    Raises ``ConnectionError`` naming the address when no Dask scheduler answers within Dask's connect
    timeout (``distributed.comm.timeouts.connect``, 30 s unless configured).
    """
    if spec.kind == "local":
        yield ForkExecutor(spec.workers)
        return
    if spec.kind != "dask":
        raise ValueError(f"executor.kind = {spec.kind!r}: allowed {EXECUTORS}")
    address = spec.resolved_address()
    if not address:
        raise ValueError("executor.kind = 'dask' needs executor.scheduler_address or DASK_SCHEDULER_ADDRESS")
    import dask
    from distributed import Client

    try:
        client = Client(address, set_as_default=False)
    except OSError as err:
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        raise ConnectionError(
            f"executor.scheduler_address = {address!r}: no Dask scheduler answered within "
            f"{timeout} ({type(err).__name__})"
        ) from None
    try:
        yield DaskExecutor(client)
    finally:
        client.close()
