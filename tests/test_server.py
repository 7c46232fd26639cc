"""The real ``scheduler serve`` through HTTP: the demo from an empty folder, its private Redis, a
clean stop on a signal, several workers on PostgreSQL, and logs without query strings."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.serverproc import (
    ServerProcess,
    gone_within,
    is_running,
    read_cmdline,
    redis_folder,
    start_server,
)

PG_URL = os.environ.get("SCHEDULER_TEST_DATABASE_URL")
SERVER_DB = "scheduler_server_test"


def slots_path(days_ahead: int = 7, length: int = 6) -> str:
    start = date.today() + timedelta(days=days_ahead)
    end = start + timedelta(days=length)
    return f"/api/v1/services/hund-anmelden/slots?from={start}&to={end}"


def check_slots(server: ServerProcess) -> None:
    status, headers, body = server.get(slots_path())
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    rows = json.loads(body)
    assert rows, "a week from today, in a week and a day, the demo has free dog registrations"
    for row in rows:
        assert set(row) == {"start", "end", "free"}
        start, end = datetime.fromisoformat(row["start"]), datetime.fromisoformat(row["end"])
        assert start.utcoffset() is not None
        assert end - start == timedelta(minutes=15)
        assert row["free"] > 0
    assert min(row["start"][:10] for row in rows) >= str(date.today() + timedelta(days=7))


def test_demo_from_an_empty_folder_and_a_clean_stop(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    with start_server(work, args=["--demo"]) as server:
        # no SCHEDULER_REDIS_URL: it runs its own Redis on a socket in a private folder
        redis = server.redis_pids()
        assert len(redis) == 1, [read_cmdline(pid) for pid in server.children()]
        redis_cmdline = read_cmdline(redis[0])
        assert "scheduler-redis-" in redis_cmdline
        socket_dir = redis_folder(redis_cmdline)
        assert socket_dir is not None
        assert socket_dir.name.startswith("scheduler-redis-")
        assert socket_dir.exists()

        status, _, body = server.get("/health")
        assert (status, json.loads(body)) == (200, {"status": "ok", "sql": "ok", "redis": "ok"})

        status, _, body = server.get("/api/v1/services")
        assert status == 200
        assert "hund-anmelden" in [s["id"] for s in json.loads(body)]

        check_slots(server)
        # links name the port it listens on (no SCHEDULER_BASE_URL is set)
        start = json.loads(server.get(slots_path())[2])[0]["start"]
        status, _, body = server.post(
            "/api/v1/bookings",
            {"service_id": "hund-anmelden", "start": start,
             "citizen": {"name": "Erika Mustermann", "email": "erika@example.org"}},
        )  # fmt: skip
        assert status == 201, body
        deadline = time.monotonic() + 30
        while not list((work / "mail").rglob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (mail,) = (work / "mail").rglob("*.eml")
        message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",))
        assert text is not None
        assert f"http://127.0.0.1:{server.port}/buchung/" in text.get_content()

        status, headers, body = server.get("/schema/openapi.json")
        assert status == 200
        schema = json.loads(body)
        assert "/api/v1/services/{service_id}/slots" in schema["paths"]
        status, headers, body = server.get("/schema")
        assert status == 200
        assert headers["content-type"].startswith("text/html")
        assert b"<html" in body.lower()

        # the demo keeps its state in the working directory
        assert (work / "scheduler.db").is_file()
        secret = work / "scheduler.secret"
        assert secret.is_file()
        assert secret.stat().st_mode & 0o077 == 0
        assert len(secret.read_text().strip()) >= 32

        started = time.monotonic()
        code = server.stop(signal.SIGTERM, timeout=15)
        assert time.monotonic() - started < 15
        assert code == 0, server.stderr()[-2000:]
        assert gone_within(redis, 5), f"private Redis {redis} outlived the server"
        assert not socket_dir.exists()
        assert "Traceback" not in server.stderr()


def test_sigint_stops_it_too_and_a_restart_keeps_the_secret(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    with start_server(work) as server:
        redis = server.redis_pids()
        assert redis
        secret = (work / "scheduler.secret").read_text()
        code = server.stop(signal.SIGINT, timeout=15)
        assert code == 0, server.stderr()[-2000:]
        assert gone_within(redis, 5)
    # a second start in the same folder: same database, same secret, a new Redis
    with start_server(work) as again:
        assert (work / "scheduler.secret").read_text() == secret
        assert again.redis_pids()
        assert again.redis_pids() != redis
        check_slots(again)


def test_logs_carry_no_query_strings(tmp_path: Path) -> None:
    with start_server(tmp_path / "demo") as server:
        path = "/api/v1/services/hund-anmelden/slots?from=2026-12-01&to=2026-12-02&token=SECRETXYZ"
        status, _, _ = server.get(path)
        assert status in (200, 422)  # 2026-12-01 may be in the past when this runs
        status, _, _ = server.get("/api/v1/nothing?token=SECRETXYZ")
        assert status == 404
        status, _, _ = server.get("/api/v1/services?token=SECRETXYZ")
        assert status == 200
        # wait until the request lines are written, so the test can see what was logged
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            paths = [r.get("path") for r in server.log_records() if r.get("msg") == "request"]
            if "/api/v1/services" in paths:
                break
            time.sleep(0.05)
        assert "/api/v1/services/hund-anmelden/slots" in paths
        assert "/api/v1/services" in paths
        server.stop()
    assert "SECRETXYZ" not in server.output()
    assert "token=" not in server.output()


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


@pytest.fixture
def server_pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("SCHEDULER_TEST_DATABASE_URL is not set: several workers need PostgreSQL")
    base, _, _ = PG_URL.rpartition("/")
    asyncio.run(_admin(PG_URL, f"DROP DATABASE IF EXISTS {SERVER_DB} WITH (FORCE)"))
    asyncio.run(_admin(PG_URL, f"CREATE DATABASE {SERVER_DB}"))
    yield f"{base}/{SERVER_DB}"
    asyncio.run(_admin(PG_URL, f"DROP DATABASE IF EXISTS {SERVER_DB} WITH (FORCE)"))


async def _hammer(base_url: str, paths: list[str]) -> list[int]:
    async with aiohttp.ClientSession(base_url) as session:

        async def one(path: str) -> int:
            async with session.get(path) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one(p) for p in paths))


@pytest.mark.slow
def test_two_workers_on_postgresql(tmp_path: Path, server_pg_url: str) -> None:
    env = {"SCHEDULER_DATABASE_URL": server_pg_url, "SCHEDULER_RATE_LIMITS": "off"}
    with start_server(tmp_path / "pg", args=["--demo"], workers=2, env=env) as server:
        workers = server.worker_pids()
        assert len(workers) == 2, [read_cmdline(pid) for pid in server.children()]
        redis = server.redis_pids()
        assert len(redis) == 1, "the parent starts one Redis that both workers share"
        assert not (tmp_path / "pg" / "scheduler.db").exists()  # PostgreSQL, not SQLite

        paths = ["/health"] * 50 + [slots_path()] * 50
        statuses = asyncio.run(_hammer(server.base_url, paths))
        assert statuses == [200] * 100
        check_slots(server)

        # both workers came up completely and are still alive after the load
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            records = server.log_records()
            started = [r for r in records if r.get("msg") == "Application startup complete."]
            if len(started) >= 2:
                break
            time.sleep(0.1)
        assert len(started) == 2, server.stderr()[-3000:]
        assert all(is_running(pid) for pid in workers)

        everything = server.children()
        code = server.stop(signal.SIGTERM, timeout=15)
        assert code == 0, server.stderr()[-2000:]
        assert gone_within(everything, 5), [read_cmdline(p) for p in everything if is_running(p)]
