"""Seed files: the set-up of a municipality as TOML, validated by msgspec.

``parse_seed`` turns the text into a :class:`Seed` (errors name the field and, where it can be
found, the line); ``apply_seed`` writes it to SQL idempotently: loading the same file twice
changes nothing, loading an edited file updates what changed. Dates may be relative to the
moment the file is loaded (``"now"``, ``"+2d"``, ``"-1h"``, ``"today"``, ``"today+3d"``), so a
demo campaign is open whenever the demo starts.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.booking import models as m
from scheduler.calendar.grid import VALID_SLOT_MINUTES, OpeningRule, RuleError, validate_rules

Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Interval = Annotated[str, msgspec.Meta(pattern=r"^\d\d:\d\d-\d\d:\d\d$")]
ReleaseDays = Annotated[int, msgspec.Meta(ge=0, le=365)]
DEFAULT_OPT_IN_MINUTES = 30
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SeedError(ValueError):
    """A seed file that cannot be loaded; the message names the field and line."""


class MunicipalitySpec(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    timezone: str = "Europe/Berlin"
    postcodes: list[str] = []


class LocationSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Slug
    name: Name
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    timezone: str | None = None
    # anti-trading: citizens' active online bookings here per contact e-mail address and per
    # contact phone number (0: no limit; agents' phone and counter bookings are not limited)
    max_active_per_email: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 6
    max_active_per_phone: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 6


class HoursSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Slug
    mon: list[Interval] = []
    tue: list[Interval] = []
    wed: list[Interval] = []
    thu: list[Interval] = []
    fri: list[Interval] = []
    sat: list[Interval] = []
    sun: list[Interval] = []
    valid_from: Any = None  # date or relative ("today+7d"); checked by _check_references
    valid_to: Any = None


class CalendarSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Slug
    location: Slug
    name: Name
    kind: Literal["clerk", "room", "line"]
    slot_minutes: Annotated[int, msgspec.Meta(ge=5, le=60)]
    hours: Slug
    capacity: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1
    feed_privacy: Literal["full", "initials", "service"] = "initials"
    # the phone contingent; unset: as the campaign of the calendar's services says
    phone_share_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    phone_release_days: ReleaseDays | None = None


class ClosureSpec(msgspec.Struct, forbid_unknown_fields=True):
    reason: Name
    start: Any  # date, date-time or relative; checked by _check_references
    end: Any = None
    location: Slug | None = None
    calendar: Slug | None = None


class HolidaySpec(msgspec.Struct, forbid_unknown_fields=True):
    date: date
    name: Name


class RequirementSpec(msgspec.Struct, forbid_unknown_fields=True):
    pool: Annotated[list[Slug], msgspec.Meta(min_length=1)]
    seats: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class ServiceSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Slug
    location: Slug
    name: Name
    duration_minutes: Annotated[int, msgspec.Meta(ge=5, le=480)]
    requirements: Annotated[list[RequirementSpec], msgspec.Meta(min_length=1)]
    name_en: Name | None = None
    description: str = ""
    description_en: str = ""
    min_notice_minutes: Annotated[int, msgspec.Meta(ge=0, le=525_600)] = 0
    max_days_ahead: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 90
    channels: list[Literal["online", "phone", "counter"]] = msgspec.field(
        default_factory=lambda: ["online", "phone", "counter"]
    )
    max_active_per_person: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    reminder_hours: list[Annotated[int, msgspec.Meta(ge=1, le=24 * 14)]] = msgspec.field(
        default_factory=lambda: [24]
    )
    # e-mail double opt-in of citizens' online bookings, confirmed within opt_in_minutes
    # (default 30; only with requires_opt_in)
    requires_opt_in: bool = False
    opt_in_minutes: Annotated[int, msgspec.Meta(ge=5, le=1440)] | None = None
    # anti-trading: a cancelled booking's seats are offered again after this many minutes
    release_delay_minutes: Annotated[int, msgspec.Meta(ge=0, le=10_080)] = 0
    campaign: Slug | None = None


class CampaignSpec(msgspec.Struct, forbid_unknown_fields=True):
    id: Slug
    location: Slug
    name: Name
    opens_at: Any  # date-time or relative ("now", "+2d"); checked by _check_references
    places: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    closes_at: Any = None
    min_age: Annotated[int, msgspec.Meta(ge=0, le=150)] | None = None
    postcodes: list[Annotated[str, msgspec.Meta(pattern=r"^\d{5}$")]] = []
    first_service: Slug | None = None
    second_service: Slug | None = None
    second_dose_days: Annotated[list[int], msgspec.Meta(min_length=2, max_length=2)] | None = None
    phone_share_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    phone_release_days: ReleaseDays = 0


class Seed(msgspec.Struct, forbid_unknown_fields=True):
    municipality: MunicipalitySpec
    locations: list[LocationSpec]
    opening_hours: list[HoursSpec]
    calendars: list[CalendarSpec]
    services: list[ServiceSpec]
    campaigns: list[CampaignSpec] = []
    closures: list[ClosureSpec] = []
    holidays: list[HolidaySpec] = []


# -- parsing -------------------------------------------------------------------------------


def load_seed_file(path: Path) -> Seed:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"{path}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SeedError(f"{path}: not UTF-8 text") from None
    return parse_seed(text, source=str(path))


def parse_seed(text: str, source: str = "seed") -> Seed:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SeedError(f"{source}: not valid TOML: {exc}") from None
    try:
        seed = msgspec.convert(raw, Seed)
    except msgspec.ValidationError as exc:
        raise SeedError(_locate(str(exc), text, source, raw)) from None
    problems = _check_references(seed, text)
    if problems:
        raise SeedError(f"{source}: " + "; ".join(problems))
    return seed


_PATH = re.compile(r"`\$((?:\.[A-Za-z_]+|\[\d+\])*)`")


def _locate(message: str, text: str, source: str, raw: dict[str, object]) -> str:
    """Turn msgspec's ``... - at `$.services[2].seats``` into a message with a line number."""
    found = _PATH.search(message)
    what = message.split(" - at ")[0].replace("`", "")
    if not found:
        return f"{source}: {what}"
    parts = re.findall(r"\.([A-Za-z_]+)|\[(\d+)\]", found.group(1))
    named = re.search(r"(?:unknown|missing required) field `([^`]+)`", message)
    if named:  # the path ends at the table: add the field, so path and line name it
        parts.append((named.group(1), ""))
    path = "".join(f".{k}" if k else f"[{i}]" for k, i in parts).lstrip(".")
    line = _line_of(text, [(k, int(i) if i else None) for k, i in parts])
    ident = ""
    if len(parts) >= 2 and parts[0][0] and parts[1][1]:
        table = raw.get(parts[0][0])
        if isinstance(table, list) and int(parts[1][1]) < len(table):
            entry = table[int(parts[1][1])]
            if isinstance(entry, dict) and "id" in entry:
                ident = f" (id = {entry['id']!r})"
    where = f", line {line}" if line else ""
    return f"{source}{where}: {path}{ident}: {what}"


def _line_of(text: str, parts: list[tuple[str, int | None]]) -> int | None:
    """Best-effort line of a TOML path: the n-th ``[[table]]`` header, then the key below it."""
    lines = text.splitlines()
    pos, header = 0, ""
    for key, index in parts:
        if index is not None and header:
            seen = -1
            for n in range(pos, len(lines)):
                if lines[n].strip() == f"[[{header}]]":
                    seen += 1
                    if seen == index:
                        pos = n + 1
                        break
            else:
                return None
            continue
        if key:
            header = f"{header}.{key}" if header else key
            for n in range(pos, len(lines)):
                stripped = lines[n].strip()
                if re.match(rf"{re.escape(key)}\s*=", stripped):
                    return n + 1
                if stripped.startswith("[[") and n > pos and not stripped.startswith(f"[[{header}"):
                    break
    return pos or None


def _check_references(seed: Seed, text: str = "") -> list[str]:
    """Problems msgspec cannot see (references, time zones, the slot grid), each starting with
    the path of the offending value and, where it can be found in ``text``, its line."""
    problems: list[str] = []

    def at(*path: str | int) -> str:
        parts = [("", p) if isinstance(p, int) else (p, None) for p in path]
        label = "".join(f".{k}" if k else f"[{i}]" for k, i in parts).lstrip(".")
        line = _line_of(text, parts) if text else None
        return f"{label} (line {line})" if line else label

    def problem(message: str, *path: str | int) -> None:
        entry = f"{at(*path)}: {message}"
        if entry not in problems:
            problems.append(entry)

    def unique(kind: str, table: str, ids: list[str]) -> None:
        counts = Counter(ids)
        seen: set[str] = set()
        for n, ident in enumerate(ids):
            if ident in seen:
                problem(f"{kind} id {ident!r} is used {counts[ident]} times", table, n, "id")
            seen.add(ident)

    try:
        ZoneInfo(seed.municipality.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problem(f"unknown time zone {seed.municipality.timezone!r}", "municipality", "timezone")
    unique("location", "locations", [x.id for x in seed.locations])
    unique("calendar", "calendars", [x.id for x in seed.calendars])
    unique("service", "services", [x.id for x in seed.services])
    unique("campaign", "campaigns", [x.id for x in seed.campaigns])
    locations = {x.id for x in seed.locations}
    calendars = {c.id: c for c in seed.calendars}
    services = {s.id: s for s in seed.services}
    campaigns = {c.id for c in seed.campaigns}
    for n, loc in enumerate(seed.locations):
        if loc.timezone:
            try:
                ZoneInfo(loc.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                problem(f"unknown time zone {loc.timezone!r}", "locations", n, "timezone")

    def moment_type(
        value: Any, *path: str | int, day_only: bool = False, optional: bool = True
    ) -> None:
        if value is None and optional:
            return
        allowed: tuple[type, ...] = (date, str) if day_only else (date, datetime, str)
        if not isinstance(value, allowed) or (day_only and isinstance(value, datetime)):
            kind = "a date" if day_only else "a date or date-time"
            problem(f"expected {kind} or a relative value like '+2d'", *path)
        elif isinstance(value, str):
            try:
                resolve_moment(value, datetime(2000, 1, 1, tzinfo=UTC), ZoneInfo("UTC"))
            except SeedError as exc:
                problem(str(exc), *path)

    # Opening hours: each interval on its own (so the error names it), then the set of them,
    # for every slot length of the calendars that use them.
    slot_lengths = {
        h.id: sorted(
            {c.slot_minutes for c in seed.calendars if c.hours == h.id}
            & set(VALID_SLOT_MINUTES)  # other lengths are reported at the calendar
        )
        for h in seed.opening_hours
    }
    for n, h in enumerate(seed.opening_hours):
        count = len(problems)
        moment_type(h.valid_from, "opening_hours", n, "valid_from", day_only=True)
        moment_type(h.valid_to, "opening_hours", n, "valid_to", day_only=True)
        valid = len(problems) == count
        valid_from = _resolve_day(h.valid_from, None) if valid else None
        valid_to = _resolve_day(h.valid_to, None) if valid else None
        if valid_from is not None and valid_to is not None and valid_from > valid_to:
            message = f"valid_to {valid_to} is before valid_from {valid_from}"
            problem(message, "opening_hours", n, "valid_to")
        rules: list[OpeningRule] = []
        for weekday, name in enumerate(WEEKDAYS):
            for j, interval in enumerate(getattr(h, name)):
                try:
                    start, end = (_parse_time(x) for x in interval.split("-"))
                except SeedError as exc:
                    problem(str(exc), "opening_hours", n, name, j)
                    continue
                rule = OpeningRule(weekday, start, end)
                for minutes in slot_lengths[h.id]:
                    try:
                        validate_rules([rule], minutes)
                    except RuleError as exc:
                        message = re.sub(r"^rule #0 \((.*?)\)", r"\1", str(exc))
                        problem(message, "opening_hours", n, name, j)
                        break
                else:
                    rules.append(OpeningRule(weekday, start, end, valid_from, valid_to))
        if len(problems) == count:
            for minutes in slot_lengths[h.id]:
                try:
                    validate_rules(rules, minutes)
                except RuleError as exc:
                    problem(str(exc), "opening_hours", n)
                    break
    for n, cal in enumerate(seed.calendars):
        if cal.location not in locations:
            problem(f"unknown location {cal.location!r}", "calendars", n, "location")
        if cal.hours not in slot_lengths:
            problem(f"unknown opening_hours {cal.hours!r}", "calendars", n, "hours")
        try:
            validate_rules([], cal.slot_minutes)
        except RuleError as exc:
            problem(str(exc), "calendars", n, "slot_minutes")
    seen: set[tuple[int, int]] = set()  # (service, slot length) misfits reported
    for n, svc in enumerate(seed.services):
        if svc.location not in locations:
            problem(f"unknown location {svc.location!r}", "services", n, "location")
        if svc.campaign is not None and svc.campaign not in campaigns:
            problem(f"unknown campaign {svc.campaign!r}", "services", n, "campaign")
        if svc.opt_in_minutes is not None and not svc.requires_opt_in:
            message = f"service {svc.id!r}: opt_in_minutes needs requires_opt_in = true"
            problem(message, "services", n, "opt_in_minutes")
        if svc.requires_opt_in and "online" not in svc.channels:
            message = (
                f"service {svc.id!r}: requires_opt_in applies to online bookings, but the "
                "service is not bookable online"
            )
            problem(message, "services", n, "requires_opt_in")
        for r, req in enumerate(svc.requirements):
            pool = ("services", n, "requirements", r, "pool")
            for cal_id in req.pool:
                cal = calendars.get(cal_id)
                if cal is None:
                    problem(f"service {svc.id!r}: unknown calendar {cal_id!r}", *pool)
                elif cal.location != svc.location:
                    message = f"service {svc.id!r}: calendar {cal_id!r} is at another location"
                    problem(message, *pool)
                elif svc.duration_minutes % cal.slot_minutes and (n, cal.slot_minutes) not in seen:
                    seen.add((n, cal.slot_minutes))
                    message = (
                        f"service {svc.id!r}: duration {svc.duration_minutes} min is not a "
                        f"whole number of {cal.slot_minutes}-minute slots (calendar {cal_id!r})"
                    )
                    problem(message, "services", n, "duration_minutes")
    for n, camp in enumerate(seed.campaigns):
        if camp.location not in locations:
            problem(f"unknown location {camp.location!r}", "campaigns", n, "location")
        for field_name in ("first_service", "second_service"):
            ref = getattr(camp, field_name)
            if ref is not None and ref not in services:
                problem(f"unknown service {ref!r}", "campaigns", n, field_name)
        if camp.second_dose_days and not 0 < camp.second_dose_days[0] <= camp.second_dose_days[1]:
            message = "second_dose_days must be [min, max], min > 0"
            problem(message, "campaigns", n, "second_dose_days")
        moment_type(camp.opens_at, "campaigns", n, "opens_at", optional=False)
        moment_type(camp.closes_at, "campaigns", n, "closes_at")
    # A calendar without a phone contingent of its own takes its campaign's: campaigns that
    # disagree on it need the calendar to decide.
    by_campaign = {c.id: c for c in seed.campaigns}
    contingents: dict[str, dict[tuple[int, int], str]] = {}
    for svc in seed.services:
        camp = by_campaign.get(svc.campaign or "")
        if camp is None or not camp.phone_share_percent:
            continue
        for req in svc.requirements:
            for cal_id in req.pool:
                contingent = (camp.phone_share_percent, camp.phone_release_days)
                contingents.setdefault(cal_id, {}).setdefault(contingent, camp.id)
    for n, cal in enumerate(seed.calendars):
        found = contingents.get(cal.id, {})
        names = ", ".join(repr(c) for c in sorted(found.values()))
        for field_name, index in (("phone_share_percent", 0), ("phone_release_days", 1)):
            if getattr(cal, field_name) is None and len({k[index] for k in found}) > 1:
                message = f"campaigns {names} set different {field_name}: set it here"
                problem(message, "calendars", n, field_name)
    for n, cl in enumerate(seed.closures):
        moment_type(cl.start, "closures", n, "start", optional=False)
        moment_type(cl.end, "closures", n, "end")
        if (cl.location is None) == (cl.calendar is None):
            problem("give exactly one of location or calendar", "closures", n)
        if cl.location is not None and cl.location not in locations:
            problem(f"unknown location {cl.location!r}", "closures", n, "location")
        if cl.calendar is not None and cl.calendar not in calendars:
            problem(f"unknown calendar {cl.calendar!r}", "closures", n, "calendar")
    return problems


def _parse_time(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        # The slot grid has no end-of-day time (an end of 00:00 is not allowed): say so here
        # instead of failing later on 23:59:59.999999 as "not aligned to the slot grid".
        raise SeedError("24:00 cannot end an interval: end it at the last slot before midnight")
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise SeedError(f"{text} is not a time of day")
    return time(hours, minutes)


def _hours_rules(h: HoursSpec, today: date | None) -> list[OpeningRule]:
    valid_from = _resolve_day(h.valid_from, today)
    valid_to = _resolve_day(h.valid_to, today)
    rules = []
    for weekday, name in enumerate(WEEKDAYS):
        for interval in getattr(h, name):
            start, end = interval.split("-")
            rules.append(
                OpeningRule(weekday, _parse_time(start), _parse_time(end), valid_from, valid_to)
            )
    return rules


_RELATIVE = re.compile(r"^(now|today)?\s*(?:([+-])\s*(\d+)\s*([dhwm]))?$")


def resolve_moment(value: str, now: datetime, tz: ZoneInfo) -> datetime:
    """``now``, ``today``, ``+2d``, ``today+3d``, ``now-1h``, ``+15m`` → an aware datetime."""
    found = _RELATIVE.match(value.strip().lower())
    if not found or not (found.group(1) or found.group(2)):
        raise SeedError(f"{value!r} is neither a date/time nor relative like 'now', '+2d'")
    anchor, sign, amount, unit = found.groups()
    base = now
    if anchor == "today":
        local = now.astimezone(tz)
        base = datetime.combine(local.date(), time(0), tzinfo=tz)
    if sign:
        step = {"d": timedelta(days=1), "h": timedelta(hours=1), "w": timedelta(weeks=1)}.get(
            unit, timedelta(minutes=1)
        )
        n = int(amount)
        if unit in ("d", "w") and anchor == "today":
            days = n * (7 if unit == "w" else 1) * (1 if sign == "+" else -1)
            local = base.date() + timedelta(days=days)
            return datetime.combine(local, time(0), tzinfo=tz).astimezone(UTC)
        base = base + step * n if sign == "+" else base - step * n
    return base.astimezone(UTC)


def _resolve_day(value: date | str | None, today: date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    if today is None:
        today = date(2000, 1, 1)
    moment = resolve_moment(value, datetime.combine(today, time(12), tzinfo=UTC), ZoneInfo("UTC"))
    return moment.date()


def _moment(value: date | datetime | str | None, now: datetime, tz: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return resolve_moment(value, now, tz)
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tzinfo=tz).astimezone(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=tz).astimezone(UTC)
    return value.astimezone(UTC)


def _closure_bounds(
    start: date | datetime | str, end: date | datetime | str | None, now: datetime, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    def point(value: date | datetime | str, is_end: bool) -> datetime:
        if isinstance(value, datetime):
            moment = _moment(value, now, tz)
            assert moment is not None
            return moment
        if isinstance(value, date):
            day = value + timedelta(days=1) if is_end else value
            return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        return resolve_moment(value, now, tz)

    first = point(start, False)
    last = point(end if end is not None else start, True)
    if isinstance(start, date) and not isinstance(start, datetime) and end is None:
        last = point(start, True)
    if last <= first:
        raise SeedError(f"closure from {start} to {end} ends before it starts")
    return first, last


# -- applying ------------------------------------------------------------------------------


@dataclass(slots=True)
class SeedReport:
    locations: int = 0
    calendars: int = 0
    services: int = 0
    campaigns: int = 0
    closures: int = 0


async def apply_seed(session: AsyncSession, seed: Seed, now: datetime) -> SeedReport:
    """Write the seed to SQL (insert or update; nothing is duplicated). Caller commits.

    Things that disappeared from the file are kept (bookings may refer to them), except
    opening rules, requirements and closures from the seed, which are replaced.
    """
    report = SeedReport()
    default_tz = seed.municipality.timezone
    tz_of = {loc.id: ZoneInfo(loc.timezone or default_tz) for loc in seed.locations}
    today = now.astimezone(ZoneInfo(default_tz)).date()

    for loc in seed.locations:
        await session.merge(
            m.Location(
                id=loc.id,
                name=loc.name,
                address=loc.address,
                timezone=loc.timezone or default_tz,
                max_active_per_email=loc.max_active_per_email,
                max_active_per_phone=loc.max_active_per_phone,
            )
        )
        report.locations += 1
    await session.flush()
    hours = {h.id: [] for h in seed.opening_hours}  # type: dict[str, list[OpeningRule]]
    for h in seed.opening_hours:
        hours[h.id].extend(_hours_rules(h, today))
    for cal in seed.calendars:
        await session.merge(
            m.Calendar(
                id=cal.id,
                location_id=cal.location,
                name=cal.name,
                kind=cal.kind,
                slot_minutes=cal.slot_minutes,
                capacity=cal.capacity,
                feed_privacy=cal.feed_privacy,
                phone_share_percent=cal.phone_share_percent,
                phone_release_days=cal.phone_release_days,
            )
        )
        await session.flush()
        await session.execute(delete(m.OpeningRule).where(m.OpeningRule.calendar_id == cal.id))
        session.add_all(
            m.OpeningRule(
                calendar_id=cal.id,
                weekday=r.weekday,
                start=r.start,
                end=r.end,
                valid_from=r.valid_from,
                valid_to=r.valid_to,
            )
            for r in hours[cal.hours]
        )
        report.calendars += 1
    for camp in seed.campaigns:
        tz = tz_of[camp.location]
        opens = _moment(camp.opens_at, now, tz)
        assert opens is not None
        await session.merge(
            m.Campaign(
                id=camp.id,
                location_id=camp.location,
                name=camp.name,
                opens_at=opens,
                closes_at=_moment(camp.closes_at, now, tz),
                min_age=camp.min_age,
                postcodes=list(camp.postcodes or seed.municipality.postcodes),
                places=camp.places,
                first_service_id=camp.first_service,
                second_service_id=camp.second_service,
                second_dose_min_days=camp.second_dose_days[0] if camp.second_dose_days else None,
                second_dose_max_days=camp.second_dose_days[1] if camp.second_dose_days else None,
                phone_share_percent=camp.phone_share_percent,
                phone_release_days=camp.phone_release_days,
            )
        )
        report.campaigns += 1
    await session.flush()
    for position, svc in enumerate(seed.services):
        await session.merge(
            m.Service(
                id=svc.id,
                location_id=svc.location,
                campaign_id=svc.campaign,
                name=svc.name,
                name_en=svc.name_en,
                description=svc.description,
                description_en=svc.description_en,
                duration_minutes=svc.duration_minutes,
                min_notice_minutes=svc.min_notice_minutes,
                max_days_ahead=svc.max_days_ahead,
                channels=list(svc.channels),
                max_active_per_person=svc.max_active_per_person,
                reminder_hours=list(svc.reminder_hours),
                requires_opt_in=svc.requires_opt_in,
                opt_in_minutes=svc.opt_in_minutes or DEFAULT_OPT_IN_MINUTES,
                release_delay_minutes=svc.release_delay_minutes,
                position=position,
            )
        )
        await session.flush()
        await session.execute(delete(m.Requirement).where(m.Requirement.service_id == svc.id))
        session.add_all(
            m.Requirement(service_id=svc.id, position=n, seats=r.seats, calendar_ids=list(r.pool))
            for n, r in enumerate(svc.requirements)
        )
        report.services += 1

    await session.execute(delete(m.Closure).where(m.Closure.source == "seed"))
    for cl in seed.closures:
        location_id = cl.location or next(c.location for c in seed.calendars if c.id == cl.calendar)
        first, last = _closure_bounds(cl.start, cl.end, now, tz_of[location_id])
        session.add(
            m.Closure(
                location_id=location_id,
                calendar_id=cl.calendar,
                starts_at=first,
                ends_at=last,
                reason=cl.reason,
                source="seed",
            )
        )
        report.closures += 1
    for holiday in seed.holidays:
        for loc in seed.locations:
            first, last = _closure_bounds(holiday.date, None, now, tz_of[loc.id])
            session.add(
                m.Closure(
                    location_id=loc.id,
                    calendar_id=None,
                    starts_at=first,
                    ends_at=last,
                    reason=holiday.name,
                    source="seed",
                )
            )
            report.closures += 1
    await bump_catalog(session, now, seeded=True)
    return report


async def bump_catalog(session: AsyncSession, now: datetime, *, seeded: bool = False) -> int:
    """Increase the configuration version so every process reloads its catalog."""
    state = await session.get(m.CatalogState, 1, with_for_update=True)
    if state is None:
        state = m.CatalogState(id=1, version=0)
        session.add(state)
    state.version += 1
    if seeded:
        state.seeded_at = now
    await session.flush()
    return state.version


async def is_seeded(session: AsyncSession) -> bool:
    return (
        await session.scalar(select(m.CatalogState.seeded_at).where(m.CatalogState.id == 1))
    ) is not None
