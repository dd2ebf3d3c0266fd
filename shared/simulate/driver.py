"""The campaign simulator's driver: prospects arriving at a rate, each one its own task.

Arrivals follow a Poisson process whose gaps come from the seed, so a run with the same
seed starts the same prospects in the same order; every decision of a prospect comes
from the seed and its index (:mod:`shared.simulate.plan`), whatever the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from shared.settings import Settings

from .api import Api
from .maildir import Mailbox
from .plan import plan_prospect
from .profile import Profile
from .prospect import Context, Prospect
from .stats import Stats

GRACE_S = 5.0
"""When ``duration`` ends: how long in-flight prospects get to finish their current step."""
PROGRESS_EVERY_S = 0.25
MAILDIR_POLL_S = 0.5


async def _sleep_until(deadline: float, stop: asyncio.Event) -> bool:
    """Wait until the monotonic ``deadline`` unless ``stop`` is set first; True if not stopped."""
    left = deadline - time.monotonic()
    if left > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), left)
    return not stop.is_set()


async def _ticker(stats: Stats, progress: Callable[[Stats], None]) -> None:
    while True:
        progress(stats)
        await asyncio.sleep(PROGRESS_EVERY_S)


async def simulate(
    settings: Settings,
    *,
    prospects: int,
    rate: float,
    seed: int,
    personas: list[str] | None,
    duration: float | None,
    ingest_url: str,
    write_key: str,
    maildir: Path | None,
    profile: Profile,
    progress: Callable[[Stats], None] | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Stats:
    """Run ``prospects`` simulated prospects against ingest; returns what they did.

    Prospects arrive at ``rate`` per second, at most ``profile.concurrency`` in flight.
    With ``maildir`` (the mail capture's Maildir), they react to the emails delivered to
    them; without it they stop after the lead and their conversions. ``duration``
    (seconds) ends the run early: no new prospects, in-flight ones get ``GRACE_S`` to
    finish. ``run_id`` names the prospects (``sim-<run_id>-<index>``; random when not
    given), ``now`` fixes the clock that time-zone traits with ``awake_hours`` look at;
    ``transport`` replaces the network (tests).
    Never raises for a failed request: errors are counted in the returned stats.
    """
    unknown = sorted(set(personas or ()) - set(profile.personas))
    if unknown:
        raise ValueError(
            f"unknown persona(s) {', '.join(unknown)}; the profile has "
            f"{', '.join(profile.personas)}"
        )
    if rate <= 0:
        raise ValueError("rate must be positive")
    run_id = run_id or secrets.token_hex(4)
    now = now or datetime.now(UTC)
    stats = Stats(prospects=prospects)
    stop = asyncio.Event()
    limits = httpx.Limits(
        max_connections=min(profile.concurrency, 256), max_keepalive_connections=64
    )
    headers = {"User-Agent": "trayecto-simulator/0.1"}
    background: list[asyncio.Task[None]] = []
    tasks: set[asyncio.Task[None]] = set()
    mailbox: Mailbox | None = None
    if maildir is not None:
        mailbox = Mailbox(maildir, MAILDIR_POLL_S)
        mailbox.skip_existing()
        background.append(asyncio.create_task(mailbox.run()))
    if progress is not None:
        background.append(asyncio.create_task(_ticker(stats, progress)))
    timer = None
    if duration is not None:
        timer = asyncio.get_running_loop().call_later(max(duration, 0.0), stop.set)
    client = httpx.AsyncClient(timeout=15.0, limits=limits, headers=headers, transport=transport)
    async with client:
        api = Api(
            client,
            stats,
            ingest_url=ingest_url,
            write_key=write_key,
            public_url=settings.public_url,
        )
        ctx = Context(api, profile, seed, stats, stop, mailbox)
        slots = asyncio.Semaphore(profile.concurrency)
        arrivals = random.Random(f"{seed}:arrivals")
        due = time.monotonic()
        try:
            for index in range(prospects):
                if index:
                    due += arrivals.expovariate(rate)
                if not await _sleep_until(due, stop):
                    break
                await slots.acquire()
                if stop.is_set():
                    slots.release()
                    break
                plan = plan_prospect(
                    profile, seed=seed, index=index, run_id=run_id, personas=personas, now=now
                )
                task = asyncio.create_task(Prospect(ctx, plan).run())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: slots.release())
            await _finish(tasks, stop)
        finally:
            if timer is not None:
                timer.cancel()
            stop.set()
            for task in [*tasks, *background]:
                task.cancel()
            await asyncio.gather(*tasks, *background, return_exceptions=True)
            stats.ended_at = time.monotonic()
            if progress is not None:
                progress(stats)
    return stats


async def _finish(tasks: set[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for every prospect; once ``stop`` is set, ``GRACE_S`` more at most."""
    if not tasks:
        return
    stopped: asyncio.Task[object] = asyncio.create_task(stop.wait())
    try:
        pending: set[asyncio.Task[object]] = set(tasks)
        while pending and not stop.is_set():
            _, pending = await asyncio.wait(
                pending | {stopped}, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(stopped)
        if pending:
            await asyncio.wait(pending, timeout=GRACE_S)
    finally:
        stopped.cancel()
