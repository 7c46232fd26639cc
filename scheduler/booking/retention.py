"""Retention: citizens' personal data is erased a set number of days after the appointment.

Erasing keeps what statistics need (service, times, channel, status) and removes names, birth
dates, postcodes, contact data and the person keys; the booking's person claims go too, and
pending messages are dropped (there is nobody to send them to any more).

Waiting-list entries keep their personal data while the person waits or has an offer open. An
entry that ended (``booked``, ``expired``, ``withdrawn``) is erased the same number of days
after it ended (``updated_at``); an entry still waiting when its campaign's window has closed
ends as ``withdrawn`` first (:func:`end_closed_waitlists`, also run by the waiting-list job so
the person sees it promptly) and is erased that many days later. An erased entry keeps its
campaign, status, channel and times. Its ``waitlist_keys`` rows go as soon as it ends.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.errors import NotFound

log = logging.getLogger("scheduler.retention")

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
W = m.WaitlistEntry
WS = m.WaitlistStatus
WAITLIST_ERASED = {k: v for k, v in ERASED.items() if k != "name_key"}
ENDED = (WS.BOOKED.value, WS.EXPIRED.value, WS.WITHDRAWN.value)
BATCH = 5000


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
            .limit(BATCH)
        )
    )
    erased = await _erase(session, ids, now)
    entries = await erase_waitlists(session, now, retention_days)
    if entries:
        log.info("waiting-list entries erased", extra={"entries": entries})
    return erased


async def end_closed_waitlists(session: AsyncSession, now: datetime) -> int:
    """Entries still waiting on a campaign whose window has closed leave its list
    (``withdrawn``; an offer run's claim only once its lease ran out). Their keys go."""
    closed = select(m.Campaign.id).where(
        m.Campaign.closes_at.is_not(None), m.Campaign.closes_at < now
    )
    waiting = or_(
        W.status == WS.WAITING.value, (W.status == WS.OFFERING.value) & (W.claim_until < now)
    )
    ended = await session.execute(
        update(W)
        .where(W.campaign_id.in_(closed), waiting)
        .values(status=WS.WITHDRAWN.value, claim_token=None, claim_until=None, updated_at=now)
        .returning(W.id)
        .execution_options(synchronize_session=False)
    )
    count = len(ended.all())
    if count:
        await _drop_ended_keys(session)
    return count


async def erase_waitlists(session: AsyncSession, now: datetime, retention_days: int) -> int:
    """Erase the personal data of waiting-list entries that ended more than ``retention_days``
    ago (entries of closed campaigns end here first)."""
    await end_closed_waitlists(session, now)
    cutoff = now - timedelta(days=retention_days)
    ids = list(
        await session.scalars(
            select(W.id)
            .where(
                W.status.in_(ENDED),
                W.updated_at < cutoff,
                or_(
                    W.attendee_name.is_not(None),
                    W.attendee_birth_date.is_not(None),
                    W.attendee_postcode.is_not(None),
                    W.contact_name.is_not(None),
                    W.contact_email.is_not(None),
                    W.contact_phone.is_not(None),
                ),
            )
            .order_by(W.id)
            .limit(BATCH)
        )
    )
    if ids:
        await session.execute(
            update(W)
            .where(W.id.in_(ids))
            .values(**WAITLIST_ERASED)
            .execution_options(synchronize_session=False)
        )
        await _drop_ended_keys(session)
    return len(ids)


async def _drop_ended_keys(session: AsyncSession) -> None:
    """The one-entry-per-person keys of entries that no longer wait (so the person may join
    again)."""
    await session.execute(
        delete(m.WaitlistKey).where(
            m.WaitlistKey.entry_id.in_(select(W.id).where(W.status.in_(ENDED)))
        )
    )


async def erase_reference(session: AsyncSession, reference: str, now: datetime) -> None:
    """Erase one booking's personal data on request (GDPR Art. 17)."""
    code = codes.parse_reference(reference)
    booking_id = None
    if code is not None:
        booking_id = await session.scalar(select(m.Booking.id).where(m.Booking.reference == code))
    if booking_id is None:
        raise NotFound("booking", reference)
    await _erase(session, [booking_id], now)
