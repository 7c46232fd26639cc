"""The campaign's opening across processes: 2,000 people (some ineligible, some the same person
under another address) rush for 100 series through the real server with two workers on
PostgreSQL. Exactly 100 series, no person with two, no half series, nothing over capacity, every
201 has its row, and every other answer is a clear refusal. The control run, with the guards
switched off (the places' conditional update among them), gives out more places than there are:
proof that the race is real."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import campaign
from tests.conftest import PG_URL
from tests.serverproc import ServerProcess
from tests.stack import service_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not PG_URL, reason="race tests need PostgreSQL (SCHEDULER_TEST_DATABASE_URL)"
    ),
]

PEOPLE, PLACES = 2000, 100


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, str]]:
    guards = getattr(request, "param", True)
    with service_stack(tmp_path, guards=guards, seed=campaign.SEED, prefix="campaign") as found:
        yield found.server, found.db_url


def rush(server: ServerProcess, db_url: str) -> tuple[campaign.Crowd, campaign.Invariants]:
    async def run() -> tuple[campaign.Crowd, campaign.Invariants]:
        opens_at = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
        await campaign.open_window(db_url, opens_at, PLACES)
        await campaign.wait_for_window(server.base_url, opens_at)
        crowd = await campaign.run_crowd(server.base_url, PEOPLE, 100, opens_at)
        return crowd, await campaign.check(db_url, crowd.references, opens_at)

    return asyncio.run(run())


def test_2000_people_for_100_series(stack: tuple[ServerProcess, str]) -> None:
    server, db_url = stack
    assert len(server.worker_pids()) >= 2
    crowd, found = rush(server, db_url)
    assert crowd.errors == []
    assert found.broken() == []
    assert found.series == PLACES == len(crowd.references) == found.places_taken
    # everybody else was told why: the places are gone, not eligible, or has a series already
    assert set(crowd.refused) <= {
        "campaign_full", "not_eligible", "limit_reached", "hold_expired"
    }  # fmt: skip
    assert crowd.refused["not_eligible"] >= PEOPLE * 5 // 100
    assert sum(crowd.refused.values()) == PEOPLE - PLACES
    # the window opened to the second: holds before it were refused, none succeeded
    assert crowd.answers["hold 403 window_closed"] > 0


@pytest.mark.parametrize("stack", [False], indirect=True)
def test_control_without_guards_gives_out_too_many_places(
    stack: tuple[ServerProcess, str],
) -> None:
    server, db_url = stack
    _crowd, found = rush(server, db_url)
    # without the conditional update the race overbooks
    assert found.series > PLACES, found
    print(f"control run: {found.series} series for {PLACES} places")
