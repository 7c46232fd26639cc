"""Anti-bot and anti-trading through HTTP: the e-mail opt-in (a pending booking, the page the
link opens that confirms nothing by itself, the button and the API call that confirm it), and
the limits of active online bookings per contact e-mail address and phone number, across
services, including a race of concurrent bookings on PostgreSQL that cannot exceed them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from scheduler.booking import limits
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.errors import DomainError, LimitReached
from scheduler.booking.seed import bump_catalog
from scheduler.clock import ManualClock
from tests.api.test_keys import assert_problem, bearer, make_key
from tests.pages import with_csrf

Client = AsyncTestClient[Litestar]
PASSPORT = "reisepass-beantragen"  # the demo's opt-in service
START = "2026-11-30T09:00:00+01:00"
SERVICES = [  # the citizens' office's services without opt-in
    "hund-anmelden", "hund-abmelden", "kita-platz-abmelden", "meldebescheinigung",
    "wohnsitz-anmelden", "fuehrungszeugnis-beantragen", "personalausweis-beantragen",
]  # fmt: skip


async def create(
    client: Client,
    service: str = PASSPORT,
    start: str = START,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> Any:
    body.setdefault("citizen", {"name": "Erika Mustermann", "email": "erika@example.org"})
    return await client.post(
        "/api/v1/bookings", json={"service_id": service, "start": start, **body}, headers=headers
    )


async def opt_in_token(core: Core, reference: str) -> str:
    """The token of the opt-in link the message to the contact address carries."""
    async with core.sessions() as session:
        found = await session.scalar(
            select(m.Booking).where(m.Booking.reference == reference.replace("-", ""))
        )
    assert found is not None
    return core.bookings.opt_in_token_for(found)


async def status_of(core: Core, reference: str) -> str:
    async with core.sessions() as session:
        found = await session.scalar(
            select(m.Booking.status).where(m.Booking.reference == reference.replace("-", ""))
        )
    assert found is not None
    return found


# -- the e-mail opt-in ------------------------------------------------------------------------


async def test_opt_in_booking_is_pending_until_the_button_is_pressed(
    client: Client, core: Core
) -> None:
    response = await create(client)
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking["status"] == "pending"
    assert booking["pending_until"] == "2026-11-23T07:30:00+01:00"
    reference, manage = booking["reference"], booking["manage_token"]
    token = await opt_in_token(core, reference)  # the e-mail's link carries it, not the answer

    # the link from the e-mail: a page with a button; opening it (as a mail scanner does)
    # confirms nothing, however often
    for _ in range(2):
        page = await client.get(f"/buchung/{reference}/bestaetigen", params={"token": token})
        assert page.status_code == 200
        assert 'method="post"' in page.text
        assert f'action="/buchung/{reference.replace("-", "")}/bestaetigen"' in page.text
        assert "Reisepass beantragen" in page.text
        assert page.headers["cache-control"] == "no-store"
    assert await status_of(core, reference) == "pending"
    read = await client.get(f"/api/v1/bookings/{reference}", headers=bearer(manage))
    assert read.json()["status"] == "pending"
    # the manage token of the booking answer proves no address: it confirms nothing
    refused = await client.post(f"/api/v1/bookings/{reference}/confirm", headers=bearer(manage))
    assert_problem(refused, 403, "forbidden")
    pressed_with_manage = await client.post(
        f"/buchung/{reference}/bestaetigen", data=await with_csrf(client, {"token": manage})
    )
    assert pressed_with_manage.status_code == 403
    manage_page = await client.get(f"/buchung/{reference}", params={"token": manage})
    assert "/bestaetigen" not in manage_page.text  # no button: the e-mail's link confirms
    assert read.json()["pending_until"] == "2026-11-23T07:30:00+01:00"

    # a wrong token is "not found", for the page, its button and the API alike
    wrong = "x" * 43
    page = await client.get(f"/buchung/{reference}/bestaetigen", params={"token": wrong})
    assert page.status_code == 404
    posted = await client.post(
        f"/buchung/{reference}/bestaetigen", data=await with_csrf(client, {"token": wrong})
    )
    assert posted.status_code == 404
    api = await client.post(f"/api/v1/bookings/{reference}/confirm", headers=bearer(wrong))
    assert_problem(api, 404, "not_found")
    assert await status_of(core, reference) == "pending"

    pressed = await client.post(
        f"/buchung/{reference}/bestaetigen",
        data=await with_csrf(client, {"token": token}),
        follow_redirects=False,
    )
    assert pressed.status_code == 303
    assert pressed.headers["location"].startswith(f"/buchung/{reference.replace('-', '')}?")
    assert await status_of(core, reference) == "confirmed"
    # the API says the same, and a second confirmation is harmless
    again = await client.post(f"/api/v1/bookings/{reference}/confirm", headers=bearer(token))
    assert again.status_code == 200
    assert again.json()["status"] == "confirmed"
    assert "pending_until" not in again.json()
    # the link followed once more leads to the booking
    page = await client.get(
        f"/buchung/{reference}/bestaetigen", params={"token": token}, follow_redirects=False
    )
    assert page.status_code == 303


async def test_confirm_by_the_api_and_too_late(
    client: Client, core: Core, clock: ManualClock
) -> None:
    first = (await create(client)).json()
    confirmed = await client.post(
        f"/api/v1/bookings/{first['reference']}/confirm",
        headers=bearer(await opt_in_token(core, first["reference"])),
    )
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed"

    late = (
        await create(
            client, start="2026-11-30T10:00:00+01:00",
            citizen={"name": "Max Muster", "email": "max@example.org"},
        )
    ).json()  # fmt: skip
    late_token = await opt_in_token(core, late["reference"])
    clock.advance(timedelta(minutes=31))
    refused = await client.post(
        f"/api/v1/bookings/{late['reference']}/confirm",
        headers={**bearer(late_token), "Accept-Language": "en"},
    )
    body = assert_problem(refused, 410, "opt_in_expired")
    assert body["title"] == "Confirmation period over"
    page = await client.post(
        f"/buchung/{late['reference']}/bestaetigen",
        data=await with_csrf(client, {"token": late_token}),
    )
    assert page.status_code == 410
    assert "nicht rechtzeitig bestätigt" in page.text
    await core.waitlist.lapse_due()
    assert await status_of(core, late["reference"]) == "cancelled"


async def test_opt_in_needs_an_e_mail_address(client: Client) -> None:
    refused = await create(client, citizen={"name": "Erika Mustermann", "phone": "0391 123456"})
    body = assert_problem(refused, 422, "validation_failed")
    [error] = body["errors"]
    assert error["field"] == "citizen.email"
    assert "E-Mail-Adresse" in error["message"]
    assert "30 Minuten" in error["message"]


async def test_agents_book_opt_in_services_confirmed(client: Client, core: Core) -> None:
    agent = await make_key(core, "agent")
    response = await client.post(
        "/api/v1/bookings",
        json={"service_id": PASSPORT, "start": START,
              "citizen": {"name": "Erika Mustermann", "phone": "0391 123456"}},
        headers=bearer(agent),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "confirmed"
    assert "pending_until" not in response.json()


async def test_openapi_documents_pending_and_the_confirm_route(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    confirm = schema["paths"]["/api/v1/bookings/{reference}/confirm"]["post"]
    assert confirm["operationId"] == "confirmBooking"
    assert "410" in confirm["responses"]
    booking = schema["components"]["schemas"]["BookingOut"]
    assert "opt-in" in str(booking["properties"]["pending_until"])
    assert "opt-in" in schema["paths"]["/api/v1/bookings"]["post"]["description"]


# -- limits per contact address -----------------------------------------------------------------


DAYS = ["2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]


def day_start(n: int) -> str:
    """Distinct starts on the office's mornings: three a day (08:00 to 10:00) from Monday."""
    return f"{DAYS[n // 3]}T{8 + n % 3:02d}:00:00+01:00"


async def test_one_address_books_at_most_six_across_services(client: Client) -> None:
    trader = {"name": "Hans Händler", "email": "haendler@example.org"}
    for n, service in enumerate(SERVICES[:6]):
        response = await create(
            client,
            service,
            day_start(n + 3),
            citizen={"name": f"Erfundene Person {n}"},
            contact=trader,
        )
        assert response.status_code == 201, response.text  # fmt: skip
    refused = await create(client, SERVICES[6], day_start(10),
                           citizen={"name": "Noch Jemand"}, contact=trader)  # fmt: skip
    body = assert_problem(refused, 409, "limit_reached")
    assert body["reason"] == "email"
    assert body["limit"] == 6
    assert "E-Mail-Adresse" in body["detail"]
    # the same mailbox with a +tag or in capitals is the same address
    for alias in ("haendler+1@example.org", " HAENDLER@Example.org"):
        again = await create(client, SERVICES[6], day_start(10),
                             citizen={"name": "Noch Jemand", "email": alias})  # fmt: skip
        assert_problem(again, 409, "limit_reached")
    # another address is not affected
    other = await create(client, SERVICES[6], day_start(10),
                         citizen={"name": "Erika", "email": "erika@example.org"})  # fmt: skip
    assert other.status_code == 201


async def test_cancelled_and_past_bookings_do_not_count(
    client: Client, core: Core, clock: ManualClock
) -> None:
    contact = {"name": "Mutter", "phone": "0391 7654321"}
    made = []
    for n in range(6):
        response = await create(client, "hund-anmelden", day_start(n),
                                citizen={"name": f"Kind {n}"}, contact=contact)  # fmt: skip
        assert response.status_code == 201, response.text
        made.append(response.json())
    refused = await create(client, "hund-anmelden", day_start(6), citizen={"name": "Kind 6"},
                           contact={**contact, "phone": "+49 391 7654321"},
                           headers={"Accept-Language": "en"})  # fmt: skip
    body = assert_problem(refused, 409, "limit_reached")
    assert body["reason"] == "phone"
    cancelled = await client.post(
        f"/api/v1/bookings/{made[5]['reference']}/cancel", headers=bearer(made[5]["manage_token"])
    )
    assert cancelled.status_code == 200
    assert (await create(client, "hund-anmelden", day_start(6), citizen={"name": "Kind 6"},
                         contact=contact)).status_code == 201  # fmt: skip
    assert_problem(
        await create(client, "hund-anmelden", day_start(7), citizen={"name": "Kind 7"},
                     contact=contact),
        409, "limit_reached",
    )  # fmt: skip
    # Monday's appointments are over on Tuesday at noon: they no longer count
    clock.set(datetime(2026, 12, 1, 11, 0, tzinfo=UTC))
    later = await create(client, "hund-anmelden", "2026-12-03T10:00:00+01:00",
                         citizen={"name": "Kind 7"}, contact=contact)  # fmt: skip
    assert later.status_code == 201, later.text


async def test_agents_phone_bookings_are_not_limited(client: Client, core: Core) -> None:
    """A care home phones the hotline for its residents from one number."""
    agent = await make_key(core, "agent")
    for n in range(8):
        response = await client.post(
            "/api/v1/bookings",
            json={"service_id": "hund-anmelden", "start": day_start(n),
                  "citizen": {"name": f"Bewohner {n}"},
                  "contact": {"name": "Pflegeheim", "phone": "0391 5555555"}},
            headers=bearer(agent),
        )  # fmt: skip
        assert response.status_code == 201, response.text
    # and they do not use up the number's online limit either
    online = await create(client, "hund-anmelden", day_start(8), citizen={"name": "Bewohner 8"},
                          contact={"name": "Pflegeheim", "phone": "0391 5555555"})  # fmt: skip
    assert online.status_code == 201, online.text


async def test_a_limit_of_zero_switches_it_off(core: Core) -> None:
    await set_limit(core, 0)
    monday = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    for n in range(8):
        request = BookingRequest(Person(f"Person {n}"), Person("Verein", "verein@example.org"))
        view, _ = await core.bookings.book(
            ["hund-anmelden"], monday + timedelta(minutes=15 * n), 1, request, Actor(), None,
            render,
        )  # fmt: skip
        assert view is not None


async def set_limit(core: Core, limit: int) -> None:
    async with core.sessions() as session, session.begin():
        await session.execute(update(m.Location).values(max_active_per_email=limit))
        await bump_catalog(session, core.clock.now())
    await core.refresh_catalog(force=True)


# -- the race -------------------------------------------------------------------------------------


def render(_: object) -> bytes:
    return b"{}"


async def active_claims(core: Core) -> int:
    async with core.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(m.PersonClaim)
            .join(m.Booking, m.Booking.id == m.PersonClaim.booking_id)
            .where(
                m.PersonClaim.service_id.like(f"{limits.PREFIX}%"),
                m.Booking.status.in_(limits.ACTIVE),
            )
        )
    return int(count or 0)


async def test_concurrent_bookings_of_one_address_cannot_exceed_the_limit(
    core: Core, db_url: str
) -> None:
    """Twelve bookings of one address at once, each on a connection of its own, with a limit
    of 3. The control first: every one of them reads the same free ordinal, so a check
    followed by an insert would let all twelve through; the claims' primary key lets three."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the race needs PostgreSQL (SCHEDULER_TEST_DATABASE_URL)")
    await set_limit(core, 3)
    location = core.catalog.locations["rathaus"]
    keys = limits.contact_keys(core.secret_key, location, "race@example.org", None)
    picks = await asyncio.gather(*(limits.pick(core.engine, keys, core.clock.now())
                                   for _ in range(12)))  # fmt: skip
    assert len({tuple(p) for p in picks}) == 1  # the race is real: all see ordinal 1 free

    monday = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
    starts = [monday + timedelta(days=d // 6, minutes=30 * (d % 6)) for d in range(12)]

    async def one(n: int) -> str:
        request = BookingRequest(Person(f"Erfunden {n}"), Person("Bot", "race@example.org"))
        try:
            view, _ = await core.bookings.book(
                ["hund-anmelden"], starts[n], 1, request, Actor(), None, render
            )
        except DomainError as exc:
            return exc.code
        assert view is not None
        return view.status

    outcomes = await asyncio.gather(*(one(n) for n in range(12)))
    assert set(outcomes) <= {"confirmed", "limit_reached"}
    assert 1 <= outcomes.count("confirmed") <= 3
    assert await active_claims(core) == outcomes.count("confirmed")
    # what the race left is filled up to exactly the limit, and no further
    made = outcomes.count("confirmed")
    while await active_claims(core) < 3:
        request = BookingRequest(Person(f"Nachzügler {made}"), Person("Bot", "race@example.org"))
        await core.bookings.book(["hund-abmelden"], starts[made], 1, request, Actor(), None, render)
        made += 1
    request = BookingRequest(Person("Zu viel"), Person("Bot", "race@example.org"))
    with pytest.raises(LimitReached):
        await core.bookings.book(
            ["meldebescheinigung"], starts[0], 1, request, Actor(), None, render
        )
    assert await active_claims(core) == 3
