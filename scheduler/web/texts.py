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
        "held_left": "(noch {m}:{s} Minuten)",
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
        "lapsed": "Diese Buchung wurde nicht rechtzeitig bestätigt und ist verfallen (oder sie "
        "wurde abgesagt). Der Termin ist wieder frei; Sie können gern erneut buchen.",
        "confirm_title": "Buchung bestätigen",
        "too_many_title": "Zu viele Versuche",
        "too_many": "Von Ihrem Anschluss kamen zu viele Aufrufe mit ungültigen Links. Bitte "
        "versuchen Sie es in {minutes} Minuten erneut.",
        "too_many_one": "Von Ihrem Anschluss kamen zu viele Aufrufe mit ungültigen Links. Bitte "
        "versuchen Sie es in einer Minute erneut.",
        "opt_in_waiting": "Diese Buchung wartet auf Ihre Bestätigung: Bitte folgen Sie bis "
        "{until} Uhr dem Link in der E-Mail, die wir Ihnen geschickt haben; sonst verfällt sie.",
        "check_mail": "Fast geschafft: Wir haben Ihnen eine E-Mail geschickt. Bitte bestätigen "
        "Sie die Buchung mit dem Link darin, sonst verfällt sie.",
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
        "held_left": "({m}:{s} minutes left)",
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
        "lapsed": "This booking was not confirmed in time and has lapsed (or it was cancelled). "
        "The time is free again; you are welcome to book again.",
        "confirm_title": "Confirm your booking",
        "too_many_title": "Too many attempts",
        "too_many": "Too many requests with invalid links came from your connection. Please try "
        "again in {minutes} minutes.",
        "too_many_one": "Too many requests with invalid links came from your connection. Please "
        "try again in a minute.",
        "opt_in_waiting": "This booking waits for your confirmation: please follow the link in "
        "the e-mail we sent you by {until}; otherwise it lapses.",
        "check_mail": "Almost done: we have sent you an e-mail. Please confirm the booking with "
        "its link, or it lapses.",
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


# -- the hotline console (/agent) and the staff page (/staff) -----------------------------------

UI["de"].update(
    {
        "login": "Anmelden",
        "login_key": "API-Schlüssel",
        "login_key_hint": "Beginnt mit sk_. Er wird nicht gespeichert; die Anmeldung gilt 8 "
        "Stunden.",
        "login_failed": "Anmeldung nicht möglich",
        "login_wrong": "Dieser Schlüssel ist unbekannt oder wurde widerrufen.",
        "login_wrong_role": "Dieser Schlüssel gilt nicht für diesen Bereich.",
        "logged_out": "Sie sind abgemeldet.",
        "logged_in_as": "Angemeldet als",
        "logout": "Abmelden",
        "agent_brand": "Bürgertelefon",
        "agent_login_title": "Anmeldung Bürgertelefon",
        "agent_login_intro": "Melden Sie sich mit Ihrem Schlüssel für das Bürgertelefon an.",
        "agent_footer": "Bürgertelefon – Terminvergabe für Anruferinnen und Anrufer.",
        "agent_title": "Anruf bearbeiten",
        "agent_back": "Zurück zur Übersicht",
        "agent_back_to_booking": "Zurück zur Buchung",
        "agent_search": "Anrufer suchen",
        "agent_by_code": "Nach Buchungscode",
        "agent_by_name": "Nach Name und Geburtsdatum",
        "agent_code": "Buchungscode",
        "agent_code_hint": "Zum Beispiel K7QM-2XPA; Groß- und Kleinschreibung egal.",
        "agent_find_code": "Code suchen",
        "agent_find_name": "Person suchen",
        "agent_name": "Vor- und Nachname",
        "agent_postcode": "Postleitzahl des Wohnorts",
        "agent_email": "E-Mail-Adresse",
        "agent_email_hint": "Dorthin gehen Bestätigung, Erinnerung und der Link zum Ändern.",
        "agent_phone": "Telefonnummer",
        "agent_birth_date_optional": "Geburtsdatum",
        "agent_birth_date_why": "Empfohlen: damit die Buchung später nach Name und "
        "Geburtsdatum gefunden wird. Zum Beispiel 14.03.1948.",
        "agent_next_all": "Nächste freie Termine aller Leistungen",
        "agent_next_of": "Nächste freie Termine: {service}",
        "agent_all_services": "Alle Leistungen (je die nächste Zeit)",
        "agent_from_day": "Ab Tag",
        "agent_show": "Anzeigen",
        "agent_free": "Freie Plätze",
        "agent_action": "Aktion",
        "agent_book_this": "Für Anrufer buchen",
        "agent_more_times": "Weitere Zeiten",
        "agent_no_times": "Keine freien Termine gefunden.",
        "agent_callbacks": "Rückrufe: Angebote von der Warteliste",
        "agent_callbacks_intro": "Diese Personen haben keine E-Mail-Adresse. Rufen Sie sie an "
        "und nehmen Sie das Angebot für sie an – oder sagen Sie es ab, wenn sie es nicht "
        "möchten.",
        "agent_no_callbacks": "Zurzeit ist niemand zurückzurufen.",
        "agent_offer": "Angebot",
        "agent_answer_by": "Antwort bis",
        "agent_open": "Buchung öffnen",
        "agent_contact_is": "Kontakt: {name}",
        "agent_results_title": "Gefundene Buchungen",
        "agent_results": "{n} Buchungen gefunden.",
        "agent_one_result": "1 Buchung gefunden.",
        "agent_nothing_found": "Keine Buchung gefunden. Bitte Schreibweise des Namens und das "
        "Geburtsdatum prüfen.",
        "agent_check_title": "Voraussetzungen prüfen",
        "agent_check_intro": "Für diese Aktion gelten Voraussetzungen. Fragen Sie Name, "
        "Geburtsdatum und Postleitzahl ab; das System prüft sie, bevor etwas gebucht wird.",
        "agent_rule_age": "mindestens {age} Jahre alt am Tag des Termins",
        "agent_rule_postcode": "wohnhaft im Gebiet mit der Postleitzahl {postcodes}",
        "agent_rule_series": "der zweite Termin wird gleich mitgebucht",
        "agent_check": "Voraussetzungen prüfen",
        "agent_other_time": "Andere Zeit wählen",
        "agent_eligible": "Voraussetzungen erfüllt",
        "agent_eligible_detail": "Am Tag des Termins {age} Jahre alt (geboren am {born}), "
        "Postleitzahl {postcode}. Die Zeit ist reserviert.",
        "agent_series_held": "Der zweite Termin ist mit reserviert.",
        "agent_book_title": "Für Anrufer buchen",
        "agent_held_until": "Diese Zeit ist bis {time} Uhr für den Anrufer reserviert.",
        "agent_visit": "{n}. Termin",
        "agent_attendee": "Wer kommt zum Termin?",
        "agent_contact": "Kontaktperson (falls jemand anderes informiert werden soll)",
        "agent_contact_hint": "Zum Beispiel die Tochter, die für die Mutter anruft. Dann gehen "
        "alle Nachrichten an die Kontaktperson.",
        "agent_contact_name": "Name der Kontaktperson",
        "agent_contact_email": "E-Mail-Adresse der Kontaktperson",
        "agent_contact_phone": "Telefonnummer der Kontaktperson",
        "agent_consent": "Die Person ist einverstanden, dass ihre Angaben für diesen Termin "
        "gespeichert werden.",
        "agent_book": "Verbindlich buchen",
        "agent_release": "Reservierung aufheben",
        "agent_booking_title": "Buchung",
        "agent_spelled": "Zum Vorlesen:",
        "agent_mail_yes": "Bestätigung und Erinnerung gehen per E-Mail an {email}.",
        "agent_mail_no": "Achtung: kein E-Mail – telefonisch informieren.",
        "agent_mail_no_detail": "Bitte lesen Sie Termin, Ort und Buchungscode jetzt vor; "
        "Änderungen erfährt die Person nur von uns am Telefon.",
        "agent_appointment": "Termin",
        "agent_pending_until": "Antwort bis {time}",
        "agent_channel": "Gebucht über",
        "agent_channel_online": "Internet",
        "agent_channel_phone": "Telefon",
        "agent_channel_counter": "Schalter",
        "agent_offer_title": "Angebot von der Warteliste",
        "agent_offer_intro": "Die Zeit ist für die Person reserviert. Nimmt sie das Angebot an, "
        "ist der Termin gebucht.",
        "agent_accept": "Angebot für die Person annehmen",
        "agent_change": "Termin ändern",
        "agent_move": "Verschieben",
        "agent_cancel": "Absagen …",
        "agent_move_title": "Termin verschieben",
        "agent_current": "Bisheriger Termin",
        "agent_new_time": "Neue Zeit wählen",
        "agent_move_here": "hierhin verschieben",
        "agent_not_active": "Diese Buchung ist nicht mehr aktiv.",
        "agent_cancel_title": "Termin absagen",
        "agent_cancel_intro": "Soll dieser Termin wirklich abgesagt werden? Der Platz wird "
        "wieder frei.",
        "agent_cancel_now": "Ja, Termin absagen",
        "agent_keep": "Nein, Termin behalten",
        "agent_done_gebucht": "Der Termin ist gebucht. Bitte lesen Sie den Buchungscode vor.",
        "agent_done_verschoben": "Der Termin ist verschoben.",
        "agent_done_abgesagt": "Der Termin ist abgesagt.",
        "agent_done_angenommen": "Das Angebot ist angenommen; der Termin ist gebucht.",
    }
)
UI["en"].update(
    {
        "login": "Log in",
        "login_key": "API key",
        "login_key_hint": "Starts with sk_. It is not stored; the login lasts 8 hours.",
        "login_failed": "Login not possible",
        "login_wrong": "This key is unknown or has been revoked.",
        "login_wrong_role": "This key is not valid for this area.",
        "logged_out": "You are logged out.",
        "logged_in_as": "Logged in as",
        "logout": "Log out",
        "agent_brand": "Citizens' hotline",
        "agent_login_title": "Hotline login",
        "agent_login_intro": "Log in with your hotline key.",
        "agent_footer": "Citizens' hotline – appointments for callers.",
        "agent_title": "Handle a call",
        "agent_back": "Back to the overview",
        "agent_back_to_booking": "Back to the booking",
        "agent_search": "Find the caller",
        "agent_by_code": "By booking code",
        "agent_by_name": "By name and date of birth",
        "agent_code": "Booking code",
        "agent_code_hint": "For example K7QM-2XPA; upper or lower case.",
        "agent_find_code": "Find code",
        "agent_find_name": "Find person",
        "agent_name": "First and last name",
        "agent_postcode": "Postcode of their home",
        "agent_email": "E-mail address",
        "agent_email_hint": "Confirmation, reminder and the link to make changes go there.",
        "agent_phone": "Phone number",
        "agent_birth_date_optional": "Date of birth",
        "agent_birth_date_why": "Recommended: so the booking can be found by name and date "
        "of birth later. For example 14.03.1948.",
        "agent_next_all": "Next free times of every service",
        "agent_next_of": "Next free times: {service}",
        "agent_all_services": "All services (the next time of each)",
        "agent_from_day": "From day",
        "agent_show": "Show",
        "agent_free": "Free seats",
        "agent_action": "Action",
        "agent_book_this": "Book for the caller",
        "agent_more_times": "More times",
        "agent_no_times": "No free times found.",
        "agent_callbacks": "Call-backs: offers from the waiting list",
        "agent_callbacks_intro": "These people have no e-mail address. Call them and accept "
        "the offer for them – or cancel it if they do not want it.",
        "agent_no_callbacks": "Nobody to call back right now.",
        "agent_offer": "Offer",
        "agent_answer_by": "Answer by",
        "agent_open": "open the booking",
        "agent_contact_is": "Contact: {name}",
        "agent_results_title": "Bookings found",
        "agent_results": "{n} bookings found.",
        "agent_one_result": "1 booking found.",
        "agent_nothing_found": "No booking found. Please check the spelling of the name and "
        "the date of birth.",
        "agent_check_title": "Check the conditions",
        "agent_check_intro": "This campaign has conditions. Ask for the name, date of birth "
        "and postcode; they are checked before anything is booked.",
        "agent_rule_age": "at least {age} years old on the day of the appointment",
        "agent_rule_postcode": "living in the area of postcode {postcodes}",
        "agent_rule_series": "the second appointment is booked with the first",
        "agent_check": "Check the conditions",
        "agent_other_time": "Choose another time",
        "agent_eligible": "Conditions met",
        "agent_eligible_detail": "{age} years old on the day of the appointment (born "
        "{born}), postcode {postcode}. The time is reserved.",
        "agent_series_held": "The second appointment is reserved as well.",
        "agent_book_title": "Book for the caller",
        "agent_held_until": "This time is reserved for the caller until {time}.",
        "agent_visit": "Appointment {n}",
        "agent_attendee": "Who is coming?",
        "agent_contact": "Contact person (if someone else is to be informed)",
        "agent_contact_hint": "For example the daughter calling for her mother. All messages "
        "then go to the contact person.",
        "agent_contact_name": "Contact person's name",
        "agent_contact_email": "Contact person's e-mail address",
        "agent_contact_phone": "Contact person's phone number",
        "agent_consent": "The person agrees that their details are stored for the appointment.",
        "agent_book": "Book",
        "agent_release": "Release the reservation",
        "agent_booking_title": "Booking",
        "agent_spelled": "To read out:",
        "agent_mail_yes": "Confirmation and reminder go by e-mail to {email}.",
        "agent_mail_no": "Note: no e-mail – tell them by phone.",
        "agent_mail_no_detail": "Please read out the appointment, the place and the booking "
        "code now; the person hears of changes only from us by phone.",
        "agent_appointment": "Appointment",
        "agent_pending_until": "answer by {time}",
        "agent_channel": "Booked via",
        "agent_channel_online": "internet",
        "agent_channel_phone": "phone",
        "agent_channel_counter": "counter",
        "agent_offer_title": "Offer from the waiting list",
        "agent_offer_intro": "The time is reserved for the person. If they accept the offer, "
        "the appointment is booked.",
        "agent_accept": "Accept the offer for the person",
        "agent_change": "Change the appointment",
        "agent_move": "Move",
        "agent_cancel": "Cancel …",
        "agent_move_title": "Move the appointment",
        "agent_current": "Current appointment",
        "agent_new_time": "Choose a new time",
        "agent_move_here": "move here",
        "agent_not_active": "This booking is no longer active.",
        "agent_cancel_title": "Cancel the appointment",
        "agent_cancel_intro": "Cancel this appointment? The time becomes free for others.",
        "agent_cancel_now": "Yes, cancel the appointment",
        "agent_keep": "No, keep the appointment",
        "agent_done_gebucht": "The appointment is booked. Please read out the booking code.",
        "agent_done_verschoben": "The appointment has been moved.",
        "agent_done_abgesagt": "The appointment is cancelled.",
        "agent_done_angenommen": "The offer is accepted; the appointment is booked.",
    }
)
UI["de"].update(
    {
        "staff_brand": "Mitarbeiterseite",
        "staff_login_title": "Anmeldung Mitarbeiterseite",
        "staff_login_intro": "Melden Sie sich mit Ihrem Schlüssel für die Terminliste an.",
        "staff_footer": "Mitarbeiterseite – Terminliste Ihrer Kalender.",
        "staff_title": "Terminliste",
        "staff_back": "Zurück zur Terminliste",
        "staff_today": "heute",
        "staff_day_switch": "Tag wechseln",
        "staff_previous": "Vorheriger Tag",
        "staff_next": "Nächster Tag",
        "staff_to_today": "Heute",
        "staff_day": "Tag",
        "staff_show_day": "Tag anzeigen",
        "staff_no_calendars": "Zu Ihrem Schlüssel gehört kein Kalender.",
        "staff_appointments": "{n} Termine",
        "staff_one_appointment": "1 Termin",
        "staff_seats": "{booked} von {capacity} Plätzen belegt",
        "staff_seats_n": "{n} Plätze",
        "staff_time": "Zeit",
        "staff_contact": "Kontakt",
        "staff_attendance": "Anwesenheit",
        "staff_check_in": "Erschienen",
        "staff_no_show": "Nicht erschienen",
        "staff_no_appointments": "An diesem Tag gibt es keine Termine.",
        "staff_done_erschienen": "{code}: als erschienen vermerkt.",
        "staff_done_nicht-erschienen": "{code}: als nicht erschienen vermerkt.",
        "staff_feed": "Kalender-Abo",
        "staff_feed_intro": "Für Outlook, Thunderbird oder Google Kalender. Ein neuer Link "
        "ersetzt den Link, den Sie hier zuletzt erzeugt haben.",
        "staff_feed_make": "Abo-Link erzeugen",
        "staff_feed_made": "Der Abo-Link ist erzeugt. Kopieren Sie ihn jetzt in Ihr "
        "Kalenderprogramm.",
        "staff_feed_link": "Abo-Link",
        "staff_feed_once": "Nur jetzt sichtbar. Bitte nicht weitergeben: Wer den Link hat, "
        "sieht die Termine.",
        "staff_copy": "Link kopieren",
        "staff_copied": "Der Link ist kopiert.",
    }
)
UI["en"].update(
    {
        "staff_brand": "Staff page",
        "staff_login_title": "Staff login",
        "staff_login_intro": "Log in with your key for the agenda.",
        "staff_footer": "Staff page – the agenda of your calendars.",
        "staff_title": "Agenda",
        "staff_back": "Back to the agenda",
        "staff_today": "today",
        "staff_day_switch": "Change the day",
        "staff_previous": "Previous day",
        "staff_next": "Next day",
        "staff_to_today": "Today",
        "staff_day": "Day",
        "staff_show_day": "Show the day",
        "staff_no_calendars": "Your key has no calendar.",
        "staff_appointments": "{n} appointments",
        "staff_one_appointment": "1 appointment",
        "staff_seats": "{booked} of {capacity} seats booked",
        "staff_seats_n": "{n} seats",
        "staff_time": "Time",
        "staff_contact": "Contact",
        "staff_attendance": "Attendance",
        "staff_check_in": "Checked in",
        "staff_no_show": "Did not come",
        "staff_no_appointments": "There are no appointments on this day.",
        "staff_done_erschienen": "{code}: marked as checked in.",
        "staff_done_nicht-erschienen": "{code}: marked as not come.",
        "staff_feed": "Calendar subscription",
        "staff_feed_intro": "For Outlook, Thunderbird or Google Calendar. A new link replaces "
        "the one you made here last.",
        "staff_feed_make": "Create the subscription link",
        "staff_feed_made": "The subscription link is ready. Copy it into your calendar now.",
        "staff_feed_link": "Subscription link",
        "staff_feed_once": "Shown only now. Do not pass it on: whoever has the link sees the "
        "appointments.",
        "staff_copy": "Copy the link",
        "staff_copied": "The link is copied.",
    }
)
