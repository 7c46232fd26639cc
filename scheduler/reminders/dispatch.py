"""Sending the outbox: claim due rows, re-read the booking, render, send, record the outcome.

Several processes may dispatch at once. A row is claimed by a conditional update that moves it
to ``sending`` with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL picks rows nobody else is
claiming; SQLite serializes writers). A row whose sender died is claimed again after its lease:
the message may then arrive twice, with the same Message-ID, never not at all. A sender that is
still busy with a batch when half the lease has passed gives the untried rest back, and only the
claim that holds a row (its ``attempts`` count) records an outcome. Right before sending, the
booking is read again: a reminder for a cancelled or past appointment is not sent, nor an offer
or an opt-in link that is no longer open. The opt-in message carries the link to the page that
confirms the booking (``/buchung/{reference}/bestaetigen``) and no .ics: it is no appointment
yet. A batch goes
out over one SMTP connection. Temporary failures retry with exponential back-off; after
``max_attempts``, on a permanent failure, or when the message cannot even be rendered, the row
is ``failed`` and shows up for admins.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import selectinload

from scheduler import metrics
from scheduler.booking import models as m
from scheduler.booking.events import booking_events, manage_url
from scheduler.calendar.ical import booking_ics
from scheduler.reminders.mailer import Mailer, SendError, SmtpMailer
from scheduler.reminders.messages import Kind, MessageData, render

log = logging.getLogger("scheduler.outbox")
N = m.Notification
ACTIVE = tuple(s.value for s in m.ACTIVE_STATUSES)
CHUNK = 20  # messages per booking read and per outcome write
# a row's status after an attempt -> what happened to its message (scheduler_messages_total)
OUTCOME = {
    m.NotificationStatus.SENT.value: "sent",
    m.NotificationStatus.PENDING.value: "retried",
    m.NotificationStatus.FAILED.value: "failed",
    m.NotificationStatus.CANCELLED.value: "skipped",
    m.NotificationStatus.NOT_APPLICABLE.value: "skipped",
}


@dataclass(slots=True)
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # cancelled reminders, no e-mail address


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … at most one hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


class Dispatcher:
    def __init__(
        self,
        core: Any,
        mailer: Mailer,
        *,
        sender: str,
        batch: int = 100,
        lease_seconds: int = 120,
        max_attempts: int = 8,
    ) -> None:
        self.core = core
        self.mailer = mailer
        self.sender = sender
        self.batch = batch
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts

    async def run_once(self) -> DispatchReport:
        """Claim and send what is due now; returns what happened."""
        report = DispatchReport()
        while True:
            now = self.core.clock.now()
            rows = await self._claim(now)
            report.claimed += len(rows)
            # Past half the lease (a slow SMTP server), the rest of the batch is given back
            # rather than sent late: by then another sender may take over those rows.
            deadline = now + self.lease / 2
            async with _connection(self.mailer) as mailer:
                for first in range(0, len(rows), CHUNK):
                    chunk = rows[first : first + CHUNK]
                    untried = await self._send_chunk(chunk, report, mailer, deadline, first == 0)
                    if untried:
                        await self._release([*untried, *rows[first + CHUNK :]])
                        break
            if len(rows) < self.batch:
                return report

    async def _claim(self, now: datetime) -> list[Any]:
        due = (
            select(N.id)
            .where(
                or_(
                    (N.status == m.NotificationStatus.PENDING.value) & (N.due_at <= now),
                    (N.status == m.NotificationStatus.SENDING.value) & (N.lease_until < now),
                )
            )
            .order_by(N.due_at, N.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        claim = (
            update(N)
            .where(N.id.in_(due))
            .values(
                status=m.NotificationStatus.SENDING.value,
                lease_until=now + self.lease,
                attempts=N.attempts + 1,
            )
            .returning(
                N.id, N.booking_id, N.kind, N.message_id, N.attempts, N.previous_start, N.due_at
            )
        )
        async with self.core.sessions() as session, session.begin():
            rows = list(await session.execute(claim))
        rows.sort(key=lambda row: (row.due_at, row.id))  # RETURNING keeps no order
        return rows

    async def _release(self, rows: list[Any]) -> None:
        """Give back claimed rows that were not tried: due as before, the attempt not counted."""
        async with self.core.engine.begin() as conn:
            await conn.execute(_RELEASE, [{"nid": row.id, "claim": row.attempts} for row in rows])

    async def _send_chunk(
        self,
        rows: list[Any],
        report: DispatchReport,
        mailer: Mailer,
        deadline: datetime,
        first: bool,
    ) -> list[Any]:
        """Re-read the chunk's bookings (one query, right before sending), send each message,
        then record the outcomes of the chunk in one transaction. A crash between a send and
        that write sends those messages again after the lease, with the same Message-ID.

        Past ``deadline`` (half the lease) no further message is tried: the outcomes so far are
        recorded long before the lease ends, and the untried rows are returned, to be given
        back (the batch's very first message is always tried)."""
        query = (
            select(m.Booking)
            .where(m.Booking.id.in_({row.booking_id for row in rows}))
            .options(selectinload(m.Booking.appointments))
        )
        async with self.core.sessions() as session:
            bookings = {b.id: b for b in (await session.execute(query)).scalars()}
        outcomes: list[dict[str, Any]] = []
        try:
            for n, row in enumerate(rows):
                if (n or not first) and self.core.clock.now() >= deadline:
                    return rows[n:]
                values = await self._deliver(row, bookings.get(row.booking_id), report, mailer)
                metrics.message(row.kind, OUTCOME[values["outcome"]])
                outcomes.append({"nid": row.id, "claim": row.attempts, **values})
        finally:
            if outcomes:
                await self._record(outcomes)
        return []

    async def _record(self, outcomes: list[dict[str, Any]]) -> None:
        """Write a chunk's outcomes; on a lost database connection try again (twice) on a new
        one: the messages are sent already, and not recording them would send them again after
        the lease. The write only touches rows this claim still holds, so a repeat is safe."""
        for attempt in range(3):
            try:
                async with self.core.engine.begin() as conn:
                    await conn.execute(_FINISH, outcomes)
                return
            except DBAPIError as exc:
                lost = exc.connection_invalidated or isinstance(
                    exc, (OperationalError, InterfaceError)
                )
                if not lost or attempt == 2:
                    raise
                log.warning("outcomes not recorded, trying again", extra={"rows": len(outcomes)})
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _deliver(
        self, row: Any, booking: m.Booking | None, report: DispatchReport, mailer: Mailer
    ) -> dict[str, Any]:
        """Send one row's message; returns the row's outcome (see ``_FINISH``)."""
        now = self.core.clock.now()
        kind = Kind(row.kind)
        visit = reminded(booking, row.due_at) if booking is not None else None
        if (
            booking is None
            or (
                kind is Kind.REMINDER
                and (booking.status not in ACTIVE or visit is None or visit.starts_at <= now)
            )
            or (kind is Kind.WAITLIST_OFFER and booking.status != m.BookingStatus.PENDING.value)
            or (
                kind is Kind.OPT_IN
                and (
                    booking.status != m.BookingStatus.PENDING.value
                    or booking.pending_until is None
                    or booking.pending_until <= now
                )
            )
        ):
            report.skipped += 1
            return _outcome(row, m.NotificationStatus.CANCELLED)
        if not booking.contact_email or booking.erased_at is not None:
            report.skipped += 1
            return _outcome(row, m.NotificationStatus.NOT_APPLICABLE)
        try:
            message = self._message(booking, kind, row)
        except Exception as exc:  # one row that cannot be rendered must not block the others
            # e.g. an address SMTP cannot carry ("max..muster@…"); raising here would leave
            # the row claimed, to be retried and raise again with the batch behind it
            report.failed += 1
            log.error(
                "message not rendered",
                extra={"notification": row.id, "kind": row.kind, "error": type(exc).__name__},
            )
            reason = f"permanent render {type(exc).__name__}"[:200]
            return _outcome(row, m.NotificationStatus.FAILED, last_error=reason)
        try:
            await mailer.send(message)
        except SendError as exc:
            log.warning(
                "message not sent",
                extra={"notification": row.id, "kind": row.kind, "code": exc.code,
                       "permanent": exc.permanent},
            )  # fmt: skip
            if exc.permanent or row.attempts >= self.max_attempts:
                report.failed += 1
                return _outcome(row, m.NotificationStatus.FAILED, last_error=_reason(exc))
            report.retried += 1
            return _outcome(
                row,
                m.NotificationStatus.PENDING,
                due_at=now + backoff(row.attempts),
                last_error=_reason(exc),
            )
        report.sent += 1
        log.info("message sent", extra={"notification": row.id, "kind": row.kind})
        return _outcome(row, m.NotificationStatus.SENT, sent_at=now)

    def _message(self, booking: m.Booking, kind: Kind, row: Any) -> Any:
        core = self.core
        catalog = core.catalog
        language = booking.language if booking.language in ("de", "en") else "de"
        visit = reminded(booking, row.due_at) if kind is Kind.REMINDER else None
        appointments = sorted(booking.appointments, key=lambda a: a.position)
        # a reminder is about its visit; other messages about the first, listing the others
        main = visit or (appointments[0] if appointments else None)
        others = [] if visit is not None else appointments[1:]
        service_ids = [s for a in booking.appointments for s in a.service_ids]
        services = [catalog.services[s] for s in service_ids if s in catalog.services]
        main_ids = list(main.service_ids) if main is not None else service_ids
        location = catalog.locations[booking.location_id]
        token = core.bookings.token_for(booking)
        events = booking_events(catalog, booking, core.base_url, token, language)
        method = "CANCEL" if kind is Kind.CANCELLATION else "REQUEST"
        ics: bytes | None = booking_ics(events, location.tz, booking.updated_at, method=method)
        link = manage_url(core.base_url, booking.reference, token)
        if kind is Kind.OPT_IN:
            ics = None  # no appointment until it is confirmed
            # the opt-in token: only this message carries it (the booking answer gave the
            # manage token), so following it proves the address
            link = confirm_url(
                core.base_url, booking.reference, core.bookings.opt_in_token_for(booking)
            )

        def names(ids: list[str]) -> list[str]:
            return [
                catalog.services[s].display_name(language) for s in ids if s in catalog.services
            ]

        bring = [
            (s.description_en or s.description) if language == "en" else s.description
            for s in services
        ]
        data = MessageData(
            kind=kind,
            language=language,
            to_name=booking.contact_name or booking.attendee_name or "",
            to_email=booking.contact_email or "",
            attendee_name=booking.attendee_name or "",
            reference=f"{booking.reference[:4]}-{booking.reference[4:]}",
            services=names(main_ids),
            also=tuple((", ".join(names(a.service_ids)), a.starts_at, a.ends_at) for a in others),
            start=visit.starts_at if visit is not None else booking.starts_at,
            end=visit.ends_at if visit is not None else booking.ends_at,
            tz=location.tz,
            place_name=location.name,
            place_address=location.address,
            what_to_bring=[line for line in bring if line],
            manage_url=link,
            ics=ics,
            ics_method=method if ics is not None else None,
            message_id=row.message_id,
            sender=self.sender,
            previous_start=row.previous_start,
            respond_by=(
                booking.pending_until if kind in (Kind.WAITLIST_OFFER, Kind.OPT_IN) else None
            ),
            book_url=f"{core.base_url.rstrip('/')}/",
        )
        return render(data, now=core.clock.now())


def confirm_url(base_url: str, reference: str, token: str) -> str:
    """The opt-in link: a page whose button (a POST) confirms the booking; following the
    link alone confirms nothing (mail scanners follow links)."""
    return manage_url(base_url, reference, token).replace("?token=", "/bestaetigen?token=", 1)


def reminded(booking: m.Booking, due_at: datetime) -> m.Appointment | None:
    """The appointment a reminder due at ``due_at`` is for: the first one starting after it
    (a series has a reminder before each of its two visits)."""
    later = [a for a in booking.appointments if a.starts_at > due_at]
    return min(later, key=lambda a: a.starts_at) if later else None


# Outcomes and give-backs only touch a row still held by this claim: ``attempts`` identifies
# the claim (each claim adds one), so a sender whose lease ran out and was taken over records
# nothing.
_HELD = (
    (N.id == bindparam("nid"))
    & (N.status == m.NotificationStatus.SENDING.value)
    & (N.attempts == bindparam("claim"))
)
_FINISH = (
    update(N)
    .where(_HELD)
    .values(
        status=bindparam("outcome"),
        lease_until=None,
        due_at=bindparam("next_due"),
        sent_at=bindparam("sent"),
        last_error=bindparam("error"),
    )
)
_RELEASE = (
    update(N)
    .where(_HELD)
    .values(status=m.NotificationStatus.PENDING.value, lease_until=None, attempts=N.attempts - 1)
)


def _outcome(
    row: Any,
    status: m.NotificationStatus,
    *,
    due_at: datetime | None = None,
    sent_at: datetime | None = None,
    last_error: str | None = None,
) -> dict[str, Any]:
    return {
        "outcome": status.value,
        "next_due": due_at or row.due_at,
        "sent": sent_at,
        "error": last_error,
    }


def _connection(mailer: Mailer) -> AbstractAsyncContextManager[Mailer]:
    """One SMTP connection for a claimed batch (a connection per message would cost a TCP
    and SMTP handshake each); other mailers are used as they are."""
    if isinstance(mailer, SmtpMailer):
        return mailer.connection()
    return nullcontext(mailer)


def _reason(exc: SendError) -> str:
    kind = "permanent" if exc.permanent else "temporary"
    return f"{kind} {exc.code or ''}".strip()[:200]
