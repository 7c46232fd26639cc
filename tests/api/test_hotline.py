"""The hotline: next free starts, booking for a caller, finding the booking again, the audit
trail; and staff closures that move or cancel the bookings inside, also while citizens book."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from scheduler.booking import models as m
from scheduler.booking.core import Core
from tests.api.test_keys import assert_problem, bearer, make_key

Client = AsyncTestClient[Litestar]
DAY = "2026-11-30"  # a Monday; the citizens' office opens at 08:00
CLERKS = ["sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3"]
CALLER = {"name": "Hildegard Krause", "birth_date": "1941-05-17", "phone": "+49 3935 12345"}


@pytest.fixture
async def agent(core: Core) -> dict[str, str]:
    return bearer(await make_key(core, "agent"))


@pytest.fixture
async def admin(core: Core) -> dict[str, str]:
    return bearer(await make_key(core, "admin"))


@pytest.fixture
async def staff(core: Core) -> dict[str, str]:
    return bearer(await make_key(core, "staff", ["sachbearbeitung-1"]))


async def book(
    client: Client, start: str, headers: dict[str, str] | None = None, **citizen: Any
) -> dict[str, Any]:
    body = {
        "service_id": "hund-anmelden",
        "start": start,
        "citizen": citizen or {"name": "Erika Mustermann", "email": "erika@example.org"},
    }
    response = await client.post("/api/v1/bookings", json=body, headers=headers or {})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def free_at(client: Client, day: str = DAY) -> dict[str, int]:
    rows = (
        await client.get("/api/v1/services/hund-anmelden/slots", params={"from": day, "to": day})
    ).json()
    return {r["start"]: r["free"] for r in rows}


# -- next free starts ------------------------------------------------------------------------


async def test_next_slots_are_the_earliest_starts(client: Client, agent: dict[str, str]) -> None:
    response = await client.get(
        "/api/v1/agent/next-slots",
        params={"service": "hund-anmelden", "limit": "3"},
        headers=agent,
    )
    assert response.status_code == 200, response.text
    rows = response.json()
    assert [r["start"] for r in rows] == sorted(r["start"] for r in rows)
    assert len(rows) == 3
    first = rows[0]
    assert first["service_id"] == "hund-anmelden"
    assert first["location_id"] == "rathaus"
    assert first["free"] == 3
    # the same starts the public slots list begins with (T0 is Monday 07:00 in Berlin)
    public = (await client.get("/api/v1/services/hund-anmelden/slots")).json()
    assert [r["start"] for r in rows] == [r["start"] for r in public[:3]]

    later = await client.get(
        "/api/v1/agent/next-slots",
        params={"service": "hund-anmelden", "after": "2026-12-24T20:00:00+01:00", "limit": "1"},
        headers=agent,
    )
    # after Christmas Eve: both Christmas holidays, then Sunday: next is Monday 28 December
    assert later.json()[0]["start"] == "2026-12-28T08:00:00+01:00"


async def test_next_slots_across_services_and_locations(
    client: Client, agent: dict[str, str]
) -> None:
    rows = (
        await client.get("/api/v1/agent/next-slots", params={"limit": "50"}, headers=agent)
    ).json()
    assert {r["location_id"] for r in rows} == {"rathaus", "impfzentrum"} or len(
        {r["service_id"] for r in rows}
    ) > 1
    assert [r["start"] for r in rows] == sorted(r["start"] for r in rows)
    only = (
        await client.get(
            "/api/v1/agent/next-slots",
            params={"location": "impfzentrum", "limit": "5"},
            headers=agent,
        )
    ).json()
    assert only
    assert {r["location_id"] for r in only} == {"impfzentrum"}


async def test_next_slots_refusals(
    client: Client, agent: dict[str, str], staff: dict[str, str]
) -> None:
    url = "/api/v1/agent/next-slots"
    assert_problem(await client.get(url), 401, "unauthorized")
    assert_problem(await client.get(url, headers=staff), 403, "forbidden")
    assert_problem(
        await client.get(url, params={"limit": "0"}, headers=agent), 422, "validation_failed"
    )
    assert_problem(
        await client.get(url, params={"service": "nope"}, headers=agent), 404, "not_found"
    )
    assert_problem(
        await client.get(url, params={"location": "nope"}, headers=agent), 404, "not_found"
    )
    naive = await client.get(url, params={"after": "2026-12-01T09:00"}, headers=agent)
    assert_problem(naive, 422, "validation_failed")


# -- a caller's bookings and the audit trail ----------------------------------------------


async def test_book_for_a_caller_find_again_and_audit(
    client: Client, agent: dict[str, str], admin: dict[str, str], staff: dict[str, str]
) -> None:
    booked = await book(client, f"{DAY}T10:00:00+01:00", agent, **CALLER)
    assert booked["channel"] == "phone"
    assert " wie " in booked["spelled_reference"]
    by_name = await client.get(
        "/api/v1/agent/bookings",
        params={"name": "  hildegard   KRAUSE ", "birth_date": "1941-05-17"},
        headers=agent,
    )
    assert by_name.status_code == 200, by_name.text
    (found,) = by_name.json()
    assert found["reference"] == booked["reference"]
    assert found["spelled_reference"] == booked["spelled_reference"]
    assert by_name.headers["cache-control"] == "no-store"
    by_code = await client.get(
        "/api/v1/agent/bookings",
        params={"reference": booked["reference"].lower()},
        headers=agent,
    )
    assert [b["reference"] for b in by_code.json()] == [booked["reference"]]
    other_day = await client.get(
        "/api/v1/agent/bookings",
        params={"name": CALLER["name"], "birth_date": "1941-05-18"},
        headers=agent,
    )
    assert other_day.json() == []
    half = await client.get("/api/v1/agent/bookings", params={"name": "X"}, headers=agent)
    assert_problem(half, 422, "validation_failed")
    assert_problem(
        await client.get("/api/v1/agent/bookings", params={"reference": "ABCD-EFGH"}),
        401,
        "unauthorized",
    )

    trail = await client.get(
        "/api/v1/audit", params={"booking": booked["reference"]}, headers=admin
    )
    assert trail.status_code == 200, trail.text
    actions = [e["action"] for e in trail.json()]
    assert actions[0] == "booking.create"
    assert actions.count("booking.lookup") == 2
    assert all(e["actor"].startswith("key:") for e in trail.json())
    assert "Hildegard" not in trail.text
    assert_problem(
        await client.get("/api/v1/audit", params={"booking": booked["reference"]}, headers=agent),
        403,
        "forbidden",
    )
    assert_problem(
        await client.get("/api/v1/audit", params={"booking": booked["reference"]}, headers=staff),
        403,
        "forbidden",
    )
    missing = await client.get("/api/v1/audit", params={"booking": "ABCD-EFGH"}, headers=admin)
    assert_problem(missing, 404, "not_found")


# -- closures ----------------------------------------------------------------------------------


def closure(policy: str, start: str = "08:00", end: str = "12:00") -> dict[str, str]:
    return {
        "from": f"{DAY}T{start}:00+01:00",
        "to": f"{DAY}T{end}:00+01:00",
        "reason": "Krankheit",
        "policy": policy,
    }


async def calendars_of(core: Core, reference: str) -> list[str]:
    async with core.sessions() as session:
        booking = await session.scalar(
            select(m.Booking).where(m.Booking.reference == reference.replace("-", ""))
        )
        assert booking is not None
        rows = await session.execute(
            select(m.Slot.calendar_id, m.Slot.starts_at)
            .join(m.BookingSlot, m.BookingSlot.slot_id == m.Slot.id)
            .where(m.BookingSlot.booking_id == booking.id)
        )
        return [c for c, _ in rows]


async def test_closure_moves_bookings_to_the_nearest_free_start(
    client: Client, core: Core, staff: dict[str, str]
) -> None:
    nine = f"{DAY}T09:00:00+01:00"
    refs = [
        (await book(client, nine, email=f"p{n}@example.org", name=f"Person {n}"))["reference"]
        for n in range(3)
    ]
    assert nine not in await free_at(client)  # all three clerks are taken at 09:00
    on_first = [r for r in refs if await calendars_of(core, r) == ["sachbearbeitung-1"]]
    assert len(on_first) == 1
    url = "/api/v1/calendars/sachbearbeitung-1/closures"
    response = await client.post(url, json=closure("move"), headers=staff)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["created"] is True
    (result,) = answer["bookings"]
    assert result["reference"] == on_first[0]
    assert result["outcome"] == "moved"
    assert result["start"] == nine
    # 08:45 and 09:15 are equally near; the earlier wins. Clerks 2 and 3 are free then.
    assert result["new_start"] == f"{DAY}T08:45:00+01:00"
    assert (await calendars_of(core, on_first[0]))[0] in ("sachbearbeitung-2", "sachbearbeitung-3")
    free = await free_at(client)
    assert nine not in free  # the seat left behind on the closed clerk is not offered
    assert free[f"{DAY}T08:45:00+01:00"] == 1
    assert free[f"{DAY}T11:00:00+01:00"] == 2  # the closed clerk is missing until noon
    assert free[f"{DAY}T13:00:00+01:00"] == 3  # after the lunch break: all three again
    async with core.sessions() as session:
        kinds = list(
            await session.scalars(
                select(m.Notification.kind)
                .join(m.Booking, m.Booking.id == m.Notification.booking_id)
                .where(m.Booking.reference == on_first[0].replace("-", ""))
            )
        )
        over = await session.scalar(
            select(func.count()).select_from(m.Slot).where(m.Slot.booked > m.Slot.capacity)
        )
    assert "reschedule" in kinds
    assert over == 0

    again = await client.post(url, json=closure("move"), headers=staff)
    assert again.status_code == 200
    assert again.json() == {"closure_id": answer["closure_id"], "created": False, "bookings": []}


async def test_closure_cancels_and_the_seats_stay_closed(
    client: Client, core: Core, admin: dict[str, str]
) -> None:
    ten = f"{DAY}T10:00:00+01:00"
    for n in range(3):
        await book(client, ten, email=f"p{n}@example.org", name=f"Person {n}")
    response = await client.post(
        "/api/v1/calendars/sachbearbeitung-2/closures", json=closure("cancel"), headers=admin
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()["bookings"]
    assert result["outcome"] == "cancelled"
    assert ten not in await free_at(client)
    async with core.sessions() as session:
        booking = await session.scalar(
            select(m.Booking).where(m.Booking.reference == result["reference"].replace("-", ""))
        )
        assert booking is not None
        assert booking.status == "cancelled"
        kinds = list(
            await session.scalars(
                select(m.Notification.kind).where(m.Notification.booking_id == booking.id)
            )
        )
    assert "cancellation" in kinds


async def test_closure_refusals(
    client: Client, core: Core, agent: dict[str, str], staff: dict[str, str]
) -> None:
    mine = "/api/v1/calendars/sachbearbeitung-1/closures"
    other = "/api/v1/calendars/sachbearbeitung-2/closures"
    assert_problem(await client.post(mine, json=closure("move")), 401, "unauthorized")
    assert_problem(await client.post(mine, json=closure("move"), headers=agent), 403, "forbidden")
    not_mine = await client.post(other, json=closure("move"), headers=staff)
    missing = await client.post(
        "/api/v1/calendars/nope/closures", json=closure("move"), headers=staff
    )
    assert_problem(not_mine, 404, "not_found")
    # the same answer as for a calendar that does not exist (only the id given differs)
    assert (
        not_mine.json()["detail"].replace("sachbearbeitung-2", "nope") == missing.json()["detail"]
    )
    assert {**not_mine.json(), "detail": ""} == {**missing.json(), "detail": ""}
    for body in (
        closure("sometimes"),
        closure("move", "12:00", "08:00"),
        {**closure("move"), "reason": ""},
        {**closure("move"), "from": "2026-11-30"},
    ):
        assert_problem(await client.post(mine, json=body, headers=staff), 422, "validation_failed")
    async with core.sessions() as session:  # nothing half-written
        count = await session.scalar(
            select(func.count()).select_from(m.Closure).where(m.Closure.source == "staff")
        )
    assert count == 0


async def test_closure_while_citizens_book_loses_nothing_and_moves_nothing_twice(
    client: Client, core: Core, staff: dict[str, str]
) -> None:
    starts = [f"{DAY}T{h:02d}:{mi:02d}:00+01:00" for h in (8, 9, 10, 11) for mi in (0, 15, 30, 45)]
    for n, start in enumerate(starts[:8]):
        await book(client, start, email=f"early{n}@example.org", name=f"Early {n}")

    async def citizen(n: int) -> int:
        body = {
            "service_id": "hund-anmelden",
            "start": starts[n % len(starts)],
            "citizen": {"name": f"Late {n}", "email": f"late{n}@example.org"},
        }
        return (await client.post("/api/v1/bookings", json=body)).status_code

    url = "/api/v1/calendars/sachbearbeitung-1/closures"
    results = await asyncio.gather(
        client.post(url, json=closure("move"), headers=staff),
        *(citizen(n) for n in range(16)),  # within the per-address hold limit
        client.post(url, json=closure("move"), headers=staff),
    )
    first, *codes, second = results
    assert first.status_code == second.status_code == 200
    assert set(codes) <= {201, 409}
    async with core.sessions() as session:
        inside = await session.scalar(
            select(func.count())
            .select_from(m.BookingSlot)
            .join(m.Slot, m.Slot.id == m.BookingSlot.slot_id)
            .join(m.Booking, m.Booking.id == m.BookingSlot.booking_id)
            .where(
                m.Slot.calendar_id == "sachbearbeitung-1",
                m.Slot.starts_at >= datetime.fromisoformat(f"{DAY}T08:00:00+01:00"),
                m.Slot.starts_at < datetime.fromisoformat(f"{DAY}T12:00:00+01:00"),
                m.Booking.status == "confirmed",
            )
        )
        over = await session.scalar(
            select(func.count()).select_from(m.Slot).where(m.Slot.booked > m.Slot.capacity)
        )
        moves = list(
            await session.execute(
                select(m.AuditEvent.booking_id, func.count())
                .where(m.AuditEvent.action == "booking.reschedule")
                .group_by(m.AuditEvent.booking_id)
            )
        )
        seats = await session.scalar(select(func.coalesce(func.sum(m.Slot.booked), 0)))
        held = await session.scalar(
            select(func.coalesce(func.sum(m.BookingSlot.seats), 0))
            .join(m.Booking, m.Booking.id == m.BookingSlot.booking_id)
            .where(m.Booking.status == "confirmed")
        )
    outcomes = [r["outcome"] for r in first.json()["bookings"] + second.json()["bookings"]]
    assert inside == 0 or "not_moved" in outcomes
    assert over == 0
    assert all(n == 1 for _, n in moves)  # none moved twice
    assert seats == held  # every seat in SQL belongs to a confirmed booking, none lost


async def test_a_seat_freed_in_a_closed_slot_is_not_offered_again(
    client: Client, core: Core, staff: dict[str, str]
) -> None:
    nine = f"{DAY}T09:00:00+01:00"
    booked = [
        await book(client, nine, email=f"p{n}@example.org", name=f"Person {n}") for n in range(3)
    ]
    url = "/api/v1/calendars/sachbearbeitung-1/closures"
    # the whole Monday: nowhere to move within the closed clerk, but the other two have room
    response = await client.post(url, json=closure("cancel"), headers=staff)
    assert response.status_code == 200
    # the citizens on the other clerks cancel themselves: those seats are open again
    for b in booked:
        if b["reference"] not in {r["reference"] for r in response.json()["bookings"]}:
            headers = {"Authorization": f"Bearer {b['manage_token']}"}
            cancelled = await client.post(
                f"/api/v1/bookings/{b['reference']}/cancel", headers=headers
            )
            assert cancelled.status_code == 200
    assert (await free_at(client))[nine] == 2  # two clerks; the closed one stays closed
    async with core.sessions() as session:
        open_closed = await session.scalar(
            select(func.count())
            .select_from(m.Slot)
            .where(
                m.Slot.calendar_id == "sachbearbeitung-1",
                m.Slot.starts_at >= datetime.fromisoformat(f"{DAY}T08:00:00+01:00"),
                m.Slot.starts_at < datetime.fromisoformat(f"{DAY}T12:00:00+01:00"),
                m.Slot.capacity > m.Slot.booked,
            )
        )
    assert open_closed == 0


async def test_a_booking_moved_away_meanwhile_is_not_cancelled(
    client: Client, core: Core, staff: dict[str, str]
) -> None:
    from scheduler.booking.bookings import Actor, Inside
    from scheduler.booking.errors import AlreadyChanged

    nine = f"{DAY}T09:00:00+01:00"
    booked = await book(client, nine)
    found = await core.bookings.find(booked["reference"])
    calendar = found.appointments[0].calendar_ids[0]
    start = datetime.fromisoformat(f"{DAY}T08:00:00+01:00")
    end = datetime.fromisoformat(f"{DAY}T10:00:00+01:00")
    hold = await core.bookings.hold(
        ["hund-anmelden"], datetime.fromisoformat(f"{DAY}T14:00:00+01:00"), 1, "online"
    )
    await core.bookings.reschedule(found.id, hold.hold_id, Actor())  # the citizen moves it
    with pytest.raises(AlreadyChanged):
        await core.bookings.cancel(found.id, Actor(), only_inside=Inside(calendar, start, end))
    assert (await core.bookings.find(booked["reference"])).status == "confirmed"


async def test_a_closure_leaves_visits_that_already_began(
    client: Client, core: Core, clock: Any, staff: dict[str, str]
) -> None:
    refs = [
        (
            await book(
                client, f"{DAY}T{t}:00+01:00", email=f"{n}@example.org", name=f"P {chr(65 + n)}"
            )
        )
        for n, t in enumerate(["08:00", "08:00", "08:00", "10:00", "10:00", "10:00"])
    ]
    clock.set(datetime.fromisoformat(f"{DAY}T09:00:00+01:00"))  # the clerk goes home at nine
    response = await client.post(
        "/api/v1/calendars/sachbearbeitung-1/closures", json=closure("cancel"), headers=staff
    )
    assert response.status_code == 200
    results = response.json()["bookings"]
    assert [r["start"] for r in results] == [f"{DAY}T10:00:00+01:00"]  # not the 08:00 visit
    assert len(refs) == 6
