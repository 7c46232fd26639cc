"""Slot materialization on every database: idempotent, keeps staff's capacity changes and booked
slots, follows closures and holidays, and gets the daylight-saving days right."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update

from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.booking.slots import MaterializeReport, materialize_all
from scheduler.clock import ManualClock
from tests.conftest import T0

BERLIN = ZoneInfo("Europe/Berlin")
TEN = timedelta(minutes=10)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BERLIN)


async def rematerialize(
    core: Core, now: datetime | None = None, days: int | None = None
) -> MaterializeReport:
    async with core.sessions() as session, session.begin():
        return await materialize_all(
            session, now or core.clock.now(), core.horizon_days if days is None else days
        )


async def slots_per_calendar_day(core: Core) -> Counter[tuple[str, date]]:
    async with core.sessions() as session:
        rows = await session.execute(
            select(m.Slot.calendar_id, m.Slot.day, func.count()).group_by(
                m.Slot.calendar_id, m.Slot.day
            )
        )
        return Counter({(c, d): n for c, d, n in rows})


async def slot_rows(core: Core, calendar_id: str, day: date) -> list[m.Slot]:
    async with core.sessions() as session:
        return list(
            await session.scalars(
                select(m.Slot)
                .where(m.Slot.calendar_id == calendar_id, m.Slot.day == day)
                .order_by(m.Slot.starts_at)
            )
        )


async def slot_at(core: Core, calendar_id: str, start: datetime) -> m.Slot:
    async with core.sessions() as session:
        slot = await session.scalar(
            select(m.Slot).where(m.Slot.calendar_id == calendar_id, m.Slot.starts_at == start)
        )
    assert slot is not None, (calendar_id, start)
    return slot


async def test_materializing_twice_changes_nothing(core: Core) -> None:
    before = await slots_per_calendar_day(core)
    assert sum(before.values()) > 10_000
    report = await rematerialize(core)
    assert (report.inserted, report.updated, report.deleted, report.kept_booked) == (0, 0, 0, [])
    assert not report.changed
    assert await slots_per_calendar_day(core) == before


async def test_the_horizon_starts_today_and_is_as_long_as_configured(core: Core) -> None:
    days = {d for _, d in await slots_per_calendar_day(core)}
    assert min(days) == date(2026, 11, 23)
    assert max(days) <= date(2026, 11, 23) + timedelta(days=core.horizon_days)
    assert max(days) >= date(2026, 11, 23) + timedelta(days=core.horizon_days - 3)
    # a week later the horizon has grown; nothing else changes
    report = await rematerialize(core, T0 + timedelta(days=7))
    assert report.deleted == 0
    assert report.updated == 0
    assert report.inserted > 0


async def test_a_normal_day_has_the_opening_hours(core: Core) -> None:
    rows = await slot_rows(core, "sachbearbeitung-1", date(2026, 11, 30))  # a Monday
    assert len(rows) == 16 + 10
    assert rows[0].starts_at == local(date(2026, 11, 30), 8)
    assert rows[0].ends_at == local(date(2026, 11, 30), 8, 15)
    assert rows[0].cell == 32  # 08:00 in 15-minute cells since local midnight
    assert rows[-1].starts_at == local(date(2026, 11, 30), 15, 15)
    assert all(r.capacity == 1 and r.booked == 0 and not r.capacity_overridden for r in rows)
    lines = await slot_rows(core, "impflinie-2", date(2026, 11, 28))  # Saturday 09:00-13:00
    assert len(lines) == 24
    assert all(r.capacity == 2 for r in lines)


async def test_overridden_capacity_is_kept_and_the_rest_follows_the_calendar(core: Core) -> None:
    day = date(2026, 12, 1)
    overridden = await slot_at(core, "impflinie-1", local(day, 9).astimezone(UTC))
    drifted = await slot_at(core, "impflinie-1", local(day, 9, 10).astimezone(UTC))
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Slot)
            .where(m.Slot.id == overridden.id)
            .values(capacity=5, capacity_overridden=True)
        )
        await session.execute(update(m.Slot).where(m.Slot.id == drifted.id).values(capacity=5))
    report = await rematerialize(core)
    assert (report.inserted, report.updated, report.deleted) == (0, 1, 0)
    assert (await slot_at(core, "impflinie-1", overridden.starts_at)).capacity == 5
    assert (await slot_at(core, "impflinie-1", drifted.starts_at)).capacity == 2

    # the calendar's capacity changes: every slot follows except the overridden one
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Calendar).where(m.Calendar.id == "impflinie-1").values(capacity=3)
        )
        total = await session.scalar(
            select(func.count()).select_from(m.Slot).where(m.Slot.calendar_id == "impflinie-1")
        )
    report = await rematerialize(core)
    assert report.updated == total - 1
    assert (await slot_at(core, "impflinie-1", overridden.starts_at)).capacity == 5
    assert {r.capacity for r in await slot_rows(core, "impflinie-1", day)} == {3, 5}
    assert {r.capacity for r in await slot_rows(core, "impflinie-2", day)} == {2}


async def test_a_closure_removes_exactly_that_calendars_slots_that_day(core: Core) -> None:
    day = date(2026, 12, 1)  # a Tuesday: 26 slots per clerk
    before = await slots_per_calendar_day(core)
    assert before[("sachbearbeitung-2", day)] == 26
    async with core.sessions() as session, session.begin():
        session.add(
            m.Closure(
                location_id="rathaus",
                calendar_id="sachbearbeitung-2",
                starts_at=local(day, 0),
                ends_at=local(day + timedelta(days=1), 0),
                reason="Fortbildung",
                source="api",
            )
        )
    report = await rematerialize(core)
    assert (report.inserted, report.updated, report.deleted, report.kept_booked) == (0, 0, 26, [])
    after = await slots_per_calendar_day(core)
    assert after[("sachbearbeitung-2", day)] == 0
    del before[("sachbearbeitung-2", day)], after[("sachbearbeitung-2", day)]
    assert after == before


async def test_a_booked_slot_inside_a_new_closure_is_kept_and_reported(core: Core) -> None:
    day = date(2026, 12, 2)  # Wednesday 08:00-12:00: 24 slots per line
    booked = await slot_at(core, "impflinie-1", local(day, 10).astimezone(UTC))
    async with core.sessions() as session, session.begin():
        await session.execute(update(m.Slot).where(m.Slot.id == booked.id).values(booked=1))
        session.add(
            m.Closure(
                location_id="impfzentrum",
                calendar_id="impflinie-1",
                starts_at=local(day, 9),
                ends_at=local(day, 12),
                reason="Kühlschrank defekt",
                source="api",
            )
        )
    report = await rematerialize(core)
    assert report.kept_booked == [booked.id]
    assert report.deleted == 18 - 1
    rows = await slot_rows(core, "impflinie-1", day)
    assert [r.id for r in rows if local(day, 9) <= r.starts_at < local(day, 12)] == [booked.id]
    assert len(rows) == 6 + 1 + 33
    assert len(await slot_rows(core, "impflinie-2", day)) == 24 + 33

    # materializing again keeps it (and reports it again, for the staff to move the booking)
    again = await rematerialize(core)
    assert again.kept_booked == [booked.id]
    assert not again.changed
    assert (await slot_at(core, "impflinie-1", booked.starts_at)).capacity == 1  # nothing spare

    # the closure is lifted: the slots come back, the kept one with the calendar's capacity
    async with core.sessions() as session, session.begin():
        await session.execute(delete(m.Closure).where(m.Closure.reason == "Kühlschrank defekt"))
    reopened = await rematerialize(core)
    assert (reopened.inserted, reopened.updated, reopened.deleted) == (17, 1, 0)
    assert reopened.kept_booked == []
    rows = await slot_rows(core, "impflinie-1", day)
    assert len(rows) == 24 + 33
    kept = next(r for r in rows if r.id == booked.id)
    assert (kept.capacity, kept.booked) == (2, 1)


async def test_a_kept_booked_slot_inside_a_closure_offers_no_seats(core: Core) -> None:
    day = date(2026, 12, 2)
    start = local(day, 10).astimezone(UTC)
    booked = await slot_at(core, "impflinie-1", start)
    async with core.sessions() as session, session.begin():
        await session.execute(update(m.Slot).where(m.Slot.id == booked.id).values(booked=1))
        session.add(
            m.Closure(
                location_id="impfzentrum",
                calendar_id="impflinie-1",
                starts_at=local(day, 0),
                ends_at=local(day + timedelta(days=1), 0),
                reason="Kühlschrank defekt",
                source="api",
            )
        )
    await core.materialize()
    _, rows = await core.free_starts("impfung-erstimpfung", day, day, core.clock.now())
    free = {s: f for s, _, f in rows}
    assert free[start] == 2  # only impflinie-2 is open; the closed line's spare seat is not free
    assert all(f == 2 for f in free.values())


async def test_holidays_have_no_slots(core: Core) -> None:
    counts = await slots_per_calendar_day(core)
    calendars = {c for c, _ in counts}
    assert len(calendars) == 7
    for calendar_id in calendars:
        assert counts[(calendar_id, date(2026, 12, 24))] > 0
        assert counts[(calendar_id, date(2026, 12, 25))] == 0
        assert counts[(calendar_id, date(2026, 12, 26))] == 0
    async with core.sessions() as session:
        christmas = await session.scalar(
            select(func.count())
            .select_from(m.Slot)
            .where(
                m.Slot.starts_at >= local(date(2026, 12, 25), 0),
                m.Slot.starts_at < local(date(2026, 12, 27), 0),
            )
        )
    assert christmas == 0


async def open_sunday_nights(core: Core) -> None:
    """The vaccination lines work Sunday 00:00-06:00 (the demo closes them on Sundays)."""
    async with core.sessions() as session, session.begin():
        for calendar_id in ("impflinie-1", "impflinie-2"):
            session.add(
                m.OpeningRule(calendar_id=calendar_id, weekday=6, start=time(0), end=time(6))
            )


def assert_contiguous(rows: list[m.Slot], first: datetime, count: int) -> None:
    assert len(rows) == count
    starts = [r.starts_at for r in rows]
    assert len(set(starts)) == count
    for n, row in enumerate(rows):
        assert row.starts_at == first + n * TEN
        assert row.ends_at == row.starts_at + TEN
        assert row.cell == n
        assert row.starts_at.utcoffset() == timedelta(0)


async def test_spring_forward_day(core: Core, clock: ManualClock) -> None:
    await open_sunday_nights(core)
    day = date(2026, 3, 29)
    clock.set(local(date(2026, 3, 23), 7))
    report = await rematerialize(core, days=10)
    assert report.deleted == 0
    for calendar_id in ("impflinie-1", "impflinie-2"):
        rows = await slot_rows(core, calendar_id, day)
        # 00:00+01:00 (23:00Z) to 06:00+02:00 (04:00Z): five real hours
        assert_contiguous(rows, datetime(2026, 3, 28, 23, 0, tzinfo=UTC), 30)
        walls = [r.starts_at.astimezone(BERLIN) for r in rows]
        assert walls[11].strftime("%H:%M%z") == "01:50+0100"
        assert walls[12].strftime("%H:%M%z") == "03:00+0200"
        assert not [w for w in walls if w.hour == 2]
        assert rows[-1].ends_at == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)
    again = await rematerialize(core, days=10)
    assert not again.changed


async def test_fall_back_day(core: Core, clock: ManualClock) -> None:
    await open_sunday_nights(core)
    day = date(2026, 10, 25)
    clock.set(local(date(2026, 10, 19), 7))
    await rematerialize(core, days=10)
    for calendar_id in ("impflinie-1", "impflinie-2"):
        rows = await slot_rows(core, calendar_id, day)
        # 00:00+02:00 (22:00Z the day before) to 06:00+01:00 (05:00Z): seven real hours
        assert_contiguous(rows, datetime(2026, 10, 24, 22, 0, tzinfo=UTC), 42)
        walls = [r.starts_at.astimezone(BERLIN).strftime("%H:%M%z") for r in rows]
        assert walls.count("02:30+0200") == 1
        assert walls.count("02:30+0100") == 1
        assert walls.index("02:30+0200") < walls.index("02:30+0100")
        assert rows[-1].ends_at == datetime(2026, 10, 25, 5, 0, tzinfo=UTC)
    # the Saturday before and the Monday after are ordinary days
    assert len(await slot_rows(core, "impflinie-1", date(2026, 10, 24))) == 24
    assert len(await slot_rows(core, "impflinie-1", date(2026, 10, 26))) == 24 + 33
    again = await rematerialize(core, days=10)
    assert not again.changed
