"""Security (issue 8, part 3) against the real components: the audit table is append-only in
the database itself, every bearer secret carries at least 128 bits, feed tokens and API keys are
stored hashed, a whole run through the real server logs no secret and no personal data, a
citizen with one booking and its token cannot read, change or cancel other bookings by guessing,
and token pages are neither cached nor leaked through the Referer header.

The slow parts (a real server process; thousands of guesses) are marked ``slow``."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.app import create_app
from scheduler.booking import apikeys, codes, feeds, retention
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.db import make_engine
from scheduler.booking.errors import DomainError
from scheduler.booking.holds import new_hold_id
from scheduler.clock import ManualClock
from scheduler.settings import Settings
from tests.booking.test_contingents import clerk_starts, local
from tests.pages import CSRF_FIELD, cookie_token, csrf_token, with_csrf
from tests.serverproc import ServerProcess, minimal_env, start_server

Client = AsyncTestClient[Litestar]
MONDAY = date(2026, 11, 30)  # a week after the tests' "now"
SERVICE = "hund-anmelden"
FIRST_DOSE = "impfung-erstimpfung"


def _bits(token: str, prefix: str = "") -> bytes:
    """The random part of a token: base64url after its prefix, decoded."""
    assert token.startswith(prefix), token
    body = token[len(prefix) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def assert_at_least_128_bits(samples: list[bytes]) -> None:
    """Every sample has at least 128 bits, they all differ, and at least 128 bit positions
    vary across them (a random bit stays the same over 32 samples with probability 2^-31: a
    fixed or structured part of a token shows up here)."""
    assert len(samples) >= 32
    assert all(len(s) * 8 >= 128 for s in samples), [len(s) for s in samples]
    assert len(set(samples)) == len(samples)
    width = min(len(s) for s in samples) * 8
    numbers = [int.from_bytes(s[: width // 8], "big") for s in samples]
    varying = sum(1 for bit in range(width) if len({(n >> bit) & 1 for n in numbers}) == 2)
    assert varying >= 128, varying


# -- audit events are append-only ---------------------------------------------------------------

INSERT_AUDIT = text(
    "INSERT INTO audit_events (at, actor, action, booking_id, request_id, details) "
    "VALUES (:at, 'system', :action, NULL, NULL, '{}')"
)


async def _audit_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, actor, action FROM audit_events ORDER BY id"))
        return [tuple(row) for row in rows]


async def test_the_audit_table_refuses_update_and_delete(db_url: str, clock: ManualClock) -> None:
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(INSERT_AUDIT, {"at": clock.now(), "action": "test.first"})
        before = await _audit_rows(engine)
        assert [row[2] for row in before] == ["test.first"]
        for statement in (
            "UPDATE audit_events SET action = 'test.forged'",
            "UPDATE audit_events SET details = '{}' WHERE id = (SELECT max(id) FROM audit_events)",
            "DELETE FROM audit_events",
            "DELETE FROM audit_events WHERE action = 'test.first'",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(text(statement))
            assert await _audit_rows(engine) == before, statement
        # appending still works, and so does an UPDATE or DELETE that touches no row
        async with engine.begin() as conn:
            await conn.execute(INSERT_AUDIT, {"at": clock.now(), "action": "test.second"})
            await conn.execute(text("DELETE FROM audit_events WHERE id < 0"))
        assert [row[2] for row in await _audit_rows(engine)] == ["test.first", "test.second"]
    finally:
        await engine.dispose()


async def test_the_service_itself_only_appends_audit_events(client: Client, core: Core) -> None:
    """Booking, reading, cancelling with the triggers in place: the service never needs to
    change or remove an audit row (nor does retention: the rows carry no personal data)."""
    booked = await book(client, local(MONDAY, 9), CITIZEN)
    token = booked["manage_token"]
    reference = booked["reference"]
    assert (await client.get(f"/api/v1/bookings/{reference}", headers=bearer(token))).is_success
    cancelled = await client.post(f"/api/v1/bookings/{reference}/cancel", headers=bearer(token))
    assert cancelled.status_code == 200, cancelled.text
    async with core.sessions() as session, session.begin():
        await retention.erase_reference(session, reference, core.clock.now())
    rows = await _audit_rows(core.engine)
    assert [row[2] for row in rows] == ["booking.create", "booking.cancel"]
    async with core.engine.connect() as conn:
        details = [str(r) for r in (await conn.execute(text("SELECT * FROM audit_events"))).all()]
    for value in personal_values(CITIZEN):
        assert not any(value in row for row in details), value


# -- tokens: entropy, and stored only as hashes --------------------------------------------------


def test_manage_and_waitlist_tokens_are_256_bit_hmacs() -> None:
    secret = secrets.token_urlsafe(48)
    manage = [codes.manage_token(secret, secrets.token_hex(16), 1) for _ in range(64)]
    assert_at_least_128_bits([_bits(t) for t in manage])
    waitlist = [codes.waitlist_token(secret, n) for n in range(1, 65)]
    assert_at_least_128_bits([_bits(t) for t in waitlist])
    # derived, so only as strong as the secret: another secret, another token
    assert codes.manage_token(secret, "b1", 1) != codes.manage_token(secret + "x", "b1", 1)
    assert codes.manage_token(secret, "b1", 1) != codes.manage_token(secret, "b1", 2)


def test_the_generated_secret_has_at_least_128_bits(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    secret = settings.with_secret().secret_key
    assert secret is not None
    assert len(_bits(secret)) * 8 >= 128
    with pytest.raises(Exception, match="32"):
        Settings.from_env({"SCHEDULER_SECRET_KEY": "too-short"})


def test_hold_ids_carry_128_bits() -> None:
    tokens = [new_hold_id("rathaus")[1] for _ in range(64)]
    assert_at_least_128_bits([_bits(t) for t in tokens])


async def _all_values(engine: AsyncEngine, table: str) -> list[str]:
    async with engine.connect() as conn:
        return [str(v) for row in (await conn.execute(text(f"SELECT * FROM {table}"))) for v in row]


async def test_api_keys_carry_256_bits_and_are_stored_hashed(core: Core) -> None:
    created = []
    async with core.sessions() as session, session.begin():
        for n in range(40):
            row, secret = await apikeys.create_key(
                session, role="agent", name=f"agent {n}", calendar_ids=[],
                known_calendars=set(core.catalog.calendars), now=core.clock.now(),
            )  # fmt: skip
            created.append((row.id, secret))
    assert_at_least_128_bits([_bits(secret, "sk_agent_") for _, secret in created])
    stored = await _all_values(core.engine, "api_keys")
    for key_id, secret in created:
        body = secret.removeprefix("sk_agent_")
        assert not any(body[:16] in value for value in stored), key_id
        assert hashlib.sha256(secret.encode()).hexdigest() in stored
        async with core.sessions() as session:
            principal = await apikeys.principal_for(session, secret)
        assert principal is not None
        assert principal.key_id == key_id


async def test_feed_tokens_carry_256_bits_and_are_stored_hashed(core: Core) -> None:
    created = []
    async with core.sessions() as session, session.begin():
        for n in range(40):
            _, token = await feeds.create_token(
                session, "sachbearbeitung-1", f"feed {n}", set(core.catalog.calendars),
                core.clock.now(),
            )  # fmt: skip
            created.append(token)
    assert_at_least_128_bits([_bits(t, "ft_") for t in created])
    stored = await _all_values(core.engine, "feed_tokens")
    for token in created:
        assert not any(token.removeprefix("ft_")[:16] in value for value in stored)
        assert hashlib.sha256(token.encode()).hexdigest() in stored
        async with core.sessions() as session:
            await feeds.check_token(session, "sachbearbeitung-1", token)


async def test_keys_and_feeds_made_through_the_api_are_stored_hashed(
    client: Client, core: Core
) -> None:
    admin = bearer(await _key(core, "admin"))
    made = await client.post(
        "/api/v1/keys", json={"role": "agent", "name": "Hotline"}, headers=admin
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    feed = await client.post(
        "/api/v1/feeds", json={"calendar_id": "sachbearbeitung-1"}, headers=admin
    )
    assert feed.status_code == 201, feed.text
    token = feed.json()["token"]
    booked = await book(client, local(MONDAY, 9), CITIZEN)
    held = await client.post(
        "/api/v1/holds", json={"service_id": SERVICE, "start": local(MONDAY, 10).isoformat()}
    )
    assert held.status_code == 201, held.text
    hold_id = held.json()["hold_id"]
    confirmed = await client.post(
        "/api/v1/bookings",
        json={
            "hold_id": hold_id,
            "citizen": {"name": "Bruno Ackermann", "email": "bruno.ackermann@example.org"},
        },
    )
    assert confirmed.status_code == 201, confirmed.text
    # a confirmed hold is kept as its digest only (a hold confirms once)
    assert hashlib.sha256(hold_id.partition(".")[2].encode()).hexdigest() in await _all_values(
        core.engine, "bookings"
    )
    secrets_made = [key, token, booked["manage_token"], confirmed.json()["manage_token"], hold_id]
    for table in ("api_keys", "feed_tokens", "bookings", "idempotency_records", "audit_events"):
        stored = await _all_values(core.engine, table)
        for secret in secrets_made:
            assert not any(secret[-16:] in value for value in stored), (table, secret[:6])


# -- guessing ------------------------------------------------------------------------------------

CITIZEN = {
    "name": "Zofia Quellenbrück",
    "email": "Zofia.Quellenbrueck.7x@example.org",
    "phone": "0391 555 0173",
    "birth_date": "1941-03-07",
    "postcode": "39517",
}


def personal_values(person: dict[str, str]) -> list[str]:
    """How a person's data could show up in text: as given, normalized, in other formats."""
    born = date.fromisoformat(person["birth_date"])
    phone = codes.normalize_phone(person["phone"])
    assert phone is not None
    return [
        person["name"],
        person["name"].split()[-1],
        person["email"],
        person["email"].lower(),
        person["email"].split("@")[0],
        person["phone"],
        person["phone"].replace(" ", ""),
        phone,
        born.isoformat(),
        f"{born:%d.%m.%Y}",
    ]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def _key(core: Core, role: str) -> str:
    async with core.sessions() as session, session.begin():
        _, secret = await apikeys.create_key(
            session, role=role, name=role, calendar_ids=[],
            known_calendars=set(core.catalog.calendars), now=core.clock.now(),
        )  # fmt: skip
    return secret


async def book(client: Client, start: Any, citizen: dict[str, str]) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/bookings",
        json={"service_id": SERVICE, "start": start.isoformat(), "citizen": citizen},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _others(core: Core, n: int) -> list[str]:
    """``n`` bookings of other people, made by the core (no abuse limits), two per morning
    start of the citizens' office from MONDAY on (one seat of three stays free); their
    references."""
    references: list[str] = []
    day = MONDAY
    while len(references) < n:
        for start in clerk_starts(day):
            for _ in range(2):
                if len(references) == n:
                    return references
                i = len(references)
                person = Person(f"Other Person {i}", f"other{i}@example.org")
                try:
                    view, _ = await core.bookings.book(
                        [SERVICE], start, 1, BookingRequest(person), Actor(), None,
                        lambda _v: b"",
                    )  # fmt: skip
                except DomainError:  # a weekend, a holiday, a closed morning
                    break
                assert view is not None
                references.append(codes.format_reference(view.reference))
        day += timedelta(days=1)
    return references


async def snapshot(engine: AsyncEngine) -> dict[str, Any]:
    """Everything a read, change or cancel could touch."""
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        for table in (
            "bookings", "appointments", "booking_slots", "person_claims", "notifications",
            "audit_events", "waitlist_entries", "idempotency_records", "rendered_events",
        ):  # fmt: skip
            rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            out[table] = sorted(str(tuple(row)) for row in rows)
        booked = await conn.execute(text("SELECT id, booked FROM slots WHERE booked > 0"))
        out["slots"] = sorted(tuple(row) for row in booked)
    return out


def attempts(token: str, csrf: str) -> dict[str, Callable[[Client, str], Any]]:
    """Every route that reads, changes or cancels a booking by its manage token (``csrf``:
    the pages' form token, so that a form is refused for its manage token, not for CSRF)."""
    auth = bearer(token)
    form = {"token": token, CSRF_FIELD: csrf}
    move = {"start": local(MONDAY, 11).isoformat()}
    q = quote(token)
    return {
        "read": lambda c, ref: c.get(f"/api/v1/bookings/{ref}", headers=auth),
        "cancel": lambda c, ref: c.post(f"/api/v1/bookings/{ref}/cancel", headers=auth),
        "reschedule": lambda c, ref: c.post(
            f"/api/v1/bookings/{ref}/reschedule", json=move, headers=auth
        ),
        "ics": lambda c, ref: c.get(f"/api/v1/bookings/{ref}/calendar.ics?token={q}"),
        "accept": lambda c, ref: c.post(f"/api/v1/waitlist/offers/{ref}/accept", headers=auth),
        "page": lambda c, ref: c.get(f"/buchung/{ref}?token={q}"),
        "page-cancel": lambda c, ref: c.post(f"/buchung/{ref}/absagen", data=form),
        "page-accept": lambda c, ref: c.post(f"/buchung/{ref}/annehmen", data=form),
        "confirm": lambda c, ref: c.post(f"/api/v1/bookings/{ref}/confirm", headers=auth),
        "page-opt-in": lambda c, ref: c.get(f"/buchung/{ref}/bestaetigen?token={q}"),
        "page-confirm": lambda c, ref: c.post(f"/buchung/{ref}/bestaetigen", data=form),
    }


def generated_references(n: int, taken: set[str]) -> list[str]:
    found: list[str] = []
    while len(found) < n:
        code = codes.format_reference(codes.new_reference())
        if code not in taken and code not in found:
            found.append(code)
    return found


@pytest.fixture
async def generous(settings: Settings, clock: ManualClock, core: Core) -> AsyncIterator[Client]:
    """The app with a failed-token limit no guessing run reaches: every guess is answered."""
    changed = msgspec.structs.replace(
        settings, rate_limit_token_failures_per_address=(1_000_000, 600)
    )
    app = create_app(changed, clock=clock, prepared=True, run_jobs=False)
    async with AsyncTestClient(app=app) as client:
        yield client


def assert_not_found(response: httpx.Response, how: str) -> None:
    assert response.status_code == 404, (how, response.status_code, response.text[:200])
    if how.startswith("page"):
        assert "nicht gefunden" in response.text.lower()
    else:
        assert response.json()["code"] == "not_found"


@pytest.mark.slow
async def test_a_token_opens_no_other_booking(generous: Client, core: Core) -> None:
    """1,000 bookings of other people, each tried with the citizen's own manage token on the
    three JSON actions (read, cancel, reschedule) and one other route in turn, and 24 of them
    on every route that reads, changes or cancels, with the code as printed and as typed:
    always the same 404 as a code nobody has, and nothing changes."""
    mine = await book(generous, local(MONDAY, 9), CITIZEN)
    token, own = mine["manage_token"], mine["reference"]
    others = await _others(core, 1000)
    assert own not in others
    routes = attempts(token, await csrf_token(generous))
    before = await snapshot(core.engine)
    answered = 0
    for n, reference in enumerate(others):
        names = ["read", "cancel", "reschedule", list(routes)[3 + n % (len(routes) - 3)]]
        for name in names:
            assert_not_found(await routes[name](generous, reference), name)
            answered += 1
    for reference in others[:24]:
        for name, attempt in routes.items():
            assert_not_found(await attempt(generous, reference), name)
            assert_not_found(await attempt(generous, reference.lower().replace("-", "")), name)
            answered += 2
    assert answered == 4000 + 24 * 2 * len(routes)
    assert await snapshot(core.engine) == before
    # "not yours" reads exactly like "not there"
    nobody = generated_references(1, {own, *others})[0]
    missing = await routes["read"](generous, nobody)
    not_mine = await routes["read"](generous, others[0])
    assert missing.json() == not_mine.json()
    # and the citizen's own booking still opens with the token
    read = await routes["read"](generous, own)
    assert read.status_code == 200
    assert read.json()["status"] == "confirmed"


async def test_guessing_is_stopped_after_the_limit(
    client: Client, core: Core, settings: Settings
) -> None:
    """With the service's limits, an address gets 404 for its first failed look-ups and then
    429 ``rate_limited`` (Retry-After) for the rest, on every route; nothing changes."""
    mine = await book(client, local(MONDAY, 9), CITIZEN)
    token = mine["manage_token"]
    others = await _others(core, 5)
    routes = attempts(token, await csrf_token(client))
    before = await snapshot(core.engine)
    limit = settings.rate_limit_token_failures_per_address[0]
    names = list(routes)
    statuses: list[int] = []
    tries = [(r, names[n % len(names)]) for n, r in enumerate(others * len(names))]
    tries += [
        (r, names[n % len(names)])
        for n, r in enumerate(generated_references(1000, {mine["reference"], *others}))
    ]
    for reference, name in tries:
        response = await routes[name](client, reference)
        statuses.append(response.status_code)
        if response.status_code == 404:
            continue
        assert response.status_code == 429, (name, response.status_code, response.text[:200])
        assert int(response.headers["retry-after"]) >= 1
        if not name.startswith("page"):
            assert response.json()["code"] == "rate_limited"
    assert statuses[:limit] == [404] * limit
    assert statuses[limit:] == [429] * (len(tries) - limit)
    assert await snapshot(core.engine) == before


# -- token pages: no referrer, no caching --------------------------------------------------------


def assert_private(response: httpx.Response, *, no_store: bool = True) -> None:
    assert response.headers.get("referrer-policy") == "no-referrer", dict(response.headers)
    directives = {d.strip() for d in response.headers.get("cache-control", "").split(",")}
    assert "public" not in directives
    if no_store:
        assert "no-store" in directives, dict(response.headers)
    else:
        assert "private" in directives, dict(response.headers)


@pytest.fixture
async def tokens(client: Client, core: Core) -> dict[str, Any]:
    booked = await book(client, local(MONDAY, 9), CITIZEN)
    joined = await client.post(
        "/api/v1/waitlist", json={"service_id": FIRST_DOSE, "citizen": CITIZEN}
    )
    assert joined.status_code == 201, joined.text
    async with core.sessions() as session, session.begin():
        _, feed = await feeds.create_token(
            session, booked["appointments"][0]["calendar_ids"][0], "", set(core.catalog.calendars),
            core.clock.now(),
        )  # fmt: skip
    return {"booking": booked, "waitlist": joined, "feed": feed}


async def test_the_manage_page_is_not_cached_and_sends_no_referrer(
    client: Client, tokens: dict[str, Any]
) -> None:
    booked = tokens["booking"]
    ref, token = booked["reference"], booked["manage_token"]
    page = await client.get(f"/buchung/{ref}?token={quote(token)}")
    assert page.status_code == 200
    assert '<meta name="referrer" content="no-referrer">' in page.text
    assert_private(page)
    assert_private(await client.get(f"/buchung/{ref}?token=wrong"))  # the 404 page too
    cancelled = await client.post(
        f"/buchung/{ref}/absagen",
        data=await with_csrf(client, {"token": token}),
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    assert_private(cancelled)
    assert_private(await client.get(f"/api/v1/bookings/{ref}/calendar.ics?token={quote(token)}"))


async def test_the_feed_sends_no_referrer_and_is_private(
    client: Client, tokens: dict[str, Any]
) -> None:
    """The subscription feed keeps its ETag (calendar apps poll it every few minutes), so it
    is ``private`` (no shared cache keeps it), not ``no-store``."""
    calendar = tokens["booking"]["appointments"][0]["calendar_ids"][0]
    feed = await client.get(f"/api/v1/calendars/{calendar}/feed.ics?token={tokens['feed']}")
    assert feed.status_code == 200
    assert_private(feed, no_store=False)


@pytest.mark.parametrize("route", ["create", "read", "cancel", "waitlist-join", "waitlist-read"])
async def test_token_bearing_json_is_not_cached_and_sends_no_referrer(
    client: Client, tokens: dict[str, Any], route: str
) -> None:
    booked, joined = tokens["booking"], tokens["waitlist"]
    ref, token = booked["reference"], booked["manage_token"]
    entry = joined.json()
    if route == "create":
        response = await client.post(
            "/api/v1/bookings",
            json={"service_id": SERVICE, "start": local(MONDAY, 10, 15).isoformat(),
                  "citizen": {"name": "Another Person", "email": "another@example.org"}},
        )  # fmt: skip
        assert response.status_code == 201
        assert response.json()["manage_token"]
    elif route == "read":
        response = await client.get(f"/api/v1/bookings/{ref}", headers=bearer(token))
    elif route == "cancel":
        response = await client.post(f"/api/v1/bookings/{ref}/cancel", headers=bearer(token))
    elif route == "waitlist-join":
        response = joined
        assert entry["token"]
    else:
        response = await client.get(
            f"/api/v1/waitlist/{entry['entry_id']}", headers=bearer(entry["token"])
        )
    assert response.status_code in (200, 201), response.text
    assert_private(response)


# -- no secret and no personal data in the logs of a whole run -----------------------------------


def _call(
    server: ServerProcess,
    method: str,
    path: str,
    *,
    body: Any = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    elif form is not None:
        data = "&".join(f"{k}={quote(v)}" for k, v in form.items()).encode()
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(
        server.url(path), data=data, method=method, headers=all_headers
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


def _cli(work: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        cwd=work,
        env=minimal_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture(params=["INFO", "DEBUG"])
def demo(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, Path, str]]:
    """``scheduler serve --demo`` in an empty folder, at the default log level and at DEBUG."""
    work = tmp_path / "demo"
    env = {"SCHEDULER_LOG_LEVEL": request.param}
    with start_server(work, args=["--demo"], env=env) as server:
        yield server, work, request.param


@pytest.mark.slow
def test_a_whole_run_logs_no_secret_and_no_personal_data(
    demo: tuple[ServerProcess, Path, str],
) -> None:
    server, work, level = demo
    env = {"SCHEDULER_LOG_LEVEL": level}
    cli_logs: list[str] = []

    # an agent's key from the CLI (printed on stdout, which is the key and nothing else)
    made = _cli(work, "keys", "create", "--role", "agent", "--name", "Hotline", env=env)
    agent_key = made.stdout.strip()
    assert agent_key.startswith("sk_agent_")
    cli_logs.append(made.stderr)

    # a citizen books online
    first = date.today() + timedelta(days=7)
    status, _, body = _call(
        server,
        "GET",
        f"/api/v1/services/{SERVICE}/slots?from={first}&to={first + timedelta(days=6)}",
    )
    assert status == 200, body
    start = json.loads(body)[0]["start"]
    status, _, body = _call(
        server, "POST", "/api/v1/bookings",
        body={"service_id": SERVICE, "start": start, "citizen": CITIZEN},
    )  # fmt: skip
    assert status == 201, body
    booking = json.loads(body)
    reference, manage_token = booking["reference"], booking["manage_token"]
    calendar = booking["appointments"][0]["calendar_ids"][0]

    # reads it with the manage token: API, .ics link, the manage page
    manage = bearer(manage_token)
    assert _call(server, "GET", f"/api/v1/bookings/{reference}", headers=manage)[0] == 200
    ics = f"/api/v1/bookings/{reference}/calendar.ics?token={quote(manage_token)}"
    assert _call(server, "GET", ics)[0] == 200
    status, headers, _ = _call(server, "GET", f"/buchung/{reference}?token={quote(manage_token)}")
    assert status == 200
    csrf = cookie_token(headers["set-cookie"])
    # a mistyped token and an unknown key are refused (and logged as such, without them)
    bad = ("y" if manage_token.startswith("x") else "x") + manage_token[1:]  # one letter off
    assert _call(server, "GET", f"/api/v1/bookings/{reference}", headers=bearer(bad))[0] == 404
    assert _call(server, "GET", "/api/v1/agent/bookings", headers=bearer(agent_key + "x"))[0] == 401

    # the hotline finds the caller by reference and by name and birth date
    agent = bearer(agent_key)
    assert (
        _call(server, "GET", f"/api/v1/agent/bookings?reference={reference}", headers=agent)[0]
        == 200
    )
    by_name = f"name={quote(CITIZEN['name'])}&birth_date={CITIZEN['birth_date']}"
    status, _, body = _call(server, "GET", f"/api/v1/agent/bookings?{by_name}", headers=agent)
    assert status == 200, body
    assert [b["reference"] for b in json.loads(body)] == [reference]

    # staff subscribe to the calendar's feed with a token from the CLI
    made = _cli(work, "feeds", "create", "--calendar", calendar, env=env)
    feed_token = made.stdout.strip()
    assert feed_token.startswith("ft_")
    cli_logs.append(made.stderr)
    feed = f"/api/v1/calendars/{calendar}/feed.ics?token={quote(feed_token)}"
    assert _call(server, "GET", feed)[0] == 200
    assert _call(server, "GET", feed.replace(feed_token[-6:], "AAAAAA"))[0] == 404

    # the same citizen joins the vaccination campaign's waiting list and looks at the entry
    status, _, body = _call(
        server, "POST", "/api/v1/waitlist", body={"service_id": FIRST_DOSE, "citizen": CITIZEN}
    )
    assert status == 201, body
    entry = json.loads(body)
    waitlist_token = entry["token"]
    path = f"/api/v1/waitlist/{entry['entry_id']}"
    assert _call(server, "GET", path, headers=bearer(waitlist_token))[0] == 200

    # cancels the booking on the manage page; the messages go out (as .eml files)
    status, _, _ = _call(
        server, "POST", f"/buchung/{reference}/absagen",
        form={"token": manage_token, CSRF_FIELD: csrf}, headers={"Cookie": f"csrf={csrf}"},
    )  # fmt: skip
    assert status == 303
    mail = work / "mail"
    assert _wait(lambda: len(list(mail.rglob("*.eml"))) >= 2, 60), list(mail.rglob("*"))
    # the request lines are written: the log shows what happened, without the secrets
    assert _wait(
        lambda: any(r.get("path", "").endswith("/absagen") for r in server.log_records()),
        10,
    )
    assert server.stop() == 0, server.stderr()[-2000:]

    logs = server.output() + "".join(cli_logs)
    paths = {r.get("path") for r in server.log_records() if r.get("msg") == "request"}
    assert f"/api/v1/bookings/{reference}" in paths
    assert f"/api/v1/calendars/{calendar}/feed.ics" in paths
    secrets_made = {
        "api key": agent_key,
        "api key body": agent_key.removeprefix("sk_agent_"),
        "manage token": manage_token,
        "feed token": feed_token,
        "feed token body": feed_token.removeprefix("ft_"),
        "waiting-list token": waitlist_token,
    }
    assert not [name for name, value in secrets_made.items() if value in logs]
    # (at DEBUG, the database drivers would log statements with their parameters: the
    # service keeps their loggers at WARNING, see scheduler/logs.py)
    personal = [value for value in personal_values(CITIZEN) if value in logs]
    assert not personal

    # the demo's own database: migrated by `serve --demo`, so its audit table is append-only,
    # and no bearer secret is stored in clear anywhere
    db = sqlite3.connect(work / "scheduler.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        everything = "\n".join(
            str(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
        )
        assert not [name for name, value in secrets_made.items() if value in everything]
        audit = "\n".join(str(row) for row in db.execute("SELECT * FROM audit_events"))
        assert "booking.create" in audit
        assert not [v for v in personal_values(CITIZEN) if v in audit]
        for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
    finally:
        db.close()
