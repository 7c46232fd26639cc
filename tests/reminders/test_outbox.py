"""The outbox end to end in-process: booking changes write rows, the dispatcher sends them to a
real SMTP server (aiosmtpd), and time moves through the service's own clock, without sleeping."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from scheduler.booking import apikeys
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from scheduler.reminders.dispatch import Dispatcher
from tests.pages import with_csrf
from tests.reminders.test_mailer import Collector, mailer, smtp_server

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin
SENDER = "Terminvergabe Tangerhütte <termine@tangerhuette.example>"


@pytest.fixture
def smtp() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    with smtp_server(collector) as port:
        yield collector, port


def dispatcher(core: Core, port: int) -> Dispatcher:
    return Dispatcher(core, mailer(port), sender=SENDER)


def render(_: object) -> bytes:
    return b"{}"


async def book(core: Core, start: datetime = START, **person: Any) -> str:
    who = {"name": "Erika Mustermann", "email": "erika@example.org", **person}
    view, _ = await core.bookings.book(
        ["hund-anmelden"], start, 1, BookingRequest(Person(**who)), Actor(), None, render
    )
    assert view is not None
    return view.id


def messages(collector: Collector) -> list[Any]:
    return [
        email.message_from_bytes(r.content, policy=email.policy.default) for r in collector.received
    ]


async def statuses(core: Core) -> dict[str, list[str]]:
    async with core.sessions() as session:
        rows = await session.execute(select(m.Notification.kind, m.Notification.status))
    out: dict[str, list[str]] = {}
    for kind, status in rows:
        out.setdefault(kind, []).append(status)
    return out


async def test_confirmation_then_reminder_each_once(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    await book(core)
    sender = dispatcher(core, port)
    report = await sender.run_once()
    assert report.sent == 1
    await sender.run_once()  # nothing is sent twice
    [confirmation] = messages(collector)
    assert "Terminbestätigung" in confirmation["Subject"]
    assert confirmation["Message-ID"].startswith("<")
    plain = confirmation.get_body(("plain",)).get_content()
    assert "09:00" in plain
    assert "/buchung/" in plain
    assert "?token=" in plain
    assert "Personalausweis" in plain  # what to bring
    [attachment] = list(confirmation.iter_attachments())
    assert attachment.get_content_type() == "text/calendar"
    calendar = icalendar.Calendar.from_ical(attachment.get_content())
    assert calendar["METHOD"] == "REQUEST"
    # the reminder falls due 24 h before the appointment: move the clock, not the wall
    clock.set(START - timedelta(hours=24) - timedelta(seconds=1))
    assert (await sender.run_once()).sent == 0
    clock.set(START - timedelta(hours=23))
    assert (await sender.run_once()).sent == 1
    assert (await sender.run_once()).sent == 0
    reminder = messages(collector)[1]
    assert "Erinnerung" in reminder["Subject"]
    assert reminder["Message-ID"] != confirmation["Message-ID"]


async def test_a_cancelled_booking_gets_no_reminder(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    booking_id = await book(core)
    await core.bookings.cancel(booking_id, Actor())
    sender = dispatcher(core, port)
    await sender.run_once()
    clock.set(START - timedelta(hours=2))
    await sender.run_once()
    subjects = [msg["Subject"] for msg in messages(collector)]
    assert len(subjects) == 2
    assert "abgesagt" in subjects[1]
    cancel = messages(collector)[1]
    [attachment] = list(cancel.iter_attachments())
    assert icalendar.Calendar.from_ical(attachment.get_content())["METHOD"] == "CANCEL"
    assert (await statuses(core))["reminder"] == ["cancelled"]


async def test_a_move_re_times_the_reminder(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    booking_id = await book(core)
    later = START + timedelta(days=1)
    hold = await core.bookings.hold(["hund-anmelden"], later, 1, "online")
    await core.bookings.reschedule(booking_id, hold.hold_id, Actor())
    sender = dispatcher(core, port)
    await sender.run_once()
    assert ["Terminbestätigung" in s or "verlegt" in s for s in
            [msg["Subject"] for msg in messages(collector)]] == [True, True]  # fmt: skip
    clock.set(START - timedelta(hours=23))  # the old reminder time: nothing
    assert (await sender.run_once()).sent == 0
    clock.set(later - timedelta(hours=23))
    assert (await sender.run_once()).sent == 1
    reminder = messages(collector)[-1].get_body(("plain",)).get_content()
    assert "1. Dezember 2026" in reminder


async def test_messages_that_fell_due_while_nobody_ran_go_out(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    await book(core)
    clock.set(START - timedelta(hours=3))  # confirmation and reminder are both overdue
    report = await dispatcher(core, port).run_once()
    assert report.sent == 2
    assert len(collector.received) == 2


async def test_smtp_down_then_up_delivers_once(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    await book(core)
    collector.data_reply = "451 try again later"
    sender = dispatcher(core, port)
    report = await sender.run_once()
    assert report.retried == 1
    assert (await statuses(core))["confirmation"] == ["pending"]
    assert (await sender.run_once()).claimed == 0  # backing off
    collector.data_reply = None
    clock.advance(timedelta(seconds=31))
    assert (await sender.run_once()).sent == 1
    assert (await sender.run_once()).claimed == 0
    assert len(collector.received) == 1


async def test_permanent_failure_for_admins_and_retry(
    core: Core, client: AsyncTestClient[Litestar], smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    await book(core)
    collector.rcpt_reply = "550 no such user"
    sender = dispatcher(core, port)
    assert (await sender.run_once()).failed == 1
    async with core.sessions() as session, session.begin():
        _, secret = await apikeys.create_key(
            session, role="admin", name="a", calendar_ids=[], known_calendars=set(),
            now=core.clock.now(),
        )  # fmt: skip
    admin = {"Authorization": f"Bearer {secret}"}
    failed = await client.get("/api/v1/admin/notifications", params={"status": "failed"},
                              headers=admin)  # fmt: skip
    assert failed.status_code == 200
    [row] = failed.json()
    assert row["kind"] == "confirmation"
    assert row["last_error"] == "permanent 550"
    assert "erika" not in failed.text  # no personal data in the admin view
    collector.rcpt_reply = None
    retried = await client.post(f"/api/v1/admin/notifications/{row['id']}/retry", headers=admin)
    assert retried.status_code == 200
    assert (await sender.run_once()).sent == 1
    assert len(collector.received) == 1
    bad = await client.get("/api/v1/admin/notifications", params={"status": "x"}, headers=admin)
    assert bad.status_code == 422


async def test_phone_only_bookings_are_not_applicable(
    core: Core, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    await book(core, email=None, phone="0391 123456")
    report = await dispatcher(core, port).run_once()
    assert report.skipped == 1
    assert collector.received == []
    assert (await statuses(core))["confirmation"] == ["not_applicable"]


async def test_a_dead_senders_claim_is_taken_over_after_its_lease(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    await book(core)
    first = dispatcher(core, port)
    claimed = await first._claim(clock.now())  # claimed, then the process "dies"
    assert len(claimed) == 1
    second = dispatcher(core, port)
    assert (await second.run_once()).claimed == 0  # the lease still holds
    clock.advance(timedelta(seconds=121))
    assert (await second.run_once()).sent == 1
    assert len(collector.received) == 1


async def test_retention_erases_personal_data(core: Core, clock: ManualClock) -> None:
    booking_id = await book(core, birth_date=None)
    clock.set(START + timedelta(days=14, hours=1))
    assert await core.erase_expired() == 1
    async with core.sessions() as session:
        booking = await session.get(m.Booking, booking_id)
    assert booking is not None
    assert booking.attendee_name is None
    assert booking.contact_email is None
    assert booking.erased_at is not None
    assert booking.status == "confirmed"  # statistics keep what they need
    assert await core.erase_expired() == 0


async def test_manage_page_shows_and_cancels(client: AsyncTestClient[Litestar]) -> None:
    made = (
        await client.post(
            "/api/v1/bookings",
            json={"service_id": "hund-anmelden", "start": "2026-11-30T09:00:00+01:00",
                  "citizen": {"name": "Erika <b>Mustermann</b>", "email": "e@example.org"}},
        )
    ).json()  # fmt: skip
    url = f"/buchung/{made['reference']}"
    page = await client.get(url, params={"token": made["manage_token"]})
    assert page.status_code == 200
    assert made["reference"] in page.text
    assert "Montag, 30. November 2026, 09:00–09:15" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "Termin absagen" in page.text
    wrong = await client.get(url, params={"token": "nope"})
    assert wrong.status_code == 404
    cancelled = await client.post(
        f"{url}/absagen",
        data=await with_csrf(client, {"token": made["manage_token"]}),
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    after = await client.get(url, params={"token": made["manage_token"]})
    assert "abgesagt" in after.text
    assert "Termin absagen" not in after.text


async def test_retention_drops_week_old_idempotency_records(core: Core, clock: ManualClock) -> None:
    from scheduler.booking.idempotency import IdempotencyKey, lookup, store

    old = IdempotencyKey.of("anonymous", "old", "POST", "/api/v1/holds", b"{}")
    fresh = IdempotencyKey.of("anonymous", "fresh", "POST", "/api/v1/holds", b"{}")
    async with core.sessions() as session, session.begin():
        await store(session, old, 201, b"{}", clock.now() - timedelta(days=8))
        await store(session, fresh, 201, b"{}", clock.now() - timedelta(days=6))
    await core.erase_expired()
    async with core.sessions() as session:
        assert await lookup(session, old) is None
        assert await lookup(session, fresh) is not None
