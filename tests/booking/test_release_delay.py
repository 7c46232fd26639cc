"""The release delay: seats a cancelled booking of a service with ``release_delay_minutes``
gave up are not offered (nor holdable) before the delay has passed, neither from Redis nor
after a rebuild from SQL; the release job gives them back once, however many run it. With a
delay of 0 (every ordinary demo service) they are free at once and nothing extra is written.
Real SQL (SQLite and PostgreSQL) and the tests' Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.errors import SlotFull
from scheduler.booking.holds import plan_visit
from scheduler.clock import ManualClock
from tests.booking.test_seed import DEMO, nth_line, replace_in_table, seed_error

SERVICE = "reisepass-beantragen"  # 30 minutes' release delay in the demo
START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # Monday 11:00 in Berlin
AGENT = Actor(key_id="agent1", role="agent")
STAFF = Actor(key_id="staff1", role="staff")
CITIZEN = Actor()


def render(_: object) -> bytes:
    return b"{}"


async def book(core: Core, n: int, service: str = SERVICE, start: datetime = START) -> str:
    """A phone booking (no opt-in to wait for)."""
    view, _ = await core.bookings.book(
        [service], start, 1,
        BookingRequest(Person(f"Person {n}", phone=f"0391 12345{n:02d}"), channel="phone"),
        AGENT, None, render,
    )  # fmt: skip
    assert view is not None
    assert view.status == "confirmed"
    return view.id


async def free_at(core: Core, start: datetime = START, service: str = SERVICE) -> int:
    day = start.astimezone(core.catalog.locations["rathaus"].tz).date()
    _, rows = await core.free_starts(service, day, day, core.clock.now(), channel="phone")
    return next((free for s, _e, free in rows if s == start), 0)


async def holdable(core: Core, start: datetime = START, service: str = SERVICE) -> bool:
    visit = plan_visit(core.catalog, [service], start, 1, core.clock.now(), channel="phone")
    try:
        hold = await core.reservations.hold(
            visit, "phone", core.clock.now(), core.hold_seconds, claimed=False
        )
    except SlotFull:
        return False
    await core.reservations.release(hold.hold_id)
    return True


async def state(core: Core) -> tuple[int, int]:
    """Seats booked in SQL at START, and the holdback rows."""
    async with core.sessions() as session:
        booked = await session.scalar(
            select(func.coalesce(func.sum(m.Slot.booked), 0)).where(m.Slot.starts_at == START)
        )
        holdbacks = await session.scalar(select(func.count()).select_from(m.SeatHoldback))
    return int(booked or 0), int(holdbacks or 0)


async def fill(core: Core) -> list[str]:
    """Both counter rooms at START: the passport's smaller pool is full."""
    ids = [await book(core, n) for n in range(2)]
    assert await free_at(core) == 0
    return ids


async def test_a_cancelled_seat_waits_for_the_delay(core: Core, clock: ManualClock) -> None:
    first, _ = await fill(core)
    await core.bookings.cancel(first, CITIZEN)
    # still taken in SQL (2 bookings x clerk and room); 30 minutes: 2 cells x 2 calendars held
    assert await state(core) == (4, 4)
    assert await free_at(core) == 0
    assert not await holdable(core)
    await core.rebuild_counters()  # a reconcile from SQL counts the held-back seats too
    assert await free_at(core) == 0
    assert not await holdable(core)
    clock.advance(timedelta(minutes=29, seconds=59))
    assert await core.release_holdbacks() == 0
    assert await free_at(core) == 0
    clock.advance(timedelta(seconds=1))
    assert await core.release_holdbacks() == 4  # a clerk's and a room's two cells
    assert await state(core) == (2, 0)
    assert await free_at(core) == 1
    assert await holdable(core)
    assert await core.release_holdbacks() == 0  # nothing twice
    await core.rebuild_counters()
    assert await free_at(core) == 1


async def test_two_job_workers_release_each_seat_once(core: Core, clock: ManualClock) -> None:
    ids = await fill(core)
    for booking_id in ids:
        await core.bookings.cancel(booking_id, CITIZEN)
    clock.advance(timedelta(minutes=31))
    released = await asyncio.gather(*(core.release_holdbacks() for _ in range(4)))
    assert sum(released) == 8
    assert await state(core) == (0, 0)
    assert await free_at(core) == 2  # not more than the rooms there are
    await core.rebuild_counters()
    assert await free_at(core) == 2


async def test_without_a_delay_the_seat_is_free_at_once(core: Core) -> None:
    ids = [await book(core, n, service="hund-anmelden") for n in range(3)]
    assert await free_at(core, service="hund-anmelden") == 0
    await core.bookings.cancel(ids[0], CITIZEN)
    assert await free_at(core, service="hund-anmelden") == 1
    assert await holdable(core, service="hund-anmelden")
    assert (await state(core))[1] == 0  # no holdback row written


async def test_staff_cancellations_release_at_once(core: Core) -> None:
    first, _ = await fill(core)
    await core.bookings.cancel(first, STAFF)
    assert await free_at(core) == 1
    assert (await state(core))[1] == 0


async def test_a_move_holds_back_the_old_seats(core: Core, clock: ManualClock) -> None:
    first, _ = await fill(core)
    later = START - timedelta(hours=1)
    await core.bookings.move(first, CITIZEN, "phone", start=later)
    assert await free_at(core) == 0  # the old time is not offered again yet
    clock.advance(timedelta(minutes=30))
    await core.release_holdbacks()
    assert await free_at(core) == 1


async def test_a_closure_meanwhile_keeps_the_seat_closed(core: Core, clock: ManualClock) -> None:
    first, _ = await fill(core)
    await core.bookings.cancel(first, CITIZEN)
    async with core.sessions() as session, session.begin():
        session.add(
            m.Closure(
                location_id="rathaus", calendar_id=None, starts_at=START,
                ends_at=START + timedelta(hours=1), reason="Betriebsversammlung", source="api",
            )
        )  # fmt: skip
    clock.advance(timedelta(minutes=30))
    assert await core.release_holdbacks() == 4
    async with core.sessions() as session:
        rows = list(
            await session.execute(
                select(m.Slot.capacity, m.Slot.booked).where(
                    m.Slot.starts_at == START, m.Slot.booked > 0
                )
            )
        )
    assert all(capacity == booked for capacity, booked in rows)  # freed seat left with it


@pytest.mark.parametrize("minutes", [0, 30])
async def test_free_seats_after_the_job_match_sql(
    core: Core, clock: ManualClock, minutes: int
) -> None:
    """Whatever the delay, once the job ran Redis and a rebuild from SQL agree."""
    ids = await fill(core)
    await core.bookings.cancel(ids[1], CITIZEN)
    clock.advance(timedelta(minutes=minutes))
    await core.release_holdbacks()
    from_redis = await free_at(core)
    await core.rebuild_counters()
    assert await free_at(core) == from_redis == (1 if minutes >= 30 else 0)


def test_seed_refuses_a_release_delay_out_of_range() -> None:
    for value in ("-5", "20000"):
        text = replace_in_table(
            DEMO, "services", 4, "release_delay_minutes", f"release_delay_minutes = {value}"
        )
        message = seed_error(text)
        assert "services[4].release_delay_minutes (id = 'reisepass-beantragen')" in message
        assert f"line {nth_line(text, 'services', 4, 'release_delay_minutes')}" in message
