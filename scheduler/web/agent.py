"""The hotline agents' console: one screen for a call.

``/agent`` shows the search (by booking code, or by name and birth date), the next free time of
every service bookable by phone (or the next times of one), and the call-back list (waiting-list
offers to people without e-mail). Booking for a caller holds the chosen time on the phone
channel and confirms it with the caller's details: the same hold and confirm as
``POST /api/v1/holds`` and ``POST /api/v1/bookings`` with an agent key. A campaign's service
first asks for the birth date and postcode and holds only once the booking core has judged
them (window, age on the appointment's day, postcode, places, one series per person); the
confirm judges them again. The booking's page reads the code back (spelled, as the API's
``spelled_reference``), says whether the person gets e-mail or must be told by phone, and
moves, cancels, or accepts a waiting-list offer.

Every form posts (with the CSRF token) and answers with a 303 to the page that shows the
result; the search by name and birth date answers with its result page directly, so no name or
birth date ever appears in a URL. Logged in with an agent or admin key (``session``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from litestar.response import Template

from scheduler.api.params import parse_moment
from scheduler.api.problems import STATUS
from scheduler.booking import campaigns, codes, hotline
from scheduler.booking import models as m
from scheduler.booking.apikeys import Principal
from scheduler.booking.bookings import BookingRequest, BookingService, Person, validate_request
from scheduler.booking.catalog import ServiceInfo
from scheduler.booking.core import Core
from scheduler.booking.errors import (
    DomainError,
    FieldError,
    HoldExpired,
    NotFound,
    SlotFull,
    ValidationFailed,
)
from scheduler.booking.holds import appointments_of
from scheduler.web import forms, texts
from scheduler.web import session as s
from scheduler.web.render import lang_of, page, see_other
from scheduler.web.session import problem_of

Slug = Annotated[str, PathParameter(max_length=64)]
Reference = Annotated[str, PathParameter(max_length=20)]
AREA = s.AGENT
NEXT_SHOWN = 10  # times of one service
ACTIVE = (m.BookingStatus.CONFIRMED.value, m.BookingStatus.PENDING.value)
DONE = {"gebucht", "verschoben", "abgesagt", "angenommen"}
FIELD_LABELS = {
    "reference": "agent_code",
    "name": "agent_name",
    "birth_date": "birth_date",
    "citizen.name": "agent_name",
    "citizen.birth_date": "birth_date",
    "citizen.postcode": "agent_postcode",
    "citizen.email": "agent_email",
    "citizen.phone": "agent_phone",
    "contact.name": "agent_contact_name",
    "contact.email": "agent_contact_email",
    "contact.phone": "agent_contact_phone",
    "start": "when",
}


def core_of(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


def bookings_of(request: Request[Any, Any, Any]) -> BookingService:
    return request.app.state.bookings  # type: ignore[no-any-return]


def labels(lang: str) -> dict[str, str]:
    return {name: texts.text(lang, key) for name, key in FIELD_LABELS.items()}


def phone_services(core: Core) -> list[ServiceInfo]:
    """Every service an agent can book (offered on the phone channel)."""
    found = [s for s in core.catalog.services.values() if "phone" in s.channels]
    return sorted(found, key=lambda s: (s.location_id, s.position, s.id))


def phone_service(core: Core, service_id: str) -> ServiceInfo:
    for service in phone_services(core):
        if service.id == service_id:
            return service
    raise NotFound("service", service_id)


def campaign_service(core: Core, service: ServiceInfo) -> bool:
    """A campaign's service: eligibility is asked and judged before anything is held."""
    return campaigns.campaign_of(core.catalog, [service.id]) is not None


def first_dose(core: Core, service: ServiceInfo) -> bool:
    """A campaign's first dose, booked with its second (one series)."""
    campaign = campaigns.campaign_of(core.catalog, [service.id])
    return campaign is not None and campaign.first_service_id == service.id


def local(core: Core, location_id: str, moment: datetime) -> datetime:
    return moment.astimezone(core.catalog.locations[location_id].tz)


def service_name(core: Core, service_id: str, lang: str) -> str:
    service = core.catalog.services.get(service_id)
    return service.display_name(lang) if service else service_id


def booking_view(core: Core, booking: m.Booking, lang: str) -> dict[str, Any]:
    """What the console shows of a booking."""
    location = core.catalog.locations[booking.location_id]
    visits = [
        {
            "services": ", ".join(service_name(core, sid, lang) for sid in a.service_ids),
            "start": local(core, booking.location_id, a.starts_at),
            "end": local(core, booking.location_id, a.ends_at),
        }
        for a in sorted(booking.appointments, key=lambda a: a.starts_at)
    ]
    return {
        "reference": codes.format_reference(booking.reference),
        "spelled": codes.spell(booking.reference),
        "status": booking.status,
        "channel": booking.channel,
        "location": location.name,
        "address": location.address,
        "visits": visits,
        "services": ", ".join(dict.fromkeys(v["services"] for v in visits)),
        "start": local(core, booking.location_id, booking.starts_at),
        "name": booking.attendee_name,
        "birth_date": booking.attendee_birth_date,
        "postcode": booking.attendee_postcode,
        "contact_name": booking.contact_name,
        "email": booking.contact_email,
        "phone": booking.contact_phone,
        "language": booking.language,
        "active": booking.status in ACTIVE,
        "pending_until": (
            local(core, booking.location_id, booking.pending_until)
            if booking.pending_until is not None and booking.status == m.BookingStatus.PENDING.value
            else None
        ),
    }


def person_fields(
    form: Mapping[str, Any], prefix: str, *, birth_date: bool = False, postcode: bool = False
) -> tuple[dict[str, Any], list[FieldError]]:
    """The ``prefix.…`` fields of a form, each held to its length and free of control
    characters; a birth date as people write it. Whether they are enough is the booking's
    business (:func:`scheduler.booking.bookings.validate_request`, the campaign's checks)."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name, limit in (("name", 200), ("email", 254), ("phone", 32)):
        try:
            values[name] = forms.field(form, f"{prefix}.{name}", limit) or None
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if birth_date:
        try:
            raw = forms.field(form, f"{prefix}.birth_date", 10)
            values["birth_date"] = forms.parse_day(f"{prefix}.birth_date", raw) if raw else None
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    if postcode:
        try:
            values["postcode"] = forms.field(form, f"{prefix}.postcode", 5) or None
        except ValidationFailed as exc:
            errors.extend(exc.errors)
    return values, errors


def caller(form: Mapping[str, Any], *, eligibility: bool) -> tuple[Person, Person | None]:
    """The attendee and, when someone else is named, the contact of the booking form."""
    citizen, errors = person_fields(form, "citizen", birth_date=True, postcode=eligibility)
    contact, contact_errors = person_fields(form, "contact")
    errors += contact_errors
    if eligibility:
        if citizen.get("birth_date") is None and not any(
            e.field == "citizen.birth_date" for e in errors
        ):
            errors.append(FieldError("citizen.birth_date", "required"))
        if citizen.get("postcode") is None:
            errors.append(FieldError("citizen.postcode", "required"))
    named_contact = any(contact.values())
    if named_contact and not contact.get("name"):
        errors.append(FieldError("contact.name", "required"))
    attendee = Person(
        citizen.get("name") or "", citizen.get("email"), citizen.get("phone"),
        citizen.get("birth_date"), citizen.get("postcode"),
    )  # fmt: skip
    other = (
        Person(contact.get("name") or "", contact.get("email"), contact.get("phone"))
        if named_contact
        else None
    )
    try:  # the booking's own checks too, so every mistake is told at once
        validate_request(BookingRequest(citizen=attendee, contact=other))
    except ValidationFailed as exc:
        errors += exc.errors
    if errors:
        raise ValidationFailed(*unique(errors))
    return attendee, other


def unique(errors: list[FieldError]) -> list[FieldError]:
    """One message per field (the first)."""
    seen: set[str] = set()
    return [err for err in errors if not (err.field in seen or seen.add(err.field))]  # type: ignore[func-returns-value]


def form_values(form: Mapping[str, Any]) -> dict[str, str]:
    """What was typed, to show it again next to the mistakes."""
    return {
        k: str(v)[:254]
        for k, v in form.items()
        if k.startswith(("citizen.", "contact.")) or k in ("language", "consent")
    }


async def ensure(request: Request[Any, Any, Any]) -> Principal:
    return await s.current(request, AREA)


def refused(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    """A refusal outside a form (a booking that does not exist, a malformed time): told as the
    API tells it, with the way back to the console."""
    lang = lang_of(request)
    status = STATUS.get(exc.code, 400)
    return page(  # type: ignore[return-value]
        request, "agent_error.html", status=status,
        title_key="not_found_title" if status == 404 else "error_title",
        brand=texts.text(lang, "agent_brand"), home_url=AREA.path, problem=problem_of(exc, lang),
    )  # fmt: skip


class AgentPages(s.AreaPages):
    path = "/agent"
    area = AREA
    exception_handlers = {s.NotLoggedIn: s.not_logged_in, DomainError: refused}  # type: ignore[dict-item]

    # -- the console --------------------------------------------------------------------------

    @get("/", name="agent_console")
    async def console(
        self,
        request: Request[Any, Any, Any],
        leistung: Annotated[str | None, QueryParameter(max_length=64)] = None,
        ab: Annotated[str | None, QueryParameter(max_length=10)] = None,
    ) -> Template:
        principal = await ensure(request)
        return await self._console(request, principal, leistung or None, ab or None)

    async def _console(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        service_id: str | None = None,
        after_day: str | None = None,
        *,
        status: int = 200,
        problem: dict[str, Any] | None = None,
        values: dict[str, str] | None = None,
    ) -> Template:
        core = core_of(request)
        lang = lang_of(request)
        services = phone_services(core)
        chosen = phone_service(core, service_id) if service_id else None
        now = core.clock.now()
        day = forms.parse_day("ab", after_day) if after_day else None

        def after(service: ServiceInfo) -> datetime:
            """From the chosen day on (local midnight at the service's location), not before now."""
            if day is None:
                return now
            tz = core.catalog.locations[service.location_id].tz
            return max(now, datetime.combine(day, datetime.min.time(), tz))

        if chosen is not None:
            found = await hotline.next_slots(
                core, service_ids=[chosen.id], location_id=None, after=after(chosen),
                limit=NEXT_SHOWN,
            )  # fmt: skip
        else:
            found = []
            for service in services:
                found += await hotline.next_slots(
                    core, service_ids=[service.id], location_id=None, after=after(service),
                    limit=1,
                )  # fmt: skip
        rows = [
            {
                "service_id": slot.service_id,
                "service": service_name(core, slot.service_id, lang),
                "location": core.catalog.locations[slot.location_id].name,
                "start": local(core, slot.location_id, slot.start),
                "end": local(core, slot.location_id, slot.end),
                "free": slot.free,
            }
            for slot in found
        ]
        callbacks = [
            {
                "name": c.name,
                "phone": c.phone,
                "contact_name": c.contact_name,
                "language": c.language,
                "deadline": local(core, c.booking.location_id, c.deadline),
                "booking": booking_view(core, c.booking, lang),
            }
            for c in await core.waitlist.callbacks()
        ]
        return page(
            request, "agent.html", status=status, title_key="agent_title",
            brand=texts.text(lang, "agent_brand"), home_url=AREA.path, principal=principal,
            services=[{"id": sv.id, "name": sv.display_name(lang)} for sv in services],
            chosen=chosen, chosen_name=chosen.display_name(lang) if chosen else None,
            day=day, slots=rows, callbacks=callbacks, problem=problem, values=values or {},
            labels=labels(lang),
        )  # fmt: skip

    # -- finding a caller's bookings ----------------------------------------------------------

    @post("/suche", name="agent_search", status_code=200)
    async def search(self, request: Request[Any, Any, Any]) -> Response[Any] | Template:
        """By code: to the booking's page. By name and birth date: the results, rendered here
        (the name and birth date never go into a URL)."""
        principal = await ensure(request)
        core = core_of(request)
        lang = lang_of(request)
        form = await request.form()
        values = {k: str(v)[:200] for k, v in form.items() if k in ("reference", "name")}
        try:
            if forms.field(form, "art", 10) == "code":
                raw = forms.field(form, "reference", 20)
                if not raw:
                    raise ValidationFailed(FieldError("reference", "required"))
                code = codes.parse_reference(raw)
                if code is None:
                    raise NotFound("booking", raw)
                return see_other(f"{AREA.path}/buchung/{codes.format_reference(code)}")
            name = forms.field(form, "name", 200)
            raw_day = forms.field(form, "birth_date", 10)
            birth_date = forms.parse_day("birth_date", raw_day) if raw_day else None
            if birth_date is not None and birth_date < date(1900, 1, 1):
                raise ValidationFailed(FieldError("birth_date", "out_of_range"))
            found = await hotline.find_bookings(
                core, s.actor(request, principal), name=name or None, birth_date=birth_date
            )
        except (ValidationFailed, NotFound) as exc:
            status = 404 if isinstance(exc, NotFound) else 422
            return await self._console(
                request, principal, status=status, problem=problem_of(exc, lang), values=values
            )
        return page(
            request, "agent_results.html", title_key="agent_results_title",
            brand=texts.text(lang, "agent_brand"), home_url=AREA.path, principal=principal,
            results=[booking_view(core, b, lang) for b in found],
        )  # fmt: skip

    @get("/suche", name="agent_search_again")
    async def search_again(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return s.back_to(request, AREA.path)

    # -- booking for a caller -----------------------------------------------------------------

    @post("/termin", name="agent_take", status_code=303)
    async def take(self, request: Request[Any, Any, Any]) -> Response[Any] | Template:
        """A time chosen: held at once (phone channel), or first the campaign's questions."""
        principal = await ensure(request)
        core = core_of(request)
        form = await request.form()
        service = phone_service(core, forms.field(form, "leistung", 64))
        start = parse_moment("start", forms.field(form, "start", 40))
        tz = core.catalog.locations[service.location_id].tz
        if campaign_service(core, service):
            return see_other(
                f"{AREA.path}/termin", leistung=service.id, start=start.astimezone(tz).isoformat()
            )
        try:
            held = await bookings_of(request).hold([service.id], start, 1, "phone")
        except DomainError as exc:
            return await self._console(
                request, principal, service.id, status=STATUS.get(exc.code, 409),
                problem=problem_of(exc, lang_of(request)),
            )  # fmt: skip
        return see_other(
            f"{AREA.path}/termin",
            leistung=service.id,
            start=start.astimezone(tz).isoformat(),
            reservierung=held.hold_id,
            bis=held.expires_at.astimezone(tz).isoformat(timespec="seconds"),
        )

    @get("/termin", name="agent_details")
    async def details(
        self,
        request: Request[Any, Any, Any],
        leistung: Annotated[str, QueryParameter(max_length=64)],
        start: Annotated[str, QueryParameter(max_length=40)],
        reservierung: Annotated[str | None, QueryParameter(max_length=150)] = None,
        bis: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> Template:
        principal = await ensure(request)
        core = core_of(request)
        service = phone_service(core, leistung)
        moment = parse_moment("start", start)
        return self._book_page(request, principal, service, moment, hold_id=reservierung, until=bis)

    def _book_page(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        service: ServiceInfo,
        start: datetime,
        *,
        hold_id: str | None = None,
        until: str | None = None,
        visits: list[dict[str, Any]] | None = None,
        judged: dict[str, Any] | None = None,
        values: dict[str, str] | None = None,
        status: int = 200,
        problem: dict[str, Any] | None = None,
    ) -> Template:
        """The booking form. A campaign's service without a hold asks only what eligibility
        needs ("check" step); with a hold, everything for the booking."""
        core = core_of(request)
        lang = lang_of(request)
        tz = core.catalog.locations[service.location_id].tz
        local_start = start.astimezone(tz)
        held_until = None
        if until:
            with contextlib.suppress(ValueError):
                held_until = datetime.fromisoformat(until).astimezone(tz)
        eligibility = campaign_service(core, service)
        step = "check" if eligibility and hold_id is None else "book"
        campaign = campaigns.campaign_of(core.catalog, [service.id])
        return page(
            request, "agent_book.html", status=status,
            title_key="agent_check_title" if step == "check" else "agent_book_title",
            brand=texts.text(lang, "agent_brand"), home_url=AREA.path, principal=principal,
            service=service, name=service.display_name(lang),
            location=core.catalog.locations[service.location_id].name, start=local_start,
            end=local_start + timedelta(minutes=service.duration_minutes), hold_id=hold_id,
            until=until or "", held_until=held_until, step=step, eligibility=eligibility,
            series=first_dose(core, service), campaign=campaign, visits=visits or [],
            judged=judged, values=values or {}, problem=problem, labels=labels(lang),
        )  # fmt: skip

    @post("/termin/pruefen", name="agent_check", status_code=200)
    async def check(self, request: Request[Any, Any, Any]) -> Template:
        """A campaign's questions judged by the booking core as it holds the time (and the
        second dose of a series): refused, the reason next to the form; eligible, the form
        for the rest of the booking."""
        principal = await ensure(request)
        core = core_of(request)
        lang = lang_of(request)
        form = await request.form()
        service = phone_service(core, forms.field(form, "leistung", 64))
        start = parse_moment("start", forms.field(form, "start", 40))
        values = form_values(form)
        try:
            citizen, errors = person_fields(form, "citizen", birth_date=True, postcode=True)
            if errors:
                raise ValidationFailed(*errors)
            person = Person(
                citizen.get("name") or "", None, None, citizen.get("birth_date"),
                citizen.get("postcode"),
            )  # fmt: skip
            held = await bookings_of(request).hold(
                [service.id], start, 1, "phone", citizen=person,
                series=first_dose(core, service),
            )  # fmt: skip
        except DomainError as exc:
            status = 422 if isinstance(exc, ValidationFailed) else STATUS.get(exc.code, 409)
            return self._book_page(
                request, principal, service, start, values=values, status=status,
                problem=problem_of(exc, lang),
            )  # fmt: skip
        tz = core.catalog.locations[service.location_id].tz
        visits = [
            {
                "services": ", ".join(service_name(core, sid, lang) for sid in v.service_ids),
                "start": v.start.astimezone(tz),
                "end": v.end.astimezone(tz),
            }
            for v in appointments_of(core.catalog, held.payload, held.cells)
        ]
        assert person.birth_date is not None
        judged = {
            "name": person.name,
            "birth_date": person.birth_date,
            "postcode": person.postcode,
            "age": campaigns.age_on(person.birth_date, start.astimezone(tz).date()),
        }
        return self._book_page(
            request, principal, service, start, hold_id=held.hold_id,
            until=held.expires_at.astimezone(tz).isoformat(timespec="seconds"), visits=visits,
            judged=judged, values=values,
        )  # fmt: skip

    @post("/termin/buchen", name="agent_book", status_code=303)
    async def book(self, request: Request[Any, Any, Any]) -> Response[Any] | Template:
        """Confirm the held time for the caller: the API's confirm, channel ``phone``."""
        principal = await ensure(request)
        core = core_of(request)
        lang = lang_of(request)
        form = await request.form()
        service = phone_service(core, forms.field(form, "leistung", 64))
        start = parse_moment("start", forms.field(form, "start", 40))
        hold_id = forms.field(form, "reservierung", 150)
        until = forms.field(form, "bis", 40) or None
        values = form_values(form)
        eligibility = campaign_service(core, service)
        judged = None
        if eligibility:
            judged = {k: values.get(f"citizen.{k}", "") for k in ("birth_date", "postcode")}
        language = forms.field(form, "language", 2)
        try:
            if not hold_id:
                raise HoldExpired()
            citizen, contact = caller(form, eligibility=eligibility)
            request_ = BookingRequest(
                citizen=citizen, contact=contact, channel="phone",
                language=language if language in texts.LANGUAGES else "de",
                consent=forms.field(form, "consent", 3) == "1",
            )  # fmt: skip
            view, _ = await bookings_of(request).confirm(
                hold_id, request_, s.actor(request, principal), None, lambda _v: b""
            )
        except (HoldExpired, SlotFull) as exc:
            return await self._console(
                request, principal, service.id, status=409, problem=problem_of(exc, lang)
            )
        except DomainError as exc:
            # a mistake in the details, or (after a change) not eligible: the time stays held
            status = 422 if isinstance(exc, ValidationFailed) else STATUS.get(exc.code, 409)
            return self._book_page(
                request, principal, service, start, hold_id=hold_id, until=until,
                judged=self._judged(core, service, start, judged), values=values,
                status=status, problem=problem_of(exc, lang),
            )  # fmt: skip
        assert view is not None
        return see_other(
            f"{AREA.path}/buchung/{codes.format_reference(view.reference)}", erledigt="gebucht"
        )

    def _judged(
        self, core: Core, service: ServiceInfo, start: datetime, raw: dict[str, str] | None
    ) -> dict[str, Any] | None:
        """The campaign's answers carried by the form, shown again as judged."""
        if raw is None:
            return None
        try:
            birth = forms.parse_day("citizen.birth_date", raw.get("birth_date", ""))
        except ValidationFailed:
            return None
        tz = core.catalog.locations[service.location_id].tz
        age = campaigns.age_on(birth, start.astimezone(tz).date())
        return {"birth_date": birth, "postcode": raw.get("postcode", ""), "age": age}

    @post("/termin/freigeben", name="agent_release", status_code=303)
    async def release(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The caller changed their mind: the held time goes back."""
        await ensure(request)
        form = await request.form()
        hold_id = forms.field(form, "reservierung", 150)
        if hold_id:
            with contextlib.suppress(HoldExpired):
                await bookings_of(request).release(hold_id)
        return see_other(AREA.path)

    @get(["/termin/pruefen", "/termin/buchen"], name="agent_form_again")
    async def form_again(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return s.back_to(request, AREA.path)

    # -- one booking --------------------------------------------------------------------------

    async def _booking(
        self, request: Request[Any, Any, Any], principal: Principal, reference: str
    ) -> m.Booking:
        """The booking by its code, read as the API's finder reads it (an audit event)."""
        found = await hotline.find_bookings(
            core_of(request), s.actor(request, principal), reference=reference
        )
        if not found:
            raise NotFound("booking", reference)
        return found[0]

    def _booking_page(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        booking: m.Booking,
        template: str = "agent_booking.html",
        *,
        status: int = 200,
        problem: dict[str, Any] | None = None,
        notice: str | None = None,
        title_key: str = "agent_booking_title",
        **context: Any,
    ) -> Template:
        lang = lang_of(request)
        return page(
            request, template, status=status, title_key=title_key,
            brand=texts.text(lang, "agent_brand"), home_url=AREA.path, principal=principal,
            booking=booking_view(core_of(request), booking, lang), problem=problem,
            notice=notice, **context,
        )  # fmt: skip

    @get("/buchung/{reference:str}", name="agent_booking")
    async def booking(
        self,
        request: Request[Any, Any, Any],
        reference: Reference,
        erledigt: Annotated[str | None, QueryParameter(max_length=12)] = None,
    ) -> Template:
        principal = await ensure(request)
        booking = await self._booking(request, principal, reference)
        notice = None
        if erledigt in DONE:
            notice = texts.text(lang_of(request), f"agent_done_{erledigt}")
        return self._booking_page(request, principal, booking, notice=notice)

    @get("/buchung/{reference:str}/verschieben", name="agent_move_times")
    async def move_times(
        self,
        request: Request[Any, Any, Any],
        reference: Reference,
        ab: Annotated[str | None, QueryParameter(max_length=10)] = None,
    ) -> Template:
        principal = await ensure(request)
        booking = await self._booking(request, principal, reference)
        return await self._move_page(request, principal, booking, ab or None)

    async def _move_page(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        booking: m.Booking,
        after_day: str | None,
        *,
        status: int = 200,
        problem: dict[str, Any] | None = None,
    ) -> Template:
        core = core_of(request)
        lang = lang_of(request)
        first = sorted(booking.appointments, key=lambda a: a.starts_at)[0]
        service_id = first.service_ids[0]
        tz = core.catalog.locations[booking.location_id].tz
        now = core.clock.now()
        after = now
        day = None
        if after_day:
            day = forms.parse_day("ab", after_day)
            after = max(now, datetime.combine(day, datetime.min.time(), tz))
        times: list[dict[str, Any]] = []
        if booking.status in ACTIVE:
            try:
                found = await hotline.next_slots(
                    core, service_ids=[service_id], location_id=booking.location_id,
                    after=after, limit=NEXT_SHOWN,
                )  # fmt: skip
            except ValidationFailed as exc:
                problem = problem or problem_of(exc, lang)
                found = []
            times = [
                {"start": s_.start.astimezone(tz), "end": s_.end.astimezone(tz)}
                for s_ in found
                if s_.start != first.starts_at
            ]
        return self._booking_page(
            request, principal, booking, "agent_move.html", status=status, problem=problem,
            title_key="agent_move_title", times=times, day=day,
        )  # fmt: skip

    @post("/buchung/{reference:str}/verschieben", name="agent_move", status_code=303)
    async def move(
        self, request: Request[Any, Any, Any], reference: Reference
    ) -> Response[Any] | Template:
        """The one-step move of ``POST /bookings/{reference}/reschedule`` (phone channel)."""
        principal = await ensure(request)
        booking = await self._booking(request, principal, reference)
        form = await request.form()
        try:
            start = parse_moment("start", forms.field(form, "start", 40))
            await bookings_of(request).move(
                booking.id, s.actor(request, principal), "phone", start=start
            )
        except DomainError as exc:
            fresh = await bookings_of(request).find(reference)
            status = 422 if isinstance(exc, ValidationFailed) else STATUS.get(exc.code, 409)
            return await self._move_page(
                request, principal, fresh, None, status=status,
                problem=problem_of(exc, lang_of(request)),
            )  # fmt: skip
        return see_other(
            f"{AREA.path}/buchung/{quote(codes.format_reference(booking.reference))}",
            erledigt="verschoben",
        )

    @get("/buchung/{reference:str}/absagen", name="agent_cancel_question")
    async def cancel_question(
        self, request: Request[Any, Any, Any], reference: Reference
    ) -> Template:
        principal = await ensure(request)
        booking = await self._booking(request, principal, reference)
        return self._booking_page(
            request, principal, booking, "agent_cancel.html", title_key="agent_cancel_title"
        )

    @post("/buchung/{reference:str}/absagen", name="agent_cancel", status_code=303)
    async def cancel(self, request: Request[Any, Any, Any], reference: Reference) -> Response[Any]:
        """The API's cancel, by the agent's key."""
        principal = await ensure(request)
        booking = await self._booking(request, principal, reference)
        await bookings_of(request).cancel(booking.id, s.actor(request, principal))
        return see_other(
            f"{AREA.path}/buchung/{codes.format_reference(booking.reference)}",
            erledigt="abgesagt",
        )

    @post("/buchung/{reference:str}/annehmen", name="agent_accept", status_code=303)
    async def accept(
        self, request: Request[Any, Any, Any], reference: Reference
    ) -> Response[Any] | Template:
        """The caller takes the waiting-list offer (``POST /waitlist/offers/{ref}/accept``)."""
        principal = await ensure(request)
        booking = await self._booking(request, principal, reference)
        try:
            await core_of(request).waitlist.accept(booking.id, s.actor(request, principal))
        except DomainError as exc:
            fresh = await bookings_of(request).find(reference)
            return self._booking_page(
                request, principal, fresh, status=STATUS.get(exc.code, 409),
                problem=problem_of(exc, lang_of(request)),
            )  # fmt: skip
        return see_other(
            f"{AREA.path}/buchung/{codes.format_reference(booking.reference)}",
            erledigt="angenommen",
        )
