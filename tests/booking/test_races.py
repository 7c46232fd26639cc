"""Races across processes: the real server with two workers on PostgreSQL, hammered by
concurrent aiohttp clients. A control run with the guards switched off (the Lua check, the
conditional update and the CHECK constraint) must overbook: proof that the test can fail.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scheduler.booking.counters import Keys, decode_free
from scheduler.redisconn import connect
from tests.conftest import PG_URL
from tests.stack import Stack, service_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not PG_URL, reason="race tests need PostgreSQL (SCHEDULER_TEST_DATABASE_URL)"
    ),
]


@pytest.fixture
async def stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The server with two workers; ``request.param`` False: the control run, guards off."""
    manager = service_stack(tmp_path, guards=getattr(request, "param", True), prefix="race")
    found = await asyncio.to_thread(manager.__enter__)
    try:
        yield found
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


async def first_start(session: aiohttp.ClientSession, base: str, service: str) -> str:
    tomorrow = date.today() + timedelta(days=1)
    async with session.get(
        f"{base}/api/v1/services/{service}/slots",
        params={"from": str(tomorrow), "to": str(tomorrow)},
    ) as response:
        rows = await response.json()
    return str(rows[0]["start"])


def person(n: int) -> dict[str, str]:
    return {"name": f"Person {n}", "email": f"person{n}@example.org"}


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def over_capacity(stack: Stack) -> int:
    rows = await stack.sql("SELECT count(*) FROM slots WHERE booked > capacity")
    return int(rows[0][0])


async def hold_race(stack: Stack, attempts: int) -> tuple[Counter[int], list[str]]:
    base = stack.server.base_url
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = await first_start(session, base, "fuenf-plaetze")
        body = {"service_id": "fuenf-plaetze", "start": start}
        results = await asyncio.gather(
            *(post(session, f"{base}/api/v1/holds", body) for _ in range(attempts))
        )
        statuses = Counter(status for status, _ in results)
        holds = [answer["hold_id"] for status, answer in results if status == 201]
        confirms = await asyncio.gather(
            *(
                post(session, f"{base}/api/v1/bookings", {"hold_id": h, "citizen": person(n)})
                for n, h in enumerate(holds)
            )
        )
        booked = [answer["reference"] for status, answer in confirms if status == 201]
    return statuses, booked


async def test_500_concurrent_holds_for_5_seats(stack: Stack) -> None:
    statuses, booked = await hold_race(stack, 500)
    assert statuses == Counter({201: 5, 409: 495})
    assert len(booked) == 5
    rows = await stack.sql("SELECT count(*) FROM bookings WHERE status = 'confirmed'")
    assert rows[0][0] == 5
    assert await over_capacity(stack) == 0
    rows = await stack.sql("SELECT max(booked) FROM slots")
    assert rows[0][0] == 5


@pytest.mark.parametrize("stack", [False], indirect=True)
async def test_control_without_guards_overbooks(stack: Stack) -> None:
    statuses, booked = await hold_race(stack, 100)
    assert statuses[201] > 5
    assert len(booked) > 5
    assert await over_capacity(stack) > 0  # the race is real: without guards it overbooks


async def test_two_pools_race(stack: Stack) -> None:
    base = stack.server.base_url
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        start = await first_start(session, base, "zwei-pools")
        results = await asyncio.gather(
            *(
                post(session, f"{base}/api/v1/bookings",
                     {"service_id": "zwei-pools", "start": start, "citizen": person(n)})
                for n in range(200)
            )
        )  # fmt: skip
    statuses = Counter(status for status, _ in results)
    assert statuses == Counter({201: 2, 409: 198})  # two rooms
    calendars = [set(a["appointments"][0]["calendar_ids"]) for s, a in results if s == 201]
    rooms = [c & {"room-1", "room-2"} for c in calendars]
    clerks = [c & {"clerk-1", "clerk-2", "clerk-3"} for c in calendars]
    assert all(len(r) == 1 for r in rooms)
    assert rooms[0] != rooms[1]
    assert all(len(c) == 1 for c in clerks)
    assert clerks[0] != clerks[1]
    assert await over_capacity(stack) == 0


async def counters_match_sql(stack: Stack) -> list[str]:
    """Every counter equals capacity - booked for the race location (no live holds left)."""
    client = connect(stack.redis.url)
    problems = []
    try:
        rows = await stack.sql(
            "SELECT calendar_id, day, cell, capacity - booked FROM slots WHERE day >= :d",
            d=date.today(),
        )
        by_key: dict[tuple[str, date], dict[int, int]] = {}
        for calendar_id, day, cell, free in rows:
            by_key.setdefault((calendar_id, day), {})[cell] = free
        keys = Keys("amt")
        for (calendar_id, day), cells in by_key.items():
            values = decode_free(await client.get(keys.day(calendar_id, day)))
            for cell, free in cells.items():
                got = values[cell] if cell < len(values) else 0
                if got != free:
                    problems.append(f"{calendar_id} {day} {cell}: redis {got} sql {free}")
    finally:
        await client.aclose()
    return problems


async def test_redis_flushed_and_killed_during_confirms(stack: Stack) -> None:
    base = stack.server.base_url
    tomorrow = date.today() + timedelta(days=1)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        async with session.get(
            f"{base}/api/v1/services/fuenf-plaetze/slots",
            params={"from": str(tomorrow), "to": str(tomorrow)},
        ) as response:
            starts = [row["start"] for row in await response.json()][:20]  # 100 seats
        seen: list[tuple[int, Any]] = []
        done = asyncio.Event()

        async def client(n: int) -> None:
            attempt = 0
            while attempt < 10 or not done.is_set():  # until the faults are over
                attempt += 1
                body = {
                    "service_id": "fuenf-plaetze",
                    "start": starts[(n + attempt) % len(starts)],
                    "citizen": person(n * 10_000 + attempt),
                }
                try:
                    seen.append(await post(session, f"{base}/api/v1/bookings", body))
                except aiohttp.ClientError as exc:  # pragma: no cover - reported below
                    seen.append((0, str(exc)))
                await asyncio.sleep(0.02)

        async def faults() -> None:
            await asyncio.sleep(0.5)
            redis = connect(stack.redis.url)
            await redis.flushall()
            await redis.aclose()
            await asyncio.sleep(1.5)
            stack.redis.kill()
            await asyncio.sleep(0.5)
            stack.redis.start()
            await asyncio.sleep(0.5)
            done.set()

        await asyncio.gather(*(client(n) for n in range(40)), faults())
    statuses = Counter(status for status, _ in seen)
    assert set(statuses) <= {201, 409, 503}, statuses
    assert statuses[503] > 0  # the faults were felt
    assert statuses[201] > 0
    created = {answer["reference"].replace("-", "") for status, answer in seen if status == 201}
    rows = await stack.sql("SELECT reference FROM bookings WHERE status = 'confirmed'")
    assert {r[0] for r in rows} == created  # every 201 has its row, and nothing else was booked
    assert await over_capacity(stack) == 0
    # the service rebuilds its counters after the restart (its watch job runs every 5 s)
    for _ in range(60):
        if not await counters_match_sql(stack):
            break
        await asyncio.sleep(0.5)
    assert await counters_match_sql(stack) == []
