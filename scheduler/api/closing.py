"""Closing a calendar for a period, with what happens to the bookings inside (staff, admins)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, post
from litestar.params import PathParameter

from scheduler.api.auth import KEY_REQUIRED, current_principal, own_calendar, require
from scheduler.api.bookings import _actor, _core, _local
from scheduler.api.params import MOMENT_FORMAT, parse_moment, screened
from scheduler.api.problems import problem_responses
from scheduler.api.schemas import VISIBLE_TEXT, strict_body
from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.closing import Policy, close_calendar
from scheduler.booking.errors import FieldError, ValidationFailed

Moment = Annotated[str, msgspec.Meta(max_length=40, extra_json_schema={"extra": MOMENT_FORMAT})]


class ClosureCreate(msgspec.Struct, forbid_unknown_fields=True):
    from_: Moment = msgspec.field(name="from")
    to: Moment
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=300, pattern=VISIBLE_TEXT)]
    policy: Literal["move", "cancel"] = "move"


class ClosureResult(msgspec.Struct, omit_defaults=True):
    reference: str
    outcome: str  # moved | cancelled | not_moved | unchanged
    start: str
    new_start: str | None = None


class ClosureOut(msgspec.Struct):
    closure_id: int
    created: bool
    bookings: list[ClosureResult]


class CloseCalendarController(Controller):
    path = "/calendars/{calendar_id:str}/closures"
    before_request = screened
    tags = ["staff"]
    guards = [require(m.Role.STAFF)]
    security = KEY_REQUIRED

    @post(
        "/",
        operation_id="closeCalendar",
        summary="Close a calendar for a period; move or cancel the bookings inside",
        description=(
            "`from`/`to` with offsets, `reason`, `policy` `move` (to the nearest free start of "
            "the same services, on any calendar of their pools) or `cancel`. Safe to repeat: "
            "the same period is one closure, and a booking already moved is left alone. Each "
            "person gets the message. The answer says what happened to each booking; "
            "`not_moved` ones (no free start) stay and need a call."
        ),
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503),
    )
    async def close(
        self,
        request: Request[Any, Any, Any],
        calendar_id: Annotated[str, PathParameter(max_length=64)],
        data: Annotated[
            ClosureCreate,
            strict_body(
                {
                    "from": "2026-12-24T00:00:00+01:00",
                    "to": "2026-12-25T00:00:00+01:00",
                    "reason": "Betriebsausflug",
                    "policy": "move",
                }
            ),
        ],
    ) -> Response[ClosureOut]:
        core = _core(request)
        principal = await current_principal(request)
        await own_calendar(request, calendar_id)
        try:
            policy = Policy(data.policy)
        except ValueError:
            raise ValidationFailed(FieldError("policy", "one_of", choices="move, cancel")) from None
        report = await close_calendar(
            core,
            request.app.state.bookings,
            calendar_id,
            parse_moment("from", data.from_),
            parse_moment("to", data.to),
            data.reason,
            policy,
            _actor(request, principal),
        )
        location_id = core.catalog.calendars[calendar_id].location_id
        out = ClosureOut(
            report.closure_id,
            report.created,
            [
                ClosureResult(
                    codes.format_reference(r.reference),
                    r.outcome.value,
                    _local(r.start, core, location_id),
                    _local(r.new_start, core, location_id) if r.new_start else None,
                )
                for r in report.results
            ],
        )
        return Response(out, headers={"Cache-Control": "no-store"})
