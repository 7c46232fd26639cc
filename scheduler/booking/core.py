"""The booking core as one object the entry points (HTTP, CLI, jobs) hold on to.

``Core`` owns the database sessions, the Redis gate, the clock and the configuration catalog,
and keeps the Redis counters in step with SQL (on start, after a Redis restart, and when the
configuration changes). It knows nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler.booking import availability as av
from scheduler.booking import idempotency, retention
from scheduler.booking.bookings import BookingService
from scheduler.booking.catalog import Catalog, ServiceInfo, current_version, load_catalog
from scheduler.booking.changes import ChangeFeed
from scheduler.booking.counters import encode_free, sql_free_cells, sql_online_budgets
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed
from scheduler.booking.gate import Gate
from scheduler.booking.holds import Reservations
from scheduler.booking.slots import horizon, materialize_all
from scheduler.booking.waitlist import Waitlist
from scheduler.clock import Clock

log = logging.getLogger("scheduler.core")

MAX_RANGE_DAYS = 92


@dataclass(frozen=True, slots=True)
class FreeStart:
    start: datetime
    end: datetime
    free: int


class Core:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        clock: Clock,
        secret_key: str,
        hold_seconds: int = 600,
        horizon_days: int = 120,
        unsafe_no_guard: bool = False,
        base_url: str = "http://127.0.0.1:8000",
        retention_days: int = 14,
        offer_hours: int = 24,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.redis = redis
        self.gate = Gate(redis)
        self.changes = ChangeFeed(redis)
        self.reservations = Reservations(
            redis, unsafe_no_guard=unsafe_no_guard, changed=self.changes.forget
        )
        self.bookings = BookingService(self, self.reservations, unsafe_no_guard=unsafe_no_guard)
        self.waitlist = Waitlist(self, self.bookings, offer_hours=offer_hours)
        self.clock = clock
        self.secret_key = secret_key
        self.hold_seconds = hold_seconds
        self.horizon_days = horizon_days
        self.base_url = base_url
        self.retention_days = retention_days
        self.catalog = Catalog()
        self.day_cache = av.DayCache()
        self._redis_run_id: str | None = None
        self._counter_lock = asyncio.Lock()

    # -- configuration and counters ----------------------------------------------------------

    async def refresh_catalog(self, *, force: bool = False) -> bool:
        """Reload the catalog when its version in SQL changed; True when it was reloaded."""
        async with self.sessions() as session:
            version = await current_version(session)
            if not force and version == self.catalog.version and self.catalog.locations:
                return False
            self.catalog = await load_catalog(session)
        return True

    async def materialize(self) -> None:
        """Extend every calendar's slots to the horizon (idempotent), then rebuild counters."""
        async with self.sessions() as session, session.begin():
            report = await materialize_all(session, self.clock.now(), self.horizon_days)
        log.info(
            "slots materialized", extra={"inserted": report.inserted, "deleted": report.deleted}
        )
        await self.rebuild_counters()

    async def rebuild_counters(self, location_ids: Sequence[str] | None = None) -> None:
        """Rebuild Redis counters from SQL and live holds (reconcile)."""
        async with self._counter_lock:
            # Until this rebuild is complete, the next watch_counters must rebuild again.
            self._redis_run_id = None
            # read first: a restart during the rebuild is noticed by the next watch
            run_id = await self.gate.run_id()
            now = self.clock.now()
            for location in self.catalog.locations.values():
                if location_ids is not None and location.id not in location_ids:
                    continue
                await self.gate.mark_built(location.id, None)
                calendar_ids = [c.id for c in self.catalog.calendars_of(location.id)]
                first, last = horizon(now, location.tz, self.horizon_days)
                today = now.astimezone(location.tz).date()
                shares = self.catalog.online_shares(
                    location.id, first - timedelta(days=1), last, today
                )
                async with self.sessions() as session:
                    await self.gate.reconcile(
                        session,
                        location.id,
                        calendar_ids,
                        location.tz,
                        first - timedelta(days=1),
                        last,
                        now,
                        shares,
                    )
                await self.gate.mark_built(location.id, self._built_mark(run_id))
                self.changes.forget(location.id)
            self._redis_run_id = run_id

    def _built_mark(self, run_id: str) -> str:
        return f"{run_id} {self.catalog.version}"

    async def take_over_counters(self) -> None:
        """At the start of a process whose counters another one prepared (the parent of
        ``serve --workers``, a worker started later): keep the counters when their last
        complete rebuild was for this Redis run and this catalog, else rebuild them. Counters
        are kept current by every process's writes and the periodic reconcile; rebuilding them
        once per process start adds nothing."""
        try:
            run_id = await self.gate.run_id()
            mark = self._built_mark(run_id)
            for location_id in self.catalog.locations:
                if await self.gate.built_for(location_id) != mark:
                    break
                if await self.gate.version(location_id) is None:
                    break
            else:
                self._redis_run_id = run_id
                return
            await self.watch_counters()
        except RedisError as exc:
            # holds answer 503 until the watch job rebuilds them
            log.warning("counters not taken over", extra={"reason": type(exc).__name__})

    async def watch_counters(self) -> None:
        """Rebuild counters when Redis restarted, lost them, or the catalog changed."""
        reloaded = await self.refresh_catalog()
        if reloaded:
            self._redis_run_id = None  # rebuild for this catalog even if Redis fails right now
        try:
            run_id = await self.gate.run_id()
            missing = [
                loc for loc in self.catalog.locations if await self.gate.version(loc) is None
            ]
        except RedisError:
            return
        if reloaded or run_id != self._redis_run_id or missing:
            log.info(
                "rebuilding counters",
                extra={"reason": "catalog" if reloaded else "redis" if missing else "run_id"},
            )
            await self.rebuild_counters()

    async def erase_expired(self) -> int:
        """The retention job: erase personal data of appointments past the retention time, and
        drop idempotency records older than a week."""
        now = self.clock.now()
        async with self.sessions() as session, session.begin():
            erased = await retention.erase_expired(session, now, self.retention_days)
            # replayable answers are kept for a week: long enough for any client's retries
            await idempotency.expire(session, now - timedelta(days=7))
        if erased:
            log.info("personal data erased", extra={"bookings": erased})
        return erased

    async def release_holdbacks(self) -> int:
        """Give back the seats of cancelled bookings whose release delay has passed."""
        return await self.bookings.release_holdbacks()

    async def sweep_holds(self) -> int:
        """Release expired holds of every location (the hold script also sweeps a few)."""
        released = 0
        now = self.clock.now()
        for location_id in self.catalog.locations:
            try:
                released += await self.reservations.sweep(location_id, now)
            except RedisError:
                return released
        return released

    # -- health -----------------------------------------------------------------------------

    async def sql_ok(self) -> bool:
        try:
            async with asyncio.timeout(2), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def redis_ok(self) -> bool:
        try:
            async with asyncio.timeout(1):
                return bool(await self.redis.ping())
        except Exception:
            return False

    # -- reads ------------------------------------------------------------------------------

    def service(self, service_id: str) -> ServiceInfo:
        found = self.catalog.services.get(service_id)
        if found is None:
            raise NotFound("service", service_id)
        return found

    async def free_days(
        self, service_id: str, first: date, last: date, now: datetime, *, channel: str = "online"
    ) -> tuple[int | None, list[av.DayResult], datetime]:
        """Bookable starts of a service between two local dates (inclusive), per day, with the
        counters' version (results may be cached under it) and the earliest allowed start.

        Answered from the Redis counters (live holds included); from SQL, with version None,
        while Redis is unavailable or its counters are not rebuilt yet. The ``online`` channel
        sees the days under a phone contingent limited by their online budgets (from SQL
        alone, without live holds, in the fallback); other channels see every free seat.
        """
        service = self.service(service_id)
        check_range(first, last)
        catalog = self.catalog
        tz = catalog.locations[service.location_id].tz
        days, earliest = av.bookable_days(service, tz, first, last, now)
        if not days:
            return None, [], earliest
        wanted = av.wanted_cells(service, days)
        today = now.astimezone(tz).date()
        reserved = {
            (c, d): share
            for c, d in (wanted if channel == "online" else ())
            if (share := catalog.calendars[c].reserved_share(d, today))
        }
        raw: list[bytes | None] | None = None
        version: int | None = None
        left: list[int] = []
        try:
            version, raw, left = await self.gate.read_days_with_budgets(
                service.location_id, wanted, list(reserved)
            )
        except RedisError:
            raw = None
        if version is None or raw is None:
            version, raw = None, await self._sql_counters(wanted)
            left = list((await self._sql_budgets(reserved)).values())
        budgets = dict(zip(reserved, left, strict=True))
        limits = [budgets.get(p) for p in wanted] if budgets else None
        results = av.collect_days(catalog, service, days, raw, self.day_cache, limits)
        return version, results, earliest

    async def free_starts(
        self, service_id: str, first: date, last: date, now: datetime, *, channel: str = "online"
    ) -> tuple[int | None, list[tuple[datetime, datetime, int]]]:
        """Like :meth:`free_days`, flattened to (start, end, free) in UTC."""
        version, days, earliest = await self.free_days(
            service_id, first, last, now, channel=channel
        )
        duration = timedelta(minutes=self.service(service_id).duration_minutes)
        starts = [
            (result.midnight + timedelta(minutes=offset), free)
            for result in days
            for offset, free in result.starts
        ]
        return version, [(s, s + duration, f) for s, f in starts if s >= earliest]

    async def counters_version(self, location_id: str) -> int | None:
        """The version of a location's counters; no round trip while the change feed is live
        and nothing changed since the last read."""
        known = self.changes.known(location_id)
        if known is not None:
            return known
        generation = self.changes.generation(location_id)
        try:
            version = await self.gate.version(location_id)
        except RedisError:
            return None
        if version is not None:
            self.changes.remember(location_id, version, generation)
        return version

    async def start(self) -> None:
        """Start the background parts (the change feed) and open the database pool, so the
        first requests of a rush do not pay for connecting."""
        self.changes.start()
        await self.warm_up()

    async def warm_up(self) -> None:
        size = getattr(self.engine.pool, "size", lambda: 1)()

        async def touch() -> None:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                await asyncio.sleep(0.05)  # hold it, so the pool opens another

        try:
            await asyncio.gather(*(touch() for _ in range(min(size, 32))))
        except Exception:
            log.warning("could not warm the database pool")

    async def stop(self) -> None:
        await self.changes.stop()

    async def _sql_budgets(
        self, shares: dict[tuple[str, date], int]
    ) -> dict[tuple[str, date], int]:
        if not shares:
            return {}
        async with self.sessions() as session:
            budgets = await sql_online_budgets(session, shares)
        return {key: budgets[key] for key in shares}

    async def _sql_counters(self, wanted: list[tuple[str, date]]) -> list[bytes | None]:
        calendars = {c for c, _ in wanted}
        days = [d for _, d in wanted]
        async with self.sessions() as session:
            cells = await sql_free_cells(session, calendars, min(days), max(days))
        return [encode_free(cells[(c, d)]) if (c, d) in cells else None for c, d in wanted]


def check_range(first: date, last: date) -> None:
    if last < first:
        raise ValidationFailed(FieldError("to", "to_before_from"))
    if (last - first).days > MAX_RANGE_DAYS:
        raise ValidationFailed(FieldError("to", "range_too_long", max=MAX_RANGE_DAYS))
