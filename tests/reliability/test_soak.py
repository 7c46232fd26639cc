"""A soak of mixed citizen traffic at half the measured capacity through the real server (two
workers on PostgreSQL) for two minutes (``python -m bench.soak`` runs it for ten): no error, and
the memory of every server process stays flat once the caches are warm."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import soak
from scheduler.redisproc import RedisServer
from tests.booking.test_races import RACE_SEED, _admin
from tests.conftest import PG_URL, SECRET
from tests.serverproc import minimal_env, start_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not PG_URL, reason="the soak needs PostgreSQL (SCHEDULER_TEST_DATABASE_URL)"
    ),
]

SECONDS = 120
# per process, over the second minute: the caches are bounded (a 10-minute run levels off
# about 25 MiB above the start after five minutes); the leak this caught once, caches that
# kept every counter version, grew 18 MiB a minute
GROWTH_MIB = 12


def test_two_minutes_at_half_capacity_without_errors_or_growing_memory(tmp_path: Path) -> None:
    name = f"scheduler_soak_{os.getpid()}"
    db_url = f"{(PG_URL or '').rpartition('/')[0]}/{name}"
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(f"CREATE DATABASE {name}")
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        "SCHEDULER_DATABASE_URL": db_url,
        "SCHEDULER_REDIS_URL": redis.url,
        "SCHEDULER_SECRET_KEY": SECRET,
        "SCHEDULER_LOG_LEVEL": "WARNING",
        "SCHEDULER_RATE_LIMITS": "off",
    }
    try:
        seeded = subprocess.run(
            [sys.executable, "-m", "scheduler.cli", "seed", str(RACE_SEED)],
            cwd=tmp_path, env=minimal_env(env), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert seeded.returncode == 0, seeded.stderr
        with start_server(tmp_path / "serve", args=[], env=env, workers=2, timeout=90) as server:
            pids = [server.pid, *server.worker_pids()]
            measured = asyncio.run(soak.capacity(server.base_url))
            asyncio.run(soak.soak_run(server.base_url, measured / 2, 15))  # warm-up
            run = asyncio.run(soak.soak_run(server.base_url, measured / 2, SECONDS, pids=pids))
    finally:
        redis.stop()
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert run.errors == []
    assert run.visits >= SECONDS * measured / 2 * 0.9, (run.visits, measured)
    assert run.late == 0
    settled = next(sample for at, sample in run.rss if at >= 60)
    end = run.rss[-1][1]
    growth = {pid: end[pid] - settled[pid] for pid in pids}
    print(f"soak: {measured:.0f} visits/s measured, {run.visits} visits, growth {growth} MiB")
    assert max(growth.values()) < GROWTH_MIB, (growth, run.rss)
