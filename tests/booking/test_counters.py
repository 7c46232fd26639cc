"""Redis seat counters on every database: they mirror SQL (capacity - booked, minus live holds),
reads fall back to SQL while Redis is gone, and ``watch_counters`` rebuilds them after a wipe,
a restart or a configuration change."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.exceptions import RedisError
from sqlalchemy import select, update

from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.booking.counters import decode_free
from scheduler.booking.seed import bump_catalog
from scheduler.clock import ManualClock
from scheduler.redisconn import connect
from scheduler.redisproc import RedisServer

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = date(2026, 11, 30)  # the Bürgerbüro opens 08:00: cell 32 of 15-minute cells
SERVICES = (
    "hund-anmelden",
    "personalausweis-beantragen",
    "impfung-erstimpfung",
    "impfung-zweitimpfung",
)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BERLIN)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def take_seats(core: Core) -> None:
    """Some confirmed seats and one staff capacity change, written to SQL as the booking core
    does (only the slot rows matter to the counters)."""
    changes = [
        ("sachbearbeitung-1", local(MONDAY, 8), {"booked": 1}),
        ("sachbearbeitung-2", local(MONDAY, 8), {"booked": 1}),
        ("schalter-1", local(MONDAY, 9), {"booked": 1}),
        ("impflinie-1", local(date(2026, 12, 2), 8), {"booked": 2}),
        ("impflinie-2", local(date(2026, 12, 2), 8), {"booked": 1}),
        (
            "impflinie-2",
            local(date(2026, 12, 2), 8, 10),
            {"capacity": 4, "booked": 1, "capacity_overridden": True},
        ),
    ]
    async with core.sessions() as session, session.begin():
        for calendar_id, start, values in changes:
            result = await session.execute(
                update(m.Slot)
                .where(m.Slot.calendar_id == calendar_id, m.Slot.starts_at == start)
                .values(**values)
            )
            assert result.rowcount == 1  # type: ignore[attr-defined]


async def expected_free(core: Core) -> dict[tuple[str, str, date], list[int]]:
    """capacity - booked per cell, straight from the slot rows, keyed by (location, calendar,
    day); cells without a slot (closed) are 0."""
    out: dict[tuple[str, str, date], list[int]] = defaultdict(list)
    async with core.sessions() as session:
        rows = await session.execute(
            select(
                m.Calendar.location_id,
                m.Slot.calendar_id,
                m.Slot.day,
                m.Slot.cell,
                m.Slot.capacity,
                m.Slot.booked,
            ).join(m.Calendar, m.Calendar.id == m.Slot.calendar_id)
        )
        for location_id, calendar_id, day, cell, capacity, booked in rows:
            cells = out[(location_id, calendar_id, day)]
            cells.extend([0] * (cell + 1 - len(cells)))
            cells[cell] = capacity - booked
    return out


async def redis_free(core: Core, location_id: str, calendar_id: str, day: date) -> list[int]:
    version, (raw,) = await core.gate.read_days(location_id, [(calendar_id, day)])
    assert version is not None
    return decode_free(raw).tolist()


async def assert_counters_match_sql(core: Core) -> None:
    expected = await expected_free(core)
    assert len(expected) > 500
    by_location: dict[str, list[tuple[str, date]]] = defaultdict(list)
    for location_id, calendar_id, day in expected:
        by_location[location_id].append((calendar_id, day))
    for location_id, wanted in by_location.items():
        version, raws = await core.gate.read_days(location_id, wanted)
        assert version is not None
        for (calendar_id, day), raw in zip(wanted, raws, strict=True):
            cells = expected[(location_id, calendar_id, day)]
            free = decode_free(raw).tolist()
            if any(cells):
                assert free == cells, (calendar_id, day)
            else:  # a day without a free seat has no counter at all
                assert raw is None, (calendar_id, day)


async def all_free_starts(core: Core) -> tuple[set[int | None], dict[str, list[object]]]:
    versions: set[int | None] = set()
    starts: dict[str, list[object]] = {}
    for service_id in SERVICES:
        version, rows = await core.free_starts(
            service_id, date(2026, 11, 23), date(2027, 1, 31), core.clock.now()
        )
        versions.add(version)
        starts[service_id] = rows
    return versions, starts


# -- the mirror ---------------------------------------------------------------------------------


async def test_counters_equal_capacity_minus_booked(core: Core) -> None:
    await assert_counters_match_sql(core)
    await take_seats(core)
    await core.materialize()
    await assert_counters_match_sql(core)
    clerk = await redis_free(core, "rathaus", "sachbearbeitung-1", MONDAY)
    assert clerk[31:35] == [0, 0, 1, 1]  # 07:45 closed, 08:00 booked, then free
    line = await redis_free(core, "impfzentrum", "impflinie-2", date(2026, 12, 2))
    assert line[48:51] == [1, 3, 2]  # 08:00 one of two booked; 08:10 one of four (staff)
    # counters expire on their own, two days after their day
    ttl = await core.redis.pttl("sch:{rathaus}:f:sachbearbeitung-1:20261130")
    left = (local(date(2026, 12, 2), 0) - core.clock.now()).total_seconds() * 1000
    assert left - 60_000 < ttl <= left


async def test_free_starts_from_redis_and_from_sql_agree(
    core: Core, redis_server: RedisServer
) -> None:
    await take_seats(core)
    await core.rebuild_counters()
    versions, from_redis = await all_free_starts(core)
    assert None not in versions
    assert from_redis["hund-anmelden"]
    first = from_redis["personalausweis-beantragen"][0]
    assert first[0] == local(date(2026, 11, 23), 8)  # (start, end, free)
    redis_server.kill()
    try:
        versions, from_sql = await all_free_starts(core)
    finally:
        redis_server.start()
    assert versions == {None}
    assert from_sql == from_redis
    monday_8 = next(r for r in from_sql["hund-anmelden"] if r[0] == local(MONDAY, 8))
    assert monday_8[2] == 1  # three clerks, two of them booked at 08:00


async def test_after_flushall_reads_fall_back_and_watch_rebuilds(core: Core) -> None:
    await take_seats(core)
    await core.rebuild_counters()
    _, before = await all_free_starts(core)
    await core.redis.flushall()
    assert await core.counters_version("rathaus") is None
    versions, during = await all_free_starts(core)
    assert versions == {None}
    assert during == before

    await core.watch_counters()
    assert await core.counters_version("rathaus") is not None
    assert await core.counters_version("impfzentrum") is not None
    versions, after = await all_free_starts(core)
    assert None not in versions
    assert after == before
    await assert_counters_match_sql(core)


async def test_watch_counters_rebuilds_only_when_needed(core: Core) -> None:
    version = await core.counters_version("rathaus")
    await core.watch_counters()
    await core.watch_counters()
    assert await core.counters_version("rathaus") == version  # nothing changed: no rebuild

    async with core.sessions() as session, session.begin():
        await bump_catalog(session, core.clock.now())
    await core.watch_counters()  # the configuration changed: reload and rebuild
    rebuilt = await core.counters_version("rathaus")
    assert rebuilt is not None
    assert version is not None
    assert rebuilt > version


async def test_watch_counters_rebuilds_after_a_redis_restart(
    core: Core, redis_server: RedisServer
) -> None:
    await take_seats(core)
    await core.rebuild_counters()
    old_run_id = await core.gate.run_id()
    redis_server.kill()
    try:
        await core.watch_counters()  # Redis is gone: nothing to do, no error
    finally:
        redis_server.start()
    assert await core.gate.run_id() != old_run_id
    assert await core.counters_version("rathaus") is None
    await core.watch_counters()
    assert await core.counters_version("rathaus") is not None
    await assert_counters_match_sql(core)


async def test_a_new_run_id_alone_triggers_a_rebuild(core: Core, redis_server: RedisServer) -> None:
    """Another process rebuilt the counters after the restart: this one still rebuilds, as
    holds it knew about may be gone (a failover, a restart from a snapshot)."""
    redis_server.kill()
    redis_server.start()
    other = Core(
        engine=core.engine,
        sessions=core.sessions,
        redis=connect(redis_server.url),
        clock=core.clock,
        secret_key=core.secret_key,
        horizon_days=core.horizon_days,
    )
    try:
        await other.refresh_catalog(force=True)
        await other.rebuild_counters()
    finally:
        await other.redis.aclose()
    version = await core.counters_version("rathaus")
    assert version is not None
    await core.watch_counters()
    rebuilt = await core.counters_version("rathaus")
    assert rebuilt is not None
    assert rebuilt > version  # rebuilt once (the version moved on by a random step) …
    await core.watch_counters()
    assert await core.counters_version("rathaus") == rebuilt  # … and only once


def another_process(core: Core, redis_url: str) -> Core:
    """A second process's core on the same database and Redis."""
    return Core(
        engine=core.engine,
        sessions=core.sessions,
        redis=connect(redis_url),
        clock=core.clock,
        secret_key=core.secret_key,
        horizon_days=core.horizon_days,
    )


async def test_a_starting_process_takes_over_counters_built_for_this_redis_and_catalog(
    core: Core, redis_server: RedisServer
) -> None:
    """A worker that starts beside the others (or after the parent of ``serve --workers``
    prepared) keeps the counters whose last complete rebuild was for this Redis run and this
    catalog; otherwise it rebuilds them: after a failed rebuild, a catalog change or a restart."""
    version = await core.counters_version("rathaus")

    async def started() -> int | None:
        other = another_process(core, redis_server.url)
        try:
            await other.refresh_catalog(force=True)
            await other.take_over_counters()
            await other.watch_counters()  # and its first watch has nothing to do either
            return await other.counters_version("rathaus")
        finally:
            await other.redis.aclose()

    assert await started() == version  # taken over, not rebuilt

    await core.redis.set("sch:{rathaus}:ep", "not-a-number")  # the next reconcile fails
    await take_seats(core)
    with pytest.raises(RedisError):
        await core.rebuild_counters()
    await core.redis.delete("sch:{rathaus}:ep")
    rebuilt = await started()  # a half-done rebuild is not taken over
    assert rebuilt is not None
    assert version is not None
    assert rebuilt > version
    await assert_counters_match_sql(core)

    async with core.sessions() as session, session.begin():
        await bump_catalog(session, core.clock.now())
    after_change = await started()  # built for the previous catalog: rebuilt
    assert after_change is not None
    assert after_change > rebuilt
    assert await started() == after_change  # and that rebuild is taken over in turn

    redis_server.kill()
    redis_server.start()
    assert await started() is not None  # an empty Redis: built again
    await assert_counters_match_sql(core)


async def test_counters_restored_from_an_old_snapshot_are_not_taken_over(
    core: Core, redis_server: RedisServer
) -> None:
    """A Redis restarted from an old snapshot (RDB or AOF) brings back counters that SQL has
    moved past, with the mark of their rebuild: a new run id, so a starting process rebuilds."""
    snapshot = {
        key: (await core.redis.dump(key), await core.redis.pttl(key))
        for key in await core.redis.keys("sch:*")
    }
    assert "sch:{rathaus}:built" in {k.decode() for k in snapshot}
    await take_seats(core)  # SQL moves on after the snapshot
    redis_server.kill()
    redis_server.start()
    for key, (value, ttl) in snapshot.items():
        await core.redis.restore(key, max(ttl, 0), value)
    other = another_process(core, redis_server.url)
    try:
        await other.refresh_catalog(force=True)
        await other.take_over_counters()
    finally:
        await other.redis.aclose()
    await assert_counters_match_sql(core)


async def test_a_start_while_redis_refuses_is_not_stopped(
    core: Core, redis_server: RedisServer
) -> None:
    """Taking over fails quietly when Redis refuses; the next watch rebuilds."""
    other = another_process(core, redis_server.url)
    await other.refresh_catalog(force=True)
    await core.redis.execute_command("ACL", "SETUSER", "default", "-info")
    try:
        await other.take_over_counters()  # no error: the start goes on
    finally:
        await core.redis.execute_command("ACL", "SETUSER", "default", "+info")
    version = await core.counters_version("rathaus")
    try:
        await other.watch_counters()
        rebuilt = await other.counters_version("rathaus")
    finally:
        await other.redis.aclose()
    assert (rebuilt or 0) > (version or 0)


async def test_the_version_never_comes_back_after_a_restart(
    core: Core, redis_server: RedisServer
) -> None:
    """Answers are cached under the counters' version: a rebuilt Redis starts it at a random
    number, so a version a process saw before the restart does not name other contents."""
    before = await core.counters_version("rathaus")
    assert before is not None
    redis_server.kill()
    redis_server.start()
    await core.watch_counters()
    after = await core.counters_version("rathaus")
    assert after is not None
    assert after != before
    assert after > 1_000  # not counted up from 1 again


# -- holds --------------------------------------------------------------------------------------


async def add_hold(core: Core, token: str, cells: str, **fields: str | int) -> None:
    """A hold record as the gate writes it (see the docstring of scheduler.booking.counters)."""
    key = f"sch:{{rathaus}}:h:{token}"
    await core.redis.hset(key, mapping={"cells": cells, **fields})
    await core.redis.zadd("sch:{rathaus}:hx", {token: int(fields["exp"])})


async def test_reconcile_subtracts_live_holds_only(core: Core, clock: ManualClock) -> None:
    now = core.clock.now()
    later, earlier = ms(now + timedelta(minutes=10)), ms(now - timedelta(seconds=1))
    epoch = int(await core.redis.get("sch:{rathaus}:ep") or 0)
    assert epoch >= 1
    await add_hold(core, "live", "sachbearbeitung-1|20261130|32|1", st="held", exp=later)
    await add_hold(core, "expired", "sachbearbeitung-1|20261130|33|1", st="held", exp=earlier)
    # confirmed while the next reconcile reads SQL (its epoch): maybe not in the snapshot yet
    await add_hold(
        core, "new", "sachbearbeitung-1|20261130|34|1", st="confirmed", exp=later, ce=epoch + 1
    )
    # confirmed before the next reconcile started: already in SQL, must not count twice
    await add_hold(
        core, "old", "sachbearbeitung-1|20261130|35|1", st="confirmed", exp=later, ce=epoch
    )
    await add_hold(
        core,
        "two",
        "sachbearbeitung-2|20261130|36|1;schalter-1|20261130|36|1;schalter-1|20261130|37|1",
        st="held",
        exp=later,
    )
    await core.rebuild_counters()

    clerk = await redis_free(core, "rathaus", "sachbearbeitung-1", MONDAY)
    assert clerk[32:36] == [0, 1, 0, 1]
    assert (await redis_free(core, "rathaus", "sachbearbeitung-2", MONDAY))[35:38] == [1, 0, 1]
    assert (await redis_free(core, "rathaus", "schalter-1", MONDAY))[35:39] == [1, 0, 0, 1]
    assert int(await core.redis.get("sch:{rathaus}:ep")) == epoch + 1
    assert not await core.redis.exists("sch:{rathaus}:h:expired")
    members = {t.decode() for t in await core.redis.zrange("sch:{rathaus}:hx", 0, -1)}
    assert {"live", "new", "two"} <= members
    assert "expired" not in members

    # the hold is counted by free_starts too: three clerks, one held at 08:00 on Monday
    _, rows = await core.free_starts("hund-anmelden", MONDAY, MONDAY, core.clock.now())
    free = {start: n for start, _, n in rows}
    assert free[local(MONDAY, 8)] == 2
    assert free[local(MONDAY, 8, 15)] == 3

    # once the clock passes its expiry, the next reconcile drops the live hold as well
    clock.set(now + timedelta(minutes=11))
    await core.rebuild_counters()
    clerk = await redis_free(core, "rathaus", "sachbearbeitung-1", MONDAY)
    assert clerk[32:36] == [1, 1, 1, 1]  # "new" is older than this epoch now: it is in SQL
    assert not await core.redis.exists("sch:{rathaus}:h:live")


async def test_a_hold_on_a_day_beyond_the_counters_leaves_it_alone(core: Core) -> None:
    later = ms(core.clock.now() + timedelta(minutes=10))
    await add_hold(core, "far", "sachbearbeitung-1|20280601|32|1", st="held", exp=later)
    await core.rebuild_counters()
    assert not await core.redis.exists("sch:{rathaus}:f:sachbearbeitung-1:20280601")
    assert await core.redis.exists("sch:{rathaus}:h:far")


# -- health -------------------------------------------------------------------------------------


async def test_health_is_degraded_while_redis_is_down(
    client: AsyncTestClient[Litestar], redis_server: RedisServer
) -> None:
    ok = await client.get("/health")
    assert ok.json() == {"status": "ok", "sql": "ok", "redis": "ok"}
    redis_server.kill()
    try:
        degraded = await client.get("/health")
        assert degraded.status_code == 200
        assert degraded.json() == {"status": "degraded", "sql": "ok", "redis": "down"}
        assert degraded.headers["cache-control"] == "no-store"
        # reads still work, from SQL
        slots = await client.get(
            "/api/v1/services/hund-anmelden/slots",
            params={"from": "2026-11-30", "to": "2026-11-30"},
        )
        assert slots.status_code == 200
        assert slots.json()[0] == {
            "start": "2026-11-30T08:00:00+01:00",
            "end": "2026-11-30T08:15:00+01:00",
            "free": 3,
        }
    finally:
        redis_server.start()
    again = await client.get("/health")
    assert again.json() == {"status": "ok", "sql": "ok", "redis": "ok"}


async def test_a_hold_on_a_closed_day_creates_no_counter(core: Core) -> None:
    """A live hold on a day without free seats (a closure came after it, or the day filled up
    in SQL meanwhile) must not leave a counter behind that never expires."""
    later = ms(core.clock.now() + timedelta(minutes=10))
    await add_hold(core, "sunday", "sachbearbeitung-1|20261129|32|1", st="held", exp=later)
    await core.rebuild_counters()
    key = "sch:{rathaus}:f:sachbearbeitung-1:20261129"
    assert await core.redis.pttl(key) != -1  # -2: no key; anything else: a key that expires
    _, (raw,) = await core.gate.read_days("rathaus", [("sachbearbeitung-1", date(2026, 11, 29))])
    assert not any(decode_free(raw))


# -- a rebuild that fails half-way is retried ---------------------------------------------------


async def test_a_failed_rebuild_is_retried_by_the_next_watch(core: Core) -> None:
    await core.redis.set("sch:{rathaus}:ep", "not-a-number")  # the next reconcile of rathaus fails
    await take_seats(core)
    with pytest.raises(RedisError):
        await core.rebuild_counters()
    await core.redis.delete("sch:{rathaus}:ep")
    await core.watch_counters()  # same Redis, counters present, catalog unchanged: still rebuild
    await assert_counters_match_sql(core)


async def test_a_catalog_change_seen_while_redis_fails_is_not_forgotten(core: Core) -> None:
    version = await core.counters_version("rathaus")
    async with core.sessions() as session, session.begin():
        await bump_catalog(session, core.clock.now())
    await core.redis.execute_command("ACL", "SETUSER", "default", "-info")
    try:
        await core.watch_counters()  # reloads the catalog, then Redis refuses: nothing rebuilt
    finally:
        await core.redis.execute_command("ACL", "SETUSER", "default", "+info")
    assert await core.counters_version("rathaus") == version
    await core.watch_counters()
    assert (await core.counters_version("rathaus") or 0) > (version or 0)  # rebuilt now
