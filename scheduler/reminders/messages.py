"""Rendering the e-mails a booking sends: confirmation, reminder, cancellation, reschedule,
waiting-list offer and the e-mail opt-in (the link that confirms a booking), in German (the
default) or English.

:func:`render` turns one :class:`MessageData` into a ready-to-send
:class:`~scheduler.reminders.mime.Outgoing` (envelope and bytes)::

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain; charset=utf-8
    │   └── text/html; charset=utf-8
    └── text/calendar; method=REQUEST|CANCEL; charset=UTF-8   (termin.ics, when there is one)

Without an .ics the message is just the multipart/alternative. The texts of each language live
in :data:`TEXTS`; weekday and month names are written out here rather than taken from the
process locale, so a server with ``LANG=C`` still writes "Montag, 30. November 2026, 09:00 Uhr".
Every value that comes from a booking is escaped in the HTML part and kept on one line in
headers (a name with a line break must not add a header).
"""

from __future__ import annotations

import dataclasses
import email.utils
import html
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from scheduler.reminders import mime
from scheduler.reminders.mime import Outgoing

__all__ = ["TEXTS", "Kind", "MessageData", "Outgoing", "format_when", "render"]

ICS_FILENAME = "termin.ics"
DEFAULT_LANGUAGE = "de"


class Kind(StrEnum):
    CONFIRMATION = "confirmation"
    REMINDER = "reminder"
    CANCELLATION = "cancellation"
    RESCHEDULE = "reschedule"
    WAITLIST_OFFER = "waitlist_offer"
    OPT_IN = "opt_in"


@dataclass(frozen=True, slots=True)
class MessageData:
    kind: Kind
    language: str  # "de" or "en"; anything else falls back to German
    to_name: str  # the contact person (may differ from the attendee)
    to_email: str
    attendee_name: str
    reference: str  # "K7QM-2X9D"
    services: list[str]  # display names in that language
    start: datetime  # aware
    end: datetime  # aware
    tz: ZoneInfo  # the location's zone; times in mails are local
    place_name: str
    place_address: str
    what_to_bring: list[str]  # lines (service descriptions)
    manage_url: str  # link to view/cancel/move
    ics: bytes | None  # the .ics attachment (METHOD:REQUEST or CANCEL), or None
    ics_method: str | None  # "REQUEST" / "CANCEL" (the Content-Type method= parameter)
    message_id: str  # stable per outbox row: "<outbox-123.abc@termine.example.de>"
    sender: str  # "Terminvergabe Stadt X <termine@x.de>"
    previous_start: datetime | None = None  # RESCHEDULE: the old time
    respond_by: datetime | None = None  # WAITLIST_OFFER, OPT_IN: it lapses at this moment
    book_url: str | None = None  # CANCELLATION: where to book a new appointment
    # further appointments of the booking (a vaccination's second dose): (services, start, end)
    also: tuple[tuple[str, datetime, datetime], ...] = ()


WEEKDAYS = {
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
MONTHS = {
    "de": (
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}

# One dict per language. Templates are filled once with str.format; the values never are, so a
# "{" in a citizen's name is just a character.
TEXTS: dict[str, dict[str, str]] = {
    "de": {
        "subject.confirmation": "Terminbestätigung: {services} am {when}",
        "subject.reminder": "Erinnerung: {services} am {when}",
        "subject.cancellation": "Ihr Termin wurde abgesagt: {services} am {when}",
        "subject.reschedule": "Ihr Termin wurde verlegt: {services} am {when}",
        "subject.waitlist_offer": "Ein Termin ist frei geworden: {services} am {when}",
        "subject.opt_in": "Bitte bestätigen Sie Ihre Buchung: {services} am {when}",
        "no_services": "Ihr Termin",
        "and": "und",
        "greeting": "Guten Tag {name},",
        "for_attendee": " für {attendee}",
        "intro.confirmation": "hiermit bestätigen wir Ihren Termin{for_attendee}.",
        "intro.reminder": "wir erinnern Sie an Ihren Termin{for_attendee}.",
        "intro.cancellation": "Ihr Termin{for_attendee} wurde abgesagt.",
        "intro.reschedule": "Ihr Termin{for_attendee} wurde verlegt.",
        "intro.waitlist_offer": (
            "ein Termin, auf den Sie gewartet haben, ist frei geworden. "
            "Wir halten ihn{for_attendee} für Sie bereit."
        ),
        "intro.opt_in": (
            "vielen Dank für Ihre Buchung{for_attendee}. Bitte bestätigen Sie sie noch mit dem "
            "Link unten: erst dann ist der Termin verbindlich für Sie gebucht."
        ),
        "confirm_by": (
            "Bitte bestätigen Sie die Buchung bis {when}; sonst verfällt sie und der Termin "
            "wird wieder frei. Wenn Sie nichts gebucht haben, können Sie diese Nachricht "
            "einfach löschen."
        ),
        "respond_by": (
            "Bitte bestätigen Sie den Termin bis {when} über den Link unten; "
            "danach geben wir ihn an die nächste Person weiter."
        ),
        "respond": (
            "Bitte bestätigen Sie den Termin über den Link unten; "
            "sonst geben wir ihn an die nächste Person weiter."
        ),
        "rebook": "Wenn Sie einen neuen Termin brauchen, können Sie jederzeit wieder einen buchen.",
        "rebook.link": "Neuen Termin buchen",
        "label.when": "Termin",
        "label.when.reschedule": "Neuer Termin",
        "label.when.cancellation": "Abgesagter Termin",
        "label.previous": "Bisheriger Termin",
        "label.services": "Anliegen",
        "label.also": "Weiterer Termin",
        "label.attendee": "Für",
        "label.place": "Ort",
        "label.reference": "Buchungscode",
        "bring": "Bitte bringen Sie mit:",
        "manage": "Termin ansehen, verlegen oder absagen",
        "manage.cancellation": "Abgesagten Termin ansehen",
        "manage.waitlist_offer": "Termin annehmen oder ablehnen",
        "manage.opt_in": "Buchung bestätigen",
        "ics": "Im Anhang ({filename}) finden Sie den Termin für Ihren Kalender.",
        "ics.cancellation": (
            "Mit dem Anhang ({filename}) entfernen Sie den Termin aus Ihrem Kalender."
        ),
        "closing": "Mit freundlichen Grüßen",
        "footer": (
            "Diese Nachricht wurde automatisch erstellt. Antworten darauf werden nicht gelesen."
        ),
        "when": "{weekday}, {day}. {month} {year}, {time} Uhr",
        "until": "bis {time} Uhr",
    },
    "en": {
        "subject.confirmation": "Appointment confirmed: {services} on {when}",
        "subject.reminder": "Reminder: {services} on {when}",
        "subject.cancellation": "Your appointment was cancelled: {services} on {when}",
        "subject.reschedule": "Your appointment was moved: {services} on {when}",
        "subject.waitlist_offer": "An appointment is available: {services} on {when}",
        "subject.opt_in": "Please confirm your booking: {services} on {when}",
        "no_services": "Your appointment",
        "and": "and",
        "greeting": "Hello {name},",
        "for_attendee": " for {attendee}",
        "intro.confirmation": "This confirms your appointment{for_attendee}.",
        "intro.reminder": "This is a reminder of your appointment{for_attendee}.",
        "intro.cancellation": "Your appointment{for_attendee} has been cancelled.",
        "intro.reschedule": "Your appointment{for_attendee} has been moved.",
        "intro.waitlist_offer": (
            "An appointment you were waiting for has become available. "
            "We are holding it{for_attendee} for you."
        ),
        "intro.opt_in": (
            "Thank you for your booking{for_attendee}. Please confirm it using the link below: "
            "only then is the appointment booked for you."
        ),
        "confirm_by": (
            "Please confirm the booking by {when}; otherwise it lapses and the appointment is "
            "released. If you did not book anything, just delete this message."
        ),
        "respond_by": (
            "Please confirm it by {when} using the link below; "
            "after that it goes to the next person on the waiting list."
        ),
        "respond": (
            "Please confirm it using the link below; "
            "otherwise it goes to the next person on the waiting list."
        ),
        "rebook": "If you need a new appointment, you are welcome to book one at any time.",
        "rebook.link": "Book a new appointment",
        "label.when": "When",
        "label.when.reschedule": "New time",
        "label.when.cancellation": "Cancelled appointment",
        "label.previous": "Previous time",
        "label.services": "Service",
        "label.also": "Further appointment",
        "label.attendee": "For",
        "label.place": "Where",
        "label.reference": "Booking code",
        "bring": "Please bring:",
        "manage": "View, move or cancel your appointment",
        "manage.cancellation": "View the cancelled appointment",
        "manage.waitlist_offer": "Accept or decline the appointment",
        "manage.opt_in": "Confirm the booking",
        "ics": "The attachment ({filename}) adds the appointment to your calendar.",
        "ics.cancellation": (
            "The attachment ({filename}) removes the appointment from your calendar."
        ),
        "closing": "Kind regards",
        "footer": "This message was generated automatically. Replies to it are not read.",
        "when": "{weekday}, {day} {month} {year}, {time}",
        "until": "until {time}",
    },
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def _one_line(value: str) -> str:
    """A value fit for a header or a table cell: control characters (line breaks) become
    spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _language(language: str) -> str:
    code = language.strip().lower().replace("_", "-").split("-")[0]
    return code if code in TEXTS else DEFAULT_LANGUAGE


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("message times must be timezone-aware")
    return moment.astimezone(tz)


def _clock(local: datetime, language: str) -> str:
    if language == "en":
        hour = local.hour % 12 or 12
        return f"{hour}:{local.minute:02d} {'am' if local.hour < 12 else 'pm'}"
    return f"{local.hour:02d}:{local.minute:02d}"


def format_when(moment: datetime, tz: ZoneInfo, language: str) -> str:
    """'Montag, 30. November 2026, 09:00 Uhr' / 'Monday, 30 November 2026, 9:00 am' in ``tz``."""
    lang = _language(language)
    local = _local(moment, tz)
    return TEXTS[lang]["when"].format(
        weekday=WEEKDAYS[lang][local.weekday()],
        day=local.day,
        month=MONTHS[lang][local.month - 1],
        year=local.year,
        time=_clock(local, lang),
    )


def _span(data: MessageData, lang: str) -> str:
    """The start with its end: '… 09:00 Uhr (bis 09:15 Uhr)'; the date again if the end is on
    another day."""
    start = _local(data.start, data.tz)
    end = _local(data.end, data.tz)
    when = format_when(data.start, data.tz, lang)
    if end <= start:
        return when
    if end.date() != start.date():
        return f"{when} – {format_when(data.end, data.tz, lang)}"
    return f"{when} ({TEXTS[lang]['until'].format(time=_clock(end, lang))})"


def _join(items: list[str], lang: str) -> str:
    names = [_one_line(s) for s in items if s.strip()]
    if not names:
        return TEXTS[lang]["no_services"]
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} {TEXTS[lang]['and']} {names[-1]}"


def _same_person(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


@dataclass(frozen=True, slots=True)
class _Content:
    """What a message says, before it becomes plain text or HTML. All plain strings."""

    lang: str
    subject: str
    greeting: str
    intro: str
    notes: list[str]  # paragraphs after the intro (respond by …, book again)
    details: list[tuple[str, str]]  # (label, value) rows
    bring_title: str
    bring: list[str]
    links: list[tuple[str, str]]  # (label, url)
    attachment_note: str
    closing: str
    signature: str
    footer: str


def _content(data: MessageData) -> _Content:
    lang = _language(data.language)
    t = TEXTS[lang]
    kind = Kind(data.kind)
    services = _join(data.services, lang)
    when = format_when(data.start, data.tz, lang)
    to_name = _one_line(data.to_name)
    attendee = _one_line(data.attendee_name)
    for_attendee = (
        t["for_attendee"].format(attendee=attendee)
        if attendee and not _same_person(attendee, to_name)
        else ""
    )

    notes: list[str] = []
    if kind is Kind.WAITLIST_OFFER:
        if data.respond_by is not None:
            notes.append(t["respond_by"].format(when=format_when(data.respond_by, data.tz, lang)))
        else:
            notes.append(t["respond"])
    if kind is Kind.OPT_IN and data.respond_by is not None:
        notes.append(t["confirm_by"].format(when=format_when(data.respond_by, data.tz, lang)))
    if kind is Kind.CANCELLATION:
        notes.append(t["rebook"])

    when_label = t.get(f"label.when.{kind.value}", t["label.when"])
    details = [(when_label, _span(data, lang))]
    if kind is Kind.RESCHEDULE and data.previous_start is not None:
        details.append((t["label.previous"], format_when(data.previous_start, data.tz, lang)))
    details.append((t["label.services"], services))
    for names, start, end in data.also:
        span = _span(dataclasses.replace(data, start=start, end=end), lang)
        details.append((t["label.also"], f"{_one_line(names)}: {span}"))
    if for_attendee:
        details.append((t["label.attendee"], attendee))
    place = ", ".join(p for p in (_one_line(data.place_name), _one_line(data.place_address)) if p)
    if place:
        details.append((t["label.place"], place))
    details.append((t["label.reference"], _one_line(data.reference)))

    links = [(t.get(f"manage.{kind.value}", t["manage"]), _one_line(data.manage_url))]
    if kind is Kind.CANCELLATION and data.book_url:
        links.append((t["rebook.link"], _one_line(data.book_url)))

    # what to bring comes with the confirmation (an opt-in is no booking yet)
    bring = (
        [] if kind in (Kind.CANCELLATION, Kind.OPT_IN) else [b.strip() for b in data.what_to_bring]
    )
    attachment_note = ""
    if data.ics is not None:
        key = "ics.cancellation" if kind is Kind.CANCELLATION else "ics"
        attachment_note = t[key].format(filename=ICS_FILENAME)

    return _Content(
        lang=lang,
        subject=t[f"subject.{kind.value}"].format(services=services, when=when),
        greeting=t["greeting"].format(name=to_name),
        intro=t[f"intro.{kind.value}"].format(for_attendee=for_attendee),
        notes=notes,
        details=details,
        bring_title=t["bring"],
        bring=[b for b in bring if b],
        links=links,
        attachment_note=attachment_note,
        closing=t["closing"],
        signature=_one_line(email.utils.parseaddr(data.sender)[0]),
        footer=t["footer"],
    )


def _plain(c: _Content) -> str:
    width = max(len(label) for label, _ in c.details) + 2
    out = [c.greeting, "", c.intro, ""]
    for note in c.notes:
        out += [note, ""]
    out += [f"{label + ':':<{width}}{value}" for label, value in c.details]
    out.append("")
    if c.bring:
        out.append(c.bring_title)
        for item in c.bring:
            lines = item.splitlines() or [""]
            out.append(f"- {lines[0]}")
            out += [f"  {line}" for line in lines[1:]]
        out.append("")
    out += [f"{label}: {url}" for label, url in c.links]
    out.append("")
    if c.attachment_note:
        out += [c.attachment_note, ""]
    out.append(c.closing)
    if c.signature:
        out.append(c.signature)
    out += ["", "-- ", c.footer, ""]
    return "\n".join(out)


def _html(c: _Content) -> str:
    e = html.escape
    cell = 'style="text-align:left;vertical-align:top;padding:2px 12px 2px 0"'
    rows = "\n".join(
        f"<tr><th {cell}>{e(label)}</th><td {cell}>{e(value)}</td></tr>"
        for label, value in c.details
    )
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{e(c.lang)}">',
        f'<head><meta charset="utf-8"><title>{e(c.subject)}</title></head>',
        '<body style="font-family:Arial,Helvetica,sans-serif;line-height:1.4">',
        f"<p>{e(c.greeting)}</p>",
        f"<p>{e(c.intro)}</p>",
    ]
    parts += [f"<p>{e(note)}</p>" for note in c.notes]
    parts.append(f'<table role="presentation" style="border-collapse:collapse">\n{rows}\n</table>')
    if c.bring:
        items = "\n".join(
            f"<li>{'<br>'.join(e(line) for line in item.splitlines())}</li>" for item in c.bring
        )
        parts.append(f"<p><strong>{e(c.bring_title)}</strong></p>\n<ul>\n{items}\n</ul>")
    parts += [f'<p>{e(label)}: <a href="{e(url)}">{e(url)}</a></p>' for label, url in c.links]
    if c.attachment_note:
        parts.append(f"<p>{e(c.attachment_note)}</p>")
    signature = f"<br>{e(c.signature)}" if c.signature else ""
    parts.append(f"<p>{e(c.closing)}{signature}</p>")
    parts.append(f'<p style="color:#666;font-size:small">{e(c.footer)}</p>')
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def render(data: MessageData, *, now: datetime | None = None) -> Outgoing:
    """The message for one outbox row, as the bytes that go over SMTP. ``now`` goes into the
    Date header (pass the service clock's time); without it the system time is used. An
    address SMTP cannot carry raises ``ValueError``."""
    content = _content(data)
    text = mime.multipart(
        "alternative",
        mime.boundary_for(data.message_id, "alt"),
        [mime.text_part("plain", _plain(content)), mime.text_part("html", _html(content))],
    )
    body = text
    if data.ics is not None:
        params = {"charset": "UTF-8"}
        if data.ics_method:
            params = {"method": _one_line(data.ics_method).upper(), **params}
        ics = mime.attachment("text/calendar", params, ICS_FILENAME, data.ics)
        body = mime.multipart("mixed", mime.boundary_for(data.message_id, "mix"), [text, ics])
    return mime.message(
        sender=data.sender,
        to_name=data.to_name,
        to_email=data.to_email,
        subject=content.subject,
        date=email.utils.format_datetime(now) if now is not None else email.utils.formatdate(),
        message_id=data.message_id,
        language=content.lang,
        body=body,
        extra=(("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All")),
    )
