"""Abuse limits on anonymous routes through the HTTP API: holds per address and per person,
failed manage and feed token look-ups per address (429 ``rate_limited`` with ``Retry-After``),
never for API keys, switched off by ``rate_limits=False``, and no harm when Redis is down.

The test client's address is ``testclient``; ``From`` sends the same client's requests from
another address (a test-only header the wrapped app turns into the connection's address).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from scheduler.app import create_app
from scheduler.booking import apikeys
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from scheduler.redisproc import RedisServer
from scheduler.settings import Settings
from tests.pages import with_csrf

Client = AsyncTestClient[Litestar]
DAY = "2026-11-30"
STARTS = [f"{DAY}T09:{minute:02d}:00+01:00" for minute in (0, 15, 30, 45)] + [
    f"{DAY}T10:{minute:02d}:00+01:00" for minute in (0, 15, 30, 45)
]
ERIKA = {"name": "Erika Mustermann", "email": "erika@example.org"}
SMALL = {
    "rate_limit_holds_per_address": (3, 60),
    "rate_limit_holds_per_person": (2, 600),
    "rate_limit_token_failures_per_address": (3, 600),
}


class From:
    """The test client as seen from another address (the app reads the ``X-Test-Client``
    header that ``_clients`` turns into the connection's client address)."""

    def __init__(self, client: Client, address: str) -> None:
        self.client = client
        self.address = address

    async def get(self, url: str, **options: Any) -> httpx.Response:
        return await self.client.get(url, headers=self._headers(options), **options)

    async def post(self, url: str, **options: Any) -> httpx.Response:
        return await self.client.post(url, headers=self._headers(options), **options)

    def _headers(self, options: dict[str, Any]) -> dict[str, str]:
        return {**options.pop("headers", {}), "X-Test-Client": self.address}


def _addressable(app: Litestar) -> Litestar:
    """Let a request choose its client address with ``X-Test-Client`` (the test client's own
    is always ``testclient``)."""
    inner = app.asgi_handler

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        for name, value in scope.get("headers", []):
            if name == b"x-test-client":
                scope["client"] = (value.decode(), 40000)
        await inner(scope, receive, send)

    app.asgi_handler = handler  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def _clients(
    settings: Settings, clock: ManualClock, **changes: Any
) -> AsyncIterator[tuple[Client, From]]:
    """The app with ``changes`` to the settings: the test client (address ``testclient``) and
    the same client from 203.0.113.9."""
    app = create_app(
        msgspec.structs.replace(settings, **changes), clock=clock, prepared=True, run_jobs=False
    )
    async with AsyncTestClient(app=_addressable(app)) as client:
        yield client, From(client, "203.0.113.9")


@pytest.fixture
async def clients(
    settings: Settings, clock: ManualClock, core: Core
) -> AsyncIterator[tuple[Client, From]]:
    async with _clients(settings, clock, **SMALL) as pair:
        yield pair


@pytest.fixture
async def unlimited(
    settings: Settings, clock: ManualClock, core: Core
) -> AsyncIterator[tuple[Client, From]]:
    async with _clients(settings, clock, rate_limits=False, **SMALL) as pair:
        yield pair


async def api_key(core: Core, role: str) -> dict[str, str]:
    async with core.sessions() as session, session.begin():
        _, secret = await apikeys.create_key(
            session, role=role, name=role, calendar_ids=[],
            known_calendars=set(core.catalog.calendars), now=core.clock.now(),
        )  # fmt: skip
    return {"Authorization": f"Bearer {secret}"}


def hold_body(start: str, **extra: Any) -> dict[str, Any]:
    return {"service_id": "hund-anmelden", "start": start, **extra}


async def free(client: Client | From) -> dict[str, int]:
    rows = (
        await client.get("/api/v1/services/hund-anmelden/slots", params={"from": DAY, "to": DAY})
    ).json()
    return {r["start"]: r["free"] for r in rows}


def assert_rate_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "rate_limited"
    assert problem["status"] == 429
    retry = int(response.headers["retry-after"])
    assert retry >= 1
    assert str(retry) in problem["detail"]
    return retry


# -- holds --------------------------------------------------------------------------------------


async def test_holds_per_address(
    clients: tuple[Client, From], core: Core, clock: ManualClock
) -> None:
    client, other = clients
    for start in STARTS[:3]:
        held = await client.post("/api/v1/holds", json=hold_body(start))
        assert held.status_code == 201, held.text
    before = await free(client)
    refused = await client.post("/api/v1/holds", json=hold_body(STARTS[3]))
    assert assert_rate_limited(refused) == 60
    assert refused.json()["title"] == "Zu viele Anfragen"
    assert await free(client) == before  # nothing was held for it
    assert before[STARTS[3]] == 3
    english = await client.post(
        "/api/v1/holds", json=hold_body(STARTS[3]), headers={"Accept-Language": "en"}
    )
    assert assert_rate_limited(english) == 60
    assert english.json()["title"] == "Too many requests"
    # one-step bookings hold too: refused from this address as well
    one_step = await client.post("/api/v1/bookings", json=hold_body(STARTS[3], citizen=ERIKA))
    assert_rate_limited(one_step)
    # another address is not affected
    elsewhere = await other.post("/api/v1/holds", json=hold_body(STARTS[3]))
    assert elsewhere.status_code == 201, elsewhere.text
    # an agent key is never limited (from the blocked address)
    agent = await api_key(core, "agent")
    for start in STARTS[4:8]:
        by_agent = await client.post("/api/v1/holds", json=hold_body(start), headers=agent)
        assert by_agent.status_code == 201, by_agent.text
    # confirming a hold creates no new hold: not limited
    confirmed = await other.post(
        "/api/v1/bookings", json={"hold_id": elsewhere.json()["hold_id"], "citizen": ERIKA}
    )
    assert confirmed.status_code == 201, confirmed.text
    # the window ends: the address may hold again
    clock.advance(timedelta(seconds=30))
    assert assert_rate_limited(await client.post("/api/v1/holds", json=hold_body(STARTS[3]))) == 30
    clock.advance(timedelta(seconds=30))
    again = await client.post("/api/v1/holds", json=hold_body(STARTS[3]))
    assert again.status_code == 201, again.text


async def test_one_step_bookings_per_person(clients: tuple[Client, From]) -> None:
    client, other = clients
    first = await client.post("/api/v1/bookings", json=hold_body(STARTS[0], citizen=ERIKA))
    assert first.status_code == 201, first.text
    # the second attempt passes the limiter (the per-person booking rules may refuse it)
    second = await other.post("/api/v1/bookings", json=hold_body(STARTS[1], citizen=ERIKA))
    assert second.status_code != 429, second.text
    # the same person, written differently and from another address: still the same person
    same = {"name": "Erika Mustermann", "email": "  ERIKA@Example.ORG "}
    third = await other.post("/api/v1/bookings", json=hold_body(STARTS[2], citizen=same))
    assert_rate_limited(third)
    # someone else from the same address books fine
    max_ = {"name": "Max Meier", "phone": "0391 1234567"}
    fourth = await other.post("/api/v1/bookings", json=hold_body(STARTS[3], citizen=max_))
    assert fourth.status_code == 201, fourth.text


# -- manage tokens ------------------------------------------------------------------------------


async def _booking(client: Client | From, core: Core) -> tuple[str, str]:
    agent = await api_key(core, "agent")
    created = await client.post(
        "/api/v1/bookings",
        json=hold_body(STARTS[0], citizen=ERIKA),
        headers=agent,
    )
    assert created.status_code == 201, created.text
    return created.json()["reference"], created.json()["manage_token"]


async def test_wrong_manage_tokens_block_the_address(
    clients: tuple[Client, From], core: Core, clock: ManualClock
) -> None:
    client, other = clients
    reference, token = await _booking(client, core)
    url = f"/api/v1/bookings/{reference}"
    bearer = {"Authorization": f"Bearer {token}"}
    for _ in range(5):  # the right token never counts
        ok = await client.get(url, headers=bearer)
        assert ok.status_code == 200, ok.text
    wrong = await client.get(url, headers={"Authorization": "Bearer guessed-token"})
    assert wrong.status_code == 404
    missing = await client.get("/api/v1/bookings/ZZZZ-ZZZZ", headers=bearer)
    assert missing.status_code == 404  # no such booking counts as well
    ics = await client.get(f"{url}/calendar.ics", params={"token": "guessed"})
    assert ics.status_code == 404
    # three failures: now even the right token is refused from this address, everywhere
    right = await client.get(url, headers=bearer)
    assert assert_rate_limited(right) == 600
    assert right.json() != wrong.json()
    assert_rate_limited(await client.get(f"{url}/calendar.ics", params={"token": token}))
    assert_rate_limited(await client.post(f"{url}/cancel", headers=bearer))
    page = await client.get(f"/buchung/{reference}", params={"token": token})
    assert page.status_code == 429
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "600"
    assert "Zu viele Versuche" in page.text
    assert "10 Minuten" in page.text
    page_cancel = await client.post(
        f"/buchung/{reference}/absagen",
        data=await with_csrf(client, {"token": token}),
        follow_redirects=False,
    )
    assert page_cancel.status_code == 429
    # another address still works; an agent key from the blocked address too
    assert (await other.get(url, headers=bearer)).status_code == 200
    agent = await api_key(core, "agent")
    assert (await client.get(url, headers=agent)).status_code == 200
    # the booking was not touched by the refused cancellations
    assert (await other.get(url, headers=bearer)).json()["status"] == "confirmed"
    # the window ends
    clock.advance(timedelta(seconds=599))
    assert assert_rate_limited(await client.get(url, headers=bearer)) == 1
    clock.advance(timedelta(seconds=1))
    assert (await client.get(url, headers=bearer)).status_code == 200


async def test_wrong_manage_page_links_count_too(clients: tuple[Client, From], core: Core) -> None:
    client, other = clients
    reference, token = await _booking(other, core)
    for _ in range(3):
        page = await client.get(f"/buchung/{reference}", params={"token": "guessed"})
        assert page.status_code == 404
        assert "nicht gefunden" in page.text.lower()
    blocked = await client.get(f"/buchung/{reference}", params={"token": token})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) == 600
    shown = await other.get(f"/buchung/{reference}", params={"token": token})
    assert shown.status_code == 200
    assert "Ihr Termin" in shown.text


async def test_wrong_feed_tokens_block_wrong_tokens_only(
    clients: tuple[Client, From], core: Core
) -> None:
    client, other = clients
    admin = await api_key(core, "admin")
    created = await client.post(
        "/api/v1/feeds", json={"calendar_id": "sachbearbeitung-1"}, headers=admin
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    url = "/api/v1/calendars/sachbearbeitung-1/feed.ics"
    assert (await client.get(url, params={"token": token})).status_code == 200  # now cached
    for wrong in ("ft_nope", "ft_guess", ""):
        assert (await client.get(url, params={"token": wrong})).status_code == 404
    assert_rate_limited(await client.get(url, params={"token": "ft_more"}))
    # a valid feed token still passes: calendar services poll many feeds from one address
    assert (await client.get(url, params={"token": token})).status_code == 200
    assert (await other.get(url, params={"token": "ft_nope"})).status_code == 404


# -- switched off, Redis down -------------------------------------------------------------------


async def test_switched_off_nothing_is_limited(unlimited: tuple[Client, From], core: Core) -> None:
    client, _ = unlimited
    for start in STARTS:
        held = await client.post("/api/v1/holds", json=hold_body(start))
        assert held.status_code == 201, held.text
    reference, token = await _booking(client, core)
    for _ in range(10):
        wrong = await client.get(
            f"/api/v1/bookings/{reference}", headers={"Authorization": "Bearer guessed"}
        )
        assert wrong.status_code == 404
    right = await client.get(
        f"/api/v1/bookings/{reference}", headers={"Authorization": f"Bearer {token}"}
    )
    assert right.status_code == 200
    assert await core.redis.keys("rl:*") == []


async def test_redis_down_the_limiter_breaks_nothing(
    clients: tuple[Client, From], core: Core, redis_server: RedisServer
) -> None:
    client, _ = clients
    reference, token = await _booking(client, core)
    url = f"/api/v1/bookings/{reference}"
    redis_server.kill()
    try:
        # a hold needs Redis: the gate's own 503, not an error of the limiter
        held = await client.post("/api/v1/holds", json=hold_body(STARTS[1]))
        assert held.status_code == 503, held.text
        assert held.json()["code"] == "reservation_unavailable"
        # token look-ups work from SQL; failures cannot be counted, and do not block
        for _ in range(5):
            wrong = await client.get(url, headers={"Authorization": "Bearer guessed"})
            assert wrong.status_code == 404
        right = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200, right.text
        page = await client.get(f"/buchung/{reference}", params={"token": token})
        assert page.status_code == 200
    finally:
        redis_server.start()
    await core.watch_counters()  # counters are rebuilt after the restart
    held = await client.post("/api/v1/holds", json=hold_body(STARTS[1]))
    assert held.status_code == 201, held.text
