"""iCalendar export (booking files, invitations, staff feeds) and import (closures).

Export
------
The icalendar library is the one writer of iCalendar text: it escapes, encodes and folds every
line (CRLF, at most 75 octets). Rendering is slow in pure Python (a few hundred microseconds per
event), so the work is split:

* :func:`render_event` turns one :class:`EventData` into its ``VEVENT`` block (bytes). The caller
  caches the block per booking and renders it again only when the booking changes.
* :func:`calendar_document` wraps pre-rendered blocks in a ``VCALENDAR``. The skeleton (the
  calendar properties and one ``VTIMEZONE``) is built by the library once per
  ``(tz, method, name, refresh_minutes)`` and cached; the blocks are spliced in verbatim before
  ``END:VCALENDAR`` with a single ``bytes.join``. This is the one place bytes are joined.

Times are written as local wall time with ``TZID=<zone key>`` plus a ``VTIMEZONE`` made by
:meth:`icalendar.Timezone.from_tzinfo`. It lists every offset change of the zone from 1970 to 2038
(``STANDARD``/``DAYLIGHT`` with ``RDATE`` lists), so a client that does not know the IANA name
still shows 09:00 in summer and in winter. (The library writes the spring onset as 03:00 instead
of the RFC's 02:00 in the old offset; that only affects the non-existent hour 02:00-03:00.)

Import
------
:func:`parse_periods` reads a closure file (public holidays, absences) and returns the periods
inside a window, with recurrences expanded by ``recurring_ical_events``. Files come from outside,
so it is defensive: size limit, strict UTF-8, a ``BEGIN``/``END`` check (the library silently
accepts ``BEGIN:VEVENT`` closed by ``END:VTODO``), checks of every time property, and checks of
each ``RRULE`` before anything is expanded:

* value ranges and the RFC 5545 rule-part restrictions (e.g. no ``BYWEEKNO`` outside
  ``FREQ=YEARLY``, ``INTERVAL`` at least 1 -- ``INTERVAL=0`` makes the expander loop forever);
  ``FREQ=SECONDLY`` and ``BYDAY`` lists mixing ``2FR`` with ``WE`` (which dateutil intersects
  instead of joining) are refused;
* rules that can never produce an occurrence (``BYMONTH=2;BYMONTHDAY=30``, ``BYDAY=1MO`` with
  ``BYMONTHDAY=15``, ``FREQ=DAILY;INTERVAL=7;BYDAY=MO`` starting on a Tuesday, ``BYSETPOS``
  beyond the candidates): the expander (dateutil) would look for a match until the year 9999;
* a cost estimate: the expander always steps from ``DTSTART`` and is not lazy (``between`` builds
  lists), so a ``FREQ=MINUTELY`` rule without end, or a ``FREQ=HOURLY`` rule from 1990, would
  take seconds and much memory. The steps from ``DTSTART`` to the window's end and the
  occurrences in the window are estimated from the rule; a file with more than twice
  ``max_periods`` estimated periods, or over a budget of about one second of expander work, is
  refused before expansion. The exact count is checked afterwards.

The checks cannot prove that every exotic rule matches somewhere; a yearly or monthly rule that
slips through and never matches costs one scan to the year 9999 (under a second). Parsing itself
is not budgeted: the icalendar library needs roughly a quarter of a millisecond per event, so
``max_bytes`` bounds it (a 2 MiB file of small events parses in a few seconds).

Errors::

    ValueError                      bad arguments from our own code (naive times, unknown status)
    └── IcalImportError             the imported file is unusable; the message says why in English
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import recurring_ical_events
from icalendar import Calendar, Component, Event, Timezone, vDuration, vRecur

from scheduler.calendar.grid import local_midnight

__all__ = [
    "PRODID",
    "EventData",
    "IcalImportError",
    "ImportedPeriod",
    "booking_ics",
    "calendar_document",
    "parse_periods",
    "render_event",
]

PRODID = "-//scheduler//Terminvergabe//DE"

STATUSES = frozenset({"CONFIRMED", "CANCELLED", "TENTATIVE"})
METHODS = frozenset({"REQUEST", "CANCEL", "PUBLISH"})

_BEGIN_EVENT = b"BEGIN:VEVENT\r\n"
_END_EVENT = b"END:VEVENT\r\n"
_END_CALENDAR = b"END:VCALENDAR\r\n"
_ONE_DAY = timedelta(days=1)


# --------------------------------------------------------------------------------------------
# Export


@dataclass(frozen=True, slots=True)
class EventData:
    """One appointment as it appears in a calendar app.

    ``uid`` is ``"<booking id>@<host>"`` and stays the same across changes; ``sequence`` grows
    with each change, so clients replace their copy. All datetimes must be timezone-aware.
    """

    uid: str
    start: datetime
    end: datetime
    summary: str
    location: str
    description: str
    sequence: int
    status: str
    last_modified: datetime
    url: str | None = None


def _require_aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def _require_zone_key(tz: ZoneInfo) -> str:
    key = getattr(tz, "key", None)
    if not isinstance(tz, ZoneInfo) or not key:
        raise ValueError(f"tz must be a ZoneInfo with an IANA key, got {tz!r}")
    return key


def render_event(event: EventData, tz: ZoneInfo, stamp: datetime) -> bytes:
    """The ``VEVENT`` block of ``event``, from ``BEGIN:VEVENT`` to ``END:VEVENT`` (CRLF, folded).

    ``DTSTART``/``DTEND`` are written as wall time in ``tz`` with its ``TZID``; ``DTSTAMP``
    (``stamp``) and ``LAST-MODIFIED`` in UTC. Seconds are the finest unit iCalendar keeps. An
    empty ``location`` or ``description`` is left out, as is ``URL`` when ``url`` is None.
    """
    _require_zone_key(tz)
    start = _require_aware("start", event.start)
    end = _require_aware("end", event.end)
    last_modified = _require_aware("last_modified", event.last_modified)
    _require_aware("stamp", stamp)
    if end <= start:
        raise ValueError(f"event {event.uid!r}: end {end.isoformat()} is not after start")
    if event.status not in STATUSES:
        raise ValueError(
            f"event {event.uid!r}: status must be one of {sorted(STATUSES)}, got {event.status!r}"
        )
    if isinstance(event.sequence, bool) or not isinstance(event.sequence, int):
        raise ValueError(f"event {event.uid!r}: sequence must be an int, got {event.sequence!r}")
    if event.sequence < 0:
        raise ValueError(f"event {event.uid!r}: sequence must not be negative")
    if not event.uid:
        raise ValueError("event uid must not be empty")

    component = Event()
    component.add("UID", event.uid)
    component.add("DTSTAMP", stamp.astimezone(UTC))
    component.add("DTSTART", start.astimezone(tz))
    component.add("DTEND", end.astimezone(tz))
    component.add("SEQUENCE", event.sequence)
    component.add("STATUS", event.status)
    component.add("LAST-MODIFIED", last_modified.astimezone(UTC))
    component.add("SUMMARY", event.summary)
    if event.location:  # an empty property only shows up as an empty line in some clients
        component.add("LOCATION", event.location)
    if event.description:
        component.add("DESCRIPTION", event.description)
    if event.url is not None:
        component.add("URL", event.url)
    component.add("TRANSP", "OPAQUE")
    return component.to_ical()


@functools.lru_cache(maxsize=256)
def _skeleton(
    tz: ZoneInfo, method: str | None, name: str | None, refresh_minutes: int | None
) -> tuple[bytes, bytes]:
    """The serialized calendar split where the events go: ``(head, b"END:VCALENDAR\\r\\n")``."""
    key = _require_zone_key(tz)
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)} or None, got {method!r}")
    if refresh_minutes is not None and (
        isinstance(refresh_minutes, bool)
        or not isinstance(refresh_minutes, int)
        or refresh_minutes <= 0
    ):
        raise ValueError(f"refresh_minutes must be a positive int, got {refresh_minutes!r}")

    calendar = Calendar()
    calendar.add("VERSION", "2.0")
    calendar.add("PRODID", PRODID)
    calendar.add("CALSCALE", "GREGORIAN")
    if method is not None:
        calendar.add("METHOD", method)
    if name is not None:
        calendar.calendar_name = name  # NAME (RFC 7986) and X-WR-CALNAME
    if refresh_minutes is not None:
        interval = timedelta(minutes=refresh_minutes)
        calendar.add("REFRESH-INTERVAL", interval, parameters={"VALUE": "DURATION"})
        calendar.add("X-PUBLISHED-TTL", vDuration(interval))
    calendar.add_component(Timezone.from_tzinfo(tz, key))
    text = calendar.to_ical()
    if not text.endswith(_END_CALENDAR):  # pragma: no cover - guards a library change
        raise RuntimeError("icalendar produced a calendar not ending in END:VCALENDAR")
    return text[: -len(_END_CALENDAR)], _END_CALENDAR


def calendar_document(
    events: Iterable[bytes],
    tz: ZoneInfo,
    *,
    method: str | None = None,
    name: str | None = None,
    refresh_minutes: int | None = None,
) -> bytes:
    """A whole ``VCALENDAR`` around pre-rendered ``VEVENT`` blocks (from :func:`render_event`).

    ``method`` is ``REQUEST``, ``CANCEL`` or ``PUBLISH`` (``METHOD``); ``name`` sets ``NAME`` and
    ``X-WR-CALNAME``; ``refresh_minutes`` sets ``REFRESH-INTERVAL`` and ``X-PUBLISHED-TTL``. The
    calendar carries one ``VTIMEZONE`` for ``tz``; every event must use ``tz`` for its times.
    """
    head, tail = _skeleton(tz, method, name, refresh_minutes)
    parts = [head]
    for index, block in enumerate(events):
        if not isinstance(block, bytes) or not (
            block.startswith(_BEGIN_EVENT) and block.endswith(_END_EVENT)
        ):
            raise ValueError(
                f"event #{index} is not a VEVENT block from render_event: {repr(block)[:60]}"
            )
        parts.append(block)
    parts.append(tail)
    return b"".join(parts)


def booking_ics(
    events: EventData | Sequence[EventData],
    tz: ZoneInfo,
    stamp: datetime,
    *,
    method: str | None = None,
) -> bytes:
    """A calendar file holding one booking (its event, or one per appointment), e.g. for
    download or as an e-mail attachment."""
    listed = [events] if isinstance(events, EventData) else list(events)
    return calendar_document([render_event(e, tz, stamp) for e in listed], tz, method=method)


# --------------------------------------------------------------------------------------------
# Import: types and limits


class IcalImportError(ValueError):
    """An imported iCalendar file cannot be used; the message names the problem in English."""


@dataclass(frozen=True, slots=True)
class ImportedPeriod:
    """A busy period ``[start, end)`` from an imported file, aware UTC, ``end > start``.

    ``uid`` is the event's UID; for an occurrence of a recurring event it is followed by ``#`` and
    the occurrence's RECURRENCE-ID in UTC (``2026-12-24T23:00:00Z``), i.e. the start the rule gave
    it, so an occurrence keeps its id when a RECURRENCE-ID override moves it.
    """

    start: datetime
    end: datetime
    summary: str
    uid: str


#: Work allowed for expanding recurrences, in units of about 5 microseconds of expander time
#: (measured with recurring-ical-events 3.8 / dateutil 2.9); the budget grows with
#: ``max_periods`` by the cost of that many occurrences. About one second by default.
_COST_BUDGET = 150_000
#: Cost of one series (any VEVENT), of setting up a recurrence rule, of one occurrence in the
#: query window, of one occurrence before it.
_SERIES_COST = 10
_RULE_COST = 40
_OCCURRENCE_COST = 10
_REPEAT_COST = 1
#: Cost of one expander step by frequency (a yearly step builds masks for a whole year).
_STEP_COST = {"MONTHLY": 2, "YEARLY": 8}
_MAX_NESTING = 8
_FREQ_SECONDS = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,  # the shortest month: an upper bound of the number of periods
    "YEARLY": 365 * 86400,
}
_FREQ_ORDER = ("SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_RULE_PARTS = frozenset(
    {
        "FREQ",
        "UNTIL",
        "COUNT",
        "INTERVAL",
        "BYSECOND",
        "BYMINUTE",
        "BYHOUR",
        "BYDAY",
        "BYMONTHDAY",
        "BYYEARDAY",
        "BYWEEKNO",
        "BYMONTH",
        "BYSETPOS",
        "WKST",
    }
)
_INT_RANGES = {
    "BYSECOND": (0, 60, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
    "BYMONTH": (1, 12, False),
}
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_TIME_PROPERTIES = ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID")
_ZONED_PROPERTIES = ("DTSTART", "DTEND", "RECURRENCE-ID", "RDATE", "EXDATE")
#: Properties that may occur once per event (RFC 5545 3.6.1) and that the import reads.
_SINGLETONS = ("UID", "DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "STATUS", "SEQUENCE")


def _short(text: object, limit: int = 160) -> str:
    """A message fragment from library output, which may quote the whole file."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# --------------------------------------------------------------------------------------------
# Import: text and structure


def _decode(data: bytes, max_bytes: int) -> str:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise IcalImportError(
            f"the file has {len(data):,} bytes, more than the limit of {max_bytes:,} bytes"
        )
    if not data.strip():
        raise IcalImportError("the file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IcalImportError(
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start} "
            "is invalid); iCalendar files must be UTF-8"
        ) from None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Unfolded content lines with the number of their first physical line (1-based)."""
    current: str | None = None
    current_number = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line[:1] in (" ", "\t") and current is not None:
            current += line[1:]
            continue
        if current is not None:
            yield current_number, current
        current, current_number = line, number
    if current is not None:
        yield current_number, current


def _check_structure(text: str) -> None:
    """One VCALENDAR, every BEGIN closed by the matching END, nothing outside it."""
    stack: list[tuple[str, int]] = []
    seen_calendar = False
    for number, line in _logical_lines(text):
        if not line.strip():
            continue
        head = line[:6].upper()
        if not stack:
            if head == "BEGIN:" and line[6:].strip().upper() == "VCALENDAR":
                if seen_calendar:
                    raise IcalImportError(
                        f"line {number}: a second VCALENDAR; import one calendar per file"
                    )
                seen_calendar = True
                stack.append(("VCALENDAR", number))
                continue
            if seen_calendar:
                raise IcalImportError(
                    f"line {number}: content after END:VCALENDAR: {_short(line, 60)!r}"
                )
            raise IcalImportError(
                "this is not an iCalendar file: it must start with BEGIN:VCALENDAR, "
                f"but line {number} reads {_short(line, 60)!r}"
            )
        if head == "BEGIN:":
            name = line[6:].strip().upper()
            if not name or name == "VCALENDAR":
                raise IcalImportError(f"line {number}: BEGIN:{name} inside BEGIN:{stack[-1][0]}")
            if len(stack) >= _MAX_NESTING:
                raise IcalImportError(f"line {number}: components are nested too deeply")
            stack.append((name, number))
        elif head[:4] == "END:":
            name = line[4:].strip().upper()
            opened, opened_at = stack.pop()
            if name == opened:
                continue
            if any(name == outer for outer, _ in stack):
                raise IcalImportError(
                    f"BEGIN:{opened} from line {opened_at} is not closed before END:{name} "
                    f"on line {number}"
                )
            raise IcalImportError(
                f"line {number}: END:{name} does not close BEGIN:{opened} from line {opened_at}"
            )
    if stack:
        opened, opened_at = stack[-1]
        raise IcalImportError(
            f"the file ends before BEGIN:{opened} from line {opened_at} is closed by END:{opened}"
        )
    if not seen_calendar:  # pragma: no cover - blank files are refused by _decode
        raise IcalImportError("the file has no VCALENDAR")


def _parse(text: str) -> Calendar:
    try:
        return Calendar.from_ical(text)
    except Exception as exc:  # the library raises ValueError, KeyError, IndexError, ...
        raise IcalImportError(f"the file is not valid iCalendar: {_short(exc)}") from None


# --------------------------------------------------------------------------------------------
# Import: events


def _to_utc(value: date | datetime, tz: ZoneInfo) -> datetime:
    """A DATE is local midnight in ``tz``; a floating time is wall time in ``tz``."""
    if not isinstance(value, datetime):
        return local_midnight(value, tz)
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


class _Label:
    """How an event is named in messages: its UID and summary if it has them."""

    def __init__(self, position: int, event: Component) -> None:
        uid = event.get("UID")
        summary = event.get("SUMMARY")
        text = f"event #{position + 1}"
        if uid is not None:
            text += f" (UID {_short(uid, 60)!r}"
            text += f", {_short(summary, 40)!r})" if summary is not None else ")"
        elif summary is not None:
            text += f" ({_short(summary, 40)!r})"
        self.text = text

    def __str__(self) -> str:
        return self.text


def _check_times(event: Component, label: _Label) -> tuple[date | datetime, Any]:
    """Check the time properties of ``event``; return its DTSTART value and DTEND/DURATION."""
    for name in _SINGLETONS:
        if isinstance(event.get(name), list):
            raise IcalImportError(f"{label}: {name} appears more than once")
    for name, message in event.errors:
        if name is not None and name.upper() in _TIME_PROPERTIES:
            raise IcalImportError(f"{label}: {name.upper()} is not valid: {_short(message)}")
    if "DTSTART" not in event:
        raise IcalImportError(f"{label} has no DTSTART")
    for name in _ZONED_PROPERTIES:
        for prop in _as_list(event.get(name)):
            tzid = prop.params.get("TZID")
            values = [item.dt for item in prop.dts] if hasattr(prop, "dts") else [prop.dt]
            for value in values:
                moment = value[0] if isinstance(value, tuple) else value
                if tzid and isinstance(moment, datetime) and moment.tzinfo is None:
                    raise IcalImportError(
                        f"{label}: unknown time zone TZID={tzid!r} in {name}; it is neither an "
                        "IANA or Windows zone name nor defined by a VTIMEZONE in the file"
                    )
                if not isinstance(moment, date):
                    raise IcalImportError(
                        f"{label}: {name} must be a date or a date-time, got {_short(moment)!r}"
                    )
    start = event["DTSTART"].dt
    if not isinstance(start, date):  # a TIME or PERIOD value
        raise IcalImportError(f"{label}: DTSTART must be a date or a date-time, got {start!r}")
    end: Any = None
    if "DTEND" in event:
        end = event["DTEND"].dt
        if not isinstance(end, date):
            raise IcalImportError(f"{label}: DTEND must be a date or a date-time, got {end!r}")
    elif "DURATION" in event:
        end = event["DURATION"].dt
        if not isinstance(end, timedelta):
            raise IcalImportError(f"{label}: DURATION must be a duration, got {end!r}")
        if end < timedelta(0):
            raise IcalImportError(f"{label}: DURATION must not be negative")
    return start, end


def _check_order(start: date | datetime, end: Any, tz: ZoneInfo, label: _Label) -> None:
    if not isinstance(end, date):
        return
    if not isinstance(start, datetime) and not isinstance(end, datetime):
        if end < start:
            raise IcalImportError(f"{label}: DTEND {end} is before DTSTART {start}")
    elif _to_utc(end, tz) < _to_utc(start, tz):
        raise IcalImportError(
            f"{label}: DTEND {end.isoformat()} is before DTSTART {start.isoformat()}"
        )


def _synthetic_uid(event: Component) -> str:
    """A stable UID for an event without one (the expander groups events by UID)."""
    digest = hashlib.sha256(event.to_ical()).hexdigest()[:32]
    return f"no-uid-{digest}"


# --------------------------------------------------------------------------------------------
# Import: recurrence rules


@dataclass(frozen=True, slots=True)
class _Rule:
    """The parts of an RRULE the checks need, read once from the library's ``vRecur``."""

    text: str
    freq: str
    interval: int
    count: int | None
    until: tuple[date | datetime, ...]
    by: dict[str, frozenset[int]]  # BYSECOND ... BYSETPOS, as sets of whole numbers
    weekdays: frozenset[int]  # BYDAY without a position (0 is Monday)
    positioned: frozenset[tuple[int, int]]  # BYDAY with a position: (position, weekday)

    def size(self, part: str) -> int:
        return len(self.by.get(part, ()))

    def coarser_than(self, freq: str) -> bool:
        return _FREQ_ORDER.index(self.freq) > _FREQ_ORDER.index(freq)


def _read_rule(rule: vRecur) -> _Rule:
    """Check ranges and the RFC 5545 restrictions. Raises ValueError naming the problem."""
    text = "RRULE:" + rule.to_ical().decode("utf-8", "replace")
    unknown = sorted(set(rule.keys()) - _RULE_PARTS)
    if unknown:
        raise ValueError(f"unsupported rule part {unknown[0]}")
    freqs = rule.get("FREQ", [])
    if len(freqs) != 1 or str(freqs[0]).upper() not in _FREQ_SECONDS:
        raise ValueError("FREQ is missing or not one of " + ", ".join(_FREQ_ORDER))
    freq = str(freqs[0]).upper()
    if freq == "SECONDLY":
        # No closure repeats every second, and dateutil may take seconds to find one match.
        raise ValueError("FREQ=SECONDLY is not supported")
    numbers: dict[str, list[int]] = {}
    for part in ("INTERVAL", "COUNT"):
        numbers[part] = [int(value) for value in rule.get(part, [])]
        if len(numbers[part]) > 1 or any(value < 1 for value in numbers[part]):
            raise ValueError(f"{part} must be one whole number of at least 1")
    if "COUNT" in rule and "UNTIL" in rule:
        raise ValueError("COUNT and UNTIL must not both be given (RFC 5545)")
    if any(getattr(month, "leap", False) for month in rule.get("BYMONTH", [])):
        raise ValueError("leap months (RFC 7529) are not supported")
    by: dict[str, frozenset[int]] = {}
    for part, (low, high, signed) in _INT_RANGES.items():
        if part not in rule:
            continue
        values = frozenset(int(value) for value in rule[part])
        for value in values:
            if not (low <= abs(value) <= high if signed else low <= value <= high):
                sign = "-" if signed else ""
                raise ValueError(f"{part} value {value} is outside {sign}{low}..{high}")
        by[part] = values
    weekdays: set[int] = set()
    positioned: set[tuple[int, int]] = set()
    for value in rule.get("BYDAY", []):
        weekday = getattr(value, "weekday", None)
        if weekday not in _WEEKDAYS:
            raise ValueError(f"BYDAY value {value!r} is not a weekday")
        relative = getattr(value, "relative", None)
        if relative is None:
            weekdays.add(_WEEKDAYS.index(weekday))
        else:
            sign = -1 if str(value).startswith("-") else 1
            positioned.add((sign * abs(relative), _WEEKDAYS.index(weekday)))
    if positioned:
        if freq not in ("MONTHLY", "YEARLY") or "BYWEEKNO" in rule:
            raise ValueError("BYDAY with a position (like 1MO) needs FREQ=MONTHLY or FREQ=YEARLY")
        limit = 5 if freq == "MONTHLY" or "BYMONTH" in rule else 53
        for position, _ in positioned:
            if not 1 <= abs(position) <= limit:
                raise ValueError(f"BYDAY position {position} is outside -{limit}..{limit}")
        if weekdays:
            # dateutil intersects the two kinds instead of joining them: wrong results.
            raise ValueError("BYDAY mixes weekdays with and without a position (like 2FR,WE)")
    if "BYWEEKNO" in rule and freq != "YEARLY":
        raise ValueError("BYWEEKNO needs FREQ=YEARLY")
    if "BYYEARDAY" in rule and freq in ("DAILY", "WEEKLY", "MONTHLY"):
        raise ValueError(f"BYYEARDAY is not allowed with FREQ={freq}")
    if "BYMONTHDAY" in rule and freq == "WEEKLY":
        raise ValueError("BYMONTHDAY is not allowed with FREQ=WEEKLY")
    return _Rule(
        text=text,
        freq=freq,
        interval=(numbers["INTERVAL"] or [1])[0],
        count=(numbers["COUNT"] or [None])[0],
        until=tuple(rule.get("UNTIL", [])),
        by=by,
        weekdays=frozenset(weekdays),
        positioned=frozenset(positioned),
    )


def _candidates(rule: _Rule, *, with_setpos: bool = True) -> int:
    """An upper bound of the occurrences one period (one FREQ step) of the rule produces."""
    byday = len(rule.weekdays) + len(rule.positioned)
    days = 1
    if rule.freq == "WEEKLY":
        days = byday or 1
    elif rule.freq == "MONTHLY":
        if "BYMONTHDAY" in rule.by:
            days = rule.size("BYMONTHDAY")
        elif byday:
            days = min(31, 5 * len(rule.weekdays) + len(rule.positioned))
    elif rule.freq == "YEARLY":
        months = rule.size("BYMONTH")
        if "BYYEARDAY" in rule.by:
            days = rule.size("BYYEARDAY")
        elif "BYWEEKNO" in rule.by:
            days = rule.size("BYWEEKNO") * (len(rule.weekdays) or 7)
        elif "BYMONTHDAY" in rule.by:
            days = rule.size("BYMONTHDAY") * (months or 12)
        elif byday:
            per_scope = (5 if months else 53) * len(rule.weekdays) + len(rule.positioned)
            days = per_scope * (months or 1)
        else:
            days = months or 1
        days = min(days, 366)
    times = 1
    for part, unit in (("BYHOUR", "HOURLY"), ("BYMINUTE", "MINUTELY"), ("BYSECOND", "SECONDLY")):
        if part in rule.by and rule.coarser_than(unit):
            times *= rule.size(part)
    bound = days * times
    if with_setpos and "BYSETPOS" in rule.by:
        bound = min(bound, rule.size("BYSETPOS"))
    return bound


def _filtered_share(rule: _Rule) -> float:
    """About which share of the candidates the rule's limiting parts let through."""
    share = 1.0
    if "BYMONTH" in rule.by and rule.freq != "YEARLY":
        share *= rule.size("BYMONTH") / 12
    if not rule.coarser_than("DAILY"):
        if rule.weekdays:
            share *= len(rule.weekdays) / 7
        if "BYMONTHDAY" in rule.by:
            share *= min(1.0, rule.size("BYMONTHDAY") / 28)
        if "BYYEARDAY" in rule.by:
            share *= min(1.0, rule.size("BYYEARDAY") / 365)
    for part, unit, per_unit in (
        ("BYHOUR", "HOURLY", 24),
        ("BYMINUTE", "MINUTELY", 60),
        ("BYSECOND", "SECONDLY", 60),
    ):
        if part in rule.by and not rule.coarser_than(unit):
            share *= min(1.0, rule.size(part) / per_unit)
    return share


def _month_length(year: int, month: int) -> int:
    return (date(year + month // 12, month % 12 + 1, 1) - date(year, month, 1)).days


def _day_fits(day: date, rule: _Rule, month_scope: bool) -> bool:
    """Whether the day-level parts (BYMONTH, BYMONTHDAY, BYYEARDAY, BYDAY) all allow ``day``."""
    if "BYMONTH" in rule.by and day.month not in rule.by["BYMONTH"]:
        return False
    month_length = _month_length(day.year, day.month)
    monthdays = rule.by.get("BYMONTHDAY")
    if monthdays and day.day not in monthdays and day.day - month_length - 1 not in monthdays:
        return False
    year_length = 366 if _month_length(day.year, 2) == 29 else 365
    yearday = day.timetuple().tm_yday
    yeardays = rule.by.get("BYYEARDAY")
    if yeardays and yearday not in yeardays and yearday - year_length - 1 not in yeardays:
        return False
    if rule.weekdays and day.weekday() not in rule.weekdays:
        return False
    if rule.positioned:
        index, length = (day.day, month_length) if month_scope else (yearday, year_length)
        first, last = (index - 1) // 7 + 1, -((length - index) // 7 + 1)
        return (first, day.weekday()) in rule.positioned or (last, day.weekday()) in rule.positioned
    return True


def _check_can_match(rule: _Rule, start: date | datetime) -> None:
    """Refuse rules that can never produce an occurrence: the expander (dateutil) would look
    for one until the year 9999. Raises ValueError."""
    day_parts = ("BYMONTH", "BYMONTHDAY", "BYYEARDAY")
    if sum(part in rule.by for part in day_parts) + bool(rule.weekdays or rule.positioned) >= 2:
        month_scope = rule.freq == "MONTHLY" or "BYMONTH" in rule.by
        # 28 years hold every combination of leap year and weekday of 1 January.
        first = date(2024, 1, 1)
        if not any(
            _day_fits(first + timedelta(days=n), rule, month_scope) for n in range(28 * 366)
        ):
            raise ValueError("its BYMONTH/BYMONTHDAY/BYYEARDAY/BYDAY parts never fit one day")
    if "BYSETPOS" in rule.by:
        candidates = _candidates(rule, with_setpos=False)
        if all(abs(position) > candidates for position in rule.by["BYSETPOS"]):
            raise ValueError("BYSETPOS asks for a position beyond the candidates of every period")
    if rule.freq == "MONTHLY" and "BYMONTH" in rule.by:
        reachable = {(start.month - 1 + k * rule.interval) % 12 + 1 for k in range(12)}
        if not reachable & rule.by["BYMONTH"]:
            raise ValueError("with this INTERVAL the rule never reaches a month in BYMONTH")
    if rule.coarser_than("DAILY"):
        return
    # Daily and finer: a step of whole weeks (days, hours, minutes) keeps the weekday (hour,
    # minute, second) of DTSTART, so a filter excluding that value never lets anything through.
    step = rule.interval * _FREQ_SECONDS[rule.freq]
    wall = start if isinstance(start, datetime) else datetime.combine(start, datetime.min.time())
    fixed = (
        ("BYDAY", "weekday", 7 * 86400, wall.weekday(), rule.weekdays, "DAILY"),
        ("BYHOUR", "hour", 86400, wall.hour, rule.by.get("BYHOUR"), "HOURLY"),
        ("BYMINUTE", "minute", 3600, wall.minute, rule.by.get("BYMINUTE"), "MINUTELY"),
        ("BYSECOND", "second", 60, wall.second, rule.by.get("BYSECOND"), "SECONDLY"),
    )
    for part, noun, cycle, value, allowed, unit in fixed:
        if allowed and not rule.coarser_than(unit) and step % cycle == 0 and value not in allowed:
            raise ValueError(
                f"every repetition keeps the {noun} of DTSTART, which {part} excludes, so the "
                "rule never repeats"
            )


@dataclass(slots=True)
class _Cost:
    """Estimated work of expanding one VEVENT (see the module docstring).

    ``repeats`` estimates the occurrences its rules produce from DTSTART to the end of the query,
    ``in_window`` those inside the import window; ``units`` the expander time in units of about
    5 microseconds.
    """

    label: str
    rule: str
    units: float
    repeats: float
    in_window: float


def _periods(first: datetime, last: datetime, seconds: int) -> int:
    """How many periods of ``seconds`` starting at ``first`` begin no later than ``last``."""
    if last < first:
        return 0
    return math.floor((last - first).total_seconds() / seconds) + 1


def _rule_cost(
    rule: _Rule,
    start_utc: datetime,
    tz: ZoneInfo,
    query: tuple[datetime, datetime],
    window: tuple[datetime, datetime],
) -> _Cost:
    """The cost of one rule; ``query`` is what the expander is asked for, ``window`` the import."""
    seconds = rule.interval * _FREQ_SECONDS[rule.freq]
    query_end, window_end = query[1], window[1]
    for until in rule.until:
        limit = _to_utc(until, tz) + _ONE_DAY  # a day of slack for dates and floating times
        query_end, window_end = min(query_end, limit), min(window_end, limit)
    per_period = max(1, _candidates(rule)) * _filtered_share(rule)
    steps = _periods(start_utc, query_end, seconds)
    # The first period that can reach into the window starts one period before it.
    window_steps = _periods(
        max(start_utc, window[0] - timedelta(seconds=seconds)), window_end, seconds
    )
    repeats, in_window = steps * per_period, window_steps * per_period
    if rule.count is not None:
        if not rule.by and not rule.weekdays and not rule.positioned:
            steps = min(steps, rule.count)
        repeats, in_window = min(repeats, rule.count), min(in_window, rule.count)
    units = _RULE_COST + steps * _STEP_COST.get(rule.freq, 1) + repeats * _REPEAT_COST
    return _Cost("", rule.text, units + in_window * _OCCURRENCE_COST, repeats, in_window)


def _event_cost(
    event: Component,
    start: date | datetime,
    label: _Label,
    tz: ZoneInfo,
    query: tuple[datetime, datetime],
    window: tuple[datetime, datetime],
) -> _Cost:
    """Check the event's recurrence rules and estimate the work of expanding it."""
    start_utc = _to_utc(start, tz)
    rules = _as_list(event.get("RRULE"))
    rdates = sum(len(getattr(p, "dts", [p])) for p in _as_list(event.get("RDATE")))
    # Without a rule DTSTART is one occurrence (it may overlap the window from before it).
    single = (0 if rules else 1) + rdates
    total = _Cost(
        str(label), "", _SERIES_COST + single * (_OCCURRENCE_COST + _REPEAT_COST), single, single
    )
    texts: list[str] = []
    for value in rules:
        if not isinstance(value, vRecur):  # pragma: no cover - broken rules are in event.errors
            raise IcalImportError(f"{label}: RRULE is not a recurrence rule")
        try:
            rule = _read_rule(value)
            _check_can_match(rule, start)
        except ValueError as exc:
            text = "RRULE:" + value.to_ical().decode("utf-8", "replace")
            raise IcalImportError(f"{label}: {_short(text, 100)} is not usable: {exc}") from None
        texts.append(rule.text)
        cost = _rule_cost(rule, start_utc, tz, query, window)
        total.units += cost.units
        total.repeats += cost.repeats
        total.in_window += cost.in_window
    total.rule = " ".join(texts)
    return total


# --------------------------------------------------------------------------------------------
# Import: expansion


def _expand(calendar: Calendar, lo: datetime, hi: datetime) -> list[Component]:
    try:
        return list(recurring_ical_events.of(calendar).between(lo, hi))
    except Exception as exc:  # every library error becomes an import error
        raise IcalImportError(f"the events cannot be expanded: {_short(exc)}") from None


def _period(occurrence: Component, tz: ZoneInfo, recurring: set[str]) -> ImportedPeriod | None:
    raw_start = occurrence["DTSTART"].dt
    raw_end = occurrence["DTEND"].dt if "DTEND" in occurrence else raw_start
    start = _to_utc(raw_start, tz)
    if not isinstance(raw_start, datetime) and not isinstance(raw_end, datetime):
        # An all-day event covers whole local days; DTEND equal to DTSTART means one day.
        end = local_midnight(max(raw_end, raw_start + _ONE_DAY), tz)
    else:
        end = _to_utc(raw_end, tz)
    if end <= start:
        return None
    uid = str(occurrence.get("UID"))
    if uid in recurring and "RECURRENCE-ID" in occurrence:
        original = _to_utc(occurrence["RECURRENCE-ID"].dt, tz)
        uid = f"{uid}#{original.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return ImportedPeriod(start, end, str(occurrence.get("SUMMARY", "")), uid)


def parse_periods(
    data: bytes,
    tz: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
    *,
    max_bytes: int = 2 * 1024 * 1024,
    max_periods: int = 5000,
) -> list[ImportedPeriod]:
    """Busy periods of an .ics file that overlap ``[window_start, window_end)``, sorted by start.

    Recurrences (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides) are expanded; cancelled events and
    occurrences (STATUS:CANCELLED) are left out, transparent ones are kept. An all-day event
    covers local midnight to local midnight in ``tz`` (DTEND exclusive, one day without DTEND);
    a floating time is wall time in ``tz`` (or in the file's X-WR-TIMEZONE). An event that ends
    where it starts (no DTEND and no DURATION) is skipped.

    Raises :class:`IcalImportError` for any problem with the file, among them: more than
    ``max_bytes``, not UTF-8 or not iCalendar, unbalanced BEGIN/END, an event without DTSTART or
    with a value of the wrong type, an unknown TZID, a recurrence rule that is invalid or too
    expensive to expand, more than ``max_periods`` periods in the window.
    """
    start_utc = _require_aware("window_start", window_start).astimezone(UTC)
    end_utc = _require_aware("window_end", window_end).astimezone(UTC)
    if end_utc <= start_utc:
        raise ValueError("window_end must be after window_start")
    _require_zone_key(tz)
    text = _decode(data, max_bytes)
    _check_structure(text)
    calendar = _parse(text)
    if str(calendar.get("CALSCALE", "GREGORIAN")).upper() != "GREGORIAN":
        raise IcalImportError(f"the calendar scale {calendar['CALSCALE']} is not supported")

    # Query a day more on each side: the expander compares dates and floating times with the
    # window as if they were UTC. The exact overlap is decided below, in UTC.
    query = (start_utc - _ONE_DAY, end_utc + _ONE_DAY)
    costs: list[_Cost] = []
    recurring: set[str] = set()
    for position, event in enumerate(calendar.walk("VEVENT")):
        label = _Label(position, event)
        try:
            start, end = _check_times(event, label)
            _check_order(start, end, tz, label)
            if "UID" not in event:
                event.add("UID", _synthetic_uid(event))
            if any(name in event for name in ("RRULE", "RDATE", "RECURRENCE-ID")):
                recurring.add(str(event["UID"]))
            costs.append(_event_cost(event, start, label, tz, query, (start_utc, end_utc)))
        except IcalImportError:
            raise
        except Exception as exc:  # a property shape the checks above did not foresee
            raise IcalImportError(f"{label} cannot be read: {_short(exc)}") from exc
    _check_budget(costs, max_periods, window_start, window_end)

    periods: list[ImportedPeriod] = []
    for occurrence in _expand(calendar, *query):
        if str(occurrence.get("STATUS", "")).upper() == "CANCELLED":
            continue
        try:
            period = _period(occurrence, tz, recurring)
        except Exception as exc:
            raise IcalImportError(f"an occurrence cannot be read: {_short(exc)}") from None
        if period is None or period.end <= start_utc or period.start >= end_utc:
            continue
        periods.append(period)
    if len(periods) > max_periods:
        raise IcalImportError(
            f"the file has {len(periods):,} periods between {window_start.isoformat()} and "
            f"{window_end.isoformat()}, more than the limit of {max_periods:,}"
        )
    periods.sort(key=lambda p: (p.start, p.end, p.uid))
    return periods


def _check_budget(
    costs: Sequence[_Cost], max_periods: int, window_start: datetime, window_end: datetime
) -> None:
    """Refuse a file with far too many periods, or whose expansion would take over a second.

    The estimates can be high by a small factor, so a file is refused for its number of periods
    only at twice the limit; the exact count is checked after the expansion.
    """
    span = f"between {window_start.isoformat()} and {window_end.isoformat()}"
    in_window = sum(cost.in_window for cost in costs)
    if in_window > 2 * max_periods:
        worst = max(costs, key=lambda cost: cost.in_window)
        raise IcalImportError(
            f"the file would produce about {in_window:,.0f} periods {span}, more than the limit "
            f"of {max_periods:,}; {worst.label} alone about {worst.in_window:,.0f}"
            + (f" with {_short(worst.rule, 100)}" if worst.rule else "")
        )
    budget = _COST_BUDGET + _OCCURRENCE_COST * max_periods
    units = sum(cost.units for cost in costs)
    if units <= budget:
        return
    worst = max(costs, key=lambda cost: cost.units)
    if worst.rule and worst.units * 2 > budget:
        raise IcalImportError(
            f"{worst.label} is too expensive to expand: {_short(worst.rule, 100)} repeats about "
            f"{worst.repeats:,.0f} times between its DTSTART and the end of the window "
            f"{window_end.isoformat()}; start the rule later or give it an end (UNTIL or COUNT)"
        )
    raise IcalImportError(
        f"the file's {len(costs):,} events are too many to expand at once (about "
        f"{units * 5 / 1_000_000:.1f} s of work); split the file or import a shorter window"
    )
