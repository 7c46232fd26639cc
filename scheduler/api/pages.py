"""The manage page every message links to: ``/buchung/{reference}?token=…``.

A minimal German HTML page (until the pages issue builds the full one) that shows the booking
and lets the person cancel it (or, for a waiting-list offer, accept or decline it). It works
without JavaScript (a form, then a redirect), sends no referrer and is never cached; a wrong
token is the same "not found" page as a missing booking.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect

from scheduler.api.bookings import authorized_booking
from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingService
from scheduler.booking.core import Core
from scheduler.booking.errors import NotAnOffer, NotFound, OfferExpired, RateLimited

HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
STATUS_DE = {
    "confirmed": "bestätigt",
    "pending": "noch nicht bestätigt",
    "cancelled": "abgesagt",
    "checked_in": "wahrgenommen",
    "no_show": "nicht erschienen",
    "completed": "erledigt",
}
WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
          "Oktober", "November", "Dezember")  # fmt: skip


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    html = (
        '<!doctype html><html lang="de"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title>"
        "<style>body{font:1.2rem/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
        "padding:0 1rem;color:#111;background:#fff}button{font-size:1.1rem;padding:.6rem 1.2rem;"
        "background:#8b0000;color:#fff;border:0;border-radius:.3rem}dt{font-weight:bold}"
        "</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(html, status_code=status, media_type="text/html", headers=HEADERS)


def _too_many(exc: RateLimited) -> Response[str]:
    retry = int(exc.params["retry_after"])
    minutes = max(1, -(-retry // 60))
    page = _page(
        "Zu viele Versuche",
        "<p>Von Ihrem Anschluss kamen zu viele Aufrufe mit ungültigen Links. Bitte versuchen "
        f"Sie es in {minutes} {'Minute' if minutes == 1 else 'Minuten'} erneut.</p>",
        429,
    )
    page.headers["Retry-After"] = str(retry)
    return page


async def _posted(
    request: Request[Any, Any, Any], reference: str
) -> tuple[m.Booking, str, Actor] | Response[str]:
    """A form post's booking (by the form's token), the token and the acting citizen; or the
    page to answer instead (not found, too many failed tokens)."""
    form = await request.form()
    token = str(form.get("token", ""))[:100]
    try:
        booking = await authorized_booking(request, reference, query_token=token)
    except NotFound:
        return _page("Buchung nicht gefunden", "<p>Diese Buchung gibt es nicht.</p>", 404)
    except RateLimited as exc:
        return _too_many(exc)
    return booking, token, Actor(request_id=request.scope.get("state", {}).get("request_id"))


def _when(core: Core, booking: m.Booking) -> str:
    tz = core.catalog.locations[booking.location_id].tz
    start = booking.starts_at.astimezone(tz)
    end = booking.ends_at.astimezone(tz)
    return (
        f"{WEEKDAYS[start.weekday()]}, {start.day}. {MONTHS[start.month - 1]} {start.year}, "
        f"{start:%H:%M} bis {end:%H:%M} Uhr"
    )


class ManagePageController(Controller):
    path = "/buchung"
    include_in_schema = False

    @get("/{reference:str}", operation_id="managePage")
    async def show(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
        token: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> Response[str]:
        core: Core = request.app.state.core
        try:
            booking = await authorized_booking(request, reference, query_token=token)
        except NotFound:
            return _page("Buchung nicht gefunden", "<p>Diese Buchung gibt es nicht.</p>", 404)
        except RateLimited as exc:
            return _too_many(exc)
        services = [
            core.catalog.services[s].name
            for a in booking.appointments
            for s in a.service_ids
            if s in core.catalog.services
        ]
        location = core.catalog.locations[booking.location_id]
        details = (
            "<dl>"
            f"<dt>Buchungscode</dt><dd>{escape(codes.format_reference(booking.reference))}</dd>"
            f"<dt>Leistung</dt><dd>{escape(', '.join(services))}</dd>"
            f"<dt>Termin</dt><dd>{escape(_when(core, booking))}</dd>"
            f"<dt>Ort</dt><dd>{escape(location.name)}, {escape(location.address)}</dd>"
            f"<dt>Status</dt><dd>{escape(STATUS_DE.get(booking.status, booking.status))}</dd>"
            "</dl>"
        )
        ics = f"/api/v1/bookings/{quote(booking.reference)}/calendar.ics?token={quote(token or '')}"
        details += f'<p><a href="{escape(ics)}">In den Kalender übernehmen (.ics)</a></p>'
        if booking.status == m.BookingStatus.PENDING.value and booking.pending_until is not None:
            deadline = booking.pending_until.astimezone(location.tz)
            details += (
                f'<form method="post" action="/buchung/{escape(quote(booking.reference))}'
                '/annehmen">'
                f'<input type="hidden" name="token" value="{escape(token or "")}">'
                f"<p>Dieser Termin ist für Sie reserviert bis {deadline:%d.%m.%Y, %H:%M} Uhr. "
                "Bitte nehmen Sie ihn bis dahin an.</p>"
                '<button type="submit">Termin annehmen</button></form>'
            )
        if booking.status in (m.BookingStatus.CONFIRMED.value, m.BookingStatus.PENDING.value):
            details += (
                f'<form method="post" action="/buchung/{escape(quote(booking.reference))}/absagen">'
                f'<input type="hidden" name="token" value="{escape(token or "")}">'
                "<p>Sie können diesen Termin hier absagen. Der Platz wird dann wieder frei.</p>"
                '<button type="submit">Termin absagen</button></form>'
            )
        return _page("Ihr Termin", details)

    @post("/{reference:str}/annehmen", operation_id="managePageAccept", status_code=303)
    async def accept(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[Any]:
        found = await _posted(request, reference)
        if isinstance(found, Response):
            return found
        booking, token, actor = found
        core: Core = request.app.state.core
        try:
            await core.waitlist.accept(booking.id, actor)
        except (OfferExpired, NotAnOffer):
            return _page(
                "Angebot abgelaufen",
                "<p>Dieses Angebot gilt nicht mehr: die Frist ist abgelaufen oder es wurde "
                "abgelehnt. Der Termin ging an die nächste Person auf der Warteliste.</p>",
                410,
            )
        target = f"/buchung/{quote(booking.reference)}?token={quote(token)}"
        return Redirect(target, status_code=303, headers=HEADERS)

    @post("/{reference:str}/absagen", operation_id="managePageCancel", status_code=303)
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[Any]:
        found = await _posted(request, reference)
        if isinstance(found, Response):
            return found
        booking, token, actor = found
        service: BookingService = request.app.state.bookings
        await service.cancel(booking.id, actor)
        target = f"/buchung/{quote(booking.reference)}?token={quote(token)}"
        return Redirect(target, status_code=303, headers=HEADERS)
