"""A process reads its own writes: the change feed's notice comes a moment after a script ran,
so every write forgets the location's remembered counter version at once."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.booking.core import Core

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
