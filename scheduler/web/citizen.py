"""The citizens' booking flow: service → day → time → details → confirmation.

Every step is a plain page or form (Post/Redirect/Get), so it works without JavaScript. The
time chosen is held (the same hold as ``POST /api/v1/holds``) while the person fills in the
form, and the form confirms that hold — the one booking path of the API. A campaign's first
dose needs the person's birth date and postcode before anything is held (eligibility), so its
form books in one step. A time lost to someone quicker shows the next free times.
"""

from __future__ import annotations

import contextlib
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from litestar.response import Template

from scheduler.api.bookings import client_address, limiter
from scheduler.api.params import parse_moment
from scheduler.api.problems import STATUS
from scheduler.booking import campaigns
from scheduler.booking.bookings import (
    Actor,
    BookingRequest,
    BookingService,
    Person,
    attendee_keys,
)
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
from scheduler.web import forms, slots, texts
from scheduler.web.render import lang_of, page, see_other
from scheduler.web.session import back_to

Slug = Annotated[str, PathParameter(max_length=64)]


def core_of(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


def bookings_of(request: Request[Any, Any, Any]) -> BookingService:
    return request.app.state.bookings  # type: ignore[no-any-return]


def actor_of(request: Request[Any, Any, Any]) -> Actor:
    return Actor(request_id=request.scope.get("state", {}).get("request_id"))


def online_service(core: Core, service_id: str) -> ServiceInfo:
    """A service a citizen can book online (anything else is 'not found')."""
    for service in slots.bookable_services(core):
        if service.id == service_id:
            return service
    raise NotFound("service", service_id)


def is_series(core: Core, service: ServiceInfo) -> bool:
    """A campaign's first dose, booked with its second (the form asks for eligibility)."""
    campaign = campaigns.campaign_of(core.catalog, [service.id])
    return campaign is not None and campaign.first_service_id == service.id


def problem_of(exc: DomainError, lang: str) -> dict[str, Any]:
    title, detail, fields = texts.problem_text(exc, lang)
    return {"title": title, "detail": detail, "fields": fields}


def parse_iso_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(FieldError("day", "date")) from None


class CitizenPages(Controller):
    include_in_schema = False

    @get("/", name="home")
    async def home(self, request: Request[Any, Any, Any]) -> Template:
        core = core_of(request)
        lang = lang_of(request)
        services = slots.bookable_services(core)
        locations = core.catalog.locations
        groups: dict[str, list[dict[str, Any]]] = {}
        for service in services:
            description = (
                service.description_en if lang == "en" and service.description_en else ""
            ) or service.description
            groups.setdefault(locations[service.location_id].name, []).append(
                {
                    "id": service.id,
                    "name": service.display_name(lang),
                    "minutes": service.duration_minutes,
                    "description": description,
                    "campaign": service.campaign_id is not None,
                }
            )
        return page(request, "home.html", title_key="home", groups=groups)

    @get("/termine/{service_id:str}", name="days")
    async def days(
        self,
        request: Request[Any, Any, Any],
        service_id: Slug,
        ab: Annotated[str | None, QueryParameter(max_length=10)] = None,
    ) -> Template:
        core = core_of(request)
        service = online_service(core, service_id)
        tz = core.catalog.locations[service.location_id].tz
        today = core.clock.now().astimezone(tz).date()
        first = parse_iso_day(ab) if ab else today
        days, more = await slots.next_days(core, service, first)
        lang = lang_of(request)
        return page(
            request, "days.html", title=service.display_name(lang), service=service,
            days=days, more=more, earlier=first > today, series=is_series(core, service),
            base=f"/termine/{quote(service.id)}",
        )  # fmt: skip

    @get("/termine/{service_id:str}/tag/{day:str}", name="times")
    async def times(
        self,
        request: Request[Any, Any, Any],
        service_id: Slug,
        day: Annotated[str, PathParameter(max_length=10)],
    ) -> Template:
        core = core_of(request)
        service = online_service(core, service_id)
        chosen = parse_iso_day(day)
        free = await slots.times_of(core, service, chosen)
        return self._times_page(request, core, service, chosen, free)

    def _times_page(
        self,
        request: Request[Any, Any, Any],
        core: Core,
        service: ServiceInfo,
        day: date | None,
        free: list[slots.Time],
        *,
        status: int = 200,
        problem: dict[str, Any] | None = None,
        title_key: str | None = None,
    ) -> Template:
        lang = lang_of(request)
        return page(
            request, "times.html", status=status, title_key=title_key,
            title=None if title_key else service.display_name(lang), service=service,
            day=day, times=free, series=is_series(core, service), problem=problem,
            base=f"/termine/{quote(service.id)}",
            action=f"/termine/{quote(service.id)}/reservieren",
        )  # fmt: skip

    @post("/termine/{service_id:str}/reservieren", name="hold", status_code=303)
    async def hold(
        self, request: Request[Any, Any, Any], service_id: Slug
    ) -> Response[Any] | Template:
        core = core_of(request)
        service = online_service(core, service_id)
        form = await request.form()
        start = parse_moment("start", forms.field(form, "start", 40))
        if is_series(core, service):
            return see_other(f"/termine/{quote(service.id)}/angaben", start=start.isoformat())
        await limiter(request).check_hold(client_address(request), [])
        try:
            held = await bookings_of(request).hold([service.id], start, 1, "online")
        except SlotFull:
            return await self._lost(request, core, service, start, "taken_title")
        tz = core.catalog.locations[service.location_id].tz
        return see_other(
            f"/termine/{quote(service.id)}/angaben",
            reservierung=held.hold_id,
            start=start.astimezone(tz).isoformat(),
            bis=held.expires_at.astimezone(tz).isoformat(timespec="seconds"),
        )

    async def _lost(
        self,
        request: Request[Any, Any, Any],
        core: Core,
        service: ServiceInfo,
        start: datetime,
        title_key: str,
    ) -> Template:
        """The time is gone (taken, or the hold ran out): the next free times instead."""
        free = await slots.times_after(core, service, start)
        intro = "taken_intro" if title_key == "taken_title" else "expired_intro"
        return self._times_page(
            request, core, service, None, free, status=409, title_key=title_key,
            problem={"title": texts.text(lang_of(request), intro), "detail": "", "fields": {}},
        )  # fmt: skip

    @get("/termine/{service_id:str}/angaben", name="details")
    async def details(
        self,
        request: Request[Any, Any, Any],
        service_id: Slug,
        start: Annotated[str, QueryParameter(max_length=40)],
        reservierung: Annotated[str | None, QueryParameter(max_length=150)] = None,
        bis: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> Template:
        core = core_of(request)
        service = online_service(core, service_id)
        moment = parse_moment("start", start)
        return self._details_page(request, core, service, moment, reservierung, bis, {})

    def _details_page(
        self,
        request: Request[Any, Any, Any],
        core: Core,
        service: ServiceInfo,
        start: datetime,
        hold_id: str | None,
        until: str | None,
        values: dict[str, str],
        *,
        status: int = 200,
        problem: dict[str, Any] | None = None,
    ) -> Template:
        tz = core.catalog.locations[service.location_id].tz
        local = start.astimezone(tz)
        held_until = None
        if until:
            try:
                held_until = datetime.fromisoformat(until).astimezone(tz)
            except ValueError:
                held_until = None
        shown = {"start": local.isoformat(), "reservierung": hold_id or "", "bis": until or ""}
        return page(
            request, "details.html", status=status, title_key="your_details", service=service,
            switch_to=f"/termine/{quote(service.id)}/angaben?{urlencode(shown)}",
            name=service.display_name(lang_of(request)), start=local,
            end=local + timedelta(minutes=service.duration_minutes), hold_id=hold_id,
            until=until or "", held_until=held_until, series=is_series(core, service),
            values=values, problem=problem, labels=texts.labels(lang_of(request)),
        )  # fmt: skip

    @post("/termine/{service_id:str}/angaben", name="book", status_code=303)
    async def book(
        self, request: Request[Any, Any, Any], service_id: Slug
    ) -> Response[Any] | Template:
        core = core_of(request)
        service = online_service(core, service_id)
        form = await request.form()
        start = parse_moment("start", forms.field(form, "start", 40))
        hold_id = forms.field(form, "reservierung", 150) or None
        until = forms.field(form, "bis", 40) or None
        lang = lang_of(request)
        series = is_series(core, service)
        values = {k: str(v)[:254] for k, v in form.items() if k.startswith("citizen.")}
        bookings = bookings_of(request)
        try:
            citizen: Person = forms.person(form, eligibility=series)
            booking_request = BookingRequest(citizen=citizen, channel="online", language=lang)
            # before the hold is claimed: a mistake told now keeps the held time
            bookings.check_opt_in_contact([service.id], booking_request, actor_of(request))
            if hold_id is not None:
                view, _ = await bookings.confirm(
                    hold_id, booking_request, actor_of(request), None, lambda _v: b""
                )
            else:  # a campaign's series, booked in one step: the person counts as in the API
                persons = attendee_keys(core.secret_key, citizen)
                await limiter(request).check_hold(client_address(request), persons)
                view, _ = await bookings.book(
                    [service.id], start, 1, booking_request, actor_of(request), None,
                    lambda _v: b"", series=series,
                )  # fmt: skip
        except HoldExpired:
            return await self._lost(request, core, service, start, "expired_title")
        except SlotFull:
            return await self._lost(request, core, service, start, "taken_title")
        except ValidationFailed as exc:
            return self._details_page(
                request, core, service, start, hold_id, until, values, status=422,
                problem=problem_of(exc, lang),
            )  # fmt: skip
        except DomainError as exc:
            # not eligible, campaign full, limit reached …: told next to the form
            return self._details_page(
                request, core, service, start, hold_id, until, values,
                status=STATUS.get(exc.code, 409), problem=problem_of(exc, lang),
            )  # fmt: skip
        assert view is not None
        token = bookings.token_for(view)
        return see_other(f"/buchung/{quote(view.reference)}", token=token, neu="1")

    @get(
        ["/termine/{service_id:str}/reservieren", "/termine/{service_id:str}/freigeben"],
        name="form_again",
    )
    async def form_again(self, request: Request[Any, Any, Any], service_id: Slug) -> Response[Any]:
        """A form's path asked for by GET (the language switch of its answer): the days."""
        return back_to(
            request, f"/termine/{quote(online_service(core_of(request), service_id).id)}"
        )

    @post("/termine/{service_id:str}/freigeben", name="release", status_code=303)
    async def release(self, request: Request[Any, Any, Any], service_id: Slug) -> Response[Any]:
        """Give the held time back (the person changed their mind) and choose again."""
        core = core_of(request)
        service = online_service(core, service_id)
        form = await request.form()
        hold_id = forms.field(form, "reservierung", 150)
        if hold_id:
            with contextlib.suppress(HoldExpired):
                await bookings_of(request).release(hold_id)
        return see_other(f"/termine/{quote(service.id)}")
