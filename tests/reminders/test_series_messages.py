"""A vaccination series in the citizen's messages: the confirmation names both doses and its
.ics holds both appointments; a reminder is about its own dose."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from scheduler.reminders.dispatch import Dispatcher
from tests.reminders.test_mailer import Collector, mailer, smtp_server

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN)
SECOND = datetime(2026, 12, 21, 8, 0, tzinfo=BERLIN)


@pytest.fixture
def smtp() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    with smtp_server(collector) as port:
        yield collector, port


async def test_the_confirmation_names_both_doses_and_the_ics_holds_both(
    core: Core, clock: ManualClock, smtp: tuple[Collector, int]
) -> None:
    collector, port = smtp
    elder = Person("Hildegard Krause", "h.krause@example.org", birth_date=date(1941, 5, 17),
                   postcode="39517")  # fmt: skip
    hold = await core.bookings.hold(
        ["impfung-erstimpfung"], START, 1, "phone", citizen=elder, series=True, second_start=SECOND
    )
    view, _ = await core.bookings.confirm(
        hold.hold_id, BookingRequest(elder, channel="phone"), Actor(), None, lambda _: b"{}"
    )
    assert view is not None
    sender = Dispatcher(core, mailer(port), sender="termine@example.org")
    assert (await sender.run_once()).sent == 1
    message = email.message_from_bytes(collector.received[0].content, policy=email.policy.default)
    assert "Erstimpfung am Montag, 30. November 2026, 08:00 Uhr" in message["Subject"]
    plain = message.get_body(("plain",)).get_content()
    assert "Weiterer Termin:" in plain
    assert "Zweitimpfung: Montag, 21. Dezember 2026, 08:00 Uhr" in plain
    (attachment,) = list(message.iter_attachments())
    events = icalendar.Calendar.from_ical(attachment.get_content()).events
    assert [e.decoded("dtstart").astimezone(BERLIN) for e in events] == [START, SECOND]
    assert len({str(e["uid"]) for e in events}) == 2

    # the reminder before the second dose is about the second dose
    clock.set(SECOND - timedelta(hours=23))
    report = await sender.run_once()
    # both reminders fell due; the first dose's is past its appointment and is not sent
    assert (report.sent, report.skipped) == (1, 1)
    subjects = [
        email.message_from_bytes(r.content, policy=email.policy.default)["Subject"]
        for r in collector.received[1:]
    ]
    assert any("Zweitimpfung am Montag, 21. Dezember" in s for s in subjects)


async def test_a_staff_feed_shows_both_doses_of_a_series(core: Core, client: Any) -> None:
    from tests.api.test_keys import bearer, make_key

    elder = Person("Hildegard Krause", "h.krause@example.org", birth_date=date(1941, 5, 17),
                   postcode="39517")  # fmt: skip
    hold = await core.bookings.hold(
        ["impfung-erstimpfung"], START, 1, "phone", citizen=elder, series=True, second_start=SECOND
    )
    view, _ = await core.bookings.confirm(
        hold.hold_id, BookingRequest(elder, channel="phone"), Actor(), None, lambda _: b"{}"
    )
    assert view is not None
    admin = bearer(await make_key(core, "admin"))
    for calendar in {c for a in view.appointments for c in a.calendar_ids}:
        created = await client.post("/api/v1/feeds", json={"calendar_id": calendar}, headers=admin)
        token = created.json()["token"]
        for _ in range(2):  # rendered, then from the stored events
            feed = await client.get(
                f"/api/v1/calendars/{calendar}/feed.ics", params={"token": token}
            )
            assert feed.status_code == 200
            events = icalendar.Calendar.from_ical(feed.content).events
            mine = [a for a in view.appointments if calendar in a.calendar_ids]
            assert sorted(e.decoded("dtstart") for e in events) == sorted(a.start for a in mine)
            assert len({str(e["uid"]) for e in events}) == len(mine)
