"""Admin statistics: bookings by service and channel, cancellations, no-shows, utilisation."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import QueryParameter

from scheduler.api.auth import KEY_REQUIRED, require
from scheduler.api.params import DATE_FORMAT, parse_date, screened
from scheduler.api.problems import problem_responses
from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.booking.stats import Stats, booking_stats


class StatsController(Controller):
    path = "/stats"
    before_request = screened
    tags = ["admin"]
    guards = [require(m.Role.ADMIN)]
    security = KEY_REQUIRED

    @get(
        "/",
        operation_id="getStats",
        summary="Booking statistics per week",
        description=(
            "Between two local dates (inclusive, at most 92 days apart), per ISO week and in "
            "total: visits booked (confirmed, checked in, no-show, completed or cancelled; "
            "pending ones are left out) by service and by channel of those not cancelled, the "
            "online share among those, cancellations, the no-show rate among visits with a known "
            "outcome, and utilisation (booked seats / capacity of the slots; with `service`, of "
            "the calendars that service books). Ratios are 0 to 1, null without a denominator."
        ),
        responses=problem_responses(401, 403, 404, 422),
    )
    async def stats(
        self,
        request: Request[Any, Any, Any],
        from_: Annotated[
            str | None, QueryParameter(name="from", max_length=32, schema_extra=DATE_FORMAT)
        ] = None,
        to: Annotated[str | None, QueryParameter(max_length=32, schema_extra=DATE_FORMAT)] = None,
        service: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Stats:
        core: Core = request.app.state.core
        first = parse_date("from", from_)
        last = parse_date("to", to)
        async with core.sessions() as session:
            return await booking_stats(session, core.catalog, first, last, service)
