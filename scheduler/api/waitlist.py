"""The waiting list: join a campaign's list; accept an offer (the person by the link's manage
token, or an agent for a caller; as for cancelling, staff of the booking's calendars may too).
Offers themselves are made by the scheduled job."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, post
from litestar.params import JSONBody, PathParameter

from scheduler.api.auth import current_principal
from scheduler.api.bookings import (
    BookingOut,
    PersonIn,
    Slug,
    _actor,
    _core,
    _limit_hold,
    _person,
    authorized_booking,
    booking_out,
)
from scheduler.booking import models as m
from scheduler.booking.bookings import BookingRequest


class WaitlistJoin(msgspec.Struct, forbid_unknown_fields=True):
    service_id: Slug
    citizen: PersonIn
    contact: PersonIn | None = None
    language: Literal["de", "en"] | None = None


class WaitlistEntryOut(msgspec.Struct):
    entry_id: int
    position: int
    status: str
    channel: str


class WaitlistController(Controller):
    path = "/waitlist"
    tags = ["booking"]

    @post(
        "/",
        operation_id="joinWaitlist",
        summary="Join a campaign's waiting list",
        description=(
            "Anyone (an agent's key makes the entry `phone`, a staff key `counter`). The "
            "person must be eligible and hold no series of the campaign; once per person (409 "
            "`limit_reached`). When a series frees up, the first in line gets it offered as a "
            "pending booking."
        ),
    )
    async def join(
        self, request: Request[Any, Any, Any], data: JSONBody[WaitlistJoin]
    ) -> Response[WaitlistEntryOut]:
        principal = await current_principal(request)
        role = principal.role if principal else None
        channel = (
            m.Channel.ONLINE
            if principal is None
            else m.Channel.COUNTER
            if role is m.Role.STAFF
            else m.Channel.PHONE
        )
        await _limit_hold(request, principal, data.citizen)
        language = data.language or (
            "en" if request.headers.get("accept-language", "").startswith("en") else "de"
        )
        joined = await _core(request).waitlist.join(
            data.service_id,
            BookingRequest(
                citizen=_person(data.citizen),  # type: ignore[arg-type]
                contact=_person(data.contact),
                channel=channel.value,
                language=language,
            ),
            _actor(request, principal),
        )
        out = WaitlistEntryOut(joined.entry_id, joined.position, joined.status, joined.channel)
        return Response(out, status_code=201, headers={"Cache-Control": "no-store"})

    @post(
        "/offers/{reference:str}/accept",
        operation_id="acceptWaitlistOffer",
        summary="Take a waiting-list offer",
        description=(
            "The offered booking's manage token (the link in the offer), or an agent key for a "
            "caller. Before the deadline the pending booking becomes confirmed; afterwards 410 "
            "`offer_expired`."
        ),
        status_code=200,
    )
    async def accept(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[BookingOut]:
        booking = await authorized_booking(request, reference)
        principal = await current_principal(request)  # None for a manage token
        core = _core(request)
        accepted = await core.waitlist.accept(booking.id, _actor(request, principal))
        fresh = await request.app.state.bookings.find(accepted.reference)
        return Response(booking_out(core, fresh), headers={"Cache-Control": "no-store"})
