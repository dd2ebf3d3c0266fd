"""Group commit of the delivery writes: batches, results per caller, failures, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.batching import Batched


class _BadItem(Exception):
    pass


class _Store:
    """A flush that records its batches, takes a while, and refuses negative items."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.running_at_start: list[int] = []  # flushes running as each one starts
        self.started = asyncio.Event()

    async def flush(self, items: Sequence[int]) -> list[int]:
        self.running += 1
        self.running_at_start.append(self.running)
        self.most_running = max(self.most_running, self.running)
        self.started.set()
        try:
            await asyncio.sleep(0.01)
            if any(item < 0 for item in items):
                raise _BadItem(f"negative item in {list(items)}")
            self.batches.append(list(items))
            return [item * 10 for item in items]
        finally:
            self.running -= 1


async def _flushing(store: _Store) -> None:
    await store.started.wait()


async def test_writes_submitted_during_a_flush_go_together_and_each_caller_gets_its_own() -> None:
    store = _Store()
    batched = Batched(store.flush)
    first = asyncio.ensure_future(batched.submit(1))
    await _flushing(store)
    rest = await asyncio.gather(*(batched.submit(n) for n in range(2, 8)))
    assert [await first, *rest] == [n * 10 for n in range(1, 8)]
    assert store.batches == [[1], [2, 3, 4, 5, 6, 7]]  # the rest waited for it, then together
    assert store.most_running == 1


async def test_at_most_in_flight_flushes_at_a_time() -> None:
    store = _Store()
    batched = Batched(store.flush, in_flight=2)
    first = [asyncio.ensure_future(batched.submit(n)) for n in (1, 2)]
    await _flushing(store)
    later = [asyncio.ensure_future(batched.submit(n)) for n in range(3, 9)]
    assert await asyncio.gather(*first, *later) == [n * 10 for n in range(1, 9)]
    assert store.most_running == 2
    assert sorted(n for batch in store.batches for n in batch) == list(range(1, 9))
    assert len(store.batches) < 8


async def test_a_bad_item_fails_alone_and_the_rest_of_its_batch_is_written() -> None:
    store = _Store()
    batched = Batched(store.flush, alone=(_BadItem,))
    first = asyncio.ensure_future(batched.submit(1))
    await _flushing(store)
    rest = [asyncio.ensure_future(batched.submit(n)) for n in (2, -3, 4)]
    assert await first == 10
    done = await asyncio.gather(*rest, return_exceptions=True)
    assert done[0] == 20
    assert done[2] == 40
    assert isinstance(done[1], _BadItem)
    assert store.batches == [[1], [2], [4]]  # the batch of three failed, then one by one


async def test_any_other_failure_reaches_every_caller_of_the_batch() -> None:
    store = _Store()
    batched = Batched(store.flush)  # _BadItem is not an item's error here
    first = asyncio.ensure_future(batched.submit(1))
    await _flushing(store)
    rest = [asyncio.ensure_future(batched.submit(n)) for n in (2, -3)]
    assert await first == 10
    for outcome in await asyncio.gather(*rest, return_exceptions=True):
        assert isinstance(outcome, _BadItem)
    assert await batched.submit(5) == 50  # and the next writes go on


async def test_a_caller_that_gives_up_does_not_stop_the_others() -> None:
    store = _Store()
    batched = Batched(store.flush)
    first = asyncio.ensure_future(batched.submit(1))
    await _flushing(store)
    impatient = asyncio.ensure_future(batched.submit(2))
    patient = asyncio.ensure_future(batched.submit(3))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await first == 10
    assert await patient == 30
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_batch_stops_before_its_weight_passes_the_cap_and_takes_at_least_one() -> None:
    store = _Store()
    batched = Batched(store.flush, max_weight=10, weight=lambda item: item)
    first = asyncio.ensure_future(batched.submit(1))
    await _flushing(store)
    rest = [asyncio.ensure_future(batched.submit(n)) for n in (4, 5, 2, 12, 3)]
    assert await asyncio.gather(first, *rest) == [10, 40, 50, 20, 120, 30]
    # 4+5 fits and 4+5+2 would pass 10; 2+12 would too; 12 alone passes it, but a
    # batch takes at least one item
    assert store.batches == [[1], [4, 5], [2], [12], [3]]


async def test_waiting_writes_use_every_flush_slot_under_sustained_load() -> None:
    store = _Store()
    batched = Batched(store.flush, in_flight=2, max_weight=2)
    own = [asyncio.ensure_future(batched.submit(n)) for n in (0, 1)]
    await _flushing(store)
    waiting = [asyncio.ensure_future(batched.submit(n)) for n in range(2, 14)]
    await asyncio.gather(*own, *waiting)
    assert sorted(n for batch in store.batches for n in batch) == list(range(14))
    assert max(len(batch) for batch in store.batches) == 2
    # once the callers' own flushes are done, the waiting batches go two at a time
    assert store.running_at_start[2:].count(2) >= 3
    assert store.most_running == 2
