"""An immutable in-memory snapshot of the configuration (locations, calendars, services).

Loaded from SQL at start-up and whenever ``catalog_state.version`` changes, so every process
answers read requests without touching the database for configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from scheduler.booking import models as m


@dataclass(frozen=True, slots=True)
class LocationInfo:
    id: str
    name: str
    address: str
    timezone: str
    tz: ZoneInfo
    # anti-trading limits of citizens' online bookings (0: none); see ``limits``
    max_active_per_email: int = 6
    max_active_per_phone: int = 6


@dataclass(frozen=True, slots=True)
class CalendarInfo:
    id: str
    location_id: str
    name: str
    kind: str
    slot_minutes: int
    capacity: int
    feed_privacy: str
    # the phone contingent in effect: the calendar's own, else its campaign's (see load_catalog)
    phone_share_percent: int = 0
    phone_release_days: int = 0

    def reserved_share(self, day: date, today: date) -> int:
        """The percentage of ``day``'s seats online booking cannot take, as seen on the local
        date ``today``: 0 without a contingent, and from ``phone_release_days`` before the day
        on (0 days: on the day itself), when what is left is released to online booking."""
        if self.phone_share_percent and day > today + timedelta(days=self.phone_release_days):
            return self.phone_share_percent
        return 0


@dataclass(frozen=True, slots=True)
class Pool:
    """One requirement: ``seats`` on any one of ``calendar_ids``."""

    calendar_ids: tuple[str, ...]
    seats: int


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    id: str
    location_id: str
    campaign_id: str | None
    name: str
    name_en: str | None
    description: str
    description_en: str
    duration_minutes: int
    min_notice_minutes: int
    max_days_ahead: int
    channels: tuple[str, ...]
    max_active_per_person: int
    reminder_hours: tuple[int, ...]
    requires_opt_in: bool
    position: int
    pools: tuple[Pool, ...]
    opt_in_minutes: int = 30
    release_delay_minutes: int = 0

    def display_name(self, language: str) -> str:
        return self.name_en if language == "en" and self.name_en else self.name


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    id: str
    location_id: str
    name: str
    opens_at: datetime
    closes_at: datetime | None
    min_age: int | None
    postcodes: tuple[str, ...]
    places: int
    first_service_id: str | None
    second_service_id: str | None
    second_dose_min_days: int | None
    second_dose_max_days: int | None
    phone_share_percent: int
    phone_release_days: int = 0


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int = 0
    locations: dict[str, LocationInfo] = field(default_factory=dict)
    calendars: dict[str, CalendarInfo] = field(default_factory=dict)
    services: dict[str, ServiceInfo] = field(default_factory=dict)
    campaigns: dict[str, CampaignInfo] = field(default_factory=dict)

    def calendars_of(self, location_id: str) -> list[CalendarInfo]:
        return [c for c in self.calendars.values() if c.location_id == location_id]

    def online_shares(
        self, location_id: str, first: date, last: date, today: date
    ) -> dict[tuple[str, date], int]:
        """Every (calendar, day) from ``first`` to ``last`` of the location's calendars with a
        phone contingent: the percentage kept from online booking that day (0: released)."""
        out: dict[tuple[str, date], int] = {}
        for calendar in self.calendars_of(location_id):
            if not calendar.phone_share_percent:
                continue
            day = first
            while day <= last:
                out[(calendar.id, day)] = calendar.reserved_share(day, today)
                day += timedelta(days=1)
        return out


async def current_version(session: AsyncSession) -> int:
    state = await session.get(m.CatalogState, 1)
    return state.version if state else 0


async def load_catalog(session: AsyncSession) -> Catalog:
    version = await current_version(session)
    locations = {
        loc.id: LocationInfo(
            loc.id,
            loc.name,
            loc.address,
            loc.timezone,
            ZoneInfo(loc.timezone),
            loc.max_active_per_email,
            loc.max_active_per_phone,
        )
        for loc in (await session.scalars(select(m.Location).order_by(m.Location.id)))
    }
    calendar_rows = list(await session.scalars(select(m.Calendar).order_by(m.Calendar.id)))
    services: dict[str, ServiceInfo] = {}
    query = (
        select(m.Service)
        .options(selectinload(m.Service.requirements))
        .order_by(m.Service.position, m.Service.id)
    )
    for s in await session.scalars(query):
        services[s.id] = ServiceInfo(
            id=s.id,
            location_id=s.location_id,
            campaign_id=s.campaign_id,
            name=s.name,
            name_en=s.name_en,
            description=s.description,
            description_en=s.description_en,
            duration_minutes=s.duration_minutes,
            min_notice_minutes=s.min_notice_minutes,
            max_days_ahead=s.max_days_ahead,
            channels=tuple(s.channels),
            max_active_per_person=s.max_active_per_person,
            reminder_hours=tuple(s.reminder_hours),
            requires_opt_in=s.requires_opt_in,
            position=s.position,
            pools=tuple(Pool(tuple(r.calendar_ids), r.seats) for r in s.requirements),
            opt_in_minutes=s.opt_in_minutes,
            release_delay_minutes=s.release_delay_minutes,
        )
    campaigns = {
        c.id: CampaignInfo(
            id=c.id,
            location_id=c.location_id,
            name=c.name,
            opens_at=c.opens_at,
            closes_at=c.closes_at,
            min_age=c.min_age,
            postcodes=tuple(c.postcodes),
            places=c.places,
            first_service_id=c.first_service_id,
            second_service_id=c.second_service_id,
            second_dose_min_days=c.second_dose_min_days,
            second_dose_max_days=c.second_dose_max_days,
            phone_share_percent=c.phone_share_percent,
            phone_release_days=c.phone_release_days,
        )
        for c in await session.scalars(select(m.Campaign).order_by(m.Campaign.id))
    }
    inherited = _campaign_contingents(services, campaigns)
    calendars = {}
    for c in calendar_rows:
        share, days = inherited.get(c.id, (0, 0))
        calendars[c.id] = CalendarInfo(
            c.id, c.location_id, c.name, c.kind, c.slot_minutes, c.capacity, c.feed_privacy,
            phone_share_percent=share if c.phone_share_percent is None else c.phone_share_percent,
            phone_release_days=days if c.phone_release_days is None else c.phone_release_days,
        )  # fmt: skip
    return Catalog(version, locations, calendars, services, campaigns)


def _campaign_contingents(
    services: dict[str, ServiceInfo], campaigns: dict[str, CampaignInfo]
) -> dict[str, tuple[int, int]]:
    """(share, release days) per calendar from the campaigns of the services using it. Should
    campaigns disagree (the seed check refuses that), the largest share wins, then the fewest
    release days."""
    out: dict[str, tuple[int, int]] = {}
    for service in services.values():
        campaign = campaigns.get(service.campaign_id or "")
        if campaign is None or not campaign.phone_share_percent:
            continue
        contingent = (campaign.phone_share_percent, campaign.phone_release_days)
        for pool in service.pools:
            for calendar_id in pool.calendar_ids:
                known = out.get(calendar_id)
                if known is None or (contingent[0], -contingent[1]) > (known[0], -known[1]):
                    out[calendar_id] = contingent
    return out
