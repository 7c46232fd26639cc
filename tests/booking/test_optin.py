"""E-mail double opt-in: a citizen's online booking of a service that asks for it is
``pending`` (its seats taken in SQL and Redis) until the link in the e-mail confirms it, or
lapses at its deadline. Real SQL (SQLite and PostgreSQL), the tests' Redis, a real SMTP server
(aiosmtpd) for the messages, and the service's own clock."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.errors import LimitReached, OptInExpired, SlotFull, ValidationFailed
from scheduler.clock import ManualClock
from scheduler.reminders.dispatch import Dispatcher
from tests.booking.test_seed import DEMO, nth_line, replace_in_table, seed_error
from tests.reminders.test_mailer import Collector, mailer, smtp_server

SERVICE = "reisepass-beantragen"  # the demo's service with opt-in (and a release delay)
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin
SENDER = "Terminvergabe Tangerhütte <termine@tangerhuette.example>"
CITIZEN = Person("Erika Mustermann", "erika@example.org")
AGENT = Actor(key_id="agent1", role="agent")


@pytest.fixture
def smtp() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    with smtp_server(collector) as port:
        yield collector, port


def render(_: object) -> bytes:
    return b"{}"


async def book(
    core: Core,
    *,
    service: str = SERVICE,
    start: datetime = START,
    citizen: Person = CITIZEN,
    channel: str = "online",
    actor: Actor | None = None,
    **request: Any,
) -> Any:
    view, _ = await core.bookings.book(
        [service], start, 1, BookingRequest(citizen, channel=channel, **request),
        actor or Actor(), None, render,
    )  # fmt: skip
    assert view is not None
    return view


async def free_at(core: Core, start: datetime, service: str = SERVICE) -> int:
    day = start.astimezone(core.catalog.locations["rathaus"].tz).date()
    _, rows = await core.free_starts(service, day, day, core.clock.now(), channel="phone")
    return next((free for s, _e, free in rows if s == start), 0)


async def booked_seats(core: Core, start: datetime) -> int:
    async with core.sessions() as session:
        return int(
            sum(await session.scalars(select(m.Slot.booked).where(m.Slot.starts_at == start)))
        )


async def kinds(core: Core, booking_id: str) -> list[tuple[str, str]]:
    async with core.sessions() as session:
        rows = await session.execute(
            select(m.Notification.kind, m.Notification.status)
            .where(m.Notification.booking_id == booking_id)
            .order_by(m.Notification.id)
        )
    return [(kind, status) for kind, status in rows]


def parsed(collector: Collector) -> list[Any]:
    return [
        email.message_from_bytes(r.content, policy=email.policy.default) for r in collector.received
    ]


async def test_confirmed_in_time_gets_the_confirmation_with_its_ics(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    before = await free_at(core, START)
    view = await book(core, language="en")
    assert view.status == "pending"
    assert view.pending_until == clock.now() + timedelta(minutes=30)
    assert await free_at(core, START) == before - 1  # the seats are taken at once
    assert await booked_seats(core, START) == 2  # a clerk and a counter room
    assert await kinds(core, view.id) == [("opt_in", "pending")]  # no reminder yet

    sender = Dispatcher(core, mailer(port), sender=SENDER)
    assert (await sender.run_once()).sent == 1
    [opt_in] = parsed(collector)
    assert opt_in["Subject"].startswith("Please confirm your booking: Apply for a passport")
    plain = opt_in.get_body(("plain",)).get_content()
    token = core.bookings.opt_in_token_for(view)  # only the message carries it
    assert f"/buchung/{view.reference[:4]}-{view.reference[4:]}/bestaetigen?token=" in plain
    assert token in plain
    assert core.bookings.token_for(view) not in plain
    assert "7:30 am" in plain  # the deadline, in the location's zone (07:00 + 30 min)
    assert not list(opt_in.iter_attachments())  # no .ics: it is no appointment yet

    clock.advance(timedelta(minutes=29))
    confirmed = await core.bookings.confirm_pending(view.id, Actor(), proven=True)
    assert confirmed.status == "confirmed"
    assert confirmed.pending_until is None
    again = await core.bookings.confirm_pending(
        view.id, Actor(), proven=True
    )  # the link followed twice
    assert again.status == "confirmed"
    assert [k for k, _ in await kinds(core, view.id)] == ["opt_in", "confirmation", "reminder"]
    assert (await sender.run_once()).sent == 1
    confirmation = parsed(collector)[1]
    assert confirmation["Subject"].startswith("Appointment confirmed")
    [ics] = list(confirmation.iter_attachments())
    assert ics.get_content_type() == "text/calendar"
    async with core.sessions() as session:
        actions = list(
            await session.scalars(
                select(m.AuditEvent.action).where(m.AuditEvent.booking_id == view.id)
            )
        )
    assert actions == ["booking.create", "booking.opt_in"]


async def test_not_confirmed_lapses_frees_the_seats_and_sends_nothing_more(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    before = await free_at(core, START)
    view = await book(core)
    sender = Dispatcher(core, mailer(port), sender=SENDER)
    clock.advance(timedelta(minutes=29, seconds=59))
    assert (await core.waitlist.lapse_due()) == 0  # not yet
    clock.advance(timedelta(seconds=1))
    report = await core.waitlist.run_once()  # the job that lets offers lapse
    assert report.lapsed == 1
    async with core.sessions() as session:
        booking = await session.get(m.Booking, view.id)
        assert booking is not None
        assert booking.status == "cancelled"
        claims = await session.scalar(
            select(m.PersonClaim.booking_id).where(m.PersonClaim.booking_id == view.id)
        )
        assert claims is None
    with pytest.raises(OptInExpired):
        await core.bookings.confirm_pending(view.id, Actor(), proven=True)
    # the opt-in link that the dispatcher had not sent yet is not sent late; nothing else is
    assert (await sender.run_once()).sent == 0
    assert collector.received == []
    assert await kinds(core, view.id) == [("opt_in", "cancelled")]
    # the release delay of the service holds the seats back for a while, then they are free
    clock.advance(timedelta(minutes=30))
    await core.release_holdbacks()
    assert await free_at(core, START) == before
    assert await booked_seats(core, START) == 0
    clock.set(START - timedelta(hours=1))
    assert (await sender.run_once()).sent == 0  # never a reminder


async def test_too_late_is_refused_even_before_the_job_ran(core: Core, clock: ManualClock) -> None:
    view = await book(core)
    clock.advance(timedelta(minutes=30))
    with pytest.raises(OptInExpired):
        await core.bookings.confirm_pending(view.id, Actor(), proven=True)


async def test_the_deadline_is_at_the_latest_the_start(core: Core, clock: ManualClock) -> None:
    clock.set(START - timedelta(minutes=70))
    view = await book(core)  # 60 minutes' notice is the service's minimum
    assert view.pending_until == clock.now() + timedelta(minutes=30)
    # bookable until an hour before: an opt-in window can never outlast the appointment
    clock.set(START - timedelta(minutes=61))
    other = await book(core, citizen=Person("Max Muster", "max@example.org"))
    assert other.pending_until <= START


async def test_an_online_opt_in_booking_needs_an_e_mail_address(core: Core) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await book(core, citizen=Person("Erika Mustermann", phone="0391 1234567"))
    [error] = refused.value.errors
    assert (error.field, error.message_key) == ("citizen.email", "email_for_opt_in")
    with pytest.raises(ValidationFailed) as refused:
        await book(core, contact=Person("Tochter", phone="0391 1234567"),
                   citizen=Person("Erika Mustermann"))  # fmt: skip
    assert refused.value.errors[0].field == "contact.email"
    assert await free_at(core, START) > 0  # nothing stays held


async def test_agents_and_ordinary_services_need_no_opt_in(core: Core) -> None:
    phone = await book(core, channel="phone", actor=AGENT,
                       citizen=Person("Erika Mustermann", phone="0391 1234567"))  # fmt: skip
    assert phone.status == "confirmed"
    ordinary = await book(core, service="hund-anmelden", citizen=Person("Max", "max@example.org"))
    assert ordinary.status == "confirmed"
    assert ordinary.pending_until is None


async def test_a_pending_booking_holds_its_seats_against_others(core: Core) -> None:
    start = START + timedelta(hours=2)
    for n in range(2):  # two counter rooms
        await book(core, start=start, citizen=Person(f"Person {n}", f"p{n}@example.org"))
    with pytest.raises(SlotFull):
        await book(core, start=start, citizen=Person("Dritte", "p3@example.org"))


async def test_pending_opt_ins_count_against_the_address_limit(core: Core) -> None:
    """A bot cannot queue unconfirmed bookings: each counts while it waits."""
    bot = Person("Bot", "bot@example.org")
    for n in range(6):
        start = START + timedelta(days=n // 2, hours=n % 2)
        view = await book(core, start=start, citizen=Person(f"Erfunden {n}"), contact=bot)
        assert view.status == "pending"
    with pytest.raises(LimitReached) as refused:
        await book(core, start=START + timedelta(hours=2), citizen=Person("Erfunden 7"),
                   contact=bot)  # fmt: skip
    assert refused.value.params == {"reason": "email", "limit": 6}


# -- the seed's settings ----------------------------------------------------------------------


def test_seed_refuses_opt_in_minutes_without_opt_in() -> None:
    text = replace_in_table(DEMO, "services", 4, "requires_opt_in", "requires_opt_in = false")
    message = seed_error(text)
    assert "services[4].opt_in_minutes" in message
    assert f"line {nth_line(text, 'services', 4, 'opt_in_minutes')}" in message
    assert "opt_in_minutes needs requires_opt_in = true" in message


def test_seed_refuses_an_opt_in_window_out_of_range() -> None:
    text = replace_in_table(DEMO, "services", 4, "opt_in_minutes", "opt_in_minutes = 2")
    message = seed_error(text)
    assert "services[4].opt_in_minutes (id = 'reisepass-beantragen')" in message
    assert "Expected `int` >= 5" in message or ">= 5" in message


def test_seed_refuses_opt_in_for_a_service_not_bookable_online() -> None:
    text = DEMO.replace(
        "requires_opt_in = true\n", 'requires_opt_in = true\nchannels = ["phone"]\n', 1
    )
    assert "not bookable online" in seed_error(text)


def test_seed_refuses_a_negative_address_limit() -> None:
    text = replace_in_table(
        DEMO, "locations", 0, "max_active_per_email", "max_active_per_email = -1"
    )
    message = seed_error(text)
    assert "locations[0].max_active_per_email" in message
    assert f"line {nth_line(text, 'locations', 0, 'max_active_per_email')}" in message
