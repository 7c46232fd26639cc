"""Feed tokens and the bookings a calendar's subscription feed shows.

A feed token (``ft_<43 url-safe characters>``, 256 bits) opens one calendar's feed; only its
SHA-256 is stored. A wrong or revoked token is "not found", exactly like an unknown calendar.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import models as m
from scheduler.booking.codes import stored_digest
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed


async def create_token(
    session: AsyncSession, calendar_id: str, name: str, known: set[str], now: datetime
) -> tuple[m.FeedToken, str]:
    if calendar_id not in known:
        raise ValidationFailed(FieldError("calendar_id", "unknown_calendar", ident=calendar_id))
    if len(name) > 200:
        raise ValidationFailed(FieldError("name", "length", min=0, max=200))
    token = "ft_" + secrets.token_urlsafe(32)
    row = m.FeedToken(
        id=secrets.token_hex(6),
        calendar_id=calendar_id,
        name=name.strip(),
        token_hash=stored_digest(token),
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row, token


async def list_tokens(session: AsyncSession) -> list[m.FeedToken]:
    return list(await session.scalars(select(m.FeedToken).order_by(m.FeedToken.created_at)))


async def revoke_token(session: AsyncSession, token_id: str, now: datetime) -> m.FeedToken:
    row = await session.get(m.FeedToken, token_id)
    if row is None or row.revoked_at is not None:
        raise NotFound("feed_token", token_id)
    row.revoked_at = now
    await session.flush()
    return row


async def check_token(session: AsyncSession, calendar_id: str, token: str | None) -> None:
    """NotFound unless ``token`` is a live token of ``calendar_id``."""
    if not token or len(token) > 100:
        raise NotFound("calendar", calendar_id)
    row = await session.scalar(
        select(m.FeedToken).where(m.FeedToken.token_hash == stored_digest(token))
    )
    if (
        row is None
        or row.revoked_at is not None
        or not hmac.compare_digest(row.calendar_id, calendar_id)
    ):
        raise NotFound("calendar", calendar_id)


@dataclass(frozen=True, slots=True)
class FeedState:
    """What a feed's text depends on; equal states mean an equal feed (the ETag)."""

    count: int
    last_change: datetime | None
    sequence_sum: int

    def etag(self, calendar_id: str, privacy: str, window_start: datetime) -> str:
        raw = (
            f"{calendar_id}|{privacy}|{window_start.date()}|{self.count}|"
            f"{self.last_change.isoformat() if self.last_change else '-'}|{self.sequence_sum}"
        )
        return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


def _of_calendar(calendar_id: str, first: datetime, last: datetime):  # type: ignore[no-untyped-def]
    booked_here = (
        select(m.BookingSlot.booking_id)
        .join(m.Slot, m.Slot.id == m.BookingSlot.slot_id)
        .where(m.Slot.calendar_id == calendar_id)
    )
    return (
        m.Booking.id.in_(booked_here),
        m.Booking.starts_at >= first,
        m.Booking.starts_at < last,
    )


@dataclass(frozen=True, slots=True)
class FeedBooking:
    id: str
    reference: str
    status: str
    starts_at: datetime
    ends_at: datetime
    updated_at: datetime
    sequence: int
    attendee_name: str | None
    service_ids: list[str]
    rendered: bytes | None  # the cached VEVENT text, if it matches this sequence and privacy
    # every appointment: (service ids, start, end, calendar ids); a series has two
    visits: tuple[tuple[list[str], datetime, datetime, list[str]], ...] = ()


async def feed_index(
    session: AsyncSession, calendar_id: str, first: datetime, last: datetime
) -> tuple[FeedState, list[tuple[str, int]]]:
    """The feed's state and (booking id, sequence) of every booking it shows, in feed order:
    one query."""
    query = (
        select(m.Booking.id, m.Booking.sequence, m.Booking.updated_at)
        .where(*_of_calendar(calendar_id, first, last))
        .order_by(m.Booking.starts_at, m.Booking.id)
    )
    rows = (await session.execute(query)).all()
    state = FeedState(
        len(rows),
        max((r[2] for r in rows), default=None),
        sum(r[1] for r in rows),
    )
    return state, [(r[0], r[1]) for r in rows]


async def feed_bookings(
    session: AsyncSession,
    calendar_id: str,
    privacy: str,
    first: datetime,
    last: datetime,
    only: list[str] | None = None,
) -> list[FeedBooking]:
    """The bookings the feed shows (``only`` these ids, if given), with their stored text."""
    query = (
        select(
            m.Booking.id,
            m.Booking.reference,
            m.Booking.status,
            m.Booking.starts_at,
            m.Booking.ends_at,
            m.Booking.updated_at,
            m.Booking.sequence,
            m.Booking.attendee_name,
            m.Appointment.service_ids,
            m.RenderedEvent.sequence,
            m.RenderedEvent.body,
            m.Appointment.starts_at,
            m.Appointment.ends_at,
            m.Appointment.calendar_ids,
        )
        .join(m.Appointment, m.Appointment.booking_id == m.Booking.id)
        .outerjoin(
            m.RenderedEvent,
            (m.RenderedEvent.booking_id == m.Booking.id)
            & (m.RenderedEvent.calendar_id == calendar_id)
            & (m.RenderedEvent.privacy == privacy),
        )
        .where(*_of_calendar(calendar_id, first, last))
        .order_by(m.Booking.starts_at, m.Booking.id, m.Appointment.position)
    )
    if only is not None:
        query = query.where(m.Booking.id.in_(only))
    out: dict[str, FeedBooking] = {}
    for row in await session.execute(query):
        visit = (list(row[8]), row[11], row[12], list(row[13]))
        known = out.get(row[0])
        if known is not None:  # a later appointment of the same booking
            out[row[0]] = dataclasses.replace(known, visits=(*known.visits, visit))
            continue
        rendered = row[10] if row[9] == row[6] else None
        out[row[0]] = FeedBooking(*row[:8], list(row[8]), rendered, (visit,))  # type: ignore[arg-type]
    return list(out.values())


async def keep_rendered(
    session: AsyncSession, calendar_id: str, privacy: str, items: list[tuple[str, int, bytes]]
) -> None:
    """Store freshly rendered events (booking id, sequence, text) for the next request.
    Best effort: a concurrent request storing the same events wins. Caller commits."""
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        await session.execute(
            delete(m.RenderedEvent).where(
                m.RenderedEvent.calendar_id == calendar_id,
                m.RenderedEvent.privacy == privacy,
                m.RenderedEvent.booking_id.in_([booking_id for booking_id, _, _ in chunk]),
            )
        )
        await session.execute(
            insert(m.RenderedEvent),
            [
                {"booking_id": b, "calendar_id": calendar_id, "privacy": privacy,
                 "sequence": n, "body": body}
                for b, n, body in chunk
            ],
        )  # fmt: skip


def summary_for(service_names: list[str], attendee: str | None, privacy: str) -> str:
    """What a staff feed shows of a booking: never birth date or contact data."""
    what = ", ".join(service_names)
    if not attendee or privacy == m.FeedPrivacy.SERVICE:
        return what
    if privacy == m.FeedPrivacy.INITIALS:
        initials = " ".join(f"{part[0]}." for part in attendee.split() if part)
        return f"{what} – {initials}"
    return f"{what} – {attendee}"


def window(now: datetime, horizon_days: int) -> tuple[datetime, datetime]:
    """From 30 days back to the horizon; days start at midnight UTC so the ETag is stable."""
    start = (now - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, now + timedelta(days=horizon_days + 1)
