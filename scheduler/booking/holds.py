"""Holds: planning which cells a visit needs, and taking them atomically in Redis.

A visit is one or more services of one location, back to back: durations add up and one
calendar of each pool serves the whole visit. ``plan_visit`` turns (services, start, seats) into
groups of options — per pool, one option per calendar whose grid has the start — and the HOLD
script takes the first option of every group that fits, all or nothing. For an online visit it
also lists the calendar-days under a phone contingent (``Visit.budgeted``): there the script
takes the seats only if that day's online budget covers them too (see ``counters``).

Hold ids are ``<location>.<token>`` with a 128-bit random token: unguessable, and they name the
hash tag of their keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
from redis.exceptions import RedisError

from scheduler.booking import scripts
from scheduler.booking.availability import earliest_start
from scheduler.booking.catalog import Catalog, ServiceInfo
from scheduler.booking.counters import Keys
from scheduler.booking.errors import (
    FieldError,
    HoldExpired,
    NotFound,
    ReservationUnavailable,
    SlotFull,
    ValidationFailed,
)
from scheduler.calendar.grid import cell_index, local_midnight

SWEEP_LIMIT = 20
MAX_SECOND_OPTIONS = 200  # second-dose options one series hold offers the script
# A claimed hold (being confirmed, or taken for a booking in one step) is a lease: should the
# process die before its commit (SIGKILL, a lost host), the sweep gives the seats back after
# this, not after the hold's ten minutes. A commit that takes longer still stands (SQL decides);
# the counters are then put right by the next reconcile.
CLAIM_LEASE = timedelta(seconds=20)
CONFIRMED_KEEP_MS = 3_600_000  # a confirmed hold's record outlives any reconcile that missed it


@dataclass(frozen=True, slots=True)
class CellRef:
    calendar_id: str
    day: date
    cell: int
    seats: int

    def encode(self) -> str:
        return f"{self.calendar_id}|{self.day:%Y%m%d}|{self.cell}|{self.seats}"

    @classmethod
    def decode_all(cls, text: str) -> list[CellRef]:
        out = []
        for part in filter(None, text.split(";")):
            calendar_id, day, cell, seats = part.split("|")
            out.append(
                cls(
                    calendar_id,
                    date(int(day[:4]), int(day[4:6]), int(day[6:])),
                    int(cell),
                    int(seats),
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class VisitPart:
    service_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Visit:
    """What a hold is for: the services of one location, back to back, from ``start``."""

    location_id: str
    service_ids: tuple[str, ...]
    start: datetime
    end: datetime
    seats: int
    parts: tuple[VisitPart, ...]
    groups: tuple[tuple[tuple[CellRef, ...], ...], ...]  # per pool: options of cells
    # (calendar, day) of the options whose seats also count against the online budget
    budgeted: frozenset[tuple[str, date]] = frozenset()
    # a series: the second-dose service, whose groups follow the first visit's (see
    # ``with_second_dose``)
    second_service_id: str | None = None


class HoldPayload(msgspec.Struct, array_like=True):
    location_id: str
    service_ids: list[str]
    start_ms: int
    seats: int
    channel: str
    # a vaccination series: the second-dose service, whose visit is the hold's cells on a later
    # local day (its start is read from them, see ``appointments_of``). Absent in older holds.
    second_service_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedAppointment:
    """One visit of a hold: its services back to back from ``start``, and its calendars."""

    service_ids: list[str]
    start: datetime
    end: datetime
    calendar_ids: list[str]


log = logging.getLogger(__name__)
_LOG_EVERY = 10.0  # seconds: an outage refuses every hold, the log says so once in a while
_logged: dict[str, tuple[float, int]] = {}  # reason: (last logged at, refused since)


def _unavailable(operation: str, reason: str) -> ReservationUnavailable:
    """The refusal for a Redis that failed the gate's ``operation``, logged with its reason
    (the error's class, or "counters not built") at most once per ``_LOG_EVERY`` seconds and
    reason, with the number refused since."""
    at, refused = _logged.get(reason, (-_LOG_EVERY, 0))
    now = time.monotonic()
    if now - at < _LOG_EVERY:
        _logged[reason] = (at, refused + 1)
    else:
        log.warning(
            "reservation gate unavailable",
            extra={"operation": operation, "reason": reason, "refused": refused + 1},
        )
        _logged[reason] = (now, 0)
    return ReservationUnavailable()


def cell_start(catalog: Catalog, location_id: str, c: CellRef) -> datetime:
    """The UTC start of a cell (cells count real slot lengths from local midnight)."""
    tz = catalog.locations[location_id].tz
    minutes = catalog.calendars[c.calendar_id].slot_minutes
    return local_midnight(c.day, tz) + timedelta(minutes=c.cell * minutes)


def appointments_of(
    catalog: Catalog, payload: HoldPayload, cells: list[CellRef]
) -> list[PlannedAppointment]:
    """The visits a hold is for: one, or two for a series (the second-dose visit is made of
    the cells on other local days than the first visit's; it starts at the earliest)."""
    tz = catalog.locations[payload.location_id].tz
    start = datetime.fromtimestamp(payload.start_ms / 1000, UTC)
    first_day = start.astimezone(tz).date()
    minutes = sum(catalog.services[s].duration_minutes for s in payload.service_ids)
    mine = [c for c in cells if payload.second_service_id is None or c.day == first_day]
    out = [
        PlannedAppointment(
            list(payload.service_ids), start, start + timedelta(minutes=minutes),
            sorted({c.calendar_id for c in mine}),
        )
    ]  # fmt: skip
    if payload.second_service_id is not None:
        rest = [c for c in cells if c.day != first_day]
        second = min(cell_start(catalog, payload.location_id, c) for c in rest)
        duration = catalog.services[payload.second_service_id].duration_minutes
        out.append(
            PlannedAppointment(
                [payload.second_service_id], second, second + timedelta(minutes=duration),
                sorted({c.calendar_id for c in rest}),
            )
        )  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    token: str
    location_id: str
    expires_at: datetime
    cells: list[CellRef]
    payload: HoldPayload


def new_hold_id(location_id: str) -> tuple[str, str]:
    token = secrets.token_urlsafe(16)
    return f"{location_id}.{token}", token


def split_hold_id(hold_id: str) -> tuple[str, str]:
    """The location and token of a hold id; raises HoldExpired for anything malformed."""
    location_id, _, token = hold_id.partition(".")
    if not location_id or len(token) < 16 or len(hold_id) > 150:
        raise HoldExpired()
    return location_id, token


def plan_visit(
    catalog: Catalog,
    service_ids: list[str],
    start: datetime,
    seats: int,
    now: datetime,
    *,
    channel: str,
    check_rules: bool = True,
) -> Visit:
    """Validate a requested visit and list the cells it could take. Raises domain errors."""
    if not service_ids:
        raise ValidationFailed(FieldError("service_id", "required"))
    services: list[ServiceInfo] = []
    for service_id in service_ids:
        service = catalog.services.get(service_id)
        if service is None:
            raise NotFound("service", service_id)
        services.append(service)
    if len(set(service_ids)) != len(service_ids):
        raise ValidationFailed(FieldError("service_ids", "duplicate"))
    location_id = services[0].location_id
    if any(s.location_id != location_id for s in services):
        raise ValidationFailed(FieldError("service_ids", "same_location"))
    if not 1 <= seats <= 20:
        raise ValidationFailed(FieldError("seats", "integer", min=1, max=20))
    tz = catalog.locations[location_id].tz
    start = start.astimezone(UTC)
    if check_rules:
        for service in services:
            if channel not in service.channels:
                raise ValidationFailed(
                    FieldError("channel", "channel_not_offered", channel=channel)
                )
            if start < earliest_start(service, now):
                raise ValidationFailed(FieldError("start", "too_soon"))
            horizon = now.astimezone(tz).date() + timedelta(days=service.max_days_ahead)
            if start.astimezone(tz).date() > horizon:
                raise ValidationFailed(FieldError("start", "too_far", days=service.max_days_ahead))
    parts = []
    cursor = start
    for service in services:
        end = cursor + timedelta(minutes=service.duration_minutes)
        parts.append(VisitPart(service.id, cursor, end))
        cursor = end
    total = int((cursor - start).total_seconds() // 60)
    # pools with the same calendars are one pool for the whole visit (the largest seat need)
    pools: dict[tuple[str, ...], int] = {}
    for service in services:
        for pool in service.pools:
            pools[pool.calendar_ids] = max(pools.get(pool.calendar_ids, 0), pool.seats)
    groups = []
    for calendar_ids, pool_seats in pools.items():
        options = []
        for calendar_id in calendar_ids:
            calendar = catalog.calendars[calendar_id]
            if total % calendar.slot_minutes:
                continue
            found = cell_index(start, tz, calendar.slot_minutes)
            if found is None:
                continue
            day, index = found
            width = total // calendar.slot_minutes
            options.append(
                tuple(
                    CellRef(calendar_id, day, index + n, pool_seats * seats) for n in range(width)
                )
            )
        if not options:
            raise ValidationFailed(FieldError("start", "not_a_start"))
        random.shuffle(options)  # spread bookings over the pool's calendars
        groups.append(tuple(options))
    budgeted: set[tuple[str, date]] = set()
    if channel == "online":
        today = now.astimezone(tz).date()
        for options in groups:
            for cells in options:
                for c in cells:
                    if catalog.calendars[c.calendar_id].reserved_share(c.day, today):
                        budgeted.add((c.calendar_id, c.day))
    return Visit(
        location_id, tuple(service_ids), start, cursor, seats, tuple(parts), tuple(groups),
        frozenset(budgeted),
    )  # fmt: skip


def with_second_dose(
    first: Visit, seconds: list[Visit], second_service_id: str, *, exact: bool
) -> Visit:
    """A series: the first visit's groups, then the second dose's. ``exact``: ``seconds`` is the
    one visit at the requested second start (its pools stay groups of their own). Otherwise
    ``seconds`` are the candidate visits, earliest first, and become the options of one group
    (per candidate, one option per combination of its pools' calendars, at most
    ``MAX_SECOND_OPTIONS`` in all), so the HOLD script takes the earliest that still fits."""
    budgeted = set(first.budgeted)
    for visit in seconds:
        budgeted |= visit.budgeted
    if exact:
        groups = first.groups + seconds[0].groups
    else:
        options: list[tuple[CellRef, ...]] = []
        for visit in seconds:
            for combination in itertools.product(*visit.groups):
                options.append(tuple(c for cells in combination for c in cells))
                if len(options) == MAX_SECOND_OPTIONS:
                    break
            if len(options) == MAX_SECOND_OPTIONS:
                break
        if not options:
            raise SlotFull()
        groups = (*first.groups, tuple(options))
    return dataclasses.replace(
        first, groups=groups, budgeted=frozenset(budgeted), second_service_id=second_service_id
    )


class Reservations:
    """The Redis side of holds: take, claim for confirming, confirm, release, free, sweep."""

    def __init__(
        self,
        redis: Any,
        *,
        unsafe_no_guard: bool = False,
        changed: Callable[[str], None] = lambda _location_id: None,
    ) -> None:
        """``changed(location_id)`` is called after every script that may have changed the
        location's counters, so this process reads its own writes (the change feed's notice
        arrives a moment later)."""
        self.redis = redis
        self._changed = changed
        self._hold = redis.register_script(
            scripts.HOLD.replace("if free - already < seats then", "if false then")
            if unsafe_no_guard
            else scripts.HOLD
        )
        self._claim = redis.register_script(scripts.CLAIM)
        self._confirm = redis.register_script(scripts.CONFIRM)
        self._release = redis.register_script(scripts.RELEASE)
        self._free = redis.register_script(scripts.FREE)
        self._sweep = redis.register_script(scripts.SWEEP)
        self._touch_feeds = redis.register_script(scripts.TOUCH_FEEDS)
        self._one_per_person = redis.register_script(scripts.ONE_PER_PERSON)

    async def hold(
        self, visit: Visit, channel: str, now: datetime, hold_seconds: int, *, claimed: bool
    ) -> Hold:
        """Take every cell of the visit, or nothing. ``claimed``: the hold is taken already
        claimed for an immediate confirm (a booking in one step)."""
        hold_id, token = new_hold_id(visit.location_id)
        keys = Keys(visit.location_id)
        now_ms = int(now.timestamp() * 1000)
        expires = now + timedelta(seconds=hold_seconds)
        if claimed:  # a lease, as a claim's (see CLAIM_LEASE)
            expires = min(expires, now + CLAIM_LEASE)
        payload = HoldPayload(
            visit.location_id,
            list(visit.service_ids),
            int(visit.start.timestamp() * 1000),
            visit.seats,
            channel,
            visit.second_service_id,
        )
        args: list[Any] = [
            visit.location_id,
            token,
            now_ms,
            int(expires.timestamp() * 1000),
            SWEEP_LIMIT,
            msgspec.json.encode(payload),
            "claimed" if claimed else "held",
            len(visit.groups),
        ]
        for options in visit.groups:
            args.append(len(options))
            for cells in options:
                args.append(len(cells))
                for c in cells:
                    budgeted = 1 if (c.calendar_id, c.day) in visit.budgeted else 0
                    args += [c.calendar_id, f"{c.day:%Y%m%d}", c.cell, c.seats, budgeted]
        try:
            result = await self._hold(keys=[keys.version, keys.hold_index], args=args)
            self._changed(visit.location_id)
        except RedisError as exc:
            raise _unavailable("hold", type(exc).__name__) from exc
        if result[0] == -1:
            raise _unavailable("hold", "counters not built")
        if result[0] == 0:
            raise SlotFull()
        cells_text = result[1].decode() if isinstance(result[1], bytes) else result[1]
        return Hold(
            hold_id, token, visit.location_id, expires, CellRef.decode_all(cells_text), payload
        )

    async def one_per_person(self, hold: Hold, person_keys: list[str], ttl_seconds: int) -> int:
        """Make ``hold`` the person's one live series hold: an earlier one still only held is
        released (best effort: the person claims at confirm are the hard limit). Returns how
        many were released."""
        keys = Keys(hold.location_id)
        try:
            released = await self._one_per_person(
                keys=[keys.version, keys.hold_index],
                args=[hold.location_id, hold.token, ttl_seconds * 1000, *person_keys],
            )
        except RedisError:
            return 0
        if released:
            self._changed(hold.location_id)
        return int(released)

    async def claim(self, hold_id: str, now: datetime) -> Hold:
        """Claim a live hold for confirming (only once); HoldExpired otherwise."""
        location_id, token = split_hold_id(hold_id)
        keys = Keys(location_id)
        try:
            result = await self._claim(
                keys=[keys.version, keys.hold_index],
                args=[
                    location_id,
                    token,
                    int(now.timestamp() * 1000),
                    int((now + CLAIM_LEASE).timestamp() * 1000),
                ],
            )
        except RedisError as exc:
            raise _unavailable("claim", type(exc).__name__) from exc
        if result[0] != 1:
            raise HoldExpired()
        cells_text = result[1].decode() if isinstance(result[1], bytes) else result[1]
        payload = msgspec.json.decode(result[2], type=HoldPayload)
        if payload.location_id != location_id:
            raise HoldExpired()
        expires = datetime.fromtimestamp(int(result[3]) / 1000, UTC)
        return Hold(hold_id, token, location_id, expires, CellRef.decode_all(cells_text), payload)

    async def confirm(self, hold: Hold, now: datetime) -> None:
        """The booking is committed: the hold's seats now belong to it (best effort)."""
        keys = Keys(hold.location_id)
        keep = int(now.timestamp() * 1000) + CONFIRMED_KEEP_MS
        # on failure the hold expires and a reconcile puts the counters right
        with contextlib.suppress(RedisError):
            await self._confirm(
                keys=[keys.version, keys.hold_index, keys.epoch],
                args=[hold.location_id, hold.token, keep],
            )

    async def unclaim(self, hold: Hold) -> None:
        """The booking failed: give the hold's seats back."""
        keys = Keys(hold.location_id)
        with contextlib.suppress(RedisError):
            await self._release(
                keys=[keys.version, keys.hold_index],
                args=[hold.location_id, hold.token, "claimed"],
            )
        self._changed(hold.location_id)

    async def release(self, hold_id: str) -> bool:
        location_id, token = split_hold_id(hold_id)
        keys = Keys(location_id)
        try:
            released = await self._release(
                keys=[keys.version, keys.hold_index], args=[location_id, token, "held"]
            )
        except RedisError as exc:
            raise _unavailable("release", type(exc).__name__) from exc
        self._changed(location_id)
        return bool(released)

    async def free(self, location_id: str, cells: list[CellRef], *, online: bool = False) -> None:
        """Seats a committed change gave back in SQL (best effort; reconcile is the backstop).
        ``online``: the booking's channel was online, so the online budgets of those days (where
        they exist) get the seat-cells back as well."""
        if not cells:
            return
        keys = Keys(location_id)
        budget: dict[tuple[str, date], int] = {}
        if online:
            for c in cells:
                budget[(c.calendar_id, c.day)] = budget.get((c.calendar_id, c.day), 0) + c.seats
        used = ";".join(f"{cal}|{day:%Y%m%d}|{n}" for (cal, day), n in sorted(budget.items()))
        args: list[Any] = [location_id, used]
        for c in cells:
            args += [c.calendar_id, f"{c.day:%Y%m%d}", c.cell, c.seats]
        with contextlib.suppress(RedisError):
            await self._free(keys=[keys.version], args=args)
            self._changed(location_id)

    async def feed_version(self, location_id: str, calendar_id: str) -> str | None:
        """The calendar's feed version; None when Redis cannot tell (then ask SQL)."""
        key = Keys(location_id).feed(calendar_id)
        try:
            value = await self.redis.get(key)
            if value is None:
                # a fresh start (first use, or Redis lost it): a random origin, so a version
                # seen before the loss can never be mistaken for this one
                await self.redis.set(key, secrets.randbelow(2**62), nx=True)
                value = await self.redis.get(key)
        except RedisError:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def touch_feeds(self, location_id: str, calendar_ids: list[str]) -> None:
        if calendar_ids:
            with contextlib.suppress(RedisError):
                await self._touch_feeds(keys=[Keys(location_id).version], args=calendar_ids)

    async def sweep(self, location_id: str, now: datetime, limit: int = 500) -> int:
        keys = Keys(location_id)
        released = await self._sweep(
            keys=[keys.version, keys.hold_index],
            args=[location_id, int(now.timestamp() * 1000), limit],
        )
        if released:
            self._changed(location_id)
        return int(released)
