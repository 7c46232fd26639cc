"""The reservation protocol in-process, against the real Redis and both databases: what happens
when SQL refuses after a hold, when holds expire, when Redis is gone, and a model-based test."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import text, update

from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.errors import HoldExpired, ReservationUnavailable, SlotFull
from scheduler.clock import ManualClock
from scheduler.redisproc import RedisServer

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, a Monday
DAY = date(2026, 11, 30)


def citizen(n: int) -> BookingRequest:
    return BookingRequest(Person(f"Person {n}", f"p{n}@example.org"))


async def free_at(core: Core, start: datetime = START) -> int:
    day = start.date()
    _, rows = await core.free_starts("hund-anmelden", day, day, core.clock.now())
    return {s: f for s, _, f in rows}.get(start, 0)


def render(_: object) -> bytes:
    return b"{}"


async def test_sql_refusing_after_a_hold_releases_it(core: Core) -> None:
    """Redis thinks a seat is free, SQL knows better: the confirm fails and the hold's seat comes
    back in Redis (nothing leaks)."""
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Slot)
            .where(m.Slot.starts_at == START, m.Slot.calendar_id.like("sachbearbeitung-%"))
            .values(booked=m.Slot.capacity)
        )
    assert await free_at(core) == 3  # Redis does not know yet
    hold = await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    assert await free_at(core) == 2
    with pytest.raises(SlotFull):
        await core.bookings.confirm(hold.hold_id, citizen(1), Actor(), None, render)
    assert await free_at(core) == 3  # the hold was given back
    async with core.sessions() as session:
        count = await session.scalar(text("SELECT count(*) FROM bookings"))
    assert count == 0


async def test_expired_holds_give_seats_back(core: Core, clock: ManualClock) -> None:
    hold = await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    assert await free_at(core) == 2
    clock.advance(timedelta(seconds=core.hold_seconds + 1))
    assert await core.sweep_holds() == 1
    assert await free_at(core) == 3
    with pytest.raises(HoldExpired):
        await core.bookings.confirm(hold.hold_id, citizen(1), Actor(), None, render)


async def test_the_next_hold_sweeps_expired_ones(core: Core, clock: ManualClock) -> None:
    for _ in range(3):
        await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    with pytest.raises(SlotFull):
        await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    clock.advance(timedelta(seconds=core.hold_seconds + 1))
    # no periodic sweep ran: the hold script itself releases the expired holds first
    await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    assert await free_at(core) == 2


async def test_redis_down_fails_fast_and_reads_fall_back(
    core: Core, redis_server: RedisServer
) -> None:
    booking, _ = await core.bookings.book(
        ["hund-anmelden"], START, 1, citizen(1), Actor(), None, render
    )
    assert booking is not None
    redis_server.kill()
    try:
        with pytest.raises(ReservationUnavailable):
            await core.bookings.hold(["hund-anmelden"], START, 1, "online")
        with pytest.raises(ReservationUnavailable):
            await core.bookings.book(["hund-anmelden"], START, 1, citizen(2), Actor(), None, render)
        assert await free_at(core) == 2  # from SQL
        # a cancel still works (SQL is the truth); Redis is put right by the next reconcile
        cancelled = await core.bookings.cancel(booking.id, Actor())
        assert cancelled.status == "cancelled"
        assert await free_at(core) == 3
    finally:
        redis_server.start()
    # restarted empty: holds wait for the rebuild, then the counters are right again
    with pytest.raises(ReservationUnavailable):
        await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    await core.watch_counters()
    assert await free_at(core) == 3
    await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    assert await free_at(core) == 2


async def test_flushall_keeps_confirmed_bookings(core: Core) -> None:
    for n in range(2):
        await core.bookings.book(["hund-anmelden"], START, 1, citizen(n), Actor(), None, render)
    await core.redis.flushall()
    await core.watch_counters()
    assert await free_at(core) == 1
    await core.bookings.book(["hund-anmelden"], START, 1, citizen(3), Actor(), None, render)
    with pytest.raises(SlotFull):
        await core.bookings.book(["hund-anmelden"], START, 1, citizen(4), Actor(), None, render)


class SeatModel(RuleBasedStateMachine):
    """hold / release / confirm / cancel / expire against a simple model of one slot's seats."""

    core: Core
    clock: ManualClock
    people = 0
    left_bookings: list[str] = []
    left_holds: dict[str, datetime] = {}

    @initialize()
    def setup(self) -> None:
        # start every example from an empty slot: undo what the previous example left
        previous = SeatModel.previous
        for booking_id in previous.bookings if previous else ():
            self.run(self.core.bookings.cancel(booking_id, Actor()))
        for hold_id in previous.holds if previous else ():
            with contextlib.suppress(HoldExpired):
                self.run(self.core.bookings.release(hold_id))
        self.run(self.core.sweep_holds())
        self.start = datetime(2027, 1, 11, 8, 0, tzinfo=UTC)
        self.holds: dict[str, datetime] = {}  # hold id -> expiry
        self.bookings: list[str] = []
        SeatModel.previous = self

    def forget_expired(self) -> None:
        now = self.clock.now()
        self.holds = {h: e for h, e in self.holds.items() if e > now}

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def live_holds(self) -> int:
        now = self.clock.now()
        return sum(1 for expiry in self.holds.values() if expiry > now)

    @rule()
    def hold(self) -> None:
        expected_free = 3 - len(self.bookings) - self.live_holds()
        self.forget_expired()  # the hold script sweeps expired holds first
        try:
            hold = self.run(self.core.bookings.hold(["hund-anmelden"], self.start, 1, "online"))
        except SlotFull:
            assert expected_free <= 0
            return
        assert expected_free > 0
        self.holds[hold.hold_id] = hold.expires_at

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.holds:
            return
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        # a hold not yet swept can always be given back, expired or not: its seats return now
        self.run(self.core.bookings.release(hold_id))
        del self.holds[hold_id]

    @rule(data=st.data())
    def confirm(self, data: st.DataObject) -> None:
        if not self.holds:
            return
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        expiry = self.holds[hold_id]
        SeatModel.people += 1
        try:
            view, _ = self.run(
                self.core.bookings.confirm(
                    hold_id, citizen(SeatModel.people), Actor(), None, render
                )
            )
        except HoldExpired:
            assert expiry <= self.clock.now()  # counted until the next sweep
            return
        assert expiry > self.clock.now()
        del self.holds[hold_id]
        assert view is not None
        self.bookings.append(view.id)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if not self.bookings:
            return
        booking_id = data.draw(st.sampled_from(self.bookings))
        self.bookings.remove(booking_id)
        self.run(self.core.bookings.cancel(booking_id, Actor()))

    @rule(seconds=st.integers(min_value=1, max_value=300))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    @rule()
    def sweep(self) -> None:
        self.run(self.core.sweep_holds())
        self.forget_expired()

    @invariant()
    def seats_agree(self) -> None:
        if not hasattr(self, "holds"):
            return
        # expired but unswept holds still count in Redis until a sweep or the next hold
        free = self.run(free_at(self.core, self.start))
        assert free == max(3 - len(self.bookings) - len(self.holds), 0)


def test_seat_model(core: Core, clock: ManualClock) -> None:
    SeatModel.core = core
    SeatModel.clock = clock
    SeatModel.previous = None
    SeatModel.loop = core.test_loop  # type: ignore[attr-defined]
    runner = SeatModel.TestCase
    runner.settings = settings(
        max_examples=15,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    runner().runTest()
