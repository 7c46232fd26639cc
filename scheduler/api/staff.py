"""Staff at the counter: the day's agenda of a calendar (JSON, CSV, printable text),
attendance (check-in, no-show) and one slot's capacity.

Staff keys act on the calendars in their scope, admin keys everywhere; agents get 403, no key
401. A calendar or booking outside a staff key's scope is the same 404 as a missing one. The
agenda holds personal data (names, phone numbers, e-mail addresses): never cached.
"""

from __future__ import annotations

import csv
import io
import textwrap
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import PathParameter, QueryParameter

from scheduler.api.auth import KEY_REQUIRED, current_principal, own_calendar, require
from scheduler.api.bookings import (
    BookingOut,
    _actor,
    _answer,
    _earlier,
    _idempotency,
    authorized_booking,
    booking_out,
)
from scheduler.api.params import DATE_QUERY, MOMENT_FORMAT, parse_date, parse_moment, screened
from scheduler.api.problems import language_of, problem_responses
from scheduler.api.schemas import operation_extras, strict_body
from scheduler.booking import models as m
from scheduler.booking import staff
from scheduler.booking.core import Core

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
CSV = "text/csv"  # Litestar adds "; charset=utf-8" to text types
TEXT = "text/plain"

STATUS_TEXT = {
    "de": {
        "pending": "unbestätigt",
        "confirmed": "bestätigt",
        "checked_in": "erschienen",
        "no_show": "nicht erschienen",
        "completed": "erledigt",
        "cancelled": "abgesagt",
    },
    "en": {
        "pending": "pending",
        "confirmed": "confirmed",
        "checked_in": "checked in",
        "no_show": "no-show",
        "completed": "completed",
        "cancelled": "cancelled",
    },
}
CHANNEL_TEXT = {
    "de": {"online": "online", "phone": "Telefon", "counter": "Schalter"},
    "en": {"online": "online", "phone": "phone", "counter": "counter"},
}
CSV_HEADER = {
    "de": ["Datum", "Beginn", "Ende", "Buchungscode", "Status", "Kanal", "Leistungen",
           "Plätze", "Name", "Kontaktperson", "Telefon", "E-Mail"],
    "en": ["date", "start", "end", "reference", "status", "channel", "services", "seats",
           "name", "contact", "phone", "email"],
}  # fmt: skip
WEEKDAYS = {
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
INDENT = " " * 13  # under the reference


class AgendaBooking(msgspec.Struct):
    start: str
    end: str
    reference: str
    status: str
    channel: str
    service_ids: list[str]
    services: list[str]
    seats: int
    name: str | None
    contact_name: str | None
    phone: str | None
    email: str | None


class SlotOut(msgspec.Struct):
    start: str
    end: str
    capacity: int
    booked: int
    capacity_overridden: bool


class AgendaOut(msgspec.Struct):
    calendar_id: str
    calendar_name: str
    location_id: str
    date: str
    bookings: list[AgendaBooking]
    slots: list[SlotOut]


class CapacityIn(msgspec.Struct, forbid_unknown_fields=True):
    capacity: Annotated[int, msgspec.Meta(ge=0, le=staff.MAX_CAPACITY)]


class SlotCapacityOut(msgspec.Struct):
    calendar_id: str
    start: str
    end: str
    capacity: int
    booked: int
    capacity_overridden: bool


def _core(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


def _local(moment: datetime, agenda: staff.Agenda) -> str:
    return moment.astimezone(agenda.tz).isoformat()


def agenda_out(agenda: staff.Agenda) -> AgendaOut:
    return AgendaOut(
        calendar_id=agenda.calendar_id,
        calendar_name=agenda.calendar_name,
        location_id=agenda.location_id,
        date=agenda.day.isoformat(),
        bookings=[
            AgendaBooking(
                _local(e.start, agenda), _local(e.end, agenda), e.reference, e.status, e.channel,
                e.service_ids, e.service_names, e.seats, e.name, e.contact_name, e.phone, e.email,
            )
            for e in agenda.entries
        ],
        slots=[
            SlotOut(_local(s.start, agenda), _local(s.end, agenda), s.capacity, s.booked,
                    s.capacity_overridden)
            for s in agenda.slots
        ],
    )  # fmt: skip


def _cell(value: str | int | None) -> str:
    """A CSV cell that a spreadsheet cannot mistake for a formula (OWASP: CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def agenda_csv(agenda: staff.Agenda, lang: str) -> bytes:
    """Semicolon-separated with a BOM, as German Excel opens it without an import dialog."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_HEADER[lang])
    for e in agenda.entries:
        start, end = e.start.astimezone(agenda.tz), e.end.astimezone(agenda.tz)
        writer.writerow(
            [_cell(v) for v in (
                start.date().isoformat(), f"{start:%H:%M}", f"{end:%H:%M}", e.reference,
                STATUS_TEXT[lang].get(e.status, e.status),
                CHANNEL_TEXT[lang].get(e.channel, e.channel), ", ".join(e.service_names),
                e.seats, e.name, e.contact_name, e.phone, e.email,
            )]
        )  # fmt: skip
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def agenda_text(agenda: staff.Agenda, lang: str, now: datetime) -> bytes:
    """A page for the clerk's desk: one block per appointment, at most 80 columns."""
    day = agenda.day
    weekday = WEEKDAYS[lang][day.weekday()]
    capacity = sum(s.capacity for s in agenda.slots)
    booked = sum(s.booked for s in agenda.slots)
    count = len(agenda.entries)
    if lang == "de":
        title = f"Terminliste {agenda.calendar_name}"
        when = f"{weekday}, {day:%d.%m.%Y}"
        summary = (
            f"{count} Termin{'' if count == 1 else 'e'}, {booked} von {capacity} Plätzen belegt"
        )
        empty, printed = "Keine Termine.", f"Stand: {now.astimezone(agenda.tz):%d.%m.%Y %H:%M} Uhr"
        phone, email, seats, booked_by = "Tel.", "E-Mail", "Plätze", "gebucht von"
    else:
        title = f"Agenda {agenda.calendar_name}"
        when = f"{weekday}, {day.isoformat()}"
        summary = (
            f"{count} appointment{'' if count == 1 else 's'}, {booked} of {capacity} seats booked"
        )
        empty, printed = "No appointments.", f"As of {now.astimezone(agenda.tz):%Y-%m-%d %H:%M}"
        phone, email, seats, booked_by = "phone", "e-mail", "seats", "booked by"
    lines = [title, agenda.location_name, when, summary, "=" * 78, ""]
    if not agenda.entries:
        lines += [empty, ""]
    for e in agenda.entries:
        start, end = e.start.astimezone(agenda.tz), e.end.astimezone(agenda.tz)
        status = STATUS_TEXT[lang].get(e.status, e.status)
        head = f"{start:%H:%M}–{end:%H:%M}  {e.reference}  {status}"
        if e.seats > 1:
            head += f" ({e.seats} {seats})"
        details = [", ".join(e.service_names), e.name or "—"]
        if e.contact_name:
            details.append(f"{booked_by}: {e.contact_name}")
        contact = [f"{phone} {e.phone}" if e.phone else "", f"{email} {e.email}" if e.email else ""]
        if any(contact):
            details.append("  ".join(c for c in contact if c))
        lines.append(head)
        lines += [
            wrapped
            for text in details
            for wrapped in textwrap.wrap(
                text, 78, initial_indent=INDENT, subsequent_indent=INDENT, break_on_hyphens=False
            )
        ]
        lines.append("")
    lines += ["-" * 78, printed, ""]
    return "\n".join(lines).encode("utf-8")


class AgendaController(Controller):
    path = "/calendars/{calendar_id:str}"
    before_request = screened
    tags = ["staff"]
    guards = [require(m.Role.STAFF)]
    security = KEY_REQUIRED

    @get(
        "/agenda",
        operation_id="getAgenda",
        summary="The day's bookings of a calendar (JSON, CSV or printable text)",
        description=(
            "`date` is a local date (default: today); `format` is `json` (default), `csv` "
            "(semicolon-separated, UTF-8 with BOM) or `text` (a printable page). Cancelled "
            "bookings are left out. Staff keys of the calendar and admin keys."
        ),
        responses=problem_responses(401, 403, 404, 422),
        operation_class=operation_extras(media_types={200: [CSV, TEXT]}),
    )
    async def agenda(
        self,
        request: Request[Any, Any, Any],
        calendar_id: Annotated[str, PathParameter(max_length=64)],
        date_: Annotated[
            str | None, QueryParameter(name="date", max_length=32, schema_extra=DATE_QUERY)
        ] = None,
        format_: Annotated[Literal["json", "csv", "text"], QueryParameter(name="format")] = "json",
    ) -> Response[AgendaOut]:
        core = _core(request)
        await own_calendar(request, calendar_id)
        lang = language_of(request)
        tz = core.catalog.locations[core.catalog.calendars[calendar_id].location_id].tz
        day = parse_date("date", date_, core.clock.now().astimezone(tz).date())
        agenda = await staff.agenda(core, calendar_id, day, lang)
        if format_ == "json":
            return Response(agenda_out(agenda), headers=NO_STORE)
        name = f"agenda-{calendar_id}-{day.isoformat()}"
        if format_ == "csv":
            headers = {**NO_STORE, "Content-Disposition": f'attachment; filename="{name}.csv"'}
            return Response(agenda_csv(agenda, lang), media_type=CSV, headers=headers)  # type: ignore[return-value]
        headers = {**NO_STORE, "Content-Disposition": f'inline; filename="{name}.txt"'}
        body = agenda_text(agenda, lang, core.clock.now())
        return Response(body, media_type=TEXT, headers=headers)  # type: ignore[return-value]

    @patch(
        "/slots/{start:str}",
        operation_id="setSlotCapacity",
        summary="Change one slot's capacity (not below the seats booked: 409)",
        description=(
            "`start` is the slot's start with its offset, URL-encoded "
            "(`2026-11-30T09:00:00%2B01:00`). Staff keys of the calendar and admin keys."
        ),
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422),
    )
    async def set_capacity(
        self,
        request: Request[Any, Any, Any],
        calendar_id: Annotated[str, PathParameter(max_length=64)],
        start: Annotated[str, PathParameter(max_length=40, schema_extra=MOMENT_FORMAT)],
        data: Annotated[CapacityIn, strict_body({"capacity": 2})],
    ) -> Response[SlotCapacityOut]:
        core = _core(request)
        await own_calendar(request, calendar_id)
        moment = parse_moment("start", start)
        principal = await current_principal(request)
        slot = await staff.set_capacity(
            core, calendar_id, moment, data.capacity, _actor(request, principal)
        )
        tz = core.catalog.locations[core.catalog.calendars[calendar_id].location_id].tz
        out = SlotCapacityOut(
            calendar_id, slot.start.astimezone(tz).isoformat(),
            slot.end.astimezone(tz).isoformat(), slot.capacity, slot.booked,
            slot.capacity_overridden,
        )  # fmt: skip
        return Response(out, headers={"Cache-Control": "no-store"})


class AttendanceController(Controller):
    path = "/bookings/{reference:str}"
    before_request = screened
    tags = ["staff"]
    guards = [require(m.Role.STAFF)]
    security = KEY_REQUIRED

    @post(
        "/check-in",
        operation_id="checkInBooking",
        summary="The person came (from two hours before the start, on the day)",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def check_in(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[BookingOut]:
        return await _mark(request, reference, m.BookingStatus.CHECKED_IN)

    @post(
        "/no-show",
        operation_id="markNoShow",
        summary="The person did not come (once the appointment has started, on the day)",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def no_show(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
    ) -> Response[BookingOut]:
        return await _mark(request, reference, m.BookingStatus.NO_SHOW)


async def _mark(
    request: Request[Any, Any, Any], reference: str, status: m.BookingStatus
) -> Response[BookingOut]:
    booking = await authorized_booking(request, reference)
    principal = await current_principal(request)
    core = _core(request)
    key = await _idempotency(request, principal)
    if key is not None and (earlier := await _earlier(core, key)) is not None:
        return earlier  # type: ignore[return-value]
    updated = await staff.mark(core, booking.id, status, _actor(request, principal))
    return await _answer(core, key, 200, booking_out(core, updated))  # type: ignore[return-value]
