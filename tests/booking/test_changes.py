"""A process reads its own writes: the change feed's notice comes a moment after a script ran,
so every write forgets the location's remembered counter version at once."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from redis.asyncio import Redis

from scheduler.booking.changes import ChangeFeed
from scheduler.booking.core import Core
from scheduler.redisconn import connect
from scheduler.redisproc import RedisServer

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin


async def remembered(core: Core) -> int:
    """Pretend the feed is live but silent (its notices late), and remember the version."""
    core.changes.live = True
    version = await core.counters_version("rathaus")
    assert version is not None
    assert core.changes.known("rathaus") == version
    return version


async def test_hold_release_and_free_forget_the_version_at_once(core: Core) -> None:
    await core.rebuild_counters()
    await remembered(core)
    hold = await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    assert core.changes.known("rathaus") is None  # the next read asks Redis
    await remembered(core)
    await core.bookings.release(hold.hold_id)
    assert core.changes.known("rathaus") is None
    await remembered(core)
    await core.rebuild_counters(["rathaus"])
    assert core.changes.known("rathaus") is None


async def test_the_feed_stops_whenever_it_is_stopped(redis_server: RedisServer) -> None:
    """A stop that meets a read's own timeout: the cancellation can be swallowed inside the
    read (asyncio.timeout on Python 3.11), and a feed that only cancelled once then read on
    forever, so the process never shut down (seen once in CI). Reads of 1-3 ms, stopped at
    every moment around their end: each stop returns within seconds and ends the task."""
    redis: Redis = connect(redis_server.url)
    chooser = random.Random(11)
    try:
        for n in range(300):
            feed = ChangeFeed(redis, read_timeout=chooser.choice((0.001, 0.002, 0.003)))
            feed.start()
            task = feed._task
            assert task is not None
            await asyncio.sleep(chooser.uniform(0.0, 0.02))
            stopping = asyncio.create_task(feed.stop())
            await asyncio.wait({stopping}, timeout=2.0)
            if not stopping.done():
                stopping.cancel()  # (cancels the feed's task once more)
                raise AssertionError(f"stop() still waits for the feed after 2 s (stop {n})")
            assert task.done()
            assert not feed.live
    finally:
        await redis.aclose()
