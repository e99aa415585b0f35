"""Micro-batching: requests that arrive together share one model call, run off the event loop.

One asyncio task collects queued jobs until they hold ``max_batch`` inputs or the first of them has waited
``max_wait_ms``, runs the batch in a single worker thread (PyTorch and ONNX Runtime release the GIL, so the event
loop keeps serving), then hands each job its rows. :meth:`MicroBatcher.close` refuses new jobs and finishes
every queued one before it returns (graceful shutdown).
"""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

RunBatch = Callable[[list[Any]], Sequence[Any]]
OnBatch = Callable[[int, float], None]


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new jobs."""


@dataclass
class _Job:
    items: list[Any]
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Batches the inputs of concurrent :meth:`submit` calls into calls of ``run_batch(items) -> rows``.

    Args:
        run_batch: the model call (runs in the worker thread); returns one row per item, in order.
        max_batch: most items per call. A job never splits: one larger than ``max_batch`` runs alone.
        max_wait_ms: how long the oldest queued job waits for others before its batch runs.
        on_batch: called with (items, seconds) after each model call (metrics).
    """

    def __init__(self, run_batch: RunBatch, max_batch: int = 32, max_wait_ms: float = 5.0,
                 on_batch: OnBatch | None = None) -> None:
        self.run_batch, self.max_batch, self.max_wait = run_batch, max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._jobs: collections.deque[_Job] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._current: list[_Job] = []

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the collecting task on the running event loop (idempotent)."""
        if self.running:
            return
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="transferkit-model")
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="transferkit-batcher")

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` in the model thread, between batches (warm-up)."""
        if self._executor is None:
            raise BatcherClosed("the batcher is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def submit(self, items: list[Any]) -> list[Any]:
        """The rows for ``items``, once their batch has run (raises what the model call raised)."""
        if self._closing or not self.running:
            raise BatcherClosed("the server is shutting down")
        job = _Job(list(items), asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._arrived.set()
        return await job.future

    async def close(self) -> None:
        """Take no new jobs, run every queued one, stop the task and the worker thread."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _loop(self) -> None:
        try:
            while True:
                while not self._jobs:
                    if self._closing:
                        return
                    self._arrived.clear()
                    await self._arrived.wait()
                await self._collect(self._current)
                await self._run(self._current)
                self._current = []
        finally:  # only when cancelled: nobody may wait forever
            for job in [*self._current, *self._jobs]:
                if not job.future.done():
                    job.future.set_exception(BatcherClosed("the server stopped before this request ran"))
            self._jobs.clear()

    async def _collect(self, batch: list[_Job]) -> None:
        """Move the next batch into ``batch``: queued jobs in order, waiting up to ``max_wait`` after the first
        one's arrival for more (not at all while closing)."""
        batch.append(self._jobs.popleft())
        n = len(batch[0].items)
        deadline = batch[0].arrived + self.max_wait
        while n < self.max_batch:
            if self._jobs:
                if n + len(self._jobs[0].items) > self.max_batch:
                    break
                job = self._jobs.popleft()
                batch.append(job)
                n += len(job.items)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass

    async def _run(self, batch: list[_Job]) -> None:
        batch = [j for j in batch if not j.future.done()]  # callers that went away (disconnects)
        items = [it for j in batch for it in j.items]
        if not items:
            return
        t0 = time.perf_counter()
        try:
            rows = await asyncio.get_running_loop().run_in_executor(self._executor, self.run_batch, items)
            if len(rows) != len(items):
                raise RuntimeError(f"the model returned {len(rows)} rows for {len(items)} inputs")
        except Exception as e:  # noqa: BLE001 - every waiting caller gets the model's error
            for j in batch:
                if not j.future.done():
                    j.future.set_exception(e)
            return
        if self.on_batch is not None:
            self.on_batch(len(items), time.perf_counter() - t0)
        start = 0
        for j in batch:
            end = start + len(j.items)
            if not j.future.done():
                j.future.set_result(list(rows[start:end]))
            start = end
