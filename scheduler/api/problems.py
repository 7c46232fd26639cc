"""The one place that turns errors into HTTP answers: RFC 9457 problem details.

German by default, English with ``Accept-Language: en``. Every answer carries a stable ``code``;
each one is counted (``scheduler_refusals_total``) and its code left in the request's state for
the request middleware.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from scheduler import metrics
from scheduler.booking import errors as e

log = logging.getLogger("scheduler.api")

PROBLEM = "application/problem+json"
TYPE_BASE = "https://scheduler.invalid/problems/"

STATUS = {
    "validation_failed": 422,
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_eligible": 403,
    "window_closed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "slot_full": 409,
    "hold_expired": 409,
    "limit_reached": 409,
    "campaign_full": 409,
    "waitlist_first": 409,
    "offer_expired": 410,
    "not_an_offer": 409,
    "opt_in_expired": 410,
    "offer_pending": 409,
    "capacity_below_booked": 409,
    "already_changed": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
    "reservation_unavailable": 503,
    "internal_error": 500,
    "unavailable": 503,
}

# code -> language -> (title, detail); details are str.format templates over the params.
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "validation_failed": {
        "de": ("Ungültige Eingabe", "Bitte prüfen Sie die markierten Angaben."),
        "en": ("Invalid input", "Please check the fields listed."),
    },
    "bad_request": {
        "de": ("Ungültige Anfrage", "Die Anfrage konnte nicht gelesen werden."),
        "en": ("Bad request", "The request could not be read."),
    },
    "unauthorized": {
        "de": ("Anmeldung nötig", "Bitte einen gültigen API-Schlüssel angeben."),
        "en": ("Authentication required", "Please present a valid API key."),
    },
    "forbidden": {
        "de": ("Nicht erlaubt", "Mit dieser Berechtigung ist das nicht möglich."),
        "en": ("Forbidden", "Your role does not allow this."),
    },
    "not_eligible": {
        "de": ("Nicht berechtigt", "Die Voraussetzungen für diesen Termin sind nicht erfüllt."),
        "en": ("Not eligible", "The conditions for this appointment are not met."),
    },
    "window_closed": {
        "de": ("Buchung noch nicht möglich", "Die Buchung für diese Aktion ist nicht geöffnet."),
        "en": ("Booking not open", "Booking for this campaign is not open."),
    },
    "not_found": {
        "de": ("Nicht gefunden", "Das Gesuchte gibt es nicht."),
        "en": ("Not found", "There is no such thing here."),
    },
    "method_not_allowed": {
        "de": ("Methode nicht erlaubt", "Diese Adresse unterstützt die Methode nicht."),
        "en": ("Method not allowed", "This address does not support that method."),
    },
    "slot_full": {
        "de": ("Termin vergeben", "Dieser Termin ist leider schon vergeben."),
        "en": ("Slot taken", "This time is no longer available."),
    },
    "hold_expired": {
        "de": ("Reservierung abgelaufen", "Die Reservierung ist abgelaufen oder unbekannt."),
        "en": ("Hold expired", "The hold has expired or is unknown."),
    },
    "limit_reached": {
        "de": ("Grenze erreicht", "Für diese Person sind bereits genug Termine gebucht."),
        "en": ("Limit reached", "This person already has enough bookings."),
    },
    "campaign_full": {
        "de": (
            "Alle Plätze vergeben",
            "Alle Plätze dieser Aktion sind vergeben. Sie können sich auf die Warteliste "
            "setzen lassen; wird ein Platz frei, bieten wir ihn Ihnen an.",
        ),
        "en": (
            "Campaign full",
            "Every place of this campaign is taken. You can join the waiting list; when a place "
            "frees up, we offer it to you.",
        ),
    },
    "waitlist_first": {
        "de": (
            "Warteliste zuerst",
            "Es gibt eine Warteliste für diese Aktion: frei gewordene Termine bieten wir zuerst "
            "den Wartenden an. Sie können sich ebenfalls auf die Warteliste setzen lassen.",
        ),
        "en": (
            "Waiting list first",
            "This campaign has a waiting list: freed appointments are offered to the people on "
            "it first. You can join the waiting list as well.",
        ),
    },
    "offer_expired": {
        "de": (
            "Angebot abgelaufen",
            "Dieses Angebot gilt nicht mehr: die Frist ist abgelaufen oder es wurde abgelehnt.",
        ),
        "en": (
            "Offer expired",
            "This offer is no longer open: its deadline has passed or it was declined.",
        ),
    },
    "not_an_offer": {
        "de": ("Kein Angebot", "Diese Buchung ist kein Angebot der Warteliste."),
        "en": ("Not an offer", "This booking is no offer of a waiting list."),
    },
    "opt_in_expired": {
        "de": (
            "Bestätigungsfrist abgelaufen",
            "Diese Buchung wurde nicht rechtzeitig bestätigt und ist verfallen (oder sie wurde "
            "abgesagt). Der Termin ist wieder frei; Sie können gern erneut buchen.",
        ),
        "en": (
            "Confirmation period over",
            "This booking was not confirmed in time and has lapsed (or it was cancelled). The "
            "appointment is free again; you are welcome to book again.",
        ),
    },
    "offer_pending": {
        "de": (
            "Angebot offen",
            "Ihnen ist ein Termin angeboten (Buchung {reference}). Bitte nehmen Sie das Angebot "
            "an oder sagen Sie den angebotenen Termin ab; mit der Absage verlassen Sie auch die "
            "Warteliste.",
        ),
        "en": (
            "Offer open",
            "An appointment is offered to you (booking {reference}). Please accept the offer or "
            "cancel the offered booking; cancelling it also takes you off the waiting list.",
        ),
    },
    "capacity_below_booked": {
        "de": (
            "Kapazität zu klein",
            "Die Kapazität kann nicht unter die {booked} gebuchten Plätze gesenkt werden.",
        ),
        "en": ("Capacity too small", "Capacity cannot go below the {booked} seats booked."),
    },
    "already_changed": {
        "de": (
            "Termin inzwischen geändert",
            "Der Termin wurde inzwischen geändert. Bitte laden Sie ihn neu.",
        ),
        "en": ("Changed meanwhile", "The booking has changed meanwhile. Please reload it."),
    },
    "body_too_large": {
        "de": ("Anfrage zu groß", "Die Anfrage ist größer als erlaubt."),
        "en": ("Request too large", "The request body is larger than allowed."),
    },
    "unsupported_media_type": {
        "de": ("Falsches Format", "Bitte JSON senden (Content-Type: application/json)."),
        "en": ("Unsupported media type", "Please send JSON (Content-Type: application/json)."),
    },
    "idempotency_key_reused": {
        "de": (
            "Idempotency-Key schon verwendet",
            "Dieser Idempotency-Key wurde schon für eine andere Anfrage verwendet.",
        ),
        "en": (
            "Idempotency key reused",
            "This Idempotency-Key was already used for a different request.",
        ),
    },
    "rate_limited": {
        "de": ("Zu viele Anfragen", "Bitte versuchen Sie es in {retry_after} Sekunden erneut."),
        "en": ("Too many requests", "Please try again in {retry_after} seconds."),
    },
    "reservation_unavailable": {
        "de": (
            "Reservierung gerade nicht möglich",
            "Bitte versuchen Sie es in {retry_after} Sekunden erneut.",
        ),
        "en": ("Reservation unavailable", "Please try again in {retry_after} seconds."),
    },
    "internal_error": {
        "de": ("Interner Fehler", "Ein unerwarteter Fehler ist aufgetreten."),
        "en": ("Internal error", "An unexpected error occurred."),
    },
    "unavailable": {
        "de": ("Dienst nicht verfügbar", "Der Dienst ist gerade nicht verfügbar."),
        "en": ("Service unavailable", "The service is unavailable right now."),
    },
}

WINDOW_DETAIL = {
    "de": {
        "between": "Buchungen für diese Aktion sind vom {opens_at} bis zum {closes_at} möglich.",
        "from": "Buchungen für diese Aktion sind ab dem {opens_at} möglich.",
    },
    "en": {
        "between": "This campaign can be booked from {opens_at} until {closes_at}.",
        "from": "This campaign can be booked from {opens_at}.",
    },
}

NOT_ELIGIBLE_DETAIL = {
    "de": {
        "too_young": (
            "Diese Aktion ist für Menschen ab {min_age} Jahren. Am Tag des Termins ist die Person "
            "noch nicht {min_age} Jahre alt; möglich sind Termine ab dem {eligible_from}."
        ),
        "not_resident": (
            "Diese Aktion ist nur für Einwohnerinnen und Einwohner mit der Postleitzahl "
            "{postcodes}."
        ),
    },
    "en": {
        "too_young": (
            "This campaign is for people aged {min_age} and over. On the day of the appointment "
            "the person is not yet {min_age}; appointments from {eligible_from} are possible."
        ),
        "not_resident": "This campaign is only for residents with the postcode {postcodes}.",
    },
}

# limit_reached by its reason (the per-person limit keeps the general sentence)
LIMIT_DETAIL = {
    "de": {
        "email": (
            "Mit dieser E-Mail-Adresse sind bereits {limit} Termine gebucht, die noch "
            "bevorstehen. Weitere Termine sind erst möglich, wenn einer davon vorbei ist oder "
            "abgesagt wurde. Für mehrere Personen hilft Ihnen das Bürgertelefon."
        ),
        "phone": (
            "Mit dieser Telefonnummer sind bereits {limit} Termine gebucht, die noch "
            "bevorstehen. Weitere Termine sind erst möglich, wenn einer davon vorbei ist oder "
            "abgesagt wurde. Für mehrere Personen hilft Ihnen das Bürgertelefon."
        ),
    },
    "en": {
        "email": (
            "This e-mail address already has {limit} upcoming appointments. More are possible "
            "once one of them is over or cancelled. To book for several people, please call "
            "the citizens' hotline."
        ),
        "phone": (
            "This phone number already has {limit} upcoming appointments. More are possible "
            "once one of them is over or cancelled. To book for several people, please call "
            "the citizens' hotline."
        ),
    },
}

NOT_FOUND_DETAIL = {
    "de": {
        "service": "Die Leistung „{ident}“ gibt es nicht.",
        "location": "Den Standort „{ident}“ gibt es nicht.",
        "calendar": "Den Kalender „{ident}“ gibt es nicht.",
        "api_key": "Den Schlüssel „{ident}“ gibt es nicht.",
        "booking": "Diese Buchung gibt es nicht.",
        "feed_token": "Diesen Feed-Schlüssel gibt es nicht.",
        "notification": "Diese Nachricht gibt es nicht.",
        "waitlist_entry": "Diesen Eintrag auf der Warteliste gibt es nicht.",
        "campaign": "Die Aktion „{ident}“ gibt es nicht.",
        "slot": "Zu dieser Zeit beginnt in diesem Kalender kein Slot.",
        "route": "Unter dieser Adresse gibt es nichts.",
    },
    "en": {
        "service": "There is no service '{ident}'.",
        "location": "There is no location '{ident}'.",
        "calendar": "There is no calendar '{ident}'.",
        "api_key": "There is no key '{ident}'.",
        "booking": "There is no such booking.",
        "feed_token": "There is no such feed token.",
        "notification": "There is no such message.",
        "waitlist_entry": "There is no such waiting-list entry.",
        "campaign": "There is no campaign '{ident}'.",
        "slot": "No slot of this calendar starts at this time.",
        "route": "There is nothing at this address.",
    },
}

FIELD_MESSAGES = {
    "de": {
        "required": "Angabe fehlt.",
        "date": "Erwartet ein Datum im Format JJJJ-MM-TT.",
        "datetime": "Erwartet Datum und Uhrzeit mit Zeitzone, z. B. 2026-12-01T09:00:00+01:00.",
        "naive_datetime": "Die Uhrzeit braucht eine Zeitzone (z. B. +01:00).",
        "to_before_from": "Das Ende liegt vor dem Anfang.",
        "range_too_long": "Der Zeitraum ist länger als {max} Tage.",
        "one_of": "Erlaubt sind: {choices}.",
        "length": "Länge zwischen {min} und {max} Zeichen.",
        "unknown_calendar": "Unbekannter Kalender: {ident}.",
        "staff_needs_calendar": "Ein Schlüssel für Mitarbeitende braucht einen Kalender.",
        "invalid": "Ungültiger Wert: {message}",
        "control_character": "Enthält ein unzulässiges Steuerzeichen (z. B. NUL).",
        "text_characters": "Enthält Steuerzeichen (z. B. einen Zeilenumbruch) oder nichts "
        "Sichtbares.",
        "integer": "Erwartet eine ganze Zahl zwischen {min} und {max}.",
        "out_of_range": "Das Datum liegt außerhalb des erlaubten Bereichs.",
        "email_or_phone": "Bitte eine E-Mail-Adresse oder Telefonnummer angeben.",
        "email": "Das ist keine gültige E-Mail-Adresse.",
        "email_for_opt_in": "Für diese Leistung ist eine E-Mail-Adresse nötig: Sie erhalten "
        "einen Link, mit dem Sie die Buchung innerhalb von {minutes} Minuten bestätigen.",
        "phone": "Das ist keine gültige Telefonnummer.",
        "channel_not_offered": "Diese Leistung ist über den Kanal {channel} nicht buchbar.",
        "too_soon": "Dieser Termin liegt zu kurzfristig.",
        "too_far": "Termine sind höchstens {days} Tage im Voraus buchbar.",
        "not_a_start": "Zu dieser Zeit beginnt kein Termin.",
        "duplicate": "Eine Leistung ist doppelt angegeben.",
        "same_location": "Alle Leistungen müssen am selben Standort sein.",
        "either_or": "Bitte nur eine der beiden Angaben machen.",
        "channel_mismatch": "Die Reservierung wurde für einen anderen Kanal angelegt.",
        "not_active": "Die Buchung ist nicht mehr aktiv.",
        "other_services": "Die neue Reservierung gilt anderen Leistungen.",
        "json": "Der Inhalt ist kein gültiges JSON.",
        "ical": "Die Kalenderdatei ist ungültig: {message}",
        "not_retryable": "Eine Nachricht im Status {status} kann nicht erneut gesendet werden.",
        "not_markable": "Eine Buchung im Status {status} kann nicht so vermerkt werden.",
        "check_in_too_early": "Einchecken ist frühestens {hours} Stunden vor Beginn möglich.",
        "not_started": "„Nicht erschienen“ geht erst ab Beginn des Termins.",
        "not_today": "Der Termin ist nicht heute.",
        "day_over": "Der Tag des Termins ist vorbei.",
        "in_past": "Dieser Slot ist schon vorbei.",
        "one_campaign": "Die Leistungen gehören zu verschiedenen Aktionen.",
        "no_waitlist": "Für diese Leistung gibt es keine Warteliste (nur die Erstimpfung einer "
        "Aktion mit Terminserie).",
        "no_series": "Eine Terminserie gibt es nur für die Erstimpfung einer Aktion.",
        "series_only": "Ein zweiter Termin gehört nur zu einer Terminserie (series).",
        "series_one_seat": "Eine Terminserie ist für genau eine Person.",
        "second_dose_interval": "Der zweite Termin liegt {min} bis {max} Tage nach dem ersten.",
        "series_move": "Eine Terminserie lässt sich nicht verschieben; bitte neu buchen.",
    },
    "en": {
        "required": "This field is required.",
        "date": "Expected a date as YYYY-MM-DD.",
        "datetime": "Expected a date and time with offset, e.g. 2026-12-01T09:00:00+01:00.",
        "naive_datetime": "The time needs an offset (e.g. +01:00).",
        "to_before_from": "The end is before the start.",
        "range_too_long": "The range is longer than {max} days.",
        "one_of": "Allowed: {choices}.",
        "length": "Length between {min} and {max} characters.",
        "unknown_calendar": "Unknown calendar: {ident}.",
        "staff_needs_calendar": "A staff key needs at least one calendar.",
        "invalid": "Invalid value: {message}",
        "control_character": "Contains a control character that is not allowed (such as NUL).",
        "text_characters": "Contains control characters (such as a line break) or nothing visible.",
        "integer": "Expected a whole number between {min} and {max}.",
        "out_of_range": "The date is out of the allowed range.",
        "email_or_phone": "Please give an e-mail address or a phone number.",
        "email": "This is not a valid e-mail address.",
        "email_for_opt_in": "This service needs an e-mail address: you get a link to confirm "
        "the booking with within {minutes} minutes.",
        "phone": "This is not a valid phone number.",
        "channel_not_offered": "This service cannot be booked through {channel}.",
        "too_soon": "This time is too soon to book.",
        "too_far": "Appointments can be booked at most {days} days ahead.",
        "not_a_start": "No appointment starts at this time.",
        "duplicate": "A service is given twice.",
        "same_location": "All services must be at the same location.",
        "either_or": "Please give only one of the two.",
        "channel_mismatch": "The hold was made for another channel.",
        "not_active": "The booking is no longer active.",
        "other_services": "The new hold is for other services.",
        "json": "The body is not valid JSON.",
        "ical": "The calendar file is invalid: {message}",
        "not_retryable": "A message in status {status} cannot be sent again.",
        "not_markable": "A booking in status {status} cannot be marked so.",
        "check_in_too_early": "Check-in opens {hours} hours before the start.",
        "not_started": "A no-show can only be recorded once the appointment has started.",
        "not_today": "The appointment is not today.",
        "day_over": "The day of the appointment is over.",
        "in_past": "This slot is over.",
        "one_campaign": "The services belong to different campaigns.",
        "no_waitlist": "This service has no waiting list (only a campaign's first dose of a "
        "series).",
        "no_series": "Only a campaign's first dose can be booked as a series.",
        "series_only": "A second appointment belongs to a series (series) only.",
        "series_one_seat": "A series is for exactly one person.",
        "second_dose_interval": "The second appointment is {min} to {max} days after the first.",
        "series_move": "A series cannot be moved; please cancel it and book again.",
    },
}


def language_of(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("accept-language", "")
    for part in header.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("de"):
            return "de"
        if tag.startswith("en"):
            return "en"
    return "de"


def _format(template: str, params: dict[str, Any]) -> str:
    safe = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in params.items()}
    try:
        return template.format(**safe)
    except (KeyError, IndexError, ValueError):
        return template


class Problem(Response[bytes]):
    """A problem-details answer, which knows its ``code``."""

    __slots__ = ("code",)

    code: str


def problem(
    code: str,
    lang: str,
    *,
    detail: str | None = None,
    params: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    status = STATUS.get(code, 400)
    title, template = TEXTS.get(code, TEXTS["bad_request"])[lang]
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail if detail is not None else _format(template, params or {}),
        "code": code,
    }
    if extra:
        body.update(extra)
    answer = Problem(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM,
        headers=headers,
    )
    answer.code = code
    return answer


def field_errors(errors: list[e.FieldError], lang: str) -> list[dict[str, str]]:
    texts = FIELD_MESSAGES[lang]
    return [
        {
            "field": err.field,
            "message": _format(texts.get(err.message_key, "{message}"), err.params),
        }
        for err in errors
    ]


def domain_error_response(request: Request[Any, Any, Any], exc: e.DomainError) -> Response[bytes]:
    return problem_for(exc, language_of(request))


def problem_for(exc: e.DomainError, lang: str) -> Response[bytes]:
    """The problem answer of a refusal in a language (the pages tell the same sentences)."""
    params = dict(exc.params)
    if isinstance(exc, e.ValidationFailed):
        return problem(exc.code, lang, extra={"errors": field_errors(exc.errors, lang)})
    if isinstance(exc, e.NotFound):
        template = NOT_FOUND_DETAIL[lang].get(str(params.get("kind")))
        detail = _format(template, params) if template else None
        return problem(exc.code, lang, detail=detail)
    if isinstance(exc, e.WindowClosed):
        return _window_closed(exc, lang)
    if isinstance(exc, e.NotEligible):
        return _not_eligible(exc, lang)
    if isinstance(exc, e.LimitReached):
        reason = str(params.get("reason", "person"))
        template = LIMIT_DETAIL[lang].get(reason)
        detail = _format(template, params) if template else None
        return problem(exc.code, lang, detail=detail, extra=params)
    if isinstance(exc, (e.ReservationUnavailable, e.RateLimited)):
        retry = str(params.get("retry_after", 2))
        return problem(exc.code, lang, params=params, headers={"Retry-After": retry})
    return problem(exc.code, lang, params=params)


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value.isoformat() if isinstance(value, date) else None


def _spoken_moment(value: datetime, lang: str) -> str:
    if lang == "de":
        return f"{value:%d.%m.%Y} um {value:%H:%M} Uhr"
    return f"{value:%Y-%m-%d} at {value:%H:%M}"


def _window_closed(exc: e.WindowClosed, lang: str) -> Response[bytes]:
    """When booking is possible (before and after the window alike), in the location's zone as
    the core gives the moments."""
    opens, closes = exc.params.get("opens_at"), exc.params.get("closes_at")
    detail = None
    if isinstance(opens, datetime):
        texts = WINDOW_DETAIL[lang]
        if isinstance(closes, datetime):
            detail = texts["between"].format(
                opens_at=_spoken_moment(opens, lang), closes_at=_spoken_moment(closes, lang)
            )
        else:
            detail = texts["from"].format(opens_at=_spoken_moment(opens, lang))
    extra = {"opens_at": _iso(opens), "closes_at": _iso(closes)}
    return problem(exc.code, lang, detail=detail, extra=extra)


def _not_eligible(exc: e.NotEligible, lang: str) -> Response[bytes]:
    """A sentence an agent can read out, and the reason with its facts for programs."""
    params = dict(exc.params)
    reason = str(params.get("reason", ""))
    spoken = dict(params)
    when = params.get("eligible_from")
    if isinstance(when, date):
        spoken["eligible_from"] = f"{when:%d.%m.%Y}" if lang == "de" else when.isoformat()
    template = NOT_ELIGIBLE_DETAIL[lang].get(reason)
    detail = _format(template, spoken) if template else None
    extra: dict[str, Any] = {"reason": reason}
    for name, value in params.items():
        if name != "reason":
            extra[name] = _iso(value) or value
    return problem(exc.code, lang, detail=detail, extra=extra)


def http_error_response(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    lang = language_of(request)
    if isinstance(exc, ValidationException):
        errors = []
        for item in exc.extra if isinstance(exc.extra, list) else []:
            if isinstance(item, dict):
                message = str(item.get("message", "invalid"))
                field = _body_field(message, str(item.get("key") or item.get("source") or "body"))
                if _TEXT_PATTERN in message:  # a free text's pattern: say what it means
                    message = FIELD_MESSAGES[lang]["text_characters"]
                errors.append({"field": field, "message": message})
        if not errors:
            missing = _MISSING.search(str(exc.detail))
            field = missing.group(1) if missing else "body"
            errors.append({"field": field, "message": str(exc.detail)})
        return problem("validation_failed", lang, extra={"errors": errors})
    if isinstance(exc, NotFoundException):
        return problem("not_found", lang, detail=NOT_FOUND_DETAIL[lang]["route"])
    if isinstance(exc, NotAuthorizedException):
        return problem("unauthorized", lang, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDeniedException):
        return problem("forbidden", lang)
    if isinstance(exc, MethodNotAllowedException):
        return problem("method_not_allowed", lang, headers=exc.headers)
    if isinstance(exc, RequestEntityTooLarge):
        return problem("body_too_large", lang)
    if exc.status_code == 415:
        return problem("unsupported_media_type", lang)
    if exc.status_code == 429:
        return problem("rate_limited", lang, params={"retry_after": 1})
    if 400 <= exc.status_code < 500:
        return problem("bad_request", lang)
    log.error("http error %s: %s", exc.status_code, type(exc).__name__)
    return problem("unavailable" if exc.status_code == 503 else "internal_error", lang)


_AT = re.compile(r" - at `\$\.?([^`]*)`")
_NAMED = re.compile(r"(?:missing required field|unknown field) `([^`]+)`")
_MISSING = re.compile(r"Missing required \w+ parameter '([^']+)'")
_TEXT_PATTERN = r"matching regex '^[^\\x00-\\x1f\\x7f]*"  # schemas.PLAIN_TEXT, VISIBLE_TEXT


def _body_field(message: str, default: str) -> str:
    """The body field a msgspec message is about (``citizen.email``), else ``default``."""
    where = _AT.search(message)
    path = where.group(1) if where else ""
    named = _NAMED.search(message)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or default


def connection_lost(exc: BaseException) -> bool:
    """A database connection failed under the request (the server restarted, the connection
    was terminated): its transaction did not commit, unless the failure came in the commit
    itself, and the caller may try again (with its Idempotency-Key, safely)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, DBAPIError) and (
            seen.connection_invalidated or isinstance(seen, (OperationalError, InterfaceError))
        ):
            return True
        if isinstance(
            seen,
            (
                ConnectionError,
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ),
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def unexpected_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if connection_lost(exc):
        log.warning(
            "database connection lost on %s %s: %s", request.method, request.url.path,
            type(exc).__name__,
        )  # fmt: skip
        return problem("unavailable", language_of(request), headers={"Retry-After": "1"})
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem("internal_error", language_of(request))


def _counted(
    answer: Callable[[Request[Any, Any, Any], Any], Response[bytes]],
) -> Callable[[Request[Any, Any, Any], Any], Response[bytes]]:
    """Count every problem answered, by code and status."""

    def handler(request: Request[Any, Any, Any], exc: Any) -> Response[bytes]:
        response = answer(request, exc)
        if isinstance(response, Problem):
            metrics.refused(response.code, response.status_code)
        return response

    return handler


EXCEPTION_HANDLERS = {
    e.DomainError: _counted(domain_error_response),
    HTTPException: _counted(http_error_response),
    Exception: _counted(unexpected_error_response),
}


# -- the OpenAPI document's error answers ---------------------------------------------------------


class FieldProblem(msgspec.Struct):
    field: str
    message: str


class ProblemDetails(msgspec.Struct, kw_only=True):
    """An error answer (RFC 9457). Extension members beside ``code``: ``errors`` with
    ``validation_failed``; ``opens_at``/``closes_at`` with ``window_closed``; ``reason`` and its
    facts with ``not_eligible``; ``reason`` (``person``, ``email``, ``phone``) and ``limit``
    with ``limit_reached``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None


PROBLEM_CODES = {
    400: "`bad_request`: the request could not be read (a body that is not JSON)",
    401: "`unauthorized`: a missing, unknown or revoked API key",
    403: "`forbidden` (the key's role does not allow this), `not_eligible` (with `reason`), "
    "`window_closed` (with `opens_at`)",
    404: "`not_found`: also for what exists but is not the caller's, and for a wrong token",
    409: "`slot_full`, `hold_expired`, `limit_reached` (with `reason`: `person` for the "
    "person's limit of the service, `email` or `phone` for the limit of a contact address, "
    "and that `limit`), `campaign_full`, `waitlist_first`, "
    "`not_an_offer`, `offer_pending`, `capacity_below_booked`, `already_changed`",
    410: "`offer_expired`: the waiting-list offer lapsed or was declined; `opt_in_expired`: "
    "the booking was not confirmed by e-mail in time (or was cancelled)",
    413: "`body_too_large`: the body is larger than the configured limit (1 MiB by default)",
    415: "`unsupported_media_type`: JSON sent as another media type than `application/json`",
    422: "`validation_failed` (with `errors[{field, message}]`), `idempotency_key_reused`",
    429: "`rate_limited`, with `Retry-After`",
    503: "`reservation_unavailable` (Redis cannot be reached), with `Retry-After`",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The ``responses`` of a route handler: the problems it may answer with, by status (400
    always: Litestar documents its own body for it otherwise)."""
    return {
        status: ResponseSpec(
            data_container=ProblemDetails,
            description=PROBLEM_CODES[status],
            media_type=PROBLEM,
            generate_examples=False,
        )
        for status in sorted({400, *statuses})
    }
