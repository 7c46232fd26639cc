"""The vaccination campaign through the HTTP API: eligibility answers an agent can read out,
the booking window, and the series (first and second dose in one hold and one booking)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text, update

from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from tests.api.test_keys import assert_problem, bearer, make_key
from tests.booking.test_campaign import set_window
from tests.booking.test_contingents import local

Client = AsyncTestClient[Litestar]
FIRST, SECOND = "impfung-erstimpfung", "impfung-zweitimpfung"
MONDAY = date(2026, 11, 30)
START = local(MONDAY, 8).isoformat()
LINES = ("impflinie-1", "impflinie-2")


def citizen(n: int = 0, birth: str | None = None, postcode: str = "39517") -> dict[str, Any]:
    """Person ``n`` (names are compared without digits: the birth dates tell them apart)."""
    return {
        "name": f"Person {n}",
        "email": f"p{n}@example.org",
        "birth_date": birth or str(date(1930, 1, 1) + timedelta(days=n)),
        "postcode": postcode,
    }


@pytest.fixture
async def agent(core: Core) -> dict[str, str]:
    return bearer(await make_key(core, "agent"))


async def hold(client: Client, headers: dict[str, str], **body: Any) -> Any:
    body = {"service_id": FIRST, "start": START, "citizen": citizen()} | body
    return await client.post("/api/v1/holds", json=body, headers=headers)


async def free(client: Client, headers: dict[str, str], service: str, day: date) -> int:
    response = await client.get(
        f"/api/v1/services/{service}/slots",
        params={"from": str(day), "to": str(day)},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return sum(r["free"] for r in response.json())


async def test_the_76th_birthday_on_the_appointment_day_is_eligible(
    client: Client, agent: dict[str, str]
) -> None:
    ok = await hold(client, agent, citizen=citizen(birth="1950-11-30"))
    assert ok.status_code == 201, ok.text
    young = await hold(client, agent, citizen=citizen(birth="1950-12-01"))
    body = assert_problem(young, 403, "not_eligible")
    assert body["reason"] == "too_young"
    assert body["min_age"] == 76
    assert body["eligible_from"] == "2026-12-01"
    assert "ab dem 01.12.2026" in body["detail"]
    # on the day of the 76th birthday it works
    later = await hold(
        client,
        agent,
        citizen=citizen(birth="1950-12-01"),
        start=local(MONDAY + timedelta(1), 8).isoformat(),
    )
    assert later.status_code == 201, later.text


async def test_residents_only_and_the_data_it_needs(client: Client, agent: dict[str, str]) -> None:
    body = assert_problem(
        await hold(client, agent, citizen=citizen(postcode="39576")), 403, "not_eligible"
    )
    assert body["reason"] == "not_resident"
    assert "39517" in body["detail"]
    missing = await hold(client, agent, citizen={"name": "Erna Alt", "phone": "+4939351123"})
    fields = {e["field"] for e in assert_problem(missing, 422, "validation_failed")["errors"]}
    assert fields == {"citizen.birth_date", "citizen.postcode"}
    nobody = await client.post(
        "/api/v1/holds", json={"service_id": FIRST, "start": START}, headers=agent
    )
    assert assert_problem(nobody, 422, "validation_failed")["errors"][0]["field"] == "citizen"


@pytest.fixture
async def opens_tomorrow(core: Core, clock: ManualClock) -> None:
    """The campaign opens a day after T0 (set before the app loads the catalog)."""
    await set_window(core, opens_at=clock.now() + timedelta(days=1))


async def test_before_the_window_opens(
    opens_tomorrow: None, client: Client, core: Core, clock: ManualClock, agent: dict[str, str]
) -> None:
    assert await free(client, agent, FIRST, MONDAY) > 0  # slots stay visible
    clock.advance(timedelta(days=1) - timedelta(seconds=1))
    closed = assert_problem(await hold(client, agent), 403, "window_closed")
    assert closed["opens_at"] == "2026-11-24T07:00:00+01:00"
    assert "24.11.2026 um 07:00 Uhr" in closed["detail"]
    one_step = await client.post(
        "/api/v1/bookings",
        json={"service_id": FIRST, "start": START, "citizen": citizen()},
        headers=agent,
    )
    assert_problem(one_step, 403, "window_closed")
    clock.advance(timedelta(seconds=1))
    assert (await hold(client, agent)).status_code == 201


async def test_a_series_hold_takes_the_earliest_second_start(
    client: Client, agent: dict[str, str]
) -> None:
    response = await hold(client, agent, series=True)
    assert response.status_code == 201, response.text
    appointments = response.json()["appointments"]
    assert appointments == [
        {"service_id": FIRST, "start": START, "end": "2026-11-30T08:10:00+01:00"},
        {"service_id": SECOND, "start": "2026-12-21T08:00:00+01:00",
         "end": "2026-12-21T08:10:00+01:00"},
    ]  # fmt: skip
    chosen = await hold(
        client, agent, series=True, citizen=citizen(1), second_start="2027-01-11T15:00:00+01:00"
    )
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["appointments"][1]["start"] == "2027-01-11T15:00:00+01:00"
    for outside in ("2026-12-20T10:00:00+01:00", "2027-01-12T08:00:00+01:00"):
        wrong = await hold(client, agent, series=True, citizen=citizen(2), second_start=outside)
        errors = assert_problem(wrong, 422, "validation_failed")["errors"]
        assert errors[0]["field"] == "second_start"
    wrong = await hold(client, agent, service_id=SECOND, series=True)
    assert_problem(wrong, 422, "validation_failed")


async def test_a_full_second_dose_interval_holds_nothing(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Slot)
            .where(
                m.Slot.calendar_id.in_(LINES),
                m.Slot.day >= date(2026, 12, 21),
                m.Slot.day <= date(2027, 1, 11),
            )
            .values(capacity=0)
        )
    await core.rebuild_counters()
    before = await free(client, agent, FIRST, MONDAY)
    assert_problem(await hold(client, agent, series=True), 409, "slot_full")
    assert await free(client, agent, FIRST, MONDAY) == before
    assert (await hold(client, agent)).status_code == 201  # a first dose alone still fits


async def booked(core: Core) -> dict[date, int]:
    async with core.sessions() as session:
        rows = await session.execute(
            select(m.Slot.day, func.sum(m.Slot.booked))
            .where(m.Slot.calendar_id.in_(LINES))
            .group_by(m.Slot.day)
        )
        return {day: int(n) for day, n in rows if n}


async def test_confirm_books_both_doses_and_cancel_frees_both(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    before = await free(client, agent, SECOND, date(2026, 12, 21))
    held = (await hold(client, agent, series=True)).json()
    response = await client.post(
        "/api/v1/bookings", json={"hold_id": held["hold_id"], "citizen": citizen()}, headers=agent
    )
    assert response.status_code == 201, response.text
    booking = response.json()
    assert [a["service_id"] for a in booking["appointments"]] == [FIRST, SECOND]
    assert [a["start"] for a in booking["appointments"]] == [
        a["start"] for a in held["appointments"]
    ]
    assert all(len(a["calendar_ids"]) == 1 for a in booking["appointments"])
    assert await booked(core) == {MONDAY: 1, date(2026, 12, 21): 1}
    async with core.sessions() as session:
        positions = list(
            await session.scalars(select(m.Appointment.position).order_by(m.Appointment.position))
        )
        reminders = list(
            await session.scalars(
                select(m.Notification.due_at).where(m.Notification.kind == "reminder")
            )
        )
    assert positions == [0, 1]
    hours = core.catalog.services[SECOND].reminder_hours
    if hours:  # a reminder before each visit
        assert any(d.date() >= date(2026, 12, 19) for d in reminders)
        assert any(d.date() <= MONDAY for d in reminders)
    assert await free(client, agent, SECOND, date(2026, 12, 21)) == before - 1

    # the same person cannot hold or book a second series
    again = await hold(client, agent, series=True, start=local(MONDAY, 9).isoformat())
    assert_problem(again, 409, "limit_reached")
    # a hold of other services cannot move it
    other = await client.post(
        "/api/v1/holds",
        json={"service_id": "hund-anmelden", "start": local(MONDAY, 9).isoformat()},
        headers=agent,
    )
    assert other.status_code == 201, other.text
    moved = await client.post(
        f"/api/v1/bookings/{booking['reference']}/reschedule",
        json={"hold_id": other.json()["hold_id"]},
        headers=agent,
    )
    assert assert_problem(moved, 422, "validation_failed")["errors"][0]["field"] == "hold_id"

    cancelled = await client.post(f"/api/v1/bookings/{booking['reference']}/cancel", headers=agent)
    assert cancelled.status_code == 200, cancelled.text
    assert await booked(core) == {}
    assert await free(client, agent, SECOND, date(2026, 12, 21)) == before
    # cancelled: the person may book a series again, in one step
    one_step = await client.post(
        "/api/v1/bookings",
        json={"service_id": FIRST, "start": START, "citizen": citizen(), "series": True},
        headers=agent,
    )
    assert one_step.status_code == 201, one_step.text
    assert len(one_step.json()["appointments"]) == 2


async def test_two_concurrent_bookings_of_one_person_book_one_series(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    """(Two holds of one person cannot both live — the second replaces the first — so the
    concurrent attempts book in one step.)"""
    answers = await asyncio.gather(
        *(
            client.post(
                "/api/v1/bookings",
                json={"service_id": FIRST, "start": local(MONDAY, h).isoformat(),
                      "series": True, "citizen": citizen()},
                headers=agent,
            )
            for h in (8, 9)
        )
    )  # fmt: skip
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    assert next(a for a in answers if a.status_code == 409).json()["code"] == "limit_reached"
    assert sum((await booked(core)).values()) == 2


async def test_many_concurrent_series_never_leave_half_a_series(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    """200 people race for series; the second doses have room for 114 (one seat per cell on
    the 21 December, nothing else in the interval): exactly 114 series, never one dose alone."""
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Slot)
            .where(
                m.Slot.calendar_id.in_(LINES),
                m.Slot.day >= date(2026, 12, 21),
                m.Slot.day <= date(2027, 1, 11),
            )
            .values(capacity=text("CASE WHEN day = '2026-12-21' THEN 1 ELSE 0 END"))
        )
    await core.rebuild_counters()
    second_day = date(2026, 12, 21)
    assert await free(client, agent, SECOND, second_day) == 57 * 2
    starts = [local(MONDAY, 8) + timedelta(minutes=10 * n) for n in range(24)]
    starts += [local(MONDAY, 12, 30) + timedelta(minutes=10 * n) for n in range(33)]

    async def one(n: int) -> int:
        start = starts[n % 50].isoformat()
        response = await hold(client, agent, series=True, start=start, citizen=citizen(n))
        if response.status_code != 201:
            assert response.json()["code"] == "slot_full", response.text
            return 0
        confirm = await client.post(
            "/api/v1/bookings",
            json={"hold_id": response.json()["hold_id"], "citizen": citizen(n)},
            headers=agent,
        )
        assert confirm.status_code == 201, confirm.text
        return 1

    done = sum(await asyncio.gather(*(one(n) for n in range(200))))
    assert done == 114
    assert await booked(core) == {MONDAY: 114, second_day: 114}
    async with core.sessions() as session:
        over = await session.scalar(
            select(func.count()).select_from(m.Slot).where(m.Slot.booked > m.Slot.capacity)
        )
        per_booking = list(
            await session.execute(
                select(func.count()).select_from(m.Appointment).group_by(m.Appointment.booking_id)
            )
        )
    assert over == 0
    assert {n for (n,) in per_booking} == {2}
    # the Redis counters agree: nothing half-held is left behind
    assert await free(client, agent, SECOND, second_day) == 0
    assert await free(client, agent, FIRST, MONDAY) == 228 - 114


async def test_a_person_holds_one_series_at_a_time(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    """A new series hold of the same person (by name and birth date, or their e-mail address)
    replaces the previous one: hoarding holds is impossible; other people are not touched."""
    before = await free(client, agent, FIRST, MONDAY)
    first = await hold(client, {}, series=True)
    assert first.status_code == 201, first.text
    other = await hold(client, {}, series=True, citizen=citizen(1))
    assert other.status_code == 201, other.text
    assert await free(client, agent, FIRST, MONDAY) == before - 2
    # the same person again (another address): the first hold is given back
    again = citizen() | {"email": "andere@example.org"}
    for hour in (9, 10, 11):
        response = await hold(
            client, {}, series=True, citizen=again, start=local(MONDAY, hour).isoformat()
        )
        assert response.status_code == 201, response.text
    assert await free(client, agent, FIRST, MONDAY) == before - 2
    late = await client.post(
        "/api/v1/bookings", json={"hold_id": first.json()["hold_id"], "citizen": citizen()}
    )
    assert_problem(late, 409, "hold_expired")
    # the same e-mail address under another name is the same person too
    same_mail = citizen(2) | {"email": citizen(1)["email"]}
    assert (await hold(client, {}, series=True, citizen=same_mail)).status_code == 201
    gone = await client.post(
        "/api/v1/bookings", json={"hold_id": other.json()["hold_id"], "citizen": citizen(1)}
    )
    assert_problem(gone, 409, "hold_expired")
    assert await free(client, agent, FIRST, MONDAY) == before - 2


async def test_a_daughter_books_both_parents_series_with_her_address(
    client: Client, core: Core
) -> None:
    """Limits count the attendee, not the contact person: one contact, two series."""
    daughter = {"name": "Karin Krause", "email": "karin@example.org"}
    mother = {"name": "Hildegard Krause", "birth_date": "1941-05-17", "postcode": "39517"}
    father = {"name": "Otto Krause", "birth_date": "1939-02-03", "postcode": "39517"}
    for hour, parent in ((8, mother), (9, father)):
        response = await client.post(
            "/api/v1/bookings",
            json={
                "service_id": FIRST, "start": local(MONDAY, hour).isoformat(), "series": True,
                "citizen": parent, "contact": daughter,
            },
        )  # fmt: skip
        assert response.status_code == 201, response.text
    # the mother a second time, with the same contact: refused
    again = await client.post(
        "/api/v1/bookings",
        json={
            "service_id": FIRST, "start": local(MONDAY, 10).isoformat(), "series": True,
            "citizen": mother, "contact": daughter,
        },
    )  # fmt: skip
    assert_problem(again, 409, "limit_reached")
