"""Staff at the counter: a calendar's agenda for one day, attendance, one slot's capacity.

HTTP-free; who may do what (staff of the calendar, admins) is the API's business.

Attendance (``mark``):
    confirmed ──check-in──► checked_in ◄──correction──► no_show ◄──no-show── confirmed

* Seats stay booked either way: the slot was used (or wasted); nobody else can use a seat
  whose time has come, and statistics count the no-show against the slot.
* Person claims follow the model's notion of an *active* booking (``ACTIVE_STATUSES``): a
  checked-in booking keeps them, a no-show gives them back so the person can book the service
  again; a correction from no-show back to checked-in takes them again where the person has
  not booked anew meanwhile (that newer booking holds the claim then).
* Check-in is possible from ``CHECK_IN_EARLY`` before the start, a no-show only once the
  appointment has started, and either only on the appointment's local day. Marking a booking
  with the status it has is a no-op (idempotent, no audit event); pending, cancelled and
  completed bookings cannot be marked.

Capacity (``set_capacity``): one conditional UPDATE (``booked <= :capacity``; the CHECK
constraint backs it), marked ``capacity_overridden`` so the horizon job keeps it, an audit
event in the same transaction; then the location's Redis counters are rebuilt from SQL plus
live holds (the reconcile every process runs each minute). A rebuild is exact whatever the
cell's counter held (holds, drift, a saturated zero) and recomputes the day's online budget
where a phone contingent applies, where a signed delta on the one cell would carry any earlier
error along and miss the budget; a staff edit is rare, so its cost does not matter. If
Redis is unreachable the edit stands and the next reconcile brings Redis in line: until then
Redis may hide a new seat, or offer a removed one that the conditional update in SQL refuses
(the confirm answers ``slot_full``); seats never exceed capacity.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor
from scheduler.booking.errors import CapacityConflict, FieldError, NotFound, ValidationFailed
from scheduler.calendar.grid import local_midnight

log = logging.getLogger("scheduler.staff")

CHECK_IN_EARLY = timedelta(hours=2)
MAX_CAPACITY = 1000  # counters are 16-bit; no room or line seats more
MARKS = {m.BookingStatus.CHECKED_IN: "booking.check_in", m.BookingStatus.NO_SHOW: "booking.no_show"}
MARKABLE = (
    m.BookingStatus.CONFIRMED.value,
    m.BookingStatus.CHECKED_IN.value,
    m.BookingStatus.NO_SHOW.value,
)
ON_AGENDA = tuple(s.value for s in m.BookingStatus if s is not m.BookingStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class AgendaEntry:
    """One appointment on the calendar that day, with what the clerk needs to call the person."""

    booking_id: str
    reference: str  # XXXX-XXXX
    status: str
    channel: str
    start: datetime
    end: datetime
    service_ids: list[str]
    service_names: list[str]
    seats: int
    name: str | None  # None once the personal data is erased
    contact_name: str | None  # when someone else booked for the attendee
    phone: str | None
    email: str | None


@dataclass(frozen=True, slots=True)
class SlotState:
    calendar_id: str
    start: datetime
    end: datetime
    capacity: int
    booked: int
    capacity_overridden: bool


@dataclass(frozen=True, slots=True)
class Agenda:
    calendar_id: str
    calendar_name: str
    location_id: str
    location_name: str
    tz: ZoneInfo
    day: date
    entries: list[AgendaEntry]
    slots: list[SlotState]


def day_window(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants bounding a local day (23 or 25 hours long on DST changes)."""
    return local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)


async def agenda(core: Any, calendar_id: str, day: date, language: str = "de") -> Agenda:
    """The calendar's bookings of one local day (all but cancelled ones), by start, and its
    slots with capacity and seats booked."""
    catalog = core.catalog
    calendar = catalog.calendars.get(calendar_id)
    if calendar is None:
        raise NotFound("calendar", calendar_id)
    location = catalog.locations[calendar.location_id]
    first, last = day_window(day, location.tz)
    async with core.sessions() as session:
        slot_rows = list(
            await session.execute(
                select(
                    m.Slot.id, m.Slot.starts_at, m.Slot.ends_at, m.Slot.capacity,
                    m.Slot.booked, m.Slot.capacity_overridden,
                )
                .where(m.Slot.calendar_id == calendar_id, m.Slot.day == day)
                .order_by(m.Slot.starts_at)
            )
        )  # fmt: skip
        slot_start = {row.id: row.starts_at for row in slot_rows}
        seats: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        ids = list(slot_start)
        for chunk in range(0, len(ids), 500):
            for booking_id, slot_id, n in await session.execute(
                select(m.BookingSlot.booking_id, m.BookingSlot.slot_id, m.BookingSlot.seats).where(
                    m.BookingSlot.slot_id.in_(ids[chunk : chunk + 500])
                )
            ):
                seats[booking_id].append((slot_start[slot_id], n))
        bookings = []
        booking_ids = list(seats)
        for chunk in range(0, len(booking_ids), 500):
            bookings += list(
                await session.scalars(
                    select(m.Booking)
                    .where(
                        m.Booking.id.in_(booking_ids[chunk : chunk + 500]),
                        m.Booking.status.in_(ON_AGENDA),
                    )
                    .options(selectinload(m.Booking.appointments))
                )
            )
    entries = []
    for booking in bookings:
        for appointment in booking.appointments:
            start, end = appointment.starts_at, appointment.ends_at
            if calendar_id not in appointment.calendar_ids or not first <= start < last:
                continue
            taken = [n for at, n in seats[booking.id] if start <= at < end]
            services = [catalog.services.get(s) for s in appointment.service_ids]
            entries.append(
                AgendaEntry(
                    booking_id=booking.id,
                    reference=codes.format_reference(booking.reference),
                    status=booking.status,
                    channel=booking.channel,
                    start=start,
                    end=end,
                    service_ids=list(appointment.service_ids),
                    service_names=[
                        s.display_name(language) if s else sid
                        for s, sid in zip(services, appointment.service_ids, strict=True)
                    ],
                    seats=max(taken, default=0),
                    name=booking.attendee_name,
                    contact_name=booking.contact_name,
                    phone=booking.contact_phone,
                    email=booking.contact_email,
                )
            )
    entries.sort(key=lambda e: (e.start, e.reference))
    slots = [
        SlotState(calendar_id, r.starts_at, r.ends_at, r.capacity, r.booked, r.capacity_overridden)
        for r in slot_rows
    ]
    return Agenda(
        calendar_id, calendar.name, location.id, location.name, location.tz, day, entries, slots
    )


# -- attendance -------------------------------------------------------------------------------


async def mark(core: Any, booking_id: str, status: str, actor: Actor) -> m.Booking:
    """Record that the person came (``checked_in``) or did not (``no_show``); see the module
    docstring for the rules. Returns the booking with its appointments."""
    target = m.BookingStatus(status)
    if target not in MARKS:
        raise ValueError(f"cannot mark a booking {status}")
    for attempt in range(2):
        try:
            booking, changed = await _mark(core, booking_id, target, actor)
            break
        except IntegrityError:
            # a claim taken back collided with a booking confirmed at this very moment: the
            # second attempt sees that booking and leaves the claim to it
            if attempt:
                raise
    if changed:
        calendars = sorted({c for a in booking.appointments for c in a.calendar_ids})
        await core.reservations.touch_feeds(booking.location_id, calendars)
    return booking


async def _mark(
    core: Any, booking_id: str, target: m.BookingStatus, actor: Actor
) -> tuple[m.Booking, bool]:
    now = core.clock.now()
    async with core.sessions() as session, session.begin():
        booking = await session.scalar(
            select(m.Booking)
            .where(m.Booking.id == booking_id)
            .options(selectinload(m.Booking.appointments))
            .with_for_update()
        )
        if booking is None:
            raise NotFound("booking", booking_id)
        if booking.status == target.value:
            return booking, False
        if booking.status not in MARKABLE:
            raise ValidationFailed(FieldError("reference", "not_markable", status=booking.status))
        tz = core.catalog.locations[booking.location_id].tz
        start = _start_today(booking, now, tz)
        if target is m.BookingStatus.CHECKED_IN and now < start - CHECK_IN_EARLY:
            hours = int(CHECK_IN_EARLY.total_seconds() // 3600)
            raise ValidationFailed(FieldError("reference", "check_in_too_early", hours=hours))
        if target is m.BookingStatus.NO_SHOW and now < start:
            raise ValidationFailed(FieldError("reference", "not_started"))
        previous = booking.status
        if target is m.BookingStatus.NO_SHOW:
            await session.execute(
                delete(m.PersonClaim).where(m.PersonClaim.booking_id == booking_id)
            )
        elif previous == m.BookingStatus.NO_SHOW.value:
            await _claim_again(session, core, booking)
        booking.status = target.value
        booking.updated_at = now
        await session.execute(
            insert(m.AuditEvent),
            dict(
                at=now,
                actor=actor.name,
                action=MARKS[target],
                booking_id=booking_id,
                request_id=actor.request_id,
                details={"from": previous},
            ),
        )
    return booking, True


def _start_today(booking: m.Booking, now: datetime, tz: ZoneInfo) -> datetime:
    """The start of the booking's appointment on today's local date (a series has one
    appointment per visit); attendance is recorded on the day only."""
    today = now.astimezone(tz).date()
    for appointment in booking.appointments:
        if appointment.starts_at.astimezone(tz).date() == today:
            return appointment.starts_at
    if all(a.starts_at > now for a in booking.appointments):
        raise ValidationFailed(FieldError("reference", "not_today"))
    raise ValidationFailed(FieldError("reference", "day_over"))


async def _claim_again(session: AsyncSession, core: Any, booking: m.Booking) -> None:
    """A no-show corrected to checked-in counts against the person's limit again, wherever
    the limit still has room."""
    rows = []
    for service_id in {s for a in booking.appointments for s in a.service_ids}:
        service = core.catalog.services.get(service_id)
        limit = service.max_active_per_person if service else 1
        for person_key in booking.person_keys:
            used = set(
                await session.scalars(
                    select(m.PersonClaim.n).where(
                        m.PersonClaim.service_id == service_id,
                        m.PersonClaim.person_key == person_key,
                    )
                )
            )
            free = [n for n in range(1, limit + 1) if n not in used]
            if free:
                rows.append(
                    {"service_id": service_id, "person_key": person_key, "n": free[0],
                     "booking_id": booking.id}
                )  # fmt: skip
    if rows:
        await session.execute(insert(m.PersonClaim), rows)


# -- capacity ---------------------------------------------------------------------------------


async def set_capacity(
    core: Any, calendar_id: str, start: datetime, capacity: int, actor: Actor
) -> SlotState:
    """Set one slot's capacity (not below its booked seats), then bring Redis in line."""
    calendar = core.catalog.calendars.get(calendar_id)
    if calendar is None:
        raise NotFound("calendar", calendar_id)
    if not 0 <= capacity <= MAX_CAPACITY:
        raise ValidationFailed(FieldError("capacity", "integer", min=0, max=MAX_CAPACITY))
    start = start.astimezone(UTC)
    now = core.clock.now()
    async with core.sessions() as session, session.begin():
        slot = await session.scalar(
            select(m.Slot)
            .where(m.Slot.calendar_id == calendar_id, m.Slot.starts_at == start)
            .with_for_update()
        )
        if slot is None:
            raise NotFound("slot", start.isoformat())
        if slot.ends_at <= now:
            raise ValidationFailed(FieldError("start", "in_past"))
        old = slot.capacity
        changed = (
            await session.execute(
                update(m.Slot)
                .where(m.Slot.id == slot.id, m.Slot.booked <= capacity)
                .values(capacity=capacity, capacity_overridden=True)
                .returning(m.Slot.booked)
                .execution_options(synchronize_session=False)
            )
        ).first()
        if changed is None:
            booked = await session.scalar(select(m.Slot.booked).where(m.Slot.id == slot.id))
            raise CapacityConflict(booked if booked is not None else slot.booked)
        await session.execute(
            insert(m.AuditEvent),
            dict(
                at=now,
                actor=actor.name,
                action="slot.capacity",
                booking_id=None,
                request_id=actor.request_id,
                details={"calendar_id": calendar_id, "start": start.isoformat(),
                         "from": old, "to": capacity},
            ),
        )  # fmt: skip
        state = SlotState(calendar_id, slot.starts_at, slot.ends_at, capacity, changed[0], True)
    await _follow_in_redis(core, calendar.location_id)
    return state


async def _follow_in_redis(core: Any, location_id: str) -> None:
    try:
        await core.rebuild_counters([location_id])
    except RedisError:
        log.warning("counters not rebuilt after a capacity change", extra={"location": location_id})
        return
    core.changes.forget(location_id)  # this process reads the new counters at once
