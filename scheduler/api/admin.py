"""Admin views of the outbox: failed messages and a retry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import PathParameter, QueryParameter

from scheduler.api.auth import KEY_REQUIRED, require
from scheduler.api.params import screened
from scheduler.api.problems import problem_responses
from scheduler.booking import models as m
from scheduler.booking import notifications
from scheduler.booking.core import Core


class NotificationOut(msgspec.Struct):
    id: int
    kind: str
    status: str
    due_at: datetime
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    reference: str | None
    message_id: str


def _out(row: m.Notification, reference: str | None) -> NotificationOut:
    ref = f"{reference[:4]}-{reference[4:]}" if reference else None
    return NotificationOut(
        row.id, row.kind, row.status, row.due_at, row.attempts, row.last_error, row.sent_at, ref,
        row.message_id,
    )  # fmt: skip


class NotificationsController(Controller):
    path = "/admin/notifications"
    before_request = screened
    tags = ["admin"]
    guards = [require(m.Role.ADMIN)]
    security = KEY_REQUIRED

    @get(
        "/",
        operation_id="listNotifications",
        summary="Messages and their outcome",
        responses=problem_responses(401, 403, 422),
    )
    async def list_rows(
        self,
        request: Request[Any, Any, Any],
        status: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> list[NotificationOut]:
        core: Core = request.app.state.core
        async with core.sessions() as session:
            rows = await notifications.list_notifications(session, status)
        return [_out(row, reference) for row, reference in rows]

    @post(
        "/{notification_id:int}/retry",
        operation_id="retryNotification",
        summary="Send a failed message again",
        status_code=200,
        responses=problem_responses(401, 403, 404, 422),
    )
    async def retry(
        self,
        request: Request[Any, Any, Any],
        notification_id: Annotated[int, PathParameter(ge=1, le=2**31 - 1)],  # an SQL INTEGER
    ) -> NotificationOut:
        core: Core = request.app.state.core
        async with core.sessions() as session, session.begin():
            row = await notifications.retry(session, notification_id, core.clock.now())
        return _out(row, None)
