"""A campaign's waiting list: joining, offers driven by the scheduled job, accepting, lapsing.

- **Join**: anyone (an agent's key makes the entry ``phone``) joins with the data a booking needs;
  eligibility and the window are checked as for a hold (the age on the day of joining), and a
  person is on a campaign's list once (``waitlist_keys``, one row per identifier, primary key)
  and not at all while they hold a series of it (:class:`LimitReached`). Position = order of
  ``id`` among those still waiting.
- **Offer** (:meth:`Waitlist.offer_next`, every few seconds): per campaign with people waiting
  and places left, the first waiting entry is claimed by a conditional update (``FOR UPDATE
  SKIP LOCKED`` on PostgreSQL; a lease, so an offer run that died gives it back), a series is
  held for it at the earliest first-dose start the phone channel sees (the phone contingent
  does not hold back the list), and booked as ``pending`` until the deadline — ``offer_hours``
  from now, at the latest an hour before the first appointment — in the same transaction that
  marks the entry ``offered`` (only while this run's claim holds) and queues the
  ``waitlist_offer`` message. Nobody is offered twice: the claim, the conditional update in the
  booking's transaction and the person's series claim each make sure of it.
- **Accept** (the person by the link's token, or an agent for a caller): only a ``pending``
  offer before its deadline (else :class:`OfferExpired`); the booking becomes ``confirmed`` and
  owes the confirmation and reminders.
- **Lapse** (:meth:`Waitlist.lapse_due`, same job): an offer past its deadline is cancelled
  without a message (seats, claims and the place freed, Redis given back), its entry
  ``expired``; the next run offers the freed series to the next person. A booking that waited
  for its e-mail opt-in in vain (``bookings``) lapses the same way, in the same run. An offer
  the person declines (cancels) ends the entry as ``withdrawn``.
- **Freed seats go to the list first**: while anyone waits, first-dose holds by others are
  :class:`WaitlistFirst` (see ``bookings``); only what the list cannot take is public again.
- **The person's view** (:meth:`Waitlist.entry`): status, place in line while waiting, channel,
  the offered or booked booking's reference. The person is authorized by the entry's token
  (``codes.waitlist_token``: derived, never stored, returned once when joining); ``offering``
  (an offer run's claim, seconds long) reads as ``waiting``.
- **Leave** (:meth:`Waitlist.leave`): a waiting entry ends as ``withdrawn``, its keys go (the
  person may join again), audit ``waitlist.leave``. An entry that ended already stays as it is
  (leaving twice is fine). While an offer is open the entry is not left: :class:`OfferPending`
  tells the person to accept or cancel the offered booking (cancelling it ends the entry as
  ``withdrawn`` too) — a pending booking is not cancelled as a side effect of another route.
  An offer run that had claimed the entry meanwhile loses its claim and books nothing.
- **Closing**: when a campaign's window has closed, entries still waiting end as ``withdrawn``
  (the job, via ``retention.end_closed_waitlists``); ``retention`` erases the personal data of
  ended entries after the retention period.
- **Agents' list** (:meth:`Waitlist.entries`): a campaign's entries in line order, a page at a
  time (``after`` an entry id), with the place in line of those waiting.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, selectinload

from scheduler import metrics
from scheduler.booking import campaigns, codes, outbox, retention
from scheduler.booking import models as m
from scheduler.booking.bookings import (
    Actor,
    BookingRequest,
    BookingService,
    OfferClaimLost,
    OfferTerms,
    Person,
    person_columns,
    series_claim,
    validate_request,
)
from scheduler.booking.catalog import CampaignInfo
from scheduler.booking.errors import (
    AlreadyChanged,
    CampaignFull,
    DomainError,
    FieldError,
    LimitReached,
    NotAnOffer,
    NotEligible,
    NotFound,
    OfferExpired,
    ReservationUnavailable,
    SlotFull,
    ValidationFailed,
    WindowClosed,
)

log = logging.getLogger("scheduler.waitlist")

W = m.WaitlistEntry
S = m.WaitlistStatus
SYSTEM = Actor(role="system")
OFFER_MARGIN = timedelta(hours=1)  # an offer ends at the latest this long before the visit
MIN_OFFER = timedelta(hours=1)  # and runs at least this long: earlier starts are not offered
CLAIM_SECONDS = 120  # an offer run's lease on the entry it serves
MAX_STARTS = 20  # first-dose starts one offer tries
MAX_OFFERS = 50  # offers per campaign and run
MAX_DAYS = 92
MAX_PAGE = 200  # entries per page of the agents' list
WAITING = (S.WAITING.value, S.OFFERING.value)  # still in line (an offer run's claim included)


class OfferPending(DomainError):
    """409 ``offer_pending``: the entry has an open offer; accept or cancel the offered
    booking (``reference``) instead of leaving the list."""

    code = "offer_pending"

    def __init__(self, reference: str) -> None:
        super().__init__(reference=reference)


@dataclass(frozen=True, slots=True)
class Joined:
    entry_id: int
    position: int
    status: str
    channel: str


@dataclass(frozen=True, slots=True)
class EntryView:
    """An entry as its person and the agents see it (personal fields None once erased)."""

    entry_id: int
    campaign_id: str
    service_id: str
    status: str  # ``offering`` reads as ``waiting``
    position: int | None  # place in line while waiting, else None
    channel: str
    created_at: datetime
    language: str
    name: str | None
    contact_name: str | None
    email: str | None
    phone: str | None
    reference: str | None  # the offered or booked booking
    respond_by: datetime | None  # an open offer's deadline


@dataclass(slots=True)
class OfferReport:
    offered: int = 0
    lapsed: int = 0
    withdrawn: int = 0
    closed: int = 0  # entries whose campaign's window closed while they waited


@dataclass(frozen=True, slots=True)
class Callback:
    """An open offer to a person without e-mail: the agents phone them."""

    entry_id: int
    booking: m.Booking
    name: str
    phone: str | None
    contact_name: str | None
    language: str
    deadline: datetime


def _blank() -> bytes:
    return b""


def _view(entry: W, reference: str | None, position: int | None) -> EntryView:
    status = S.WAITING.value if entry.status == S.OFFERING.value else entry.status
    return EntryView(
        entry_id=entry.id,
        campaign_id=entry.campaign_id,
        service_id=entry.service_id,
        status=status,
        position=position,
        channel=entry.channel,
        created_at=entry.created_at,
        language=entry.language,
        name=entry.attendee_name,
        contact_name=entry.contact_name,
        email=entry.contact_email,
        phone=entry.contact_phone,
        reference=codes.format_reference(reference) if reference else None,
        respond_by=entry.offer_until if entry.status == S.OFFERED.value else None,
    )


class Waitlist:
    def __init__(self, core: Any, bookings: BookingService, *, offer_hours: int = 24) -> None:
        self.core = core
        self.bookings = bookings
        self.offer = timedelta(hours=offer_hours)

    def now(self) -> datetime:
        return self.core.clock.now()  # type: ignore[no-any-return]

    def token_for(self, entry_id: int) -> str:
        return codes.waitlist_token(self.core.secret_key, entry_id)

    def token_matches(self, entry_id: int, presented: str) -> bool:
        return codes.waitlist_token_matches(self.core.secret_key, entry_id, presented)

    # -- join -------------------------------------------------------------------------------

    async def join(self, service_id: str, request: BookingRequest, actor: Actor) -> Joined:
        validate_request(request)
        catalog = self.core.catalog
        service = self.core.service(service_id)
        campaign = catalog.campaigns.get(service.campaign_id or "")
        if (
            campaign is None
            or campaign.first_service_id != service_id
            or campaign.second_service_id is None
        ):
            raise ValidationFailed(FieldError("service_id", "no_waitlist"))
        now = self.now()
        tz = catalog.locations[campaign.location_id].tz
        campaigns.check_window(campaign, now, tz)
        campaigns.check_person(campaign, request.citizen, now.astimezone(tz).date())
        citizen, contact = request.citizen, request.contact
        who = contact or citizen
        keys = codes.person_keys(
            self.core.secret_key, email=who.email, phone=who.phone, name=citizen.name,
            birth_date=citizen.birth_date,
        )  # fmt: skip
        try:
            async with self.core.sessions() as session, session.begin():
                has_series = await session.scalar(
                    select(m.PersonClaim.booking_id)
                    .where(
                        m.PersonClaim.service_id == series_claim(campaign.id),
                        m.PersonClaim.person_key.in_(keys),
                    )
                    .limit(1)
                )
                if has_series is not None:
                    raise LimitReached()
                entry = W(
                    campaign_id=campaign.id,
                    service_id=service_id,
                    status=S.WAITING.value,
                    channel=request.channel,
                    created_at=now,
                    updated_at=now,
                    created_by=actor.key_id,
                    **person_columns(request),
                    person_keys=keys,
                    language=request.language,
                )
                session.add(entry)
                await session.flush()
                entry_id = entry.id
                await session.execute(
                    insert(m.WaitlistKey),
                    [
                        {"campaign_id": campaign.id, "person_key": k, "entry_id": entry_id}
                        for k in keys
                    ],
                )
                session.add(
                    m.AuditEvent(
                        at=now, actor=actor.name, action="waitlist.join", booking_id=None,
                        request_id=actor.request_id,
                        details={"campaign": campaign.id, "entry": entry_id,
                                 "channel": request.channel},
                    )
                )  # fmt: skip
        except IntegrityError:
            raise LimitReached() from None
        return Joined(entry_id, await self.position(entry_id), S.WAITING.value, request.channel)

    async def position(self, entry_id: int) -> int:
        """1 for the next person to get an offer; 0 once the entry no longer waits."""
        async with self.core.sessions() as session:
            entry = await session.get(W, entry_id)
            if entry is None or entry.status not in WAITING:
                return 0
            return await self._ahead(session, entry.campaign_id, entry_id) + 1

    # -- the person's view, leaving, the agents' list ---------------------------------------

    async def entry(self, entry_id: int) -> EntryView:
        async with self.core.sessions() as session:
            row = (
                await session.execute(
                    select(W, m.Booking.reference)
                    .outerjoin(m.Booking, m.Booking.id == W.booking_id)
                    .where(W.id == entry_id)
                )
            ).first()
            if row is None:
                raise NotFound("waitlist_entry", str(entry_id))
            entry, reference = row
            position = None
            if entry.status in WAITING:
                position = await self._ahead(session, entry.campaign_id, entry_id) + 1
        return _view(entry, reference, position)

    async def leave(self, entry_id: int, actor: Actor) -> EntryView:
        """The person leaves the list (see the module's docstring): idempotent; refused with
        :class:`OfferPending` while an offer waits for their answer."""
        now = self.now()
        async with self.core.sessions() as session, session.begin():
            left = (
                await session.execute(
                    update(W)
                    .where(W.id == entry_id, W.status.in_(WAITING))
                    .values(
                        status=S.WITHDRAWN.value, claim_token=None, claim_until=None,
                        updated_at=now,
                    )
                    .returning(W.campaign_id)
                    .execution_options(synchronize_session=False)
                )
            ).first()  # fmt: skip
            if left is not None:
                await session.execute(
                    delete(m.WaitlistKey).where(m.WaitlistKey.entry_id == entry_id)
                )
                session.add(
                    m.AuditEvent(
                        at=now, actor=actor.name, action="waitlist.leave", booking_id=None,
                        request_id=actor.request_id,
                        details={"campaign": left.campaign_id, "entry": entry_id},
                    )
                )  # fmt: skip
            else:
                found = (
                    await session.execute(
                        select(W.status, m.Booking.reference)
                        .outerjoin(m.Booking, m.Booking.id == W.booking_id)
                        .where(W.id == entry_id)
                    )
                ).first()
                if found is None:
                    raise NotFound("waitlist_entry", str(entry_id))
                if found.status == S.OFFERED.value:
                    raise OfferPending(codes.format_reference(found.reference or ""))
        return await self.entry(entry_id)

    async def entries(
        self, campaign_id: str, *, status: str | None = None, after: int = 0, limit: int = 50
    ) -> list[EntryView]:
        """A page of a campaign's entries in line order (``id``), those after entry ``after``;
        ``status`` filters (``waiting`` includes an offer run's claim)."""
        limit = max(1, min(limit, MAX_PAGE))
        query = (
            select(W, m.Booking.reference)
            .outerjoin(m.Booking, m.Booking.id == W.booking_id)
            .where(W.campaign_id == campaign_id, W.id > after)
            .order_by(W.id)
            .limit(limit)
        )
        if status == S.WAITING.value:
            query = query.where(W.status.in_(WAITING))
        elif status is not None:
            query = query.where(W.status == status)
        async with self.core.sessions() as session:
            rows = [(entry, reference) for entry, reference in await session.execute(query)]
            if not rows:
                return []
            ahead = await self._ahead(session, campaign_id, rows[0][0].id)
        out = []
        for entry, reference in rows:
            position = None
            if entry.status in WAITING:
                ahead += 1
                position = ahead
            out.append(_view(entry, reference, position))
        return out

    @staticmethod
    async def _ahead(session: Any, campaign_id: str, entry_id: int) -> int:
        """How many of the campaign's entries wait in line before entry ``entry_id``."""
        count = await session.scalar(
            select(func.count())
            .select_from(W)
            .where(W.campaign_id == campaign_id, W.status.in_(WAITING), W.id < entry_id)
        )
        return int(count or 0)

    # -- the job ----------------------------------------------------------------------------

    async def run_once(self) -> OfferReport:
        """The scheduled job: end the lists of closed campaigns, let due offers lapse, then
        offer what is free."""
        report = OfferReport()
        report.closed = await self.close_lists()
        report.lapsed = await self.lapse_due()
        await self.offer_next(report)
        return report

    async def close_lists(self) -> int:
        """Entries still waiting when their campaign's window has closed leave the list."""
        now = self.now()
        if not any(
            c.closes_at is not None and c.closes_at < now
            for c in self.core.catalog.campaigns.values()
        ):
            return 0
        async with self.core.sessions() as session, session.begin():
            closed = await retention.end_closed_waitlists(session, now)
        if closed:
            log.info("waiting lists of closed campaigns ended", extra={"entries": closed})
        return closed

    async def lapse_due(self) -> int:
        """Pending bookings past their deadline lapse: unanswered offers and unconfirmed
        opt-ins alike."""
        now = self.now()
        async with self.core.sessions() as session:
            due = list(
                await session.scalars(
                    select(m.Booking.id)
                    .where(
                        m.Booking.status == m.BookingStatus.PENDING.value,
                        m.Booking.pending_until <= now,
                    )
                    .order_by(m.Booking.pending_until)
                    .limit(200)
                )
            )
        lapsed = 0
        for booking_id in due:
            try:
                await self.bookings.cancel(booking_id, SYSTEM, lapse=True)
            except AlreadyChanged:
                continue  # accepted or cancelled meanwhile, or lapsed by another process
            lapsed += 1
        if lapsed:
            log.info("pending bookings lapsed", extra={"bookings": lapsed})
        return lapsed

    async def offer_next(self, report: OfferReport | None = None) -> OfferReport:
        report = report or OfferReport()
        for campaign in list(self.core.catalog.campaigns.values()):
            if campaign.first_service_id and campaign.second_service_id:
                await self._offer_campaign(campaign, report)
        if report.offered or report.withdrawn:
            log.info(
                "waiting-list offers made",
                extra={"offers": report.offered, "withdrawn": report.withdrawn},
            )
        return report

    async def _offer_campaign(self, campaign: CampaignInfo, report: OfferReport) -> None:
        tz = self.core.catalog.locations[campaign.location_id].tz
        try:
            campaigns.check_window(campaign, self.now(), tz)
        except WindowClosed:
            return
        skipped: list[int] = []
        for _ in range(MAX_OFFERS):
            claimed = await self._claim_next(campaign.id, skipped)
            if claimed is None:
                return
            entry, token = claimed
            outcome = await self._offer(campaign, entry, token)
            if outcome == "offered":
                report.offered += 1
            elif outcome == "withdrawn":
                report.withdrawn += 1
            elif outcome == "skip":
                skipped.append(entry.id)
            elif outcome == "stop":
                return

    async def _claim_next(self, campaign_id: str, skipped: list[int]) -> tuple[W, str] | None:
        """Claim the first waiting entry (or one whose offer run died) while places are left."""
        now = self.now()
        token = secrets.token_hex(16)
        claimable = or_(
            W.status == S.WAITING.value, (W.status == S.OFFERING.value) & (W.claim_until < now)
        )
        first = (
            select(W.id)
            .where(W.campaign_id == campaign_id, claimable, W.id.not_in(skipped))
            .order_by(W.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        # the queue's order: one offer at a time per campaign. Two runs at once would otherwise
        # claim the first and the second entry, and the second could win the one free place.
        # The campaign row's lock makes the runs take turns; the one after sees the live claim.
        other = aliased(W)
        offering = (
            select(other.id)
            .where(
                other.campaign_id == campaign_id,
                other.status == S.OFFERING.value,
                other.claim_until >= now,
            )
            .exists()
        )
        async with self.core.sessions() as session, session.begin():
            taken, places = (
                await session.execute(
                    select(m.Campaign.taken, m.Campaign.places)
                    .where(m.Campaign.id == campaign_id)
                    .with_for_update()
                )
            ).one()
            if taken >= places:
                return None
            entry = await session.scalar(
                update(W)
                .where(W.id == first, claimable, ~offering)
                .values(
                    status=S.OFFERING.value,
                    claim_token=token,
                    claim_until=now + timedelta(seconds=CLAIM_SECONDS),
                    updated_at=now,
                )
                .returning(W)
                .execution_options(synchronize_session=False)
            )
            if entry is None:
                return None
            session.expunge(entry)
        return entry, token

    async def _offer(self, campaign: CampaignInfo, entry: W, token: str) -> str:
        """Hold and book a series for the entry; 'offered', 'withdrawn' (the person cannot be
        served: a series of their own meanwhile), 'skip' (not eligible on any start tried) or
        'stop' (no series free, no place left, Redis away: the entry waits on)."""
        core, service = self.core, self.bookings
        assert campaign.first_service_id is not None
        now = self.now()
        separate = entry.contact_name is not None
        citizen = Person(
            entry.attendee_name or "",
            None if separate else entry.contact_email,
            None if separate else entry.contact_phone,
            entry.attendee_birth_date,
            entry.attendee_postcode,
        )
        contact = (
            Person(entry.contact_name or "", entry.contact_email, entry.contact_phone)
            if separate
            else None
        )
        request = BookingRequest(citizen, contact, channel=m.Channel.PHONE.value,
                                 language=entry.language)  # fmt: skip
        tz = core.catalog.locations[campaign.location_id].tz
        first_service = core.service(campaign.first_service_id)
        today = now.astimezone(tz).date()
        last = today + timedelta(days=min(first_service.max_days_ahead, MAX_DAYS))
        try:
            _, starts = await core.free_starts(
                first_service.id, today, last, now, channel=m.Channel.PHONE.value
            )
        except ReservationUnavailable:
            await self._give_back(entry.id, token)
            return "stop"
        ineligible = False
        tried = 0
        for start, _end, left in sorted(starts):
            if left < 1 or start < now + OFFER_MARGIN + MIN_OFFER:
                continue
            if tried == MAX_STARTS:
                break
            tried += 1
            try:
                visit = await service.plan(
                    [first_service.id], start, 1, m.Channel.PHONE.value, now,
                    citizen=citizen, series=True, for_waitlist=True,
                )  # fmt: skip
                hold = await service.reservations.hold(
                    visit, m.Channel.PHONE.value, now, core.hold_seconds, claimed=True
                )
            except NotEligible:
                ineligible = True
                continue
            except (SlotFull, ValidationFailed):
                continue
            except LimitReached:
                await self._give_back(entry.id, token, withdraw=True)
                return "withdrawn"
            except (WindowClosed, ReservationUnavailable):
                await self._give_back(entry.id, token)
                return "stop"
            until = min(now + self.offer, visit.start - OFFER_MARGIN)
            terms = OfferTerms(entry.id, token, until)
            try:
                await service._commit_new(hold, request, SYSTEM, None, lambda _v: b"", terms)
            except SlotFull:
                continue
            except CampaignFull:
                await self._give_back(entry.id, token)
                return "stop"
            except LimitReached:
                await self._give_back(entry.id, token, withdraw=True)
                return "withdrawn"
            except OfferClaimLost:
                return "skip"  # another run took the entry over; it is theirs now
            return "offered"
        await self._give_back(entry.id, token)
        return "skip" if ineligible else "stop"

    async def _give_back(self, entry_id: int, token: str, *, withdraw: bool = False) -> None:
        """End this run's claim: the entry waits again (in its place), or leaves the list."""
        now = self.now()
        status = S.WITHDRAWN if withdraw else S.WAITING
        async with self.core.sessions() as session, session.begin():
            done = await session.execute(
                update(W)
                .where(W.id == entry_id, W.status == S.OFFERING.value, W.claim_token == token)
                .values(status=status.value, claim_token=None, claim_until=None, updated_at=now)
                .returning(W.id)
            )
            if withdraw and done.first() is not None:
                await session.execute(
                    delete(m.WaitlistKey).where(m.WaitlistKey.entry_id == entry_id)
                )

    # -- answers ----------------------------------------------------------------------------

    async def accept(self, booking_id: str, actor: Actor) -> m.Booking:
        """Take an offer: its pending booking becomes confirmed (before its deadline only)."""
        now = self.now()
        service = self.bookings
        async with self.core.sessions() as session, session.begin():
            booking = await service._locked(session, booking_id)
            entry = await session.scalar(
                select(W).where(W.booking_id == booking_id).with_for_update()
            )
            if entry is None:
                raise NotAnOffer()
            if booking.status == m.BookingStatus.CONFIRMED.value and entry.status == S.BOOKED:
                return booking  # accepted already (a second click)
            if (
                booking.status != m.BookingStatus.PENDING.value
                or entry.status != S.OFFERED.value
                or booking.pending_until is None
                or now >= booking.pending_until
            ):
                raise OfferExpired()
            booking.status = m.BookingStatus.CONFIRMED.value
            booking.pending_until = None
            booking.updated_at = now
            entry.status = S.BOOKED.value
            entry.updated_at = now
            await session.execute(delete(m.WaitlistKey).where(m.WaitlistKey.entry_id == entry.id))
            await session.execute(outbox.INSERT, service.confirmation_messages(booking, now))
            session.add(
                m.AuditEvent(
                    at=now, actor=actor.name, action="waitlist.accept", booking_id=booking.id,
                    request_id=actor.request_id, details={"entry": entry.id},
                )
            )  # fmt: skip
        metrics.booking("confirmed", booking.channel)
        return booking

    async def callbacks(self) -> list[Callback]:
        """Open offers to people without e-mail, the earliest deadline first."""
        async with self.core.sessions() as session:
            rows = list(
                await session.execute(
                    select(W, m.Booking)
                    .join(m.Booking, m.Booking.id == W.booking_id)
                    .where(
                        W.status == S.OFFERED.value,
                        W.contact_email.is_(None),
                        m.Booking.status == m.BookingStatus.PENDING.value,
                    )
                    .options(selectinload(m.Booking.appointments))
                    .order_by(m.Booking.pending_until, W.id)
                    .limit(500)
                )
            )
        return [
            Callback(
                entry.id,
                booking,
                entry.attendee_name or "",
                entry.contact_phone,
                entry.contact_name,
                entry.language,
                booking.pending_until,
            )
            for entry, booking in rows
        ]
