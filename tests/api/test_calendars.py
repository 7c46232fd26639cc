"""Calendars out and in through the HTTP API: a booking's .ics, staff feeds with tokens and
conditional requests, feed-token administration, closure import."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import icalendar
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from scheduler.booking import apikeys
from scheduler.booking.core import Core

Client = AsyncTestClient[Litestar]
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
START = "2026-11-30T09:00:00+01:00"


async def key(core: Core, role: str, calendars: list[str] | None = None) -> dict[str, str]:
    async with core.sessions() as session, session.begin():
        _, secret = await apikeys.create_key(
            session, role=role, name=role, calendar_ids=calendars or [],
            known_calendars=set(core.catalog.calendars), now=core.clock.now(),
        )  # fmt: skip
    return {"Authorization": f"Bearer {secret}"}


async def book(client: Client, start: str = START, name: str = "Erika Mustermann") -> dict:
    response = await client.post(
        "/api/v1/bookings",
        json={"service_id": "hund-anmelden", "start": start,
              "citizen": {"name": name, "email": f"{name.split()[0].lower()}@example.org",
                          "birth_date": "1950-02-01"}},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_booking_ics_with_bearer_and_query_token(client: Client) -> None:
    booking = await book(client)
    url = f"/api/v1/bookings/{booking['reference']}/calendar.ics"
    by_header = await client.get(
        url, headers={"Authorization": f"Bearer {booking['manage_token']}"}
    )
    by_query = await client.get(url, params={"token": booking["manage_token"]})
    assert by_header.status_code == by_query.status_code == 200
    assert by_header.content == by_query.content
    assert by_header.headers["content-type"].startswith("text/calendar")
    assert by_header.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in by_header.headers["cache-control"]
    parsed = icalendar.Calendar.from_ical(by_header.content)
    events = list(parsed.walk("VEVENT"))
    assert len(events) == 1
    event = events[0]
    assert str(event["SUMMARY"]) == "Hund anmelden"
    assert "Bismarckstraße 5" in str(event["LOCATION"])
    assert "/buchung/" in str(event["DESCRIPTION"])
    assert booking["reference"] in str(event["DESCRIPTION"])
    assert event.decoded("DTSTART") == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert b"DTSTART;TZID=Europe/Berlin:20261130T090000" in by_header.content
    wrong = await client.get(url, params={"token": "nope"})
    missing = await client.get("/api/v1/bookings/ZZZZ-ZZZZ/calendar.ics", params={"token": "x"})
    assert wrong.status_code == missing.status_code == 404
    assert wrong.json() == missing.json()


async def test_feed_token_lifecycle_privacy_and_conditional_requests(
    client: Client, core: Core
) -> None:
    admin = await key(core, "admin")
    created = await client.post(
        "/api/v1/feeds", json={"calendar_id": "sachbearbeitung-1", "name": "Frau Krüger"},
        headers=admin,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("ft_")
    assert len(token) >= 43
    listed = await client.get("/api/v1/feeds", headers=admin)
    assert token not in listed.text
    # three bookings of the same start use all three clerks: one lands on sachbearbeitung-1
    for n, name in enumerate(["Erika Mustermann", "Max Meier", "Olga Schulz"]):
        await book(client, name=name)
        assert n < 3
    url = "/api/v1/calendars/sachbearbeitung-1/feed.ics"
    feed = await client.get(url, params={"token": token})
    assert feed.status_code == 200, feed.text
    text = feed.content
    assert b"X-WR-CALNAME:" in text
    assert b"REFRESH-INTERVAL" in text
    parsed = icalendar.Calendar.from_ical(text)
    events = list(parsed.walk("VEVENT"))
    assert len(events) == 1
    summary = str(events[0]["SUMMARY"])
    assert summary.startswith("Hund anmelden – ")
    assert summary.endswith(".")  # initials only (the demo's clerks use "initials")
    assert b"1950" not in text
    assert b"example.org" not in text
    etag = feed.headers["etag"]
    again = await client.get(url, params={"token": token}, headers={"If-None-Match": etag})
    assert again.status_code == 304
    since = await client.get(
        url, params={"token": token}, headers={"If-Modified-Since": feed.headers["last-modified"]}
    )
    assert since.status_code == 304
    # a change makes a new ETag
    await book(client, start="2026-11-30T09:15:00+01:00", name="Paul Neu")
    await book(client, start="2026-11-30T09:15:00+01:00", name="Rita Alt")
    await book(client, start="2026-11-30T09:15:00+01:00", name="Sven Jung")
    changed = await client.get(url, params={"token": token}, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert len(list(icalendar.Calendar.from_ical(changed.content).walk("VEVENT"))) == 2
    # wrong calendar, wrong token, revoked token: all the same 404
    other = await client.get(
        "/api/v1/calendars/sachbearbeitung-2/feed.ics", params={"token": token}
    )
    garbage = await client.get(url, params={"token": "ft_nope"})
    revoked = await client.delete(f"/api/v1/feeds/{created.json()['id']}", headers=admin)
    assert revoked.status_code == 204
    after = await client.get(url, params={"token": token})
    assert other.status_code == garbage.status_code == after.status_code == 404
    assert garbage.json() == after.json()  # a revoked token looks exactly like a wrong one


async def test_moved_and_cancelled_bookings_keep_their_uid(client: Client, core: Core) -> None:
    booking = await book(client)
    auth = {"Authorization": f"Bearer {booking['manage_token']}"}
    url = f"/api/v1/bookings/{booking['reference']}/calendar.ics"
    first = icalendar.Calendar.from_ical((await client.get(url, headers=auth)).content)
    hold = await client.post(
        "/api/v1/holds", json={"service_id": "hund-anmelden", "start": "2026-12-01T10:00:00+01:00"}
    )
    await client.post(
        f"/api/v1/bookings/{booking['reference']}/reschedule",
        json={"hold_id": hold.json()["hold_id"]}, headers=auth,
    )  # fmt: skip
    moved = icalendar.Calendar.from_ical((await client.get(url, headers=auth)).content)
    await client.post(f"/api/v1/bookings/{booking['reference']}/cancel", headers=auth)
    cancelled = icalendar.Calendar.from_ical((await client.get(url, headers=auth)).content)
    events = [next(iter(c.walk("VEVENT"))) for c in (first, moved, cancelled)]
    assert len({str(e["UID"]) for e in events}) == 1
    assert [int(e["SEQUENCE"]) for e in events] == [0, 1, 2]
    assert [str(e["STATUS"]) for e in events] == ["CONFIRMED", "CONFIRMED", "CANCELLED"]
    assert events[1].decoded("DTSTART") == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_closure_import(client: Client, core: Core) -> None:
    staff = await key(core, "staff", ["sachbearbeitung-1"])
    other_staff = await key(core, "staff", ["sachbearbeitung-2"])
    ics = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        b"BEGIN:VEVENT\r\nUID:urlaub-1\r\nDTSTAMP:20261101T000000Z\r\n"
        b"DTSTART;VALUE=DATE:20261201\r\nDTEND;VALUE=DATE:20261202\r\n"
        b"RRULE:FREQ=WEEKLY;COUNT=3\r\nEXDATE;VALUE=DATE:20261208\r\n"
        b"SUMMARY:Urlaub\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    url = "/api/v1/calendars/sachbearbeitung-1/closures/import"
    assert (await client.post(url, content=ics)).status_code == 401
    forbidden = await client.post(url, content=ics, headers=other_staff)
    assert forbidden.status_code == 404
    done = await client.post(url, content=ics, headers=staff)
    assert done.status_code == 200, done.text
    assert done.json()["added"] == 2  # 12-01 and 12-15; 12-08 is excepted
    again = await client.post(url, content=ics, headers=staff)
    assert again.json() == {"added": 0, "already_known": 2, "affected": []}
    rows = (
        await client.get(
            "/api/v1/services/hund-anmelden/slots",
            params={"from": "2026-12-01", "to": "2026-12-01"},
        )
    ).json()
    assert {r["free"] for r in rows} == {2}  # one clerk of three is away
    async with core.sessions() as session:
        before = await session.scalar(text("SELECT count(*) FROM closures"))
    for hostile in (
        b"BEGIN:VCALENDAR\r\nnonsense",
        b"\x00\xff" * 1000,
        (FIXTURES / "huge_minutely_rrule.ics").read_bytes(),
        b"x" * (3 * 1024 * 1024),
    ):
        broken = await client.post(url, content=hostile, headers=staff)
        assert broken.status_code in (413, 422), broken.text
        assert broken.json()["code"] in ("validation_failed", "body_too_large")
    async with core.sessions() as session:
        after = await session.scalar(text("SELECT count(*) FROM closures"))
    assert after == before  # nothing half-written
