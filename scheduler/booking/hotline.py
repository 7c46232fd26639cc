"""What the phone hotline needs while a caller is on the line: the next free starts of a service
(across its calendars, and across locations when none is given), and the caller's bookings found
again by reference code or by name and birth date.

Both are reads. Looking a person up is still an action on someone's personal data, so the
finder writes an audit event per booking it shows (the search terms themselves are not kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import selectinload

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor
from scheduler.booking.core import Core
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed

WINDOW_DAYS = 14  # days read per step while looking ahead
MAX_RESULTS = 50


@dataclass(frozen=True, slots=True)
class NextSlot:
    service_id: str
    location_id: str
    start: datetime
    end: datetime
    free: int


async def next_slots(
    core: Core,
    *,
    service_ids: list[str],
    location_id: str | None,
    after: datetime,
    limit: int,
    channel: str = "phone",
) -> list[NextSlot]:
    """The ``limit`` earliest bookable starts at or after ``after`` of the given services (every
    service the channel may book when none is given), in ``location_id`` or everywhere.

    Reads the counters a window of days at a time, from the day of ``after`` to each service's
    horizon, and stops as soon as no later window can give an earlier start.
    """
    catalog = core.catalog
    if location_id is not None and location_id not in catalog.locations:
        raise NotFound("location", location_id)
    if service_ids:
        services = [core.service(s) for s in service_ids]
        for service in services:
            if channel not in service.channels:
                raise ValidationFailed(
                    FieldError("service", "channel_not_offered", channel=channel)
                )
        if location_id is not None:
            services = [s for s in services if s.location_id == location_id]
    else:
        services = [
            s
            for s in catalog.services.values()
            if channel in s.channels and location_id in (None, s.location_id)
        ]
    if not 1 <= limit <= MAX_RESULTS:
        raise ValidationFailed(FieldError("limit", "integer", min=1, max=MAX_RESULTS))
    now = core.clock.now()
    after = max(after, now)
    found: list[NextSlot] = []
    for service in services:
        tz = catalog.locations[service.location_id].tz
        first = after.astimezone(tz).date()
        last_day = now.astimezone(tz).date() + timedelta(days=service.max_days_ahead)
        while first <= last_day:
            if len(found) >= limit and found[limit - 1].start.astimezone(tz).date() < first:
                break  # nothing from here on can beat what we have
            last = min(first + timedelta(days=WINDOW_DAYS - 1), last_day)
            _, starts = await core.free_starts(service.id, first, last, now, channel=channel)
            window = [
                NextSlot(service.id, service.location_id, start, end, free)
                for start, end, free in starts
                if start >= after
            ]
            if window:
                found = sorted([*found, *window], key=lambda s: (s.start, s.service_id))[:limit]
                if len(window) >= limit:
                    break
            first = last + timedelta(days=1)
    return found[:limit]


async def find_bookings(
    core: Core,
    actor: Actor,
    *,
    reference: str | None = None,
    name: str | None = None,
    birth_date: date | None = None,
) -> list[m.Booking]:
    """A caller's bookings, by reference code or by name and birth date (newest appointment
    first; past and cancelled ones included, so the agent sees the whole story)."""
    if reference:
        if name or birth_date:
            raise ValidationFailed(FieldError("reference", "either_or"))
        code = codes.parse_reference(reference)
        if code is None:
            return []
        condition = m.Booking.reference == code
    elif name and birth_date:
        if not name.strip():
            raise ValidationFailed(FieldError("name", "required"))
        condition = m.Booking.name_key == codes.name_key(core.secret_key, name, birth_date)
    else:
        errors = [
            FieldError(f, "required")
            for f, v in (("name", name), ("birth_date", birth_date))
            if not v
        ]
        raise ValidationFailed(*errors)
    now = core.clock.now()
    async with core.sessions() as session, session.begin():
        found = list(
            await session.scalars(
                select(m.Booking)
                .where(condition)
                .options(selectinload(m.Booking.appointments))
                .order_by(m.Booking.starts_at.desc())
                .limit(MAX_RESULTS)
            )
        )
        if found:
            await session.execute(
                insert(m.AuditEvent),
                [
                    {
                        "at": now,
                        "actor": actor.name,
                        "action": "booking.lookup",
                        "booking_id": booking.id,
                        "request_id": actor.request_id,
                        "details": {"by": "reference" if reference else "name_birth_date"},
                    }
                    for booking in found
                ],
            )
    return found


async def audit_events(core: Core, reference: str) -> list[m.AuditEvent]:
    """Every audit event of one booking, oldest first."""
    code = codes.parse_reference(reference)
    async with core.sessions() as session:
        booking_id = (
            await session.scalar(select(m.Booking.id).where(m.Booking.reference == code))
            if code
            else None
        )
        if booking_id is None:
            raise NotFound("booking", reference)
        return list(
            await session.scalars(
                select(m.AuditEvent)
                .where(m.AuditEvent.booking_id == booking_id)
                .order_by(m.AuditEvent.at, m.AuditEvent.id)
            )
        )
