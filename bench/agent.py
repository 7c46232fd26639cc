"""Hotline benchmark: how fast an agent gets the next free starts while the caller waits.

    python -m bench.agent [--bookings 2000] [--runs 2000] [--postgres]

A database of its own (SQLite in a temporary folder; ``--postgres`` a fresh PostgreSQL database
beside SCHEDULER_BENCH_DATABASE_URL) gets the demo municipality with 120 days of slots and
``--bookings`` phone bookings made through the real booking core (hold and confirm), most of
them in the first weeks, so the next free starts lie behind booked-out days as they do in a
real town hall. A private Redis holds the counters. Then, in this process:

- ``core``: :func:`scheduler.booking.hotline.next_slots` for one service, limit 5;
- ``core, all services``: the same without a service (every phone service of every location);
- ``HTTP route``: ``GET /api/v1/agent/next-slots?service=…`` through the whole Litestar app
  (guards, key check, JSON), called as ASGI without a network or a client library;

each ``--runs`` times with a moving ``after`` (a different day each run, so no answer comes from
a per-answer cache), printing p50 and p99 in milliseconds (target: p99 < 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench.common import percentile
from scheduler.app import create_app
from scheduler.booking import apikeys, hotline
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.db import make_engine, make_sessionmaker, migrate
from scheduler.booking.errors import DomainError
from scheduler.booking.seed import apply_seed, load_seed_file
from scheduler.clock import SystemClock
from scheduler.redisconn import connect
from scheduler.redisproc import RedisServer
from scheduler.resources import demo_seed
from scheduler.settings import Settings

PG = os.environ.get(
    "SCHEDULER_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
SERVICE = "hund-anmelden"


async def fill(core: Core, bookings: int, errors: dict[str, int]) -> int:
    """``bookings`` phone bookings, earliest free starts first, over the town hall's services;
    refusals are counted in ``errors`` by code."""
    services = [s.id for s in core.catalog.services.values() if s.location_id == "rathaus"]
    now = core.clock.now()
    made = 0
    day = now.date()
    actor = Actor(key_id="bench", role="agent")
    while made < bookings:
        for service_id in services:
            _, starts = await core.free_starts(
                service_id, day, day + timedelta(days=6), now, channel="phone"
            )
            for start, _, free in starts[: max(1, len(starts) // 2)]:
                for _ in range(free):
                    if made >= bookings:
                        return made
                    request = BookingRequest(
                        citizen=Person(
                            f"Person {made}",
                            phone=f"+49 3935 {100000 + made}",
                            birth_date=date(1930, 1, 1) + timedelta(days=made),
                        ),
                        channel="phone",
                    )
                    try:
                        await core.bookings.book(
                            [service_id], start, 1, request, actor, None, lambda _: b""
                        )
                        made += 1
                    except DomainError as exc:
                        errors[exc.code] = errors.get(exc.code, 0) + 1
                        break
        day += timedelta(days=7)
        if day > now.date() + timedelta(days=120):
            return made
    return made


async def asgi_get(app: Any, path: str, query: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET through the ASGI app, no network."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    status = 0
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(body)


def figures(name: str, values: list[float]) -> None:
    print(
        f"{name:<24} p50 {statistics.median(values):6.2f} ms   "
        f"p99 {percentile(values, 0.99):6.2f} ms   max {max(values):6.2f} ms"
    )


async def main_async(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    redis_server = RedisServer(folder / "redis")
    redis_server.start()
    pg_name = None
    if args.postgres:
        pg_name = f"bench_agent_{uuid.uuid4().hex[:8]}"
        admin = create_async_engine(PG, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        db_url = PG.rsplit("/", 1)[0] + f"/{pg_name}"
    else:
        db_url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    try:
        await migrate(db_url)
        engine = make_engine(db_url)
        sessions = make_sessionmaker(engine)
        clock = SystemClock()
        async with sessions() as session, session.begin():
            await apply_seed(session, load_seed_file(demo_seed()), clock.now())
            _, agent_key = await apikeys.create_key(
                session,
                role="agent",
                name="bench",
                calendar_ids=[],
                known_calendars=set(),
                now=clock.now(),
            )
        redis = connect(redis_server.url)
        core = Core(
            engine=engine,
            sessions=sessions,
            redis=redis,
            clock=clock,
            secret_key=SECRET,
            horizon_days=120,
        )
        await core.refresh_catalog(force=True)
        await core.materialize()
        await core.rebuild_counters()
        started = time.perf_counter()
        errors: dict[str, int] = {}
        made = await fill(core, args.bookings, errors)
        print(
            f"{made} phone bookings made in {time.perf_counter() - started:.1f} s "
            f"({'PostgreSQL' if args.postgres else 'SQLite'}, 120 days of slots; refused: {errors})"
        )
        now = clock.now()
        # spread over the first 60 days, where the bookings are (each run another moment)
        afters = [now + timedelta(minutes=(977 * n) % (60 * 24 * 60)) for n in range(args.runs)]

        async def timed(call: Any) -> list[float]:
            out = []
            for after in afters:
                t = time.perf_counter()
                await call(after)
                out.append((time.perf_counter() - t) * 1000)
            return out

        first = await hotline.next_slots(
            core, service_ids=[SERVICE], location_id=None, after=now, limit=5
        )
        print(f"next free for {SERVICE}: {first[0].start.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
        figures(
            "core",
            await timed(
                lambda a: hotline.next_slots(
                    core, service_ids=[SERVICE], location_id=None, after=a, limit=5
                )
            ),
        )
        figures(
            "core, all services",
            await timed(
                lambda a: hotline.next_slots(
                    core, service_ids=[], location_id=None, after=a, limit=5
                )
            ),
        )

        settings = Settings(
            database_url=db_url,
            redis_url=redis_server.url,
            secret_key=SECRET,
            mail_dir=str(folder / "mail"),
            rate_limits=False,
        )
        app = create_app(settings, clock=clock, prepared=True, run_jobs=False)
        headers = {"authorization": f"Bearer {agent_key}"}
        async with app.lifespan():  # type: ignore[attr-defined]
            status, body = await asgi_get(
                app, "/api/v1/agent/next-slots", f"service={SERVICE}", headers
            )
            assert status == 200, body
            assert len(json.loads(body)) == 5

            async def route(after: datetime) -> None:
                query = f"service={SERVICE}&after={after.isoformat().replace('+', '%2B')}"
                status, body = await asgi_get(app, "/api/v1/agent/next-slots", query, headers)
                assert status == 200, body

            figures("HTTP route (ASGI)", await timed(route))
        await redis.aclose()
        await engine.dispose()
    finally:
        redis_server.stop()
        if pg_name is not None:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
