"""Moving a vaccination series: the first dose keeps the second inside its interval or moves it
too, the second dose moves alone inside its interval, eligibility is judged again on a new first
day, and every move leaves SQL and the Redis counters agreeing."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.booking import models as m
from scheduler.booking.core import Core
from tests.api.test_campaign import FIRST, MONDAY, Client, booked, citizen, free, hold
from tests.api.test_keys import assert_problem, bearer, make_key
from tests.booking.test_contingents import local

SECOND_DAY = date(2026, 12, 21)  # the earliest second dose of a first on MONDAY (21 days)


@pytest.fixture
async def agent(core: Core) -> dict[str, str]:
    return bearer(await make_key(core, "agent"))


async def book_series(client: Client, agent: dict[str, str], **person: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/bookings",
        json={
            "service_id": FIRST, "start": local(MONDAY, 8).isoformat(),
            "citizen": citizen(**person), "series": True,
        },
        headers=agent,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking["appointments"][1]["start"].startswith(str(SECOND_DAY))
    return booking


async def move(
    client: Client, booking: dict[str, Any], headers: dict[str, str], **body: Any
) -> Any:
    return await client.post(
        f"/api/v1/bookings/{booking['reference']}/reschedule", json=body, headers=headers
    )


def starts(booking: dict[str, Any]) -> list[str]:
    return [a["start"] for a in booking["appointments"]]


async def reminders(core: Core) -> list[Any]:
    async with core.sessions() as session:
        return sorted(
            await session.scalars(
                select(m.Notification.due_at).where(
                    m.Notification.kind == "reminder", m.Notification.status == "pending"
                )
            )
        )


async def test_moving_the_first_dose_keeps_the_second_while_the_interval_allows(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    booking = await book_series(client, agent)
    second = booking["appointments"][1]["start"]
    # later the same day, and to the Friday before: the 21 December is 21..42 days after both
    for when in (local(MONDAY, 9, 30), local(date(2026, 11, 27), 10)):
        response = await move(client, booking, agent, start=when.isoformat())
        assert response.status_code == 200, response.text
        assert starts(response.json()) == [when.isoformat(), second]
    assert await booked(core) == {date(2026, 11, 27): 1, SECOND_DAY: 1}
    assert await free(client, agent, FIRST, MONDAY) == 228  # every seat of the Monday is back
    # one reminder set per dose, at the new times only
    due = await reminders(core)
    hours = core.catalog.services[FIRST].reminder_hours
    assert len(due) == 2 * len(hours)
    assert all(d.date() <= date(2026, 11, 27) or d.date() >= date(2026, 12, 19) for d in due)


async def test_moving_the_first_dose_out_of_the_interval_moves_the_second_too(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    booking = await book_series(client, agent)
    # one day later: the second dose must be on the 22 December at the earliest
    response = await move(client, booking, agent, start=local(MONDAY + timedelta(1), 8).isoformat())
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["appointments"][1]["start"].startswith("2026-12-22")
    assert await booked(core) == {MONDAY + timedelta(1): 1, date(2026, 12, 22): 1}
    # or to a chosen second date
    response = await move(
        client, booking, agent,
        start=local(MONDAY, 8).isoformat(), second_start=local(date(2027, 1, 4), 9).isoformat(),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert starts(response.json())[1] == local(date(2027, 1, 4), 9).isoformat()
    assert await booked(core) == {MONDAY: 1, date(2027, 1, 4): 1}
    # a chosen date outside the interval moves nothing
    response = await move(
        client, booking, agent,
        start=local(MONDAY, 8).isoformat(), second_start=local(date(2027, 1, 20), 9).isoformat(),
    )  # fmt: skip
    assert_problem(response, 422, "validation_failed")
    assert await booked(core) == {MONDAY: 1, date(2027, 1, 4): 1}


async def test_the_second_dose_moves_alone_inside_its_interval(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    booking = await book_series(client, agent)
    first = booking["appointments"][0]["start"]
    target = local(date(2026, 12, 23), 14)
    response = await move(client, booking, agent, second_start=target.isoformat())
    assert response.status_code == 200, response.text
    assert starts(response.json()) == [first, target.isoformat()]
    assert await booked(core) == {MONDAY: 1, date(2026, 12, 23): 1}
    outside = await move(
        client, booking, agent, second_start=local(date(2027, 1, 12), 9).isoformat()
    )
    body = assert_problem(outside, 422, "validation_failed")
    assert body["errors"][0]["field"] == "second_start"
    assert "21 bis 42 Tage" in body["errors"][0]["message"]
    # a full target: nothing moves, and the hold's seats are given back
    async with core.sessions() as session, session.begin():
        slots = await session.scalars(
            select(m.Slot).where(m.Slot.day == date(2026, 12, 28), m.Slot.calendar_id.like("impf%"))
        )
        for slot in slots:
            slot.capacity = slot.booked
    await core.rebuild_counters()
    full = await move(client, booking, agent, second_start=local(date(2026, 12, 28), 9).isoformat())
    assert_problem(full, 409, "slot_full")
    assert await booked(core) == {MONDAY: 1, date(2026, 12, 23): 1}


async def test_a_moved_first_dose_must_still_find_the_person_eligible(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    # 76 on the Monday of the first dose; on the Friday before, 75
    booking = await book_series(client, agent, birth="1950-11-30")
    response = await move(client, booking, agent, start=local(date(2026, 11, 27), 10).isoformat())
    body = assert_problem(response, 403, "not_eligible")
    assert body["reason"] == "too_young"
    assert await booked(core) == {MONDAY: 1, SECOND_DAY: 1}


async def test_the_citizen_moves_their_series_with_the_manage_token(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    booking = await book_series(client, agent)
    token = {"Authorization": f"Bearer {booking['manage_token']}"}
    response = await move(client, booking, token, start=local(MONDAY, 10).isoformat())
    assert response.status_code == 200, response.text
    # a hold of the first dose alone, made for the move, works as well (the series stays one)
    held = await hold(client, agent, start=local(MONDAY, 11).isoformat())
    assert held.status_code == 201, held.text
    response = await move(client, booking, token, hold_id=held.json()["hold_id"])
    assert response.status_code == 200, response.text
    assert starts(response.json())[0] == local(MONDAY, 11).isoformat()
    # nothing else: an empty body, or both ways at once
    assert_problem(await move(client, booking, token), 422, "validation_failed")
    both = await move(client, booking, token, hold_id="x" * 30, start=local(MONDAY, 9).isoformat())
    assert_problem(both, 422, "validation_failed")
    assert await booked(core) == {MONDAY: 1, SECOND_DAY: 1}


async def test_an_ordinary_booking_moves_in_one_step(client: Client, core: Core) -> None:
    day = date(2026, 11, 26)
    made = await client.post(
        "/api/v1/bookings",
        json={
            "service_id": "hund-anmelden", "start": local(day, 9).isoformat(),
            "citizen": {"name": "Erika Muster", "email": "erika@example.org"},
        },
    )  # fmt: skip
    assert made.status_code == 201, made.text
    booking = made.json()
    token = {"Authorization": f"Bearer {booking['manage_token']}"}
    response = await move(client, booking, token, start=local(day, 10).isoformat())
    assert response.status_code == 200, response.text
    assert response.json()["start"] == local(day, 10).isoformat()
    async with core.sessions() as session:
        seats = list(
            await session.execute(
                select(m.Slot.starts_at, m.BookingSlot.seats).join(
                    m.BookingSlot, m.BookingSlot.slot_id == m.Slot.id
                )
            )
        )
    assert [(at, n) for at, n in seats] == [(local(day, 10), 1)]  # the old seat is given back
    assert_problem(
        await move(client, booking, token, second_start=local(day, 11).isoformat()),
        422, "validation_failed",
    )  # fmt: skip


async def test_closing_a_vaccination_day_moves_each_dose_inside(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    admin = bearer(await make_key(core, "admin"))
    booking = await book_series(client, agent)
    first = booking["appointments"][0]["start"]
    # both lines closed on the day of the second dose: it moves inside its interval (the
    # nearest free start is the next day), the first dose stays
    for line in ("impflinie-1", "impflinie-2"):
        response = await client.post(
            f"/api/v1/calendars/{line}/closures",
            json={
                "from": local(SECOND_DAY, 0).isoformat(),
                "to": local(SECOND_DAY + timedelta(1), 0).isoformat(),
                "reason": "Fortbildung", "policy": "move",
            },
            headers=admin,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        results = response.json()["bookings"]
        assert [r["outcome"] for r in results] == (["moved"] if results else [])
    moved = (await client.get(f"/api/v1/bookings/{booking['reference']}", headers=agent)).json()
    assert moved["appointments"][0]["start"] == first
    assert moved["appointments"][1]["start"].startswith(str(SECOND_DAY + timedelta(1)))
    assert await booked(core) == {MONDAY: 1, SECOND_DAY + timedelta(1): 1}
