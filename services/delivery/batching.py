"""Group commit: the writes that concurrent sends ask for meanwhile, in one round trip.

Every send waits for its own write as before (a hand-off mark is committed before its
DATA starts; a send's outcome is recorded before the send counts as done), but while
writes are on their way to PostgreSQL the next ones queue up and then go together:
with many sends in flight, one round trip serves several of them instead of one each.
"""

from __future__ import annotations

import asyncio
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
    """

    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        alone: tuple[type[Exception], ...] = (),
        in_flight: int = 1,
        max_batch: int = 256,
    ) -> None:
        self._flush = flush
        self._alone = alone
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._busy = 0  # flushes under way: callers' own, and the drain's
        self._drain_task: asyncio.Task[None] | None = None

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
        """One task flushes what waits, batch after batch, once there is room for it."""
        if self._queue and self._drain_task is None and self._busy < self._in_flight:
            self._busy += 1
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._run(batch)
        finally:
            self._busy -= 1
            self._drain_task = None
            if not self._busy:  # cancelled: nobody flushes the rest now
                for _, future in self._queue:
                    future.cancel()
                self._queue.clear()

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
