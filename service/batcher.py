"""Adaptive batching of model prompts inside one worker process.

Every prompt, from HTTP, gRPC or annotation assist, is submitted here as a
Python object and awaited. One dispatcher task hands queued prompts to the
model in batches, one batch at a time, in a dedicated thread:

- The model never idles while prompts wait. When a batch ends, the next one
  starts at once with up to `max_batch_size` of the queued prompts, so batch
  size follows the load: one prompt at a time for a lone client, full batches
  under concurrency. A lone prompt waits for nothing.
- A prompt still queued `max_latency_ms` after it arrived fails with
  `QueueTimeout` at that moment, instead of starting late (the service
  answers 503). A prompt whose batch has started is not timed out here.
- A prompt whose caller gave up (timeout, disconnect) is dropped before its
  batch starts, so it costs the model nothing.

The service used BentoML's batchable API for this before. BentoML serves such
an API as an HTTP route, and the service reached it through BentoML's
in-process HTTP client: each prompt paid for JSON encoding, an ASGI round trip
and a dispatcher that polls every millisecond while a batch runs. Profiled on
the smallest test model, that cost about 29 ms per prompt (docs/benchmarks.md,
"Serving"). Here a prompt costs one queue append and one future.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger("mllm_classify.batcher")

ItemT = TypeVar("ItemT")
OutputT = TypeVar("OutputT")


class QueueTimeout(RuntimeError):
    """A prompt waited longer than the batcher's max latency before its batch could start."""

    def __init__(self, waited_s: float, max_latency_s: float) -> None:
        super().__init__(f"waited {waited_s:.3f} s for a batch, above the limit of {max_latency_s:g} s")
        self.waited_s = waited_s
        self.max_latency_s = max_latency_s


class BatcherClosed(RuntimeError):
    """The batcher was closed before this prompt's batch started."""


@dataclass
class _Job(Generic[ItemT, OutputT]):
    item: ItemT
    future: asyncio.Future[OutputT]
    enqueued_at: float
    deadline: asyncio.TimerHandle | None = None


class AdaptiveBatcher(Generic[ItemT, OutputT]):
    """Merge items submitted by concurrent coroutines into calls of `run_batch`.

    `run_batch` takes a list of items and returns one output per item, in
    order. It runs in the batcher's own thread, so it may block; an exception
    it raises fails every item of that batch and no other.
    """

    def __init__(
        self,
        run_batch: Callable[[list[ItemT]], Sequence[OutputT]],
        max_batch_size: int,
        max_latency_s: float,
        name: str = "model",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_latency_s <= 0:
            raise ValueError(f"max_latency_s must be positive, got {max_latency_s}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_s
        self.name = name

        self._queue: deque[_Job[ItemT, OutputT]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batcher-{name}")
        self._closed = False

    async def submit(self, item: ItemT) -> OutputT:
        """Queue one item and return its output once its batch has run."""
        if self._closed:
            raise BatcherClosed(f"the {self.name} batcher is closed")
        loop = asyncio.get_running_loop()
        if self._dispatcher is None:
            # Created on first use, so the task and the event belong to the
            # loop the server runs requests on.
            self._wakeup = asyncio.Event()
            self._dispatcher = loop.create_task(self._dispatch_forever(), name=f"batcher-{self.name}")

        job: _Job[ItemT, OutputT] = _Job(item, loop.create_future(), time.monotonic())
        job.deadline = loop.call_later(self.max_latency_s, self._expire, job)
        self._queue.append(job)
        assert self._wakeup is not None
        self._wakeup.set()
        # Cancelling the caller cancels this future too; the dispatcher then
        # skips the job.
        return await job.future

    async def close(self, grace_s: float = 30.0) -> None:
        """Fail queued items with BatcherClosed, give a running batch `grace_s` to finish, and stop."""
        self._closed = True
        self._fail_queued(BatcherClosed(f"the {self.name} batcher closed before this item's batch started"))
        if self._dispatcher is not None:
            assert self._wakeup is not None
            self._wakeup.set()
            try:
                await asyncio.wait_for(self._dispatcher, timeout=grace_s)
            except TimeoutError:
                logger.warning("the %s batcher's last batch ran past %g s of grace and its items failed", self.name, grace_s)
        # A batch cut off by the grace period still finishes in the thread, and its outputs are discarded.
        self._executor.shutdown(wait=False)

    # -- dispatcher ---------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue

            jobs = self._take_batch()
            if not jobs:
                continue

            try:
                outputs = await loop.run_in_executor(self._executor, self.run_batch, [job.item for job in jobs])
                if len(outputs) != len(jobs):
                    raise RuntimeError(f"run_batch returned {len(outputs)} outputs for {len(jobs)} items")
            except asyncio.CancelledError:
                self._fail(jobs, BatcherClosed(f"the {self.name} batcher closed while this item's batch ran"))
                raise
            except Exception as error:  # noqa: BLE001 - handed to the callers of this batch
                self._fail(jobs, error)
                continue

            for job, output in zip(jobs, outputs, strict=True):
                if not job.future.done():
                    job.future.set_result(output)

    def _expire(self, job: _Job[ItemT, OutputT]) -> None:
        # Runs on the loop, so it cannot race with _take_batch, which cancels
        # a taken job's timer. The service logs the 503 with the request id.
        if job.future.done():
            return
        job.future.set_exception(QueueTimeout(time.monotonic() - job.enqueued_at, self.max_latency_s))

    def _take_batch(self) -> list[_Job[ItemT, OutputT]]:
        """Pop up to max_batch_size live jobs, failing those past the deadline."""
        now = time.monotonic()
        jobs: list[_Job[ItemT, OutputT]] = []
        while self._queue and len(jobs) < self.max_batch_size:
            job = self._queue.popleft()
            if job.deadline is not None:
                job.deadline.cancel()
            # A timer due in this loop iteration may not have run yet.
            if now - job.enqueued_at > self.max_latency_s:
                self._expire(job)
            if not job.future.done():
                jobs.append(job)
        return jobs

    @staticmethod
    def _fail(jobs: Sequence[_Job[ItemT, OutputT]], error: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)

    def _fail_queued(self, error: BaseException) -> None:
        while self._queue:
            job = self._queue.popleft()
            if job.deadline is not None:
                job.deadline.cancel()
            if not job.future.done():
                job.future.set_exception(error)
