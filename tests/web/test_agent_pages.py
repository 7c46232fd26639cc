"""The hotline console through the real app (no browser), on SQLite and PostgreSQL: the key login
and its cookie session, the search by code and by name and birth date, the next free times,
booking for a caller on the phone channel (the campaign's eligibility judged before anything
is booked), moving, cancelling, the call-back list, CSRF and odd input. The browser tests
(``tests/e2e/test_agent_console.py``) walk the same console in Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from scheduler.booking import apikeys, codes
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.seed import bump_catalog
from scheduler.clock import ManualClock
from scheduler.web.session import AGENT, SESSION_LIFETIME

Client = AsyncTestClient[Litestar]
START = "2026-11-30T09:00:00+01:00"


def csrf(html: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


def main(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


@pytest.fixture
async def web(app: Litestar) -> AsyncIterator[Client]:
    """A browser on https: the session cookie is Secure, and a cookie jar keeps it only there
    (Chromium keeps it on http://127.0.0.1 too, see the browser tests)."""
    async with AsyncTestClient(app=app, base_url="https://testserver.local") as client:
        yield client


async def make_key(core: Core, role: str, calendars: tuple[str, ...] = ()) -> tuple[str, str]:
    async with core.sessions() as session, session.begin():
        row, secret = await apikeys.create_key(
            session, role=role, name=f"Test {role}", calendar_ids=list(calendars),
            known_calendars=set(core.catalog.calendars), now=core.clock.now(),
        )  # fmt: skip
    return row.id, secret


async def log_in(web: Client, secret: str, area: str = "/agent") -> Any:
    form = await web.get(f"{area}/anmelden")
    assert form.status_code == 200
    return await web.post(
        f"{area}/anmelden",
        data={"_csrf_token": csrf(form.text), "key": secret},
        follow_redirects=False,
    )


@pytest.fixture
async def agent(web: Client, core: Core) -> tuple[str, str]:
    """A logged-in agent: (key id, key)."""
    key_id, secret = await make_key(core, "agent")
    answer = await log_in(web, secret)
    assert answer.status_code == 303, answer.text
    return key_id, secret


async def post_form(web: Client, page_path: str, action: str, data: dict[str, str]) -> Any:
    """A form of a page, sent with the page's CSRF token (no redirect followed)."""
    shown = await web.get(page_path)
    assert shown.status_code == 200, (page_path, shown.status_code)
    return await web.post(
        action, data={"_csrf_token": csrf(shown.text), **data}, follow_redirects=False
    )


async def book_by_phone(
    web: Client, service: str = "hund-anmelden", start: str = START, **fields: str
) -> Any:
    """Hold a time from the console and book it with ``fields``; the answer to the booking."""
    taken = await post_form(web, "/agent", "/agent/termin", {"leistung": service, "start": start})
    assert taken.status_code == 303, taken.text
    form = await web.get(taken.headers["location"])
    assert form.status_code == 200
    held = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    held.pop("_csrf_token", None)
    return await web.post(
        "/agent/termin/buchen",
        data={"_csrf_token": csrf(form.text), **held, **fields},
        follow_redirects=False,
    )


async def only_booking(core: Core) -> m.Booking:
    async with core.sessions() as session:
        rows = list(
            await session.scalars(select(m.Booking).options(selectinload(m.Booking.appointments)))
        )
    assert len(rows) == 1
    return rows[0]


# -- the session ------------------------------------------------------------------------------


async def test_not_logged_in_is_the_login_page(web: Client) -> None:
    answer = await web.get("/agent", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/agent/anmelden"
    login = await web.get("/agent")
    assert login.status_code == 200
    assert login.headers["content-type"].startswith("text/html")
    assert login.headers["cache-control"] == "no-store"
    assert 'type="password"' in login.text
    assert '<label for="key">' in login.text
    for path in ("/agent/buchung/ABCD-EFGH", "/agent/termin?leistung=x&start=y"):
        elsewhere = await web.get(path, follow_redirects=False)
        assert elsewhere.headers["location"] == "/agent/anmelden", path


async def test_login_sets_a_secure_session_without_the_key(web: Client, core: Core) -> None:
    key_id, secret = await make_key(core, "agent")
    answer = await log_in(web, secret)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/agent"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("agent_session"))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=strict", "path=/agent"} <= flags
    assert f"max-age={int(SESSION_LIFETIME.total_seconds())}" in flags
    value = cookie.split(";")[0].split("=", 1)[1]
    assert secret not in value
    assert secret.split("_")[-1] not in value
    assert key_id in value  # the key's id, not its secret
    console = await web.get("/agent")
    assert console.status_code == 200
    assert console.headers["cache-control"] == "no-store"
    assert "Angemeldet als" in console.text
    assert "Test agent" in console.text


async def test_logout_ends_the_session(web: Client, agent: tuple[str, str]) -> None:
    out = await post_form(web, "/agent", "/agent/abmelden", {})
    assert out.status_code == 303
    assert out.headers["location"].startswith("/agent/anmelden")
    cookie = next(c for c in out.headers.get_list("set-cookie") if c.startswith("agent_session"))
    assert "max-age=0" in cookie.lower()
    assert (await web.get("/agent", follow_redirects=False)).status_code == 303
    told = await web.get(out.headers["location"])
    assert "Sie sind abgemeldet" in told.text


async def test_a_wrong_key_is_refused_and_counted(web: Client, core: Core, app: Litestar) -> None:
    wrong = await log_in(web, "sk_agent_" + "x" * 43)
    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("text/html")
    assert "unbekannt oder wurde widerrufen" in wrong.text
    assert 'href="#key"' in wrong.text  # the error summary links to the field
    assert "agent_session" not in wrong.headers.get("set-cookie", "")
    for junk in ("", "kein-schlüssel", "sk_" + "a" * 500):
        again = await log_in(web, junk)
        assert again.status_code == 401, junk
    # the same failure limit as wrong manage and feed tokens (20 in 10 minutes per address):
    # a blocked address cannot even try a right key
    limit = app.state.rate_limiter.limits.token_failures_per_address.count
    for _ in range(limit - 4):
        assert (await log_in(web, "sk_agent_falsch")).status_code == 401
    _, secret = await make_key(core, "agent")
    blocked = await log_in(web, secret)
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"]
    assert "Zu viele Anfragen" in blocked.text


async def test_keys_of_other_roles(web: Client, core: Core) -> None:
    _, staff = await make_key(core, "staff", ("schalter-1",))
    refused = await log_in(web, staff)
    assert refused.status_code == 403
    assert "gilt nicht für diesen Bereich" in refused.text
    assert (await web.get("/agent", follow_redirects=False)).status_code == 303
    _, admin = await make_key(core, "admin")
    assert (await log_in(web, admin)).status_code == 303
    assert (await web.get("/agent")).status_code == 200


async def test_a_revoked_key_ends_the_session(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    assert (await web.get("/agent")).status_code == 200
    async with core.sessions() as session, session.begin():
        await apikeys.revoke_key(session, agent[0], core.clock.now())
    answer = await web.get("/agent", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/agent/anmelden"


async def test_the_session_expires_and_cannot_be_forged(
    web: Client, core: Core, clock: ManualClock, agent: tuple[str, str]
) -> None:
    value = web.cookies.get(AGENT.cookie)
    assert value
    name, key_id, expires, signature = value.split(".")
    assert name == "agent"
    forged = f"agent.{key_id}.{int(expires) + 3600}.{signature}"
    web.cookies.set(AGENT.cookie, forged, domain="testserver.local", path="/agent")
    assert (await web.get("/agent", follow_redirects=False)).status_code == 303
    web.cookies.set(AGENT.cookie, value, domain="testserver.local", path="/agent")
    assert (await web.get("/agent")).status_code == 200
    clock.advance(SESSION_LIFETIME + timedelta(seconds=1))
    assert (await web.get("/agent", follow_redirects=False)).status_code == 303


async def test_forms_need_the_csrf_token(web: Client, core: Core, agent: tuple[str, str]) -> None:
    refused = await web.post(
        "/agent/termin", data={"leistung": "hund-anmelden", "start": START}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert "Das Formular ist abgelaufen" in refused.text
    login = await web.post("/agent/anmelden", data={"key": agent[1]}, follow_redirects=False)
    assert login.status_code == 403
    async with core.sessions() as session:
        assert (await session.scalars(select(m.Booking))).first() is None


# -- the console ------------------------------------------------------------------------------


async def test_next_free_times_of_every_service(web: Client, agent: tuple[str, str]) -> None:
    console = await web.get("/agent")
    html = main(console.text)
    assert "Nächste freie Termine aller Leistungen" in html
    assert "Hund anmelden" in html
    assert "Impfung 76+: Erstimpfung" in html  # the campaign's services too (phone channel)
    assert '<th scope="col">' in html
    assert '<th scope="row">' in html
    # 07:00 on Monday the 23rd, one hour's notice: 08:00 is the first free time
    assert "Montag, 23. November 2026, 08:00–08:15 Uhr" in html
    one = await web.get("/agent", params={"leistung": "hund-anmelden", "ab": "2026-11-30"})
    html = main(one.text)
    assert "Nächste freie Termine: Hund anmelden" in html
    starts = re.findall(r'name="start" value="([^"]+)"', html)
    assert starts[0] == "2026-11-30T08:00:00+01:00"
    assert len(starts) == 10
    # every service from a day on: each one's first time on or after it
    every = await web.get("/agent", params={"ab": "2026-11-30"})
    starts = re.findall(r'name="start" value="([^"]+)"', main(every.text))
    assert len(starts) >= 8
    assert min(starts)[:10] == "2026-11-30"
    english = await web.get("/agent?lang=en")
    assert "Next free times of every service" in english.text
    assert '<html lang="en">' in english.text


async def test_book_for_a_caller_without_email(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    booked = await book_by_phone(
        web, **{"citizen.name": "Hildegard Krause", "citizen.birth_date": "17.05.1941",
                "citizen.phone": "03935 123456"},
    )  # fmt: skip
    assert booked.status_code == 303, booked.text
    target = booked.headers["location"]
    assert re.fullmatch(r"/agent/buchung/[0-9A-Z]{4}-[0-9A-Z]{4}\?erledigt=gebucht", target)
    booking = await only_booking(core)
    assert (booking.channel, booking.status) == ("phone", "confirmed")
    assert booking.attendee_birth_date == date(1941, 5, 17)
    assert booking.created_by == agent[0]
    shown = await web.get(target)
    html = main(shown.text)
    assert codes.format_reference(booking.reference) in html
    assert codes.spell(booking.reference) in html  # the API's spelled_reference
    assert "kein E-Mail – telefonisch informieren" in html
    assert 'role="status"' in html
    assert "Der Termin ist gebucht" in html
    assert "Montag, 30. November 2026, 09:00–09:15 Uhr" in html


async def test_book_for_a_caller_with_a_contact_email(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    booked = await book_by_phone(
        web, **{"citizen.name": "Hildegard Krause", "citizen.phone": "03935 123456",
                "contact.name": "Petra Krause", "contact.email": "petra@example.org",
                "language": "en", "consent": "1"},
    )  # fmt: skip
    assert booked.status_code == 303, booked.text
    booking = await only_booking(core)
    assert (booking.contact_name, booking.contact_email) == ("Petra Krause", "petra@example.org")
    assert (booking.language, booking.consent) == ("en", True)
    shown = await web.get(booked.headers["location"])
    assert "per E-Mail an petra@example.org" in shown.text
    assert "telefonisch informieren" not in shown.text


async def test_mistakes_in_the_booking_form_keep_the_time(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    wrong = await book_by_phone(
        web, **{"citizen.name": "", "citizen.email": "nicht-gültig",
                "contact.email": "petra@example.org", "citizen.birth_date": "31.02.1941"},
    )  # fmt: skip
    assert wrong.status_code == 422
    html = main(wrong.text)
    for field in ("citizen-name", "citizen-email", "contact-name", "citizen-birth_date"):
        assert f'href="#{field}"' in html, field
        assert f'id="{field}"' in html, field
    assert 'value="nicht-gültig"' in html
    assert 'aria-invalid="true"' in html
    assert "reserviert" in html  # still held: the form can be sent again
    held = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    held.pop("_csrf_token")
    fixed = await web.post(
        "/agent/termin/buchen",
        data={"_csrf_token": csrf(wrong.text), **held, "citizen.name": "Hildegard Krause",
              "citizen.phone": "03935 123456"},
        follow_redirects=False,
    )  # fmt: skip
    assert fixed.status_code == 303, fixed.text
    assert (await only_booking(core)).channel == "phone"


async def test_an_expired_hold_offers_the_next_times(
    web: Client, core: Core, clock: ManualClock, agent: tuple[str, str]
) -> None:
    taken = await post_form(
        web, "/agent", "/agent/termin", {"leistung": "hund-anmelden", "start": START}
    )
    form = await web.get(taken.headers["location"])
    held = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    clock.advance(timedelta(minutes=11))
    late = await web.post(
        "/agent/termin/buchen",
        data={**held, "_csrf_token": csrf(form.text), "citizen.name": "Erika Mustermann",
              "citizen.phone": "03935 1234"},
    )  # fmt: skip
    assert late.status_code == 409
    assert "Reservierung" in late.text or "abgelaufen" in late.text
    assert re.findall(r'name="start" value="([^"]+)"', late.text)


async def test_release_gives_the_time_back(web: Client, core: Core, agent: tuple[str, str]) -> None:
    async def free() -> int:
        rows = (
            await web.get(
                "/api/v1/services/hund-anmelden/slots",
                params={"from": "2026-11-30", "to": "2026-11-30"},
            )
        ).json()
        return next(r["free"] for r in rows if r["start"] == START)

    before = await free()
    taken = await post_form(
        web, "/agent", "/agent/termin", {"leistung": "hund-anmelden", "start": START}
    )
    assert await free() == before - 1
    form = await web.get(taken.headers["location"])
    hold_id = re.search(r'name="reservierung" value="([^"]+)"', form.text)
    assert hold_id
    released = await web.post(
        "/agent/termin/freigeben",
        data={"_csrf_token": csrf(form.text), "reservierung": hold_id.group(1)},
        follow_redirects=False,
    )
    assert released.status_code == 303
    assert await free() == before


# -- the campaign: eligibility before booking -------------------------------------------------


async def first_dose_form(web: Client) -> tuple[str, str]:
    """The check step of the campaign's first dose: (its HTML, the start)."""
    console = await web.get("/agent", params={"leistung": "impfung-erstimpfung"})
    start = re.findall(r'name="start" value="([^"]+)"', console.text)[0]
    chosen = await web.post(
        "/agent/termin",
        data={"_csrf_token": csrf(console.text), "leistung": "impfung-erstimpfung",
              "start": start},
        follow_redirects=False,
    )  # fmt: skip
    assert chosen.status_code == 303
    assert "reservierung" not in chosen.headers["location"]  # nothing held yet
    form = await web.get(chosen.headers["location"])
    assert form.status_code == 200
    return form.text, start


async def test_campaign_eligibility_is_judged_before_booking(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    html, start = await first_dose_form(web)
    assert "Voraussetzungen prüfen" in html
    assert "mindestens 76 Jahre" in html
    assert "39517" in html
    assert 'id="citizen-birth_date"' in html
    assert 'id="citizen-postcode"' in html
    assert 'id="citizen-email"' not in html  # contact details only once eligible
    base = {"_csrf_token": csrf(html), "leistung": "impfung-erstimpfung", "start": start,
            "citizen.name": "Erna Alt"}  # fmt: skip

    missing = await web.post("/agent/termin/pruefen", data=base)
    assert missing.status_code == 422
    assert 'href="#citizen-birth_date"' in missing.text
    assert 'href="#citizen-postcode"' in missing.text

    young = await web.post(
        "/agent/termin/pruefen",
        data={**base, "citizen.birth_date": "01.01.1990", "citizen.postcode": "39517"},
    )
    assert young.status_code == 403
    assert "76" in main(young.text)
    assert 'role="alert"' in young.text

    elsewhere = await web.post(
        "/agent/termin/pruefen",
        data={**base, "citizen.birth_date": "14.03.1940", "citizen.postcode": "10115"},
    )
    assert elsewhere.status_code == 403
    assert "39517" in main(elsewhere.text)
    async with core.sessions() as session:
        assert (await session.scalars(select(m.Booking))).first() is None

    eligible = await web.post(
        "/agent/termin/pruefen",
        data={**base, "citizen.birth_date": "14.03.1940", "citizen.postcode": "39517"},
    )
    assert eligible.status_code == 200, eligible.text
    html = main(eligible.text)
    assert "Voraussetzungen erfüllt" in html
    assert "86 Jahre" in html
    assert "2. Termin" in html  # the second dose is held with the first
    assert 'id="citizen-email"' in html
    held = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    held.pop("_csrf_token")
    assert held["citizen.birth_date"] == "1940-03-14"
    booked = await web.post(
        "/agent/termin/buchen",
        data={**held, "_csrf_token": csrf(eligible.text), "citizen.name": "Erna Alt",
              "citizen.phone": "03935 1234"},
        follow_redirects=False,
    )  # fmt: skip
    assert booked.status_code == 303, booked.text
    booking = await only_booking(core)
    assert booking.channel == "phone"
    assert len(booking.appointments) == 2


async def test_a_changed_birth_date_is_judged_again_at_booking(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    html, start = await first_dose_form(web)
    eligible = await web.post(
        "/agent/termin/pruefen",
        data={"_csrf_token": csrf(html), "leistung": "impfung-erstimpfung", "start": start,
              "citizen.name": "Erna Alt", "citizen.birth_date": "14.03.1940",
              "citizen.postcode": "39517"},
    )  # fmt: skip
    held = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', eligible.text))
    held.pop("_csrf_token")
    tampered = await web.post(
        "/agent/termin/buchen",
        data={**held, "_csrf_token": csrf(eligible.text), "citizen.birth_date": "1990-01-01",
              "citizen.name": "Erna Alt", "citizen.phone": "03935 1234"},
    )  # fmt: skip
    assert tampered.status_code == 403
    assert "76" in main(tampered.text)
    async with core.sessions() as session:
        assert (await session.scalars(select(m.Booking))).first() is None


# -- finding, moving, cancelling --------------------------------------------------------------


async def booked_reference(web: Client, core: Core) -> str:
    answer = await book_by_phone(
        web, **{"citizen.name": "Hildegard Krause", "citizen.birth_date": "17.05.1941",
                "citizen.phone": "03935 123456"},
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    return codes.format_reference((await only_booking(core)).reference)


async def test_search_by_code(web: Client, core: Core, agent: tuple[str, str]) -> None:
    reference = await booked_reference(web, core)
    typed = reference.lower().replace("-", "")
    found = await post_form(web, "/agent", "/agent/suche", {"art": "code", "reference": typed})
    assert found.status_code == 303
    assert found.headers["location"] == f"/agent/buchung/{reference}"
    page = await web.get(found.headers["location"])
    assert "Hildegard Krause" in page.text
    async with core.sessions() as session:
        actions = list(await session.scalars(select(m.AuditEvent.action)))
    assert "booking.lookup" in actions  # the API finder's audit event
    unknown = await post_form(
        web, "/agent", "/agent/suche", {"art": "code", "reference": "ZZZZ-ZZZZ"}
    )
    assert unknown.status_code == 303
    missing = await web.get(unknown.headers["location"])
    assert missing.status_code == 404
    assert "/agent" in missing.text
    nonsense = await post_form(web, "/agent", "/agent/suche", {"art": "code", "reference": "!!"})
    assert nonsense.status_code == 404
    empty = await post_form(web, "/agent", "/agent/suche", {"art": "code", "reference": ""})
    assert empty.status_code == 422
    assert 'href="#reference"' in empty.text


async def test_search_by_name_and_birth_date(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    reference = await booked_reference(web, core)
    found = await post_form(
        web, "/agent", "/agent/suche",
        {"art": "name", "name": "hildegard  KRAUSE", "birth_date": "17.05.1941"},
    )  # fmt: skip
    assert found.status_code == 200  # rendered at once: the name never goes into a URL
    assert found.headers["cache-control"] == "no-store"
    html = main(found.text)
    assert "1 Buchung gefunden" in html
    assert f'href="/agent/buchung/{reference}"' in html
    other = await post_form(
        web, "/agent", "/agent/suche",
        {"art": "name", "name": "Hildegard Krause", "birth_date": "1941-05-18"},
    )  # fmt: skip
    assert "Keine Buchung gefunden" in other.text
    incomplete = await post_form(web, "/agent", "/agent/suche", {"art": "name", "name": "X"})
    assert incomplete.status_code == 422
    assert 'href="#birth_date"' in incomplete.text
    # a GET of the search (the language switch of the result page) goes back to the console
    again = await web.get("/agent/suche?lang=en", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/agent?lang=en"


async def test_move_and_cancel(web: Client, core: Core, agent: tuple[str, str]) -> None:
    reference = await booked_reference(web, core)
    page = f"/agent/buchung/{reference}"
    times = await web.get(f"{page}/verschieben", params={"ab": "2026-12-01"})
    assert times.status_code == 200
    starts = re.findall(r'name="start" value="([^"]+)"', times.text)
    assert starts[0] == "2026-12-01T08:00:00+01:00"
    moved = await web.post(
        f"{page}/verschieben",
        data={"_csrf_token": csrf(times.text), "start": starts[0]},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{page}?erledigt=verschoben"
    shown = await web.get(moved.headers["location"])
    assert "Der Termin ist verschoben" in shown.text
    assert "Dienstag, 1. Dezember 2026, 08:00–08:15 Uhr" in shown.text
    booking = await only_booking(core)
    assert booking.starts_at.isoformat() == "2026-12-01T07:00:00+00:00"

    question = await web.get(f"{page}/absagen")
    assert question.status_code == 200
    assert "wirklich abgesagt" in question.text
    assert (await only_booking(core)).status == "confirmed"  # asking changes nothing
    cancelled = await web.post(
        f"{page}/absagen", data={"_csrf_token": csrf(question.text)}, follow_redirects=False
    )
    assert cancelled.status_code == 303
    assert (await only_booking(core)).status == "cancelled"
    shown = await web.get(cancelled.headers["location"])
    assert "Der Termin ist abgesagt" in shown.text
    assert "Verschieben" not in main(shown.text)
    again = await web.get(f"{page}/verschieben")
    assert "nicht mehr aktiv" in again.text


async def test_a_move_to_a_full_time_is_told(
    web: Client, core: Core, agent: tuple[str, str]
) -> None:
    reference = await booked_reference(web, core)
    page = f"/agent/buchung/{reference}"
    times = await web.get(f"{page}/verschieben", params={"ab": "2026-12-01"})
    target = re.findall(r'name="start" value="([^"]+)"', times.text)[0]
    while True:  # someone else takes every seat of the target time
        taken = await web.post(
            "/api/v1/holds", json={"service_id": "hund-anmelden", "start": target}
        )
        if taken.status_code != 201:
            break
    refused = await web.post(
        f"{page}/verschieben", data={"_csrf_token": csrf(times.text), "start": target}
    )
    assert refused.status_code == 409
    assert 'role="alert"' in refused.text
    assert (await only_booking(core)).starts_at.isoformat() == "2026-11-30T08:00:00+00:00"


async def test_the_call_back_list(web: Client, core: Core, agent: tuple[str, str]) -> None:
    """An offer from the waiting list to a person without e-mail is on the list; the agent
    accepts it for them."""
    # the campaign's one place taken; a person without e-mail joins the waiting list
    async with core.sessions() as session, session.begin():
        await session.execute(update(m.Campaign).values(places=1))
        await bump_catalog(session, core.clock.now())
    await core.refresh_catalog(force=True)
    console = await web.get("/agent", params={"leistung": "impfung-erstimpfung"})
    start = re.findall(r'name="start" value="([^"]+)"', console.text)[0]
    first, _ = await core.bookings.book(
        ["impfung-erstimpfung"], datetime.fromisoformat(start), 1,
        BookingRequest(Person("Otto Erst", None, "03935 111", date(1940, 1, 1), "39517"),
                       channel="phone"),
        Actor(), None, lambda _v: b"", series=True,
    )  # fmt: skip
    assert first is not None
    await core.waitlist.join(
        "impfung-erstimpfung",
        BookingRequest(Person("Grete Warte", None, "03935 222", date(1939, 2, 2), "39517")),
        Actor(),
    )
    await core.bookings.cancel(first.id, Actor())
    assert (await core.waitlist.run_once()).offered == 1
    console = await web.get("/agent")
    html = main(console.text)
    assert "Grete Warte" in html
    reference = re.search(r'href="/agent/buchung/([0-9A-Z-]+)"', html)
    assert reference
    page = await web.get(f"/agent/buchung/{reference.group(1)}")
    assert "Angebot für die Person annehmen" in page.text
    accepted = await web.post(
        f"/agent/buchung/{reference.group(1)}/annehmen",
        data={"_csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert accepted.status_code == 303
    shown = await web.get(accepted.headers["location"])
    assert "Das Angebot ist angenommen" in shown.text
    assert "Grete Warte" not in main((await web.get("/agent")).text)


async def test_odd_input_is_no_server_error(web: Client, agent: tuple[str, str]) -> None:
    for path in (
        "/agent?leistung=katze",
        "/agent?ab=gestern",
        "/agent?leistung=hund-anmelden&ab=2026-02-30",
        "/agent/termin?leistung=hund-anmelden&start=morgen",
        "/agent/termin?leistung=hund-anmelden",
        "/agent/buchung/%00",
        "/agent/buchung/" + "A" * 30,
        "/agent/buchung/ABCD-EFGH/verschieben?ab=x",
    ):
        answer = await web.get(path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), path
    console = await web.get("/agent")
    token = csrf(console.text)
    for action, data in (
        ("/agent/termin", {"leistung": "hund-anmelden", "start": "2026-11-30T09:00:00"}),
        ("/agent/termin", {"leistung": "hund-anmelden", "start": "2026-11-30T09:07:00+01:00"}),
        ("/agent/termin", {"leistung": "x" * 500, "start": START}),
        ("/agent/termin/pruefen", {"leistung": "impfung-erstimpfung", "start": "x"}),
        ("/agent/termin/buchen", {"leistung": "hund-anmelden", "start": START,
                                  "reservierung": "rathaus.nope", "citizen.name": "A",
                                  "citizen.phone": "03935 1"}),
        ("/agent/suche", {"art": "name", "name": "a\x00b", "birth_date": "1941-05-17"}),
        ("/agent/suche", {"art": "name", "name": "a", "birth_date": "1800-01-01"}),
    ):  # fmt: skip
        answer = await web.post(action, data={"_csrf_token": token, **data})
        assert 400 <= answer.status_code < 500, (action, data, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), action
