"""The booking service: confirm a hold (or book in one step), read, cancel, reschedule.

A campaign's places (``campaigns.places``) are counted in SQL: a booking of its first-dose
service takes one with ``taken = taken + 1 WHERE taken < places`` as the last statement of the
booking's transaction (after the seats, so every transaction locks slots before the campaign
row, and holds that hot row only until its commit) or fails as
:class:`CampaignFull`; a cancellation (or a lapsed waiting-list offer) gives it back. A no-show
keeps its place. While a campaign's waiting list has people waiting, holds of its first dose
by anyone else are :class:`WaitlistFirst`: freed series go to the list (``waitlist``) first.

Protocol (DESIGN §4): seats are first taken in Redis (a hold, claimed exactly once for
confirming), then one SQL transaction takes them for real with a conditional update
(``booked + n <= capacity``, plus a CHECK constraint) and writes the booking, its appointments,
its slot rows, the person claims, the audit event and the idempotency record. After commit the
hold is marked confirmed; if the transaction fails, the hold's seats are given back.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, case, delete, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload

from scheduler import metrics
from scheduler.booking import campaigns, codes, limits, moves, outbox, pgfast
from scheduler.booking import idempotency as idem
from scheduler.booking import models as m
from scheduler.booking.addresses import addr_spec
from scheduler.booking.catalog import CampaignInfo, Catalog
from scheduler.booking.errors import (
    AlreadyChanged,
    CampaignFull,
    DomainError,
    FieldError,
    Forbidden,
    HoldExpired,
    LimitReached,
    NotFound,
    OptInExpired,
    SlotFull,
    ValidationFailed,
    WaitlistFirst,
)
from scheduler.booking.holds import (
    MAX_SECOND_OPTIONS,
    CellRef,
    Hold,
    Reservations,
    Visit,
    appointments_of,
    plan_visit,
    with_second_dose,
)

log = logging.getLogger("scheduler.bookings")

ACTIVE = tuple(s.value for s in m.ACTIVE_STATUSES)

# Statements of the hot path, built once so SQLAlchemy's compiled cache always hits.
_SEATS = bindparam("b_seats")
TAKE_SEATS = (
    update(m.Slot)
    .where(
        m.Slot.calendar_id == bindparam("b_calendar"),
        m.Slot.day == bindparam("b_day"),
        m.Slot.cell.in_(bindparam("b_cells", expanding=True)),
        m.Slot.booked + _SEATS <= m.Slot.capacity,
    )
    .values(booked=m.Slot.booked + _SEATS)
    .returning(m.Slot.id)
)
TAKE_SEATS_UNGUARDED = (
    update(m.Slot)
    .where(
        m.Slot.calendar_id == bindparam("b_calendar"),
        m.Slot.day == bindparam("b_day"),
        m.Slot.cell.in_(bindparam("b_cells", expanding=True)),
    )
    .values(booked=m.Slot.booked + _SEATS)
    .returning(m.Slot.id)
)
INSERT_BOOKING = insert(m.Booking)
INSERT_APPOINTMENT = insert(m.Appointment)
INSERT_BOOKING_SLOT = insert(m.BookingSlot)
INSERT_CLAIM = insert(m.PersonClaim)
INSERT_AUDIT = insert(m.AuditEvent)
TAKE_PLACE = (
    update(m.Campaign)
    .where(m.Campaign.id == bindparam("b_campaign"), m.Campaign.taken < m.Campaign.places)
    .values(taken=m.Campaign.taken + 1)
    .returning(m.Campaign.id)
)
# the early refusals of a campaign's first dose (see ``_check_campaign``): places left, someone
# waiting on the list, and (for a person) a series of theirs
_PLACES_LEFT = (
    select(m.Campaign.places - m.Campaign.taken)
    .where(m.Campaign.id == bindparam("b_campaign"))
    .scalar_subquery()
)
_WAITING = (
    select(m.WaitlistEntry.id)
    .where(
        m.WaitlistEntry.campaign_id == bindparam("b_campaign"),
        m.WaitlistEntry.status.in_(
            (m.WaitlistStatus.WAITING.value, m.WaitlistStatus.OFFERING.value)
        ),
    )
    .limit(1)
    .scalar_subquery()
)
CAMPAIGN_STATE = select(_PLACES_LEFT, _WAITING)
CAMPAIGN_STATE_FOR_PERSON = select(
    _PLACES_LEFT,
    _WAITING,
    select(m.PersonClaim.booking_id)
    .where(
        m.PersonClaim.service_id == bindparam("b_claim"),
        m.PersonClaim.person_key.in_(bindparam("b_keys", expanding=True)),
    )
    .limit(1)
    .scalar_subquery(),
)
# the control runs of the race tests only (guards switched off): places are not limited
TAKE_PLACE_UNGUARDED = (
    update(m.Campaign)
    .where(m.Campaign.id == bindparam("b_campaign"))
    .values(taken=m.Campaign.taken + 1)
    .returning(m.Campaign.id)
)
GIVE_PLACE = (
    update(m.Campaign)
    .where(m.Campaign.id == bindparam("b_campaign"), m.Campaign.taken > 0)
    .values(taken=m.Campaign.taken - 1)
)
# a slot inside a closure of its calendar, or of its calendar's whole location
_CLOSED = exists().where(
    m.Closure.starts_at < m.Slot.ends_at,
    m.Closure.ends_at > m.Slot.starts_at,
    or_(
        m.Closure.calendar_id == m.Slot.calendar_id,
        m.Closure.calendar_id.is_(None)
        & (
            m.Closure.location_id
            == select(m.Calendar.location_id)
            .where(m.Calendar.id == m.Slot.calendar_id)
            .correlate(m.Slot)  # the slot being updated (else: every slot, more than one row)
            .scalar_subquery()
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str | None = None
    phone: str | None = None
    birth_date: date | None = None
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an API key (agent, staff, admin), the citizen (key_id None), or a scheduled
    job (role ``system``)."""

    key_id: str | None = None
    role: str | None = None
    request_id: str | None = None

    @property
    def name(self) -> str:
        if self.key_id:
            return f"key:{self.key_id}"
        return "system" if self.role == "system" else "citizen"

    @property
    def is_citizen(self) -> bool:
        """The citizen themself (no API key, no job)."""
        return self.key_id is None and self.role is None


@dataclass(frozen=True, slots=True)
class Inside:
    """A period of one calendar: a change passed ``only_inside`` happens only while the booking
    still holds seats there (a closure's view; someone may have moved it meanwhile)."""

    calendar_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class BookingRequest:
    citizen: Person
    contact: Person | None = None
    channel: str = "online"
    language: str = "de"
    consent: bool = False


@dataclass(frozen=True, slots=True)
class AppointmentView:
    service_ids: list[str]
    start: datetime
    end: datetime
    calendar_ids: list[str]


@dataclass(slots=True)
class BookingView:
    id: str
    reference: str
    status: str
    channel: str
    location_id: str
    start: datetime
    end: datetime
    appointments: list[AppointmentView]
    citizen: Person
    contact: Person | None
    language: str
    token_version: int
    sequence: int
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)
    # a pending booking's deadline: its e-mail opt-in (or a waiting-list offer) lapses then
    pending_until: datetime | None = None

    @property
    def service_ids(self) -> list[str]:
        return [s for a in self.appointments for s in a.service_ids]


Render = Callable[[BookingView], bytes]


@dataclass(frozen=True, slots=True)
class OfferTerms:
    """A booking made for a waiting-list entry: ``pending`` until ``until``; the entry must
    still be claimed with ``claim_token`` when the booking commits."""

    entry_id: int
    claim_token: str
    until: datetime


@dataclass(frozen=True, slots=True)
class HoldBack:
    """Freed seats kept taken until ``release_at`` (a service's release delay)."""

    location_id: str
    online: bool
    release_at: datetime


class OfferClaimLost(Exception):
    """The waiting-list entry was no longer claimed by this offer run (its lease ran out)."""


def series_claim(campaign_id: str) -> str:
    """The ``person_claims.service_id`` of a person's one series of a campaign."""
    return f"campaign:{campaign_id}"[:64]


def attendee_keys(secret: str, citizen: Person) -> list[str]:
    """The keys a person's limits (one series, active bookings of a service) are counted by:
    the attendee's name and birth date, and their own e-mail address and phone number."""
    return codes.person_keys(
        secret, email=citizen.email, phone=citizen.phone, name=citizen.name,
        birth_date=citizen.birth_date,
    )  # fmt: skip


def person_columns(request: BookingRequest) -> dict[str, Any]:
    """The attendee and the contact (the attendee when nobody else is named) as stored on a
    booking or a waiting-list entry."""
    citizen, contact = request.citizen, request.contact
    who = contact or citizen
    return {
        "attendee_name": citizen.name.strip(),
        "attendee_birth_date": citizen.birth_date,
        "attendee_postcode": citizen.postcode,
        "contact_name": contact.name.strip() if contact else None,
        "contact_email": who.email.strip() if who.email else None,
        "contact_phone": codes.normalize_phone(who.phone) if who.phone else None,
    }


def citizen_online(request: BookingRequest, actor: Actor) -> bool:
    """A citizen's own online booking: the one the anti-bot and anti-trading rules (e-mail
    opt-in, limits per contact address) apply to; agents' and counter bookings are exempt."""
    return request.channel == m.Channel.ONLINE.value and actor.is_citizen


def validate_request(request: BookingRequest) -> None:
    errors = []
    citizen = request.citizen
    if not citizen.name.strip() or len(citizen.name) > 200:
        errors.append(FieldError("citizen.name", "length", min=1, max=200))
    contact = request.contact or citizen
    if not (contact.email or contact.phone):
        errors.append(FieldError("citizen.email", "email_or_phone"))
    for where, person in (("citizen", citizen), ("contact", request.contact)):
        if person is None:
            continue
        if person.email is not None and not _plausible_email(person.email):
            errors.append(FieldError(f"{where}.email", "email"))
        if person.phone is not None and codes.normalize_phone(person.phone) is None:
            errors.append(FieldError(f"{where}.phone", "phone"))
    if request.language not in ("de", "en"):
        errors.append(FieldError("language", "one_of", choices="de, en"))
    if citizen.birth_date is not None and not date(1900, 1, 1) <= citizen.birth_date:
        errors.append(FieldError("citizen.birth_date", "out_of_range"))
    if errors:
        raise ValidationFailed(*errors)


def _plausible_email(email: str) -> bool:
    """An address the messages can be sent to (as the renderer writes them), with a dot in its
    domain (``erika@localhost`` is no citizen's address)."""
    try:
        spec = addr_spec(email)
    except ValueError:
        return False
    return "." in spec.rpartition("@")[2]


def _constraint(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).lower()
    for name in ("person_claims", "idempotency_records", "hold_key", "reference", "seats_within"):
        if name in text:
            return name
    return "other"


@contextmanager
def _counting_hold() -> Iterator[None]:
    """Count the hold made inside (``scheduler_holds_*``): taken, or refused with the domain
    error's code. Every hold a person asks for passes here, whichever way it came (the API,
    the pages, a one-step booking); a move's new seats count as the move."""
    try:
        yield
    except DomainError as exc:
        metrics.hold_refused(exc.code)
        raise
    metrics.hold_taken()


class BookingService:
    """Booking operations over SQL and the Redis gate; HTTP-free.

    **E-mail opt-in.** A citizen's online booking of a service with ``requires_opt_in`` is
    written ``pending`` until ``opt_in_minutes`` from now (at the latest the appointment's
    start): its seats are taken in SQL and Redis like any booking's, it counts against every
    limit, and it owes one ``opt_in`` message with the link to confirm it. Following the link
    and pressing the button (:meth:`confirm_pending`) makes it ``confirmed`` and owes the
    confirmation (with the .ics) and the reminders; unconfirmed, the waiting-list job lets it
    lapse as it does an unanswered offer (``cancel(lapse=True)``: seats, claims and place given
    back, no message, no reminder ever). Such a booking needs a contact e-mail address.

    **Release delay.** Seats that a booking of a service with ``release_delay_minutes`` gives
    up (cancelled, lapsed or moved away by anyone but staff or an admin) are not offered again
    at once: a ``seat_holdbacks`` row keeps them counted in ``slots.booked`` (so Redis and every
    reconcile see them taken) until :meth:`release_holdbacks`, run by a job, gives them back.
    A trader who cancels a booking cannot hand its slot to a buyer waiting to click.
    """

    def __init__(self, core: Any, reservations: Reservations, *, unsafe_no_guard: bool = False):
        self.core = core
        self.reservations = reservations
        self.unsafe_no_guard = unsafe_no_guard
        self._take_place = TAKE_PLACE_UNGUARDED if unsafe_no_guard else TAKE_PLACE

    @property
    def host(self) -> str:
        """The host name in UIDs and Message-IDs (from the service's base URL)."""
        return urlsplit(self.core.base_url).hostname or "localhost"

    @property
    def catalog(self) -> Catalog:
        return self.core.catalog  # type: ignore[no-any-return]

    def now(self) -> datetime:
        return self.core.clock.now()  # type: ignore[no-any-return]

    # -- holds ------------------------------------------------------------------------------

    async def hold(
        self,
        service_ids: list[str],
        start: datetime,
        seats: int,
        channel: str,
        *,
        citizen: Person | None = None,
        series: bool = False,
        second_start: datetime | None = None,
    ) -> Hold:
        """Hold a visit; a campaign's service needs ``citizen`` (eligibility and window are
        checked). ``series``: the campaign's first dose with a second dose at ``second_start``,
        or else at the earliest start of the dose interval with room, in one hold."""
        now = self.now()
        with _counting_hold():
            visit = await self.plan(
                service_ids, start, seats, channel, now,
                citizen=citizen, series=series, second_start=second_start,
            )  # fmt: skip
            hold = await self.reservations.hold(
                visit, channel, now, self.core.hold_seconds, claimed=False
            )
        campaign = campaigns.campaign_of(self.catalog, service_ids)
        if visit.second_service_id is not None and campaign is not None and citizen is not None:
            # one live series hold per person: a new one replaces the previous (no hoarding)
            keys = attendee_keys(self.core.secret_key, citizen)
            await self.reservations.one_per_person(
                hold, [f"{campaign.id}:{k}" for k in keys], self.core.hold_seconds
            )
        return hold

    async def plan(
        self,
        service_ids: list[str],
        start: datetime,
        seats: int,
        channel: str,
        now: datetime,
        *,
        citizen: Person | None = None,
        series: bool = False,
        second_start: datetime | None = None,
        for_waitlist: bool = False,
    ) -> Visit:
        """The visit to hold, after the campaign's checks (window, eligibility, series, places,
        the waiting list first). ``for_waitlist``: the offer run holds for an entry of the
        campaign's waiting list (the list does not block it)."""
        catalog = self.catalog
        visit = plan_visit(catalog, service_ids, start, seats, now, channel=channel)
        campaign = campaigns.campaign_of(catalog, service_ids)
        if campaign is None:
            if series or second_start is not None:
                raise ValidationFailed(FieldError("series", "no_series"))
            return visit
        tz = catalog.locations[visit.location_id].tz
        campaigns.check_window(campaign, now, tz)
        first_day = visit.start.astimezone(tz).date()
        campaigns.check_person(campaign, citizen, first_day)
        if not series:
            if second_start is not None:
                raise ValidationFailed(FieldError("second_start", "series_only"))
            if campaign.first_service_id in service_ids and not for_waitlist:
                await self._check_campaign(campaign.id, None)
            return visit
        second_id = campaign.second_service_id
        if second_id is None or service_ids != [campaign.first_service_id]:
            raise ValidationFailed(FieldError("series", "no_series"))
        if seats != 1:
            raise ValidationFailed(FieldError("seats", "series_one_seat"))
        assert citizen is not None
        await self._check_campaign(campaign.id, citizen, places=not for_waitlist)
        return await self._with_second(visit, campaign, channel, now, second_start)

    async def _with_second(
        self,
        visit: Visit,
        campaign: CampaignInfo,
        channel: str,
        now: datetime,
        second_start: datetime | None,
    ) -> Visit:
        """The first-dose visit with its second dose: at ``second_start`` (inside the interval),
        or else the earliest start of the interval with room, in one hold."""
        catalog, seats = self.catalog, visit.seats
        second_id = campaign.second_service_id
        assert second_id is not None
        tz = catalog.locations[visit.location_id].tz
        if second_start is not None:
            moves.check_interval(campaign, visit.start, second_start, tz)
            second = plan_visit(catalog, [second_id], second_start, seats, now, channel=channel)
            return with_second_dose(visit, [second], second_id, exact=True)
        # the earliest second start with room, as ordered options of one group: the script
        # takes the first that still fits when it runs
        low, high = campaigns.second_dose_days(campaign, visit.start.astimezone(tz).date())
        _, free = await self.core.free_starts(second_id, low, high, now, channel=channel)
        candidates: list[Visit] = []
        options = 0  # the script gets at most MAX_SECOND_OPTIONS: plan no more visits
        for moment, _end, left in free:
            if left < seats:
                continue
            try:
                candidate = plan_visit(catalog, [second_id], moment, seats, now, channel=channel)
            except ValidationFailed:
                continue
            candidates.append(candidate)
            options += math.prod(len(group) for group in candidate.groups)
            if options >= MAX_SECOND_OPTIONS:
                break
        if not candidates:
            raise SlotFull()
        return with_second_dose(visit, candidates, second_id, exact=False)

    async def _check_campaign(
        self, campaign_id: str, citizen: Person | None, *, places: bool = True
    ) -> None:
        """The early refusals of a first dose, in one round trip: every place given out, people
        waiting on the list, or (with ``citizen``) this person holding a series already. The
        confirm's conditional update and person claims are what enforce them."""
        params: dict[str, Any] = {"b_campaign": campaign_id}
        statement = CAMPAIGN_STATE
        if citizen is not None:
            statement = CAMPAIGN_STATE_FOR_PERSON
            params["b_claim"] = series_claim(campaign_id)
            params["b_keys"] = attendee_keys(self.core.secret_key, citizen) or [""]
        # a plain connection and a statement built once: this runs for every hold of the rush
        async with self.core.engine.connect() as conn:
            row = (await conn.execute(statement, params)).one()
        if citizen is not None and row[2] is not None:
            raise LimitReached()
        if not places:
            return
        if row[1] is not None:
            raise WaitlistFirst()
        if row[0] <= 0:
            raise CampaignFull()

    def counted_campaign(self, service_ids: list[str]) -> str | None:
        """The campaign whose place a booking of these services takes (its first dose)."""
        for service_id in service_ids:
            service = self.catalog.services.get(service_id)
            campaign = self.catalog.campaigns.get(service.campaign_id or "") if service else None
            if campaign is not None and campaign.first_service_id == service_id:
                return campaign.id
        return None

    def _recheck(self, hold: Hold, request: BookingRequest) -> None:
        """At confirm: the campaign's window and the citizen's eligibility, again."""
        payload = hold.payload
        campaign = campaigns.campaign_of(self.catalog, payload.service_ids)
        if campaign is None:
            return
        tz = self.catalog.locations[payload.location_id].tz
        campaigns.check_window(campaign, self.now(), tz)
        start = datetime.fromtimestamp(payload.start_ms / 1000, UTC)
        campaigns.check_person(campaign, request.citizen, start.astimezone(tz).date())

    async def release(self, hold_id: str) -> None:
        if not await self.reservations.release(hold_id):
            raise HoldExpired()

    # -- create -----------------------------------------------------------------------------

    async def confirm(
        self,
        hold_id: str,
        request: BookingRequest,
        actor: Actor,
        key: idem.IdempotencyKey | None,
        render: Render,
    ) -> tuple[BookingView | None, idem.Replay | None]:
        """Confirm a hold as a booking. Returns the booking, or the replay of an earlier answer
        to the same Idempotency-Key."""
        validate_request(request)
        if key is not None and (replay := await self._replay(key)) is not None:
            return None, replay
        hold = await self.reservations.claim(hold_id, self.now())
        try:
            if hold.payload.channel != request.channel:
                raise ValidationFailed(FieldError("channel", "channel_mismatch"))
            self._recheck(hold, request)
            self.check_opt_in_contact(self._held_services(hold), request, actor)
        except BaseException:
            await self.reservations.unclaim(hold)
            raise
        return await self._commit_new(hold, request, actor, key, render)

    async def book(
        self,
        service_ids: list[str],
        start: datetime,
        seats: int,
        request: BookingRequest,
        actor: Actor,
        key: idem.IdempotencyKey | None,
        render: Render,
        *,
        series: bool = False,
        second_start: datetime | None = None,
    ) -> tuple[BookingView | None, idem.Replay | None]:
        """Hold and confirm in one step."""
        validate_request(request)
        self.check_opt_in_contact(service_ids, request, actor)
        if key is not None and (replay := await self._replay(key)) is not None:
            return None, replay
        now = self.now()
        with _counting_hold():
            visit = await self.plan(
                service_ids, start, seats, request.channel, now,
                citizen=request.citizen, series=series, second_start=second_start,
            )  # fmt: skip
            hold = await self.reservations.hold(
                visit, request.channel, now, self.core.hold_seconds, claimed=True
            )
        return await self._commit_new(hold, request, actor, key, render)

    def _held_services(self, hold: Hold) -> list[str]:
        payload = hold.payload
        second = [payload.second_service_id] if payload.second_service_id else []
        return [*payload.service_ids, *second]

    def opt_in_minutes(
        self, service_ids: list[str], request: BookingRequest, actor: Actor
    ) -> int | None:
        """How long this booking would wait for its e-mail confirmation; None: it needs none
        (no service asks for it, or not a citizen's own online booking)."""
        if not citizen_online(request, actor):
            return None
        minutes = [
            service.opt_in_minutes
            for service_id in service_ids
            if (service := self.catalog.services.get(service_id)) is not None
            and service.requires_opt_in
        ]
        return min(minutes) if minutes else None

    def check_opt_in_contact(
        self, service_ids: list[str], request: BookingRequest, actor: Actor
    ) -> None:
        """A booking that waits for its e-mail confirmation needs an address to send it to."""
        minutes = self.opt_in_minutes(service_ids, request, actor)
        if minutes is not None and not (request.contact or request.citizen).email:
            where = "contact.email" if request.contact else "citizen.email"
            raise ValidationFailed(FieldError(where, "email_for_opt_in", minutes=minutes))

    async def _replay(self, key: idem.IdempotencyKey) -> idem.Replay | None:
        async with self.core.sessions() as session:
            return await idem.lookup(session, key)

    async def _commit_new(
        self,
        hold: Hold,
        request: BookingRequest,
        actor: Actor,
        key: idem.IdempotencyKey | None,
        render: Render,
        offer: OfferTerms | None = None,
    ) -> tuple[BookingView | None, idem.Replay | None]:
        try:
            for attempt in range(4):
                try:
                    view = await self._insert_booking(
                        hold, request, actor, key, render, offer, read_contacts=attempt > 0
                    )
                    break
                except (IntegrityError, pgfast.UniqueViolation) as exc:
                    which = _constraint(exc)
                    if which == "reference" and attempt < 2:
                        continue
                    if which == "idempotency_records" and key is not None:
                        await self.reservations.unclaim(hold)
                        return None, await self._replay(key)
                    if which == "person_claims":
                        if attempt < 3 and citizen_online(request, actor):
                            # the contact's first ordinal was taken (the first attempt takes it
                            # without reading), or a concurrent booking of the same contact took
                            # the one this one picked (``limits``): read and pick again
                            continue
                        raise LimitReached() from None
                    if which == "hold_key":
                        raise HoldExpired() from None
                    if which == "seats_within":
                        raise SlotFull() from None
                    raise
        except BaseException:
            await self.reservations.unclaim(hold)
            raise
        await self.reservations.confirm(hold, self.now())
        metrics.booking("created", request.channel)
        return view, None

    async def _insert_booking(
        self,
        hold: Hold,
        request: BookingRequest,
        actor: Actor,
        key: idem.IdempotencyKey | None,
        render: Render,
        offer: OfferTerms | None = None,
        *,
        read_contacts: bool = True,
    ) -> BookingView:
        """Write the booking of a claimed hold. ``read_contacts=False``: take the first ordinal
        of every contact limit without reading the claims (most contacts have no other active
        booking; when one has, the claim's key refuses it and the caller tries again with
        ``read_contacts``) — one round trip less on the rush's path."""
        catalog = self.catalog
        now = self.now()
        payload = hold.payload
        planned = appointments_of(catalog, payload, hold.cells)
        # the booking's start and end are its first visit's (messages, feeds); the appointments
        # carry every visit
        start, end = planned[0].start, planned[0].end
        all_service_ids = [s for a in planned for s in a.service_ids]
        services = [catalog.services[s] for s in payload.service_ids]
        citizen, contact = request.citizen, request.contact
        who = contact or citizen
        secret = self.core.secret_key
        person_keys = codes.person_keys(
            secret, email=who.email, phone=who.phone, name=citizen.name,
            birth_date=citizen.birth_date,
        )  # fmt: skip
        # limits count the attendee: their own identifiers, never a contact person's (a
        # daughter books both parents' series with her address)
        claim_keys = attendee_keys(secret, citizen)
        booking_id = uuid.uuid4().hex
        reference = codes.new_reference()
        pending_until = offer.until if offer is not None else None
        opt_in = None if offer is not None else self.opt_in_minutes(all_service_ids, request, actor)
        if opt_in is not None:
            pending_until = min(now + timedelta(minutes=opt_in), start)
        status = m.BookingStatus.CONFIRMED if pending_until is None else m.BookingStatus.PENDING
        counted = self.counted_campaign(list(payload.service_ids))
        contact_claims: list[tuple[str, str]] = []
        if citizen_online(request, actor):
            keys = limits.contact_keys(
                secret, catalog.locations[payload.location_id], who.email, who.phone
            )
            if read_contacts:
                contact_claims = await limits.pick(self.core.engine, keys, now)
            else:
                contact_claims = limits.first_claims(keys)
        booking_row = dict(
            id=booking_id,
            reference=reference,
            status=status.value,
            channel=request.channel,
            location_id=payload.location_id,
            starts_at=start,
            ends_at=end,
            created_at=now,
            updated_at=now,
            created_by=actor.key_id,
            **person_columns(request),
            person_keys=person_keys,
            name_key=(
                codes.name_key(secret, citizen.name, citizen.birth_date)
                if citizen.birth_date
                else None
            ),
            language=request.language,
            consent=request.consent,
            token_version=1,
            sequence=0,
            hold_key=codes.stored_digest(hold.token),
            pending_until=pending_until,
            erased_at=None,
        )
        appointment_rows = [
            dict(
                booking_id=booking_id,
                position=position,
                service_ids=list(a.service_ids),
                starts_at=a.start,
                ends_at=a.end,
                calendar_ids=a.calendar_ids,
            )
            for position, a in enumerate(planned)
        ]
        details: dict[str, Any] = {"channel": request.channel, "services": all_service_ids}
        if payload.second_service_id is not None:
            details["series"] = True
        if opt_in is not None:
            details["opt_in"] = True
        audit_row = dict(
            at=now,
            actor=actor.name,
            action="waitlist.offer" if offer is not None else "booking.create",
            booking_id=booking_id,
            request_id=actor.request_id,
            details=details,
        )
        view = BookingView(
            id=booking_id,
            reference=reference,
            status=status.value,
            channel=request.channel,
            location_id=payload.location_id,
            start=start,
            end=end,
            appointments=[
                AppointmentView(a.service_ids, a.start, a.end, a.calendar_ids) for a in planned
            ],
            citizen=citizen,
            contact=contact,
            language=request.language,
            token_version=1,
            sequence=0,
            created_at=now,
            updated_at=now,
            pending_until=pending_until,
        )
        body = render(view) if key is not None else None
        hours = tuple(sorted({h for s in services for h in s.reminder_hours}))
        messages = outbox.for_new_booking(booking_id, start, hours, now, self.host)
        series_of = None
        if payload.second_service_id is not None:
            # a series: reminders before the second visit as well; one series per person
            second = catalog.services[payload.second_service_id]
            messages += outbox.reminders(
                booking_id, planned[1].start, second.reminder_hours, now, self.host
            )
            series_of = second.campaign_id
        if offer is not None:
            # the offer, answered by accepting (then the confirmation and reminders follow)
            messages = [outbox.waitlist_offer(booking_id, now, self.host)]
        elif opt_in is not None:
            # the link to confirm; the confirmation and reminders follow the confirmation
            messages = [outbox.opt_in(booking_id, now, self.host)]
        simple_limits = all(s.max_active_per_person == 1 for s in services)
        if (
            self.core.engine.dialect.name == "postgresql"
            and simple_limits
            and not series_of
            and counted is None
            and pending_until is None
        ):
            # (the one-statement path writes one appointment: a series takes the generic one;
            # nor does it write ``pending_until``)
            claims = [(sid, pk) for sid in payload.service_ids for pk in claim_keys]
            claims += contact_claims
            await pgfast.insert_booking(
                self.core.engine, booking_row, appointment_rows[0], audit_row, hold.cells, claims,
                messages, (key, body, now) if key is not None and body is not None else None,
                guarded=not self.unsafe_no_guard,
            )  # fmt: skip
            return view
        async with self.core.engine.begin() as session:
            slot_ids = await self._take_seats(session, hold.cells)
            await session.execute(INSERT_BOOKING, booking_row)
            await self._claim_person(session, booking_id, all_service_ids, claim_keys)
            if contact_claims:
                await session.execute(
                    INSERT_CLAIM,
                    [
                        {"service_id": sid, "person_key": pk, "n": 1, "booking_id": booking_id}
                        for sid, pk in contact_claims
                    ],
                )
            if series_of is not None:
                await session.execute(
                    INSERT_CLAIM,
                    [
                        {"service_id": series_claim(series_of), "person_key": pk, "n": 1,
                         "booking_id": booking_id}
                        for pk in claim_keys
                    ],
                )  # fmt: skip
            await session.execute(INSERT_APPOINTMENT, appointment_rows)
            await session.execute(
                INSERT_BOOKING_SLOT,
                [{"booking_id": booking_id, "slot_id": sid, "seats": s} for sid, s in slot_ids],
            )
            await session.execute(INSERT_AUDIT, audit_row)
            await session.execute(outbox.INSERT, messages)
            if offer is not None:
                claimed = await session.execute(
                    update(m.WaitlistEntry)
                    .where(
                        m.WaitlistEntry.id == offer.entry_id,
                        m.WaitlistEntry.status == m.WaitlistStatus.OFFERING.value,
                        m.WaitlistEntry.claim_token == offer.claim_token,
                    )
                    .values(
                        status=m.WaitlistStatus.OFFERED.value, booking_id=booking_id,
                        offer_until=offer.until, claim_token=None, claim_until=None,
                        updated_at=now,
                    )
                    .returning(m.WaitlistEntry.id)
                )  # fmt: skip
                if claimed.first() is None:
                    raise OfferClaimLost()
            if key is not None and body is not None:
                await idem.store(session, key, 201, body, now)
            # the campaign's place last: its row is every first dose's hot spot, locked from
            # here to the commit only
            if (
                counted is not None
                and not (await session.execute(self._take_place, {"b_campaign": counted})).first()
            ):
                raise CampaignFull()
        return view

    async def _take_seats(
        self, session: AsyncConnection | AsyncSession, cells: list[CellRef]
    ) -> list[tuple[int, int]]:
        """The conditional update: every cell gets its seats or the transaction fails."""
        groups: dict[tuple[str, date, int], list[int]] = defaultdict(list)
        for c in cells:
            groups[(c.calendar_id, c.day, c.seats)].append(c.cell)
        taken: list[tuple[int, int]] = []
        statement = TAKE_SEATS_UNGUARDED if self.unsafe_no_guard else TAKE_SEATS
        for (calendar_id, day, seats), cell_numbers in sorted(groups.items()):
            result = await session.execute(
                statement,
                {"b_calendar": calendar_id, "b_day": day, "b_cells": sorted(cell_numbers),
                 "b_seats": seats},
            )  # fmt: skip
            ids = list(result.scalars())
            if len(ids) != len(cell_numbers):
                raise SlotFull()
            taken += [(slot_id, seats) for slot_id in ids]
        return taken

    async def _claim_person(
        self,
        session: AsyncConnection | AsyncSession,
        booking_id: str,
        service_ids: list[str],
        keys: list[str],
    ) -> None:
        """Per-person limit: one claim row per service, identifier and ordinal; the primary key
        makes a concurrent second claim fail."""
        rows = []
        for service_id in service_ids:
            limit = self.catalog.services[service_id].max_active_per_person
            for person_key in keys:
                n = 1
                if limit > 1:
                    used = set(
                        await session.scalars(
                            select(m.PersonClaim.n).where(
                                m.PersonClaim.service_id == service_id,
                                m.PersonClaim.person_key == person_key,
                            )
                        )
                    )
                    free = [i for i in range(1, limit + 1) if i not in used]
                    if not free:
                        raise LimitReached()
                    n = free[0]
                rows.append(
                    {"service_id": service_id, "person_key": person_key, "n": n,
                     "booking_id": booking_id}
                )  # fmt: skip
        if rows:
            await session.execute(INSERT_CLAIM, rows)

    async def _audit(
        self,
        session: AsyncConnection | AsyncSession,
        actor: Actor,
        action: str,
        booking_id: str | None,
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        await session.execute(
            INSERT_AUDIT,
            dict(
                at=now,
                actor=actor.name,
                action=action,
                booking_id=booking_id,
                request_id=actor.request_id,
                details=details or {},
            ),
        )

    # -- read -------------------------------------------------------------------------------

    async def find(self, reference: str) -> m.Booking:
        code = codes.parse_reference(reference)
        if code is None:
            raise NotFound("booking", reference)
        async with self.core.sessions() as session:
            booking = await session.scalar(
                select(m.Booking)
                .where(m.Booking.reference == code)
                .options(selectinload(m.Booking.appointments))
            )
        if booking is None:
            raise NotFound("booking", reference)
        return booking

    def token_for(self, booking: m.Booking | BookingView) -> str:
        return codes.manage_token(self.core.secret_key, booking.id, booking.token_version)

    def token_matches(self, booking: m.Booking, presented: str) -> bool:
        return codes.token_matches(
            self.core.secret_key, booking.id, booking.token_version, presented
        )

    def opt_in_token_for(self, booking: m.Booking | BookingView) -> str:
        """The token of the opt-in link (only in the message to the contact address)."""
        return codes.opt_in_token(self.core.secret_key, booking.id, booking.token_version)

    def opt_in_matches(self, booking: m.Booking, presented: str) -> bool:
        return codes.opt_in_matches(
            self.core.secret_key, booking.id, booking.token_version, presented
        )

    async def is_offer(self, booking_id: str) -> bool:
        """A booking made for a waiting-list entry (a pending one is an offer, not an opt-in)."""
        async with self.core.sessions() as session:
            entry = await session.scalar(
                select(m.WaitlistEntry.id).where(m.WaitlistEntry.booking_id == booking_id)
            )
        return entry is not None

    # -- change -----------------------------------------------------------------------------

    async def cancel(
        self,
        booking_id: str,
        actor: Actor,
        *,
        only_inside: Inside | None = None,
        lapse: bool = False,
    ) -> m.Booking:
        """Cancel a booking: its seats (at once, or after the service's release delay), person
        claims and campaign place are given back. A waiting-list offer cancelled by its person
        is declined (the entry ``withdrawn``). ``lapse``: the job lets an unanswered offer or
        an unconfirmed opt-in lapse — only a ``pending`` booking past its deadline (else
        :class:`AlreadyChanged`), no cancellation message, an offer's entry ``expired``."""
        now = self.now()
        async with self.core.sessions() as session, session.begin():
            booking = await self._locked(session, booking_id)
            if lapse and not (
                booking.status == m.BookingStatus.PENDING.value
                and booking.pending_until is not None
                and booking.pending_until <= now
            ):
                raise AlreadyChanged()
            if booking.status not in ACTIVE:
                if only_inside is not None:
                    raise AlreadyChanged()
                return booking
            await self._check_inside(session, booking_id, only_inside)
            freed = await self._free_seats(
                session, booking_id, hold_back=self._holdback(booking, actor, now)
            )
            await session.execute(
                delete(m.PersonClaim).where(m.PersonClaim.booking_id == booking_id)
            )
            counted = self.counted_campaign(
                [s for a in booking.appointments for s in a.service_ids]
            )
            if counted is not None:
                await session.execute(GIVE_PLACE, {"b_campaign": counted})
            offered = await self._end_offer(session, booking_id, lapse, now)
            booking.status = m.BookingStatus.CANCELLED.value
            booking.sequence += 1
            booking.updated_at = now
            action = "booking.cancel"
            if lapse:
                action = "waitlist.lapse" if offered else "booking.lapse"
            await self._audit(session, actor, action, booking_id, now)
            if lapse:
                await outbox.cancel_pending(session, booking_id)
            else:
                await outbox.on_cancel(session, booking_id, now, self.host)
        online = booking.channel == m.Channel.ONLINE.value
        await self.reservations.free(booking.location_id, freed, online=online)
        metrics.booking("lapsed" if lapse else "cancelled", booking.channel)
        return booking

    async def _end_offer(
        self, session: AsyncSession, booking_id: str, lapse: bool, now: datetime
    ) -> bool:
        """The waiting-list entry an open offer of this booking belongs to leaves the list;
        False when the booking was no open offer."""
        ended = await session.execute(
            update(m.WaitlistEntry)
            .where(
                m.WaitlistEntry.booking_id == booking_id,
                m.WaitlistEntry.status == m.WaitlistStatus.OFFERED.value,
            )
            .values(
                status=(m.WaitlistStatus.EXPIRED if lapse else m.WaitlistStatus.WITHDRAWN).value,
                updated_at=now,
            )
            .returning(m.WaitlistEntry.id)
        )
        ids = list(ended.scalars())
        if ids:
            await session.execute(delete(m.WaitlistKey).where(m.WaitlistKey.entry_id.in_(ids)))
        return bool(ids)

    # -- the e-mail opt-in ------------------------------------------------------------------

    async def confirm_pending(
        self, booking_id: str, actor: Actor, *, proven: bool = False
    ) -> m.Booking:
        """Confirm a pending booking: its e-mail opt-in, before its deadline (else
        :class:`OptInExpired`); a waiting-list offer is accepted (``Waitlist.accept``). A
        booking confirmed already is returned as it is (the link followed twice).

        ``proven``: the caller presented the opt-in link's token, which only the message to the
        contact address carries. A citizen without it (with the manage token the booking
        answer gave) cannot confirm an opt-in — that would prove no address (:class:`Forbidden`);
        an agent or admin key may (they spoke to the person)."""
        now = self.now()
        if await self.is_offer(booking_id):
            return await self.core.waitlist.accept(booking_id, actor)  # type: ignore[no-any-return]
        async with self.core.sessions() as session, session.begin():
            booking = await self._locked(session, booking_id)
            if booking.status in (
                m.BookingStatus.CONFIRMED.value,
                m.BookingStatus.CHECKED_IN.value,
            ):
                return booking
            if actor.is_citizen and not proven:
                raise Forbidden()
            if (
                booking.status != m.BookingStatus.PENDING.value
                or booking.pending_until is None
                or now >= booking.pending_until
            ):
                raise OptInExpired()
            booking.status = m.BookingStatus.CONFIRMED.value
            booking.pending_until = None
            booking.updated_at = now
            await session.execute(outbox.INSERT, self.confirmation_messages(booking, now))
            await self._audit(session, actor, "booking.opt_in", booking_id, now)
        metrics.booking("confirmed", booking.channel)
        return booking

    def confirmation_messages(self, booking: m.Booking, now: datetime) -> list[dict[str, Any]]:
        """What a booking confirmed after waiting (opt-in, accepted offer) owes: the
        confirmation now, and the reminders before each of its visits."""
        catalog = self.catalog
        messages: list[dict[str, Any]] = []
        for position, appointment in enumerate(booking.appointments):
            hours = tuple(sorted({
                h
                for s in appointment.service_ids
                if s in catalog.services
                for h in catalog.services[s].reminder_hours
            }))  # fmt: skip
            if position == 0:
                messages += outbox.for_new_booking(
                    booking.id, appointment.starts_at, hours, now, self.host
                )
            else:
                messages += outbox.reminders(
                    booking.id, appointment.starts_at, hours, now, self.host
                )
        return messages

    # -- the release delay ------------------------------------------------------------------

    def _holdback(self, booking: m.Booking, actor: Actor, now: datetime) -> HoldBack | None:
        """Whether the seats this booking gives up now wait before they are offered again:
        its services' longest release delay, unless staff or an admin act (they decide what
        their calendar offers; a closed period never offers its seats again anyway)."""
        if actor.role in (m.Role.STAFF.value, m.Role.ADMIN.value):
            return None
        minutes = max(
            (
                service.release_delay_minutes
                for a in booking.appointments
                for service_id in a.service_ids
                if (service := self.catalog.services.get(service_id)) is not None
            ),
            default=0,
        )
        if minutes <= 0:
            return None
        online = booking.channel == m.Channel.ONLINE.value
        return HoldBack(booking.location_id, online, now + timedelta(minutes=minutes))

    async def release_holdbacks(self, limit: int = 500) -> int:
        """The job: give back held-back seats whose delay has passed, in SQL (one transaction
        that deletes the holdback rows it releases: with several job processes each row is
        released by one of them) and then in Redis. A seat in a period closed meanwhile
        leaves with its capacity, as in a cancellation. Returns the seats released."""
        now = self.now()
        H = m.SeatHoldback
        due = (
            select(H.id)
            .where(H.release_at <= now)
            .order_by(H.release_at, H.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        freed: dict[tuple[str, bool], list[CellRef]] = defaultdict(list)
        released = 0
        async with self.core.sessions() as session, session.begin():
            rows = list(
                await session.execute(
                    delete(H)
                    .where(H.id.in_(due))
                    .returning(H.slot_id, H.seats, H.location_id, H.online)
                    .execution_options(synchronize_session=False)
                )
            )
            per_slot: dict[tuple[int, str, bool], int] = defaultdict(int)
            for slot_id, seats, location_id, online in rows:
                per_slot[(slot_id, location_id, online)] += seats
            for (slot_id, location_id, online), seats in sorted(per_slot.items()):
                result = await session.execute(
                    update(m.Slot)
                    .where(m.Slot.id == slot_id)
                    .values(
                        booked=m.Slot.booked - seats,
                        capacity=case((_CLOSED, m.Slot.booked - seats), else_=m.Slot.capacity),
                    )
                    .returning(m.Slot.calendar_id, m.Slot.day, m.Slot.cell, m.Slot.capacity,
                               m.Slot.booked)
                    .execution_options(synchronize_session=False)
                )  # fmt: skip
                released += seats
                freed[(location_id, online)] += [
                    CellRef(c, d, n, seats) for c, d, n, cap, booked in result if cap > booked
                ]
        for (location_id, online), cells in freed.items():
            await self.reservations.free(location_id, cells, online=online)
        if released:
            log.info("held-back seats released", extra={"seats": released})
        return released

    async def reschedule(
        self,
        booking_id: str,
        hold_id: str,
        actor: Actor,
        *,
        only_inside: Inside | None = None,
    ) -> m.Booking:
        """Move a booking to the visit of a new hold. The new seats are taken before the old are
        freed, in one transaction: a failed move keeps the old booking. With ``only_inside``,
        a booking that no longer holds seats there is left alone: :class:`AlreadyChanged`."""
        hold = await self.reservations.claim(hold_id, self.now())
        return await self._apply_move(booking_id, hold, actor, only_inside)

    async def move(
        self,
        booking_id: str,
        actor: Actor,
        channel: str,
        *,
        start: datetime | None = None,
        second_start: datetime | None = None,
        only_inside: Inside | None = None,
    ) -> m.Booking:
        """Move a booking in one step: hold the new visit (see ``moves`` for a series) and move
        there, or nothing changes."""
        now = self.now()
        async with self.core.sessions() as session:
            booking = await session.scalar(
                select(m.Booking)
                .where(m.Booking.id == booking_id)
                .options(selectinload(m.Booking.appointments))
            )
        if booking is None:
            raise NotFound("booking", booking_id)
        if booking.status not in ACTIVE:
            raise ValidationFailed(FieldError("reference", "not_active"))
        visit = await self._plan_move(booking, channel, now, start, second_start)
        hold = await self.reservations.hold(
            visit, channel, now, self.core.hold_seconds, claimed=True
        )
        return await self._apply_move(booking_id, hold, actor, only_inside)

    async def _plan_move(
        self,
        booking: m.Booking,
        channel: str,
        now: datetime,
        start: datetime | None,
        second_start: datetime | None,
    ) -> Visit:
        catalog = self.catalog
        current = moves.ordered(booking)
        campaign = moves.series_campaign(catalog, booking)
        if campaign is None:
            if start is None:
                raise ValidationFailed(FieldError("start", "required"))
            if second_start is not None:
                raise ValidationFailed(FieldError("second_start", "series_only"))
            seats = await self.seats_of(booking)
            return plan_visit(
                catalog, list(current[0].service_ids), start, seats, now, channel=channel
            )
        tz = catalog.locations[booking.location_id].tz
        second_ids = list(current[1].service_ids)
        if start is None:
            if second_start is None:
                raise ValidationFailed(FieldError("start", "required"))
            moves.check_interval(campaign, current[0].starts_at, second_start, tz)
            return plan_visit(catalog, second_ids, second_start, 1, now, channel=channel)
        first = plan_visit(catalog, list(current[0].service_ids), start, 1, now, channel=channel)
        low, high = campaigns.second_dose_days(campaign, first.start.astimezone(tz).date())
        if second_start is None and low <= current[1].starts_at.astimezone(tz).date() <= high:
            return first  # the second dose stays where it is
        return await self._with_second(first, campaign, channel, now, second_start)

    async def seats_of(self, booking: m.Booking) -> int:
        """How many people the booking is for: its seats on a slot over what one person takes."""
        async with self.core.sessions() as session:
            rows = list(
                await session.execute(
                    select(m.Slot.calendar_id, m.BookingSlot.seats)
                    .join(m.Slot, m.Slot.id == m.BookingSlot.slot_id)
                    .where(m.BookingSlot.booking_id == booking.id)
                )
            )
        services = (
            self.catalog.services.get(i) for a in booking.appointments for i in a.service_ids
        )
        per_person = {
            c: pool.seats
            for s in services
            if s is not None
            for pool in s.pools
            for c in pool.calendar_ids
        }
        counts = [seats // max(per_person.get(c, 1), 1) for c, seats in rows]
        return max(min(counts, default=1), 1)

    async def _apply_move(
        self, booking_id: str, hold: Hold, actor: Actor, only_inside: Inside | None
    ) -> m.Booking:
        try:
            booking, freed = await self._move(booking_id, hold, actor, only_inside)
        except BaseException:
            await self.reservations.unclaim(hold)
            raise
        await self.reservations.confirm(hold, self.now())
        # an online booking gives its old days' online budget back; its new seats took budget
        # when the hold was online (moved by an agent: not, until the next reconcile)
        online = booking.channel == m.Channel.ONLINE.value
        await self.reservations.free(booking.location_id, freed, online=online)
        metrics.booking("rescheduled", booking.channel)
        return booking

    async def _move(
        self,
        booking_id: str,
        hold: Hold,
        actor: Actor,
        only_inside: Inside | None = None,
    ) -> tuple[m.Booking, list[CellRef]]:
        now = self.now()
        catalog = self.catalog
        planned = appointments_of(catalog, hold.payload, hold.cells)
        async with self.core.sessions() as session, session.begin():
            booking = await self._locked(session, booking_id)
            if booking.status not in ACTIVE:
                raise ValidationFailed(FieldError("reference", "not_active"))
            await self._check_inside(session, booking_id, only_inside)
            current = moves.ordered(booking)
            which = moves.replaced(current, planned)
            after = [(a.starts_at, a.ends_at) for a in current]
            for index, visit in zip(which, planned, strict=True):
                after[index] = (visit.start, visit.end)
            moves.check_moved(catalog, booking, after, first_moved=0 in which)
            # the seats of the replaced appointments (a series' appointments are on other days)
            old_slots = list(
                await session.execute(
                    select(m.BookingSlot.slot_id, m.BookingSlot.seats)
                    .join(m.Slot, m.Slot.id == m.BookingSlot.slot_id)
                    .where(m.BookingSlot.booking_id == booking_id)
                    .where(
                        or_(*(
                            (m.Slot.starts_at >= current[i].starts_at)
                            & (m.Slot.starts_at < current[i].ends_at)
                            for i in which
                        ))
                    )
                )
            )  # fmt: skip
            try:
                taken = await self._take_seats(session, hold.cells)
            except IntegrityError:
                raise SlotFull() from None
            freed = await self._free_seats(
                session, booking_id, old_slots, hold_back=self._holdback(booking, actor, now)
            )
            await session.execute(
                delete(m.BookingSlot).where(
                    m.BookingSlot.booking_id == booking_id,
                    m.BookingSlot.slot_id.in_([row.slot_id for row in old_slots]),
                )
            )
            await session.execute(
                insert(m.BookingSlot),
                [{"booking_id": booking_id, "slot_id": sid, "seats": s} for sid, s in taken],
            )
            old = [a.starts_at.isoformat() for a in current]
            for index, visit in zip(which, planned, strict=True):
                appointment = current[index]
                appointment.starts_at, appointment.ends_at = visit.start, visit.end
                appointment.calendar_ids = visit.calendar_ids
            old_start = booking.starts_at
            booking.starts_at, booking.ends_at = current[0].starts_at, current[0].ends_at
            booking.sequence += 1
            booking.updated_at = now
            details: dict[str, Any] = {
                "from": old_start.isoformat(),
                "to": booking.starts_at.isoformat(),
            }
            if len(current) > 1:
                details["appointments"] = {
                    "from": old,
                    "to": [a.starts_at.isoformat() for a in current],
                }
            await self._audit(session, actor, "booking.reschedule", booking_id, now, details)
            visits = [
                (a.starts_at, tuple(sorted({
                    h for s in a.service_ids if s in catalog.services
                    for h in catalog.services[s].reminder_hours
                })))
                for a in current
            ]  # fmt: skip
            await outbox.on_move(
                session, booking_id, old_start if 0 in which else None, visits, now, self.host
            )
        return booking, freed

    async def _locked(self, session: AsyncSession, booking_id: str) -> m.Booking:
        booking = await session.scalar(
            select(m.Booking)
            .where(m.Booking.id == booking_id)
            .options(selectinload(m.Booking.appointments))
            .with_for_update()
        )
        if booking is None:
            raise NotFound("booking", booking_id)
        return booking

    async def _free_seats(
        self,
        session: AsyncSession,
        booking_id: str,
        rows: list[Any] | None = None,
        *,
        hold_back: HoldBack | None = None,
    ) -> list[CellRef]:
        """Give a booking's seats back in SQL; returns the cells for the Redis side.

        A seat freed in a slot that is closed now (a closure of its calendar or location covers
        it) leaves with its capacity (``capacity = booked`` after the update) and is not
        returned: a closed period never offers a seat again, whoever cancels or moves.
        ``hold_back``: the seats stay taken (``seat_holdbacks``) until the release job gives
        them back; nothing is returned for Redis now."""
        if rows is None:
            rows = list(
                await session.execute(
                    select(m.BookingSlot.slot_id, m.BookingSlot.seats).where(
                        m.BookingSlot.booking_id == booking_id
                    )
                )
            )
        if hold_back is not None:
            if rows:
                await session.execute(
                    insert(m.SeatHoldback),
                    [
                        {"slot_id": slot_id, "seats": seats, "location_id": hold_back.location_id,
                         "online": hold_back.online, "release_at": hold_back.release_at}
                        for slot_id, seats in rows
                    ],
                )  # fmt: skip
            return []
        by_seats: dict[int, list[int]] = defaultdict(list)
        for slot_id, seats in rows:
            by_seats[seats].append(slot_id)
        cells: list[CellRef] = []
        for seats, ids in sorted(by_seats.items()):
            result = await session.execute(
                update(m.Slot)
                .where(m.Slot.id.in_(sorted(ids)))
                .values(
                    booked=m.Slot.booked - seats,
                    capacity=case((_CLOSED, m.Slot.booked - seats), else_=m.Slot.capacity),
                )
                .returning(m.Slot.calendar_id, m.Slot.day, m.Slot.cell, m.Slot.capacity,
                           m.Slot.booked)
            )  # fmt: skip
            # open: capacity > booked after the update (it was <= before, minus seats >= 1)
            cells += [CellRef(c, d, n, seats) for c, d, n, cap, booked in result if cap > booked]
        return cells

    async def _check_inside(
        self, session: AsyncSession, booking_id: str, inside: Inside | None
    ) -> None:
        if inside is None:
            return
        found = await session.scalar(
            select(m.BookingSlot.slot_id)
            .join(m.Slot, m.Slot.id == m.BookingSlot.slot_id)
            .where(
                m.BookingSlot.booking_id == booking_id,
                m.Slot.calendar_id == inside.calendar_id,
                m.Slot.starts_at < inside.end,
                m.Slot.ends_at > inside.start,
            )
            .limit(1)
        )
        if found is None:
            raise AlreadyChanged()
