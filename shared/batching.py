"""Group commit: the writes that concurrent callers ask for meanwhile, in one round trip.

Every caller waits for its own write (an ingest request for its events' commit and
Kafka ack, a delivery send for its hand-off mark or its outcome), but while writes are
on their way the next ones queue up and then go together: with many callers in flight,
one round trip serves several of them instead of one each.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


class Batched(Generic[Item, Result]):
    """``await batched.submit(item)``: ``flush`` runs on everything submitted while the
    previous flushes ran, at most ``in_flight`` flushes at a time, and each caller gets
    its item's result. A caller who finds nothing waiting and room for a flush runs its
    own at once, without a hand-over to another task (one event loop turn less).

    ``flush`` takes a batch and returns one result per item, in order, all or nothing
    (one round trip, one transaction); its error reaches every caller of the batch. A
    batch that fails with one of the ``alone`` errors (those an item's data can cause)
    is tried again item by item, so that one bad item fails alone.

    A batch takes waiting items until their ``weight`` (one each unless given) would
    pass ``max_weight``; it always takes at least one.
    """

    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        alone: tuple[type[Exception], ...] = (),
        in_flight: int = 1,
        max_weight: int = 256,
        weight: Callable[[Item], int] | None = None,
    ) -> None:
        self._flush = flush
        self._alone = alone
        self._in_flight = in_flight
        self._max_weight = max_weight
        self._weight = weight
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._busy = 0  # flushes under way: callers' own, and the drains'
        self._drains: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        if not self._queue and self._busy < self._in_flight:
            self._busy += 1
            try:
                [result] = await self._flush([item])
                return result
            finally:
                self._busy -= 1
                self._start_drain()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start_drain()
        return await future

    def _start_drain(self) -> None:
        """A task flushes what waits, batch after batch, once there is room for it."""
        if self._queue and self._busy < self._in_flight:
            self._busy += 1
            drain = asyncio.get_running_loop().create_task(self._drain())
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._run(self._take())
        finally:
            self._busy -= 1
            if not self._busy:  # cancelled: nobody flushes the rest now
                for _, future in self._queue:
                    future.cancel()
                self._queue.clear()

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """The next batch off the queue: at least one item, then up to ``max_weight``."""
        if self._weight is None:
            size = self._max_weight
        else:
            size, total = 1, self._weight(self._queue[0][0])
            for item, _ in itertools.islice(self._queue, 1, None):
                total += self._weight(item)
                if total > self._max_weight:
                    break
                size += 1
        batch = self._queue[:size]
        del self._queue[:size]
        return batch

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1 or not isinstance(exc, self._alone):
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            log.warning(
                "a batch of %d writes failed (%r); writing them one by one", len(batch), exc
            )
            for one in batch:
                await self._run([one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(result)
