"""Rendering: every kind in German and English, parsed back from the bytes that would be sent —
headers, both text parts, local times across DST, escaping, and the .ics attachment."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler.reminders.messages import Kind, MessageData, format_when, render

BERLIN = ZoneInfo("Europe/Berlin")
WINTER = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Monday, 09:00 CET
SUMMER = datetime(2026, 6, 29, 7, 0, tzinfo=UTC)  # Monday, 09:00 CEST
MESSAGE_ID = "<outbox-123.a1b2c3@termine.example.de>"
MANAGE = "https://termine.example.de/buchung/K7QM-2X9D?token=abc-DEF_123&lang=de"
ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
    "SUMMARY:Hund anmelden\r\nLOCATION:Bürgerbüro\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
).encode()
BRING = ["Personalausweis oder Reisepass", "Nachweis der Hundehaftpflicht"]

SUBJECTS = {
    ("de", Kind.CONFIRMATION): "Terminbestätigung: ",
    ("de", Kind.REMINDER): "Erinnerung: ",
    ("de", Kind.CANCELLATION): "Ihr Termin wurde abgesagt: ",
    ("de", Kind.RESCHEDULE): "Ihr Termin wurde verlegt: ",
    ("de", Kind.WAITLIST_OFFER): "Ein Termin ist frei geworden: ",
    ("de", Kind.OPT_IN): "Bitte bestätigen Sie Ihre Buchung: ",
    ("en", Kind.CONFIRMATION): "Appointment confirmed: ",
    ("en", Kind.REMINDER): "Reminder: ",
    ("en", Kind.CANCELLATION): "Your appointment was cancelled: ",
    ("en", Kind.RESCHEDULE): "Your appointment was moved: ",
    ("en", Kind.WAITLIST_OFFER): "An appointment is available: ",
    ("en", Kind.OPT_IN): "Please confirm your booking: ",
}
WHEN = {
    "de": "Montag, 30. November 2026, 09:00 Uhr",
    "en": "Monday, 30 November 2026, 9:00 am",
}


def data(**changes: Any) -> MessageData:
    base = MessageData(
        kind=Kind.CONFIRMATION,
        language="de",
        to_name="Jürgen Weiß",
        to_email="juergen.weiss@example.de",
        attendee_name="Jürgen Weiß",
        reference="K7QM-2X9D",
        services=["Hund anmelden"],
        start=WINTER,
        end=WINTER.replace(minute=15),
        tz=BERLIN,
        place_name="Bürgerbüro im Rathaus",
        place_address="Marktplatz 1, 12345 Musterstadt",
        what_to_bring=BRING,
        manage_url=MANAGE,
        ics=ICS,
        ics_method="REQUEST",
        message_id=MESSAGE_ID,
        sender="Terminvergabe Stadt Köln <termine@stadt.example.de>",
    )
    return dataclasses.replace(base, **changes)


def sent(d: MessageData) -> EmailMessage:
    """Render, serialize as for SMTP, and parse back."""
    raw = render(d, now=datetime(2026, 11, 23, 6, 0, tzinfo=UTC)).data
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def texts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None
    assert html is not None
    return plain.get_content(), html.get_content()


def attachments(message: EmailMessage) -> list[EmailMessage]:
    return list(message.iter_attachments())  # type: ignore[arg-type]


@pytest.mark.parametrize("language", ["de", "en"])
@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_renders_in_both_languages(kind: Kind, language: str) -> None:
    method = "CANCEL" if kind is Kind.CANCELLATION else "REQUEST"
    message = sent(
        data(
            kind=kind,
            language=language,
            ics_method=method,
            previous_start=WINTER.replace(day=27) if kind is Kind.RESCHEDULE else None,
        )
    )

    on = {"de": "am", "en": "on"}[language]
    # strip(): when a whole ASCII subject fits on the next line, the generator folds right after
    # "Subject:" and Python 3.11's parser keeps the fold's space (CPython gh-124452)
    assert message["Subject"].strip() == (
        f"{SUBJECTS[language, kind]}Hund anmelden {on} {WHEN[language]}"
    )
    assert message["Message-ID"] == MESSAGE_ID
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Jürgen Weiß", "juergen.weiss@example.de")
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Terminvergabe Stadt Köln",
        "termine@stadt.example.de",
    )
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    assert message["Content-Language"] == language

    for part in texts(message):
        assert WHEN[language] in part
        assert "K7QM-2X9D" in part
        assert "Hund anmelden" in part
        assert "Bürgerbüro im Rathaus" in part
        assert "Marktplatz 1, 12345 Musterstadt" in part
        assert "Jürgen Weiß" in part  # the greeting
        if kind in (Kind.CANCELLATION, Kind.OPT_IN):
            # nothing to bring to an appointment that will not happen (or is not booked yet)
            assert not any(line in part for line in BRING)
        else:
            assert all(line in part for line in BRING)
    plain, html = texts(message)
    assert MANAGE in plain
    assert MANAGE.replace("&", "&amp;") in html

    (ics,) = attachments(message)
    assert ics.get_content_type() == "text/calendar"
    assert ics.get_param("method") == method
    assert ics.get_param("charset") == "UTF-8"
    assert ics.get_filename() == "termin.ics"
    assert ics.get_payload(decode=True) == ICS


def test_the_german_subject_decodes_with_its_umlauts_and_is_encoded_on_the_wire() -> None:
    raw = render(data()).data
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()  # RFC 2047 words, not raw UTF-8
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == (
        "Terminbestätigung: Hund anmelden am Montag, 30. November 2026, 09:00 Uhr"
    )


def test_the_german_manage_link_line() -> None:
    plain, _ = texts(sent(data()))
    assert f"Termin ansehen, verlegen oder absagen: {MANAGE}" in plain


@pytest.mark.parametrize(
    ("start", "language", "expected"),
    [
        (WINTER, "de", "Montag, 30. November 2026, 09:00 Uhr (bis 09:15 Uhr)"),
        (SUMMER, "de", "Montag, 29. Juni 2026, 09:00 Uhr (bis 09:15 Uhr)"),
        (WINTER, "en", "Monday, 30 November 2026, 9:00 am (until 9:15 am)"),
        (SUMMER, "en", "Monday, 29 June 2026, 9:00 am (until 9:15 am)"),
    ],
)
def test_times_are_local_to_the_location_in_winter_and_summer(
    start: datetime, language: str, expected: str
) -> None:
    d = data(start=start, end=start.replace(minute=15), language=language)
    for part in texts(sent(d)):
        assert expected in part
        assert "08:00" not in part
        assert "07:00" not in part


def test_format_when_writes_its_own_names_and_a_12_hour_clock() -> None:
    march = datetime(2027, 3, 3, 11, 30, tzinfo=UTC)  # Wednesday 12:30 CET
    assert format_when(march, BERLIN, "de") == "Mittwoch, 3. März 2027, 12:30 Uhr"
    assert format_when(march, BERLIN, "en") == "Wednesday, 3 March 2027, 12:30 pm"
    midnight = datetime(2026, 12, 31, 23, 5, tzinfo=UTC)  # Friday 1 January 2027, 00:05
    assert format_when(midnight, BERLIN, "en") == "Friday, 1 January 2027, 12:05 am"
    assert format_when(midnight, BERLIN, "de") == "Freitag, 1. Januar 2027, 00:05 Uhr"
    assert format_when(midnight, BERLIN, "de-AT") == "Freitag, 1. Januar 2027, 00:05 Uhr"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        render(data(start=datetime(2026, 11, 30, 9, 0), end=datetime(2026, 11, 30, 9, 15)))


def test_html_escapes_every_value() -> None:
    evil = "<script>alert('x')</script> & Co"
    d = data(
        to_name=evil,
        attendee_name="Max <b>Muster</b>",
        services=["<img src=x onerror=alert(1)>"],
        place_name='"><iframe>',
        what_to_bring=["<script>steal()</script>"],
        manage_url='https://termine.example.de/x?a=1&b="><script>',
    )
    plain, html = texts(sent(d))
    for raw in ("<script>", "<b>", "<img", "<iframe>", '"><iframe'):
        assert raw not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in html
    assert "Max &lt;b&gt;Muster&lt;/b&gt;" in html
    assert 'href="https://termine.example.de/x?a=1&amp;b=&quot;&gt;&lt;script&gt;"' in html
    # the plain part shows the name as given; it is not markup
    assert evil in plain


def test_a_line_break_in_a_name_cannot_add_a_header() -> None:
    message = sent(data(to_name="Eve\r\nBcc: victim@example.org", services=["A\nX-Evil: 1"]))
    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    assert message["To"].addresses[0].display_name == "Eve Bcc: victim@example.org"


def test_the_contact_books_for_someone_else() -> None:
    message = sent(data(to_name="Maria Schulz", attendee_name="Paul Schulz"))
    for part in texts(message):
        assert "Maria Schulz" in part
        assert "für Paul Schulz" in part
    english = sent(data(language="en", to_name="Maria Schulz", attendee_name="Paul Schulz"))
    for part in texts(english):
        assert "for Paul Schulz" in part


def test_no_for_when_the_contact_is_the_attendee() -> None:
    plain, html = texts(sent(data(to_name="Jürgen Weiß", attendee_name="jürgen  weiß")))
    for part in (plain, html):
        assert "für jürgen" not in part.casefold()
        assert "hiermit bestätigen wir Ihren Termin." in part
    assert "Für:" not in plain


def test_several_services_are_joined() -> None:
    message = sent(data(services=["Hund anmelden", "Reisepass beantragen", "Meldebescheinigung"]))
    assert message["Subject"].startswith(
        "Terminbestätigung: Hund anmelden, Reisepass beantragen und Meldebescheinigung am "
    )
    english = sent(data(language="en", services=["Register a dog", "Apply for a passport"]))
    assert english["Subject"].startswith(
        "Appointment confirmed: Register a dog and Apply for a passport on "
    )


@pytest.mark.parametrize("language", ["de", "en"])
def test_reschedule_shows_the_old_and_the_new_time(language: str) -> None:
    old = datetime(2026, 11, 27, 13, 30, tzinfo=UTC)
    message = sent(data(kind=Kind.RESCHEDULE, language=language, previous_start=old))
    old_text = {
        "de": "Freitag, 27. November 2026, 14:30 Uhr",
        "en": "Friday, 27 November 2026, 2:30 pm",
    }[language]
    labels = {"de": ("Neuer Termin", "Bisheriger Termin"), "en": ("New time", "Previous time")}
    for part in texts(message):
        assert old_text in part
        assert WHEN[language] in part
        assert all(label in part for label in labels[language])
    assert old_text not in message["Subject"]  # the subject carries the new time
    assert WHEN[language] in message["Subject"]


@pytest.mark.parametrize(
    ("language", "said", "offer"),
    [
        ("de", "wurde abgesagt", "neuen Termin"),
        ("en", "has been cancelled", "new appointment"),
    ],
)
def test_cancellation_says_so_and_offers_to_book_again(
    language: str, said: str, offer: str
) -> None:
    book = "https://termine.example.de/buchen"
    message = sent(
        data(kind=Kind.CANCELLATION, language=language, ics_method="CANCEL", book_url=book)
    )
    plain, html = texts(message)
    for part in (plain, html):
        assert said in part
        assert offer in part
        assert book in part
    assert f'href="{book}"' in html
    assert attachments(message)[0].get_param("method") == "CANCEL"


@pytest.mark.parametrize("language", ["de", "en"])
def test_waitlist_offer_names_its_deadline(language: str) -> None:
    deadline = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # Tuesday 18:00 in Berlin
    expected = {
        "de": "bis Dienstag, 24. November 2026, 18:00 Uhr",
        "en": "by Tuesday, 24 November 2026, 6:00 pm",
    }[language]
    message = sent(data(kind=Kind.WAITLIST_OFFER, language=language, respond_by=deadline))
    for part in texts(message):
        assert expected in part


def test_no_attachment_without_an_ics() -> None:
    message = sent(data(ics=None, ics_method=None))
    assert message.get_content_type() == "multipart/alternative"
    assert attachments(message) == []
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    plain, html = texts(message)
    assert "termin.ics" not in plain
    assert "termin.ics" not in html


def test_with_an_ics_the_text_and_the_attachment_sit_side_by_side() -> None:
    message = sent(data())
    assert message.get_content_type() == "multipart/mixed"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["multipart/alternative", "text/calendar"]


def test_an_unknown_language_falls_back_to_german() -> None:
    message = sent(data(language="fr"))
    assert message["Subject"].startswith("Terminbestätigung: ")
    assert message["Content-Language"] == "de"


def test_the_same_data_renders_the_same_message() -> None:
    # a resend after a crash must be the same message, recognisable by its Message-ID
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    first, second = render(data(), now=now), render(data(), now=now)
    assert first.message_id == second.message_id == MESSAGE_ID
    assert first.data == second.data


def test_the_wire_form_is_seven_bit_with_short_lines() -> None:
    long_services = [f"Dienstleistung Nummer {n} mit langem Namen für Grüße" for n in range(6)]
    raw = render(data(services=long_services, to_name="Ä" * 90)).data
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"].startswith("Terminbestätigung: Dienstleistung Nummer 0 mit")
    # CPython's address parser keeps the folding space between encoded words in a phrase (it
    # does the same with the messages EmailMessage writes); mail clients join them
    assert parsed["To"].addresses[0].display_name.replace(" ", "") == "Ä" * 90


@pytest.mark.parametrize(
    "address", ["max..muster@example.de", "max@", "a b@example.de", "x@-y.de", "x@y..de"]
)
def test_an_address_smtp_cannot_carry_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        render(data(to_email=address))


def test_an_internationalized_domain_is_written_as_idna() -> None:
    message = sent(data(to_email="post@müller.example"))
    assert message["To"].addresses[0].addr_spec == "post@xn--mller-kva.example"


def test_a_header_that_looks_encoded_is_encoded() -> None:
    message = sent(data(to_name="=?utf-8?q?Bcc?= Eve"))
    assert message["To"].addresses[0].display_name == "=?utf-8?q?Bcc?= Eve"


def test_the_default_sender_of_the_demo_renders() -> None:
    from scheduler.settings import Settings

    message = sent(data(sender=Settings().mail_from))
    assert message["From"].addresses[0].addr_spec == "termine@localhost"
