"""Slots endpoint benchmark: the real server against a probe that serves the same JSON.

    python -m bench.slots [--workers N] [--seconds S] [--connections C]

Starts ``scheduler serve --demo`` (SQLite, its own Redis) in a temporary folder, checks one answer
against a fresh computation from SQL (so a stale cache cannot win), then loads the slots endpoint
for a 30-day range and the probe (a bare Litestar endpoint with the same answer precomputed, same
uvicorn flags and process count). Prints requests/s, p50/p99 and the ratio; and, in-process, the
time of a fresh 30-day computation (no caches) from the Redis counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import load, percentile, start_server, start_uvicorn
from scheduler.booking import availability as av
from scheduler.booking.core import Core
from scheduler.booking.db import make_engine, make_sessionmaker
from scheduler.clock import SystemClock
from scheduler.redisconn import connect
from scheduler.redisproc import RedisServer

SERVICE = "hund-anmelden"


def next_monday(today: date) -> date:
    return today + timedelta(days=(7 - today.weekday()) % 7 or 7)


def rows(starts: list[tuple], tz) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [
        {"start": s.astimezone(tz).isoformat(), "end": e.astimezone(tz).isoformat(), "free": f}
        for s, e, f in starts
    ]


async def in_process(db_url: str, redis_url: str, first: date, last: date, runs: int) -> dict:
    engine = make_engine(db_url)
    redis = connect(redis_url)
    core = Core(
        engine=engine,
        sessions=make_sessionmaker(engine),
        redis=redis,
        clock=SystemClock(),
        secret_key="x" * 32,
    )
    await core.refresh_catalog(force=True)
    tz = core.catalog.locations[core.catalog.services[SERVICE].location_id].tz
    fresh_ms, cached_ms = [], []
    for _ in range(runs):
        core.day_cache = av.DayCache()
        started = time.perf_counter()
        await core.free_starts(SERVICE, first, last, core.clock.now())
        fresh_ms.append((time.perf_counter() - started) * 1000)
    for _ in range(runs):
        started = time.perf_counter()
        await core.free_starts(SERVICE, first, last, core.clock.now())
        cached_ms.append((time.perf_counter() - started) * 1000)
    # the reference answer: computed from SQL, no Redis, no cache
    core.day_cache = av.DayCache()
    service = core.catalog.services[SERVICE]
    days, earliest = av.bookable_days(service, tz, first, last, core.clock.now())
    raw = await core._sql_counters(av.wanted_cells(service, days))
    reference = rows(
        av.collect_starts(core.catalog, service, days, raw, earliest, av.DayCache()), tz
    )
    await redis.aclose()
    await engine.dispose()
    return {
        "fresh_p50": statistics.median(fresh_ms),
        "fresh_p99": percentile(fresh_ms, 0.99),
        "cached_p50": statistics.median(cached_ms),
        "reference": reference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=200, help="in-process repetitions")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-slots-") as tmp, RedisServer() as redis:
        work = Path(tmp)
        db_url = f"sqlite+aiosqlite:///{work / 'scheduler.db'}"
        env = {"SCHEDULER_REDIS_URL": redis.url, "SCHEDULER_DATABASE_URL": db_url}
        server = start_server(work, env, workers=args.workers)
        try:
            first = next_monday(date.today())
            last = first + timedelta(days=29)
            url = f"{server.base}/api/v1/services/{SERVICE}/slots?from={first}&to={last}"
            import urllib.request

            with urllib.request.urlopen(url) as response:
                body = response.read()
            answer = json.loads(body)
            figures = asyncio.run(in_process(db_url, redis.url, first, last, args.runs))
            if answer != figures["reference"]:
                raise SystemExit("the server's answer differs from a fresh computation from SQL")
            print(
                f"slots of {SERVICE}, {first} .. {last}: {len(answer)} starts, {len(body)} bytes;"
                " answer equals a fresh computation from SQL"
            )
            print(
                "in-process, fresh (no cache) from Redis counters: "
                f"p50 {figures['fresh_p50']:.2f} ms"
                f"  p99 {figures['fresh_p99']:.2f} ms;  with day cache: p50 "
                f"{figures['cached_p50']:.2f} ms"
            )
            load(url, 2, args.connections)  # warm-up
            real = load(url, args.seconds, args.connections)
        finally:
            server.stop()
        (work / "probe.json").write_bytes(body)
        probe = start_uvicorn(
            work,
            "bench.probe_app:create",
            {"PROBE_BODY": str(work / "probe.json")},
            workers=args.workers,
        )
        try:
            load(probe.base + "/probe", 2, args.connections)
            bare = load(probe.base + "/probe", args.seconds, args.connections)
        finally:
            probe.stop()
    print(f"workers {args.workers}, {args.connections} connections, {args.seconds} s each")
    print(f"  slots endpoint  {real.line()}")
    print(f"  probe           {bare.line()}")
    print(f"  ratio           {real.rps / bare.rps:.0%} of the probe's requests/s")


if __name__ == "__main__":
    main()
