"""Closing a calendar for a while (illness, a holiday) and dealing with the bookings inside:
each is moved to the nearest free start of the same services (on any calendar of their pools)
or cancelled, and the person gets the message through the outbox.

Safe to repeat and to run while citizens book:

1. The closure is recorded (once: the same calendar and period are found again) and the
   calendar's slots are materialized in the same transaction: free slots inside it disappear,
   booked ones keep exactly their booked seats (``capacity = booked``), so no confirm can add
   one; the counters are rebuilt, so no new hold is given there either.
2. Only then are the affected bookings read (those still to come): whatever was confirmed
   before step 1 committed is among them, nothing can be confirmed there afterwards.
3. A move or a cancellation only happens while the booking still holds seats in the closed
   period (a second closure run, the citizen or an agent may have moved it meanwhile: it is
   left alone and reported as such). Seats freed in a closed slot, by anyone, leave with their
   capacity (see ``BookingService._free_seats``), so the closed period never offers them again.
   A target that another booking took first is skipped for the next nearest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.booking import campaigns, moves
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingService, Inside
from scheduler.booking.core import Core
from scheduler.booking.errors import (
    AlreadyChanged,
    FieldError,
    NotEligible,
    NotFound,
    SlotFull,
    ValidationFailed,
)
from scheduler.booking.slots import horizon, materialize_calendar

MAX_CLOSURE_DAYS = 92
MAX_TRIES = 12  # candidate starts tried per booking before giving up


class Policy(StrEnum):
    MOVE = "move"
    CANCEL = "cancel"


class Outcome(StrEnum):
    MOVED = "moved"
    CANCELLED = "cancelled"
    NOT_MOVED = "not_moved"  # no free start found: the booking stays, staff must call
    UNCHANGED = "unchanged"  # changed meanwhile by someone else, or no longer active


@dataclass(frozen=True, slots=True)
class Affected:
    booking_id: str
    reference: str
    outcome: Outcome
    start: datetime  # where it was
    new_start: datetime | None = None


@dataclass(slots=True)
class CloseReport:
    closure_id: int
    created: bool
    results: list[Affected] = field(default_factory=list)


async def close_calendar(
    core: Core,
    bookings: BookingService,
    calendar_id: str,
    start: datetime,
    end: datetime,
    reason: str,
    policy: Policy,
    actor: Actor,
) -> CloseReport:
    calendar_info = core.catalog.calendars.get(calendar_id)
    if calendar_info is None:
        raise NotFound("calendar", calendar_id)
    _validate(start, end, reason)
    now = core.clock.now()
    location = core.catalog.locations[calendar_info.location_id]
    async with core.sessions() as session, session.begin():
        closure = await session.scalar(
            select(m.Closure).where(
                m.Closure.calendar_id == calendar_id,
                m.Closure.starts_at == start,
                m.Closure.ends_at == end,
                m.Closure.source == "staff",
            )
        )
        created = closure is None
        if closure is None:
            closure = m.Closure(
                location_id=location.id,
                calendar_id=calendar_id,
                starts_at=start,
                ends_at=end,
                reason=reason.strip(),
                source="staff",
            )
            session.add(closure)
            await session.flush()
        calendar = await session.scalar(
            select(m.Calendar)
            .where(m.Calendar.id == calendar_id)
            .options(selectinload(m.Calendar.rules))
        )
        assert calendar is not None
        first, last = horizon(now, location.tz, core.horizon_days)
        await materialize_calendar(session, calendar, location.tz, first, last)
        session.add(
            m.AuditEvent(
                at=now,
                actor=actor.name,
                action="calendar.close",
                booking_id=None,
                request_id=actor.request_id,
                details={
                    "calendar": calendar_id,
                    "from": start.isoformat(),
                    "to": end.isoformat(),
                    "policy": policy.value,
                },
            )
        )
        closure_id = closure.id
    await core.rebuild_counters([location.id])
    report = CloseReport(closure_id, created)
    inside = Inside(calendar_id, start, end)
    for booking in await _affected(core, calendar_id, start, end, now):
        if policy is Policy.CANCEL:
            try:
                await bookings.cancel(booking.id, actor, only_inside=inside)
                outcome = Outcome.CANCELLED
            except AlreadyChanged:
                outcome = Outcome.UNCHANGED
            report.results.append(
                Affected(booking.id, booking.reference, outcome, booking.starts_at)
            )
        else:
            report.results.append(await _move(core, bookings, booking, inside, actor))
    return report


def _validate(start: datetime, end: datetime, reason: str) -> None:
    errors = []
    if end <= start:
        errors.append(FieldError("to", "to_before_from"))
    elif end - start > timedelta(days=MAX_CLOSURE_DAYS):
        errors.append(FieldError("to", "range_too_long", max=MAX_CLOSURE_DAYS))
    if not reason.strip() or len(reason) > 300:
        errors.append(FieldError("reason", "length", min=1, max=300))
    if errors:
        raise ValidationFailed(*errors)


async def _affected(
    core: Core, calendar_id: str, start: datetime, end: datetime, now: datetime
) -> list[m.Booking]:
    """Active bookings still to come holding seats on the calendar inside the period, earliest
    first (a visit that already began is left as it is: closing the rest of a day at noon
    must not move the morning's)."""
    async with core.sessions() as session:
        ids = select(m.BookingSlot.booking_id).join(m.Slot, m.Slot.id == m.BookingSlot.slot_id)
        ids = ids.where(
            m.Slot.calendar_id == calendar_id, m.Slot.starts_at < end, m.Slot.ends_at > start
        )
        return list(
            await session.scalars(
                select(m.Booking)
                .where(
                    m.Booking.id.in_(ids),
                    m.Booking.status.in_([s.value for s in m.ACTIVE_STATUSES]),
                    m.Booking.starts_at > now,
                )
                .options(selectinload(m.Booking.appointments))
                .order_by(m.Booking.starts_at, m.Booking.reference)
            )
        )


async def _move(
    core: Core, bookings: BookingService, booking: m.Booking, inside: Inside, actor: Actor
) -> Affected:
    """Move the booking's visit inside the period to the free start nearest to where it was
    (earlier or later). Of a series, the dose inside moves (the second within its interval; a
    moved first dose keeps the second where the interval allows, see ``moves``); both, when both
    are inside."""
    original = booking.starts_at
    outcome = Outcome.NOT_MOVED
    for _round in range(len(booking.appointments)):
        current = moves.ordered(booking)
        index = next((i for i, a in enumerate(current) if _within(a, inside)), None)
        if index is None:
            break
        moved = await _move_visit(core, bookings, booking, index, inside, actor)
        if isinstance(moved, Outcome):
            return Affected(booking.id, booking.reference, moved, original)
        if moved is None:
            outcome = Outcome.NOT_MOVED
            break
        booking, outcome = moved, Outcome.MOVED
    if outcome is Outcome.MOVED:
        return Affected(booking.id, booking.reference, outcome, original, booking.starts_at)
    return Affected(booking.id, booking.reference, outcome, original)


def _within(appointment: m.Appointment, inside: Inside) -> bool:
    return (
        inside.calendar_id in appointment.calendar_ids
        and appointment.starts_at < inside.end
        and appointment.ends_at > inside.start
    )


async def _move_visit(
    core: Core,
    bookings: BookingService,
    booking: m.Booking,
    index: int,
    inside: Inside,
    actor: Actor,
) -> m.Booking | Outcome | None:
    """Move one visit; the booking as moved, None when no start was free, or UNCHANGED."""
    current = moves.ordered(booking)
    visit = current[index]
    service = core.service(visit.service_ids[0])
    # a staff channel: no online contingent applies to a forced move
    channel = next((c for c in ("counter", "phone") if c in service.channels), booking.channel)
    seats = await bookings.seats_of(booking)
    location = core.catalog.locations[service.location_id]
    now = core.clock.now()
    first = today = now.astimezone(location.tz).date()
    last = min(today + timedelta(days=service.max_days_ahead), today + timedelta(days=92))
    campaign = moves.series_campaign(core.catalog, booking)
    if campaign is not None and index == 1:
        low, high = campaigns.second_dose_days(
            campaign, current[0].starts_at.astimezone(location.tz).date()
        )
        first, last = max(first, low), min(last, high)
    if first > last:
        return None
    _, starts = await core.free_starts(service.id, first, last, now, channel=channel)
    original = visit.starts_at
    candidates = sorted(
        (s for s, _, free in starts if free >= seats),  # the closed cells are 0 already
        key=lambda s: (abs(s - original), s),
    )
    for candidate in candidates[:MAX_TRIES]:
        try:
            return await bookings.move(
                booking.id, actor, channel,
                start=candidate if index == 0 else None,
                second_start=candidate if index == 1 else None,
                only_inside=inside,
            )  # fmt: skip
        except SlotFull:
            continue  # taken meanwhile
        except AlreadyChanged:
            return Outcome.UNCHANGED
        except ValidationFailed as exc:
            if any(e.message_key == "not_active" for e in exc.errors):
                return Outcome.UNCHANGED
            continue  # no longer allowed there (notice, interval)
        except NotEligible:
            continue  # a first dose too early for the attendee's age
    return None
