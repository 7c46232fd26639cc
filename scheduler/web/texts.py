"""The pages' words: German by default, English via the language switch. Problem codes are told
in the same sentences the API's problem answers use (one source: :mod:`scheduler.api.problems`).
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec

from scheduler.api import problems
from scheduler.booking import errors as e

LANGUAGES = ("de", "en")

WEEKDAYS = {
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
MONTHS = {
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
           "Oktober", "November", "Dezember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}  # fmt: skip

STATUS = {
    "de": {
        "confirmed": "bestätigt",
        "pending": "noch nicht bestätigt",
        "cancelled": "abgesagt",
        "checked_in": "erschienen",
        "no_show": "nicht erschienen",
        "completed": "erledigt",
    },
    "en": {
        "confirmed": "confirmed",
        "pending": "not yet confirmed",
        "cancelled": "cancelled",
        "checked_in": "checked in",
        "no_show": "did not come",
        "completed": "completed",
    },
}

UI: dict[str, dict[str, str]] = {
    "de": {
        "site": "Terminvergabe",
        "skip": "Zum Inhalt springen",
        "switch_language": "English",
        "switch_language_label": "Switch to English",
        "home": "Termin buchen",
        "home_intro": "Wählen Sie die Leistung, für die Sie einen Termin möchten.",
        "minutes": "{n} Minuten",
        "choose_day": "Tag wählen",
        "days_intro": "Die nächsten Tage mit freien Terminen:",
        "free_times": "{n} freie Zeiten",
        "one_free_time": "1 freie Zeit",
        "later_days": "Spätere Tage",
        "earlier_days": "Frühere Tage",
        "no_days": "In diesem Zeitraum gibt es keine freien Termine.",
        "choose_time": "Uhrzeit wählen",
        "times_intro": "Freie Zeiten am {day}:",
        "no_times": "An diesem Tag ist keine Zeit mehr frei.",
        "other_day": "Anderen Tag wählen",
        "back": "Zurück",
        "your_details": "Ihre Angaben",
        "held_until": "Dieser Termin ist bis {time} Uhr für Sie reserviert.",
        "held_why": "Danach wird er wieder freigegeben.",
        "name": "Vor- und Nachname",
        "email": "E-Mail-Adresse",
        "email_hint": "Für die Bestätigung, die Erinnerung und den Link zum Absagen oder "
        "Verschieben.",
        "phone": "Telefonnummer (falls Sie keine E-Mail haben)",
        "birth_date": "Geburtsdatum",
        "birth_date_hint": "Zum Beispiel 14.03.1948",
        "postcode": "Postleitzahl Ihres Wohnorts",
        "language": "Sprache der Nachrichten",
        "consent": "Ich bin einverstanden, dass meine Angaben für diesen Termin gespeichert "
        "werden. Sie werden nach dem Termin gelöscht.",
        "book": "Verbindlich buchen",
        "release": "Reservierung aufheben",
        "required": "Pflichtangabe",
        "errors_title": "Bitte prüfen Sie Ihre Angaben",
        "booked_title": "Ihr Termin ist gebucht",
        "booked_mail": "Wir haben Ihnen eine Bestätigung geschickt.",
        "booked_no_mail": "Sie haben keine E-Mail-Adresse angegeben. Bitte notieren Sie den "
        "Buchungscode und bewahren Sie den Link zu dieser Seite auf.",
        "reference": "Buchungscode",
        "service": "Leistung",
        "when": "Termin",
        "where": "Ort",
        "status": "Status",
        "add_to_calendar": "In den Kalender übernehmen (.ics)",
        "manage_link": "Link zu dieser Seite (zum Absagen oder Verschieben)",
        "manage_title": "Ihr Termin",
        "cancel": "Termin absagen",
        "cancel_intro": "Sie können diesen Termin absagen. Der Platz wird dann wieder frei.",
        "cancelled_title": "Ihr Termin ist abgesagt",
        "move": "Anderen Termin wählen",
        "move_intro": "Wählen Sie einen neuen Tag. Ihr bisheriger Termin bleibt bestehen, bis "
        "der neue gebucht ist.",
        "move_to": "Auf {time} Uhr verschieben",
        "moved_title": "Ihr Termin ist verschoben",
        "taken_title": "Diese Zeit ist gerade vergeben worden",
        "taken_intro": "Jemand war schneller. Die nächsten freien Zeiten:",
        "expired_title": "Die Reservierung ist abgelaufen",
        "expired_intro": "Bitte wählen Sie erneut eine Zeit. Die nächsten freien Zeiten:",
        "not_found_title": "Nicht gefunden",
        "not_found": "Diese Seite gibt es nicht.",
        "booking_not_found": "Diese Buchung gibt es nicht, oder der Link ist unvollständig.",
        "csrf_title": "Das Formular ist abgelaufen",
        "csrf": "Bitte laden Sie die Seite neu und senden Sie das Formular noch einmal.",
        "error_title": "Das hat nicht geklappt",
        "unavailable": "Die Terminvergabe ist gerade nicht erreichbar. Bitte versuchen Sie es "
        "in einer Minute erneut.",
        "campaign_note": "Für diese Aktion gibt es Voraussetzungen; wir prüfen sie beim Buchen.",
        "series_note": "Mit dem ersten Termin wird der zweite gleich mitgebucht.",
        "footer": "Fragen? Rufen Sie das Bürgertelefon an.",
        "pending_offer": "Dieser Termin ist für Sie reserviert bis {until} Uhr. Bitte bestätigen "
        "Sie ihn bis dahin; sonst wird er wieder frei.",
        "confirm_pending": "Termin verbindlich buchen",
        "confirmed_title": "Ihr Termin ist bestätigt",
        "lapsed_title": "Die Frist ist abgelaufen",
        "contact_mail": "Nachrichten gehen an {address}.",
        "contact_phone": "Sie haben keine E-Mail-Adresse angegeben; wir erreichen Sie unter "
        "{phone}.",
        "spelled": "Buchstabiert",
        "not_active": "Dieser Termin ist {status}; er lässt sich nicht mehr ändern.",
    },
    "en": {
        "site": "Appointments",
        "skip": "Skip to content",
        "switch_language": "Deutsch",
        "switch_language_label": "Auf Deutsch anzeigen",
        "home": "Book an appointment",
        "home_intro": "Choose the service you need an appointment for.",
        "minutes": "{n} minutes",
        "choose_day": "Choose a day",
        "days_intro": "The next days with free times:",
        "free_times": "{n} free times",
        "one_free_time": "1 free time",
        "later_days": "Later days",
        "earlier_days": "Earlier days",
        "no_days": "There are no free times in this period.",
        "choose_time": "Choose a time",
        "times_intro": "Free times on {day}:",
        "no_times": "No time is free on this day any more.",
        "other_day": "Choose another day",
        "back": "Back",
        "your_details": "Your details",
        "held_until": "This time is reserved for you until {time}.",
        "held_why": "After that it is released again.",
        "name": "First and last name",
        "email": "E-mail address",
        "email_hint": "For the confirmation, the reminder and the link to cancel or move.",
        "phone": "Phone number (if you have no e-mail)",
        "birth_date": "Date of birth",
        "birth_date_hint": "For example 14.03.1948",
        "postcode": "Postcode of your home",
        "language": "Language of the messages",
        "consent": "I agree that my details are stored for this appointment. They are deleted "
        "after the appointment.",
        "book": "Book",
        "release": "Release the reservation",
        "required": "required",
        "errors_title": "Please check your details",
        "booked_title": "Your appointment is booked",
        "booked_mail": "We have sent you a confirmation.",
        "booked_no_mail": "You gave no e-mail address. Please note the booking code and keep "
        "the link to this page.",
        "reference": "Booking code",
        "service": "Service",
        "when": "Appointment",
        "where": "Place",
        "status": "Status",
        "add_to_calendar": "Add to calendar (.ics)",
        "manage_link": "Link to this page (to cancel or move)",
        "manage_title": "Your appointment",
        "cancel": "Cancel the appointment",
        "cancel_intro": "You can cancel this appointment. The time becomes free for others.",
        "cancelled_title": "Your appointment is cancelled",
        "move": "Choose another time",
        "move_intro": "Choose a new day. Your appointment stays until the new one is booked.",
        "move_to": "Move to {time}",
        "moved_title": "Your appointment has been moved",
        "taken_title": "This time has just been taken",
        "taken_intro": "Someone was quicker. The next free times:",
        "expired_title": "The reservation has expired",
        "expired_intro": "Please choose a time again. The next free times:",
        "not_found_title": "Not found",
        "not_found": "There is no such page.",
        "booking_not_found": "There is no such booking, or the link is incomplete.",
        "csrf_title": "The form has expired",
        "csrf": "Please reload the page and send the form again.",
        "error_title": "That did not work",
        "unavailable": "Booking is not available right now. Please try again in a minute.",
        "campaign_note": "This campaign has conditions; we check them when you book.",
        "series_note": "The second appointment is booked together with the first.",
        "footer": "Questions? Call the citizens' hotline.",
        "pending_offer": "This time is reserved for you until {until}. Please confirm it by "
        "then; otherwise it becomes free again.",
        "confirm_pending": "Confirm the appointment",
        "confirmed_title": "Your appointment is confirmed",
        "lapsed_title": "The time to confirm has passed",
        "contact_mail": "Messages go to {address}.",
        "contact_phone": "You gave no e-mail address; we reach you at {phone}.",
        "spelled": "Spelled",
        "not_active": "This appointment is {status}; it can no longer be changed.",
    },
}


# where a form field's message is better told differently on a page than in the API
FIELD_WORDING: dict[str, dict[tuple[str, str], str]] = {
    "de": {
        ("citizen.birth_date", "date"): "Bitte das Geburtsdatum als TT.MM.JJJJ angeben, zum "
        "Beispiel 14.03.1948.",
        ("citizen.postcode", "invalid"): "Bitte die fünfstellige Postleitzahl angeben.",
        ("citizen.name", "length"): "Bitte Ihren Namen angeben (höchstens 200 Zeichen).",
    },
    "en": {
        ("citizen.birth_date", "date"): "Please give the date of birth as DD.MM.YYYY, for "
        "example 14.03.1948.",
        ("citizen.postcode", "invalid"): "Please give the five-digit postcode.",
        ("citizen.name", "length"): "Please give your name (at most 200 characters).",
    },
}


FORM_LABELS = {
    "citizen.name": "name",
    "citizen.email": "email",
    "citizen.phone": "phone",
    "citizen.birth_date": "birth_date",
    "citizen.postcode": "postcode",
}


def labels(lang: str) -> dict[str, str]:
    """A form field's label, to name it in the list of mistakes."""
    return {name: text(lang, key) for name, key in FORM_LABELS.items()}


def text(lang: str, key: str, **params: object) -> str:
    template = UI.get(lang, UI["de"]).get(key) or UI["de"][key]
    return template.format(**params) if params else template


def long_day(lang: str, day: date) -> str:
    """``Montag, 7. Dezember 2026`` / ``Monday, 7 December 2026``."""
    weekday, month = WEEKDAYS[lang][day.weekday()], MONTHS[lang][day.month - 1]
    if lang == "en":
        return f"{weekday}, {day.day} {month} {day.year}"
    return f"{weekday}, {day.day}. {month} {day.year}"


def clock(moment: datetime) -> str:
    return f"{moment:%H:%M}"


def problem_text(exc: e.DomainError, lang: str) -> tuple[str, str, dict[str, str]]:
    """A refusal as the API words it: (title, sentence, field -> message)."""
    if isinstance(exc, e.ValidationFailed):
        fields = {f["field"]: f["message"] for f in problems.field_errors(exc.errors, lang)}
        for err in exc.errors:
            if (better := FIELD_WORDING[lang].get((err.field, err.message_key))) is not None:
                fields[err.field] = better
        title, detail = problems.TEXTS["validation_failed"][lang]
        return title, detail, fields
    body = msgspec.json.decode(problems.problem_for(exc, lang).content)
    return str(body["title"]), str(body["detail"]), {}
