"""Closures imported from an iCalendar file (holidays, absences), including recurring events.

Importing is safe to repeat: a period already imported for the calendar (same UID and
occurrence) is not added twice. The calendar's slots are then materialized again: free slots
inside a closure disappear, booked ones stay (with no spare seats) and are reported, so staff
can move or cancel those bookings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.booking import models as m
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed
from scheduler.booking.slots import horizon, materialize_calendar
from scheduler.calendar.ical import IcalImportError, parse_periods


@dataclass(frozen=True, slots=True)
class AffectedBooking:
    reference: str
    start: datetime
    status: str


@dataclass(slots=True)
class ImportReport:
    added: int = 0
    already_known: int = 0
    affected: list[AffectedBooking] = field(default_factory=list)


async def import_closures(
    sessions: object, calendar_id: str, data: bytes, now: datetime, horizon_days: int
) -> ImportReport:
    report = ImportReport()
    async with sessions() as session, session.begin():  # type: ignore[operator]
        calendar = await session.scalar(
            select(m.Calendar)
            .where(m.Calendar.id == calendar_id)
            .options(selectinload(m.Calendar.rules), selectinload(m.Calendar.location))
        )
        if calendar is None:
            raise NotFound("calendar", calendar_id)
        tz = ZoneInfo(calendar.location.timezone)
        first_day, last_day = horizon(now, tz, horizon_days)
        window_start = now - timedelta(days=1)
        window_end = now + timedelta(days=horizon_days + 2)
        try:
            periods = parse_periods(data, tz, window_start, window_end)
        except IcalImportError as exc:
            raise ValidationFailed(FieldError("body", "ical", message=str(exc))) from None
        known = set(
            await session.scalars(
                select(m.Closure.external_uid).where(
                    m.Closure.calendar_id == calendar_id, m.Closure.source == "import"
                )
            )
        )
        for period in periods:
            if period.uid in known:
                report.already_known += 1
                continue
            known.add(period.uid)
            session.add(
                m.Closure(
                    location_id=calendar.location_id,
                    calendar_id=calendar_id,
                    starts_at=period.start,
                    ends_at=period.end,
                    reason=(period.summary or "Import")[:300],
                    source="import",
                    external_uid=period.uid[:300],
                )
            )
            report.added += 1
        await session.flush()
        await materialize_calendar(session, calendar, tz, first_day, last_day)
        if periods:
            report.affected = await _affected(session, calendar_id, periods)
    return report


async def _affected(session, calendar_id: str, periods) -> list[AffectedBooking]:  # type: ignore[no-untyped-def]
    first = min(p.start for p in periods)
    last = max(p.end for p in periods)
    rows = await session.execute(
        select(m.Booking.reference, m.Booking.starts_at, m.Booking.status, m.Slot.starts_at,
               m.Slot.ends_at)
        .join(m.BookingSlot, m.BookingSlot.booking_id == m.Booking.id)
        .join(m.Slot, m.Slot.id == m.BookingSlot.slot_id)
        .where(
            m.Slot.calendar_id == calendar_id,
            m.Slot.starts_at < last,
            m.Slot.ends_at > first,
            m.Booking.status.in_([s.value for s in m.ACTIVE_STATUSES]),
        )
    )  # fmt: skip
    found: dict[str, AffectedBooking] = {}
    for reference, start, status, slot_start, slot_end in rows:
        if any(p.start < slot_end and slot_start < p.end for p in periods):
            found.setdefault(reference, AffectedBooking(reference, start, status))
    return sorted(found.values(), key=lambda a: (a.start, a.reference))
