"""Tests for iCalendar export (booking files, feeds) and import (closures from .ics files)."""

from __future__ import annotations

import ast
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

import scheduler.calendar.ical as ical_module
from scheduler.calendar.ical import (
    PRODID,
    EventData,
    IcalImportError,
    ImportedPeriod,
    booking_ics,
    calendar_document,
    parse_periods,
    render_event,
)

BERLIN = ZoneInfo("Europe/Berlin")
FIXTURES = Path(__file__).parent.parent / "fixtures"
STAMP = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: The import window used with the fixtures: local midnights in Berlin.
WINDOW = (datetime(2026, 11, 1, tzinfo=BERLIN), datetime(2028, 1, 1, tzinfo=BERLIN))
ONE_YEAR = (datetime(2026, 11, 1, tzinfo=BERLIN), datetime(2027, 11, 1, tzinfo=BERLIN))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def booking(**changes: object) -> EventData:
    values: dict[str, object] = {
        "uid": "4711@termine.example.de",
        "start": utc(2026, 3, 27, 8, 0),
        "end": utc(2026, 3, 27, 8, 15),
        "summary": "Hund anmelden – E. M.",
        "location": "Bürgerbüro, Rathaus, Marktplatz 1, 12345 Musterstadt",
        "description": (
            "Bitte mitbringen: Personalausweis; Nachweis über die Haftpflichtversicherung.\n"
            "Grüße aus dem Bürgerbüro – ä ö ü ß Ä Ö Ü. Termin absagen oder ändern über den Link."
        ),
        "sequence": 0,
        "status": "CONFIRMED",
        "last_modified": utc(2026, 3, 1, 11, 59),
        "url": "https://termine.example.de/buchung/ABCD-EFGH?token=0123456789abcdef",
    }
    values.update(changes)
    return EventData(**values)  # type: ignore[arg-type]


def parse(document: bytes) -> Calendar:
    return Calendar.from_ical(document)


def lines(document: bytes) -> list[bytes]:
    assert document.endswith(b"\r\n")
    return document[:-2].split(b"\r\n")


def unfolded(document: bytes) -> list[str]:
    return document.decode().replace("\r\n ", "").split("\r\n")


# --------------------------------------------------------------------------------------------
# Layout


def test_ical_imports_only_stdlib_icalendar_and_recurring_ical_events() -> None:
    tree = ast.parse(Path(ical_module.__file__).read_text())
    allowed = set(sys.stdlib_module_names) | {"icalendar", "recurring_ical_events", "scheduler"}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    assert found, "the check must see the imports"
    assert {name for name in found if name.split(".")[0] not in allowed} == set()
    assert {name for name in found if name.startswith("scheduler")} <= {"scheduler.calendar.grid"}


# --------------------------------------------------------------------------------------------
# Export: one event


def test_render_event_is_one_vevent_block() -> None:
    block = render_event(booking(), BERLIN, STAMP)
    assert block.startswith(b"BEGIN:VEVENT\r\n")
    assert block.endswith(b"END:VEVENT\r\n")
    assert block.count(b"BEGIN:") == 1
    assert b"\n" not in block.replace(b"\r\n", b"")
    assert b"\r" not in block.replace(b"\r\n", b"")


def test_round_trip_keeps_every_field() -> None:
    event = booking()
    document = calendar_document([render_event(event, BERLIN, STAMP)], BERLIN)
    calendar = parse(document)
    [parsed] = calendar.events
    assert str(parsed["UID"]) == event.uid
    assert parsed["SEQUENCE"] == 0
    assert str(parsed["STATUS"]) == "CONFIRMED"
    assert str(parsed["SUMMARY"]) == event.summary
    assert str(parsed["LOCATION"]) == event.location
    assert str(parsed["DESCRIPTION"]) == event.description
    assert "\n" in str(parsed["DESCRIPTION"])
    assert str(parsed["URL"]) == event.url
    assert str(parsed["TRANSP"]) == "OPAQUE"
    assert parsed["DTSTART"].dt.astimezone(UTC) == event.start
    assert parsed["DTEND"].dt.astimezone(UTC) == event.end
    assert parsed["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert parsed["DTEND"].params["TZID"] == "Europe/Berlin"
    assert parsed["DTSTAMP"].dt == STAMP
    assert parsed["LAST-MODIFIED"].dt == event.last_modified
    text = unfolded(document)
    assert "DTSTAMP:20260301T120000Z" in text
    assert "LAST-MODIFIED:20260301T115900Z" in text
    assert "DTSTART;TZID=Europe/Berlin:20260327T090000" in text


def test_document_has_one_vtimezone_crlf_and_short_lines() -> None:
    blocks = [render_event(booking(uid=f"{n}@termine.example.de"), BERLIN, STAMP) for n in range(3)]
    document = calendar_document(blocks, BERLIN)
    calendar = parse(document)
    assert len(calendar.walk("VTIMEZONE")) == 1
    assert len(calendar.events) == 3
    assert b"\n" not in document.replace(b"\r\n", b"")
    assert b"\r" not in document.replace(b"\r\n", b"")
    for line in lines(document):
        assert len(line) <= 75, line
        line.decode("utf-8")  # folding never splits a multi-byte character
    head = unfolded(document)[:4]
    assert head == ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    assert document.endswith(b"END:VEVENT\r\nEND:VCALENDAR\r\n")


def test_long_text_is_folded_by_the_library() -> None:
    block = render_event(booking(description="Öffnungszeiten beachten. " * 20), BERLIN, STAMP)
    physical = lines(block)
    assert any(line.startswith(b" ") for line in physical)
    assert all(len(line) <= 75 for line in physical)
    [parsed] = parse(calendar_document([block], BERLIN)).events
    assert str(parsed["DESCRIPTION"]) == "Öffnungszeiten beachten. " * 20


def test_empty_optional_fields_are_left_out() -> None:
    block = render_event(booking(url=None, location="", description=""), BERLIN, STAMP)
    text = unfolded(block)
    assert not any(line.startswith(("URL", "LOCATION", "DESCRIPTION")) for line in text)
    [parsed] = parse(calendar_document([block], BERLIN)).events
    assert str(parsed.get("LOCATION", "")) == ""
    assert "SUMMARY:Hund anmelden – E. M." in text


def test_events_are_spliced_in_verbatim_and_in_order() -> None:
    blocks = [render_event(booking(uid=f"{n}@h", sequence=n), BERLIN, STAMP) for n in range(5)]
    document = calendar_document(blocks, BERLIN, name="Schalter 1")
    empty = calendar_document([], BERLIN, name="Schalter 1")
    head = empty[: -len(b"END:VCALENDAR\r\n")]
    assert document == head + b"".join(blocks) + b"END:VCALENDAR\r\n"
    assert [str(e["UID"]) for e in parse(document).events] == [f"{n}@h" for n in range(5)]
    assert parse(empty).events == []


@pytest.mark.parametrize("method", ["REQUEST", "CANCEL", "PUBLISH"])
def test_method_appears_when_asked(method: str) -> None:
    document = booking_ics(booking(), BERLIN, STAMP, method=method)
    assert f"METHOD:{method}" in unfolded(document)
    assert str(parse(document)["METHOD"]) == method


def test_no_method_without_asking() -> None:
    assert b"METHOD:" not in booking_ics(booking(), BERLIN, STAMP)


def test_feed_has_name_and_refresh_interval() -> None:
    document = calendar_document([], BERLIN, name="Bürgerbüro – Schalter 1", refresh_minutes=30)
    text = unfolded(document)
    assert "X-WR-CALNAME:Bürgerbüro – Schalter 1" in text
    assert "NAME:Bürgerbüro – Schalter 1" in text
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT30M" in text
    assert "X-PUBLISHED-TTL:PT30M" in text
    calendar = parse(document)
    assert calendar.calendar_name == "Bürgerbüro – Schalter 1"
    assert calendar.refresh_interval == timedelta(minutes=30)
    plain = unfolded(calendar_document([], BERLIN))
    assert not any(line.startswith(("X-WR-CALNAME", "REFRESH-INTERVAL")) for line in plain)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (booking(start=datetime(2026, 3, 27, 9, 0)), "timezone-aware"),
        (booking(status="BOOKED"), "status"),
        (booking(end=utc(2026, 3, 27, 8, 0)), "not after start"),
        (booking(sequence=-1), "sequence"),
        (booking(uid=""), "uid"),
    ],
)
def test_render_event_refuses_bad_data(event: EventData, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_event(event, BERLIN, STAMP)


def test_calendar_document_refuses_bad_arguments() -> None:
    block = render_event(booking(), BERLIN, STAMP)
    with pytest.raises(ValueError, match="method"):
        calendar_document([block], BERLIN, method="REPLY")
    with pytest.raises(ValueError, match="refresh_minutes"):
        calendar_document([block], BERLIN, refresh_minutes=0)
    with pytest.raises(ValueError, match="not a VEVENT block"):
        calendar_document([block, b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"], BERLIN)


# --------------------------------------------------------------------------------------------
# Export: daylight saving time


DST_CASES = [
    # (local date, UTC hour of 09:00 local)
    (datetime(2026, 3, 27), 8),  # Friday before spring forward: CET
    (datetime(2026, 3, 30), 7),  # Monday after: CEST
    (datetime(2026, 10, 23), 7),  # Friday before fall back: CEST
    (datetime(2026, 10, 26), 8),  # Monday after: CET
]


@pytest.mark.parametrize(("day", "utc_hour"), DST_CASES)
def test_wall_clock_time_survives_dst(day: datetime, utc_hour: int) -> None:
    start = utc(day.year, day.month, day.day, utc_hour)
    event = booking(start=start, end=start + timedelta(minutes=15))
    document = booking_ics(event, BERLIN, STAMP)
    assert f"DTSTART;TZID=Europe/Berlin:{day:%Y%m%d}T090000" in unfolded(document)
    [parsed] = parse(document).events
    assert parsed["DTSTART"].dt.astimezone(UTC) == start


def test_vtimezone_covers_standard_and_daylight_time() -> None:
    calendar = parse(booking_ics(booking(), BERLIN, STAMP))
    [timezone] = calendar.timezones
    assert timezone.tz_name == "Europe/Berlin"
    hour = timedelta(hours=1)
    offsets = {
        (sub.name, sub["TZOFFSETFROM"].td, sub["TZOFFSETTO"].td) for sub in timezone.subcomponents
    }
    assert ("DAYLIGHT", hour, 2 * hour) in offsets
    assert ("STANDARD", 2 * hour, hour) in offsets
    text = unfolded(booking_ics(booking(), BERLIN, STAMP))
    assert {"TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "TZOFFSETFROM:+0200"} <= set(text)
    # The VTIMEZONE alone, without looking up the IANA name, gives the right offsets.
    own = timezone.to_tz(lookup_tzid=False)
    for day, utc_hour in DST_CASES:
        assert day.replace(hour=9, tzinfo=own).utcoffset() == timedelta(hours=9 - utc_hour)


@pytest.mark.parametrize(("day", "utc_hour"), DST_CASES)
def test_client_without_the_zone_name_uses_the_vtimezone(day: datetime, utc_hour: int) -> None:
    # A client that does not know "Europe/Berlin" must rely on the VTIMEZONE in the file.
    start = utc(day.year, day.month, day.day, utc_hour)
    document = booking_ics(booking(start=start, end=start + timedelta(hours=1)), BERLIN, STAMP)
    renamed = document.replace(b"Europe/Berlin", b"Stadtverwaltung Ortszeit")
    [parsed] = parse(renamed).events
    assert parsed["DTSTART"].params["TZID"] == "Stadtverwaltung Ortszeit"
    assert parsed["DTSTART"].dt.astimezone(UTC) == start


# --------------------------------------------------------------------------------------------
# Export: changes


def test_a_change_keeps_the_uid_and_raises_the_sequence() -> None:
    first = parse(booking_ics(booking(), BERLIN, STAMP, method="REQUEST")).events[0]
    changed = booking(sequence=1, status="CANCELLED", last_modified=utc(2026, 3, 2))
    document = booking_ics(changed, BERLIN, STAMP + timedelta(days=1), method="CANCEL")
    second = parse(document).events[0]
    assert str(second["UID"]) == str(first["UID"])
    assert second["SEQUENCE"] > first["SEQUENCE"]
    assert str(second["STATUS"]) == "CANCELLED"
    assert "METHOD:CANCEL" in unfolded(document)


# --------------------------------------------------------------------------------------------
# Export: performance sanity


def test_ten_thousand_events_join_fast() -> None:
    base = utc(2026, 4, 1, 7)
    events = [
        booking(
            uid=f"{n}@termine.example.de",
            start=base + timedelta(minutes=15 * n),
            end=base + timedelta(minutes=15 * n + 15),
        )
        for n in range(10_000)
    ]
    began = time.perf_counter()
    blocks = [render_event(event, BERLIN, STAMP) for event in events]
    rendered = time.perf_counter() - began
    calendar_document(blocks[:1], BERLIN, name="Warm", refresh_minutes=15)  # the skeleton
    began = time.perf_counter()
    document = calendar_document(blocks, BERLIN, name="Warm", refresh_minutes=15)
    joined = time.perf_counter() - began
    print(
        f"\nrender_event: {rendered / len(events) * 1e6:.0f} us per event "
        f"({rendered:.2f} s for 10,000); join of 10,000: {joined * 1000:.1f} ms, "
        f"{len(document) / 1e6:.1f} MB"
    )
    assert document.count(b"BEGIN:VEVENT\r\n") == 10_000
    assert joined < 0.2


# --------------------------------------------------------------------------------------------
# Import


def periods_of(data: bytes, window: tuple[datetime, datetime] = WINDOW) -> list[ImportedPeriod]:
    return parse_periods(data, BERLIN, *window)


def ics(*events: str, head: str = "") -> bytes:
    body = "".join(f"BEGIN:VEVENT\n{event.strip()}\nEND:VEVENT\n" for event in events)
    text = f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{head}{body}END:VCALENDAR\n"
    return text.replace("\n", "\r\n").encode()


def test_holidays_with_rrule_exdate_and_override() -> None:
    periods = periods_of((FIXTURES / "holidays_rrule_exdate.ics").read_bytes())
    training = "fortbildung@personal.example"
    assert periods == [
        # weekly 13:00-17:00 local (CET), COUNT=5: Nov 2, 9, (16 excluded), 23 moved, 30 cancelled
        ImportedPeriod(
            utc(2026, 11, 2, 12), utc(2026, 11, 2, 16), "Fortbildung",
            f"{training}#2026-11-02T12:00:00Z",
        ),
        ImportedPeriod(
            utc(2026, 11, 9, 12), utc(2026, 11, 9, 16), "Fortbildung",
            f"{training}#2026-11-09T12:00:00Z",
        ),
        ImportedPeriod(  # moved by its RECURRENCE-ID override to Tuesday 08:00-12:00
            utc(2026, 11, 24, 7), utc(2026, 11, 24, 11), "Fortbildung (verschoben)",
            f"{training}#2026-11-23T12:00:00Z",
        ),
        # all-day: local midnight to local midnight
        ImportedPeriod(
            utc(2026, 12, 24, 23), utc(2026, 12, 25, 23), "1. Weihnachtsfeiertag",
            "weihnachten@feiertage.example#2026-12-24T23:00:00Z",
        ),
        ImportedPeriod(  # no DTEND: one day
            utc(2026, 12, 31, 23), utc(2027, 1, 1, 23), "Neujahr",
            "neujahr@feiertage.example#2026-12-31T23:00:00Z",
        ),
        ImportedPeriod(  # a single event in UTC
            utc(2027, 3, 15, 8), utc(2027, 3, 15, 10), "Personalversammlung",
            "personalversammlung@personal.example",
        ),
        ImportedPeriod(
            utc(2027, 12, 24, 23), utc(2027, 12, 25, 23), "1. Weihnachtsfeiertag",
            "weihnachten@feiertage.example#2027-12-24T23:00:00Z",
        ),
        # Neujahr 2028 starts exactly at the end of the window; the cancelled outing is skipped.
    ]  # fmt: skip


def test_duration_floating_transparent_and_zero_length() -> None:
    data = (FIXTURES / "closures_duration_floating_transparent.ics").read_bytes()
    periods = periods_of(data)
    assert [(p.start, p.end, p.uid) for p in periods] == [
        # two all-day dates, 27 and 28 March, across the spring-forward night: 47 real hours
        (utc(2027, 3, 26, 23), utc(2027, 3, 28, 22), "twodays@test"),
        # floating 10:00-11:30 is wall time in Berlin (CEST)
        (utc(2027, 5, 10, 8), utc(2027, 5, 10, 9, 30), "floating@test"),
        # DTEND equal to DTSTART on an all-day event counts as that day; TRANSPARENT is kept
        (utc(2027, 5, 31, 22), utc(2027, 6, 1, 22), "transparent@test"),
        # DURATION:PT2H30M from 09:00 CEST
        (utc(2027, 7, 1, 7), utc(2027, 7, 1, 9, 30), "duration@test"),
    ]
    # "zero@test" has neither DTEND nor DURATION: zero length, skipped.


def test_periods_overlapping_the_window_edges_are_kept_whole() -> None:
    data = ics(
        "UID:urlaub@test\nDTSTART;VALUE=DATE:20261028\nDTEND;VALUE=DATE:20261104\nSUMMARY:Urlaub",
        "UID:before@test\nDTSTART:20261030T080000Z\nDTEND:20261030T090000Z",
        "UID:after@test\nDTSTART;VALUE=DATE:20280101\nSUMMARY:Neujahr 2028",
    )
    assert periods_of(data) == [
        ImportedPeriod(utc(2026, 10, 27, 23), utc(2026, 11, 3, 23), "Urlaub", "urlaub@test")
    ]


def test_windows_zone_names_and_custom_vtimezones_are_understood() -> None:
    custom = (
        "BEGIN:VTIMEZONE\nTZID:Amtszeit\nBEGIN:STANDARD\nDTSTART:19701025T030000\n"
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\n"
        "END:STANDARD\nBEGIN:DAYLIGHT\nDTSTART:19700329T020000\n"
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\n"
        "END:DAYLIGHT\nEND:VTIMEZONE\n"
    )
    data = ics(
        "UID:outlook@test\nDTSTART;TZID=W. Europe Standard Time:20270701T090000\n"
        "DTEND;TZID=W. Europe Standard Time:20270701T100000",
        "UID:custom@test\nDTSTART;TZID=Amtszeit:20270105T090000\n"
        "DTEND;TZID=Amtszeit:20270105T100000",
        head=custom,
    )
    assert [(p.start, p.uid) for p in periods_of(data)] == [
        (utc(2027, 1, 5, 8), "custom@test"),
        (utc(2027, 7, 1, 7), "outlook@test"),
    ]


def test_x_wr_timezone_places_floating_times() -> None:
    data = ics(
        "UID:ny@test\nDTSTART:20270105T090000\nDTEND:20270105T100000",
        head="X-WR-TIMEZONE:America/New_York\n",
    )
    [period] = periods_of(data)
    assert period.start == utc(2027, 1, 5, 14)


def test_events_without_uid_get_a_stable_one() -> None:
    data = ics(
        "DTSTART:20270105T090000Z\nDTEND:20270105T100000Z\nSUMMARY:A",
        "DTSTART:20270106T090000Z\nDTEND:20270106T100000Z\nSUMMARY:B",
    )
    first, second = periods_of(data)
    assert (first.summary, second.summary) == ("A", "B")
    assert first.uid != second.uid
    assert [p.uid for p in periods_of(data)] == [first.uid, second.uid]


def test_cancelled_series_is_skipped_entirely() -> None:
    data = ics("UID:s@test\nDTSTART:20261201T090000Z\nDURATION:PT1H\nRRULE:FREQ=DAILY;COUNT=3\n"
               "STATUS:CANCELLED")  # fmt: skip
    assert periods_of(data) == []


def test_result_is_sorted_by_start() -> None:
    data = ics(
        "UID:b@test\nDTSTART:20270105T090000Z\nDTEND:20270105T100000Z",
        "UID:a@test\nDTSTART;VALUE=DATE:20261201\nRRULE:FREQ=WEEKLY;COUNT=10",
    )
    starts = [p.start for p in periods_of(data)]
    assert starts == sorted(starts)
    assert len(starts) == 11


def test_window_arguments_are_checked() -> None:
    data = (FIXTURES / "holidays_rrule_exdate.ics").read_bytes()
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_periods(data, BERLIN, datetime(2026, 11, 1), WINDOW[1])
    with pytest.raises(ValueError, match="after"):
        parse_periods(data, BERLIN, WINDOW[1], WINDOW[0])


# --------------------------------------------------------------------------------------------
# Import: hostile and broken files


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


HOSTILE = [
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"\r\n  \r\n", "empty", id="blank"),
    pytest.param(bytes(range(256)) * 8, "not UTF-8", id="random-binary"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8", id="png"),
    pytest.param(fixture("not_icalendar.txt"), "not an iCalendar file", id="text"),
    pytest.param(b'{"events": []}', "not an iCalendar file", id="json"),
    pytest.param(
        fixture("broken_unclosed.ics"),
        "BEGIN:VEVENT from line 4 is not closed before END:VCALENDAR on line 9",
        id="unclosed",
    ),
    pytest.param(
        ics(head="BEGIN:VCALENDAR\nEND:VCALENDAR\n"), "BEGIN:VCALENDAR inside", id="nested-cal"
    ),
    pytest.param(fixture("broken_end_mismatch.ics"), "END:VTODO does not close", id="mismatch"),
    pytest.param(
        fixture("holidays_rrule_exdate.ics")[:1500], "the file ends before", id="truncated"
    ),
    pytest.param(fixture("broken_dtstart_hello.ics"), "DTSTART is not valid", id="dtstart-hello"),
    pytest.param(fixture("broken_missing_dtstart.ics"), "has no DTSTART", id="no-dtstart"),
    pytest.param(fixture("broken_unknown_tzid.ics"), "unknown time zone", id="unknown-tzid"),
    pytest.param(fixture("broken_rrule_garbage.ics"), "RRULE is not valid", id="rrule-garbage"),
    pytest.param(fixture("broken_rrule_interval_zero.ics"), "INTERVAL must be", id="interval-zero"),
    pytest.param(
        fixture("broken_rrule_never_matches.ics"), "never fit one day", id="never-matches"
    ),
    pytest.param(fixture("huge_minutely_rrule.ics"), "more than the limit", id="minutely"),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nDTEND:20261201T090000Z"),
        "DTEND 2026-12-01T09:00:00+00:00 is before DTSTART",
        id="end-before-start",
    ),
    pytest.param(
        ics(
            "UID:x\nDTSTART;TZID=Europe/Berlin:20261201T100000\nRRULE:FREQ=DAILY;COUNT=3\n"
            "EXDATE;TZID=Nowhere/Land:20261202T100000"
        ),
        "unknown time zone TZID='Nowhere/Land' in EXDATE",
        id="unknown-tzid-exdate",
    ),
    pytest.param(ics("UID:x\nDTSTART:T100000"), "DTSTART is not valid", id="time-only"),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nDURATION:-PT1H"), "negative", id="neg-duration"
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=DAILY;COUNT=3;UNTIL=20261231T000000Z"),
        "COUNT and UNTIL",
        id="count-and-until",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=DAILY;BYDAY=1MO"),
        "needs FREQ=MONTHLY",
        id="ordinal-byday-daily",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=DAILY;BYHOUR=25"),
        "outside 0..23",
        id="byhour-range",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:COUNT=3"), "FREQ is missing", id="no-freq"
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:hello"), "FREQ is missing", id="rrule-hello"
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=WEEKLY;X-NAME=1"),
        "unsupported rule part",
        id="unknown-part",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=DAILY;INTERVAL=7;BYDAY=MO"),
        "never repeats",
        id="interval-misses-weekday",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=MONTHLY;BYDAY=MO;BYSETPOS=7"),
        "BYSETPOS",
        id="bysetpos-beyond",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=MONTHLY;BYDAY=1MO;BYMONTHDAY=15"),
        "never fit one day",
        id="first-monday-on-the-15th",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=MONTHLY;INTERVAL=2;BYMONTH=1,3"),
        "never reaches a month",
        id="interval-misses-bymonth",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=MONTHLY;BYDAY=2FR,WE"),
        "mixes weekdays",
        id="byday-mixed",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=SECONDLY;COUNT=3"),
        "SECONDLY is not supported",
        id="secondly",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:20261201T100000Z\nDTSTART:20261202T100000Z"),
        "DTSTART appears more than once",
        id="two-dtstarts",
    ),
    pytest.param(
        ics("UID:x\nDTSTART:19000101T000000Z\nRRULE:FREQ=HOURLY;UNTIL=20260101T000000Z"),
        "too expensive to expand",
        id="hourly-since-1900",
    ),
    pytest.param(
        fixture("holidays_rrule_exdate.ics") * 2, "a second VCALENDAR", id="two-calendars"
    ),
    pytest.param(
        ics(head="BEGIN:X\n" * 10 + "END:X\n" * 10), "nested too deeply", id="deep-nesting"
    ),
    pytest.param(ics(head="CALSCALE:HEBREW\n"), "not supported", id="calscale"),
]


@pytest.mark.parametrize(("data", "message"), HOSTILE)
def test_hostile_and_broken_files_raise_import_error(data: bytes, message: str) -> None:
    began = time.perf_counter()
    with pytest.raises(IcalImportError, match=re.escape(message)):
        periods_of(
            data, (datetime(2026, 11, 1, tzinfo=BERLIN), datetime(2027, 11, 1, tzinfo=BERLIN))
        )
    assert time.perf_counter() - began < 1.0


def test_file_over_the_size_limit() -> None:
    data = fixture("holidays_rrule_exdate.ics")
    with pytest.raises(IcalImportError, match="more than the limit of 1,000 bytes"):
        parse_periods(data, BERLIN, *WINDOW, max_bytes=1000)
    big = b"BEGIN:VCALENDAR\r\n" + b"X-PAD:" + b"x" * (3 * 1024 * 1024) + b"\r\n"
    with pytest.raises(IcalImportError, match="bytes, more than the limit"):
        periods_of(big)


def test_more_periods_than_allowed() -> None:
    data = ics("UID:d@test\nDTSTART;VALUE=DATE:20261101\nRRULE:FREQ=DAILY\nSUMMARY:Umbau")
    assert len(periods_of(data)) == 30 + 31 + 365  # Nov 2026 to Dec 2027
    with pytest.raises(IcalImportError, match="more than the limit of 100"):
        parse_periods(data, BERLIN, *WINDOW, max_periods=100)


def test_minutely_rule_fails_fast_over_a_year() -> None:
    began = time.perf_counter()
    with pytest.raises(IcalImportError, match=r"about [\d,]+ periods"):
        parse_periods(fixture("huge_minutely_rrule.ics"), BERLIN, *ONE_YEAR)
    assert time.perf_counter() - began < 1.0


def test_library_errors_never_leak() -> None:
    # The expander's own rule check (dateutil) is reached and wrapped.
    data = ics("UID:x\nDTSTART:20261201T100000Z\nRRULE:FREQ=HOURLY;INTERVAL=2;BYHOUR=9,11")
    with pytest.raises(IcalImportError):
        periods_of(data)


VALID = fixture("holidays_rrule_exdate.ics")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_files_give_periods_or_import_error(data: st.DataObject) -> None:
    mutated = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        byte = data.draw(st.sampled_from(b":;=,\r\n 0129AZTabz\xc3\xff-"))
        if action == "replace":
            mutated[position] = byte
        elif action == "delete":
            del mutated[position]
        else:
            mutated.insert(position, byte)
    try:
        periods = periods_of(bytes(mutated))
    except IcalImportError:
        return
    for period in periods:
        assert period.end > period.start
        assert period.start.utcoffset() == timedelta(0)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_import_error(data: bytes) -> None:
    with pytest.raises(IcalImportError):
        periods_of(data)
