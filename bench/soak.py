"""Soak: mixed citizen traffic at half the measured capacity, memory of every process watched.

    python -m bench.soak [--minutes 10] [--workers 2] [--sqlite]

Starts the real server (PostgreSQL with two workers by default) on its own database and Redis,
seeded with ``tests/fixtures/race.toml`` (a counter with five seats per quarter hour, open every
day). One visit: list a day's slots, book a free start in one step, read the booking with its
manage token, and cancel it (nine visits in ten; the rest keep their seat), so the seats never
run out. First the capacity is measured (visits/s with 32 at once for a few seconds), then
visits start at half that rate, open loop, for the soak. Printed: visits and requests, errors
(any answer but 2xx or 409 ``slot_full``, or a failed connection: must be 0), latency, and the
resident memory (RSS) of each server process after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp

SEED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "race.toml"
SERVICE = "fuenf-plaetze"


@dataclass
class Soak:
    visits: int = 0
    requests: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    late: int = 0  # visits that could not start on time (more than ``limit`` running)
    rss: list[tuple[float, dict[int, float]]] = field(default_factory=list)  # (s, pid -> MiB)


async def _request(
    http: aiohttp.ClientSession, soak: Soak, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    started = time.perf_counter()
    soak.requests += 1
    try:
        async with http.request(method, url, **kwargs) as response:
            body = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        soak.errors.append(f"{method} {type(exc).__name__}")
        return 0, None
    soak.latency_ms.append((time.perf_counter() - started) * 1000)
    code = body.get("code", "") if isinstance(body, dict) and status >= 400 else ""
    soak.answers[f"{method} {status}{' ' + code if code else ''}"] += 1
    if status >= 400 and not (status == 409 and code == "slot_full"):
        soak.errors.append(f"{method} {url.split('/api/v1/')[-1][:40]} {status} {code}")
    return status, body


def _run_ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"{os.getpid()}x{n}"


_RUNS = _run_ids()
RUN = next(_RUNS)  # each run (capacity, warm-up, soak) books as its own people


async def visit(http: aiohttp.ClientSession, base: str, n: int, soak: Soak) -> None:
    day = date.today() + timedelta(days=1 + n % 7)
    status, rows = await _request(
        http, soak, "GET", f"{base}/api/v1/services/{SERVICE}/slots",
        params={"from": str(day), "to": str(day)},
    )  # fmt: skip
    soak.visits += 1
    starts = [r["start"] for r in rows if r["free"] > 0] if status == 200 else []
    if not starts:
        return
    body = {
        "service_id": SERVICE,
        "start": random.choice(starts),
        "citizen": {"name": "Besucherin", "email": f"b{RUN}.{n}@example.org"},
    }
    status, booking = await _request(http, soak, "POST", f"{base}/api/v1/bookings", json=body)
    if status != 201:
        return
    reference = booking["reference"]
    auth = {"Authorization": f"Bearer {booking['manage_token']}"}
    await _request(http, soak, "GET", f"{base}/api/v1/bookings/{reference}", headers=auth)
    if n % 10:
        await _request(
            http, soak, "POST", f"{base}/api/v1/bookings/{reference}/cancel", headers=auth
        )


async def capacity(base: str, seconds: float = 5.0, concurrency: int = 32) -> float:
    """Visits per second with ``concurrency`` visits at once (closed loop)."""
    global RUN
    RUN = next(_RUNS)
    soak = Soak()
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def loop(k: int) -> None:
            n = k
            while time.monotonic() < deadline:
                await visit(http, base, 1_000_000 + n, soak)
                n += concurrency

        started = time.monotonic()
        await asyncio.gather(*(loop(k) for k in range(concurrency)))
        took = time.monotonic() - started
    return soak.visits / took


async def soak_run(
    base: str, rate: float, seconds: float, limit: int = 256, pids: list[int] | None = None
) -> Soak:
    """Start ``rate`` visits per second for ``seconds`` (open loop; at most ``limit`` at once,
    a visit that cannot start is counted ``late`` and skipped)."""
    global RUN
    RUN = next(_RUNS)
    soak = Soak()
    running: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=128), timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        started = time.monotonic()
        n = 0
        sampled = -1
        while (now := time.monotonic()) - started < seconds:
            if pids and int((now - started) // 10) > sampled:  # memory every 10 s
                sampled = int((now - started) // 10)
                soak.rss.append((now - started, {pid: rss_mib(pid) for pid in pids}))
            due = started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            if len(running) >= limit:
                soak.late += 1
            else:
                task = asyncio.create_task(visit(http, base, n, soak))
                running.add(task)
                task.add_done_callback(running.discard)
            n += 1
        if running:
            await asyncio.gather(*running)
    return soak


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "-"
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms"


def main() -> None:
    from bench.common import seeded_server
    from bench.rush import prepare_database
    from scheduler.redisproc import RedisServer
    from tests.serverproc import descendants, read_cmdline

    parser = argparse.ArgumentParser(description="mixed traffic at half capacity, memory watched")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    workers = args.workers or (1 if args.sqlite else 2)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, RedisServer() as redis:
        work = Path(tmp)
        db_url = prepare_database(args.sqlite, work)
        server, _ = seeded_server(SEED, db_url, redis.url, work, workers=workers)
        try:
            pids = [server.process.pid] + [
                p for p in descendants(server.process.pid) if "redis" not in read_cmdline(p)
            ]
            measured = asyncio.run(capacity(server.base))
            rate = measured / 2
            asyncio.run(soak_run(server.base, rate, 20))  # warm-up
            before = {pid: rss_mib(pid) for pid in pids}
            soak = asyncio.run(soak_run(server.base, rate, args.minutes * 60, pids=pids))
            after = {pid: rss_mib(pid) for pid in pids}
        finally:
            server.stop()
    seconds = args.minutes * 60
    print(
        f"soak: {args.minutes:g} min at half of {measured:.0f} visits/s ({rate:.0f}/s), "
        f"{workers} worker(s), {'SQLite' if args.sqlite else 'PostgreSQL'}"
    )
    print(
        f"  visits {soak.visits}, requests {soak.requests} ({soak.requests / seconds:.0f}/s), "
        f"late {soak.late}, latency {ms(soak.latency_ms)}"
    )
    print(f"  answers {dict(sorted(soak.answers.items()))}")
    print(f"  errors {len(soak.errors)} {soak.errors[:5]}")
    for pid in pids:
        print(
            f"  process {pid}: RSS {before[pid]:.1f} MiB after warm-up, {after[pid]:.1f} MiB "
            f"at the end ({after[pid] - before[pid]:+.1f})"
        )
    for at, sample in soak.rss[:: max(1, len(soak.rss) // 12)]:
        print(f"  RSS at {at:5.0f} s: " + ", ".join(f"{v:.1f}" for v in sample.values()))
    if soak.errors:
        raise SystemExit("ERRORS")


if __name__ == "__main__":
    main()
