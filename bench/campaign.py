"""Campaign rush: the 76+ vaccination campaign opens and 20,000 people try for its 800 places.

    python -m bench.rush --campaign [--people 20000] [--places 800] [--clients 128]
                                    [--workers 2] [--sqlite]

Starts the real server (PostgreSQL with two workers by default) on its own database and Redis,
seeded with ``bench/campaign.toml`` (no phone contingent), sets the window to open a few
seconds later and lets every simulated person start half a second before it opens. Each person
lists the first-dose slots, holds a series (first dose + earliest second dose, ``series: true``)
and confirms it; a 409 ``slot_full`` means another start, ``window_closed`` waits for
``opens_at``. The crowd is mixed: 90 % eligible, 4 % too young, 3 % not resident, 3 % the same
person again under another e-mail address. Afterwards SQL is checked: slots over capacity,
places over the limit, half series, persons with two series, confirmations (201) without their
row — all must be 0, as must answers that are neither a booking nor a clear refusal.

The same simulation drives the cross-process race test (``tests/booking/test_campaign_race.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from scheduler.booking import models as m

SEED = Path(__file__).resolve().parent / "campaign.toml"
ACTIVE = ("confirmed", "pending")
CAMPAIGN = "impfung-76plus"
FIRST = "impfung-erstimpfung"
# answers that refuse a person clearly (the person learns why): not errors
REFUSALS = {
    (409, "campaign_full"), (409, "limit_reached"), (409, "waitlist_first"),
    (403, "not_eligible"), (409, "slot_full"),
    # the same person held again meanwhile (one series hold per person: the newer one counts)
    (409, "hold_expired"),
}  # fmt: skip


def person(n: int) -> dict[str, Any]:
    """Person ``n`` of the crowd (deterministic): mostly eligible, some too young, some from
    elsewhere, and some who are person ``n - 1`` again under another address."""
    kind = n % 100
    if kind >= 97 and n > 0:  # the previous person again, another e-mail
        twin = person(n - 1)
        return twin | {"email": f"zweitadresse{n}@example.org"}
    born = date(1930, 1, 1) + timedelta(days=(n * 7) % 5000)
    body = {
        "name": f"Bürgerin {_letters(n)}",  # names are compared without digits
        "email": f"buergerin{n}@example.org",
        "birth_date": str(born),
        "postcode": "39517",
    }
    if kind < 4:
        body["birth_date"] = str(date(1962, 5, 1) + timedelta(days=n % 300))
    elif kind < 7:
        body["postcode"] = "39576"
    return body


def _letters(n: int) -> str:
    """``n`` as a name part of letters: a, b, ..., z, ba, bb, ..."""
    out = ""
    while True:
        n, digit = divmod(n, 26)
        out = "abcdefghijklmnopqrstuvwxyz"[digit] + out
        if not n:
            return out.capitalize()


@dataclass
class Crowd:
    hold_ms: list[float] = field(default_factory=list)
    confirm_ms: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    references: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # neither a booking nor a clear refusal
    refused: Counter[str] = field(default_factory=Counter)  # a person's final clear answer


async def _call(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], crowd: Crowd, kind: str
) -> tuple[int, Any]:
    started = time.perf_counter()
    try:
        async with session.post(url, json=body) as response:
            status = response.status
            answer = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        crowd.errors.append(f"{kind}: {type(exc).__name__}")
        return 0, None
    (crowd.hold_ms if kind == "hold" else crowd.confirm_ms).append(
        (time.perf_counter() - started) * 1000
    )
    code = answer.get("code", "") if isinstance(answer, dict) else ""
    crowd.answers[f"{kind} {status}{' ' + code if code else ''}"] += 1
    return status, answer


async def _starts(session: aiohttp.ClientSession, base: str) -> list[str]:
    first = date.today()
    params = {"from": str(first), "to": str(first + timedelta(days=6))}
    async with session.get(f"{base}/api/v1/services/{FIRST}/slots", params=params) as response:
        rows = await response.json(content_type=None)
    return [r["start"] for r in rows if r.get("free", 1) > 0] if isinstance(rows, list) else []


async def one_person(
    n: int, session: aiohttp.ClientSession, base: str, crowd: Crowd, opens_at: datetime
) -> None:
    citizen = person(n)
    starts = await _starts(session, base)
    for _ in range(8):
        if not starts:
            crowd.refused["no_free_start"] += 1
            return
        start = random.choice(starts)
        status, answer = await _call(
            session, f"{base}/api/v1/holds",
            {"service_id": FIRST, "start": start, "series": True, "citizen": citizen},
            crowd, "hold",
        )  # fmt: skip
        code = answer.get("code") if isinstance(answer, dict) else None
        if status == 403 and code == "window_closed":
            # too early: come back when it opens, as the answer says
            await asyncio.sleep(max(0.0, (opens_at - datetime.now(UTC)).total_seconds()))
            continue
        if status == 201:
            status, answer = await _call(
                session, f"{base}/api/v1/bookings",
                {"hold_id": answer["hold_id"], "citizen": citizen}, crowd, "confirm",
            )  # fmt: skip
            code = answer.get("code") if isinstance(answer, dict) else None
            if status == 201:
                crowd.references.append(answer["reference"].replace("-", ""))
                return
        if status == 409 and code == "slot_full":
            starts = [s for s in starts if s != start] or await _starts(session, base)
            continue
        if (status, code) in REFUSALS:
            crowd.refused[str(code)] += 1
            return
        if status:
            crowd.errors.append(f"{status} {code}")
        return
    crowd.refused["gave_up"] += 1


async def run_crowd(
    base: str, people: int, clients: int, opens_at: datetime, *, early: float = 0.5
) -> Crowd:
    """Every person starts ``early`` seconds before the window opens (at most ``clients`` at
    once, in the order of their number)."""
    crowd = Crowd()
    semaphore = asyncio.Semaphore(clients)
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.sleep(max(0.0, (opens_at - datetime.now(UTC)).total_seconds() - early))

        async def one(n: int) -> None:
            async with semaphore:
                await one_person(n, session, base, crowd, opens_at)

        await asyncio.gather(*(one(n) for n in range(people)))
    return crowd


async def open_window(db_url: str, opens_at: datetime, places: int) -> None:
    """Set the campaign's window and places; every server process reloads its catalog."""
    engine = create_async_engine(db_url, poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.execute(
            update(m.Campaign)
            .where(m.Campaign.id == CAMPAIGN)
            .values(opens_at=opens_at, places=places)
        )
        await conn.execute(update(m.CatalogState).values(version=m.CatalogState.version + 1))
    await engine.dispose()


async def wait_for_window(base: str, opens_at: datetime, within: float = 30.0) -> None:
    """Until 20 holds in a row (served by any worker) answer ``window_closed`` at ``opens_at``."""
    deadline = time.monotonic() + within
    body = {"service_id": FIRST, "start": "", "series": True, "citizen": person(1)}
    async with aiohttp.ClientSession() as session:
        starts = await _starts(session, base)
        body["start"] = starts[0]
        in_a_row = 0
        while in_a_row < 20:
            if time.monotonic() > deadline:
                raise RuntimeError("the servers did not load the campaign's new window")
            async with session.post(f"{base}/api/v1/holds", json=body) as response:
                answer = await response.json(content_type=None)
            seen = answer.get("opens_at") if isinstance(answer, dict) else None
            if seen and abs((datetime.fromisoformat(seen) - opens_at).total_seconds()) < 1:
                in_a_row += 1
            else:
                in_a_row = 0
                await asyncio.sleep(0.5)


@dataclass
class Invariants:
    series: int  # confirmed bookings of the campaign
    places_taken: int
    places: int
    over_capacity: int  # slots with booked > capacity
    half_series: int  # campaign bookings without exactly two appointments
    persons_twice: int  # persons (name + birth date) with more than one active series
    lost: int  # 201 answers without their confirmed row
    seats_vs_series: int  # seats taken in SQL minus 2 x series (0: nothing dangling)
    last_booking_after_open: float  # seconds from the window's opening to the last booking

    def broken(self) -> list[str]:
        out = [
            name
            for name in (
                "over_capacity", "half_series", "persons_twice", "lost", "seats_vs_series"
            )
            if getattr(self, name)
        ]  # fmt: skip
        if self.series > self.places or self.places_taken != self.series:
            out.append("places")
        return out


async def check(db_url: str, references: list[str], opens_at: datetime) -> Invariants:
    engine = create_async_engine(db_url, poolclass=NullPool)

    async def one(conn: Any, query: str, **params: Any) -> Any:
        return (await conn.execute(text(query), params)).scalar()

    async with engine.connect() as conn:
        active = "status IN ('confirmed', 'pending')"
        series = await one(conn, f"SELECT count(*) FROM bookings WHERE {active}")
        taken, places = (
            await conn.execute(
                text("SELECT taken, places FROM campaigns WHERE id = :id"), {"id": CAMPAIGN}
            )
        ).one()
        over = await one(conn, "SELECT count(*) FROM slots WHERE booked > capacity")
        half = await one(
            conn,
            f"SELECT count(*) FROM (SELECT b.id FROM bookings b LEFT JOIN appointments a "
            f"ON a.booking_id = b.id WHERE b.{active} GROUP BY b.id "
            f"HAVING count(a.id) <> 2) AS h",
        )
        twice = await one(
            conn,
            f"SELECT count(*) FROM (SELECT attendee_name, attendee_birth_date FROM bookings "
            f"WHERE {active} GROUP BY 1, 2 HAVING count(*) > 1) AS t",
        )
        stored = {
            r[0] for r in await conn.execute(text("SELECT reference FROM bookings WHERE " + active))
        }
        seats = await one(conn, "SELECT coalesce(sum(booked), 0) FROM slots")
        last = (
            await conn.execute(
                select(func.max(m.Booking.created_at)).where(m.Booking.status.in_(ACTIVE))
            )
        ).scalar()
    await engine.dispose()
    after = (last - opens_at).total_seconds() if last is not None else float("nan")
    return Invariants(
        series=int(series), places_taken=int(taken), places=int(places), over_capacity=int(over),
        half_series=int(half), persons_twice=int(twice), lost=len(set(references) - stored),
        seats_vs_series=int(seats) - 2 * int(series), last_booking_after_open=after,
    )  # fmt: skip


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(values):.1f} ms, p99 {p99:.1f} ms"


def main(argv: list[str] | None = None) -> None:
    from bench.common import seeded_server
    from bench.rush import prepare_database
    from scheduler.redisproc import RedisServer

    parser = argparse.ArgumentParser(description="the campaign opens; people rush for places")
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--places", type=int, default=800)
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--sqlite", action="store_true", help="SQLite with one worker")
    args = parser.parse_args(argv)
    workers = args.workers or (1 if args.sqlite else 2)

    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp, RedisServer() as redis:
        work = Path(tmp)
        db_url = prepare_database(args.sqlite, work)
        server, _ = seeded_server(SEED, db_url, redis.url, work, workers=workers)
        try:
            opens_at = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
            asyncio.run(open_window(db_url, opens_at, args.places))
            asyncio.run(wait_for_window(server.base, opens_at))
            began = time.perf_counter()
            crowd = asyncio.run(run_crowd(server.base, args.people, args.clients, opens_at))
            took = time.perf_counter() - began
        finally:
            server.stop()
        found = asyncio.run(check(db_url, crowd.references, opens_at))

    database = "SQLite" if args.sqlite else "PostgreSQL"
    holds = len(crowd.hold_ms)
    print(
        f"campaign rush: {args.people} people for {args.places} places, {args.clients} clients, "
        f"{workers} worker(s), {database}"
    )
    print(
        f"  {found.series} series booked; the last {found.last_booking_after_open:.2f} s after "
        f"the window opened (whole crowd served in {took:.1f} s)"
    )
    print(f"  holds {holds} ({holds / took:.0f}/s): {_ms(crowd.hold_ms)}")
    print(f"  confirms {len(crowd.confirm_ms)}: {_ms(crowd.confirm_ms)}")
    print(f"  refused with a clear answer: {dict(crowd.refused.most_common())}")
    print(f"  answers: {dict(sorted(crowd.answers.items()))}")
    print(
        f"  errors {len(crowd.errors)}, over capacity {found.over_capacity}, places taken "
        f"{found.places_taken}/{found.places}, half series {found.half_series}, persons with "
        f"two series {found.persons_twice}, lost confirmations {found.lost}, seats - 2 x series "
        f"{found.seats_vs_series}"
    )
    if crowd.errors:
        print(f"  first errors: {crowd.errors[:5]}")
    if found.broken() or crowd.errors:
        raise SystemExit(f"INVARIANT BROKEN: {found.broken()} errors={len(crowd.errors)}")


if __name__ == "__main__":
    main()
