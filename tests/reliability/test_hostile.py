"""Hostile input, as bots and curious people send it: every answer is a 4xx problem with a
``code`` (or a 2xx where the input is legitimately fine, such as a name in Arabic script with an
emoji), never a 5xx, and a refused request writes nothing: the rows of every table, the holds
and seat counters in Redis (and their version, which every counter write bumps) are as before.

Runs on SQLite and, with SCHEDULER_TEST_DATABASE_URL, on PostgreSQL (which refuses NUL bytes and
lone surrogates in text: what SQLite stores, PostgreSQL would have answered with a 500).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from scheduler.app import create_app
from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from scheduler.settings import Settings
from tests.api.test_keys import bearer, make_key

pytestmark = pytest.mark.slow

Client = AsyncTestClient[Litestar]
START = "2026-11-30T09:00:00+01:00"
CITIZEN = {"name": "Erika Mustermann", "email": "erika@example.org"}
BOOKING = {"service_id": "hund-anmelden", "start": START, "citizen": CITIZEN}
ICS = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
    b"UID:hostile@test\r\nDTSTAMP:20261101T000000Z\r\nDTSTART;VALUE=DATE:20261208\r\n"
    b"SUMMARY:Betriebsausflug\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
TABLES = [
    m.Booking, m.Appointment, m.BookingSlot, m.PersonClaim, m.IdempotencyRecord, m.AuditEvent,
    m.ApiKey, m.Notification, m.FeedToken, m.Closure, m.WaitlistEntry,
]  # fmt: skip
SQL_AND_LUA = [
    "'; DROP TABLE bookings; --",
    "' OR '1'='1",
    "1); SELECT pg_sleep(3); --",
    "\"); redis.call('FLUSHALL'); --",
    "]]..redis.call('del', KEYS[1])..[[",
    "{rathaus}",
    "*",
    "%_\\",
    "${jndi:ldap://example.org/a}",
    "nul\x00byte",  # PostgreSQL refuses NUL in text: without a check, a 500
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The conftest settings without abuse limits: a hostile request must be refused for what
    it is, not because the address sent too many."""
    return msgspec.structs.replace(settings, rate_limits=False)


@dataclass
class Keys:
    admin: dict[str, str]
    agent: dict[str, str]
    staff: dict[str, str]  # sachbearbeitung-1..3 and schalter-1


@pytest.fixture
async def keys(core: Core) -> Keys:
    return Keys(
        bearer(await make_key(core, "admin")),
        bearer(await make_key(core, "agent")),
        bearer(
            await make_key(
                core,
                "staff",
                ["sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3", "schalter-1"],
            )
        ),
    )


async def state(core: Core) -> dict[str, Any]:
    """Everything a request could have written: the rows of every table, the slots' seats, and
    in Redis every location's counter version (bumped by every counter write), its holds, and
    the number of keys."""
    columns = [select(func.count()).select_from(t).scalar_subquery() for t in TABLES] + [
        select(func.sum(m.Slot.capacity)).scalar_subquery(),
        select(func.sum(m.Slot.booked)).scalar_subquery(),
    ]
    async with core.sessions() as session:
        row = (await session.execute(select(*columns))).one()
    seen: dict[str, Any] = dict(
        zip([t.__tablename__ for t in TABLES] + ["capacity", "booked"], row, strict=True)
    )
    async with core.redis.pipeline(transaction=False) as pipe:
        for location in sorted(core.catalog.locations):
            pipe.get(f"sch:{{{location}}}:ver")
            pipe.zrange(f"sch:{{{location}}}:hx", 0, -1)
        pipe.dbsize()
        seen["redis"] = await pipe.execute()
    return seen


def complaint(response: Any, *, legit: Iterable[int] = ()) -> str | None:
    """Why an answer is not what hostile input must get (None: it is)."""
    status = response.status_code
    if status in legit:
        return None
    if not 400 <= status < 500:
        return f"status {status}: {response.text[:300]}"
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return f"{status} as {response.headers.get('content-type')}: {response.text[:200]}"
    body = response.json()
    if not isinstance(body.get("code"), str) or body.get("status") != status:
        return f"{status} without a code: {response.text[:200]}"
    return None


async def refused(
    core: Core, attempts: Iterable[tuple[str, Any]], *, legit: Iterable[int] = ()
) -> None:
    """Send every attempt (a label and an awaitable request); each must be refused (or be
    one of ``legit``) and, if refused, leave no trace."""
    problems = []
    for label, request in attempts:
        before = await state(core)
        response = await request
        why = complaint(response, legit=legit)
        if why is not None:
            problems.append(f"{label}: {why}")
        elif response.status_code >= 400 and (after := await state(core)) != before:
            changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            problems.append(f"{label}: {response.status_code} but wrote {changed}")
    assert not problems, "\n".join(problems)


# -- oversized bodies ----------------------------------------------------------------------------


def body_routes(keys: Keys) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, headers) of every route that takes a body."""
    return [
        ("POST", "/api/v1/holds", {}),
        ("POST", "/api/v1/bookings", {}),
        ("POST", "/api/v1/bookings/ABCD-EFGH/reschedule", keys.agent),
        ("POST", "/api/v1/waitlist", {}),
        ("POST", "/api/v1/keys", keys.admin),
        ("POST", "/api/v1/feeds", keys.admin),
        ("POST", "/api/v1/calendars/schalter-1/closures", keys.staff),
        ("POST", "/api/v1/calendars/schalter-1/closures/import", keys.staff),
        ("PATCH", f"/api/v1/calendars/schalter-1/slots/{quote(START, safe='')}", keys.staff),
    ]


async def send_chunked(
    app: Any, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """A request as a server passes a chunked upload on: no Content-Length, 64 kB at a time
    (Litestar's test client cannot stream a body)."""
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"transfer-encoding", b"chunked"),
                    (b"content-type", b"application/json")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "state": {},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    answer = b"".join(message.get("body", b"") for message in sent
                      if message["type"] == "http.response.body")  # fmt: skip
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], head, answer


async def test_oversized_bodies_are_413(client: Client, core: Core, keys: Keys) -> None:
    limit = 1024 * 1024  # the default SCHEDULER_MAX_BODY_BYTES
    big = b'{"service_id": "hund-anmelden", "citizen": {"name": "' + b"x" * limit + b'"}}'
    attempts = []
    for method, path, headers in body_routes(keys):
        request = client.request(
            method, path, content=big, headers={**headers, "Content-Type": "application/json"}
        )
        attempts.append((f"{method} {path}", request))
    await refused(core, attempts)
    before = await state(core)
    for method, path, headers in body_routes(keys):
        status, head, answer = await send_chunked(client.app, method, path, headers, big)
        assert status == 413, (path, answer[:300])
        assert head["content-type"].startswith("application/problem+json")
        assert msgspec.json.decode(answer)["code"] == "body_too_large"
    assert await state(core) == before


async def test_the_body_limit_is_the_setting(
    settings: Settings, clock: ManualClock, core: Core
) -> None:
    app = create_app(
        msgspec.structs.replace(settings, max_body_bytes=2048),
        clock=clock,
        prepared=True,
        run_jobs=False,
    )
    async with AsyncTestClient(app=app) as client:
        padded = {**BOOKING, "citizen": {**CITIZEN, "name": "E" * 150}}
        small = msgspec.json.encode(padded)
        assert len(small) < 2048
        assert (await client.post("/api/v1/bookings", content=small)).status_code == 201
        too_big = small[:-2] + b" " * (2049 - len(small)) + b"}}"
        assert len(too_big) == 2049
        await refused(core, [("2049 bytes", client.post("/api/v1/bookings", content=too_big))])
        answer = await client.post("/api/v1/holds", content=too_big)
        assert answer.status_code == 413
        assert answer.json()["code"] == "body_too_large"


# -- odd JSON ------------------------------------------------------------------------------------

ODD_JSON: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("blank", b"  \r\n\t "),
    ("1000-deep array", b"[" * 1000 + b"]" * 1000),
    ("100000-deep array", b"[" * 100_000 + b"]" * 100_000),
    ("100000-deep unclosed", b"[" * 100_000),
    ("1000-deep object", b'{"a":' * 1000 + b"1" + b"}" * 1000),
    ("deep inside a field", b'{"service_id": "hund-anmelden", "start": ' + b"[" * 50_000
     + b"]" * 50_000 + b', "citizen": {"name": "x", "email": "x@example.org"}}'),
    ("huge integer", b'{"service_id": "hund-anmelden", "start": "' + START.encode()
     + b'", "seats": 1' + b"0" * 5000 + b"}"),
    ("huge float", b'{"service_id": "hund-anmelden", "start": "' + START.encode()
     + b'", "seats": 1e999}'),
    ("negative zero", b'{"service_id": "hund-anmelden", "start": "' + START.encode()
     + b'", "seats": -0.0}'),
    ("NaN", b'{"service_id": "hund-anmelden", "start": "' + START.encode() + b'", "seats": NaN}'),
    ("Infinity", b'{"seats": Infinity}'),
    ("seats as a string", b'{"service_id": "hund-anmelden", "start": "' + START.encode()
     + b'", "seats": "2"}'),
    ("true as a number", b'{"service_id": "hund-anmelden", "start": "' + START.encode()
     + b'", "series": 0}'),
    ("top-level null", b"null"),
    ("top-level number", b"42"),
    ("top-level string", b'"hund-anmelden"'),
    ("top-level true", b"true"),
    ("top-level array", b"[]"),
    ("empty object", b"{}"),
    ("trailing garbage", msgspec.json.encode(BOOKING) + b"garbage"),
    ("two documents", msgspec.json.encode(BOOKING) * 2),
    ("byte order mark", b"\xef\xbb\xbf" + msgspec.json.encode(BOOKING)),
    ("invalid UTF-8", b'{"service_id": "\xff\xfe", "start": "' + START.encode() + b'"}'),
    ("lone surrogate escape", b'{"service_id": "\\ud800", "start": "' + START.encode() + b'"}'),
    ("NUL escape", b'{"service_id": "hund\\u0000anmelden", "start": "' + START.encode() + b'"}'),
    ("raw control character", b'{"service_id": "hund\x01", "start": "' + START.encode() + b'"}'),
    ("single quotes", b"{'service_id': 'hund-anmelden'}"),
    ("comment", b'{"service_id": "hund-anmelden" /* x */}'),
    ("unknown field", b'{"service_id": "hund-anmelden", "start": "' + START.encode()
     + b'", "admin": true}'),
]  # fmt: skip


@pytest.mark.parametrize("route", ["/api/v1/holds", "/api/v1/bookings", "/api/v1/waitlist"])
async def test_odd_json_is_refused(client: Client, core: Core, route: str) -> None:
    await refused(
        core,
        [
            (label, client.post(route, content=raw, headers={"Content-Type": "application/json"}))
            for label, raw in ODD_JSON
        ],
    )


async def test_odd_json_on_admin_and_staff_bodies(client: Client, core: Core, keys: Keys) -> None:
    attempts = []
    for method, path, headers in body_routes(keys):
        if path.endswith("/import"):
            continue  # an iCalendar body, below
        for label, raw in ODD_JSON:
            attempts.append(
                (
                    f"{label} {method} {path}",
                    client.request(
                        method,
                        path,
                        content=raw,
                        headers={**headers, "Content-Type": "application/json"},
                    ),
                )
            )
    await refused(core, attempts)


async def test_duplicate_keys_take_the_last(client: Client, core: Core) -> None:
    """As every JSON parser of the standard library does; not a way past validation."""
    raw = (
        b'{"service_id": "nope", "start": "' + START.encode() + b'", "citizen": '
        b'{"name": "A", "email": "a@example.org"}, "service_id": "hund-anmelden", '
        b'"seats": 20, "seats": 1}'
    )
    made = await client.post("/api/v1/bookings", content=raw)
    assert made.status_code == 201, made.text
    assert made.json()["service_ids"] == ["hund-anmelden"]
    sneaky = raw.replace(b'"seats": 1}', b'"seats": 21}')
    await refused(core, [("last value invalid", client.post("/api/v1/holds", content=sneaky))])


# -- content types -------------------------------------------------------------------------------

WRONG_TYPES = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "text/html",
    "application/octet-stream",
    "application/javascript",
    "application/json-patch+xml",
    "garbage",
]


async def test_wrong_content_types(client: Client, core: Core, keys: Keys) -> None:
    body = msgspec.json.encode(BOOKING)
    attempts = []
    for content_type in WRONG_TYPES:
        for route in ("/api/v1/holds", "/api/v1/bookings"):
            request = client.post(route, content=body, headers={"Content-Type": content_type})
            attempts.append((f"JSON as {content_type} to {route}", request))
        form = client.post(
            "/api/v1/bookings",
            content=b"service_id=hund-anmelden&citizen[name]=x",
            headers={"Content-Type": content_type},
        )
        attempts.append((f"a form as {content_type}", form))
    ics = client.post(
        "/api/v1/calendars/schalter-1/closures/import",
        content=msgspec.json.encode({"closures": []}),
        headers={**keys.staff, "Content-Type": "application/json"},
    )
    attempts.append(("JSON where an iCalendar file belongs", ics))
    await refused(core, attempts)
    plain = await client.post(
        "/api/v1/bookings", content=body, headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 415
    assert plain.json()["code"] == "unsupported_media_type"
    for content_type in ("application/json", "application/json; charset=utf-8", None):
        headers = {"Content-Type": content_type} if content_type else {}
        made = await client.post(
            "/api/v1/holds",
            content=msgspec.json.encode({"service_id": "hund-anmelden", "start": START}),
            headers=headers,
        )
        assert made.status_code == 201, (content_type, made.text)


# -- huge ranges ---------------------------------------------------------------------------------


async def test_huge_ranges_are_refused_quickly(client: Client, core: Core, keys: Keys) -> None:
    asks = [
        ("/api/v1/services/hund-anmelden/slots", {"from": "2000-01-01", "to": "2999-12-31"}, {}),
        ("/api/v1/services/hund-anmelden/slots", {"from": "2026-11-23", "to": "2027-02-24"}, {}),
        ("/api/v1/services/hund-anmelden/slots", {"from": "2999-12-31", "to": "2000-01-01"}, {}),
        ("/api/v1/services/hund-anmelden/slots", {"from": "0001-01-01"}, {}),
        ("/api/v1/services/hund-anmelden/slots", {"from": "99999-01-01"}, {}),
        ("/api/v1/services/hund-anmelden/slots", {"to": "2026-02-30"}, {}),
        ("/api/v1/stats", {"from": "2000-01-01", "to": "2999-12-31"}, keys.admin),
        ("/api/v1/stats", {"from": "1970-01-01", "to": "1970-01-01"}, keys.admin),
        ("/api/v1/stats", {"from": "2026-01-01", "to": "2025-01-01"}, keys.admin),
        ("/api/v1/calendars/schalter-1/agenda", {"date": "0001-01-01"}, keys.staff),
        ("/api/v1/calendars/schalter-1/agenda", {"date": "9999-12-31"}, keys.staff),
        ("/api/v1/agent/next-slots", {"after": "9999-12-31T23:59:59+14:00"}, keys.agent),
        ("/api/v1/agent/next-slots", {"after": "0001-01-01T00:00:00+00:00"}, keys.agent),
        ("/api/v1/agent/next-slots", {"after": "2026-11-23T10:00:00+99:00"}, keys.agent),
        ("/api/v1/agent/next-slots", {"limit": "100000"}, keys.agent),
        ("/api/v1/agent/next-slots", {"limit": "-1"}, keys.agent),
        ("/api/v1/agent/bookings", {"name": "x", "birth_date": "0001-01-01"}, keys.agent),
        ("/api/v1/waitlist", {"campaign": "impfung-76plus", "limit": "1000000000"}, keys.agent),
        ("/api/v1/waitlist", {"campaign": "impfung-76plus", "after": "-5"}, keys.agent),
        ("/api/v1/waitlist", {"campaign": "impfung-76plus", "after": "99999999999"}, keys.agent),
    ]
    attempts = []
    for path, params, headers in asks:
        attempts.append((f"{path} {params}", client.get(path, params=params, headers=headers)))
    started = time.monotonic()
    await refused(core, attempts, legit=(200,))
    assert time.monotonic() - started < 10
    wide = await client.get(
        "/api/v1/services/hund-anmelden/slots", params={"from": "2000-01-01", "to": "2999-12-31"}
    )
    assert wide.status_code == 422
    assert wide.json()["errors"][0]["field"] in ("to", "from")


# -- unicode in names ----------------------------------------------------------------------------

FINE_NAMES = [
    "مريم العلي",  # Arabic, right to left
    "\u202egnirts desrever\u202c",  # RTL override
    "Zoë\u200bZero\u200dWidth",  # zero-width space and joiner
    "Ádám 🐕‍🦺 Nagy 👩🏽‍⚕️",  # emoji with modifiers and joiners
    "Ŝ̷̨c̴̠h̵͇ö̶́n",  # combining marks
    "山田 太郎",
    "𝔉𝔯𝔞𝔨𝔱𝔲𝔯",  # outside the BMP
    "🐕" * 200,  # 200 characters, 800 bytes
]


def encode(value: Any) -> bytes:
    """JSON as a client writes it, lone surrogates as ``\\ud800`` escapes (msgspec refuses
    to encode them)."""
    return json.dumps(value).encode()


BAD_NAMES = [
    "Erika\u0000Mustermann",  # NUL: PostgreSQL text cannot hold it
    "Erika\ud800",  # a lone surrogate: not encodable as UTF-8
    "\udfffErika",
    "Erika\r\nBcc: victim@example.org",  # header injection into the message's To:
    "Erika\x07\x1b[31m",  # bell and a terminal escape
    "",
    " ",
    "\u200b",  # nothing visible
]


async def test_unicode_names_round_trip(client: Client, core: Core) -> None:
    starts = [f"2026-11-30T{h:02d}:{q:02d}:00+01:00" for h in (9, 10, 11) for q in (0, 15, 30)]
    for n, (name, start) in enumerate(zip(FINE_NAMES, starts, strict=False)):
        made = await client.post(
            "/api/v1/bookings",
            json={**BOOKING, "start": start,
                  "citizen": {"name": name, "email": f"u{n}@example.org"}},
        )  # fmt: skip
        assert made.status_code == 201, (name, made.text)
        assert made.json()["citizen"]["name"] == name
        read = await client.get(
            f"/api/v1/bookings/{made.json()['reference']}",
            headers=bearer(made.json()["manage_token"]),
        )
        assert read.json()["citizen"]["name"] == name


async def test_bad_names_are_refused(client: Client, core: Core, keys: Keys) -> None:
    attempts = []
    for name in BAD_NAMES:
        raw = encode({**BOOKING, "citizen": {**CITIZEN, "name": name}})
        attempts.append((f"booking for {name!r}", client.post("/api/v1/bookings", content=raw)))
        contact = encode({**BOOKING, "contact": {"name": name, "phone": "+4930123"}})
        attempts.append((f"contact {name!r}", client.post("/api/v1/bookings", content=contact)))
        join = encode(
            {"service_id": "impfung-erstimpfung",
             "citizen": {"name": name, "birth_date": "1940-03-01", "postcode": "39517",
                         "phone": "+49 3935 123456"}}
        )  # fmt: skip
        attempts.append((f"waitlist {name!r}", client.post("/api/v1/waitlist", content=join)))
        key = encode({"role": "agent", "name": name})
        attempts.append((f"key {name!r}", client.post("/api/v1/keys", content=key,
                                                     headers=keys.admin)))  # fmt: skip
        if any(c < " " or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\udfff" for c in name):
            # (an empty feed name is fine: it is optional)
            feed = encode({"calendar_id": "schalter-1", "name": name})
            attempts.append((f"feed {name!r}", client.post("/api/v1/feeds", content=feed,
                                                          headers=keys.admin)))  # fmt: skip
        closure = encode(
            {"from": "2026-12-08T00:00:00+01:00", "to": "2026-12-09T00:00:00+01:00",
             "reason": name}
        )  # fmt: skip
        attempts.append(
            (f"closure {name!r}", client.post("/api/v1/calendars/schalter-1/closures",
                                              content=closure, headers=keys.staff))
        )  # fmt: skip
    await refused(core, attempts)
    injected = await client.post(
        "/api/v1/bookings",
        json={**BOOKING, "citizen": {**CITIZEN, "name": "Erika\r\nBcc: victim@example.org"}},
        headers={"Accept-Language": "en"},
    )
    (error,) = injected.json()["errors"]
    assert error["field"] == "citizen.name"
    assert "control characters" in error["message"]


# -- SQL- and Lua-looking strings in every field -------------------------------------------------


def string_fields(keys: Keys, token: str, reference: str) -> list[tuple[str, Any]]:
    """(label, request maker taking the string) for every string a client can send."""
    manage = bearer(token)

    def body(method: str, path: str, make: Any, headers: dict[str, str] | None = None) -> Any:
        return lambda s: ("POST" if method == "POST" else method, path, {"json": make(s)},
                          headers or {})  # fmt: skip

    def query(path: str, make: Any, headers: dict[str, str] | None = None) -> Any:
        return lambda s: ("GET", path, {"params": make(s)}, headers or {})

    def in_path(method: str, template: str, headers: dict[str, str] | None = None) -> Any:
        return lambda s: (method, template.format(quote(s, safe="")), {}, headers or {})

    person = {"name": "Erika", "email": "erika@example.org"}
    return [
        ("hold service_id", body("POST", "/api/v1/holds",
                                 lambda s: {"service_id": s, "start": START})),
        ("hold service_ids", body("POST", "/api/v1/holds",
                                  lambda s: {"service_ids": [s], "start": START})),
        ("hold start", body("POST", "/api/v1/holds",
                            lambda s: {"service_id": "hund-anmelden", "start": s})),
        ("hold second_start", body("POST", "/api/v1/holds",
                                   lambda s: {"service_id": "impfung-erstimpfung", "start": START,
                                              "series": True, "second_start": s})),
        ("hold channel", body("POST", "/api/v1/holds",
                              lambda s: {"service_id": "hund-anmelden", "start": START,
                                         "channel": s})),
        ("hold citizen.postcode", body("POST", "/api/v1/holds",
                                       lambda s: {"service_id": "impfung-erstimpfung",
                                                  "start": START,
                                                  "citizen": {**person, "postcode": s}})),
        ("booking hold_id", body("POST", "/api/v1/bookings",
                                 lambda s: {"hold_id": s, "citizen": person})),
        ("booking citizen.email", body("POST", "/api/v1/bookings",
                                       lambda s: {**BOOKING, "citizen": {**person, "email": s}})),
        ("booking citizen.phone", body("POST", "/api/v1/bookings",
                                       lambda s: {**BOOKING,
                                                  "citizen": {"name": "E", "phone": s}})),
        ("booking citizen.birth_date", body("POST", "/api/v1/bookings",
                                            lambda s: {**BOOKING,
                                                       "citizen": {**person, "birth_date": s}})),
        ("booking language", body("POST", "/api/v1/bookings",
                                  lambda s: {**BOOKING, "language": s})),
        ("booking contact.email", body("POST", "/api/v1/bookings",
                                       lambda s: {**BOOKING,
                                                  "contact": {"name": "C", "email": s}})),
        ("reschedule start", body("POST", f"/api/v1/bookings/{reference}/reschedule",
                                  lambda s: {"start": s}, manage)),
        ("reschedule hold_id", body("POST", f"/api/v1/bookings/{reference}/reschedule",
                                    lambda s: {"hold_id": s}, manage)),
        ("waitlist service_id", body("POST", "/api/v1/waitlist",
                                     lambda s: {"service_id": s, "citizen": person})),
        ("key role", body("POST", "/api/v1/keys", lambda s: {"role": s, "name": "x"},
                          keys.admin)),
        ("key calendar_ids", body("POST", "/api/v1/keys",
                                  lambda s: {"role": "staff", "name": "x", "calendar_ids": [s]},
                                  keys.admin)),
        ("feed calendar_id", body("POST", "/api/v1/feeds", lambda s: {"calendar_id": s},
                                  keys.admin)),
        ("closure from", body("POST", "/api/v1/calendars/schalter-1/closures",
                              lambda s: {"from": s, "to": START, "reason": "x"}, keys.staff)),
        ("closure policy", body("POST", "/api/v1/calendars/schalter-1/closures",
                                lambda s: {"from": START, "to": "2026-11-30T10:00:00+01:00",
                                           "reason": "x", "policy": s}, keys.staff)),
        ("capacity start", in_path("PATCH", "/api/v1/calendars/schalter-1/slots/{}",
                                   keys.staff)),
        ("calendars location", query("/api/v1/calendars", lambda s: {"location": s})),
        ("slots from", query("/api/v1/services/hund-anmelden/slots", lambda s: {"from": s})),
        ("slots to", query("/api/v1/services/hund-anmelden/slots", lambda s: {"to": s})),
        ("slots service", in_path("GET", "/api/v1/services/{}/slots")),
        ("agenda calendar", in_path("GET", "/api/v1/calendars/{}/agenda", keys.admin)),
        ("agenda date", query("/api/v1/calendars/schalter-1/agenda", lambda s: {"date": s},
                              keys.staff)),
        ("agenda format", query("/api/v1/calendars/schalter-1/agenda", lambda s: {"format": s},
                                keys.staff)),
        ("booking reference", in_path("GET", "/api/v1/bookings/{}", keys.agent)),
        ("cancel reference", in_path("POST", "/api/v1/bookings/{}/cancel", keys.agent)),
        ("ics reference", in_path("GET", "/api/v1/bookings/{}/calendar.ics")),
        ("ics token", query(f"/api/v1/bookings/{reference}/calendar.ics",
                            lambda s: {"token": s})),
        ("feed token", query("/api/v1/calendars/schalter-1/feed.ics", lambda s: {"token": s})),
        ("feed calendar", in_path("GET", "/api/v1/calendars/{}/feed.ics")),
        ("release hold_id", in_path("DELETE", "/api/v1/holds/{}")),
        ("revoke key_id", in_path("DELETE", "/api/v1/keys/{}", keys.admin)),
        ("revoke token_id", in_path("DELETE", "/api/v1/feeds/{}", keys.admin)),
        ("accept reference", in_path("POST", "/api/v1/waitlist/offers/{}/accept", keys.agent)),
        ("agent reference", query("/api/v1/agent/bookings", lambda s: {"reference": s},
                                  keys.agent)),
        ("agent birth_date", query("/api/v1/agent/bookings",
                                   lambda s: {"name": "Erika", "birth_date": s}, keys.agent)),
        ("next-slots service", query("/api/v1/agent/next-slots", lambda s: {"service": s},
                                     keys.agent)),
        ("next-slots location", query("/api/v1/agent/next-slots", lambda s: {"location": s},
                                      keys.agent)),
        ("next-slots after", query("/api/v1/agent/next-slots", lambda s: {"after": s},
                                   keys.agent)),
        ("next-slots limit", query("/api/v1/agent/next-slots", lambda s: {"limit": s},
                                   keys.agent)),
        ("waitlist campaign", query("/api/v1/waitlist", lambda s: {"campaign": s}, keys.agent)),
        ("waitlist status", query("/api/v1/waitlist",
                                  lambda s: {"campaign": "impfung-76plus", "status": s},
                                  keys.agent)),
        ("waitlist after", query("/api/v1/waitlist",
                                 lambda s: {"campaign": "impfung-76plus", "after": s},
                                 keys.agent)),
        ("audit booking", query("/api/v1/audit", lambda s: {"booking": s}, keys.admin)),
        ("notifications status", query("/api/v1/admin/notifications", lambda s: {"status": s},
                                       keys.admin)),
        ("stats service", query("/api/v1/stats",
                                lambda s: {"from": "2026-11-23", "to": "2026-11-30",
                                           "service": s}, keys.admin)),
        ("idempotency key", lambda s: ("POST", "/api/v1/holds",
                                       {"json": {"service_id": "x", "start": START}},
                                       {"Idempotency-Key": s})),
    ]  # fmt: skip


async def test_sql_and_lua_strings_in_every_field(client: Client, core: Core, keys: Keys) -> None:
    made = (await client.post("/api/v1/bookings", json=BOOKING)).json()
    token, reference = made["manage_token"], made["reference"]
    attempts = []
    for label, make in string_fields(keys, token, reference):
        for payload in SQL_AND_LUA:
            method, path, kwargs, headers = make(payload)
            request = client.request(method, path, headers=headers, **kwargs)
            attempts.append((f"{label} = {payload!r}", request))
    # an empty list for a query that finds nothing is a fine answer to a search
    await refused(core, attempts, legit=(200,))
    assert (await client.get(f"/api/v1/bookings/{reference}", headers=bearer(token))).json()[
        "status"
    ] == "confirmed"
    still = await client.get("/api/v1/services/hund-anmelden/slots",
                             params={"from": "2026-11-30", "to": "2026-11-30"})  # fmt: skip
    assert still.status_code == 200
    assert {r["start"]: r["free"] for r in still.json()}[START] == 2


async def test_sql_looking_names_are_just_names(client: Client, core: Core) -> None:
    starts = [f"2026-12-01T{h:02d}:{q:02d}:00+01:00" for h in (8, 9, 10) for q in (0, 15, 30, 45)]
    names = [name for name in SQL_AND_LUA if "\x00" not in name]
    for n, (name, start) in enumerate(zip(names, starts, strict=False)):
        made = await client.post(
            "/api/v1/bookings",
            json={**BOOKING, "start": start,
                  "citizen": {"name": name, "email": f"s{n}@example.org"}},
        )  # fmt: skip
        assert made.status_code == 201, (name, made.text)
        assert made.json()["citizen"]["name"] == name
    async with core.sessions() as session:
        stored = set(await session.scalars(select(m.Booking.attendee_name)))
    assert set(names) <= stored


# -- garbage credentials, ids and references -----------------------------------------------------

GARBAGE_TOKENS = [
    "",
    "sk_",
    "sk_admin_",
    "sk_admin_' OR '1'='1",
    "sk_agent_" + "A" * 5000,
    "sk_" + "x" * 100_000,
    "x" * 100_000,
    "../../../etc/passwd",
    "null",
    "Bearer",
    "%00",
    "\t",
]
GARBAGE_IDS = [
    "x",
    "rathaus.",
    "rathaus.*",
    "{rathaus}.x",
    "rathaus.x:h:*",
    "impfzentrum." + "A" * 140,
    ".",
    "..",
    "%00",
    "' OR 1=1 --",
    "ABCD-EFGH",
    "abcd efgh",
    "IIII-LLLL",
    "A" * 19,
    "0",
    "-1",
    "2147483648",  # one past an SQL INTEGER: PostgreSQL would refuse the parameter (a 500)
    "99999999999999999999",
    "1e3",
]


async def test_garbage_credentials(client: Client, core: Core) -> None:
    made = (await client.post("/api/v1/bookings", json=BOOKING)).json()
    reference = made["reference"]
    attempts = []
    for token in GARBAGE_TOKENS:
        for scheme in ("Bearer", "bearer", "Basic", "Token"):
            auth = {"Authorization": f"{scheme} {token}".strip()}
            for method, path in (
                ("GET", "/api/v1/keys"),
                ("GET", f"/api/v1/bookings/{reference}"),
                ("POST", f"/api/v1/bookings/{reference}/cancel"),
                ("GET", "/api/v1/agent/next-slots"),
                ("GET", "/api/v1/waitlist/1"),
                ("GET", "/api/v1/calendars/schalter-1/agenda"),
            ):
                label = f"{scheme} {token[:30]!r} {method} {path}"
                attempts.append((label, client.request(method, path, headers=auth)))
        attempts.append(
            (f"?token={token[:30]!r}",
             client.get(f"/api/v1/bookings/{reference}/calendar.ics",
                        params={"token": token[:5000]}))
        )  # fmt: skip
        attempts.append(
            (f"feed ?token={token[:30]!r}",
             client.get("/api/v1/calendars/schalter-1/feed.ics", params={"token": token[:5000]}))
        )  # fmt: skip
    await refused(core, attempts)
    # the booking is untouched and its own token still works
    read = await client.get(f"/api/v1/bookings/{reference}", headers=bearer(made["manage_token"]))
    assert read.json()["status"] == "confirmed"


async def test_garbage_hold_ids_and_references(client: Client, core: Core, keys: Keys) -> None:
    live = (
        await client.post("/api/v1/holds", json={"service_id": "hund-anmelden", "start": START})
    ).json()
    made = (
        await client.post(
            "/api/v1/bookings", json={**BOOKING, "start": "2026-11-30T10:00:00+01:00"}
        )
    ).json()
    attempts = []
    for garbage in GARBAGE_IDS:
        quoted = quote(garbage, safe="")
        attempts += [
            (f"release {garbage!r}", client.delete(f"/api/v1/holds/{quoted}")),
            (f"confirm {garbage!r}",
             client.post("/api/v1/bookings", json={"hold_id": garbage, "citizen": CITIZEN})),
            (f"reschedule to {garbage!r}",
             client.post(f"/api/v1/bookings/{made['reference']}/reschedule",
                         json={"hold_id": garbage}, headers=bearer(made["manage_token"]))),
            (f"read {garbage!r}", client.get(f"/api/v1/bookings/{quoted}", headers=keys.agent)),
            (f"cancel {garbage!r}",
             client.post(f"/api/v1/bookings/{quoted}/cancel", headers=keys.agent)),
            (f"check in {garbage!r}",
             client.post(f"/api/v1/bookings/{quoted}/check-in", headers=keys.staff)),
            (f"accept {garbage!r}",
             client.post(f"/api/v1/waitlist/offers/{quoted}/accept", headers=keys.agent)),
            (f"audit {garbage!r}",
             client.get("/api/v1/audit", params={"booking": garbage}, headers=keys.admin)),
            (f"revoke key {garbage!r}", client.delete(f"/api/v1/keys/{quoted}",
                                                      headers=keys.admin)),
            (f"entry {garbage!r}", client.get(f"/api/v1/waitlist/{quoted}", headers=keys.agent)),
            (f"retry {garbage!r}",
             client.post(f"/api/v1/admin/notifications/{quoted}/retry", headers=keys.admin)),
        ]  # fmt: skip
    await refused(core, attempts, legit=(200,))
    # the live hold is still there and can be booked
    other = {"name": "Max Mustermann", "email": "max@example.org"}
    booked = await client.post(
        "/api/v1/bookings", json={"hold_id": live["hold_id"], "citizen": other}
    )
    assert booked.status_code == 201, booked.text


# -- huge headers --------------------------------------------------------------------------------


async def test_huge_headers(client: Client, core: Core, keys: Keys) -> None:
    body = {"service_id": "hund-anmelden", "start": START}
    attempts = [
        ("100 kB header", client.post("/api/v1/holds", json={"service_id": "x", "start": START},
                                      headers={"X-Junk": "j" * 100_000})),
        ("1000 headers", client.post("/api/v1/holds", json={"service_id": "x", "start": START},
                                     headers={f"X-Junk-{n}": "j" for n in range(1000)})),
        ("100 kB Accept-Language", client.post("/api/v1/holds", json={"service_id": "x",
                                                                      "start": START},
                                               headers={"Accept-Language": "en," * 30_000})),
        ("100 kB Idempotency-Key", client.post("/api/v1/holds", json=body,
                                               headers={"Idempotency-Key": "k" * 100_000})),
        ("empty Idempotency-Key", client.post("/api/v1/holds", json=body,
                                              headers={"Idempotency-Key": ""})),
        ("100 kB cookie", client.get("/api/v1/keys", headers={"Cookie": "a=" + "b" * 100_000})),
        ("100 kB If-None-Match", client.get("/api/v1/calendars/schalter-1/feed.ics",
                                            params={"token": "x"},
                                            headers={"If-None-Match": "\"x\"," * 20_000})),
        ("100 kB Content-Type", client.post("/api/v1/holds", content=b"{}",
                                            headers={"Content-Type": "application/json;"
                                                     + "a=b;" * 20_000})),
    ]  # fmt: skip
    await refused(core, attempts)
    fine = await client.get("/api/v1/locations", headers={"Accept-Language": "en," * 30_000})
    assert fine.status_code == 200


# -- hostile calendar files ----------------------------------------------------------------------


def ics(event: bytes) -> bytes:
    return (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        b"DTSTAMP:20261101T000000Z\r\nDTSTART;VALUE=DATE:20261208\r\n" + event
        + b"END:VEVENT\r\nEND:VCALENDAR\r\n"
    )  # fmt: skip


async def test_hostile_calendar_files(client: Client, core: Core, keys: Keys) -> None:
    url = "/api/v1/calendars/schalter-1/closures/import"
    files = [
        ("a 400-character UID", ics(b"UID:" + b"u" * 400 + b"\r\nSUMMARY:Fest\r\n")),
        ("a 2000-character SUMMARY", ics(b"UID:long-summary\r\nSUMMARY:" + b"s" * 2000 + b"\r\n")),
        ("NUL in the SUMMARY", ics(b"UID:nul\r\nSUMMARY:Fe\x00st\r\n")),
        ("NUL in the UID", ics(b"UID:n\x00ul\r\nSUMMARY:Fest\r\n")),
        ("invalid UTF-8", ics(b"UID:utf\r\nSUMMARY:\xff\xfe\r\n")),
        ("SQL in the SUMMARY", ics(b"UID:sql\r\nSUMMARY:'; DROP TABLE closures; --\r\n")),
        ("5000 nested components", b"BEGIN:VCALENDAR\r\n" + b"BEGIN:X\r\n" * 5000
         + b"END:X\r\n" * 5000 + b"END:VCALENDAR\r\n"),
        ("binary", bytes(range(256)) * 100),
    ]  # fmt: skip
    problems = []
    for label, body in files:
        before = await state(core)
        answer = await client.post(
            url, content=body, headers={**keys.staff, "Content-Type": "text/calendar"}
        )
        why = complaint(answer, legit=(200,))
        if why is not None:
            problems.append(f"{label}: {why}")
        elif answer.status_code >= 400 and await state(core) != before:
            problems.append(f"{label}: {answer.status_code} but wrote something")
    assert not problems, "\n".join(problems)
    async with core.sessions() as session:
        reasons = list(await session.scalars(select(m.Closure.reason)))
    assert all("\x00" not in reason and len(reason) <= 300 for reason in reasons)
