"""The staff page: the day's agenda of the clerk's calendars, attendance, and the feed link.

``/staff`` shows, for every calendar of the staff key (an admin key: every calendar), the day's
bookings as ``GET /api/v1/calendars/{id}/agenda`` reads them (:func:`scheduler.booking.staff.
agenda`), with a day switch, and check-in and no-show buttons that record attendance as
``POST /api/v1/bookings/{reference}/check-in`` and ``/no-show`` do
(:func:`scheduler.booking.staff.mark`: the same rules, refusals told in the same words). A
booking outside the key's calendars is the same "not found" as a missing one.

Feed tokens are stored hashed, so no page can show an existing one again: "create the
subscription link" makes a new feed token for one of the key's own calendars (the feed shows
no more than the agenda does) and shows its link once, on the answer to that form, never in a
URL; the link this page made for the same key and calendar before stops working.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import PathParameter, QueryParameter
from litestar.response import Template
from sqlalchemy import select

from scheduler.api.problems import STATUS
from scheduler.booking import codes, feeds, staff
from scheduler.booking import models as m
from scheduler.booking.apikeys import Principal
from scheduler.booking.core import Core
from scheduler.booking.errors import DomainError, NotFound
from scheduler.web import forms, texts
from scheduler.web import session as s
from scheduler.web.render import lang_of, page, see_other
from scheduler.web.session import problem_of

AREA = s.STAFF
Reference = Annotated[str, PathParameter(max_length=20)]
MARKS = {"erschienen": m.BookingStatus.CHECKED_IN, "nicht-erschienen": m.BookingStatus.NO_SHOW}
FEED_NAME = "Mitarbeiterseite {key_id}"  # the feed tokens this page made for a key


def core_of(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


def calendars_of(core: Core, principal: Principal) -> list[str]:
    """The calendars the key may see: a staff key's own, every one for an admin."""
    known = core.catalog.calendars
    if principal.role is m.Role.ADMIN:
        return sorted(known, key=lambda c: (known[c].location_id, c))
    return sorted((c for c in principal.calendar_ids if c in known), key=lambda c: c)


def today(core: Core, calendar_ids: list[str]) -> date:
    """Today in the zone of the key's (first) calendar."""
    catalog = core.catalog
    location = (
        catalog.calendars[calendar_ids[0]].location_id
        if calendar_ids
        else next(iter(catalog.locations))
    )
    return core.clock.now().astimezone(catalog.locations[location].tz).date()


def refused(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    lang = lang_of(request)
    status = STATUS.get(exc.code, 400)
    return page(  # type: ignore[return-value]
        request, "staff_error.html", status=status,
        title_key="not_found_title" if status == 404 else "error_title",
        brand=texts.text(lang, "staff_brand"), home_url=AREA.path, problem=problem_of(exc, lang),
    )  # fmt: skip


async def ensure(request: Request[Any, Any, Any]) -> Principal:
    return await s.current(request, AREA)


class StaffPages(s.AreaPages):
    path = "/staff"
    area = AREA
    exception_handlers = {s.NotLoggedIn: s.not_logged_in, DomainError: refused}  # type: ignore[dict-item]

    # -- the agenda ---------------------------------------------------------------------------

    @get("/", name="staff_agenda")
    async def agenda(
        self,
        request: Request[Any, Any, Any],
        tag: Annotated[str | None, QueryParameter(max_length=10)] = None,
        erledigt: Annotated[str | None, QueryParameter(max_length=20)] = None,
        code: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> Template:
        principal = await ensure(request)
        lang = lang_of(request)
        notice = None
        if erledigt in MARKS and code and (parsed := codes.parse_reference(code)):
            notice = texts.text(lang, f"staff_done_{erledigt}", code=codes.format_reference(parsed))
        day = forms.parse_day("tag", tag) if tag else None
        return await self._agenda(request, principal, day, notice=notice)

    async def _agenda(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        day: date | None,
        *,
        status: int = 200,
        problem: dict[str, Any] | None = None,
        notice: str | None = None,
        feed: dict[str, str] | None = None,
    ) -> Template:
        core = core_of(request)
        lang = lang_of(request)
        calendar_ids = calendars_of(core, principal)
        now_day = today(core, calendar_ids)
        shown = day or now_day
        agendas = []
        for calendar_id in calendar_ids:
            agenda = await staff.agenda(core, calendar_id, shown, lang)
            agendas.append(
                {
                    "id": calendar_id,
                    "name": agenda.calendar_name,
                    "location": agenda.location_name,
                    "capacity": sum(sl.capacity for sl in agenda.slots),
                    "booked": sum(sl.booked for sl in agenda.slots),
                    "entries": [
                        {
                            "start": e.start.astimezone(agenda.tz),
                            "end": e.end.astimezone(agenda.tz),
                            "reference": e.reference,
                            "status": e.status,
                            "channel": e.channel,
                            "services": ", ".join(e.service_names),
                            "seats": e.seats,
                            "name": e.name,
                            "contact_name": e.contact_name,
                            "phone": e.phone,
                            "email": e.email,
                            "markable": e.status in staff.MARKABLE,
                        }
                        for e in agenda.entries
                    ],
                }
            )
        return page(
            request, "staff.html", status=status, title_key="staff_title",
            brand=texts.text(lang, "staff_brand"), home_url=AREA.path, principal=principal,
            day=shown, today=now_day, previous=shown - timedelta(days=1),
            next=shown + timedelta(days=1), agendas=agendas, problem=problem, notice=notice,
            feed=feed, labels={"tag": texts.text(lang, "staff_day")},
        )  # fmt: skip

    # -- attendance ---------------------------------------------------------------------------

    @post("/buchung/{reference:str}/{mark:str}", name="staff_mark", status_code=303)
    async def mark(
        self,
        request: Request[Any, Any, Any],
        reference: Reference,
        mark: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[Any] | Template:
        """Check-in or no-show, as the API records it; back to the booking's day."""
        principal = await ensure(request)
        core = core_of(request)
        target = MARKS.get(mark)
        if target is None:
            raise NotFound("route", mark)
        booking = await request.app.state.bookings.find(reference)
        calendars = {c for a in booking.appointments for c in a.calendar_ids}
        if principal.role is not m.Role.ADMIN and not calendars & principal.calendar_ids:
            raise NotFound("booking", reference)
        tz = core.catalog.locations[booking.location_id].tz
        form = await request.form()
        shown = forms.field(form, "tag", 10)
        day = forms.parse_day("tag", shown) if shown else booking.starts_at.astimezone(tz).date()
        try:
            await staff.mark(core, booking.id, target.value, s.actor(request, principal))
        except DomainError as exc:
            return await self._agenda(
                request, principal, day, status=STATUS.get(exc.code, 409),
                problem=problem_of(exc, lang_of(request)),
            )  # fmt: skip
        return see_other(
            AREA.path,
            tag=day.isoformat(),
            erledigt=mark,
            code=codes.format_reference(booking.reference),
        )

    # -- the subscription feed ----------------------------------------------------------------

    @post("/kalender/{calendar_id:str}/abo", name="staff_feed", status_code=200)
    async def feed(
        self,
        request: Request[Any, Any, Any],
        calendar_id: Annotated[str, PathParameter(max_length=64)],
    ) -> Template:
        """A new feed link for one of the key's calendars, shown once (on this answer)."""
        principal = await ensure(request)
        core = core_of(request)
        if calendar_id not in calendars_of(core, principal):
            raise NotFound("calendar", calendar_id)
        form = await request.form()
        shown = forms.field(form, "tag", 10)
        day = forms.parse_day("tag", shown) if shown else None
        name = FEED_NAME.format(key_id=principal.key_id)
        now = core.clock.now()
        async with core.sessions() as session, session.begin():
            earlier = await session.scalars(
                select(m.FeedToken).where(
                    m.FeedToken.calendar_id == calendar_id,
                    m.FeedToken.name == name,
                    m.FeedToken.revoked_at.is_(None),
                )
            )
            for row in earlier:
                await feeds.revoke_token(session, row.id, now)
            _, token = await feeds.create_token(
                session, calendar_id, name, set(core.catalog.calendars), now
            )
        request.app.state.feed_cache.forget_tokens()
        url = (
            f"{core.base_url.rstrip('/')}/api/v1/calendars/{quote(calendar_id)}/feed.ics"
            f"?token={token}"
        )
        notice = texts.text(lang_of(request), "staff_feed_made")
        return await self._agenda(
            request, principal, day, notice=notice, feed={"calendar_id": calendar_id, "url": url}
        )

    @get(["/kalender/{calendar_id:str}/abo", "/buchung/{reference:str}/{mark:str}"],
         name="staff_form_again")  # fmt: skip
    async def form_again(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return s.back_to(request, AREA.path)
