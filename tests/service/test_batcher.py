"""The worker's adaptive batcher, driven by a fake model that records its batches."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.batcher import AdaptiveBatcher, BatcherClosed, QueueTimeout


class FakeModel:
    """Doubles each item; `hold` keeps a batch running until the test releases it."""

    def __init__(self, fail_on: int | None = None, wrong_count: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail_on = fail_on
        self.wrong_count = wrong_count

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        self.hold.wait(timeout=10)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"model failed on {self.fail_on}")
        if self.wrong_count:
            return [0]
        return [item * 2 for item in items]


async def start_held_batch(batcher: AdaptiveBatcher, model: FakeModel) -> asyncio.Task:
    """Submit item 0 and return its task once its batch is running and held."""
    model.hold.clear()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.to_thread(model.started.wait, 10)
    return first


def test_lone_item_runs_alone_at_once() -> None:
    model = FakeModel()

    async def main() -> int:
        batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_s=10)
        result = await batcher.submit(21)
        await batcher.close()
        return result

    assert asyncio.run(main()) == 42
    assert model.batches == [[21]]


def test_queued_items_share_next_batch() -> None:
    model = FakeModel()
    async def main() -> list[int]:
        batcher = AdaptiveBatcher(model, max_batch_size=4, max_latency_s=10)
        first = await start_held_batch(batcher, model)
        rest = [asyncio.create_task(batcher.submit(item)) for item in range(1, 7)]
        await asyncio.sleep(0.05)
        model.hold.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10, 12]
    # Batch size follows the queue, capped at max_batch_size, in arrival order.
    assert model.batches == [[0], [1, 2, 3, 4], [5, 6]]


def test_failed_batch_fails_only_its_items() -> None:
    model = FakeModel(fail_on=1)
    async def main() -> tuple[list, int]:
        batcher = AdaptiveBatcher(model, max_batch_size=2, max_latency_s=10)
        first = await start_held_batch(batcher, model)
        failing = [asyncio.create_task(batcher.submit(item)) for item in (1, 2)]
        survivor = asyncio.create_task(batcher.submit(3))
        await asyncio.sleep(0.05)
        model.hold.set()
        outcomes = await asyncio.gather(first, *failing, return_exceptions=True)
        result = await survivor
        await batcher.close()
        return outcomes, result

    outcomes, survivor = asyncio.run(main())
    assert outcomes[0] == 0
    assert all(isinstance(outcome, RuntimeError) and "model failed on 1" in str(outcome) for outcome in outcomes[1:])
    assert survivor == 6
    assert model.batches == [[0], [1, 2], [3]]


def test_cancelled_items_never_reach_the_model() -> None:
    model = FakeModel()
    async def main() -> list[int]:
        batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_s=10)
        first = await start_held_batch(batcher, model)
        cancelled = asyncio.create_task(batcher.submit(1))
        remaining = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.sleep(0.01)
        model.hold.set()
        results = await asyncio.gather(first, remaining)
        await batcher.close()
        return results

    assert asyncio.run(main()) == [0, 4]
    assert model.batches == [[0], [2]]


def test_deadline_fails_queued_items_on_time() -> None:
    model = FakeModel()
    async def main() -> tuple:
        batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_s=0.05)
        first = await start_held_batch(batcher, model)
        late = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.3)
        # The deadline fires while the first batch is still running.
        late_done_before_release = late.done()
        first_done_before_release = first.done()
        model.hold.set()
        outcomes = await asyncio.gather(first, late, return_exceptions=True)
        after = await batcher.submit(5)
        await batcher.close()
        return late_done_before_release, first_done_before_release, outcomes, after

    late_done, first_done, (first, late), after = asyncio.run(main())
    assert late_done
    assert not first_done
    assert first == 0
    assert isinstance(late, QueueTimeout)
    assert 0.05 < late.waited_s < 0.3
    assert after == 10
    assert model.batches == [[0], [5]]


def test_close_finishes_running_batch() -> None:
    model = FakeModel()
    async def main() -> list:
        batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_s=10)
        first = await start_held_batch(batcher, model)
        queued = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.01)
        closing = asyncio.create_task(batcher.close(grace_s=10))
        await asyncio.sleep(0.05)
        model.hold.set()
        await closing
        outcomes = await asyncio.gather(first, queued, return_exceptions=True)
        try:
            await batcher.submit(2)
        except BatcherClosed as error:
            outcomes.append(error)
        return outcomes

    running, queued, after_close = asyncio.run(main())
    assert running == 0
    assert isinstance(queued, BatcherClosed)
    assert isinstance(after_close, BatcherClosed)
    assert model.batches == [[0]]


def test_close_cuts_off_a_batch_past_its_grace() -> None:
    model = FakeModel()
    async def main() -> object:
        batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_s=10)
        first = await start_held_batch(batcher, model)
        await batcher.close(grace_s=0.05)
        model.hold.set()
        return (await asyncio.gather(first, return_exceptions=True))[0]

    assert isinstance(asyncio.run(main()), BatcherClosed)


def test_wrong_output_count_fails_the_batch() -> None:
    model = FakeModel(wrong_count=True)

    async def main() -> None:
        batcher = AdaptiveBatcher(model, max_batch_size=8, max_latency_s=10)
        try:
            await asyncio.gather(batcher.submit(1), batcher.submit(2))
        finally:
            await batcher.close()

    with pytest.raises(RuntimeError, match="returned 1 outputs for 2 items"):
        asyncio.run(main())


def test_many_concurrent_callers_each_get_their_own_output() -> None:
    model = FakeModel()

    async def main() -> list[int]:
        batcher = AdaptiveBatcher(model, max_batch_size=16, max_latency_s=10)
        results = await asyncio.gather(*(batcher.submit(item) for item in range(200)))
        await batcher.close()
        return results

    assert asyncio.run(main()) == [item * 2 for item in range(200)]
    assert max(len(batch) for batch in model.batches) <= 16
    assert len(model.batches) < 200


@pytest.mark.parametrize(("size", "latency"), [(0, 1.0), (4, 0.0)])
def test_rejects_bad_settings(size: int, latency: float) -> None:
    with pytest.raises(ValueError):
        AdaptiveBatcher(FakeModel(), max_batch_size=size, max_latency_s=latency)
