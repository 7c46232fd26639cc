"""The waiting list: join a campaign's list (the answer carries the entry's token, once); see
one's place and leave the list (the entry's token, or an agent/admin key); accept an offer (the
person by the link's manage token, or an agent for a caller; as for cancelling, staff of the
booking's calendars may too); the agents' list of a campaign's entries. Offers themselves are
made by the scheduled job.

Leaving is ``POST /waitlist/{entry_id}/leave`` (like ``POST /bookings/{reference}/cancel``: the
entry stays, ``withdrawn``, and the answer is the entry); while an offer is open it is 409
``offer_pending`` (accept or cancel the offered booking instead)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, get, post, route
from litestar.enums import HttpMethod
from litestar.exceptions import NotAuthorizedException
from litestar.params import PathParameter, QueryParameter

from scheduler.api.auth import KEY_OPTIONAL, KEY_REQUIRED, bearer, current_principal, require
from scheduler.api.bookings import (
    BookingOut,
    Slug,
    StrictPerson,
    _actor,
    _answer,
    _core,
    _earlier,
    _idempotency,
    _limit_hold,
    _local,
    _person,
    authorized_booking,
    booking_out,
    client_address,
    limiter,
)
from scheduler.api.params import parse_int, screened
from scheduler.api.problems import problem_responses
from scheduler.api.schemas import allowing, strict_body
from scheduler.booking import models as m
from scheduler.booking.bookings import BookingRequest
from scheduler.booking.core import Core
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed
from scheduler.booking.waitlist import MAX_PAGE, EntryView

EntryId = Annotated[int, PathParameter(ge=1, le=2**31 - 1)]
STATUSES = ("waiting", "offered", "booked", "expired", "withdrawn")


class WaitlistJoin(msgspec.Struct, forbid_unknown_fields=True):
    service_id: Slug
    citizen: StrictPerson
    contact: StrictPerson | None = None
    language: Literal["de", "en"] | None = None


class WaitlistEntryOut(msgspec.Struct, omit_defaults=True):
    """An entry as its person sees it: ``position`` while waiting (1 = next), the booking
    ``reference`` once offered or booked, ``respond_by`` while an offer is open; ``token``
    only in the answer to joining."""

    entry_id: int
    status: str
    channel: str
    position: int | None = None
    reference: str | None = None
    respond_by: str | None = None
    token: str | None = None


class WaitlistRowOut(msgspec.Struct):
    """An entry in the agents' list (the personal fields are null once erased)."""

    entry_id: int
    position: int | None
    status: str
    channel: str
    created_at: str
    name: str | None
    contact_name: str | None
    email: str | None
    phone: str | None
    language: str
    reference: str | None
    respond_by: str | None


def _moment(core: Core, campaign_id: str, moment: datetime | None) -> str | None:
    if moment is None:
        return None
    campaign = core.catalog.campaigns.get(campaign_id)
    if campaign is None:
        return moment.isoformat(timespec="seconds")
    return _local(moment, core, campaign.location_id)


def entry_out(core: Core, view: EntryView, *, token: str | None = None) -> WaitlistEntryOut:
    return WaitlistEntryOut(
        entry_id=view.entry_id,
        status=view.status,
        channel=view.channel,
        position=view.position,
        reference=view.reference,
        respond_by=_moment(core, view.campaign_id, view.respond_by),
        token=token,
    )


def row_out(core: Core, view: EntryView) -> WaitlistRowOut:
    return WaitlistRowOut(
        entry_id=view.entry_id,
        position=view.position,
        status=view.status,
        channel=view.channel,
        created_at=_moment(core, view.campaign_id, view.created_at) or "",
        name=view.name,
        contact_name=view.contact_name,
        email=view.email,
        phone=view.phone,
        language=view.language,
        reference=view.reference,
        respond_by=_moment(core, view.campaign_id, view.respond_by),
    )


async def authorized_entry(request: Request[Any, Any, Any], entry_id: int) -> EntryView:
    """The entry, if the caller may see it: its token (Bearer), or an agent/admin key. Anything
    else (no token, a wrong one, a booking's manage token, a staff key) is the same 404 as an
    entry that does not exist; failed token look-ups count against the caller's address as
    for manage tokens, and an address that failed too often is 429 before its token is even
    compared."""
    waitlist = _core(request).waitlist
    secret = bearer(request)
    if secret is None:
        raise NotFound("waitlist_entry", str(entry_id))
    if secret.startswith("sk_"):
        try:
            principal = await current_principal(request)
        except NotAuthorizedException:
            # an unknown or revoked key is 401, unless it is this entry's token
            if waitlist.token_matches(entry_id, secret):
                request.scope.setdefault("state", {})["principal"] = None
                return await waitlist.entry(entry_id)
            raise
        if principal is not None and principal.role in (m.Role.AGENT, m.Role.ADMIN):
            return await waitlist.entry(entry_id)
        raise NotFound("waitlist_entry", str(entry_id))
    limits, address = limiter(request), client_address(request)
    await limits.check_token_lookup(address)
    try:
        if not waitlist.token_matches(entry_id, secret):
            raise NotFound("waitlist_entry", str(entry_id))
        return await waitlist.entry(entry_id)
    except NotFound:
        await limits.token_failed(address)
        raise


class WaitlistController(Controller):
    path = "/waitlist"
    before_request = screened
    tags = ["booking"]

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False, sync_to_thread=False)
    def allow(self) -> Response[None]:
        return allowing("GET", "POST")

    @post(
        "/",
        operation_id="joinWaitlist",
        security=KEY_OPTIONAL,
        summary="Join a campaign's waiting list",
        description=(
            "Anyone (an agent's key makes the entry `phone`, a staff key `counter`). The "
            "person must be eligible and hold no series of the campaign; once per person (409 "
            "`limit_reached`). When a series frees up, the first in line gets it offered as a "
            "pending booking."
        ),
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    )
    async def join(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            WaitlistJoin,
            strict_body(
                {
                    "service_id": "impfung-erstimpfung",
                    "citizen": {
                        "name": "Erich Beispiel",
                        "birth_date": "1940-03-01",
                        "postcode": "39517",
                        "phone": "+49 3935 123456",
                    },
                }
            ),
        ],
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
        out = WaitlistEntryOut(
            joined.entry_id,
            joined.status,
            joined.channel,
            position=joined.position,
            token=_core(request).waitlist.token_for(joined.entry_id),
        )
        return Response(
            out,
            status_code=201,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    @get(
        "/",
        operation_id="listWaitlist",
        summary="A campaign's waiting list, in line order",
        description=(
            "Agents and admins. The entries of `campaign` in the order they are served, "
            "`limit` (1–200, default 50) at a time after entry `after` (the last `entry_id` of "
            'the previous page; a `Link: rel="next"` header names the next page); `status` '
            "(`waiting`, `offered`, `booked`, `expired`, `withdrawn`) filters. `position` is "
            "the place in line of those waiting. Name and contact to phone people back."
        ),
        guards=[require(m.Role.AGENT)],
        security=KEY_REQUIRED,
        tags=["hotline"],
        responses=problem_responses(401, 403, 404, 422),
    )
    async def list_entries(
        self,
        request: Request[Any, Any, Any],
        campaign: Annotated[str, QueryParameter(max_length=64)],
        status: Annotated[str | None, QueryParameter(max_length=16)] = None,
        after: Annotated[str | None, QueryParameter(max_length=12)] = None,
        limit: Annotated[str | None, QueryParameter(max_length=4)] = None,
    ) -> Response[list[WaitlistRowOut]]:
        core = _core(request)
        if campaign not in core.catalog.campaigns:
            raise NotFound("campaign", campaign)
        if status is not None and status not in STATUSES:
            raise ValidationFailed(FieldError("status", "one_of", choices=", ".join(STATUSES)))
        size = parse_int("limit", limit, 50, 1, MAX_PAGE)
        found = await core.waitlist.entries(
            campaign,
            status=status,
            after=parse_int("after", after, 0, 0, 2**31 - 1),
            limit=size,
        )
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if len(found) == size:
            query = {"campaign": campaign, "after": str(found[-1].entry_id), "limit": str(size)}
            if status is not None:
                query["status"] = status
            headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
        return Response([row_out(core, v) for v in found], headers=headers)

    @get(
        "/{entry_id:int}",
        operation_id="getWaitlistEntry",
        security=KEY_OPTIONAL,
        summary="One's place on the waiting list",
        description=(
            "The entry's token (from the answer to joining) as Bearer, or an agent/admin key. "
            "A wrong token is the same 404 as an entry that does not exist."
        ),
        responses=problem_responses(401, 404, 422, 429),
    )
    async def read(
        self, request: Request[Any, Any, Any], entry_id: EntryId
    ) -> Response[WaitlistEntryOut]:
        view = await authorized_entry(request, entry_id)
        return Response(
            entry_out(_core(request), view),
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    @post(
        "/{entry_id:int}/leave",
        operation_id="leaveWaitlist",
        security=KEY_OPTIONAL,
        summary="Leave the waiting list",
        description=(
            "The entry's token, or an agent/admin key. The entry ends as `withdrawn` (the "
            "person may join again); leaving again changes nothing. While an offer is open, 409 "
            "`offer_pending`: accept or cancel the offered booking (cancelling it also ends "
            "the entry)."
        ),
        status_code=200,
        responses=problem_responses(401, 404, 409, 422, 429),
    )
    async def leave(
        self, request: Request[Any, Any, Any], entry_id: EntryId
    ) -> Response[WaitlistEntryOut]:
        await authorized_entry(request, entry_id)
        principal = await current_principal(request)  # None for the entry's token
        core = _core(request)
        key = await _idempotency(request, principal)
        if key is not None and (earlier := await _earlier(core, key)) is not None:
            return earlier  # type: ignore[return-value]
        view = await core.waitlist.leave(entry_id, _actor(request, principal))
        return await _answer(core, key, 200, entry_out(core, view))  # type: ignore[return-value]

    @post(
        "/offers/{reference:str}/accept",
        operation_id="acceptWaitlistOffer",
        security=KEY_OPTIONAL,
        summary="Take a waiting-list offer",
        description=(
            "The offered booking's manage token (the link in the offer), or an agent key for a "
            "caller. Before the deadline the pending booking becomes confirmed; afterwards 410 "
            "`offer_expired`."
        ),
        status_code=200,
        responses=problem_responses(401, 404, 409, 410, 422, 429, 503),
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
        return Response(
            booking_out(core, fresh),
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
