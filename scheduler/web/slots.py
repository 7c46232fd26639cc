"""What the pages show of a service's free times: the next days with room, one day's times, and
the next free times after a moment (what a lost race offers instead). All from the booking
core's counters (the same answer as the API's slots list)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from scheduler.booking.catalog import ServiceInfo
from scheduler.booking.core import MAX_RANGE_DAYS, Core

DAYS_SHOWN = 8
TIMES_SHOWN = 8


@dataclass(frozen=True, slots=True)
class Day:
    day: date
    free_times: int


@dataclass(frozen=True, slots=True)
class Time:
    start: datetime  # local
    end: datetime  # local


def bookable_services(core: Core, channel: str = "online") -> list[ServiceInfo]:
    """Services a citizen can choose: offered on the channel, not a campaign's second dose
    (that one is booked with the first)."""
    seconds = {c.second_service_id for c in core.catalog.campaigns.values()}
    services = [
        s for s in core.catalog.services.values() if channel in s.channels and s.id not in seconds
    ]
    return sorted(services, key=lambda s: (s.location_id, s.position, s.id))


async def next_days(
    core: Core, service: ServiceInfo, first: date, channel: str = "online"
) -> tuple[list[Day], date | None]:
    """Up to DAYS_SHOWN days with free times from ``first`` on, and the day to continue from
    (None once the booking horizon is reached)."""
    tz = core.catalog.locations[service.location_id].tz
    now = core.clock.now()
    today = now.astimezone(tz).date()
    last_bookable = today + timedelta(days=service.max_days_ahead)
    found: list[Day] = []
    cursor = max(first, today)
    while cursor <= last_bookable and len(found) < DAYS_SHOWN:
        last = min(cursor + timedelta(days=27), last_bookable)
        _, results, earliest = await core.free_days(service.id, cursor, last, now, channel=channel)
        for result in results:
            count = sum(
                1
                for offset, free in result.starts
                if free > 0 and result.midnight + timedelta(minutes=offset) >= earliest
            )
            if count:
                found.append(Day(result.day, count))
                if len(found) == DAYS_SHOWN:
                    return found, result.day + timedelta(days=1)
        cursor = last + timedelta(days=1)
    return found, None


async def times_of(
    core: Core, service: ServiceInfo, day: date, channel: str = "online"
) -> list[Time]:
    tz = core.catalog.locations[service.location_id].tz
    now = core.clock.now()
    _, starts = await core.free_starts(service.id, day, day, now, channel=channel)
    return [Time(s.astimezone(tz), e.astimezone(tz)) for s, e, free in starts if free > 0]


async def times_after(
    core: Core, service: ServiceInfo, moment: datetime, channel: str = "online"
) -> list[Time]:
    """The next TIMES_SHOWN free times at or after ``moment`` (within a month)."""
    tz = core.catalog.locations[service.location_id].tz
    now = core.clock.now()
    first = max(moment, now).astimezone(tz).date()
    last = first + timedelta(days=min(31, MAX_RANGE_DAYS))
    _, starts = await core.free_starts(service.id, first, last, now, channel=channel)
    return [
        Time(s.astimezone(tz), e.astimezone(tz))
        for s, e, free in starts
        if free > 0 and s >= moment
    ][:TIMES_SHOWN]
