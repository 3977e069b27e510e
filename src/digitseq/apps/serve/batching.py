"""A micro-batcher for an asyncio server: concurrent callers submit single items, a worker task
collects them for a few milliseconds (or until a batch is full), runs one batched call in a
thread off the event loop, and answers each caller's future.

Generic on purpose (no torch here): the server hands it a function that runs the model on a
list of preprocessed images and returns one result per image.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherBusy(Exception):
    """The queue is full: the caller should answer 503 rather than wait without bound."""


@dataclass
class BatchStats:
    """Counters for /healthz and the benchmark: how well batching is working."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    busy_seconds: float = 0.0
    failed_in_a_row: int = 0  # batches whose forward pass raised, since the last one that ran

    def to_dict(self) -> dict:
        mean = self.items / self.batches if self.batches else 0.0
        return {
            "batches": self.batches,
            "items": self.items,
            "mean_batch": round(mean, 2),
            "largest_batch": self.largest,
            "model_seconds": round(self.busy_seconds, 3),
            "failed_in_a_row": self.failed_in_a_row,
        }


class MicroBatcher(Generic[T, R]):
    """Batches items for ``fn(list[T]) -> Sequence[R]`` (one result per item, in order).

    ``max_batch=1`` turns batching off (every item is its own call), for comparison.
    ``fn`` runs on one dedicated thread, so it need not be thread-safe.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 4096,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._items: deque[tuple[T, asyncio.Future]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitseq-model")
        self._task = asyncio.create_task(self._run(), name="digitseq-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._items:  # nobody will answer these any more
            _, fut = self._items.popleft()
            if not fut.done():
                fut.set_exception(BatcherBusy("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- callers -----------------------------------------------------------------------------

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Queue items and wait for their results. Cancelling the caller (a timeout) leaves the
        items to be skipped by the worker, so abandoned work is not computed."""
        if not self.running or self._wakeup is None:
            raise BatcherBusy("the model worker is not running")
        if len(self._items) + len(items) > self.max_queue:
            raise BatcherBusy(f"more than {self.max_queue} images are waiting for the model")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._items.extend(zip(items, futures, strict=True))
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
            for fut in futures:
                fut.cancel()
            raise

    # --- the worker --------------------------------------------------------------------------

    async def _collect(self) -> list[tuple[T, asyncio.Future]]:
        """Wait for a first item, then up to ``max_wait`` for more, at most ``max_batch``.

        Items sit in a deque and an Event only wakes the worker, so a timed-out wait can never
        lose an item (``wait_for(queue.get())`` can, on Python 3.11)."""
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(self._items) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        n = min(self.max_batch, len(self._items))
        return [self._items.popleft() for _ in range(n)]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(x, f) for x, f in await self._collect() if not f.done()]
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [x for x, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"batch function gave {len(results)} results for {len(batch)} items"
                    )
            except Exception as e:  # noqa: BLE001 - handed to every caller of this batch
                self.stats.failed_in_a_row += 1
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            finally:
                self.stats.busy_seconds += time.perf_counter() - start
            self.stats.batches += 1
            self.stats.failed_in_a_row = 0
            self.stats.items += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
