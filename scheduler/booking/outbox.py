"""Outbox rows: the messages a booking change owes, written in the same transaction.

A new booking owes a confirmation now and a reminder before the appointment for each of the
service's reminder hours (only those still in the future); a cancellation cancels pending
reminders and owes a cancellation notice; a move re-times the reminders and owes a notice.
A waiting-list offer owes the offer now, and a booking waiting for its e-mail opt-in the link
to confirm it; once accepted or confirmed, the confirmation and reminders follow as for a new
booking, and a lapsed offer or opt-in owes nothing more.
Each row has its own stable Message-ID, so a resend after a crash is recognisable.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from scheduler.booking import models as m


class Kind(StrEnum):
    CONFIRMATION = "confirmation"
    REMINDER = "reminder"
    CANCELLATION = "cancellation"
    RESCHEDULE = "reschedule"
    WAITLIST_OFFER = "waitlist_offer"
    OPT_IN = "opt_in"


INSERT = insert(m.Notification)


def message_id(host: str) -> str:
    return f"<{secrets.token_hex(10)}@{host}>"


def _row(
    booking_id: str, kind: Kind, due: datetime, now: datetime, host: str,
    previous_start: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "booking_id": booking_id,
        "kind": kind.value,
        "due_at": due,
        "status": m.NotificationStatus.PENDING.value,
        "attempts": 0,
        "message_id": message_id(host),
        "created_at": now,
        "previous_start": previous_start,
    }


def reminders(
    booking_id: str, start: datetime, hours: tuple[int, ...], now: datetime, host: str
) -> list[dict[str, Any]]:
    out = []
    for h in sorted(set(hours), reverse=True):
        due = start - timedelta(hours=h)
        if due > now:
            out.append(_row(booking_id, Kind.REMINDER, due, now, host))
    return out


def for_new_booking(
    booking_id: str, start: datetime, hours: tuple[int, ...], now: datetime, host: str
) -> list[dict[str, Any]]:
    return [
        _row(booking_id, Kind.CONFIRMATION, now, now, host),
        *reminders(booking_id, start, hours, now, host),
    ]


def waitlist_offer(booking_id: str, now: datetime, host: str) -> dict[str, Any]:
    """The offer of a waiting list's pending booking (its deadline is the booking's)."""
    return _row(booking_id, Kind.WAITLIST_OFFER, now, now, host)


def opt_in(booking_id: str, now: datetime, host: str) -> dict[str, Any]:
    """The link that confirms a booking waiting for its e-mail opt-in (until the booking's
    ``pending_until``)."""
    return _row(booking_id, Kind.OPT_IN, now, now, host)


async def cancel_pending(session: AsyncSession | AsyncConnection, booking_id: str) -> None:
    """Every message of the booking not sent yet (a lapsed offer owes nothing more)."""
    await session.execute(
        update(m.Notification)
        .where(
            m.Notification.booking_id == booking_id,
            m.Notification.status == m.NotificationStatus.PENDING.value,
        )
        .values(status=m.NotificationStatus.CANCELLED.value)
    )


async def cancel_reminders(session: AsyncSession | AsyncConnection, booking_id: str) -> None:
    await session.execute(
        update(m.Notification)
        .where(
            m.Notification.booking_id == booking_id,
            m.Notification.kind == Kind.REMINDER.value,
            m.Notification.status == m.NotificationStatus.PENDING.value,
        )
        .values(status=m.NotificationStatus.CANCELLED.value)
    )


async def on_cancel(
    session: AsyncSession | AsyncConnection, booking_id: str, now: datetime, host: str
) -> None:
    await cancel_reminders(session, booking_id)
    await session.execute(INSERT, [_row(booking_id, Kind.CANCELLATION, now, now, host)])


async def on_move(
    session: AsyncSession | AsyncConnection,
    booking_id: str,
    old_start: datetime | None,
    visits: list[tuple[datetime, tuple[int, ...]]],
    now: datetime,
    host: str,
) -> None:
    """Pending reminders are replaced by ones for the booking's visits (start, reminder hours)
    as they are now; the person gets a notice (``old_start``: the first visit's former start,
    None when only a later visit moved)."""
    await cancel_reminders(session, booking_id)
    rows = [_row(booking_id, Kind.RESCHEDULE, now, now, host, previous_start=old_start)]
    for start, hours in visits:
        rows += reminders(booking_id, start, hours, now, host)
    await session.execute(INSERT, rows)
