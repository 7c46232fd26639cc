"""Reading and retrying outbox rows (for admins); no personal data leaves this module."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import models as m
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed

STATUSES = {s.value for s in m.NotificationStatus}


async def list_notifications(
    session: AsyncSession, status: str | None, limit: int = 200
) -> list[tuple[m.Notification, str | None]]:
    """Rows (newest first) with their booking's reference."""
    if status is not None and status not in STATUSES:
        raise ValidationFailed(FieldError("status", "one_of", choices=", ".join(sorted(STATUSES))))
    query = (
        select(m.Notification, m.Booking.reference)
        .outerjoin(m.Booking, m.Booking.id == m.Notification.booking_id)
        .order_by(m.Notification.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(m.Notification.status == status)
    return [(row[0], row[1]) for row in await session.execute(query)]


async def retry(session: AsyncSession, notification_id: int, now: datetime) -> m.Notification:
    """Send a failed (or not yet sent) message again as soon as possible."""
    row = await session.get(m.Notification, notification_id)
    if row is None:
        raise NotFound("notification", str(notification_id))
    if row.status not in (m.NotificationStatus.FAILED.value, m.NotificationStatus.PENDING.value):
        raise ValidationFailed(FieldError("id", "not_retryable", status=row.status))
    await session.execute(
        update(m.Notification)
        .where(m.Notification.id == notification_id)
        .values(status=m.NotificationStatus.PENDING.value, due_at=now, attempts=0, lease_until=None)
    )
    await session.refresh(row)
    return row
