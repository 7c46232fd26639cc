"""Rush benchmark: thousands of citizens race for the 800 first-dose seats.

    python -m bench.rush [--citizens 5000] [--clients 64] [--workers 2] [--sqlite]
    python -m bench.rush --one-step --attempts 5000 --clients 64 --seats 800
    python -m bench.rush --campaign [--people 20000]   (the campaign's opening: bench/campaign.py)

Starts the real server (PostgreSQL with two workers by default; ``--sqlite`` for SQLite with one
worker) on its own database and Redis, seeded with ``bench/rush.toml`` (exactly 800 seats). Each
simulated citizen lists the slots, holds one, confirms it, and tries another slot on 409 (at most
``--clients`` at once). ``--one-step`` books with one ``POST /bookings`` per attempt instead.
At the end the database is checked: over-capacity slots and lost confirmations (201 answers
without their row) must both be 0. A probe on the same server settings (a bare Litestar endpoint
that decodes the same body and runs one EVALSHA) gives the floor of this stack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench.common import percentile, seeded_server, start_uvicorn
from scheduler.redisproc import RedisServer

SEED = Path(__file__).resolve().parent / "rush.toml"
SERVICE = "impfung-erstimpfung"
PG = os.environ.get(
    "SCHEDULER_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


class Stats:
    def __init__(self) -> None:
        self.hold_ms: list[float] = []
        self.confirm_ms: list[float] = []
        self.book_ms: list[float] = []
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.references: list[str] = []
        self.first = 0.0
        self.last_booking = 0.0


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any, stats: Stats, kind: str
) -> tuple[int, Any]:
    started = time.perf_counter()
    async with session.request(method, url, json=body) as response:
        answer = await response.json(content_type=None)
        status = response.status
    took = (time.perf_counter() - started) * 1000
    getattr(stats, f"{kind}_ms").append(took)
    stats.statuses[(kind, status)] += 1
    return status, answer


async def free_starts(session: aiohttp.ClientSession, base: str) -> list[str]:
    first = date.today()
    last = first + timedelta(days=7)
    async with session.get(
        f"{base}/api/v1/services/{SERVICE}/slots", params={"from": str(first), "to": str(last)}
    ) as response:
        return [row["start"] for row in await response.json()]


async def citizen(
    n: int, session: aiohttp.ClientSession, base: str, stats: Stats, one_step: bool
) -> None:
    tries = 0
    while tries < 20:
        starts = await free_starts(session, base)
        if not starts:
            return
        for _ in range(3):
            tries += 1
            start = random.choice(starts)
            person = {"name": f"Bürgerin {n}", "email": f"buergerin{n}@example.org"}
            if one_step:
                status, answer = await call(
                    session, "POST", f"{base}/api/v1/bookings",
                    {"service_id": SERVICE, "start": start, "citizen": person}, stats, "book",
                )  # fmt: skip
            else:
                status, answer = await call(
                    session, "POST", f"{base}/api/v1/holds",
                    {"service_id": SERVICE, "start": start}, stats, "hold",
                )  # fmt: skip
                if status == 201:
                    status, answer = await call(
                        session, "POST", f"{base}/api/v1/bookings",
                        {"hold_id": answer["hold_id"], "citizen": person}, stats, "confirm",
                    )  # fmt: skip
            if status == 201:
                stats.references.append(answer["reference"].replace("-", ""))
                stats.last_booking = time.perf_counter()
                return
            if status not in (409,):
                return


async def run_rush(base: str, citizens: int, clients: int, one_step: bool) -> Stats:
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=clients)
    semaphore = asyncio.Semaphore(clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> None:
            async with semaphore:
                await citizen(n, session, base, stats, one_step)

        stats.first = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(citizens)))
    return stats


async def storm(
    url: str, bodies: list[dict[str, Any]], seconds: float, clients: int
) -> tuple[float, float, float, Counter[int]]:
    """POST the bodies (round robin) for ``seconds`` at ``clients`` connections:
    requests/s, p50 and p99 in ms, and the answers by status."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def worker(n: int) -> None:
            while time.perf_counter() < deadline:
                n += clients
                started = time.perf_counter()
                async with session.post(url, json=bodies[n % len(bodies)]) as response:
                    await response.read()
                    statuses[response.status] += 1
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        took = time.perf_counter() - began
    return (
        len(latencies) / took,
        statistics.median(latencies),
        percentile(latencies, 0.99),
        statuses,
    )


async def hold_bodies(base: str) -> list[dict[str, Any]]:
    """Hold requests for every start of the service (all taken after the rush: each hold runs
    the whole path — parse, validate, plan, one Lua call — and is refused with 409)."""
    async with aiohttp.ClientSession() as session:
        first = date.today()
        days = [first + timedelta(days=n) for n in range(1, 5)]
        tz_starts = []
        for day in days:  # 08:00 .. 16:10, the 50 starts a day of bench/rush.toml
            for n in range(50):
                hour, minute = divmod(8 * 60 + 10 * n, 60)
                tz_starts.append(f"{day}T{hour:02d}:{minute:02d}:00")
        async with session.get(f"{base}/health"):
            pass
    from datetime import datetime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")
    return [
        {"service_id": SERVICE, "start": datetime.fromisoformat(s).replace(tzinfo=tz).isoformat()}
        for s in tz_starts
    ]


def wrk_one_step(base: str, starts: list[str], seconds: int, clients: int, work: Path) -> str:
    """One POST /bookings per request from wrk (a C load generator, so the client does not eat
    the core the server needs). Returns wrk's output."""
    path = work / "starts.txt"
    path.write_text("\n".join(starts) + "\n")
    script = Path(__file__).resolve().parent / "one_step.lua"
    return subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "-s", str(script), base],
        env={**os.environ, "STARTS_FILE": str(path), "SERVICE": SERVICE},
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


async def booking_window(db_url: str) -> tuple[int, float, float]:
    """Bookings in SQL, the seconds from the first to the last one, and to the 400th (while
    seats are plentiful; the last ones take random tries to find)."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    async with engine.connect() as conn:
        times = [
            r[0] for r in await conn.execute(text("SELECT created_at FROM bookings ORDER BY 1"))
        ]
    await engine.dispose()
    if len(times) < 2:
        return len(times), float("nan"), float("nan")
    half = times[min(399, len(times) - 1)]
    return (
        len(times),
        (times[-1] - times[0]).total_seconds(),
        (half - times[0]).total_seconds(),
    )


async def check_sql(db_url: str, references: list[str]) -> tuple[int, int, int]:
    engine = create_async_engine(db_url, poolclass=NullPool)
    async with engine.connect() as conn:
        over = (
            await conn.execute(text("SELECT count(*) FROM slots WHERE booked > capacity"))
        ).scalar()
        stored = {
            r[0]
            for r in await conn.execute(
                text("SELECT reference FROM bookings WHERE status = 'confirmed'")
            )
        }
        seats = (await conn.execute(text("SELECT coalesce(sum(booked), 0) FROM slots"))).scalar()
    await engine.dispose()
    lost = len(set(references) - stored)
    return int(over or 0), lost, int(seats or 0)


def prepare_database(sqlite: bool, work: Path) -> str:
    if sqlite:
        return f"sqlite+aiosqlite:///{work / 'rush.db'}"
    name = "scheduler_bench_rush"
    base = PG.rpartition("/")[0]

    async def admin() -> None:
        engine = create_async_engine(PG, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            await conn.execute(text(f"CREATE DATABASE {name}"))
        await engine.dispose()

    asyncio.run(admin())
    return f"{base}/{name}"


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values):6.2f} ms  p99 {percentile(values, 0.99):6.2f} ms"


def main() -> None:
    if "--campaign" in sys.argv[1:]:  # the campaign's opening: see bench/campaign.py
        from bench import campaign

        campaign.main([a for a in sys.argv[1:] if a != "--campaign"])
        return
    parser = argparse.ArgumentParser(description="citizens race for 800 seats")
    parser.add_argument("--citizens", type=int, default=5000)
    parser.add_argument("--attempts", type=int, help="with --one-step: booking attempts")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--seats", type=int, default=800, choices=[800], help="seats on offer")
    parser.add_argument("--sqlite", action="store_true", help="SQLite with one worker")
    parser.add_argument("--one-step", action="store_true", help="one POST /bookings per attempt")
    parser.add_argument("--probe-seconds", type=float, default=8.0)
    parser.add_argument(
        "--client", choices=["aiohttp", "wrk"], default="aiohttp",
        help="with --one-step: wrk drives the bookings (a C client; aiohttp needs a core)",
    )  # fmt: skip
    args = parser.parse_args()
    workers = args.workers or (1 if args.sqlite else 2)
    citizens = args.attempts or args.citizens

    with tempfile.TemporaryDirectory(prefix="bench-rush-") as tmp, RedisServer() as redis:
        work = Path(tmp)
        db_url = prepare_database(args.sqlite, work)
        server, env = seeded_server(SEED, db_url, redis.url, work, workers=workers)
        wrk_output = ""
        try:
            began = time.perf_counter()
            if args.one_step and args.client == "wrk":
                stats = Stats()
                bodies = asyncio.run(hold_bodies(server.base))
                wrk_output = wrk_one_step(
                    server.base, [b["start"] for b in bodies], 5, args.clients, work
                )
            else:
                stats = asyncio.run(run_rush(server.base, citizens, args.clients, args.one_step))
            took = time.perf_counter() - began
            bodies = asyncio.run(hold_bodies(server.base))
            hold_rps, hold_p50, hold_p99, hold_statuses = asyncio.run(
                storm(f"{server.base}/api/v1/holds", bodies, args.probe_seconds, args.clients)
            )
        finally:
            server.stop()
        over, lost, seats = asyncio.run(check_sql(db_url, stats.references))
        in_sql, window_sql, half_sql = asyncio.run(booking_window(db_url))
        probe = start_uvicorn(work, "bench.probe_app:create_reserve", env, workers=workers)
        try:
            url = f"{probe.base}/probe-hold"
            asyncio.run(storm(url, bodies, 2, args.clients))
            probe_rps, _, probe_p99, _ = asyncio.run(
                storm(url, bodies, args.probe_seconds, args.clients)
            )
        finally:
            probe.stop()

    database = "SQLite" if args.sqlite else "PostgreSQL"
    if wrk_output:
        answers = dict(
            line.split()[1:] for line in wrk_output.splitlines() if line.startswith("STATUS")
        )
        latency = next(line for line in wrk_output.splitlines() if line.startswith("LATENCY"))
        print(
            f"one-step rush driven by wrk: {args.clients} connections, {workers} worker(s), "
            f"{database}, 5 s"
        )
        print(
            f"  booked {in_sql} of 800 seats in {window_sql:.2f} s (first to last booking in "
            f"SQL) -> {in_sql / window_sql:.0f} bookings/s; the first 400 in {half_sql:.2f} s "
            f"-> {min(in_sql, 400) / half_sql:.0f} bookings/s"
        )
        print(f"  answers {answers}  latency {latency[8:]} ms")
        print(f"  over-capacity slots {over}, seats taken in SQL {seats}")
        print(
            f"  hold storm: {hold_rps:.0f} holds/s  p50 {hold_p50:.2f} ms  p99 {hold_p99:.2f} ms;"
            f"  probe {probe_rps:.0f} req/s -> {hold_rps / probe_rps:.0%} of the probe"
        )
        if over:
            raise SystemExit("INVARIANT BROKEN")
        return
    booked = len(stats.references)
    window = (stats.last_booking - stats.first) if booked else float("nan")
    print(
        f"{'one-step' if args.one_step else 'hold+confirm'} rush: {citizens} "
        f"{'attempts' if args.one_step else 'citizens'}, {args.clients} clients, "
        f"{workers} worker(s), {database}"
    )
    print(
        f"  booked {booked} of 800 seats in {window:.2f} s -> {booked / window:.0f} bookings/s"
        f"  (whole run {took:.2f} s; seats taken in SQL: {seats})"
    )
    if args.one_step:
        attempts = sum(v for (k, _), v in stats.statuses.items() if k == "book")
        print(
            f"  booking attempts {attempts} ({attempts / took:.0f}/s)  latency {ms(stats.book_ms)}"
        )
    else:
        attempts = sum(v for (k, _), v in stats.statuses.items() if k == "hold")
        print(f"  hold attempts {attempts} ({attempts / took:.0f}/s)  hold {ms(stats.hold_ms)}")
        print(f"  confirms {len(stats.confirm_ms)}  confirm {ms(stats.confirm_ms)}")
    print(f"  answers {dict(sorted((f'{k} {s}', v) for (k, s), v in stats.statuses.items()))}")
    print(f"  over-capacity slots {over}, lost confirmations {lost}")
    print(
        f"  hold storm after the rush ({args.clients} clients, {args.probe_seconds:.0f} s): "
        f"{hold_rps:.0f} holds/s  p50 {hold_p50:.2f} ms  p99 {hold_p99:.2f} ms  "
        f"answers {dict(hold_statuses)}"
    )
    print(
        f"  probe (decode + one EVALSHA, same server flags): {probe_rps:.0f} req/s, p99 "
        f"{probe_p99:.2f} ms -> holds at {hold_rps / probe_rps:.0%} of the probe"
    )
    if over or lost:
        raise SystemExit("INVARIANT BROKEN")


if __name__ == "__main__":
    main()
