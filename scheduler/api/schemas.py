"""Request and response bodies of the read API (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class LocationOut(msgspec.Struct):
    id: str
    name: str
    address: str
    timezone: str


class CalendarOut(msgspec.Struct):
    id: str
    name: str
    kind: str
    location_id: str
    slot_minutes: int


class ServiceOut(msgspec.Struct):
    id: str
    name: str
    duration_minutes: int
    location_id: str
    campaign_id: str | None
    description: str
    channels: list[str]
    max_days_ahead: int
    min_notice_minutes: int


class SlotOut(msgspec.Struct):
    start: str
    end: str
    free: int


class HealthOut(msgspec.Struct):
    status: Literal["ok", "degraded", "down"]
    sql: Literal["ok", "down"]
    redis: Literal["ok", "down"]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["agent", "staff", "admin"]
    name: str
    calendar_ids: list[str] = []


class KeyOut(msgspec.Struct):
    id: str
    name: str
    role: str
    calendar_ids: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(msgspec.Struct):
    id: str
    name: str
    role: str
    calendar_ids: list[str]
    created_at: datetime
    key: str
