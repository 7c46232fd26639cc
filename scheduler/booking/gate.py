"""The reservation gate: every Redis operation of the booking core, as Lua scripts.

Scripts are registered once per client (EVALSHA, with redis-py loading them again after a
NOSCRIPT reply, e.g. after a restart or a failover). Each script touches only keys of one
location's hash tag, and checks everything before it writes anything.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from redis.asyncio import Redis, RedisCluster
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking.counters import (
    RECONCILE,
    Keys,
    encode_free,
    sql_free_cells,
    sql_online_budgets,
)


def _ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


def _ttl_ms(day: date, tz: ZoneInfo, now: datetime) -> int:
    """Counters of a day are dropped two days after it (nothing books the past). Relative to
    the service's clock, so a clock moved by tests or benches keeps them alive."""
    end = datetime.combine(day + timedelta(days=2), time(0), tzinfo=tz)
    return max(int((end - now).total_seconds() * 1000), 60_000)


class Gate:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._reconcile = redis.register_script(RECONCILE)

    async def run_id(self) -> str:
        """Who serves the counters: the server's ``run_id``, which changes when Redis restarts.

        On Redis Cluster, the run ids of all masters (sorted): a failover promotes a replica,
        which may lack the last writes (replication is asynchronous), so it must be noticed like
        a restart and the counters rebuilt from SQL. Every location's slot has one of these
        masters; a failover of any of them rebuilds all locations (one reconcile, no harm). A
        master that cannot be reached raises ``RedisError``: ask again later.
        """
        if isinstance(self.redis, RedisCluster):
            infos = await self.redis.info("server", target_nodes=RedisCluster.PRIMARIES)
            if "run_id" in infos:  # a cluster of one master answers with its info alone
                return str(infos["run_id"])
            return ",".join(sorted(str(info["run_id"]) for info in infos.values()))
        info = await self.redis.info("server")
        return str(info["run_id"])

    async def reconcile(
        self,
        session: AsyncSession,
        location_id: str,
        calendar_ids: Sequence[str],
        tz: ZoneInfo,
        first_day: date,
        last_day: date,
        now: datetime,
        online_shares: Mapping[tuple[str, date], int] | None = None,
    ) -> int:
        """Rebuild the counters of these calendars and days from SQL plus live holds.

        ``online_shares`` has every (calendar, day) of a calendar with a phone contingent: the
        percentage kept from online booking that day, 0 once released. Their online budgets
        are rebuilt the same way (a released day's key is deleted).

        The epoch is taken before SQL is read: a hold confirmed before it is in the SQL
        snapshot; one confirmed after it may or may not be, and is counted (a seat hidden until
        the next reconcile, never a seat given twice). Returns the number of live holds kept.
        """
        keys = Keys(location_id)
        epoch = int(await self.redis.incr(keys.epoch))
        cells = await sql_free_cells(session, calendar_ids, first_day, last_day)
        shares = {
            (c, d): share
            for (c, d), share in (online_shares or {}).items()
            if first_day <= d <= last_day
        }
        budgets = await sql_online_budgets(session, {k: v for k, v in shares.items() if v})
        script_keys: list[str] = [keys.version, keys.hold_index]
        args: list[str | bytes | int] = [epoch, _ms(now), location_id]
        day = first_day
        while day <= last_day:
            expire = _ttl_ms(day, tz, now)
            for calendar_id in calendar_ids:
                free = cells.get((calendar_id, day))
                script_keys.append(keys.day(calendar_id, day))
                args += [encode_free(free) if free and any(free) else b"", expire]
            day += timedelta(days=1)
        for (calendar_id, day), share in sorted(shares.items()):
            script_keys.append(keys.online(calendar_id, day))
            args += [budgets[(calendar_id, day)] if share else b"", _ttl_ms(day, tz, now)]
        # the version's next value: a fresh random start, or a random step (see RECONCILE)
        args.append(secrets.randbits(52))
        kept = await self._reconcile(keys=script_keys, args=args)
        return int(kept)

    async def read_days(
        self, location_id: str, wanted: Sequence[tuple[str, date]]
    ) -> tuple[int | None, list[bytes | None]]:
        """The counters of (calendar, day) pairs and the location's version, one round trip.

        A version of ``None`` means the counters were never built (or Redis lost them).
        """
        version, raws, _ = await self.read_days_with_budgets(location_id, wanted, ())
        return version, raws

    async def read_days_with_budgets(
        self,
        location_id: str,
        wanted: Sequence[tuple[str, date]],
        budget_days: Sequence[tuple[str, date]],
    ) -> tuple[int | None, list[bytes | None], list[int]]:
        """Like :meth:`read_days`, and the online budgets of ``budget_days`` in the same round
        trip (a missing budget is 0 left, as the HOLD script counts it)."""
        keys = Keys(location_id)
        values = await self.redis.mget(
            [
                keys.version,
                *(keys.day(c, d) for c, d in wanted),
                *(keys.online(c, d) for c, d in budget_days),
            ]
        )
        version = int(values[0]) if values[0] is not None else None
        split = 1 + len(wanted)
        return version, list(values[1:split]), [int(v or 0) for v in values[split:]]

    async def built_for(self, location_id: str) -> str | None:
        """The mark the last complete rebuild of the location left (:meth:`mark_built`)."""
        value = await self.redis.get(Keys(location_id).built)
        return value.decode() if isinstance(value, bytes) else value

    async def mark_built(self, location_id: str, mark: str | None) -> None:
        """Set the mark of a complete rebuild, or (``None``) remove it before one starts."""
        key = Keys(location_id).built
        await (self.redis.delete(key) if mark is None else self.redis.set(key, mark))

    async def version(self, location_id: str) -> int | None:
        value = await self.redis.get(Keys(location_id).version)
        return int(value) if value is not None else None
