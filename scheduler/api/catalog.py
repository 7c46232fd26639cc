"""Read API: locations, calendars, services and their free slots."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import PathParameter, QueryParameter

from scheduler.api.auth import current_principal
from scheduler.api.params import parse_date
from scheduler.api.schemas import CalendarOut, LocationOut, ServiceOut, SlotOut
from scheduler.booking.availability import DayResult, earliest_start
from scheduler.booking.core import Core
from scheduler.booking.errors import NotFound
from scheduler.booking.models import Role

DEFAULT_DAYS = 13


class SlotsCache:
    """Encoded answers of the slots endpoint, keyed by everything they depend on, including the
    counters' version: an entry is only ever served for the exact counters it was built from."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.data: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        return self.data.get(key)

    def put(self, key: tuple[Any, ...], body: bytes) -> None:
        self.data[key] = body
        if len(self.data) > self.size:
            self.data.popitem(last=False)


_encoder = msgspec.json.Encoder()


class DayFragments:
    """Rendered JSON rows of one service's day, keyed by the day's computation: a day whose
    counters did not change is never rendered again."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.data: OrderedDict[tuple[Any, ...], tuple[list[tuple[datetime, bytes]], bytes]] = (
            OrderedDict()
        )

    def get(
        self, day: DayResult, duration_minutes: int, tz: ZoneInfo
    ) -> tuple[list[tuple[datetime, bytes]], bytes]:
        key = (day.day, *day.key)
        found = self.data.get(key)
        if found is not None:
            return found
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
        value = (rows, b",".join(fragment for _, fragment in rows))
        self.data[key] = value
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return value


class CatalogController(Controller):
    path = "/"
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
        summary="Free slots of a service",
        description=(
            "Bookable starts between two local dates (inclusive, at most 92 days apart) with "
            "`free`: how many one-seat bookings the caller's channel could still make there "
            "(anonymous callers: online, where a phone contingent holds seats back; agents and "
            "staff: every free seat). `from` defaults to today, `to` to 13 days after `from`."
        ),
        response_description="[{start, end, free}]",
    )
    async def slots(
        self,
        request: Request[Any, Any, Any],
        service_id: Annotated[str, PathParameter(max_length=64)],
        from_: Annotated[str | None, QueryParameter(name="from", max_length=32)] = None,
        to: Annotated[str | None, QueryParameter(max_length=32)] = None,
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
            body = cache.get((*key, version))
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
            cache.put((*key, version), body)
        return Response(body, media_type="application/json")  # type: ignore[arg-type]
