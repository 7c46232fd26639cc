"""Free starts of a service, computed from per-cell free seats.

The same function serves both sources: Redis counters (the normal path; they count live holds)
and SQL (the fallback while Redis is unavailable). Results are cached per service and day,
keyed by the exact counter bytes they were computed from, so a cache entry can never be stale:
when any counter of that day changes, the key changes.

The online view of a day under a phone contingent is also limited by the online budget of each
calendar (seat-cells left, see ``counters``): a calendar's cells count as at most
``budget // width`` free, ``width`` being the cells one booking of the service covers there, so
a start offers at most ``budget // (width * seats)`` bookings on that calendar. The limits are
part of the cache key.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.booking.catalog import Catalog, ServiceInfo
from scheduler.booking.counters import decode_free
from scheduler.calendar.grid import local_midnight

DayStarts = tuple[tuple[int, int], ...]  # (minutes after local midnight, free) sorted


def day_starts(
    service: ServiceInfo,
    slot_minutes: Mapping[str, int],
    counters: Mapping[str, bytes | None],
    limits: Mapping[str, int] | None = None,
) -> DayStarts:
    """Starts of ``service`` on one day with how many one-seat bookings each could still take.

    ``counters`` maps every calendar of the service's pools to its free-seat string for the
    day. A start is offered where every pool has a calendar whose cells for the whole duration
    have ``seats`` free; ``free`` is the minimum over pools of the bookings the pool's calendars
    could take together. ``limits``: calendars whose cells count as at most that many free.
    """
    result: dict[int, int] | None = None
    for pool in service.pools:
        acc: dict[int, int] = {}
        seats = pool.seats
        for calendar_id in pool.calendar_ids:
            free = decode_free(counters.get(calendar_id))
            limit = limits.get(calendar_id) if limits else None
            if limit is not None:
                free = array("H", (min(v, limit) for v in free))
            if not free or not any(free):
                continue
            length = slot_minutes[calendar_id]
            width = service.duration_minutes // length
            if width == 1:
                for cell, value in enumerate(free):
                    if value >= seats:
                        offset = cell * length
                        acc[offset] = acc.get(offset, 0) + value // seats
            else:
                for cell in range(len(free) - width + 1):
                    value = min(free[cell : cell + width])
                    if value >= seats:
                        offset = cell * length
                        acc[offset] = acc.get(offset, 0) + value // seats
        if result is None:
            result = acc
        else:
            result = {k: min(v, acc[k]) for k, v in result.items() if k in acc}
        if not result:
            return ()
    return tuple(sorted(result.items())) if result else ()


class DayCache:
    """A small LRU of :func:`day_starts` results keyed by the counter bytes they used."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._data: OrderedDict[tuple[object, ...], DayStarts] = OrderedDict()

    def get_or_compute(
        self, key: tuple[object, ...], compute: Callable[[], DayStarts]
    ) -> DayStarts:
        found = self._data.get(key)
        if found is not None:
            self._data.move_to_end(key)
            return found
        value = compute()
        self._data[key] = value
        if len(self._data) > self._size:
            self._data.popitem(last=False)
        return value


def bookable_days(
    service: ServiceInfo, tz: ZoneInfo, first: date, last: date, now: datetime
) -> tuple[list[date], datetime]:
    """The days of [first, last] inside the service's horizon, and the earliest allowed start."""
    today = now.astimezone(tz).date()
    horizon = today + timedelta(days=service.max_days_ahead)
    earliest = earliest_start(service, now)
    start = max(first, earliest.astimezone(tz).date())
    end = min(last, horizon)
    days = []
    day = start
    while day <= end:
        days.append(day)
        day += timedelta(days=1)
    return days, earliest


def wanted_cells(service: ServiceInfo, days: list[date]) -> list[tuple[str, date]]:
    calendar_ids = sorted({c for pool in service.pools for c in pool.calendar_ids})
    return [(c, d) for d in days for c in calendar_ids]


@dataclass(frozen=True, slots=True)
class DayResult:
    """The starts of one service on one day. ``key`` names the computation exactly (service and
    the counter bytes it read): equal keys on the same day mean equal answers."""

    day: date
    key: tuple[object, ...]
    midnight: datetime
    starts: DayStarts


def collect_days(
    catalog: Catalog,
    service: ServiceInfo,
    days: list[date],
    raw: list[bytes | None],
    cache: DayCache,
    budgets: list[int | None] | None = None,
) -> list[DayResult]:
    """Per-day starts of ``service`` from ``raw`` (counters in the order of
    :func:`wanted_cells`); days without any start are left out. ``budgets``, in the same order:
    the online seat-cells left of each calendar and day under a phone contingent, None where
    there is no limit (omitted: no limits at all)."""
    tz = catalog.locations[service.location_id].tz
    calendar_ids = sorted({c for pool in service.pools for c in pool.calendar_ids})
    minutes = {c: catalog.calendars[c].slot_minutes for c in calendar_ids}
    cells_per_booking = [max(service.duration_minutes // minutes[c], 1) for c in calendar_ids]
    width = len(calendar_ids)
    out: list[DayResult] = []
    for n, day in enumerate(days):
        chunk = raw[n * width : (n + 1) * width]
        if not any(chunk):
            continue
        counters = dict(zip(calendar_ids, chunk, strict=True))
        limits: dict[str, int] = {}
        if budgets is not None:
            for calendar_id, budget, cells in zip(
                calendar_ids, budgets[n * width : (n + 1) * width], cells_per_booking, strict=True
            ):
                if budget is not None:
                    limits[calendar_id] = max(budget, 0) // cells
        key = (service.id, *chunk, *sorted(limits.items()))
        starts = cache.get_or_compute(
            key, lambda c=counters, x=limits: day_starts(service, minutes, c, x)
        )
        if starts:
            out.append(DayResult(day, key, local_midnight(day, tz), starts))
    return out


def collect_starts(
    catalog: Catalog,
    service: ServiceInfo,
    days: list[date],
    raw: list[bytes | None],
    earliest: datetime,
    cache: DayCache,
    budgets: list[int | None] | None = None,
) -> list[tuple[datetime, datetime, int]]:
    """(start, end, free) in UTC for every bookable start of ``days`` at or after ``earliest``."""
    duration = timedelta(minutes=service.duration_minutes)
    out: list[tuple[datetime, datetime, int]] = []
    for result in collect_days(catalog, service, days, raw, cache, budgets):
        for offset, free in result.starts:
            start = result.midnight + timedelta(minutes=offset)
            if start >= earliest:
                out.append((start, start + duration, free))
    return out


def earliest_start(service: ServiceInfo, now: datetime) -> datetime:
    """The earliest start the notice rule allows, rounded up to the whole minute."""
    moment = (now + timedelta(minutes=service.min_notice_minutes)).astimezone(UTC)
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)
