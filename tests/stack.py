"""The whole service for the cross-process tests: a private PostgreSQL database, a private Redis
(a cluster under ``SCHEDULER_TEST_REDIS=cluster``), a seed, and the real server with several
worker processes — set up and torn down in one place for the race, fault, soak and cluster
tests.

    with service_stack(tmp_path, workers=2) as stack:
        ...  # stack.server.base_url, stack.redis.kill(), await stack.sql("SELECT …")
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.redisproc import RedisServer
from tests.cluster import RedisClusterProcs
from tests.conftest import PG_URL, SECRET, start_test_redis
from tests.serverproc import ServerProcess, minimal_env, start_server

RACE_SEED = Path(__file__).resolve().parent / "fixtures" / "race.toml"


def admin_sql(sql: str, url: str | None = None) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE) on ``url`` (default: the
    test database's server), or in one on a given database."""

    async def run() -> None:
        if url is None:
            engine = create_async_engine(
                PG_URL or "", poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        else:
            engine = create_async_engine(url, poolclass=NullPool)
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(run())


@contextmanager
def pg_database(prefix: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database of this process: (url, name); dropped afterwards."""
    name = f"{prefix}_{os.getpid()}"
    url = f"{(PG_URL or '').rpartition('/')[0]}/{name}"
    admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin_sql(f"CREATE DATABASE {name}")
    try:
        yield url, name
    finally:
        admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Stack:
    server: ServerProcess
    redis: RedisServer | RedisClusterProcs
    db_url: str
    db_name: str
    engine: AsyncEngine
    env: dict[str, str]
    folder: Path

    async def sql(self, query: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(await conn.execute(text(query), params))


@contextmanager
def service_stack(
    folder: Path,
    *,
    workers: int = 2,
    seed: Path = RACE_SEED,
    guards: bool = True,
    env: dict[str, str] | None = None,
    prefix: str = "scheduler_stack",
) -> Iterator[Stack]:
    """The server with ``workers`` processes on a private PostgreSQL database and Redis, seeded
    from ``seed``. ``guards=False``: the control run — the Lua check, the conditional update and
    the seats CHECK constraint are off, so it must overbook. ``env``: more settings."""
    with pg_database(prefix) as (db_url, db_name):
        redis = start_test_redis(folder / "redis")
        settings = {
            "SCHEDULER_DATABASE_URL": db_url,
            "SCHEDULER_REDIS_URL": redis.url,
            "SCHEDULER_SECRET_KEY": SECRET,
            "SCHEDULER_LOG_LEVEL": "WARNING",
            "SCHEDULER_RATE_LIMITS": "off",  # one client address sends every request
            "SCHEDULER_UNSAFE_DISABLE_GUARDS": "off" if guards else "on",
            **(env or {}),
        }
        engine = create_async_engine(db_url, poolclass=NullPool)
        try:
            seeded = subprocess.run(
                [sys.executable, "-m", "scheduler.cli", "seed", str(seed)],
                cwd=folder, env=minimal_env(settings), capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            assert seeded.returncode == 0, seeded.stderr
            if not guards:
                admin_sql(
                    "ALTER TABLE slots DROP CONSTRAINT ck_slots_seats_within_capacity", db_url
                )
            with start_server(
                folder / "serve", args=[], env=settings, workers=workers, timeout=120
            ) as server:
                assert len(server.worker_pids()) >= min(workers, 2)
                yield Stack(server, redis, db_url, db_name, engine, settings, folder)
        finally:
            asyncio.run(engine.dispose())
            redis.stop()
