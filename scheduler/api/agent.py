"""The hotline's routes (agent keys; admins pass too) and the admins' audit trail."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter

from scheduler.api.auth import KEY_REQUIRED, current_principal, require
from scheduler.api.bookings import BookingOut, _actor, _core, _local, booking_out
from scheduler.api.params import (
    DATE_QUERY,
    MOMENT_QUERY,
    parse_date,
    parse_int,
    parse_moment,
    screened,
)
from scheduler.api.problems import problem_responses
from scheduler.booking import hotline
from scheduler.booking import models as m


class NextSlotOut(msgspec.Struct):
    service_id: str
    location_id: str
    start: str
    end: str
    free: int


class CallbackOut(msgspec.Struct):
    """An open waiting-list offer to phone through: the person has no e-mail."""

    entry_id: int
    name: str
    phone: str | None
    contact_name: str | None
    language: str
    respond_by: str
    booking: BookingOut


class AuditEventOut(msgspec.Struct):
    at: datetime
    actor: str
    action: str
    request_id: str | None
    details: dict[str, Any]


class AgentController(Controller):
    path = "/agent"
    before_request = screened
    tags = ["hotline"]
    guards = [require(m.Role.AGENT)]
    security = KEY_REQUIRED

    @get(
        "/next-slots",
        operation_id="nextSlots",
        summary="The next free starts for a caller",
        description=(
            "The `limit` (1–50, default 5) earliest starts at or after `after` (default now) of "
            "`service` (repeatable; every service bookable by phone when left out), in "
            "`location` or in every location, with the agent's view of free seats (the phone "
            "share included)."
        ),
        responses=problem_responses(401, 403, 404, 422),
    )
    async def next_slots(
        self,
        request: Request[Any, Any, Any],
        service: Annotated[list[str] | None, QueryParameter(max_items=20)] = None,
        location: Annotated[str | None, QueryParameter(max_length=64)] = None,
        after: Annotated[
            str | None, QueryParameter(max_length=40, schema_extra=MOMENT_QUERY)
        ] = None,
        limit: Annotated[str | None, QueryParameter(max_length=4)] = None,
    ) -> list[NextSlotOut]:
        core = _core(request)
        found = await hotline.next_slots(
            core,
            service_ids=[s for s in service or [] if s],
            location_id=location or None,
            after=parse_moment("after", after) if after else core.clock.now(),
            limit=parse_int("limit", limit, 5, 1, hotline.MAX_RESULTS),
        )
        return [
            NextSlotOut(
                s.service_id,
                s.location_id,
                _local(s.start, core, s.location_id),
                _local(s.end, core, s.location_id),
                s.free,
            )
            for s in found
        ]

    @get(
        "/bookings",
        operation_id="findCallerBookings",
        summary="A caller's bookings, by code or by name and birth date",
        responses=problem_responses(401, 403, 422),
    )
    async def bookings(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str | None, QueryParameter(max_length=20)] = None,
        name: Annotated[str | None, QueryParameter(max_length=200)] = None,
        birth_date: Annotated[
            str | None, QueryParameter(max_length=10, schema_extra=DATE_QUERY)
        ] = None,
    ) -> Response[list[BookingOut]]:
        core = _core(request)
        found = await hotline.find_bookings(
            core,
            _actor(request, await current_principal(request)),
            reference=reference,
            name=name,
            birth_date=(
                parse_date("birth_date", birth_date, earliest=date(1900, 1, 1))
                if birth_date
                else None
            ),
        )
        return Response(
            [booking_out(core, booking, spell=True) for booking in found],
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/callbacks",
        operation_id="waitlistCallbacks",
        summary="People to phone with a waiting-list offer",
        description=(
            "Open offers to people without e-mail, the earliest deadline first: the offered "
            "appointments (a pending booking) and the deadline. Accept for the caller with "
            "`POST /waitlist/offers/{reference}/accept` and the agent key."
        ),
        responses=problem_responses(401, 403),
    )
    async def callbacks(self, request: Request[Any, Any, Any]) -> Response[list[CallbackOut]]:
        core = _core(request)
        found = await core.waitlist.callbacks()
        return Response(
            [
                CallbackOut(
                    c.entry_id, c.name, c.phone, c.contact_name, c.language,
                    _local(c.deadline, core, c.booking.location_id),
                    booking_out(core, c.booking, spell=True),
                )
                for c in found
            ],
            headers={"Cache-Control": "no-store"},
        )  # fmt: skip


class AuditController(Controller):
    path = "/audit"
    before_request = screened
    tags = ["admin"]
    guards = [require()]
    security = KEY_REQUIRED

    @get(
        "/",
        operation_id="listAuditEvents",
        summary="A booking's audit trail (append-only)",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        booking: Annotated[str, QueryParameter(max_length=20)],
    ) -> list[AuditEventOut]:
        rows = await hotline.audit_events(_core(request), booking)
        return [AuditEventOut(e.at, e.actor, e.action, e.request_id, e.details) for e in rows]
