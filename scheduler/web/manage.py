"""The manage page every message links to: ``/buchung/{reference}?token=…``.

It shows the booking and lets the person cancel it, choose another time (the booking core's
one-step move: the old time is kept until the new one is booked), accept a waiting-list offer
or confirm an e-mail opt-in. The token is the booking's manage token (HMAC-derived, never
stored); a wrong token is the same "not found" page as a missing booking, and failures count
against the caller's address like the API's. No referrer, never cached.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from litestar.response import Template

from scheduler.api.bookings import authorized_booking, pending_booking
from scheduler.api.params import parse_moment
from scheduler.api.problems import STATUS
from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.catalog import ServiceInfo
from scheduler.booking.core import Core
from scheduler.booking.errors import (
    DomainError,
    NotAnOffer,
    NotFound,
    OfferExpired,
    OptInExpired,
    RateLimited,
    SlotFull,
)
from scheduler.web import forms, slots, texts
from scheduler.web.citizen import actor_of, bookings_of, core_of, parse_iso_day, problem_of
from scheduler.web.render import lang_of, page, see_other

Reference = Annotated[str, PathParameter(max_length=20)]
Token = Annotated[str | None, QueryParameter(max_length=100)]
ACTIVE = (m.BookingStatus.PENDING.value, m.BookingStatus.CONFIRMED.value)


async def _booking(
    request: Request[Any, Any, Any], reference: str, token: str | None
) -> m.Booking | Template:
    """The booking the token opens, or the page to answer instead."""
    try:
        return await authorized_booking(request, reference, query_token=token or "")
    except (NotFound, RateLimited) as exc:
        return _refused(request, exc)


def _refused(request: Request[Any, Any, Any], exc: NotFound | RateLimited) -> Template:
    """The page of a booking the link does not open: not found, or too many failed tries."""
    if isinstance(exc, NotFound):
        lang = lang_of(request)
        return page(request, "error.html", status=404, title_key="not_found_title",
                    message=texts.text(lang, "booking_not_found"))  # fmt: skip
    retry = int(exc.params.get("retry_after", 60))
    minutes = max(1, -(-retry // 60))
    lang = lang_of(request)
    message = texts.text(lang, "too_many_one" if minutes == 1 else "too_many", minutes=minutes)
    answer = page(request, "error.html", status=429, title_key="too_many_title", message=message)
    answer.headers["Retry-After"] = str(retry)
    return answer


async def _pending(
    request: Request[Any, Any, Any], reference: str, token: str | None
) -> tuple[m.Booking, bool] | Template:
    """The booking to confirm and whether the opt-in link's token opened it, or the page to
    answer instead."""
    try:
        return await pending_booking(request, reference, query_token=token or "")
    except (NotFound, RateLimited) as exc:
        return _refused(request, exc)


async def _posted(
    request: Request[Any, Any, Any], reference: str
) -> tuple[m.Booking, str, dict[str, Any]] | Template:
    form = await request.form()
    token = forms.field(form, "token", 100)
    found = await _booking(request, reference, token)
    if isinstance(found, Template):
        return found
    return found, token, dict(form)


def _manage_url(booking: m.Booking, token: str, **flags: str) -> tuple[str, dict[str, str]]:
    return f"/buchung/{quote(booking.reference)}", {"token": token, **flags}


def _first_service(core: Core, booking: m.Booking) -> ServiceInfo:
    first = min(booking.appointments, key=lambda a: a.starts_at)
    service_id = next(s for s in first.service_ids if s in core.catalog.services)
    return core.catalog.services[service_id]


class ManagePages(Controller):
    path = "/buchung"
    include_in_schema = False

    @get("/{reference:str}", name="manage")
    async def show(
        self,
        request: Request[Any, Any, Any],
        reference: Reference,
        token: Token = None,
        neu: Annotated[str | None, QueryParameter(max_length=1)] = None,
        geaendert: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> Template:
        found = await _booking(request, reference, token)
        if isinstance(found, Template):
            return found
        offer = found.status == m.BookingStatus.PENDING.value and await bookings_of(
            request
        ).is_offer(found.id)
        return self._page(
            request, found, token or "", new=neu == "1", changed=geaendert, offer=offer
        )

    def _page(
        self,
        request: Request[Any, Any, Any],
        booking: m.Booking,
        token: str,
        *,
        new: bool = False,
        changed: str | None = None,
        status: int = 200,
        problem: dict[str, Any] | None = None,
        confirm_only: bool = False,
        offer: bool = False,
    ) -> Template:
        core = core_of(request)
        lang = lang_of(request)
        location = core.catalog.locations[booking.location_id]
        tz = location.tz
        visits = [
            {
                "services": [
                    core.catalog.services[s].display_name(lang)
                    for s in a.service_ids
                    if s in core.catalog.services
                ],
                "start": a.starts_at.astimezone(tz),
                "end": a.ends_at.astimezone(tz),
            }
            for a in sorted(booking.appointments, key=lambda a: a.starts_at)
        ]
        reference = quote(booking.reference)
        keep = urlencode({"token": token})
        title_key = {
            "abgesagt": "cancelled_title",
            "verschoben": "moved_title",
            "angenommen": "booked_title",
            "bestaetigt": "confirmed_title",
        }.get(changed or "", "booked_title" if new else "manage_title")
        if confirm_only:
            title_key = "confirm_title"
        pending_until = (
            booking.pending_until.astimezone(tz)
            if booking.status == m.BookingStatus.PENDING.value and booking.pending_until
            else None
        )
        shown = f"/buchung/{reference}/bestaetigen" if confirm_only else f"/buchung/{reference}"
        return page(
            request, "manage.html", status=status, title_key=title_key, booking=booking,
            switch_to=f"{shown}?{keep}",
            code=codes.format_reference(booking.reference), visits=visits, location=location,
            token=token, keep=keep, new=new, problem=problem,
            ics=f"/api/v1/bookings/{reference}/calendar.ics?{keep}",
            manage_url=f"{core.base_url.rstrip('/')}/buchung/{reference}?{keep}",
            active=booking.status in ACTIVE, pending_until=pending_until,
            confirm_only=confirm_only, offer=offer,
        )  # fmt: skip

    @post("/{reference:str}/absagen", name="manage_cancel", status_code=303)
    async def cancel(
        self, request: Request[Any, Any, Any], reference: Reference
    ) -> Response[Any] | Template:
        found = await _posted(request, reference)
        if isinstance(found, Template):
            return found
        booking, token, _ = found
        await bookings_of(request).cancel(booking.id, actor_of(request))
        path, query = _manage_url(booking, token, geaendert="abgesagt")
        return see_other(path, **query)

    @get("/{reference:str}/bestaetigen", name="manage_opt_in")
    async def opt_in(
        self, request: Request[Any, Any, Any], reference: Reference, token: Token = None
    ) -> Template | Response[Any]:
        """The e-mail opt-in's link: the booking and the button that confirms it. Opening the
        link changes nothing (mail scanners and link previews follow links)."""
        opened = await _pending(request, reference, token)
        if isinstance(opened, Template):
            return opened
        found, _ = opened
        if found.status in (m.BookingStatus.CONFIRMED.value, m.BookingStatus.CHECKED_IN.value):
            path, query = _manage_url(found, bookings_of(request).token_for(found))
            return see_other(path, **query)
        now = core_of(request).clock.now()
        if found.status != m.BookingStatus.PENDING.value or not (
            found.pending_until and found.pending_until > now
        ):
            return self._lapsed(request)
        return self._page(request, found, token or "", confirm_only=True)

    def _lapsed(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "error.html", status=410, title_key="lapsed_title",
                    message=texts.text(lang_of(request), "lapsed"))  # fmt: skip

    @post("/{reference:str}/bestaetigen", name="manage_confirm", status_code=303)
    async def confirm(
        self, request: Request[Any, Any, Any], reference: Reference
    ) -> Response[Any] | Template:
        """Confirm a pending booking: its e-mail opt-in, or a waiting-list offer."""
        return await self._confirm(request, reference)

    async def _confirm(
        self, request: Request[Any, Any, Any], reference: str
    ) -> Response[Any] | Template:
        form = await request.form()
        opened = await _pending(request, reference, forms.field(form, "token", 100))
        if isinstance(opened, Template):
            return opened
        booking, proven = opened
        bookings = bookings_of(request)
        try:
            await bookings.confirm_pending(booking.id, actor_of(request), proven=proven)
        except (OptInExpired, OfferExpired):
            return self._lapsed(request)
        except NotAnOffer as exc:
            return page(request, "error.html", status=409, title_key="error_title",
                        problem=problem_of(exc, lang_of(request)))  # fmt: skip
        # the manage page, with the manage token (the opt-in link proved the address)
        path, query = _manage_url(booking, bookings.token_for(booking), geaendert="bestaetigt")
        return see_other(path, **query)

    @post("/{reference:str}/annehmen", name="manage_accept", status_code=303)
    async def accept(
        self, request: Request[Any, Any, Any], reference: Reference
    ) -> Response[Any] | Template:
        """A waiting-list offer's answer (the links of earlier offers): as ``bestaetigen``."""
        return await self._confirm(request, reference)

    # -- another time ---------------------------------------------------------------------

    @get("/{reference:str}/verschieben", name="manage_days")
    async def move_days(
        self,
        request: Request[Any, Any, Any],
        reference: Reference,
        token: Token = None,
        ab: Annotated[str | None, QueryParameter(max_length=10)] = None,
    ) -> Template:
        found = await _booking(request, reference, token)
        if isinstance(found, Template):
            return found
        core = core_of(request)
        service = _first_service(core, found)
        tz = core.catalog.locations[service.location_id].tz
        today = core.clock.now().astimezone(tz).date()
        first = parse_iso_day(ab) if ab else today
        days, more = await slots.next_days(core, service, first)
        keep = urlencode({"token": token or ""})
        return page(
            request, "days.html", title_key="move", service=service, days=days, more=more,
            earlier=first > today, base=f"/buchung/{quote(found.reference)}/verschieben",
            keep=keep, back_href=f"/buchung/{quote(found.reference)}?{keep}",
            intro=texts.text(lang_of(request), "move_intro"),
        )  # fmt: skip

    @get("/{reference:str}/verschieben/tag/{day:str}", name="manage_times")
    async def move_times(
        self,
        request: Request[Any, Any, Any],
        reference: Reference,
        day: Annotated[str, PathParameter(max_length=10)],
        token: Token = None,
    ) -> Template:
        found = await _booking(request, reference, token)
        if isinstance(found, Template):
            return found
        core = core_of(request)
        service = _first_service(core, found)
        chosen = parse_iso_day(day)
        free = await slots.times_of(core, service, chosen)
        return self._times(request, found, service, token or "", chosen, free)

    def _times(
        self,
        request: Request[Any, Any, Any],
        booking: m.Booking,
        service: ServiceInfo,
        token: str,
        day: date | None,
        free: list[slots.Time],
        *,
        status: int = 200,
        problem: dict[str, Any] | None = None,
    ) -> Template:
        keep = urlencode({"token": token})
        base = f"/buchung/{quote(booking.reference)}/verschieben"
        return page(
            request, "times.html", status=status, title_key="move", service=service, day=day,
            switch_to=f"{base}/tag/{day.isoformat()}?{keep}" if day else f"{base}?{keep}",
            times=free, base=base, keep=keep, action=base, hidden={"token": token},
            problem=problem,
        )  # fmt: skip

    @post("/{reference:str}/verschieben", name="manage_move", status_code=303)
    async def move(
        self, request: Request[Any, Any, Any], reference: Reference
    ) -> Response[Any] | Template:
        found = await _posted(request, reference)
        if isinstance(found, Template):
            return found
        booking, token, form = found
        core = core_of(request)
        service = _first_service(core, booking)
        start = parse_moment("start", forms.field(form, "start", 40))
        lang = lang_of(request)
        try:
            # the citizen moves online (the times this page lists), whoever booked first: a
            # phone booking must not draw on the hotline's share (as the API's reschedule)
            await bookings_of(request).move(booking.id, actor_of(request), "online",
                                            start=start)  # fmt: skip
        except SlotFull:
            free = await slots.times_after(core, service, start - timedelta(seconds=1))
            free = [t for t in free if t.start != start.astimezone(t.start.tzinfo)]
            return self._times(
                request, booking, service, token, None, free, status=409,
                problem={"title": texts.text(lang, "taken_title"),
                         "detail": texts.text(lang, "taken_intro"), "fields": {}},
            )  # fmt: skip
        except DomainError as exc:
            return self._page(request, booking, token, status=STATUS.get(exc.code, 409),
                              problem=problem_of(exc, lang))  # fmt: skip
        path, query = _manage_url(booking, token, geaendert="verschoben")
        return see_other(path, **query)
