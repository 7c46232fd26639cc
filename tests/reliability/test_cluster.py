"""Redis Cluster: 3 masters with 3 replicas (``tests/cluster.py``), real processes and signals.

* The reservation suite runs unchanged on the cluster (``SCHEDULER_TEST_REDIS=cluster`` in a
  pytest subprocess): every key of one operation shares the location's hash tag.
* The change feed subscribes at one node; when that node is killed it subscribes at another.
* A rush through the real server while the master that owns the demo location's slot
  (``{rathaus}``) gets SIGKILL: during the failover holds answer 503 with a code, never 500;
  once the replica is promoted booking works again (redis-py loads the scripts into the new
  master after its NOSCRIPT answer); the service notices the failover like a restart and
  rebuilds the counters. Afterwards no slot is over capacity, every 201 has its row, and the
  counters equal SQL minus the live holds after a reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.booking import scripts
from scheduler.booking.changes import CHANNEL, ChangeFeed
from scheduler.booking.core import Core
from scheduler.booking.counters import Keys, decode_free
from scheduler.booking.db import make_sessionmaker
from scheduler.booking.holds import CellRef
from scheduler.clock import SystemClock
from scheduler.redisconn import connect
from tests.cluster import ClusterNode, RedisClusterProcs
from tests.conftest import PG_URL, SECRET
from tests.serverproc import ServerProcess, start_server
from tests.stack import pg_database


def _cluster_capable() -> bool:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        return False
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.", version)
    return found is not None and int(found.group(1)) >= 7  # cluster-port needs Redis 7


pytestmark = [
    pytest.mark.slow,
    # in CI (CI=true) a machine without them fails these tests instead of skipping them
    pytest.mark.skipif(
        not _cluster_capable() and os.environ.get("CI") != "true",
        reason="needs redis-server and redis-cli 7+",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
# The Redis-heavy in-process tests: about a minute on SQLite with a cluster (every kill and
# start of "Redis" there kills and creates the whole cluster). test_contingents.py and
# tests/api/test_rate_limits.py pass on a cluster as well (another minute, left out for time).
SUITE = [
    "tests/booking/test_reservation.py",
    "tests/booking/test_counters.py",
    "tests/booking/test_ratelimit.py",
    "tests/booking/test_changes.py",
]
RATHAUS_KEY = Keys("rathaus").version
SERVICE = "hund-anmelden"  # demo: one of three clerks at the rathaus, 15 minutes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterProcs]:
    procs = RedisClusterProcs(tmp_path / "cluster")
    procs.start()
    try:
        yield procs
    finally:
        procs.stop()


# -- the suite, unchanged ----------------------------------------------------------------------


def test_the_reservation_suite_passes_on_a_cluster(tmp_path: Path) -> None:
    env = {**os.environ, "SCHEDULER_TEST_REDIS": "cluster"}
    env.pop("SCHEDULER_TEST_DATABASE_URL", None)  # SQLite: the Redis side is what is tested
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *SUITE]
    with (tmp_path / "suite.log").open("wb") as log:
        done = subprocess.run(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=900
        )
    output = (tmp_path / "suite.log").read_text(errors="replace")
    assert done.returncode == 0, output[-6000:]
    assert re.search(r"\d+ passed", output), output[-2000:]
    print(output.strip().splitlines()[-1])


# -- the change feed ---------------------------------------------------------------------------


def _subscribed_node(cluster: RedisClusterProcs) -> ClusterNode | None:
    """The node where a client is subscribed to a channel (the feed's connection)."""
    for node in cluster.living():
        with node.client() as client:
            if any(int(c.get("sub", 0)) for c in client.client_list()):
                return node
    return None


async def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.05)


async def test_the_change_feed_subscribes_at_another_node_when_its_node_dies(
    cluster: RedisClusterProcs,
) -> None:
    client = connect(cluster.url)
    # published from a script on the location's master, as the gate's scripts do
    notice = client.register_script(f"redis.call('PUBLISH', '{CHANNEL}', ARGV[1]) return 1")
    feed = ChangeFeed(client)
    feed.start()
    try:
        for round_ in range(2):
            await _until(lambda: feed.live, 15, "the feed is subscribed")
            feed.remember("rathaus", 7, feed.generation("rathaus"))
            assert feed.known("rathaus") == 7
            await notice(keys=[RATHAUS_KEY], args=["rathaus"])
            await _until(lambda: feed.known("rathaus") is None, 5, "the notice arrives")
            if round_ == 1:
                break
            node = _subscribed_node(cluster)
            assert node is not None
            node.kill()  # a master (then a replica takes over) or a replica
            await _until(lambda: not feed.live, 10, "the feed notices its node is gone")
            assert feed.known("rathaus") is None  # nothing remembered while not subscribed
            await asyncio.to_thread(cluster.wait_ok)
            await _until(lambda: feed.live, 20, "the feed subscribes again")
            again = _subscribed_node(cluster)
            assert again is not None
            assert again.port != node.port
    finally:
        await feed.stop()
        await client.aclose()


# -- failover during a rush through the real server --------------------------------------------


def _script_loaded(node: ClusterNode, script: str) -> bool:
    with node.client() as client:
        return bool(client.script_exists(hashlib.sha1(script.encode()).hexdigest())[0])


async def _sql(engine: AsyncEngine, query: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(query), params))


async def _live_hold_seats(redis: Any, now_ms: int) -> Counter[tuple[str, date, int]]:
    """Seats of the location's live holds (held or claimed, not expired) per cell."""
    keys = Keys("rathaus")
    seats: Counter[tuple[str, date, int]] = Counter()
    for token in await redis.zrange(keys.hold_index, 0, -1):
        state, expires, cells = await redis.hmget(keys.hold(token.decode()), "st", "exp", "cells")
        if state in (b"held", b"claimed") and int(expires) > now_ms:
            for cell in CellRef.decode_all(cells.decode()):
                seats[(cell.calendar_id, cell.day, cell.cell)] += cell.seats
    return seats


async def _counter_differences(engine: AsyncEngine, redis: Any, *, exact: bool) -> list[str]:
    """Cells whose Redis counter is not capacity - booked - live holds, at least 0 (``exact``),
    or shows more free seats than that (not ``exact``: a reconcile may hide a seat until the
    next)."""
    live = await _live_hold_seats(redis, int(time.time() * 1000))
    rows = await _sql(
        engine,
        "SELECT s.calendar_id, s.day, s.cell, s.capacity - s.booked FROM slots s "
        "JOIN calendars c ON c.id = s.calendar_id WHERE c.location_id = 'rathaus' "
        "AND s.day >= :d",
        d=date.today(),
    )
    by_day: dict[tuple[str, date], list[tuple[int, int]]] = {}
    for calendar_id, day, cell, free in rows:
        if isinstance(day, str):
            day = date.fromisoformat(day)
        by_day.setdefault((calendar_id, day), []).append((cell, free))
    keys = Keys("rathaus")
    problems = []
    for (calendar_id, day), cells in sorted(by_day.items()):
        values = decode_free(await redis.get(keys.day(calendar_id, day)))
        for cell, free in cells:
            # a hold whose seat SQL has given to a booking (its confirmation was cut off by
            # the failover, or it was taken on writes the promoted replica never got) is still
            # subtracted: the counter stays at 0, and SQL refuses that hold's confirmation
            want = max(0, free - live[(calendar_id, day, cell)])
            got = values[cell] if cell < len(values) else 0
            if got != want if exact else got > want:
                problems.append(f"{calendar_id} {day} {cell}: redis {got}, SQL - holds {want}")
    return problems


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
async def served(
    request: pytest.FixtureRequest, tmp_path: Path, cluster: RedisClusterProcs
) -> AsyncIterator[tuple[ServerProcess, AsyncEngine]]:
    """The demo served on the cluster: SQLite with one worker, PostgreSQL with two."""
    env = {
        "SCHEDULER_REDIS_URL": cluster.url,
        "SCHEDULER_SECRET_KEY": SECRET,
        "SCHEDULER_LOG_LEVEL": "WARNING",
        "SCHEDULER_RATE_LIMITS": "off",  # one client address sends every request
    }
    workers = 1
    database = contextlib.ExitStack()
    if request.param == "postgresql":
        db_url, _ = await asyncio.to_thread(database.enter_context, pg_database("cluster"))
        env["SCHEDULER_DATABASE_URL"] = db_url
        workers = 2
    folder = tmp_path / "serve"
    db_url = env.get("SCHEDULER_DATABASE_URL", f"sqlite+aiosqlite:///{folder / 'scheduler.db'}")
    engine = create_async_engine(db_url, poolclass=NullPool)
    server_cm = start_server(folder, args=["--demo"], env=env, workers=workers, timeout=120)
    try:
        server = await asyncio.to_thread(server_cm.__enter__)
        try:
            yield server, engine
        finally:
            await asyncio.to_thread(server_cm.__exit__, None, None, None)
    finally:
        await engine.dispose()
        await asyncio.to_thread(database.close)


async def test_a_rush_survives_a_failover_of_the_locations_master(
    cluster: RedisClusterProcs, served: tuple[ServerProcess, AsyncEngine]
) -> None:
    server, engine = served
    base = server.base_url
    redis = connect(cluster.url)
    master = cluster.master_of(RATHAUS_KEY)
    (replica,) = cluster.replicas_of(master)

    seen: list[tuple[float, int, Any]] = []  # (request start, status, answer)
    holds: list[str] = []
    promoted_at: list[float] = []
    faults: list[str] = []
    stop = asyncio.Event()
    today = date.today()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        async with session.get(
            f"{base}/api/v1/services/{SERVICE}/slots",
            params={"from": str(today), "to": str(today + timedelta(days=27))},
        ) as response:
            starts = [row["start"] for row in await response.json()]
        assert len(starts) >= 100

        async def client(n: int) -> None:
            attempt = 0
            while not stop.is_set():
                attempt += 1
                start = starts[(n * 37 + attempt * 11) % len(starts)]
                person = {"name": f"Person {n}-{attempt}", "email": f"p{n}.{attempt}@example.org"}
                if n % 5 == 0:  # a hold left to expire later: a live hold at the end
                    url, body = f"{base}/api/v1/holds", {"service_id": SERVICE, "start": start}
                else:
                    url = f"{base}/api/v1/bookings"
                    body = {"service_id": SERVICE, "start": start, "citizen": person}
                began = time.monotonic()
                try:
                    async with session.post(url, json=body) as response:
                        answer = await response.json(content_type=None)
                        seen.append((began, response.status, answer))
                        if response.status == 201 and "hold_id" in answer:
                            holds.append(answer["hold_id"])
                except (aiohttp.ClientError, TimeoutError) as exc:
                    seen.append((began, 0, type(exc).__name__))
                await asyncio.sleep(0.05)

        async def inject() -> None:
            await asyncio.sleep(1.5)
            epoch_before = int(await redis.get(Keys("rathaus").epoch) or 0)
            # Redis 7 does not replicate the script cache: the replica to be promoted has none
            assert _script_loaded(master, scripts.HOLD)
            assert not _script_loaded(replica, scripts.HOLD)
            master.kill(signal.SIGKILL)
            faults.append(f"SIGKILL master {master.port} of {{rathaus}}")
            promoted = await asyncio.to_thread(cluster.wait_failover, master, RATHAUS_KEY)
            promoted_at.append(time.monotonic())
            faults.append(f"replica {promoted.port} promoted")
            assert promoted.port == replica.port
            # the service notices the new master like a restart and rebuilds the counters
            deadline = time.monotonic() + 20
            while int(await redis.get(Keys("rathaus").epoch) or 0) <= epoch_before:
                assert time.monotonic() < deadline, "no rebuild after the failover"
                await asyncio.sleep(0.2)
            faults.append("counters rebuilt")
            await asyncio.sleep(3.0)  # and booking goes on
            stop.set()

        await asyncio.gather(*(client(n) for n in range(16)), inject())

    try:
        statuses = Counter(status for _, status, _ in seen)
        codes = Counter(
            (status, answer.get("code"))
            for _, status, answer in seen
            if status >= 400 and isinstance(answer, dict)
        )
        # a booking, a clear refusal, or 503 with its code while the slot had no master
        assert set(statuses) <= {201, 409, 503}, (statuses, codes)
        assert {code for (status, code) in codes if status == 503} <= {"reservation_unavailable"}
        after = Counter(s for began, s, _ in seen if began > promoted_at[0] + 1.0)
        assert after[201] >= 10, after  # booking works again on the promoted replica
        assert _script_loaded(replica, scripts.HOLD)  # loaded after its NOSCRIPT answer

        created = {
            a["reference"].replace("-", "") for _, s, a in seen if s == 201 and "reference" in a
        }
        confirmed = {
            r[0]
            for r in await _sql(engine, "SELECT reference FROM bookings WHERE status = 'confirmed'")
        }
        assert created == confirmed  # every 201 has its row, nothing else was booked
        over = await _sql(engine, "SELECT count(*) FROM slots WHERE booked > capacity")
        assert over[0][0] == 0

        # as the service left them: never more free seats than SQL minus live holds
        assert await _counter_differences(engine, redis, exact=False) == []
        # after a reconcile: exactly SQL minus live holds (hold records survived the failover)
        core = Core(
            engine=engine, sessions=make_sessionmaker(engine), redis=redis,
            clock=SystemClock(), secret_key=SECRET,
        )  # fmt: skip
        await core.refresh_catalog(force=True)
        await core.rebuild_counters(["rathaus"])
        assert await _counter_differences(engine, redis, exact=True) == []
        print(
            f"faults: {faults}; answers {dict(statuses)} {dict(codes)}; after promotion "
            f"{dict(after)}; bookings {len(confirmed)}; holds {len(holds)}"
        )
    finally:
        await redis.aclose()
