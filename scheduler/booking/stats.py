"""Statistics for admins: bookings by service and channel, cancellations, no-shows and
utilisation, per ISO week (Monday to Sunday) of local dates and in total. Read-only, HTTP-free,
and it reads no personal data (only status, channel, location, times and service ids).

What is counted, between two local dates ``first`` and ``last`` (inclusive, at most 92 days):

- The unit is a visit (an appointment), placed on the local date of its start in its location's
  zone. A vaccination series therefore counts once in the week of each dose, and a visit for
  several services counts once in the totals and once for each of its services.
- ``bookings``: visits of bookings that were ever booked: confirmed, checked in, no-show,
  completed or cancelled. A pending booking (waiting for the e-mail opt-in or a waiting-list
  answer) is not a booking yet and is left out.
- ``cancelled``: those of them that were cancelled. ``online``, ``phone`` and ``counter`` count
  the others (not cancelled), so ``online_share = online / (online + phone + counter)``.
- ``no_show_rate = no_show / (checked_in + no_show + completed)``: of the visits whose outcome
  is known (a confirmed visit in the past without check-in is not counted either way).
- ``utilisation = seats_booked / seats_capacity`` over the slots of the range (their local
  ``day``): of every calendar, or with a service, of the calendars of its pools (their seats, as
  booked by any service). Seats of pending bookings are taken, so they count here.

Ratios are between 0 and 1, rounded to 4 places, and null when their denominator is 0.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import models as m
from scheduler.booking.catalog import Catalog
from scheduler.booking.core import check_range
from scheduler.booking.errors import NotFound
from scheduler.booking.slots import day_bounds

S = m.BookingStatus
BOOKED = (S.CONFIRMED, S.CHECKED_IN, S.NO_SHOW, S.COMPLETED, S.CANCELLED)
CHANNELS = tuple(c.value for c in m.Channel)
FALLBACK_TZ = ZoneInfo("Europe/Berlin")
T = TypeVar("T")


class ServiceFigures(msgspec.Struct, frozen=True):
    service_id: str
    bookings: int
    cancelled: int
    online: int
    phone: int
    counter: int


class CalendarFigures(msgspec.Struct, frozen=True):
    calendar_id: str
    seats_booked: int
    seats_capacity: int
    utilisation: float | None


class Period(msgspec.Struct, frozen=True):
    """One ISO week (``label`` e.g. ``2026-W48``, its days cut to the range) or the total."""

    label: str
    first: date = msgspec.field(name="from")
    last: date = msgspec.field(name="to")
    bookings: int
    cancelled: int
    online: int
    phone: int
    counter: int
    online_share: float | None
    checked_in: int
    completed: int
    no_show: int
    no_show_rate: float | None
    seats_booked: int
    seats_capacity: int
    utilisation: float | None
    services: list[ServiceFigures]
    calendars: list[CalendarFigures]


class Stats(msgspec.Struct, frozen=True):
    first: date = msgspec.field(name="from")
    last: date = msgspec.field(name="to")
    service_id: str | None
    weeks: list[Period]
    total: Period


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def iso_weeks(first: date, last: date) -> Iterator[tuple[str, date, date]]:
    """The ISO weeks touching ``first``..``last``: label and their days within the range."""
    monday = first - timedelta(days=first.weekday())
    while monday <= last:
        year, week, _ = monday.isocalendar()
        yield f"{year}-W{week:02d}", max(monday, first), min(monday + timedelta(days=6), last)
        monday += timedelta(days=7)


@dataclass(slots=True)
class _Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    services: dict[str, Counter[str]] = field(default_factory=dict)
    seats: dict[str, list[int]] = field(default_factory=dict)

    def visits(self, status: str, channel: str, service_ids: list[str], n: int) -> None:
        self.statuses[status] += n
        if status == S.CANCELLED:
            column = "cancelled"
        else:
            column = channel
            self.channels[channel] += n
        for service_id in service_ids:
            counts = self.services.setdefault(service_id, Counter())
            counts["bookings"] += n
            counts[column] += n

    def slots(self, calendar_id: str, booked: int, capacity: int) -> None:
        seats = self.seats.setdefault(calendar_id, [0, 0])
        seats[0] += booked
        seats[1] += capacity

    def period(self, label: str, first: date, last: date, catalog: Catalog) -> Period:
        st = self.statuses
        bookings = st.total()
        cancelled = st[S.CANCELLED]
        outcomes = st[S.CHECKED_IN] + st[S.NO_SHOW] + st[S.COMPLETED]
        booked = sum(s[0] for s in self.seats.values())
        capacity = sum(s[1] for s in self.seats.values())
        return Period(
            label=label,
            first=first,
            last=last,
            bookings=bookings,
            cancelled=cancelled,
            online=self.channels[m.Channel.ONLINE],
            phone=self.channels[m.Channel.PHONE],
            counter=self.channels[m.Channel.COUNTER],
            online_share=ratio(self.channels[m.Channel.ONLINE], bookings - cancelled),
            checked_in=st[S.CHECKED_IN],
            completed=st[S.COMPLETED],
            no_show=st[S.NO_SHOW],
            no_show_rate=ratio(st[S.NO_SHOW], outcomes),
            seats_booked=booked,
            seats_capacity=capacity,
            utilisation=ratio(booked, capacity),
            services=[
                ServiceFigures(
                    sid,
                    c["bookings"],
                    c["cancelled"],
                    c[m.Channel.ONLINE],
                    c[m.Channel.PHONE],
                    c[m.Channel.COUNTER],
                )
                for sid, c in _in_order(self.services, catalog.services)
            ],
            calendars=[
                CalendarFigures(cid, s[0], s[1], ratio(s[0], s[1]))
                for cid, s in _in_order(self.seats, catalog.calendars)
            ],
        )


def _in_order(found: dict[str, T], known: Mapping[str, object]) -> list[tuple[str, T]]:
    """Catalog order first, then ids the catalog no longer knows, sorted."""
    ordered = [(key, found[key]) for key in known if key in found]
    return ordered + sorted((k, v) for k, v in found.items() if k not in known)


async def booking_stats(
    session: AsyncSession,
    catalog: Catalog,
    first: date,
    last: date,
    service_id: str | None = None,
) -> Stats:
    """Figures per ISO week and in total between two local dates (inclusive); see the module
    docstring for what counts. Unknown service: NotFound; a range over 92 days: ValidationFailed."""
    check_range(first, last)
    calendar_ids: set[str] | None = None
    location_id: str | None = None
    if service_id is not None:
        service = catalog.services.get(service_id)
        if service is None:
            raise NotFound("service", service_id)
        calendar_ids = {c for pool in service.pools for c in pool.calendar_ids}
        location_id = service.location_id

    weeks = list(iso_weeks(first, last))
    monday = first - timedelta(days=first.weekday())
    tallies = [_Tally() for _ in weeks]
    total = _Tally()

    def tallies_of(day: date) -> tuple[_Tally, _Tally]:
        return tallies[(day - monday).days // 7], total

    # Visits: local dates differ per location's zone, so select the widest UTC window and place
    # each visit by its local date. Service ids are JSON (grouped as text on every database).
    zones = {loc.id: loc.tz for loc in catalog.locations.values()}
    bounds = [day_bounds(first, tz)[0] for tz in (*zones.values(), FALLBACK_TZ)]
    ends = [day_bounds(last, tz)[1] for tz in (*zones.values(), FALLBACK_TZ)]
    services_text = cast(m.Appointment.service_ids, String)
    group = (
        m.Booking.status,
        m.Booking.channel,
        m.Booking.location_id,
        m.Appointment.starts_at,
        services_text,
    )
    query = (
        select(*group, func.count())
        .join(m.Appointment, m.Appointment.booking_id == m.Booking.id)
        .where(
            m.Appointment.starts_at >= min(bounds),
            m.Appointment.starts_at < max(ends),
            m.Booking.status.in_([s.value for s in BOOKED]),
        )
        .group_by(*group)
    )
    if location_id is not None:
        query = query.where(m.Booking.location_id == location_id)
    for status, channel, location, starts_at, services_json, n in await session.execute(query):
        day = starts_at.astimezone(zones.get(location, FALLBACK_TZ)).date()
        service_ids: list[str] = json.loads(services_json)
        if not first <= day <= last or (service_id is not None and service_id not in service_ids):
            continue
        counted = [service_id] if service_id is not None else service_ids
        for tally in tallies_of(day):
            tally.visits(status, channel, counted, n)

    # Seats: slots carry their local day, so this is one GROUP BY.
    seats = (
        select(m.Slot.calendar_id, m.Slot.day, func.sum(m.Slot.booked), func.sum(m.Slot.capacity))
        .where(m.Slot.day >= first, m.Slot.day <= last)
        .group_by(m.Slot.calendar_id, m.Slot.day)
    )
    if calendar_ids is not None:
        seats = seats.where(m.Slot.calendar_id.in_(sorted(calendar_ids)))
    for calendar_id, day, booked, capacity in await session.execute(seats):
        for tally in tallies_of(day):
            tally.slots(calendar_id, int(booked or 0), int(capacity or 0))

    return Stats(
        first=first,
        last=last,
        service_id=service_id,
        weeks=[
            tally.period(label, start, end, catalog)
            for tally, (label, start, end) in zip(tallies, weeks, strict=True)
        ],
        total=total.period("total", first, last, catalog),
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def table(stats: Stats) -> str:
    """The figures as plain-text tables (``scheduler stats``): one row per week and the total,
    then the total by service."""
    lines = [
        f"{'WEEK':<10}{'FROM':<12}{'TO':<12}{'BOOKINGS':>9}{'ONLINE':>8}{'PHONE':>7}"
        f"{'COUNTER':>9}{'ONLINE %':>10}{'CANCELLED':>11}{'NO-SHOW %':>11}{'UTILISATION %':>15}"
    ]
    for p in [*stats.weeks, stats.total]:
        lines.append(
            f"{p.label.upper():<10}{p.first.isoformat():<12}{p.last.isoformat():<12}"
            f"{p.bookings:>9}{p.online:>8}{p.phone:>7}{p.counter:>9}"
            f"{_percent(p.online_share):>10}{p.cancelled:>11}{_percent(p.no_show_rate):>11}"
            f"{_percent(p.utilisation):>15}"
        )
    lines.append("")
    lines.append(
        f"{'SERVICE':<30}{'BOOKINGS':>9}{'ONLINE':>8}{'PHONE':>7}{'COUNTER':>9}{'CANCELLED':>11}"
    )
    for s in stats.total.services:
        lines.append(
            f"{s.service_id:<30}{s.bookings:>9}{s.online:>8}{s.phone:>7}{s.counter:>9}"
            f"{s.cancelled:>11}"
        )
    if not stats.total.services:
        lines.append("(no bookings)")
    return "\n".join(lines)
