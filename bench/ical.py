"""Feed benchmark: a staff calendar with 10,000 bookings as an iCal subscription feed.

    python -m bench.ical [--bookings 10000] [--seconds 5]

Creates the demo municipality on SQLite, writes the bookings of one vaccination line directly
into the database (a fixture, not the thing measured), starts the real server and prints:
the first feed request (every event rendered), the first request after a restart (events come
pre-rendered from SQL), the request after one booking changed, the feed's size, and the
requests/s of the feed with and without a conditional request (If-None-Match -> 304).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from bench.common import load, start_server
from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.db import make_engine, make_sessionmaker
from scheduler.redisproc import RedisServer

CALENDAR = "impflinie-1"
SERVICE = "impfung-erstimpfung"


async def make_bookings(db_url: str, count: int) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        slots = list(
            await session.execute(
                select(m.Slot.id, m.Slot.starts_at, m.Slot.ends_at, m.Slot.capacity)
                .where(m.Slot.calendar_id == CALENDAR, m.Slot.starts_at > now)
                .order_by(m.Slot.starts_at)
            )
        )
        seats = [(sid, s, e) for sid, s, e, cap in slots for _ in range(cap)][:count]
        if len(seats) < count:
            raise SystemExit(f"only {len(seats)} seats on {CALENDAR}")
        bookings, appointments, links = [], [], []
        for n, (slot_id, start, end) in enumerate(seats):
            booking_id = uuid.uuid4().hex
            bookings.append({
                "id": booking_id, "reference": codes.new_reference(), "status": "confirmed",
                "channel": "phone", "location_id": "impfzentrum", "starts_at": start,
                "ends_at": end, "created_at": now, "updated_at": now,
                "attendee_name": f"Bürger{n} Muster{n}", "person_keys": [], "language": "de",
                "consent": True, "token_version": 1, "sequence": 0,
            })  # fmt: skip
            appointments.append({
                "booking_id": booking_id, "position": 0, "service_ids": [SERVICE],
                "starts_at": start, "ends_at": end, "calendar_ids": [CALENDAR],
            })  # fmt: skip
            links.append({"booking_id": booking_id, "slot_id": slot_id, "seats": 1})
        for chunk in range(0, count, 2000):
            await session.execute(insert(m.Booking), bookings[chunk : chunk + 2000])
            await session.execute(insert(m.Appointment), appointments[chunk : chunk + 2000])
            await session.execute(insert(m.BookingSlot), links[chunk : chunk + 2000])
        for slot_id, _, _ in seats:
            await session.execute(
                update(m.Slot).where(m.Slot.id == slot_id).values(booked=m.Slot.booked + 1)
            )
    await engine.dispose()


def timed_get(url: str, headers: dict[str, str] | None = None) -> tuple[float, int, bytes, Any]:
    """(ms, status, body, headers) of one GET; headers look up case-insensitively."""
    request = urllib.request.Request(url, headers=headers or {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request) as response:
            body = response.read()
            return (time.perf_counter() - started) * 1000, response.status, body, response.headers
    except urllib.error.HTTPError as exc:  # 304
        return (time.perf_counter() - started) * 1000, exc.code, b"", exc.headers


def main() -> None:
    parser = argparse.ArgumentParser(description="iCal feed of 10,000 bookings")
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ical-") as tmp, RedisServer() as redis:
        work = Path(tmp)
        db_url = f"sqlite+aiosqlite:///{work / 'scheduler.db'}"
        env = {"SCHEDULER_DATABASE_URL": db_url, "SCHEDULER_REDIS_URL": redis.url}
        server = start_server(work, env)
        server.stop()  # migrated and seeded; now the fixture
        asyncio.run(make_bookings(db_url, args.bookings))
        token = subprocess.run(
            [sys.executable, "-m", "scheduler.cli", "feeds", "create", "--calendar", CALENDAR],
            cwd=work, env={**os.environ, **env}, check=True, capture_output=True,
            text=True,
        ).stdout.strip()  # fmt: skip
        server = start_server(work, env, demo=False)
        url = f"{server.base}/api/v1/calendars/{CALENDAR}/feed.ics?token={token}"
        try:
            cold_ms, status, body, headers = timed_get(url)
            assert status == 200, status
            events = body.count(b"BEGIN:VEVENT")
            warm_ms, _, _, _ = timed_get(url)
        finally:
            server.stop()
        server = start_server(work, env, demo=False)
        url = f"{server.base}/api/v1/calendars/{CALENDAR}/feed.ics?token={token}"
        try:
            restart_ms, _, body2, headers = timed_get(url)
            assert body2 == body, "the feed changed across a restart"
            etag = headers["ETag"]
            # one booking changes: cancel it through the API with an admin key
            admin = subprocess.run(
                [sys.executable, "-m", "scheduler.cli", "keys", "create", "--role", "admin",
                 "--name", "bench"],
                cwd=work, env={**os.environ, **env}, check=True,
                capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            reference = body.split(b"Buchungscode: ", 1)[1][:9].decode()
            request = urllib.request.Request(
                f"{server.base}/api/v1/bookings/{reference}/cancel", method="POST",
                headers={"Authorization": f"Bearer {admin}"},
            )  # fmt: skip
            with urllib.request.urlopen(request) as response:
                assert json.loads(response.read())["status"] == "cancelled"
            changed_ms, status, body3, headers3 = timed_get(url, {"If-None-Match": etag})
            assert status == 200
            assert headers3["ETag"] != etag
            assert body3.count(b"STATUS:CANCELLED") == 1
            etag = headers3["ETag"]
            conditional = load(url, args.seconds, 64, header=f"If-None-Match: {etag}")
            plain = load(url, args.seconds, 16)
        finally:
            server.stop()
    print(f"feed of {events} events ({len(body) / 1e6:.1f} MB) on SQLite")
    print(f"  first request, every event rendered:        {cold_ms:7.0f} ms")
    print(f"  second request (cached document):           {warm_ms:7.1f} ms")
    print(f"  first request after a restart (from SQL):   {restart_ms:7.0f} ms")
    print(f"  request after one booking changed:          {changed_ms:7.0f} ms")
    print(f"  full feed, 16 connections:        {plain.line()}")
    print(f"  conditional (304), 64 connections: {conditional.line()}")


if __name__ == "__main__":
    main()
