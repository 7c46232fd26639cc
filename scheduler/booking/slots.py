"""Slot materialization: opening rules and closures become slot rows for a rolling horizon.

Idempotent (running it twice changes nothing), keeps staff's per-slot capacity changes, and never
deletes a slot that holds seats: such slots are reported, so the affected bookings can be moved,
and offer no further seats (their capacity shrinks to what is booked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from scheduler.booking import models as m
from scheduler.calendar import grid


@dataclass(slots=True)
class MaterializeReport:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    kept_booked: list[int] = field(default_factory=list)  # slot ids outside the grid, booked

    def add(self, other: MaterializeReport) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.deleted += other.deleted
        self.kept_booked += other.kept_booked

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


def _rules(calendar: m.Calendar) -> list[grid.OpeningRule]:
    return [
        grid.OpeningRule(r.weekday, r.start, r.end, r.valid_from, r.valid_to)
        for r in calendar.rules
    ]


async def closures_for(
    session: AsyncSession, calendar: m.Calendar, first: datetime, last: datetime
) -> list[grid.Closure]:
    query = select(m.Closure.starts_at, m.Closure.ends_at).where(
        m.Closure.location_id == calendar.location_id,
        or_(m.Closure.calendar_id.is_(None), m.Closure.calendar_id == calendar.id),
        m.Closure.ends_at > first,
        m.Closure.starts_at < last,
    )
    return [grid.Closure(s, e) for s, e in await session.execute(query)]


async def materialize_calendar(
    session: AsyncSession, calendar: m.Calendar, tz: ZoneInfo, first_day: date, last_day: date
) -> MaterializeReport:
    report = MaterializeReport()
    window_start = grid.local_midnight(first_day, tz)
    window_end = grid.local_midnight(last_day + timedelta(days=1), tz)
    closures = await closures_for(session, calendar, window_start, window_end)
    cells = grid.slot_grid(
        _rules(calendar), closures, calendar.slot_minutes, tz, first_day, last_day
    )
    existing = {
        row.starts_at: row
        for row in await session.execute(
            select(
                m.Slot.id,
                m.Slot.starts_at,
                m.Slot.capacity,
                m.Slot.booked,
                m.Slot.capacity_overridden,
            ).where(
                m.Slot.calendar_id == calendar.id,
                m.Slot.day >= first_day,
                m.Slot.day <= last_day,
            )
        )
    }
    new_rows = []
    recapacity: list[int] = []
    for cell in cells:
        row = existing.pop(cell.start, None)
        if row is None:
            new_rows.append(
                {
                    "calendar_id": calendar.id,
                    "starts_at": cell.start,
                    "ends_at": cell.end,
                    "day": cell.day,
                    "cell": cell.index,
                    "capacity": calendar.capacity,
                    "booked": 0,
                    "capacity_overridden": False,
                }
            )
        elif not row.capacity_overridden and row.capacity != calendar.capacity:
            if row.booked <= calendar.capacity:
                recapacity.append(row.id)
            else:
                report.kept_booked.append(row.id)
    if new_rows:
        await session.execute(insert(m.Slot), new_rows)
        report.inserted = len(new_rows)
    for start in range(0, len(recapacity), 500):
        chunk = recapacity[start : start + 500]
        await session.execute(
            update(m.Slot).where(m.Slot.id.in_(chunk)).values(capacity=calendar.capacity)
        )
    stale = [row.id for row in existing.values() if row.booked == 0]
    report.kept_booked += [row.id for row in existing.values() if row.booked > 0]
    # A booked slot that is no longer open (a closure, changed hours) stays for its bookings,
    # but must not offer its spare seats: its capacity shrinks to what is booked (and a staff
    # override ends with it; should the slot open again, it gets the calendar's capacity).
    # (every such row, not only those with spare seats when read: a seat freed meanwhile is
    # counted by the update, which reads the row's current ``booked``)
    shrink = [row.id for row in existing.values() if row.booked > 0]
    shrunk = 0
    for start in range(0, len(shrink), 500):
        result = await session.execute(
            update(m.Slot)
            .where(m.Slot.id.in_(shrink[start : start + 500]), m.Slot.capacity != m.Slot.booked)
            .values(capacity=m.Slot.booked, capacity_overridden=False)
            .returning(m.Slot.id)
        )
        shrunk += len(result.all())
    report.updated = len(recapacity) + shrunk
    for start in range(0, len(stale), 500):
        chunk = stale[start : start + 500]
        # booked == 0 again here: a booking confirmed since the read above keeps its slot,
        # with no spare seat; so does a slot a cancelled booking still names (its history)
        deleted = await session.execute(
            delete(m.Slot)
            .where(
                m.Slot.id.in_(chunk),
                m.Slot.booked == 0,
                ~exists().where(m.BookingSlot.slot_id == m.Slot.id),
            )
            .returning(m.Slot.id)
        )
        kept = set(chunk) - set(deleted.scalars())
        if kept:
            await session.execute(
                update(m.Slot)
                .where(m.Slot.id.in_(sorted(kept)))
                .values(capacity=m.Slot.booked, capacity_overridden=False)
            )
        report.deleted += len(chunk) - len(kept)
    return report


def horizon(now: datetime, tz: ZoneInfo, horizon_days: int) -> tuple[date, date]:
    today = now.astimezone(tz).date()
    return today, today + timedelta(days=horizon_days)


async def materialize_all(
    session: AsyncSession, now: datetime, horizon_days: int
) -> MaterializeReport:
    """Materialize every calendar from today to the horizon (local days). Caller commits."""
    report = MaterializeReport()
    calendars = await session.scalars(
        select(m.Calendar)
        .options(selectinload(m.Calendar.rules), selectinload(m.Calendar.location))
        .order_by(m.Calendar.id)
    )
    for calendar in calendars:
        tz = ZoneInfo(calendar.location.timezone)
        first, last = horizon(now, tz, horizon_days)
        report.add(await materialize_calendar(session, calendar, tz, first, last))
    return report


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end
