"""A soak of mixed citizen traffic at half the measured capacity through the real server (two
workers on PostgreSQL) for two minutes (``python -m bench.soak`` runs it for ten): no error, and
the memory of every server process stays flat once the caches are warm."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import soak
from tests.conftest import PG_URL
from tests.stack import service_stack

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
    with service_stack(tmp_path, prefix="soak") as stack:
        server = stack.server
        pids = [server.pid, *server.worker_pids()]
        measured = asyncio.run(soak.capacity(server.base_url))
        asyncio.run(soak.soak_run(server.base_url, measured / 2, 15))  # warm-up
        run = asyncio.run(soak.soak_run(server.base_url, measured / 2, SECONDS, pids=pids))
    assert run.errors == []
    assert run.visits >= SECONDS * measured / 2 * 0.9, (run.visits, measured)
    assert run.late == 0
    settled = next(sample for at, sample in run.rss if at >= 60)
    end = run.rss[-1][1]
    growth = {pid: end[pid] - settled[pid] for pid in pids}
    print(f"soak: {measured:.0f} visits/s measured, {run.visits} visits, growth {growth} MiB")
    assert max(growth.values()) < GROWTH_MIB, (growth, run.rss)
