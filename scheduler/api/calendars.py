"""Calendars out and in: a booking's .ics, staff subscription feeds, feed tokens, closure import.

Tokens travel as ``?token=`` on these links (calendar apps cannot send headers); the request log
never contains query strings, and a wrong token is the same 404 as a missing calendar.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, route
from litestar.enums import HttpMethod
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter

from scheduler.api.auth import KEY_OPTIONAL, KEY_REQUIRED, own_calendar, require
from scheduler.api.bookings import authorized_booking, client_address, limiter
from scheduler.api.params import screened
from scheduler.api.problems import problem_responses
from scheduler.api.schemas import PLAIN_TEXT, allowing, strict_body
from scheduler.booking import feeds
from scheduler.booking import models as m
from scheduler.booking.closures import import_closures
from scheduler.booking.core import Core
from scheduler.booking.errors import FieldError, NotFound, ValidationFailed
from scheduler.booking.events import booking_events, feed_events
from scheduler.calendar.ical import booking_ics, calendar_document, render_event

log = logging.getLogger("scheduler.api.calendars")
ICS = "text/calendar; charset=utf-8"
PRIVATE = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}
REFRESH_MINUTES = 15
# what RFC 5545 forbids in a calendar file (every control character but HTAB, CR and LF); a NUL
# would reach PostgreSQL in a closure's reason or UID
ICS_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FeedCreate(msgspec.Struct, forbid_unknown_fields=True):
    calendar_id: Annotated[str, msgspec.Meta(max_length=64)]
    name: Annotated[str, msgspec.Meta(max_length=200, pattern=PLAIN_TEXT)] = ""


class FeedOut(msgspec.Struct):
    id: str
    calendar_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class FeedCreated(msgspec.Struct):
    id: str
    calendar_id: str
    name: str
    created_at: datetime
    token: str
    url: str


class AffectedOut(msgspec.Struct):
    reference: str
    start: str
    status: str


class ImportOut(msgspec.Struct):
    added: int
    already_known: int
    affected: list[AffectedOut]


def _core(request: Request[Any, Any, Any]) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]


@dataclass(slots=True)
class FeedEntry:
    version: str | None  # the calendar's feed version in Redis when the entry was checked
    checked: float  # time.monotonic() of the last check against SQL
    etag: str
    last_change: datetime | None
    body: bytes


class FeedCache:
    """Per process: the last feed document per calendar and privacy, valid while the calendar's
    feed version in Redis is unchanged (and checked against SQL at least every ``MAX_AGE`` s, in
    case a change could not reach Redis); rendered events by booking; accepted feed tokens."""

    MAX_AGE = 60.0
    TOKEN_SECONDS = 30.0

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.documents: OrderedDict[tuple[str, str], FeedEntry] = OrderedDict()
        self.events: dict[tuple[str, str, str], tuple[int, bytes]] = {}
        self.tokens: dict[tuple[str, str], float] = {}

    def document(self, key: tuple[str, str], version: str | None) -> FeedEntry | None:
        entry = self.documents.get(key)
        if (
            entry is None
            or version is None
            or entry.version != version
            or time.monotonic() - entry.checked > self.MAX_AGE
        ):
            return None
        return entry

    def stale(self, key: tuple[str, str]) -> FeedEntry | None:
        return self.documents.get(key)

    def put(self, key: tuple[str, str], entry: FeedEntry) -> None:
        self.documents[key] = entry
        self.documents.move_to_end(key)
        if len(self.documents) > self.size:
            self.documents.popitem(last=False)

    def token_ok(self, calendar_id: str, token: str) -> bool:
        until = self.tokens.get((calendar_id, token))
        return until is not None and until > time.monotonic()

    def remember_token(self, calendar_id: str, token: str) -> None:
        if len(self.tokens) > 10_000:
            self.tokens.clear()
        self.tokens[(calendar_id, token)] = time.monotonic() + self.TOKEN_SECONDS

    def forget_tokens(self) -> None:
        self.tokens.clear()


def _not_modified(request: Request[Any, Any, Any], etag: str, changed: datetime | None) -> bool:
    match = request.headers.get("if-none-match")
    if match is not None:
        return etag in [part.strip() for part in match.split(",")] or match.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since and changed is not None:
        try:
            return changed.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


class CalendarFilesController(Controller):
    path = "/"
    before_request = screened
    tags = ["calendars"]

    @get(
        "/bookings/{reference:str}/calendar.ics",
        operation_id="bookingCalendar",
        security=KEY_OPTIONAL,
        summary="A booking as iCalendar (manage token as Bearer or ?token=)",
        media_type=ICS,
        responses=problem_responses(401, 404, 422, 429),
    )
    async def booking_ics(
        self,
        request: Request[Any, Any, Any],
        reference: Annotated[str, PathParameter(max_length=20)],
        token: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> Response[bytes]:
        core = _core(request)
        booking = await authorized_booking(request, reference, query_token=token)
        service = request.app.state.bookings
        events = booking_events(
            core.catalog, booking, core.base_url, service.token_for(booking), booking.language
        )
        tz = core.catalog.locations[booking.location_id].tz
        body = booking_ics(events, tz, booking.updated_at)
        name = f"termin-{booking.reference}.ics"
        headers = {**PRIVATE, "Content-Disposition": f'attachment; filename="{name}"'}
        return Response(body, media_type=ICS, headers=headers)

    @get(
        "/calendars/{calendar_id:str}/feed.ics",
        operation_id="calendarFeed",
        summary="Subscription feed of a calendar's bookings (feed token as ?token=)",
        media_type=ICS,
        responses={
            304: ResponseSpec(None, description="Not modified (`If-None-Match`)"),
            **problem_responses(404, 422, 429),
        },
    )
    async def feed(
        self,
        request: Request[Any, Any, Any],
        calendar_id: Annotated[str, PathParameter(max_length=64)],
        token: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> Response[bytes]:
        core = _core(request)
        calendar = core.catalog.calendars.get(calendar_id)
        if calendar is None:
            raise NotFound("calendar", calendar_id)
        privacy = calendar.feed_privacy
        cache: FeedCache = request.app.state.feed_cache
        key = (calendar_id, privacy)
        if not (token and cache.token_ok(calendar_id, token)):
            try:
                async with core.sessions() as session:
                    await feeds.check_token(session, calendar_id, token)
            except NotFound:
                # A valid feed token always passes (calendar services poll many feeds from
                # shared addresses; one revoked feed must not block the others). A wrong one
                # counts, and an address that failed too often hears 429 instead of 404.
                limits, address = limiter(request), client_address(request)
                await limits.check_token_lookup(address)
                await limits.token_failed(address)
                raise
            cache.remember_token(calendar_id, token or "")
        version = await core.reservations.feed_version(calendar.location_id, calendar_id)
        entry = cache.document(key, version)
        if entry is None:
            first, last = feeds.window(core.clock.now(), core.horizon_days)
            async with core.sessions() as session:
                state, index = await feeds.feed_index(session, calendar_id, first, last)
            etag = state.etag(calendar_id, privacy, first)
            previous = cache.stale(key)
            if previous is not None and previous.etag == etag:
                body = previous.body
            else:
                body = await _build_feed(core, cache, calendar_id, privacy, index, first, last)
            entry = FeedEntry(version, time.monotonic(), etag, state.last_change, body)
            cache.put(key, entry)
        headers = {"ETag": entry.etag, "Cache-Control": "private, max-age=0, must-revalidate",
                   "Referrer-Policy": "no-referrer"}  # fmt: skip
        if entry.last_change is not None:
            headers["Last-Modified"] = format_datetime(entry.last_change, usegmt=True)
        if _not_modified(request, entry.etag, entry.last_change):
            return Response(b"", status_code=304, headers=headers)
        return Response(entry.body, media_type=ICS, headers=headers)


async def _build_feed(
    core: Core,
    cache: FeedCache,
    calendar_id: str,
    privacy: str,
    index: list[tuple[str, int]],
    first: datetime,
    last: datetime,
) -> bytes:
    """The feed document: events this process rendered before are reused, the others come
    pre-rendered from SQL or are rendered now (and stored for the next process)."""
    calendar = core.catalog.calendars[calendar_id]
    location = core.catalog.locations[calendar.location_id]
    async with core.sessions() as session:
        known = {
            booking_id: cached[1]
            for booking_id, sequence in index
            if (cached := cache.events.get((booking_id, calendar_id, privacy)))
            and cached[0] == sequence
        }
        missing = [booking_id for booking_id, _ in index if booking_id not in known]
        rows = []
        for start in range(0, len(missing), 900):
            rows += await feeds.feed_bookings(
                session, calendar_id, privacy, first, last, missing[start : start + 900]
            )
    fresh: list[tuple[str, int, bytes]] = []
    for row in rows:
        text = row.rendered
        if text is None:
            events = feed_events(
                core.catalog, row, location.id, privacy, core.base_url, calendar_id
            )
            text = b"".join(render_event(e, location.tz, row.updated_at) for e in events)
            fresh.append((row.id, row.sequence, text))
        known[row.id] = text
        cache.events[(row.id, calendar_id, privacy)] = (row.sequence, text)
    if fresh:
        try:
            async with core.sessions() as session, session.begin():
                await feeds.keep_rendered(session, calendar_id, privacy, fresh)
        except Exception:  # the cache is best effort (a concurrent twin stored them first)
            log.debug("rendered events not stored", extra={"calendar": calendar_id})
    events = [known[booking_id] for booking_id, _ in index if booking_id in known]
    name = f"{calendar.name} – {location.name}"
    return calendar_document(events, location.tz, name=name, refresh_minutes=REFRESH_MINUTES)


class FeedsController(Controller):
    path = "/feeds"
    before_request = screened
    tags = ["admin"]
    guards = [require(m.Role.ADMIN)]
    security = KEY_REQUIRED

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False, sync_to_thread=False)
    def allow(self) -> Response[None]:
        return allowing("GET", "POST")

    @post(
        "/",
        operation_id="createFeedToken",
        summary="Create a feed token (shown once)",
        responses=problem_responses(400, 401, 403, 413, 422),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            FeedCreate, strict_body({"calendar_id": "schalter-1", "name": "Outlook Schalter 1"})
        ],
    ) -> FeedCreated:
        core = _core(request)
        async with core.sessions() as session, session.begin():
            row, token = await feeds.create_token(
                session, data.calendar_id, data.name, set(core.catalog.calendars), core.clock.now()
            )
        url = (
            f"{core.base_url.rstrip('/')}/api/v1/calendars/{row.calendar_id}/feed.ics?token={token}"
        )
        return FeedCreated(row.id, row.calendar_id, row.name, row.created_at, token, url)

    @get(
        "/",
        operation_id="listFeedTokens",
        summary="Feed tokens (without their secrets)",
        responses=problem_responses(401, 403),
    )
    async def list_tokens(self, request: Request[Any, Any, Any]) -> list[FeedOut]:
        core = _core(request)
        async with core.sessions() as session:
            rows = await feeds.list_tokens(session)
        return [FeedOut(r.id, r.calendar_id, r.name, r.created_at, r.revoked_at) for r in rows]

    @delete(
        "/{token_id:str}",
        operation_id="revokeFeedToken",
        summary="Revoke a feed token",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        token_id: Annotated[str, PathParameter(max_length=64)],
    ) -> None:
        core = _core(request)
        async with core.sessions() as session, session.begin():
            await feeds.revoke_token(session, token_id, core.clock.now())
        request.app.state.feed_cache.forget_tokens()


class ClosuresController(Controller):
    path = "/calendars/{calendar_id:str}/closures"
    before_request = screened
    tags = ["staff"]
    guards = [require(m.Role.STAFF)]
    security = KEY_REQUIRED

    @post(
        "/import",
        operation_id="importClosures",
        summary="Import closures from an iCalendar body (holidays, absences, recurring events)",
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 413, 422),
    )
    async def import_ics(
        self,
        request: Request[Any, Any, Any],
        calendar_id: Annotated[str, PathParameter(max_length=64)],
    ) -> ImportOut:
        core = _core(request)
        await own_calendar(request, calendar_id)
        data = await request.body()
        if ICS_CONTROL.search(data):
            raise ValidationFailed(FieldError("body", "control_character"))
        report = await import_closures(
            core.sessions, calendar_id, data, core.clock.now(), core.horizon_days
        )
        location = core.catalog.calendars[calendar_id].location_id
        await core.rebuild_counters([location])
        tz = core.catalog.locations[location].tz
        return ImportOut(
            report.added,
            report.already_known,
            [
                AffectedOut(
                    f"{a.reference[:4]}-{a.reference[4:]}", a.start.astimezone(tz).isoformat(),
                    a.status,
                )
                for a in report.affected
            ],
        )  # fmt: skip
