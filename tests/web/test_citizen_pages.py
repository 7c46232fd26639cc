"""The citizens' pages through the real app (no browser): each step, the one booking path, CSRF,
a lost race and an expired hold, the campaign's form, languages. The browser tests
(``tests/e2e``) walk the same flow in Chromium."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from tests.api.test_keys import make_key
from tests.booking.test_contingents import ELDER, MONDAY, budgets, local
from tests.pages import with_csrf

Client = AsyncTestClient[Litestar]
DAY = "2026-11-30"
START = "2026-11-30T09:00:00+01:00"


def csrf(html: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


def main(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


async def free(client: Client, start: str = START) -> int:
    rows = (
        await client.get("/api/v1/services/hund-anmelden/slots", params={"from": DAY, "to": DAY})
    ).json()
    return next((r["free"] for r in rows if r["start"] == start), 0)


async def hold_on_page(client: Client, start: str = START) -> Any:
    page = await client.get(f"/termine/hund-anmelden/tag/{DAY}")
    assert page.status_code == 200
    return await client.post(
        "/termine/hund-anmelden/reservieren",
        data={"_csrf_token": csrf(page.text), "start": start},
        follow_redirects=False,
    )


async def test_home_lists_what_citizens_can_book(client: Client) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    html = main(page.text)
    assert "Hund anmelden" in html
    assert 'href="/termine/hund-anmelden"' in html
    assert "impfung-erstimpfung" in html  # the campaign's first dose …
    assert "impfung-zweitimpfung" not in html  # … books the second with it
    assert '<html lang="de">' in page.text


async def test_language_switch_is_kept(client: Client) -> None:
    english = await client.get("/?lang=en")
    assert '<html lang="en">' in english.text
    assert "Book an appointment" in english.text
    assert "lang=en" in english.headers["set-cookie"]
    again = await client.get("/termine/hund-anmelden")
    assert "Choose a day" in again.text
    back = await client.get("/?lang=de")
    assert "Termin buchen" in back.text


async def test_book_through_the_pages(client: Client, core: Core) -> None:
    days = await client.get("/termine/hund-anmelden")
    assert f"/termine/hund-anmelden/tag/{DAY}" in days.text
    assert "Montag, 30. November 2026" in days.text
    before = await free(client)
    held = await hold_on_page(client)
    assert held.status_code == 303
    target = held.headers["location"]
    assert target.startswith("/termine/hund-anmelden/angaben?")
    assert await free(client) == before - 1  # held while the form is filled in

    form = await client.get(target)
    assert form.status_code == 200
    assert "für Sie reserviert" in form.text
    assert "07:10 Uhr" in form.text
    query = parse_qs(urlsplit(target).query)
    fields = {
        "_csrf_token": csrf(form.text),
        "start": query["start"][0],
        "reservierung": query["reservierung"][0],
        "bis": query["bis"][0],
    }
    # mistakes: every one told next to its field, what was typed is kept, nothing booked
    wrong = await client.post(
        "/termine/hund-anmelden/angaben",
        data={**fields, "citizen.name": "", "citizen.email": "nicht-gültig"},
    )
    assert wrong.status_code == 422
    html = main(wrong.text)
    assert 'href="#citizen-name"' in html
    assert 'href="#citizen-email"' in html
    assert 'value="nicht-gültig"' in html
    assert 'aria-invalid="true"' in html
    assert await free(client) == before - 1

    booked = await client.post(
        "/termine/hund-anmelden/angaben",
        data={**fields, "citizen.name": "Erika Mustermann", "citizen.email": "erika@example.org"},
        follow_redirects=False,
    )
    assert booked.status_code == 303
    manage = booked.headers["location"]
    assert re.match(r"^/buchung/[A-Z0-9]+\?token=[^&]+&neu=1$", manage)
    assert await free(client) == before - 1  # the held seat became the booking's
    async with core.sessions() as session:
        rows = (await session.scalars(select(m.Booking))).all()
    assert [(b.attendee_name, b.status, b.channel) for b in rows] == [
        ("Erika Mustermann", "confirmed", "online")
    ]
    shown = await client.get(manage)
    assert shown.status_code == 200
    assert "Hund anmelden" in shown.text


async def test_forms_need_the_csrf_token(client: Client, core: Core) -> None:
    await client.get("/")
    before = await free(client)
    refused = await client.post(
        "/termine/hund-anmelden/reservieren", data={"start": START}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert "Das Formular ist abgelaufen" in refused.text
    assert refused.headers["content-type"].startswith("text/html")
    forged = await client.post(
        "/termine/hund-anmelden/reservieren",
        data={"start": START, "_csrf_token": "0" * 128},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert await free(client) == before


async def test_a_lost_race_offers_the_next_free_times(client: Client) -> None:
    taken = await client.get(f"/termine/hund-anmelden/tag/{DAY}")
    token = csrf(taken.text)
    for _ in range(await free(client)):  # someone else takes every seat of 09:00
        response = await client.post(
            "/api/v1/holds", json={"service_id": "hund-anmelden", "start": START}
        )
        assert response.status_code == 201
    lost = await client.post(
        "/termine/hund-anmelden/reservieren", data={"_csrf_token": token, "start": START}
    )
    assert lost.status_code == 409
    html = main(lost.text)
    assert "gerade vergeben" in html
    offered = re.findall(r'name="start" value="([^"]+)"', html)
    assert offered
    assert START not in offered
    assert offered[0] == "2026-11-30T09:15:00+01:00"  # the very next free time
    assert 'action="/termine/hund-anmelden/reservieren"' in html  # one click takes it


async def test_an_expired_hold_offers_the_next_free_times(
    client: Client, clock: ManualClock
) -> None:
    held = await hold_on_page(client)
    target = held.headers["location"]
    form = await client.get(target)
    query = parse_qs(urlsplit(target).query)
    clock.advance(timedelta(minutes=11))
    late = await client.post(
        "/termine/hund-anmelden/angaben",
        data={
            "_csrf_token": csrf(form.text),
            "start": query["start"][0],
            "reservierung": query["reservierung"][0],
            "citizen.name": "Erika Mustermann",
            "citizen.email": "erika@example.org",
        },
    )
    assert late.status_code == 409
    assert "abgelaufen" in late.text
    assert re.findall(r'name="start" value="([^"]+)"', late.text)


async def test_release_gives_the_time_back(client: Client) -> None:
    before = await free(client)
    held = await hold_on_page(client)
    target = held.headers["location"]
    form = await client.get(target)
    hold_id = parse_qs(urlsplit(target).query)["reservierung"][0]
    released = await client.post(
        "/termine/hund-anmelden/freigeben",
        data={"_csrf_token": csrf(form.text), "reservierung": hold_id},
        follow_redirects=False,
    )
    assert released.status_code == 303
    assert await free(client) == before


async def test_campaign_form_asks_for_eligibility(client: Client, core: Core) -> None:
    days = await client.get("/termine/impfung-erstimpfung")
    assert days.status_code == 200
    first_day = re.search(r"/termine/impfung-erstimpfung/tag/([\d-]+)", days.text)
    assert first_day
    times = await client.get(f"/termine/impfung-erstimpfung/tag/{first_day.group(1)}")
    start = re.findall(r'name="start" value="([^"]+)"', times.text)[0]
    chosen = await client.post(
        "/termine/impfung-erstimpfung/reservieren",
        data={"_csrf_token": csrf(times.text), "start": start},
        follow_redirects=False,
    )
    assert chosen.status_code == 303  # nothing held before eligibility is known
    form = await client.get(chosen.headers["location"])
    assert 'id="citizen-birth_date"' in form.text
    assert 'id="citizen-postcode"' in form.text
    fields = {"_csrf_token": csrf(form.text), "start": start, "citizen.name": "Erna Alt",
              "citizen.phone": "03935 1234"}  # fmt: skip
    missing = await client.post("/termine/impfung-erstimpfung/angaben", data=fields)
    assert missing.status_code == 422
    assert 'href="#citizen-birth_date"' in missing.text
    young = await client.post(
        "/termine/impfung-erstimpfung/angaben",
        data={**fields, "citizen.birth_date": "01.01.1990", "citizen.postcode": "39517"},
    )
    assert young.status_code == 403
    assert "Voraussetzungen" in young.text or "76" in young.text
    booked = await client.post(
        "/termine/impfung-erstimpfung/angaben",
        data={**fields, "citizen.birth_date": "14.03.1940", "citizen.postcode": "39517"},
        follow_redirects=False,
    )
    assert booked.status_code == 303, booked.text
    async with core.sessions() as session:
        appointments = await session.scalar(select(func.count()).select_from(m.Appointment))
    assert appointments == 2  # first and second dose


async def test_unknown_things_are_pages_not_errors(client: Client) -> None:
    for path in (
        "/termine/katze",
        "/termine/impfung-zweitimpfung",
        "/termine/hund-anmelden/tag/2026-13-45",
        "/termine/hund-anmelden?ab=gestern",
        "/termine/hund-anmelden/angaben?start=morgen",
        "/gibtsnicht",  # no route at all: a page too, outside the API
        "/agent/gibtsnicht",
        "/static/nichts.css",
    ):
        response = await client.get(path)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.headers["content-type"].startswith("text/html"), path
        assert "<h1>" in response.text
    # the API's paths answer problems, as before
    for path in ("/api/v1/gibtsnicht", "/api/gibtsnicht"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json", path
    wrong_method = await client.delete("/")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"].startswith("text/html")


async def test_an_opt_in_booking_waits_for_the_e_mails_link(client: Client, core: Core) -> None:
    """The passport service asks for an e-mail opt-in: the confirmation page says to check the
    mail and has no button; the mail's link (its own token) confirms, the manage token cannot."""
    days = await client.get("/termine/reisepass-beantragen")
    day = re.search(r"/termine/reisepass-beantragen/tag/([\d-]+)", days.text)
    assert day
    times = await client.get(f"/termine/reisepass-beantragen/tag/{day.group(1)}")
    start = re.findall(r'name="start" value="([^"]+)"', times.text)[0]
    held = await client.post(
        "/termine/reisepass-beantragen/reservieren",
        data={"_csrf_token": csrf(times.text), "start": start},
        follow_redirects=False,
    )
    query = parse_qs(urlsplit(held.headers["location"]).query)
    fields = {
        "_csrf_token": csrf(times.text),
        "start": query["start"][0],
        "reservierung": query["reservierung"][0],
        "citizen.name": "Erika Mustermann",
    }
    no_mail = await client.post(
        "/termine/reisepass-beantragen/angaben", data={**fields, "citizen.phone": "03935 1234"}
    )
    assert no_mail.status_code == 422  # the opt-in needs an address (the time stays held)
    assert 'href="#citizen-email"' in no_mail.text
    booked = await client.post(
        "/termine/reisepass-beantragen/angaben",
        data={**fields, "citizen.email": "erika@example.org"},
        follow_redirects=False,
    )
    assert booked.status_code == 303, booked.text
    shown = await client.get(booked.headers["location"])
    assert "Fast geschafft" in shown.text
    assert "/bestaetigen" not in shown.text
    async with core.sessions() as session:
        booking = (await session.scalars(select(m.Booking))).one()
    assert booking.status == "pending"
    link = f"/buchung/{booking.reference}/bestaetigen"
    opt_in = core.bookings.opt_in_token_for(booking)
    page = await client.get(link, params={"token": opt_in})
    assert page.status_code == 200
    assert f'action="{link}"' in page.text
    pressed = await client.post(
        link, data={"_csrf_token": csrf(page.text), "token": opt_in}, follow_redirects=False
    )
    assert pressed.status_code == 303
    assert core.bookings.token_for(booking) in pressed.headers["location"]
    after = await client.get(pressed.headers["location"])
    assert "Ihr Termin ist bestätigt" in after.text
    async with core.sessions() as session:
        assert (await session.scalars(select(m.Booking.status))).one() == "confirmed"


async def test_a_citizen_moves_a_phone_booking_within_the_online_share(
    client: Client, core: Core
) -> None:
    """The manage page moves a booking online, whoever made it: a series the hotline booked
    cannot take the hotline's seats of a day whose online share is used up."""
    agent = {"Authorization": f"Bearer {await make_key(core, 'agent')}"}
    caller = {"name": "Karl Alt", "birth_date": "1939-05-05", "postcode": "39517",
              "phone": "+49 3935 1111"}  # fmt: skip
    booked = await client.post(
        "/api/v1/bookings",
        json={"service_id": "impfung-erstimpfung", "series": True, "citizen": caller,
              "start": local(MONDAY, 8).isoformat()},
        headers=agent,
    )  # fmt: skip
    assert booked.status_code == 201, booked.text
    reference, token = booked.json()["reference"], booked.json()["manage_token"]
    starts = [local(MONDAY, 8, 10) + timedelta(minutes=10 * n) for n in range(23)]
    starts += [local(MONDAY, 12, 30) + timedelta(minutes=10 * n) for n in range(33)]
    for start in starts[:44]:  # the day's online share, all of it
        await core.bookings.hold(["impfung-erstimpfung"], start, 1, "online", citizen=ELDER)
    assert set((await budgets(core, ["impflinie-1", "impflinie-2"], MONDAY)).values()) == {0}

    target = local(MONDAY, 17).isoformat()  # seats free, but only the hotline's
    moved = await client.post(
        f"/buchung/{reference}/verschieben",
        data=await with_csrf(client, {"token": token, "start": target}),
        follow_redirects=False,
    )
    assert moved.status_code == 409, moved.text
    assert "gerade vergeben worden" in moved.text
    after = await client.get(f"/api/v1/bookings/{reference}", headers=agent)
    assert after.json()["start"] == local(MONDAY, 8).isoformat()


async def switched(client: Client, html: str) -> str:
    """Follow a page's language switch: the page in the other language."""
    found = re.search(r'<a class="lang" href="([^"]+)"', html)
    assert found, "no language switch"
    link = found.group(1).replace("&amp;", "&")
    other = parse_qs(urlsplit(link).query)["lang"][0]
    response = await client.get(link)
    assert response.status_code == 200, (link, response.status_code, response.text[:300])
    assert f'<html lang="{other}">' in response.text
    return response.text


async def test_the_language_switch_of_a_forms_answer_is_a_page(client: Client) -> None:
    """A page that answers a form (a lost race, mistakes in the details, a move to a taken
    time) switches its language by GET to the page that shows the same: never a 405 or 400."""
    taken = await client.get(f"/termine/hund-anmelden/tag/{DAY}")
    token = csrf(taken.text)
    for _ in range(await free(client)):
        await client.post("/api/v1/holds", json={"service_id": "hund-anmelden", "start": START})
    lost = await client.post(
        "/termine/hund-anmelden/reservieren", data={"_csrf_token": token, "start": START}
    )
    assert lost.status_code == 409
    assert "Choose a day" in await switched(client, lost.text)  # back to the days

    held = await hold_on_page(client, "2026-11-30T10:00:00+01:00")
    query = parse_qs(urlsplit(held.headers["location"]).query)
    form = await client.get(held.headers["location"])
    wrong = await client.post(
        "/termine/hund-anmelden/angaben",
        data={"_csrf_token": csrf(form.text), "start": query["start"][0],
              "reservierung": query["reservierung"][0], "bis": query["bis"][0],
              "citizen.name": ""},
    )  # fmt: skip
    assert wrong.status_code == 422
    assert query["reservierung"][0] in await switched(client, wrong.text)  # still held

    booked = await client.post(
        "/api/v1/bookings",
        json={"service_id": "hund-anmelden", "start": "2026-11-30T11:00:00+01:00",
              "citizen": {"name": "Erika Mustermann", "email": "erika@example.org"}},
    )  # fmt: skip
    reference, manage = booked.json()["reference"], booked.json()["manage_token"]
    moved = await client.post(
        f"/buchung/{reference}/verschieben",
        data=await with_csrf(client, {"token": manage, "start": START}),
    )
    assert moved.status_code == 409
    await switched(client, moved.text)


async def test_a_persons_series_tries_are_limited_as_in_the_api(client: Client) -> None:
    """The campaign's form books in one step; its tries count per person (10 in 10 minutes),
    not only per address (30 a minute), as the API's holds do."""
    times = await client.get("/termine/impfung-erstimpfung/tag/2026-11-30")
    start = re.findall(r'name="start" value="([^"]+)"', times.text)[0]
    fields = {"_csrf_token": csrf(times.text), "start": start, "citizen.name": "Erna Alt",
              "citizen.phone": "03935 1234", "citizen.birth_date": "01.01.1990",
              "citizen.postcode": "39517"}  # fmt: skip
    answers = [
        (await client.post("/termine/impfung-erstimpfung/angaben", data=fields)).status_code
        for _ in range(11)
    ]
    assert answers == [403] * 10 + [429]  # too young, ten times; then too many tries
