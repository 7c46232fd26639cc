"""SQLAlchemy 2 models: the source of truth.

Configured things (locations, calendars, services, campaigns) have the stable slugs of the seed
file as primary keys. Times are stored as timezone-aware UTC (``UtcDateTime`` makes SQLite give
them back aware, as PostgreSQL's ``timestamptz`` does).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class BookingStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"
    NO_SHOW = "no_show"
    COMPLETED = "completed"


ACTIVE_STATUSES = (BookingStatus.PENDING, BookingStatus.CONFIRMED, BookingStatus.CHECKED_IN)


class Channel(StrEnum):
    ONLINE = "online"
    PHONE = "phone"
    COUNTER = "counter"


class Role(StrEnum):
    AGENT = "agent"
    STAFF = "staff"
    ADMIN = "admin"


class FeedPrivacy(StrEnum):
    FULL = "full"
    INITIALS = "initials"
    SERVICE = "service"


class Location(Base):
    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Berlin")
    # anti-trading: active (pending, confirmed, checked-in, not yet ended) online bookings of
    # citizens at this location per contact e-mail address and per contact phone number
    # (``limits``); 0: no limit
    max_active_per_email: Mapped[int] = mapped_column(Integer, default=6, server_default="6")
    max_active_per_phone: Mapped[int] = mapped_column(Integer, default=6, server_default="6")

    calendars: Mapped[list[Calendar]] = relationship(back_populates="location")


class Calendar(Base):
    """A capacity calendar: one room, one clerk or one vaccination line."""

    __tablename__ = "calendars"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    slot_minutes: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    feed_privacy: Mapped[str] = mapped_column(String(16), default=FeedPrivacy.INITIALS)
    # The phone contingent: the percentage of each day's seats online booking cannot take, until
    # ``phone_release_days`` before the day. NULL: as the calendar's campaign says (or none).
    phone_share_percent: Mapped[int | None] = mapped_column(Integer)
    phone_release_days: Mapped[int | None] = mapped_column(Integer)

    location: Mapped[Location] = relationship(back_populates="calendars")
    rules: Mapped[list[OpeningRule]] = relationship(
        back_populates="calendar", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint("slot_minutes > 0", name="slot_minutes_positive"),
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
    )


class OpeningRule(Base):
    __tablename__ = "opening_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calendar_id: Mapped[str] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), index=True
    )
    weekday: Mapped[int] = mapped_column(Integer)
    start: Mapped[time] = mapped_column(Time)
    end: Mapped[time] = mapped_column(Time)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)

    calendar: Mapped[Calendar] = relationship(back_populates="rules")


class Closure(Base):
    """A closed period of one calendar, or of a whole location when ``calendar_id`` is null."""

    __tablename__ = "closures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), index=True)
    calendar_id: Mapped[str | None] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), index=True
    )
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(16), default="seed")
    external_uid: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (CheckConstraint("ends_at > starts_at", name="closure_not_empty"),)


class Slot(Base):
    """One grid cell of a calendar. The invariant lives here: 0 <= booked <= capacity."""

    __tablename__ = "slots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    day: Mapped[date] = mapped_column(Date)
    cell: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    capacity_overridden: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        UniqueConstraint("calendar_id", "starts_at", name="uq_slots_calendar_start"),
        Index("ix_slots_calendar_day", "calendar_id", "day", "cell"),
        CheckConstraint("booked >= 0 AND booked <= capacity", name="seats_within_capacity"),
    )


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    name: Mapped[str] = mapped_column(String(200))
    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime | None]
    min_age: Mapped[int | None] = mapped_column(Integer)
    postcodes: Mapped[list[str]] = mapped_column(default=list)
    places: Mapped[int] = mapped_column(Integer)
    first_service_id: Mapped[str | None] = mapped_column(String(64))
    second_service_id: Mapped[str | None] = mapped_column(String(64))
    second_dose_min_days: Mapped[int | None] = mapped_column(Integer)
    second_dose_max_days: Mapped[int | None] = mapped_column(Integer)
    phone_share_percent: Mapped[int] = mapped_column(Integer, default=0)
    phone_release_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the places given out: active series (bookings of the first-dose service that are not
    # cancelled), taken with ``taken = taken + 1 WHERE taken < places`` in the booking's
    # transaction and given back when one is cancelled or its offer lapses
    taken: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (CheckConstraint("taken >= 0", name="taken_not_negative"),)


class Service(Base):
    __tablename__ = "services"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), index=True)
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id"))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=0)
    max_days_ahead: Mapped[int] = mapped_column(Integer, default=90)
    channels: Mapped[list[str]] = mapped_column(default=lambda: ["online", "phone", "counter"])
    max_active_per_person: Mapped[int] = mapped_column(Integer, default=1)
    reminder_hours: Mapped[list[int]] = mapped_column(JSON, default=lambda: [24])
    requires_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    # how long an online booking waits for its e-mail confirmation (``requires_opt_in``)
    opt_in_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    # anti-trading: seats a cancelled or moved booking gave back are offered again only after
    # this delay (``holdbacks``); 0: at once
    release_delay_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    position: Mapped[int] = mapped_column(Integer, default=0)

    requirements: Mapped[list[Requirement]] = relationship(
        back_populates="service", cascade="all, delete-orphan", order_by="Requirement.position"
    )


class Requirement(Base):
    """A booking of the service takes ``seats`` on one calendar of this pool."""

    __tablename__ = "requirements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    seats: Mapped[int] = mapped_column(Integer, default=1)
    calendar_ids: Mapped[list[str]] = mapped_column()

    service: Mapped[Service] = relationship(back_populates="requirements")

    __table_args__ = (CheckConstraint("seats > 0", name="seats_positive"),)


class Booking(Base):
    __tablename__ = "bookings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    reference: Mapped[str] = mapped_column(String(8), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(32))
    attendee_name: Mapped[str | None] = mapped_column(String(200))
    attendee_birth_date: Mapped[date | None] = mapped_column(Date)
    attendee_postcode: Mapped[str | None] = mapped_column(String(10))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    person_keys: Mapped[list[str]] = mapped_column(default=list)
    name_key: Mapped[str | None] = mapped_column(String(64), index=True)
    language: Mapped[str] = mapped_column(String(2), default="de")
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    pending_until: Mapped[datetime | None]
    erased_at: Mapped[datetime | None]
    # SHA-256 of the hold token the booking was confirmed with: a hold confirms once
    hold_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    appointments: Mapped[list[Appointment]] = relationship(
        back_populates="booking", cascade="all, delete-orphan", order_by="Appointment.position"
    )


class Appointment(Base):
    """One service visit of a booking (two for a vaccination series)."""

    __tablename__ = "appointments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[str] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    service_ids: Mapped[list[str]] = mapped_column()
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    calendar_ids: Mapped[list[str]] = mapped_column()

    booking: Mapped[Booking] = relationship(back_populates="appointments")


class BookingSlot(Base):
    """The seats a booking holds on one slot."""

    __tablename__ = "booking_slots"

    booking_id: Mapped[str] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), primary_key=True
    )
    slot_id: Mapped[int] = mapped_column(ForeignKey("slots.id"), primary_key=True, index=True)
    seats: Mapped[int] = mapped_column(Integer)


class PersonClaim(Base):
    """One of a person's active bookings of a service, per identifier: the unique key makes the
    per-person limit hold under concurrent confirms on every database."""

    __tablename__ = "person_claims"

    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[str] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )


class SeatHoldback(Base):
    """Seats a cancelled or moved booking of a service with a release delay gave up, kept
    taken (still counted in ``slots.booked``, so neither Redis nor a reconcile offers them)
    until ``release_at``; the release job deletes the row and gives the seats back."""

    __tablename__ = "seat_holdbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slots.id", ondelete="CASCADE"), index=True)
    seats: Mapped[int] = mapped_column(Integer)
    location_id: Mapped[str] = mapped_column(String(64))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    release_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (CheckConstraint("seats > 0", name="holdback_seats_positive"),)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(index=True)


class AuditEvent(Base):
    """Append-only record of every action taken on a booking or on someone's behalf."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[str | None] = mapped_column(String(32), index=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    calendar_ids: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NOT_APPLICABLE = "not_applicable"


class Notification(Base):
    """An outbox row: a message to send at ``due_at``, written in the transaction of the change
    it is about. Claimed by one sender at a time (a lease), sent at most once per claim."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[str | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None]
    message_id: Mapped[str] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    previous_start: Mapped[datetime | None]

    __table_args__ = (Index("ix_notifications_due", "status", "due_at"),)


class FeedToken(Base):
    """A subscription token for one calendar's iCal feed; only its SHA-256 is stored."""

    __tablename__ = "feed_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    calendar_id: Mapped[str] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class RenderedEvent(Base):
    """A booking's VEVENT as one feed shows it, kept so a feed is assembled, not re-rendered,
    also after a restart. Keyed by everything the text depends on."""

    __tablename__ = "rendered_events"

    booking_id: Mapped[str] = mapped_column(
        ForeignKey("bookings.id", ondelete="CASCADE"), primary_key=True
    )
    calendar_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    privacy: Mapped[str] = mapped_column(String(16), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class CatalogState(Base):
    """One row: bumped whenever the configuration changes, so every process reloads it."""

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    seeded_at: Mapped[datetime | None]


class WaitlistStatus(StrEnum):
    WAITING = "waiting"
    OFFERING = "offering"  # claimed by one offer run (with a lease), for seconds
    OFFERED = "offered"  # a pending booking waits for the person's answer until offer_until
    BOOKED = "booked"
    EXPIRED = "expired"  # the offer lapsed unanswered
    WITHDRAWN = "withdrawn"  # declined, or could no longer be served (e.g. booked elsewhere)


class WaitlistEntry(Base):
    """A person waiting for a campaign's series; served in the order of ``id``."""

    __tablename__ = "waitlist_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"))
    service_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(32))
    attendee_name: Mapped[str | None] = mapped_column(String(200))
    attendee_birth_date: Mapped[date | None] = mapped_column(Date)
    attendee_postcode: Mapped[str | None] = mapped_column(String(10))
    contact_name: Mapped[str | None] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    person_keys: Mapped[list[str]] = mapped_column(default=list)
    language: Mapped[str] = mapped_column(String(2), default="de")
    booking_id: Mapped[str | None] = mapped_column(
        ForeignKey("bookings.id", ondelete="SET NULL"), index=True
    )
    offer_until: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claim_until: Mapped[datetime | None]

    __table_args__ = (Index("ix_waitlist_entries_queue", "campaign_id", "status", "id"),)


class WaitlistKey(Base):
    """One row per identifier of a person on a campaign's waiting list (waiting or offered):
    the primary key makes "one entry per person" hold under concurrent joins."""

    __tablename__ = "waitlist_keys"

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        ForeignKey("waitlist_entries.id", ondelete="CASCADE"), index=True
    )
