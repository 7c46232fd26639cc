"""Holds and bookings: hold a slot, confirm it (or book in one step), read, cancel, reschedule.

Every POST accepts ``Idempotency-Key``: the same key and body replay the first answer; the same
key with another body is 422 ``idempotency_key_reused``.
"""

from __future__ import annotations

import contextlib
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions import NotAuthorizedException
from litestar.openapi.spec import Link
from litestar.params import PathParameter

from scheduler.api.auth import KEY_OPTIONAL, bearer, current_principal
from scheduler.api.params import EMAIL_OR_EMPTY, MOMENT_FORMAT, parse_moment, screened
from scheduler.api.problems import problem_responses
from scheduler.api.schemas import CLOSED, VISIBLE_TEXT, operation_extras, strict_body
from scheduler.booking import codes
from scheduler.booking import idempotency as idem
from scheduler.booking import models as m
from scheduler.booking.apikeys import Principal
from scheduler.booking.bookings import (
    Actor,
    BookingRequest,
    BookingService,
    BookingView,
    Person,
)
from scheduler.booking.core import Core
from scheduler.booking.errors import FieldError, Forbidden, NotFound, ValidationFailed
from scheduler.booking.holds import appointments_of
from scheduler.booking.idempotency import IdempotencyKey, Replay
from scheduler.booking.ratelimit import RateLimiter

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=VISIBLE_TEXT)]
# an e-mail address, or empty for none
Email = Annotated[str, msgspec.Meta(max_length=254, extra_json_schema={"extra": EMAIL_OR_EMPTY})]
Phone = Annotated[str, msgspec.Meta(max_length=32)]
Slug = Annotated[str, msgspec.Meta(max_length=64)]
# a moment with its offset, as the slots list gives starts
Moment = Annotated[
    str,
    msgspec.Meta(
        max_length=40,
        extra_json_schema={"extra": MOMENT_FORMAT, "examples": ["2026-11-30T09:00:00+01:00"]},
    ),
]


class PersonIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email | None = None
    phone: Phone | None = None
    birth_date: date | None = None
    postcode: Annotated[str, msgspec.Meta(pattern=r"^\d{5}$")] | None = None


StrictPerson = Annotated[PersonIn, CLOSED]  # unknown fields are 422, and the schema says so


class HoldCreate(msgspec.Struct, forbid_unknown_fields=True):
    start: Moment
    service_id: Slug | None = None
    service_ids: Annotated[list[Slug], msgspec.Meta(max_length=5)] | None = None
    seats: Annotated[int, msgspec.Meta(ge=1, le=20)] = 1
    channel: Literal["online", "phone", "counter"] | None = None
    # a campaign's services: who is coming (eligibility is judged on the appointment's day)
    citizen: StrictPerson | None = None
    # a campaign's first dose with its second dose, in one hold
    series: bool = False
    second_start: Moment | None = None


class AppointmentOut(msgspec.Struct):
    service_id: str
    start: str
    end: str


class HoldOut(msgspec.Struct):
    hold_id: str
    expires_at: str
    appointments: list[AppointmentOut]


class BookingCreate(msgspec.Struct, forbid_unknown_fields=True):
    citizen: StrictPerson
    hold_id: Annotated[str, msgspec.Meta(max_length=150)] | None = None
    service_id: Slug | None = None
    service_ids: Annotated[list[Slug], msgspec.Meta(max_length=5)] | None = None
    start: Moment | None = None
    seats: Annotated[int, msgspec.Meta(ge=1, le=20)] = 1
    contact: StrictPerson | None = None
    channel: Literal["online", "phone", "counter"] | None = None
    consent: bool = False
    language: Literal["de", "en"] | None = None
    series: bool = False
    second_start: Moment | None = None


class Reschedule(msgspec.Struct, forbid_unknown_fields=True):
    """A held visit (``hold_id``), or the new start in one step (``start``; of a series also
    ``second_start``, or only ``second_start`` to move the second dose)."""

    hold_id: Annotated[str, msgspec.Meta(max_length=150)] | None = None
    start: Moment | None = None
    second_start: Moment | None = None


class BookedAppointment(msgspec.Struct):
    service_id: str
    start: str
    end: str
    calendar_ids: list[str]


class PersonOut(msgspec.Struct, omit_defaults=True):
    name: str | None
    email: str | None = None
    phone: str | None = None
    birth_date: date | None = None
    postcode: str | None = None


# a pending booking's deadline, in the location's zone
PendingUntil = Annotated[
    str,
    msgspec.Meta(
        description=(
            "Only with `status` `pending`: the booking waits for its e-mail opt-in (or the "
            "answer to a waiting-list offer) until this moment and lapses then, its seats free "
            "again. `POST /bookings/{reference}/confirm` confirms it."
        ),
        examples=["2026-11-23T07:30:00+01:00"],
    ),
]


class BookingOut(msgspec.Struct, omit_defaults=True):
    """A booking. ``status`` ``pending``: its seats are taken, but it waits for the e-mail
    opt-in (the link in the message sent to the contact address; its service asks for one)
    or for the answer to a waiting-list offer, until ``pending_until``, and lapses then
    (``POST /bookings/{reference}/confirm`` confirms it). Reminders follow the confirmation."""

    reference: str
    status: str
    channel: str
    service_ids: list[str]
    start: str
    end: str
    appointments: list[BookedAppointment]
    citizen: PersonOut
    contact: PersonOut | None = None
    location_id: str = ""
    manage_token: str | None = None
    spelled_reference: str | None = None
    pending_until: PendingUntil | None = None


_encoder = msgspec.json.Encoder()


def _service(request: Request[Any, Any, Any]) -> BookingService:
    return request.app.state.bookings  # type: ignore[no-any-return]


def _core(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


def limiter(request: Request[Any, Any, Any]) -> RateLimiter:
    return request.app.state.rate_limiter  # type: ignore[no-any-return]


def client_address(request: Request[Any, Any, Any]) -> str | None:
    """The address abuse limits count: the TCP peer as the ASGI server reports it. Behind a
    reverse proxy that is the proxy, unless the server trusts its forwarded headers (uvicorn
    does for 127.0.0.1 and ::1, or the addresses in ``FORWARDED_ALLOW_IPS``)."""
    return request.client.host if request.client else None


async def _limit_hold(
    request: Request[Any, Any, Any], principal: Principal | None, citizen: PersonIn | None
) -> None:
    """Anonymous holds count per address and per person; API keys are never limited."""
    if principal is not None:
        return
    persons: list[str] = []
    if citizen is not None:
        persons = codes.person_keys(
            _core(request).secret_key, email=citizen.email, phone=citizen.phone,
            name=citizen.name, birth_date=citizen.birth_date,
        )  # fmt: skip
    await limiter(request).check_hold(client_address(request), persons)


def _service_ids(service_id: str | None, service_ids: list[str] | None) -> list[str]:
    if service_ids:
        if service_id is not None:
            raise ValidationFailed(FieldError("service_ids", "either_or"))
        return list(service_ids)
    if service_id is None:
        raise ValidationFailed(FieldError("service_id", "required"))
    return [service_id]


def _second_start(series: bool, value: str | None) -> datetime | None:
    if value is None:
        return None
    if not series:
        raise ValidationFailed(FieldError("second_start", "series_only"))
    return parse_moment("second_start", value)


def _channel(requested: str | None, principal: Principal | None) -> str:
    """Anonymous callers book online; ``phone`` needs an agent key, ``counter`` agent or staff."""
    role = principal.role if principal else None
    channel = requested or ("phone" if role is m.Role.AGENT else "online")
    if channel == "phone" and role not in (m.Role.AGENT, m.Role.ADMIN):
        raise Forbidden()
    if channel == "counter" and role not in (m.Role.AGENT, m.Role.STAFF, m.Role.ADMIN):
        raise Forbidden()
    return channel


def _local(moment: datetime, core: Core, location_id: str) -> str:
    return moment.astimezone(core.catalog.locations[location_id].tz).isoformat(timespec="seconds")


def _parts(
    core: Core, service_ids: list[str], start: datetime
) -> list[tuple[str, datetime, datetime]]:
    out = []
    cursor = start
    for service_id in service_ids:
        service = core.catalog.services[service_id]
        end = cursor + timedelta(minutes=service.duration_minutes)
        out.append((service_id, cursor, end))
        cursor = end
    return out


def booking_out(
    core: Core, booking: BookingView | m.Booking, *, token: str | None = None, spell: bool = False
) -> BookingOut:
    if isinstance(booking, BookingView):
        appointments = [
            (a.service_ids, a.start, a.end, a.calendar_ids) for a in booking.appointments
        ]
        citizen = booking.citizen
        contact = booking.contact
        citizen_out = PersonOut(citizen.name, None if contact else citizen.email,
                                None if contact else citizen.phone, citizen.birth_date,
                                citizen.postcode)  # fmt: skip
        contact_out = PersonOut(contact.name, contact.email, contact.phone) if contact else None
        start, end = booking.start, booking.end
        pending_until = booking.pending_until
    else:
        appointments = [
            (list(a.service_ids), a.starts_at, a.ends_at, list(a.calendar_ids))
            for a in booking.appointments
        ]
        separate = booking.contact_name is not None
        citizen_out = PersonOut(
            booking.attendee_name,
            None if separate else booking.contact_email,
            None if separate else booking.contact_phone,
            booking.attendee_birth_date,
            booking.attendee_postcode,
        )
        contact_out = (
            PersonOut(booking.contact_name, booking.contact_email, booking.contact_phone)
            if separate
            else None
        )
        start, end = booking.starts_at, booking.ends_at
        pending_until = booking.pending_until
    location_id = booking.location_id
    rows = []
    service_ids: list[str] = []
    for ids, a_start, _a_end, calendar_ids in appointments:
        for service_id, s, e in _parts(core, ids, a_start):
            service_ids.append(service_id)
            rows.append(
                BookedAppointment(
                    service_id, _local(s, core, location_id), _local(e, core, location_id),
                    calendar_ids,
                )
            )  # fmt: skip
    reference = codes.format_reference(booking.reference)
    return BookingOut(
        reference=reference,
        status=booking.status,
        channel=booking.channel,
        service_ids=service_ids,
        start=_local(start, core, location_id),
        end=_local(end, core, location_id),
        appointments=rows,
        citizen=citizen_out,
        contact=contact_out,
        location_id=location_id,
        manage_token=token,
        spelled_reference=codes.spell(booking.reference) if spell else None,
        pending_until=(
            _local(pending_until, core, location_id)
            if pending_until is not None and booking.status == m.BookingStatus.PENDING.value
            else None
        ),
    )


def _person(data: PersonIn | None) -> Person | None:
    if data is None:
        return None
    return Person(data.name, data.email, data.phone, data.birth_date, data.postcode)


async def _idempotency(
    request: Request[Any, Any, Any], principal: Principal | None
) -> IdempotencyKey | None:
    client_key = request.headers.get("idempotency-key")
    if client_key is None:
        return None
    if not 1 <= len(client_key) <= 255:
        raise ValidationFailed(FieldError("Idempotency-Key", "length", min=1, max=255))
    body = await request.body()
    caller = principal.key_id if principal else "anonymous"
    return IdempotencyKey.of(caller, client_key, request.method, request.url.path, body)


def _actor(request: Request[Any, Any, Any], principal: Principal | None) -> Actor:
    return Actor(
        principal.key_id if principal else None,
        principal.role.value if principal else None,
        request.scope.get("state", {}).get("request_id"),
    )


async def authorized_booking(
    request: Request[Any, Any, Any], reference: str, *, query_token: str | None = None
) -> m.Booking:
    """The booking, if the caller may see it: its manage token (as Bearer, or ``?token=`` where
    a link must carry it), or an agent/admin key, or a staff key with one of its calendars.
    Anything else is the same 404 as a missing booking."""
    service = _service(request)
    secret = bearer(request) or query_token
    if secret is None:
        raise NotFound("booking", reference)
    principal = None
    if secret.startswith("sk_"):
        try:
            principal = await current_principal(request)
        except NotAuthorizedException:
            # An unknown or revoked key is 401, as on every guarded route, and no token
            # failure; unless it is this booking's manage token (1 in 2^18 start with "sk_").
            service = _service(request)
            with contextlib.suppress(NotFound):
                booking = await service.find(reference)
                if service.token_matches(booking, secret):
                    request.scope.setdefault("state", {})["principal"] = None
                    return booking
            raise
    if principal is None:
        return await _booking_by_token(request, reference, secret)
    booking = await service.find(reference)
    if principal.role in (m.Role.AGENT, m.Role.ADMIN):
        return booking
    calendars = {c for a in booking.appointments for c in a.calendar_ids}
    if principal.role is m.Role.STAFF and calendars & principal.calendar_ids:
        return booking
    raise NotFound("booking", reference)


async def pending_booking(
    request: Request[Any, Any, Any], reference: str, *, query_token: str | None = None
) -> tuple[m.Booking, bool]:
    """The booking to confirm, and whether the opt-in link's token opened it (else the manage
    token or a key, as :func:`authorized_booking`)."""
    secret = bearer(request) or query_token
    if secret and not secret.startswith("sk_"):
        limits, address = limiter(request), client_address(request)
        await limits.check_token_lookup(address)
        service = _service(request)
        with contextlib.suppress(NotFound):
            booking = await service.find(reference)
            if service.opt_in_matches(booking, secret):
                return booking, True
    return await authorized_booking(request, reference, query_token=query_token), False


async def _booking_by_token(
    request: Request[Any, Any, Any], reference: str, token: str
) -> m.Booking:
    """The booking of a manage token. Failures count against the caller's address; an address
    that failed too often is 429 ``rate_limited`` before its token is even compared."""
    limits, address = limiter(request), client_address(request)
    await limits.check_token_lookup(address)
    service = _service(request)
    try:
        booking = await service.find(reference)
    except NotFound:
        await limits.token_failed(address)
        raise
    if not service.token_matches(booking, token):
        await limits.token_failed(address)
        raise NotFound("booking", reference)
    return booking


class HoldsController(Controller):
    path = "/holds"
    security = KEY_OPTIONAL
    before_request = screened
    tags = ["booking"]

    @post(
        "/",
        operation_id="createHold",
        summary="Hold a slot for a few minutes",
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
        operation_class=operation_extras(
            links={
                201: {
                    "ConfirmHold": Link(
                        operation_id="createBooking",
                        request_body={
                            "hold_id": "$response.body#/hold_id",
                            "series": False,
                        },
                        description="Book what is held (with the citizen's details).",
                    ),
                    "ReleaseHold": Link(
                        operation_id="releaseHold",
                        parameters={"hold_id": "$response.body#/hold_id"},
                    ),
                }
            }
        ),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            HoldCreate,
            strict_body(
                {"service_id": "hund-anmelden", "start": "2026-11-30T09:00:00+01:00"},
                one_of=[["service_id"], ["service_ids"]],
            ),
        ],
    ) -> Response[HoldOut]:
        body = data
        principal = await current_principal(request)
        core = _core(request)
        service = _service(request)
        service_ids = _service_ids(body.service_id, body.service_ids)
        start = parse_moment("start", body.start)
        channel = _channel(body.channel, principal)
        key = await _idempotency(request, principal)
        if key is not None and (earlier := await _earlier(core, key)) is not None:
            return earlier  # type: ignore[return-value]
        second_start = _second_start(body.series, body.second_start)
        await _limit_hold(request, principal, body.citizen)
        hold = await service.hold(
            service_ids, start, body.seats, channel, citizen=_person(body.citizen),
            series=body.series, second_start=second_start,
        )  # fmt: skip
        location_id = hold.location_id
        out = HoldOut(
            hold_id=hold.hold_id,
            expires_at=_local(hold.expires_at, core, location_id),
            appointments=[
                AppointmentOut(sid, _local(s, core, location_id), _local(e, core, location_id))
                for visit in appointments_of(core.catalog, hold.payload, hold.cells)
                for sid, s, e in _parts(core, visit.service_ids, visit.start)
            ],
        )
        return await _answer(core, key, 201, out)  # type: ignore[return-value]

    @delete(
        "/{hold_id:str}",
        operation_id="releaseHold",
        summary="Release a hold",
        status_code=204,
        responses=problem_responses(409, 422, 503),
    )
    async def release(
        self,
        request: Request[Any, Any, Any],
        hold_id: Annotated[str, PathParameter(max_length=150)],
    ) -> None:
        await _service(request).release(hold_id)


class BookingsController(Controller):
    path = "/bookings"
    security = KEY_OPTIONAL
    before_request = screened
    tags = ["booking"]

    @post(
        "/",
        operation_id="createBooking",
        summary="Confirm a hold, or book in one step",
        description=(
            "A citizen's online booking of a service with e-mail opt-in is answered with "
            "`status` `pending` and `pending_until`: it needs a contact e-mail address (else "
            "422 `validation_failed` with an error for `citizen.email` or `contact.email`) and "
            "is confirmed by the link in the message sent there "
            "(`POST /bookings/{reference}/confirm`), or lapses. A citizen's online bookings are "
            "limited per contact e-mail address and phone number at a location (pending ones "
            "count): 409 `limit_reached` with `reason` `email` or `phone` and the `limit`. "
            "Agents' phone and counter bookings are not limited."
        ),
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            BookingCreate,
            strict_body(
                {
                    "service_id": "hund-anmelden",
                    "start": "2026-11-30T09:15:00+01:00",
                    "citizen": {"name": "Erika Mustermann", "email": "erika@example.org"},
                },
                one_of=[["hold_id"], ["service_id", "start"], ["service_ids", "start"]],
            ),
        ],
    ) -> Response[BookingOut]:
        body = data
        principal = await current_principal(request)
        core = _core(request)
        service = _service(request)
        channel = _channel(body.channel, principal)
        language = body.language or (
            "en" if request.headers.get("accept-language", "").startswith("en") else "de"
        )
        booking_request = BookingRequest(
            citizen=_person(body.citizen),  # type: ignore[arg-type]
            contact=_person(body.contact),
            channel=channel,
            language=language,
            consent=body.consent,
        )
        actor = _actor(request, principal)
        key = await _idempotency(request, principal)
        spell = channel == "phone"

        def render(view: BookingView) -> bytes:
            return _encoder.encode(booking_out(core, view, spell=spell))

        if body.hold_id is not None:
            if (
                body.start is not None
                or body.service_id
                or body.service_ids
                or body.series
                or body.second_start is not None
            ):
                raise ValidationFailed(FieldError("hold_id", "either_or"))
            view, replay = await service.confirm(body.hold_id, booking_request, actor, key, render)
        else:
            service_ids = _service_ids(body.service_id, body.service_ids)
            start = parse_moment("start", body.start)
            second_start = _second_start(body.series, body.second_start)
            await _limit_hold(request, principal, body.citizen)
            view, replay = await service.book(
                service_ids, start, body.seats, booking_request, actor, key, render,
                series=body.series, second_start=second_start,
            )  # fmt: skip
        if replay is not None:
            return await _with_token(core, service, replay)  # type: ignore[return-value]
        assert view is not None
        out = booking_out(core, view, token=service.token_for(view), spell=spell)
        return Response(
            out,
            status_code=201,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    @get(
        "/{reference:str}",
        operation_id="getBooking",
        summary="A booking",
        responses=problem_responses(401, 404, 422, 429),
    )
    async def read(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[BookingOut]:
        booking = await authorized_booking(request, reference)
        return Response(
            booking_out(_core(request), booking),
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    @post(
        "/{reference:str}/cancel",
        operation_id="cancelBooking",
        summary="Cancel a booking",
        status_code=200,
        responses=problem_responses(401, 404, 409, 422, 429, 503),
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[BookingOut]:
        booking = await authorized_booking(request, reference)
        principal = await current_principal(request)  # None for a manage token
        core = _core(request)
        key = await _idempotency(request, principal)
        if key is not None and (earlier := await _earlier(core, key)) is not None:
            return earlier  # type: ignore[return-value]
        updated = await _service(request).cancel(booking.id, _actor(request, principal))
        return await _answer(core, key, 200, booking_out(core, updated))  # type: ignore[return-value]

    @post(
        "/{reference:str}/confirm",
        operation_id="confirmBooking",
        summary="Confirm a pending booking (the e-mail opt-in, or a waiting-list offer)",
        description=(
            "A booking of a service with e-mail opt-in, made online by a citizen, is `pending` "
            "until `pending_until`: the message to its contact address links to a page whose "
            "button calls this, with the link's own token (the manage token of the booking "
            "answer does not confirm an opt-in: 403 `forbidden`; an agent key may). Confirmed "
            "in time, it is `confirmed` and the confirmation (with the .ics) and reminders "
            "follow; a booking confirmed already is answered as it is. "
            "Too late (the booking lapsed, its seats are free again) or cancelled: 410 "
            "`opt_in_expired` (`offer_expired` for a waiting-list offer)."
        ),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 410, 422, 429),
    )
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[BookingOut]:
        booking, proven = await pending_booking(request, reference)
        principal = await current_principal(request) if not proven else None
        core = _core(request)
        updated = await _service(request).confirm_pending(
            booking.id, _actor(request, principal), proven=proven
        )
        return Response(
            booking_out(core, updated),
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    @post(
        "/{reference:str}/reschedule",
        operation_id="rescheduleBooking",
        summary="Move a booking: to a held visit, or to a new start in one step",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    )
    async def reschedule(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
        data: Annotated[Reschedule, strict_body({"start": "2026-12-01T09:00:00+01:00"})],
    ) -> Response[BookingOut]:
        body = data
        booking = await authorized_booking(request, reference)
        principal = await current_principal(request)  # None for a manage token
        core = _core(request)
        key = await _idempotency(request, principal)
        if key is not None and (earlier := await _earlier(core, key)) is not None:
            return earlier  # type: ignore[return-value]
        actor = _actor(request, principal)
        if body.hold_id is not None:
            if body.start is not None or body.second_start is not None:
                raise ValidationFailed(FieldError("hold_id", "either_or"))
            updated = await _service(request).reschedule(booking.id, body.hold_id, actor)
        else:
            start = parse_moment("start", body.start) if body.start is not None else None
            second = body.second_start
            second_start = parse_moment("second_start", second) if second is not None else None
            if start is None and second_start is None:
                raise ValidationFailed(FieldError("hold_id", "required"))
            updated = await _service(request).move(
                booking.id, actor, _channel(None, principal),
                start=start, second_start=second_start,
            )  # fmt: skip
        return await _answer(core, key, 200, booking_out(core, updated))  # type: ignore[return-value]


async def _earlier(core: Core, key: IdempotencyKey) -> Response[bytes] | None:
    """The stored answer to this Idempotency-Key, if there is one (422 for another body)."""
    async with core.sessions() as session:
        replay = await idem.lookup(session, key)
    return _replayed(replay) if replay is not None else None


async def _answer(
    core: Core, key: IdempotencyKey | None, status: int, content: msgspec.Struct
) -> Response[bytes]:
    """Encode the answer; with an Idempotency-Key, remember it (or replay a twin's)."""
    body = _encoder.encode(content)
    if key is not None:
        twin = await idem.remember(core.sessions, key, status, body, core.clock.now())
        if twin is not None:
            return _replayed(twin)
    return Response(
        body, status_code=status, media_type="application/json",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )  # fmt: skip


def _replayed(replay: Replay) -> Response[bytes]:
    return Response(
        replay.body,
        status_code=replay.status_code,
        media_type="application/json",
        headers={
            "Idempotent-Replayed": "true",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _with_token(core: Core, service: BookingService, replay: Replay) -> Response[bytes]:
    """A replayed creation answer, with the manage token derived again (it is never stored)."""
    body = msgspec.json.decode(replay.body)
    if isinstance(body, dict) and "reference" in body:
        booking = await service.find(body["reference"])
        body["manage_token"] = service.token_for(booking)
    return Response(
        _encoder.encode(body),
        status_code=replay.status_code,
        media_type="application/json",
        headers={
            "Idempotent-Replayed": "true",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
