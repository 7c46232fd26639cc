"""Read API: locations, calendars, services and their free slots."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, Request, Response, get
from litestar.openapi.spec import Link
from litestar.params import PathParameter, QueryParameter

from scheduler.api.auth import KEY_OPTIONAL, current_principal
from scheduler.api.params import DATE_QUERY, parse_date, screened
from scheduler.api.problems import problem_responses
from scheduler.api.schemas import (
    CalendarOut,
    LocationOut,
    ServiceOut,
    SlotOut,
    operation_extras,
)
from scheduler.booking.availability import DayResult, earliest_start
from scheduler.booking.core import Core
from scheduler.booking.errors import NotFound
from scheduler.booking.models import Role

DEFAULT_DAYS = 13


class SlotsCache:
    """Encoded answers of the slots endpoint, keyed by everything they depend on; each keeps
    the counters' version it was built from and is only served for exactly that version. One
    entry per question (a newer version replaces the older), so the cache does not fill with
    answers no version will ask for again."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.data: OrderedDict[tuple[Any, ...], tuple[Any, bytes]] = OrderedDict()

    def get(self, key: tuple[Any, ...], version: Any) -> bytes | None:
        found = self.data.get(key)
        return found[1] if found is not None and found[0] == version else None

    def put(self, key: tuple[Any, ...], version: Any, body: bytes) -> None:
        self.data[key] = (version, body)
        self.data.move_to_end(key)
        if len(self.data) > self.size:
            self.data.popitem(last=False)


_encoder = msgspec.json.Encoder()


class DayFragments:
    """Rendered JSON rows of one service's day, keyed by the day's computation: a day whose
    counters did not change is never rendered again."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        # (day, service) -> (the computation's key, rows, joined): one rendering per day and
        # service, replaced when the day's counters change
        self.data: OrderedDict[
            tuple[Any, ...], tuple[tuple[Any, ...], list[tuple[datetime, bytes]], bytes]
        ] = OrderedDict()

    def get(
        self, day: DayResult, duration_minutes: int, tz: ZoneInfo
    ) -> tuple[list[tuple[datetime, bytes]], bytes]:
        identity = (day.day, day.key[0], duration_minutes, tz.key)
        found = self.data.get(identity)
        if found is not None and found[0] == day.key:
            return found[1], found[2]
        duration = timedelta(minutes=duration_minutes)
        rows = []
        for offset, free in day.starts:
            start = day.midnight + timedelta(minutes=offset)
            row = {
                "start": start.astimezone(tz).isoformat(),
                "end": (start + duration).astimezone(tz).isoformat(),
                "free": free,
            }
            rows.append((start, _encoder.encode(row)))
        joined = b",".join(fragment for _, fragment in rows)
        self.data[identity] = (day.key, rows, joined)
        self.data.move_to_end(identity)
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return rows, joined


class CatalogController(Controller):
    path = "/"
    before_request = screened
    tags = ["catalog"]

    @get("/locations", operation_id="listLocations", summary="Locations", sync_to_thread=False)
    def locations(self, request: Request[Any, Any, Any]) -> list[LocationOut]:
        core: Core = request.app.state.core
        return [
            LocationOut(loc.id, loc.name, loc.address, loc.timezone)
            for loc in core.catalog.locations.values()
        ]

    @get(
        "/calendars",
        operation_id="listCalendars",
        summary="Capacity calendars",
        sync_to_thread=False,
        responses=problem_responses(404, 422),
    )
    def calendars(
        self,
        request: Request[Any, Any, Any],
        location: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> list[CalendarOut]:
        core: Core = request.app.state.core
        catalog = core.catalog
        if location is not None and location not in catalog.locations:
            raise NotFound("location", location)
        return [
            CalendarOut(c.id, c.name, c.kind, c.location_id, c.slot_minutes)
            for c in catalog.calendars.values()
            if location is None or c.location_id == location
        ]

    @get("/services", operation_id="listServices", summary="Services", sync_to_thread=False)
    def services(self, request: Request[Any, Any, Any]) -> list[ServiceOut]:
        core: Core = request.app.state.core
        lang = "en" if request.headers.get("accept-language", "").startswith("en") else "de"
        return [
            ServiceOut(
                id=s.id,
                name=s.display_name(lang),
                duration_minutes=s.duration_minutes,
                location_id=s.location_id,
                campaign_id=s.campaign_id,
                description=s.description_en
                if lang == "en" and s.description_en
                else s.description,
                channels=list(s.channels),
                max_days_ahead=s.max_days_ahead,
                min_notice_minutes=s.min_notice_minutes,
            )
            for s in core.catalog.services.values()
        ]

    @get(
        "/services/{service_id:str}/slots",
        operation_id="listSlots",
        security=KEY_OPTIONAL,
        summary="Free slots of a service",
        description=(
            "Bookable starts between two local dates (inclusive, at most 92 days apart) with "
            "`free`: how many one-seat bookings the caller's channel could still make there "
            "(anonymous callers: online, where a phone contingent holds seats back; agents and "
            "staff: every free seat). `from` defaults to today, `to` to 13 days after `from`."
        ),
        response_description="[{start, end, free}]",
        responses=problem_responses(401, 404, 422, 503),
        operation_class=operation_extras(
            links={
                200: {
                    "HoldFirstSlot": Link(
                        operation_id="createHold",
                        request_body={
                            "service_id": "$request.path.service_id",
                            "start": "$response.body#/0/start",
                            "seats": 1,
                            "series": False,
                        },
                        description="Hold the first free start of the list.",
                    )
                }
            }
        ),
    )
    async def slots(
        self,
        request: Request[Any, Any, Any],
        service_id: Annotated[str, PathParameter(max_length=64)],
        from_: Annotated[
            str | None, QueryParameter(name="from", max_length=32, schema_extra=DATE_QUERY)
        ] = None,
        to: Annotated[str | None, QueryParameter(max_length=32, schema_extra=DATE_QUERY)] = None,
    ) -> Response[list[SlotOut]]:
        core: Core = request.app.state.core
        service = core.service(service_id)
        location = core.catalog.locations[service.location_id]
        now = core.clock.now()
        first = parse_date("from", from_, now.astimezone(location.tz).date())
        last = parse_date("to", to, first + timedelta(days=DEFAULT_DAYS))
        principal = await current_principal(request)
        channel = (
            "online"
            if principal is None
            else "phone"
            if principal.role in (Role.AGENT, Role.ADMIN)
            else "counter"
        )
        cache: SlotsCache = request.app.state.slots_cache
        key = (core.catalog.version, service.id, first, last, earliest_start(service, now), channel)
        version = await core.counters_version(service.location_id)
        if version is not None:
            body = cache.get(key, version)
            if body is not None:
                return Response(body, media_type="application/json")  # type: ignore[arg-type]
        version, days, earliest = await core.free_days(
            service.id, first, last, now, channel=channel
        )
        fragments: DayFragments = request.app.state.day_fragments
        parts: list[bytes] = []
        for day in days:
            rows, joined = fragments.get(day, service.duration_minutes, location.tz)
            if rows and rows[0][0] >= earliest:
                parts.append(joined)
            else:
                parts.extend(fragment for start, fragment in rows if start >= earliest)
        body = b"[" + b",".join(parts) + b"]"
        if version is not None:
            cache.put(key, version, body)
        return Response(body, media_type="application/json")  # type: ignore[arg-type]
