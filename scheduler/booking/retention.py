"""Retention: citizens' personal data is erased a set number of days after the appointment.

Erasing keeps what statistics need (service, times, channel, status) and removes names, birth
dates, postcodes, contact data and the person keys; the booking's person claims go too, and
pending messages are dropped (there is nobody to send them to any more).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.errors import NotFound

ERASED = {
    "attendee_name": None,
    "attendee_birth_date": None,
    "attendee_postcode": None,
    "contact_name": None,
    "contact_email": None,
    "contact_phone": None,
    "person_keys": [],
    "name_key": None,
}


async def _erase(session: AsyncSession, booking_ids: list[str], now: datetime) -> int:
    if not booking_ids:
        return 0
    await session.execute(
        update(m.Booking).where(m.Booking.id.in_(booking_ids)).values(erased_at=now, **ERASED)
    )
    await session.execute(delete(m.PersonClaim).where(m.PersonClaim.booking_id.in_(booking_ids)))
    await session.execute(
        update(m.Notification)
        .where(
            m.Notification.booking_id.in_(booking_ids),
            m.Notification.status == m.NotificationStatus.PENDING.value,
        )
        .values(status=m.NotificationStatus.CANCELLED.value)
    )
    await session.execute(
        delete(m.RenderedEvent).where(m.RenderedEvent.booking_id.in_(booking_ids))
    )
    return len(booking_ids)


async def erase_expired(session: AsyncSession, now: datetime, retention_days: int) -> int:
    """Erase every booking whose appointments ended more than ``retention_days`` ago."""
    cutoff = now - timedelta(days=retention_days)
    ids = list(
        await session.scalars(
            select(m.Booking.id)
            .where(
                m.Booking.ends_at < cutoff,
                m.Booking.erased_at.is_(None),
                # a series is kept until its last appointment is over too
                ~exists().where(
                    m.Appointment.booking_id == m.Booking.id, m.Appointment.ends_at >= cutoff
                ),
            )
            .limit(5000)
        )
    )
    return await _erase(session, ids, now)


async def erase_reference(session: AsyncSession, reference: str, now: datetime) -> None:
    """Erase one booking's personal data on request (GDPR Art. 17)."""
    code = codes.parse_reference(reference)
    booking_id = None
    if code is not None:
        booking_id = await session.scalar(select(m.Booking.id).where(m.Booking.reference == code))
    if booking_id is None:
        raise NotFound("booking", reference)
    await _erase(session, [booking_id], now)
