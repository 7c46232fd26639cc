"""The staff core without HTTP: agenda days across DST changes, attendance rules, capacity
changes that Redis follows exactly (live holds included) and that the horizon job keeps."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis.exceptions import RedisError
from sqlalchemy import insert, select, update

from scheduler.booking import models as m
from scheduler.booking import staff
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.errors import CapacityConflict, NotFound, ValidationFailed
from scheduler.calendar.grid import cell_index
from scheduler.clock import ManualClock

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, a Monday
STAFF = Actor("k1", "staff")


def render(_: object) -> bytes:
    return b"{}"


async def free_at(core: Core, start: datetime = START) -> int:
    day = start.date()
    _, rows = await core.free_starts("hund-anmelden", day, day, core.clock.now())
    return {s: f for s, _, f in rows}.get(start, 0)


def test_day_window_has_23_and_25_hours_on_dst_days() -> None:
    tz = ZoneInfo("Europe/Berlin")
    spring = staff.day_window(date(2027, 3, 28), tz)
    autumn = staff.day_window(date(2026, 10, 25), tz)
    plain = staff.day_window(date(2026, 11, 30), tz)
    assert spring[1] - spring[0] == timedelta(hours=23)
    assert autumn[1] - autumn[0] == timedelta(hours=25)
    assert plain == (datetime(2026, 11, 29, 23, tzinfo=UTC), datetime(2026, 11, 30, 23, tzinfo=UTC))


async def _slot(session, calendar: str, start: datetime) -> int:  # type: ignore[no-untyped-def]
    tz = ZoneInfo("Europe/Berlin")
    found = cell_index(start, tz, 15)
    assert found is not None
    day, cell = found
    result = await session.execute(
        insert(m.Slot).returning(m.Slot.id),
        {"calendar_id": calendar, "starts_at": start, "ends_at": start + timedelta(minutes=15),
         "day": day, "cell": cell, "capacity": 1, "booked": 1, "capacity_overridden": False},
    )  # fmt: skip
    return int(result.scalar_one())


async def test_agenda_buckets_by_local_day_on_the_spring_dst_change(core: Core) -> None:
    """A series with one visit late on 2027-03-28 (a 23-hour day) and one just after midnight:
    each visit shows on its own local day only (a 24-hour window from midnight would put the
    second one on the 28th too)."""
    calendar = "sachbearbeitung-1"
    late = datetime(2027, 3, 28, 21, 30, tzinfo=UTC)  # 23:30 CEST
    early_next = datetime(2027, 3, 28, 22, 15, tzinfo=UTC)  # 00:15 CEST on the 29th
    night = datetime(2027, 3, 28, 0, 30, tzinfo=UTC)  # 01:30 CET, before the clocks jump
    booking_id, other_id = uuid.uuid4().hex, uuid.uuid4().hex
    now = core.clock.now()
    async with core.sessions() as session, session.begin():
        slots = [await _slot(session, calendar, t) for t in (late, early_next, night)]
        for bid, reference, first in (
            (booking_id, "AAAA2222", late),
            (other_id, "BBBB3333", night),
        ):
            await session.execute(
                insert(m.Booking),
                {"id": bid, "reference": reference, "status": "confirmed", "channel": "phone",
                 "location_id": "rathaus", "starts_at": first,
                 "ends_at": first + timedelta(minutes=15), "created_at": now, "updated_at": now,
                 "attendee_name": f"Person {reference[0]}", "contact_phone": "+49391123456",
                 "person_keys": [], "language": "de"},
            )  # fmt: skip
        visits = [(booking_id, 0, late, slots[0]), (booking_id, 1, early_next, slots[1]),
                  (other_id, 0, night, slots[2])]  # fmt: skip
        for bid, position, start, slot_id in visits:
            await session.execute(
                insert(m.Appointment),
                {"booking_id": bid, "position": position, "service_ids": ["hund-anmelden"],
                 "starts_at": start, "ends_at": start + timedelta(minutes=15),
                 "calendar_ids": [calendar]},
            )  # fmt: skip
            await session.execute(
                insert(m.BookingSlot), {"booking_id": bid, "slot_id": slot_id, "seats": 1}
            )
    day = await staff.agenda(core, calendar, date(2027, 3, 28))
    assert [(e.reference, e.start) for e in day.entries] == [
        ("BBBB-3333", night), ("AAAA-2222", late),
    ]  # fmt: skip
    assert [s.start for s in day.slots] == [night, late]
    assert day.entries[0].channel == "phone"
    assert day.entries[0].phone == "+49391123456"
    assert day.entries[0].service_names == ["Hund anmelden"]
    next_day = await staff.agenda(core, calendar, date(2027, 3, 29))
    assert [(e.reference, e.start) for e in next_day.entries] == [("AAAA-2222", early_next)]
    english = await staff.agenda(core, calendar, date(2027, 3, 29), "en")
    assert english.entries[0].service_names == ["Register a dog"]
    with pytest.raises(NotFound):
        await staff.agenda(core, "nope", date(2027, 3, 29))


async def test_pending_and_completed_bookings_cannot_be_marked(
    core: Core, clock: ManualClock
) -> None:
    view, _ = await core.bookings.book(
        ["hund-anmelden"], START, 1, BookingRequest(Person("Erika", "e@example.org")),
        Actor(), None, render,
    )  # fmt: skip
    assert view is not None
    clock.set(START + timedelta(minutes=5))
    for status in ("pending", "completed"):
        async with core.sessions() as session, session.begin():
            await session.execute(
                update(m.Booking).where(m.Booking.id == view.id).values(status=status)
            )
        with pytest.raises(ValidationFailed) as refused:
            await staff.mark(core, view.id, "checked_in", STAFF)
        (error,) = refused.value.errors
        assert (error.field, error.message_key) == ("reference", "not_markable")
    with pytest.raises(NotFound):
        await staff.mark(core, "0" * 32, "no_show", STAFF)


async def test_no_show_keeps_the_seats_and_gives_the_claim_back(
    core: Core, clock: ManualClock
) -> None:
    request = BookingRequest(Person("Erika", "e@example.org"))
    view, _ = await core.bookings.book(["hund-anmelden"], START, 1, request, Actor(), None, render)
    assert view is not None
    clock.set(START + timedelta(minutes=20))
    marked = await staff.mark(core, view.id, "no_show", STAFF)
    assert marked.status == "no_show"
    async with core.sessions() as session:
        booked = await session.scalar(
            select(m.Slot.booked).where(
                m.Slot.starts_at == START,
                m.Slot.calendar_id == marked.appointments[0].calendar_ids[0],
            )
        )
        claims = await session.scalar(
            select(m.PersonClaim.booking_id).where(m.PersonClaim.booking_id == view.id)
        )
    assert booked == 1
    assert claims is None
    again = await staff.mark(core, view.id, "checked_in", STAFF)  # a correction, same day
    assert again.status == "checked_in"
    async with core.sessions() as session:
        restored = list(
            await session.scalars(
                select(m.PersonClaim.booking_id).where(m.PersonClaim.booking_id == view.id)
            )
        )
    assert restored  # active again: counts against the person's limit again


async def test_capacity_rebuild_keeps_live_holds_counted(core: Core) -> None:
    assert await free_at(core) == 3
    hold = await core.bookings.hold(["hund-anmelden"], START, 1, "online")
    assert await free_at(core) == 2
    state = await staff.set_capacity(core, "sachbearbeitung-1", START, 2, STAFF)
    assert (state.capacity, state.booked, state.capacity_overridden) == (2, 0, True)
    assert await free_at(core) == 3  # one more seat, the hold still counted
    await core.bookings.release(hold.hold_id)
    assert await free_at(core) == 4
    await core.materialize()  # the horizon job keeps a staff override
    assert await free_at(core) == 4
    with pytest.raises(NotFound):
        await staff.set_capacity(core, "sachbearbeitung-1", START + timedelta(minutes=5), 2, STAFF)
    with pytest.raises(ValidationFailed):
        await staff.set_capacity(core, "sachbearbeitung-1", START, staff.MAX_CAPACITY + 1, STAFF)


async def test_capacity_conflict_and_redis_down(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Slot)
            .where(m.Slot.starts_at == START, m.Slot.calendar_id == "sachbearbeitung-2")
            .values(capacity=3, booked=2)
        )
    with pytest.raises(CapacityConflict) as conflict:
        await staff.set_capacity(core, "sachbearbeitung-2", START, 1, STAFF)
    assert conflict.value.params == {"booked": 2}

    async def unreachable(_: object = None) -> None:
        raise RedisError("gone")

    monkeypatch.setattr(core, "rebuild_counters", unreachable)
    state = await staff.set_capacity(core, "sachbearbeitung-2", START, 2, STAFF)
    assert state.capacity == 2  # SQL holds the change; the next reconcile tells Redis
    async with core.sessions() as session:
        capacity = await session.scalar(
            select(m.Slot.capacity).where(
                m.Slot.starts_at == START, m.Slot.calendar_id == "sachbearbeitung-2"
            )
        )
    assert capacity == 2
