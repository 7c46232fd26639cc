"""A slow SMTP relay: the sender stops trying new messages at half its lease and records what it
sent, so no other sender takes over rows that were already sent (no duplicates)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from scheduler.reminders.dispatch import Dispatcher
from scheduler.reminders.mime import Outgoing
from tests.reminders.test_mailer import Collector, mailer, smtp_server

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class SlowRelay:
    """The real SMTP mailer, but each message takes 10 s of the service's clock."""

    def __init__(self, port: int, clock: ManualClock) -> None:
        self.inner = mailer(port)
        self.clock = clock

    async def send(self, message: Outgoing) -> None:
        await self.inner.send(message)
        self.clock.advance(timedelta(seconds=10))


@pytest.fixture
def smtp() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    with smtp_server(collector) as port:
        yield collector, port


async def test_a_slow_relay_never_outlives_the_lease(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    for n in range(20):
        view, _ = await core.bookings.book(
            ["hund-anmelden"], START + timedelta(minutes=15 * (n // 3)), 1,
            BookingRequest(Person(f"Person {chr(65 + n)}", email=f"p{n}@example.org")),
            Actor(), None, lambda _: b"{}",
        )  # fmt: skip
        assert view is not None
    slow = Dispatcher(core, SlowRelay(port, clock), sender="termine@example.org", lease_seconds=120)
    report = await slow.run_once()
    # 10 s each: the seventh message would start at 60 s, half the lease: it is given back
    assert report.sent == 6
    async with core.sessions() as session:
        rows = list(await session.execute(select(m.Notification.status, m.Notification.attempts)))
    assert sorted(s for s, _ in rows).count("sent") == 6
    assert all(a == 0 for s, a in rows if s == "pending")  # given back, attempt not counted
    assert not any(s == "sending" for s, _ in rows)
    other = Dispatcher(core, mailer(port), sender="termine@example.org")
    assert (await other.run_once()).sent == 14
    ids = [r.content.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0] for r in collector.received]
    assert len(ids) == len(set(ids)) == 20  # every message once
