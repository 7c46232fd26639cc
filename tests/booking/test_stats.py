"""Statistics from the booking core on the demo municipality: what counts in which week, the
ratios, utilisation of known weeks (one across the DST change), the range limit and the CLI."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import update

from scheduler import cli
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.errors import NotFound, ValidationFailed
from scheduler.booking.stats import Period, Stats, booking_stats, iso_weeks
from scheduler.clock import ManualClock
from scheduler.settings import Settings

# Seats per ISO week of every calendar, from the demo opening hours: the citizens' office has
# 120 quarter-hour slots a week on each of its 5 calendars (600), the vaccination centre 309
# ten-minute slots on each of its 2 lines with 2 seats (1,236).
FULL_WEEK = 600 + 1236


def render(_: object) -> bytes:
    return b"{}"


async def book(core: Core, n: int, service: str, start: str, channel: str = "online") -> str:
    request = BookingRequest(Person(f"Person {n}", f"p{n}@example.org"), channel=channel)
    view, _ = await core.bookings.book(
        [service], datetime.fromisoformat(start), 1, request, Actor(), None, render
    )
    assert view is not None
    return view.id


async def set_status(core: Core, booking_id: str, status: m.BookingStatus) -> None:
    """Check-in and no-show have no route yet: set them as the staff view will."""
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Booking).where(m.Booking.id == booking_id).values(status=status.value)
        )


async def stats(core: Core, first: date, last: date, service: str | None = None) -> Stats:
    async with core.sessions() as session:
        return await booking_stats(session, core.catalog, first, last, service)


@pytest.fixture
async def booked(core: Core) -> Core:
    """Week 49: two online visits (a no-show, a check-in) and one by phone; week 50: one at the
    counter (30 minutes on a clerk and a counter room: 4 seats), one cancelled, one pending;
    week 51: one outside the range."""
    no_show = await book(core, 1, "hund-anmelden", "2026-11-30T09:00:00+01:00")
    came = await book(core, 2, "hund-anmelden", "2026-11-30T09:15:00+01:00")
    await book(core, 3, "hund-anmelden", "2026-12-01T09:00:00+01:00", "phone")
    await book(core, 4, "personalausweis-beantragen", "2026-12-08T10:00:00+01:00", "counter")
    cancelled = await book(core, 5, "meldebescheinigung", "2026-12-09T09:00:00+01:00")
    pending = await book(core, 6, "wohnsitz-anmelden", "2026-12-10T09:00:00+01:00")
    await book(core, 7, "hund-abmelden", "2026-12-14T09:00:00+01:00")
    await core.bookings.cancel(cancelled, Actor())
    await set_status(core, no_show, m.BookingStatus.NO_SHOW)
    await set_status(core, came, m.BookingStatus.CHECKED_IN)
    await set_status(core, pending, m.BookingStatus.PENDING)
    return core


def figures(p: Period) -> tuple[object, ...]:
    return (
        p.bookings, p.cancelled, p.online, p.phone, p.counter, p.online_share,
        p.checked_in, p.completed, p.no_show, p.no_show_rate,
        p.seats_booked, p.seats_capacity, p.utilisation,
    )  # fmt: skip


async def test_weeks_and_total(booked: Core) -> None:
    result = await stats(booked, date(2026, 11, 30), date(2026, 12, 13))
    assert [(w.label, w.first, w.last) for w in result.weeks] == [
        ("2026-W49", date(2026, 11, 30), date(2026, 12, 6)),
        ("2026-W50", date(2026, 12, 7), date(2026, 12, 13)),
    ]
    w49, w50 = result.weeks
    assert figures(w49) == (3, 0, 2, 1, 0, 0.6667, 1, 0, 1, 0.5, 3, FULL_WEEK, 0.0016)
    # the pending booking is no booking yet, but its seat is taken
    assert figures(w50) == (2, 1, 0, 0, 1, 0.0, 0, 0, 0, None, 5, FULL_WEEK, 0.0027)
    total = result.total
    assert (total.label, total.first, total.last) == ("total", result.first, result.last)
    assert figures(total) == (5, 1, 2, 1, 1, 0.5, 1, 0, 1, 0.5, 8, 2 * FULL_WEEK, 0.0022)
    assert [(s.service_id, s.bookings, s.cancelled, s.online, s.phone, s.counter)
            for s in total.services] == [
        ("hund-anmelden", 3, 0, 2, 1, 0),
        ("personalausweis-beantragen", 1, 0, 0, 0, 1),
        ("meldebescheinigung", 1, 1, 0, 0, 0),
    ]  # fmt: skip
    seats = {c.calendar_id: (c.seats_booked, c.seats_capacity) for c in total.calendars}
    assert sorted(seats) == sorted(booked.catalog.calendars)
    assert sum(seats[f"sachbearbeitung-{n}"][0] for n in (1, 2, 3)) == 6
    assert seats["schalter-1"][0] + seats["schalter-2"][0] == 2
    assert seats["schalter-1"][1] == 240
    assert seats["impflinie-1"] == (0, 2 * 618)


async def test_weeks_are_cut_to_the_range(booked: Core) -> None:
    result = await stats(booked, date(2026, 12, 2), date(2026, 12, 8))
    assert [(w.label, w.first, w.last, w.bookings) for w in result.weeks] == [
        ("2026-W49", date(2026, 12, 2), date(2026, 12, 6), 0),
        ("2026-W50", date(2026, 12, 7), date(2026, 12, 8), 1),
    ]
    # Wednesday to Tuesday: 16+36+16+26+26 slots of the office, 5*57+24 of the centre
    assert result.total.seats_capacity == 5 * 120 + (5 * 57 + 24) * 2 * 2
    assert result.total.online_share == 0.0
    assert result.total.no_show_rate is None


async def test_one_service(booked: Core) -> None:
    result = await stats(booked, date(2026, 11, 30), date(2026, 12, 13), "hund-anmelden")
    assert result.service_id == "hund-anmelden"
    w49, w50 = result.weeks
    assert (w49.bookings, w49.online, w49.phone, w49.no_show_rate) == (3, 2, 1, 0.5)
    assert [s.service_id for s in w49.services] == ["hund-anmelden"]
    # utilisation of the clerks' calendars the service books, whoever booked their seats
    assert (w49.seats_booked, w49.seats_capacity, w49.utilisation) == (3, 360, 0.0083)
    assert (w50.bookings, w50.services) == (0, [])
    assert (w50.seats_booked, w50.seats_capacity) == (3, 360)
    assert {c.calendar_id for c in result.total.calendars} == {
        "sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3"
    }  # fmt: skip


async def imported(core: Core, n: int, start: datetime) -> None:
    """A booking carried over at an odd hour (no opening hours reach past midnight)."""
    async with core.sessions() as session, session.begin():
        session.add(
            m.Booking(
                id=f"imported-{n}", reference=f"IMPORT{n:02d}", status="confirmed",
                channel="counter", location_id="rathaus", starts_at=start,
                ends_at=start + timedelta(minutes=15), created_at=core.clock.now(),
                updated_at=core.clock.now(),
                appointments=[
                    m.Appointment(
                        service_ids=["meldebescheinigung"], starts_at=start,
                        ends_at=start + timedelta(minutes=15), calendar_ids=["sachbearbeitung-1"],
                    )
                ],
            )
        )  # fmt: skip


async def test_weeks_by_local_date_across_the_dst_change(core: Core, clock: ManualClock) -> None:
    """Summer time starts on Sunday 2027-03-28: Monday 00:30 is 22:30 UTC on Sunday then, while
    a week earlier it was 23:30 UTC. Good Friday and Easter Monday are closed."""
    clock.set(datetime(2027, 3, 15, 7, 0, tzinfo=UTC))
    await core.materialize()
    await book(core, 1, "hund-anmelden", "2027-03-25T17:45:00+01:00")
    await book(core, 2, "hund-anmelden", "2027-03-30T08:00:00+02:00", "phone")
    await imported(core, 1, datetime(2027, 3, 21, 23, 30, tzinfo=UTC))  # Mon 22nd, 00:30 CET
    await imported(core, 2, datetime(2027, 3, 28, 22, 30, tzinfo=UTC))  # Mon 29th, 00:30 CEST
    await imported(core, 3, datetime(2027, 3, 21, 22, 30, tzinfo=UTC))  # Sun 21st, before
    await imported(core, 4, datetime(2027, 4, 4, 22, 30, tzinfo=UTC))  # Mon 5th, after
    result = await stats(core, date(2027, 3, 22), date(2027, 4, 4))
    w12, w13 = result.weeks
    assert (w12.label, w12.bookings, w12.online, w12.counter) == ("2027-W12", 2, 1, 1)
    assert (w13.label, w13.bookings, w13.phone, w13.counter) == ("2027-W13", 2, 1, 1)
    # W12 without Good Friday: office 26+26+16+36 slots, centre 4*57+24; W13 without Monday
    assert w12.seats_capacity == 5 * 104 + 2 * 2 * (4 * 57 + 24)
    assert w13.seats_capacity == 5 * 94 + 2 * 2 * (4 * 57 + 24)
    assert (w12.seats_booked, w13.seats_booked) == (1, 1)  # imported rows hold no seats
    assert result.total.bookings == 4


def test_iso_weeks_across_a_year() -> None:
    assert list(iso_weeks(date(2026, 12, 30), date(2027, 1, 5))) == [
        ("2026-W53", date(2026, 12, 30), date(2027, 1, 3)),
        ("2027-W01", date(2027, 1, 4), date(2027, 1, 5)),
    ]


async def test_range_and_service_are_checked(core: Core) -> None:
    first = date(2026, 11, 23)
    assert len((await stats(core, first, first + timedelta(days=92))).weeks) == 14
    for last in (first + timedelta(days=93), first - timedelta(days=1)):
        with pytest.raises(ValidationFailed) as failed:
            await stats(core, first, last)
        assert [e.field for e in failed.value.errors] == ["to"]
    with pytest.raises(NotFound):
        await stats(core, first, first, "no-such-service")


async def test_cli_prints_the_table(
    booked: Core,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SCHEDULER_DATABASE_URL", settings.database_url)
    monkeypatch.setattr(cli, "setup_logging", lambda level: None)
    args = ["stats", "--from", "2026-11-30", "--to", "2026-12-13"]
    assert await asyncio.to_thread(cli.main, args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "WEEK", "FROM", "TO", "BOOKINGS", "ONLINE", "PHONE", "COUNTER", "ONLINE", "%",
        "CANCELLED", "NO-SHOW", "%", "UTILISATION", "%",
    ]  # fmt: skip
    assert lines[1].split() == [
        "2026-W49", "2026-11-30", "2026-12-06", "3", "2", "1", "0", "66.7", "0", "50.0", "0.2"
    ]  # fmt: skip
    assert lines[2].split() == [
        "2026-W50", "2026-12-07", "2026-12-13", "2", "0", "0", "1", "0.0", "1", "-", "0.3"
    ]  # fmt: skip
    assert lines[3].split() == [
        "TOTAL", "2026-11-30", "2026-12-13", "5", "2", "1", "1", "50.0", "1", "50.0", "0.2"
    ]  # fmt: skip
    assert lines[4] == ""
    assert [line.split() for line in lines[6:]] == [
        ["hund-anmelden", "3", "2", "1", "0", "0"],
        ["personalausweis-beantragen", "1", "0", "0", "1", "0"],
        ["meldebescheinigung", "1", "0", "0", "0", "1"],
    ]
    args = ["stats", "--from", "2026-11-30", "--to", "2027-03-03"]
    assert await asyncio.to_thread(cli.main, args) == 2
    assert "to: range_too_long (max=92)" in capsys.readouterr().err
    args = ["stats", "--from", "2026-11-30", "--to", "2026-12-13", "--service", "nope"]
    assert await asyncio.to_thread(cli.main, args) == 1
