"""The staff page through the real app (no browser), on SQLite and PostgreSQL: the key login, the
day's agenda of the key's own calendars with the day switch, check-in and no-show as the API
records them, the subscription link, CSRF and odd input. The browser tests
(``tests/e2e/test_staff_page.py``) check someone in in Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from tests.web.test_agent_pages import csrf, log_in, main, make_key

Client = AsyncTestClient[Litestar]
TODAY_8 = "2026-11-23T08:00:00+01:00"  # T0 is 07:00 on Monday the 23rd
CLERKS = ("sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3")


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=app, base_url="https://testserver.local") as client:
        yield client


async def book(core: Core, name: str = "Erika Mustermann", start: str = TODAY_8) -> m.Booking:
    view, _ = await core.bookings.book(
        ["hund-anmelden"], datetime.fromisoformat(start), 1,
        BookingRequest(Person(name, f"{name.split()[0].lower()}@example.org")), Actor(), None,
        lambda _v: b"",
    )  # fmt: skip
    assert view is not None
    async with core.sessions() as session:
        booking = await session.scalar(
            select(m.Booking)
            .where(m.Booking.id == view.id)
            .options(selectinload(m.Booking.appointments))
        )
    assert booking is not None
    return booking


def calendar_of(booking: m.Booking) -> str:
    return booking.appointments[0].calendar_ids[0]


@pytest.fixture
async def booked(core: Core) -> m.Booking:
    return await book(core)


@pytest.fixture
async def clerk(web: Client, core: Core, booked: m.Booking) -> tuple[str, str]:
    """A logged-in clerk whose calendar holds ``booked``: (key id, key)."""
    key_id, secret = await make_key(core, "staff", (calendar_of(booked),))
    answer = await log_in(web, secret, "/staff")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/staff"
    return key_id, secret


async def status_of(core: Core, booking: m.Booking) -> str:
    async with core.sessions() as session:
        return str(await session.scalar(select(m.Booking.status).where(m.Booking.id == booking.id)))


async def mark(web: Client, reference: str, what: str, **extra: str) -> Any:
    agenda = await web.get("/staff")
    return await web.post(
        f"/staff/buchung/{reference}/{what}",
        data={"_csrf_token": csrf(agenda.text), **extra},
        follow_redirects=False,
    )


async def test_login_and_roles(web: Client, core: Core) -> None:
    assert (await web.get("/staff", follow_redirects=False)).headers["location"] == (
        "/staff/anmelden"
    )
    key_id, staff = await make_key(core, "staff", ("schalter-1",))
    answer = await log_in(web, staff, "/staff")
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("staff_"))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=strict", "path=/staff"} <= flags
    assert staff not in cookie
    assert key_id in cookie
    page = await web.get("/staff")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Test staff" in page.text
    # a staff session opens nothing at /agent, and a staff key does not log in there
    assert (await web.get("/agent", follow_redirects=False)).status_code == 303
    assert (await log_in(web, staff, "/agent")).status_code == 403
    out = await web.post(
        "/staff/abmelden", data={"_csrf_token": csrf(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    assert (await web.get("/staff", follow_redirects=False)).status_code == 303
    # an agent key is refused here; its session (for /agent) opens nothing here either
    _, agent = await make_key(core, "agent")
    refused = await log_in(web, agent, "/staff")
    assert refused.status_code == 403
    assert "gilt nicht für diesen Bereich" in refused.text
    assert (await log_in(web, agent, "/agent")).status_code == 303
    assert (await web.get("/staff", follow_redirects=False)).status_code == 303


async def test_the_agenda_shows_only_the_keys_calendars(
    web: Client, core: Core, booked: m.Booking, clerk: tuple[str, str]
) -> None:
    page = await web.get("/staff")
    html = main(page.text)
    own = calendar_of(booked)
    assert core.catalog.calendars[own].name in html
    assert "Montag, 23. November 2026 (heute)" in html
    assert codes.format_reference(booked.reference) in html
    assert "Erika Mustermann" in html
    assert "08:00–08:15" in html
    assert '<th scope="col">' in html
    assert '<th scope="row">08:00–08:15</th>' in html
    for other in CLERKS:
        if other != own:
            assert core.catalog.calendars[other].name not in html

    _, secret = await make_key(core, "staff", tuple(c for c in CLERKS if c != own)[:1])
    await log_in(web, secret, "/staff")
    elsewhere = main((await web.get("/staff")).text)
    assert "Erika Mustermann" not in elsewhere
    assert codes.format_reference(booked.reference) not in elsewhere


async def test_the_day_switch(web: Client, clerk: tuple[str, str]) -> None:
    page = await web.get("/staff")
    assert 'href="/staff?tag=2026-11-24"' in page.text
    assert 'href="/staff?tag=2026-11-22"' in page.text
    tomorrow = await web.get("/staff", params={"tag": "2026-11-24"})
    html = main(tomorrow.text)
    assert "Dienstag, 24. November 2026" in html
    assert "Erika Mustermann" not in html
    assert "keine Termine" in html
    assert 'href="/staff"' in html  # back to today
    german = await web.get("/staff", params={"tag": "24.11.2026"})
    assert "Dienstag, 24. November 2026" in german.text
    english = await web.get("/staff", params={"tag": "2026-11-24", "lang": "en"})
    assert "Tuesday, 24 November 2026" in english.text


async def test_check_in(web: Client, core: Core, booked: m.Booking, clerk: tuple[str, str]) -> None:
    reference = codes.format_reference(booked.reference)
    page = await web.get("/staff")
    assert f'action="/staff/buchung/{reference}/erschienen"' in page.text
    done = await mark(web, reference, "erschienen", tag="2026-11-23")
    assert done.status_code == 303
    target = done.headers["location"]
    assert urlsplit(target).path == "/staff"
    assert await status_of(core, booked) == "checked_in"
    shown = await web.get(target)
    html = main(shown.text)
    assert f"{reference}: als erschienen vermerkt" in html
    assert 'role="status"' in html
    assert "erschienen" in html
    assert f'action="/staff/buchung/{reference}/erschienen"' not in html  # done already
    async with core.sessions() as session:
        audit = await session.scalar(
            select(m.AuditEvent).where(m.AuditEvent.action == "booking.check_in")
        )
    assert audit is not None
    assert audit.actor == f"key:{clerk[0]}"


async def test_no_show_only_once_the_appointment_started(
    web: Client, core: Core, clock: ManualClock, booked: m.Booking, clerk: tuple[str, str]
) -> None:
    reference = codes.format_reference(booked.reference)
    early = await mark(web, reference, "nicht-erschienen")
    assert early.status_code == 422
    assert "erst ab Beginn des Termins" in main(early.text)
    assert 'role="alert"' in early.text
    assert await status_of(core, booked) == "confirmed"
    clock.advance(timedelta(hours=1, minutes=5))
    late = await mark(web, reference, "nicht-erschienen")
    assert late.status_code == 303
    assert await status_of(core, booked) == "no_show"


async def test_check_in_refusals_are_told(web: Client, core: Core) -> None:
    later = await book(core, "Max Später", "2026-11-25T09:00:00+01:00")
    _, secret = await make_key(core, "staff", CLERKS)
    await log_in(web, secret, "/staff")
    refused = await mark(web, codes.format_reference(later.reference), "erschienen")
    assert refused.status_code == 422
    assert "nicht heute" in main(refused.text)
    assert await status_of(core, later) == "confirmed"


async def test_bookings_of_other_calendars_are_not_found(
    web: Client, core: Core, booked: m.Booking
) -> None:
    own = calendar_of(booked)
    _, secret = await make_key(core, "staff", tuple(c for c in CLERKS if c != own)[:1])
    await log_in(web, secret, "/staff")
    reference = codes.format_reference(booked.reference)
    refused = await mark(web, reference, "erschienen")
    assert refused.status_code == 404
    assert refused.headers["content-type"].startswith("text/html")
    assert await status_of(core, booked) == "confirmed"
    missing = await mark(web, "ZZZZ-ZZZZ", "erschienen")
    assert missing.status_code == 404


async def test_the_feed_link(
    web: Client, core: Core, booked: m.Booking, clerk: tuple[str, str]
) -> None:
    own = calendar_of(booked)
    page = await web.get("/staff")
    made = await web.post(
        f"/staff/kalender/{own}/abo",
        data={"_csrf_token": csrf(page.text), "tag": "2026-11-23"},
        follow_redirects=False,
    )
    assert made.status_code == 200  # shown on this answer, never in a URL
    assert made.headers["cache-control"] == "no-store"
    found = re.search(r'value="(https?://[^"]+/feed\.ics\?token=(ft_[^"]+))"', made.text)
    assert found
    url, token = found.groups()
    assert f"/api/v1/calendars/{own}/feed.ics" in url
    assert f'<label for="feed-{own}">' in made.text
    assert "data-copy-for" in made.text  # the optional copy button
    feed = await web.get(f"/api/v1/calendars/{own}/feed.ics", params={"token": token})
    assert feed.status_code == 200
    assert "BEGIN:VCALENDAR" in feed.text
    again = await web.post(f"/staff/kalender/{own}/abo", data={"_csrf_token": csrf(page.text)})
    assert again.status_code == 200
    old = await web.get(f"/api/v1/calendars/{own}/feed.ics", params={"token": token})
    assert old.status_code == 404  # the new link replaced the old one
    others = next(c for c in CLERKS if c != own)
    refused = await web.post(f"/staff/kalender/{others}/abo", data={"_csrf_token": csrf(page.text)})
    assert refused.status_code == 404


async def test_forms_need_the_csrf_token(
    web: Client, core: Core, booked: m.Booking, clerk: tuple[str, str]
) -> None:
    reference = codes.format_reference(booked.reference)
    refused = await web.post(f"/staff/buchung/{reference}/erschienen", follow_redirects=False)
    assert refused.status_code == 403
    assert "Das Formular ist abgelaufen" in refused.text
    assert await status_of(core, booked) == "confirmed"


async def test_odd_input_is_no_server_error(
    web: Client, booked: m.Booking, clerk: tuple[str, str]
) -> None:
    for path in (
        "/staff?tag=gestern",
        "/staff?tag=2026-02-30",
        "/staff?tag=" + "9" * 11,
        "/staff?erledigt=erschienen&code=%00",
        "/staff/buchung/ABCD/erschienen",
    ):
        answer = await web.get(path)
        assert 200 <= answer.status_code < 500, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), path
    token = csrf((await web.get("/staff")).text)
    reference = codes.format_reference(booked.reference)
    for action, data in (
        (f"/staff/buchung/{reference}/vielleicht", {}),
        (f"/staff/buchung/{reference}/erschienen", {"tag": "morgen"}),
        ("/staff/buchung/!!!/erschienen", {}),
        ("/staff/kalender/katze/abo", {}),
        ("/staff/kalender/schalter-1/abo", {"tag": "x"}),
    ):
        answer = await web.post(action, data={"_csrf_token": token, **data})
        assert 400 <= answer.status_code < 500, (action, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), action
