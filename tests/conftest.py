"""Shared fixtures: a real Redis server per test session (which tests may kill and restart),
and every database backend: SQLite always, PostgreSQL when SCHEDULER_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.app import create_app
from scheduler.booking.core import Core
from scheduler.booking.db import make_engine, make_sessionmaker, migrate
from scheduler.booking.models import Base
from scheduler.booking.seed import apply_seed, load_seed_file
from scheduler.booking.slots import materialize_all
from scheduler.clock import ManualClock
from scheduler.redisconn import connect
from scheduler.redisproc import RedisServer
from scheduler.resources import demo_seed
from scheduler.settings import Settings
from tests.cluster import RedisClusterProcs
from tests.snapshots import PostgresSnapshots, SqliteTemplates, seed_key, sqlite_path

PG_URL = os.environ.get("SCHEDULER_TEST_DATABASE_URL")
# Monday 2026-11-23, 07:00 in Berlin: the fixed "now" of the tests.
T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"

BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


# SCHEDULER_TEST_REDIS=cluster: the session's Redis is a Redis Cluster of 3 masters and 3
# replicas (tests/cluster.py) and the service connects with redis+cluster://; unset or
# "standalone": one redis-server on a Unix socket.
TEST_REDIS = os.environ.get("SCHEDULER_TEST_REDIS", "standalone")
if TEST_REDIS not in ("standalone", "cluster"):
    raise RuntimeError("SCHEDULER_TEST_REDIS must be 'standalone' or 'cluster'")


def start_test_redis(folder: Path) -> RedisServer | RedisClusterProcs:
    """A started private Redis for a test of its own (e.g. behind a server process): a
    cluster under SCHEDULER_TEST_REDIS=cluster. Both have ``url``, ``kill()``, ``start()``
    and ``stop()``."""
    server: RedisServer | RedisClusterProcs = (
        RedisClusterProcs(folder) if TEST_REDIS == "cluster" else RedisServer(folder)
    )
    server.start()
    return server


def _redis_alive(server: RedisServer | RedisClusterProcs) -> bool:
    if isinstance(server, RedisClusterProcs):
        return all(node.running() for node in server.nodes)
    return server.process is not None and server.process.poll() is None


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer | RedisClusterProcs]:
    """The session's Redis; tests may ``kill()`` it (all of it, for a cluster) and
    ``start()`` it again (empty, with a new run id)."""
    server = start_test_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: RedisServer | RedisClusterProcs) -> AsyncIterator[str]:
    """The test Redis, empty at the start of each test (it is private to the test run)."""
    if not _redis_alive(redis_server):
        redis_server.start()
    client = connect(redis_server.url)
    await client.flushall()
    await client.aclose()
    return redis_server.url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    """A database of its own for this test run, created beside SCHEDULER_TEST_DATABASE_URL's
    (so parallel runs never disturb each other), dropped at the end."""
    if not PG_URL:
        yield None
        return
    import asyncio

    name = f"scheduler_test_{os.getpid()}"
    base, _, _ = PG_URL.rpartition("/")

    async def admin(sql: str) -> None:
        engine = create_async_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    yield f"{base}/{name}"
    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


_migrated: dict[str, bool] = {}


async def _truncate(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.begin() as conn:
        names = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if url.startswith("postgresql"):
            await conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        else:
            for name in names:
                await conn.execute(text(f"DELETE FROM {name}"))
    await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplates:
    return SqliteTemplates(tmp_path_factory.mktemp("templates"))


@pytest.fixture(scope="session")
def pg_snapshots(pg_url: str | None) -> PostgresSnapshots | None:
    return PostgresSnapshots(pg_url) if pg_url else None


@pytest.fixture(params=BACKENDS)
async def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_url: str | None,
    sqlite_templates: SqliteTemplates,
) -> str:
    """An empty, migrated database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        await sqlite_templates.empty(path)
        return f"sqlite+aiosqlite:///{path}"
    assert pg_url is not None
    if not _migrated.get(pg_url):
        await migrate(pg_url)
        _migrated[pg_url] = True
    else:
        await _truncate(pg_url)
    return pg_url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings(db_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        redis_url=redis_url,
        secret_key=SECRET,
        mail_dir=str(tmp_path / "mail"),
    )


@pytest.fixture
async def core(
    settings: Settings,
    clock: ManualClock,
    sqlite_templates: SqliteTemplates,
    pg_snapshots: PostgresSnapshots | None,
) -> AsyncIterator[Core]:
    """The booking core on the demo municipality, seeded at the clock's now with its slots to
    the horizon (built once per session, copied after: ``tests/snapshots.py``), counters
    built."""
    engine = make_engine(settings.database_url)
    redis = connect(settings.redis_url or "")
    sessions = make_sessionmaker(engine)
    core = Core(
        engine=engine,
        sessions=sessions,
        redis=redis,
        clock=clock,
        secret_key=SECRET,
        hold_seconds=settings.hold_seconds,
        horizon_days=settings.horizon_days,
    )

    async def build() -> None:
        async with sessions() as session, session.begin():
            await apply_seed(session, load_seed_file(demo_seed()), clock.now())
        async with sessions() as session, session.begin():
            await materialize_all(session, clock.now(), settings.horizon_days)

    key = seed_key(clock.now(), settings.horizon_days)
    if settings.database_url.startswith("sqlite"):
        await sqlite_templates.seeded(key, sqlite_path(settings.database_url), build)
    else:
        assert pg_snapshots is not None
        await pg_snapshots.seeded(key, build)
    await core.refresh_catalog(force=True)
    await core.rebuild_counters()
    # the loop its connections belong to: a synchronous test driving the core (the stateful
    # model) runs on it, whatever another test's asyncio.run() left as the current loop
    core.test_loop = asyncio.get_running_loop()  # type: ignore[attr-defined]
    yield core
    await redis.aclose()
    await engine.dispose()


@pytest.fixture
async def app(settings: Settings, clock: ManualClock, core: Core) -> Litestar:
    """The HTTP app on the same (already seeded) database as ``core``."""
    return create_app(settings, clock=clock, prepared=True, run_jobs=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client
