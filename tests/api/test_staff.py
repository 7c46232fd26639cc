"""Staff routes through the HTTP API: the day's agenda (JSON, CSV, text), check-in and no-show,
one slot's capacity; who may use them, and that Redis follows a capacity change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from scheduler.booking import models as m
from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from tests.api.test_keys import assert_problem, bearer, make_key

Client = AsyncTestClient[Litestar]
DAY = "2026-11-30"
NINE = "2026-11-30T09:00:00+01:00"
QUARTER_PAST = "2026-11-30T09:15:00+01:00"
CLERKS = ["sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3"]
TODAY_TEN = "2026-11-23T10:00:00+01:00"  # T0 is 07:00 local on Monday 2026-11-23


async def book(
    client: Client, start: str, n: int, service: str = "hund-anmelden", **extra: Any
) -> dict[str, Any]:
    citizen = {"name": f"Person {n}", "email": f"p{n}@example.org", **extra.pop("citizen", {})}
    response = await client.post(
        "/api/v1/bookings",
        json={"service_id": service, "start": start, "citizen": citizen, **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def free(client: Client, start: str = NINE, day: str = DAY) -> int:
    rows = (
        await client.get("/api/v1/services/hund-anmelden/slots", params={"from": day, "to": day})
    ).json()
    return {r["start"]: r["free"] for r in rows}.get(start, 0)


def calendar_of(booking: dict[str, Any]) -> str:
    (calendar,) = booking["appointments"][0]["calendar_ids"]
    return calendar  # type: ignore[no-any-return]


def slot_url(calendar: str, start: str) -> str:
    return f"/api/v1/calendars/{calendar}/slots/{quote(start, safe='')}"


async def audit(core: Core, action: str) -> list[m.AuditEvent]:
    async with core.sessions() as session:
        rows = await session.scalars(
            select(m.AuditEvent).where(m.AuditEvent.action == action).order_by(m.AuditEvent.id)
        )
        return list(rows)


# -- agenda -----------------------------------------------------------------------------------


async def test_agenda_as_json_csv_and_text(client: Client, core: Core) -> None:
    # three people at 09:00 and three at 09:15 fill the three clerks: one of each per calendar
    early = [
        await book(client, NINE, 0, citizen={"phone": "039361 123-45"}),
        await book(client, NINE, 1),
        await book(client, NINE, 2),
    ]
    late = [
        await book(client, QUARTER_PAST, 3,
                   contact={"name": "Tochter Drei", "phone": "+49 170 1234567"}),
        await book(client, QUARTER_PAST, 4),
        await book(client, QUARTER_PAST, 5),
    ]  # fmt: skip
    assert sorted(calendar_of(b) for b in early) == sorted(calendar_of(b) for b in late) == CLERKS
    gone = await book(client, "2026-11-30T10:00:00+01:00", 6)
    cancelled = await client.post(
        f"/api/v1/bookings/{gone['reference']}/cancel",
        headers=bearer(gone["manage_token"]),
    )
    assert cancelled.status_code == 200

    calendar = calendar_of(early[0])
    mine = next(b for b in late if calendar_of(b) == calendar)
    staff = bearer(await make_key(core, "staff", [calendar]))
    url = f"/api/v1/calendars/{calendar}/agenda"
    response = await client.get(url, params={"date": DAY}, headers=staff)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    agenda = response.json()
    assert agenda["calendar_id"] == calendar
    assert agenda["date"] == DAY
    assert [b["reference"] for b in agenda["bookings"]] == [
        early[0]["reference"], mine["reference"],
    ]  # fmt: skip
    first = agenda["bookings"][0]
    assert first == {
        "start": NINE,
        "end": "2026-11-30T09:15:00+01:00",
        "reference": early[0]["reference"],
        "status": "confirmed",
        "channel": "online",
        "service_ids": ["hund-anmelden"],
        "services": ["Hund anmelden"],
        "seats": 1,
        "name": "Person 0",
        "contact_name": None,
        "phone": "+493936112345",
        "email": "p0@example.org",
    }
    slots = {s["start"]: s for s in agenda["slots"]}
    assert slots[NINE] == {
        "start": NINE, "end": QUARTER_PAST, "capacity": 1, "booked": 1,
        "capacity_overridden": False,
    }  # fmt: skip
    assert slots["2026-11-30T10:00:00+01:00"]["booked"] == 0  # the cancelled one is gone

    admin = bearer(await make_key(core, "admin"))
    everywhere = [
        (await client.get(f"/api/v1/calendars/{c}/agenda", params={"date": DAY},
                          headers=admin)).json()
        for c in CLERKS
    ]  # fmt: skip
    listed = {b["reference"]: b for a in everywhere for b in a["bookings"]}
    booked_for = listed[late[0]["reference"]]  # someone else booked for Person 3
    assert (booked_for["name"], booked_for["contact_name"]) == ("Person 3", "Tochter Drei")
    assert (booked_for["phone"], booked_for["email"]) == ("+491701234567", None)
    assert set(listed) == {b["reference"] for b in early + late}  # not the cancelled booking

    as_csv = await client.get(url, params={"date": DAY, "format": "csv"}, headers=staff)
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["cache-control"] == "no-store"
    assert f"agenda-{calendar}-{DAY}.csv" in as_csv.headers["content-disposition"]
    assert as_csv.content.startswith("\ufeff".encode())
    lines = as_csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].split(";")[:5] == ["Datum", "Beginn", "Ende", "Buchungscode", "Status"]
    assert len(lines) == 3
    row = lines[1].split(";")
    assert row[:8] == [DAY, "09:00", "09:15", early[0]["reference"], "bestätigt", "online",
                       "Hund anmelden", "1"]  # fmt: skip
    assert row[8] == "Person 0"
    assert row[10] == "'+493936112345"  # a leading + is never read as a formula
    english = await client.get(
        url, params={"date": DAY, "format": "csv"}, headers={**staff, "Accept-Language": "en"}
    )
    assert english.content.decode("utf-8-sig").splitlines()[0].startswith("date;start;end;")

    as_text = await client.get(url, params={"date": DAY, "format": "text"}, headers=staff)
    assert as_text.status_code == 200
    assert as_text.headers["content-type"] == "text/plain; charset=utf-8"
    assert as_text.headers["cache-control"] == "no-store"
    page = as_text.text
    assert "Montag, 30.11.2026" in page
    assert "2 Termine, 2 von" in page
    assert f"09:00–09:15  {early[0]['reference']}  bestätigt" in page
    assert "Person 0" in page
    assert "Tel. +493936112345" in page
    assert max(len(line) for line in page.splitlines()) <= 80

    other_day = await client.get(url, params={"date": "2026-12-01"}, headers=staff)
    assert other_day.json()["bookings"] == []
    bad = await client.get(url, params={"date": "30.11.2026"}, headers=staff)
    assert assert_problem(bad, 422, "validation_failed")["errors"][0]["field"] == "date"
    bad_format = await client.get(url, params={"date": DAY, "format": "pdf"}, headers=staff)
    assert bad_format.status_code in (400, 422)


async def test_agenda_defaults_to_today_and_shows_an_empty_day(client: Client, core: Core) -> None:
    staff = bearer(await make_key(core, "staff", ["schalter-1"]))
    response = await client.get("/api/v1/calendars/schalter-1/agenda", headers=staff)
    assert response.status_code == 200
    assert response.json()["date"] == "2026-11-23"
    assert response.json()["bookings"] == []
    assert len(response.json()["slots"]) == 26  # Monday: 08:00-12:00 and 13:00-15:30
    text = await client.get(
        "/api/v1/calendars/schalter-1/agenda", params={"format": "text"}, headers=staff
    )
    assert "Keine Termine." in text.text


async def test_agenda_only_for_staff_of_that_calendar(client: Client, core: Core) -> None:
    staff = bearer(await make_key(core, "staff", ["sachbearbeitung-1"]))
    agent = bearer(await make_key(core, "agent"))
    admin = bearer(await make_key(core, "admin"))
    url = "/api/v1/calendars/sachbearbeitung-2/agenda"
    not_mine = await client.get(url, params={"date": DAY}, headers=staff)
    body = assert_problem(not_mine, 404, "not_found")
    missing = await client.get(
        "/api/v1/calendars/gibt-es-nicht/agenda", params={"date": DAY}, headers=staff
    )
    # "not yours" reads exactly as "not there"
    assert assert_problem(missing, 404, "not_found") == {
        **body, "detail": body["detail"].replace("sachbearbeitung-2", "gibt-es-nicht")
    }  # fmt: skip
    assert_problem(await client.get(url, params={"date": DAY}, headers=agent), 403, "forbidden")
    assert_problem(await client.get(url, params={"date": DAY}), 401, "unauthorized")
    assert (await client.get(url, params={"date": DAY}, headers=admin)).status_code == 200


# -- attendance -------------------------------------------------------------------------------


async def test_check_in_then_no_show_correction(
    client: Client, core: Core, clock: ManualClock
) -> None:
    booking = await book(client, TODAY_TEN, 1)
    reference = booking["reference"]
    calendar = calendar_of(booking)
    staff = bearer(await make_key(core, "staff", [calendar]))
    check_in = f"/api/v1/bookings/{reference}/check-in"
    no_show = f"/api/v1/bookings/{reference}/no-show"

    too_early = await client.post(check_in, headers=staff)  # 07:00, three hours before
    assert assert_problem(too_early, 422, "validation_failed")["errors"][0]["field"] == "reference"
    clock.set(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))  # 09:00 local: one hour before
    before_start = await client.post(no_show, headers=staff)
    assert_problem(before_start, 422, "validation_failed")

    checked = await client.post(check_in, headers=staff)
    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] == "checked_in"
    assert checked.json()["reference"] == reference
    again = await client.post(check_in, headers=staff)  # idempotent
    assert again.status_code == 200
    assert again.json()["status"] == "checked_in"
    assert len(await audit(core, "booking.check_in")) == 1

    clock.set(datetime(2026, 11, 23, 9, 5, tzinfo=UTC))  # 10:05 local: it has started
    corrected = await client.post(no_show, headers=staff)
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["status"] == "no_show"
    (event,) = await audit(core, "booking.no_show")
    assert event.details == {"from": "checked_in"}
    assert event.actor.startswith("key:")

    # seats stay booked: the slot was used (or wasted)
    agenda = (
        await client.get(
            f"/api/v1/calendars/{calendar}/agenda", params={"date": "2026-11-23"}, headers=staff
        )
    ).json()
    assert {s["start"]: s["booked"] for s in agenda["slots"]}[TODAY_TEN] == 1
    assert [b["status"] for b in agenda["bookings"]] == ["no_show"]

    # a no-show gives the person's claim back: they can book the service again
    rebooked = await book(client, "2026-11-30T11:00:00+01:00", 1)
    assert rebooked["status"] == "confirmed"
    back = await client.post(check_in, headers=staff)  # the clerk corrects it once more
    assert back.status_code == 200
    assert back.json()["status"] == "checked_in"
    async with core.sessions() as session:
        claims = list(await session.scalars(select(m.PersonClaim.booking_id)))
    assert set(claims) == {
        (await core.bookings.find(rebooked["reference"])).id
    }  # the newer booking keeps the claim

    clock.set(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))  # the next day
    assert (await client.post(check_in, headers=staff)).json()["status"] == "checked_in"
    late = await client.post(no_show, headers=staff)
    assert_problem(late, 422, "validation_failed")


async def test_attendance_guards(client: Client, core: Core, clock: ManualClock) -> None:
    booking = await book(client, TODAY_TEN, 1)
    reference = booking["reference"]
    calendar = calendar_of(booking)
    other = next(c for c in CLERKS if c != calendar)
    clock.set(datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    mine = bearer(await make_key(core, "staff", [calendar]))
    theirs = bearer(await make_key(core, "staff", [other]))
    agent = bearer(await make_key(core, "agent"))
    admin = bearer(await make_key(core, "admin"))
    url = f"/api/v1/bookings/{reference}/check-in"

    not_mine = await client.post(url, headers=theirs)
    missing = await client.post("/api/v1/bookings/ZZZZ-ZZZZ/check-in", headers=mine)
    assert assert_problem(not_mine, 404, "not_found") == assert_problem(missing, 404, "not_found")
    assert_problem(await client.post(url, headers=agent), 403, "forbidden")
    assert_problem(await client.post(url), 401, "unauthorized")
    manage = await client.post(url, headers=bearer(booking["manage_token"]))
    assert_problem(manage, 401, "unauthorized")  # the citizen cannot check themselves in
    assert (await client.post(url, headers=admin)).json()["status"] == "checked_in"
    # staff of the calendar read the booking as before
    read = await client.get(f"/api/v1/bookings/{reference}", headers=mine)
    assert read.json()["status"] == "checked_in"


async def test_cancelled_booking_cannot_be_marked(
    client: Client, core: Core, clock: ManualClock
) -> None:
    booking = await book(client, TODAY_TEN, 1)
    headers = bearer(booking["manage_token"])
    await client.post(f"/api/v1/bookings/{booking['reference']}/cancel", headers=headers)
    clock.set(datetime(2026, 11, 23, 9, 30, tzinfo=UTC))
    staff = bearer(await make_key(core, "staff", [calendar_of(booking)]))
    for action in ("check-in", "no-show"):
        refused = await client.post(
            f"/api/v1/bookings/{booking['reference']}/{action}",
            headers={**staff, "Accept-Language": "en"},
        )
        body = assert_problem(refused, 422, "validation_failed")
        assert body["errors"] == [
            {"field": "reference", "message": "A booking in status cancelled cannot be marked so."}
        ]
    assert await audit(core, "booking.check_in") == []


async def test_idempotency_key_replays_a_check_in(
    client: Client, core: Core, clock: ManualClock
) -> None:
    booking = await book(client, TODAY_TEN, 1)
    clock.set(datetime(2026, 11, 23, 9, 30, tzinfo=UTC))
    staff = {**bearer(await make_key(core, "staff", [calendar_of(booking)])),
             "Idempotency-Key": "desk-1"}  # fmt: skip
    url = f"/api/v1/bookings/{booking['reference']}"
    first = await client.post(f"{url}/check-in", headers=staff)
    replay = await client.post(f"{url}/check-in", headers=staff)
    assert first.status_code == replay.status_code == 200
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == first.json()
    reused = await client.post(f"{url}/no-show", headers=staff)
    assert_problem(reused, 422, "idempotency_key_reused")


# -- capacity ---------------------------------------------------------------------------------


async def test_capacity_up_and_down_and_redis_follows(client: Client, core: Core) -> None:
    staff = bearer(await make_key(core, "staff", ["sachbearbeitung-1"]))
    admin = bearer(await make_key(core, "admin"))
    assert await free(client) == 3
    raised = await client.patch(
        slot_url("sachbearbeitung-1", NINE), json={"capacity": 3}, headers=staff
    )
    assert raised.status_code == 200, raised.text
    assert raised.json() == {
        "calendar_id": "sachbearbeitung-1", "start": NINE, "end": QUARTER_PAST,
        "capacity": 3, "booked": 0, "capacity_overridden": True,
    }  # fmt: skip
    assert raised.headers["cache-control"] == "no-store"
    assert await free(client) == 5  # the slots API reads Redis: it followed
    (event,) = await audit(core, "slot.capacity")
    assert event.details == {
        "calendar_id": "sachbearbeitung-1", "start": "2026-11-30T08:00:00+00:00",
        "from": 1, "to": 3,
    }  # fmt: skip

    # the other clerks close that slot (an admin may do it anywhere): seats go to clerk 1 only
    for calendar in ("sachbearbeitung-2", "sachbearbeitung-3"):
        closed = await client.patch(slot_url(calendar, NINE), json={"capacity": 0}, headers=admin)
        assert closed.status_code == 200
    assert await free(client) == 3
    first, second = await book(client, NINE, 1), await book(client, NINE, 2)
    assert calendar_of(first) == calendar_of(second) == "sachbearbeitung-1"

    down = await client.patch(
        slot_url("sachbearbeitung-1", NINE), json={"capacity": 2}, headers=staff
    )
    assert down.status_code == 200
    assert down.json()["booked"] == 2
    assert await free(client) == 0
    below = await client.patch(
        slot_url("sachbearbeitung-1", NINE), json={"capacity": 1},
        headers={**staff, "Accept-Language": "en"},
    )  # fmt: skip
    body = assert_problem(below, 409, "capacity_below_booked")
    assert "2 seats" in body["detail"]

    # a hold taken while there was room cannot be confirmed once the capacity is lowered
    up = await client.patch(
        slot_url("sachbearbeitung-1", NINE), json={"capacity": 3}, headers=staff
    )
    assert up.status_code == 200
    assert await free(client) == 1
    held = await client.post("/api/v1/holds", json={"service_id": "hund-anmelden", "start": NINE})
    assert held.status_code == 201
    lowered = await client.patch(
        slot_url("sachbearbeitung-1", NINE), json={"capacity": 2}, headers=staff
    )
    assert lowered.status_code == 200
    full = await client.post("/api/v1/holds", json={"service_id": "hund-anmelden", "start": NINE})
    assert_problem(full, 409, "slot_full")
    confirm = await client.post(
        "/api/v1/bookings",
        json={"hold_id": held.json()["hold_id"], "citizen": {"name": "Drei", "email": "d@x.de"}},
    )
    assert_problem(confirm, 409, "slot_full")
    async with core.sessions() as session:
        seats = await session.scalar(
            select(m.Slot.booked).where(
                m.Slot.calendar_id == "sachbearbeitung-1",
                m.Slot.starts_at == datetime(2026, 11, 30, 8, tzinfo=UTC),
            )
        )
    assert seats == 2
    assert len(await audit(core, "slot.capacity")) == 6


async def test_capacity_refusals(client: Client, core: Core, clock: ManualClock) -> None:
    staff = bearer(await make_key(core, "staff", ["sachbearbeitung-1"]))
    agent = bearer(await make_key(core, "agent"))
    url = slot_url("sachbearbeitung-1", NINE)
    unknown = await client.patch(
        slot_url("sachbearbeitung-1", "2026-11-30T09:05:00+01:00"),
        json={"capacity": 2}, headers=staff,
    )  # fmt: skip
    assert_problem(unknown, 404, "not_found")
    sunday = await client.patch(
        slot_url("sachbearbeitung-1", "2026-11-29T09:00:00+01:00"),
        json={"capacity": 2}, headers=staff,
    )  # fmt: skip
    assert_problem(sunday, 404, "not_found")
    naive = await client.patch(
        slot_url("sachbearbeitung-1", "2026-11-30T09:00:00"), json={"capacity": 2}, headers=staff
    )
    assert assert_problem(naive, 422, "validation_failed")["errors"][0]["field"] == "start"
    for body in ({"capacity": -1}, {"capacity": 1001}, {}, {"capacity": 2, "extra": 1}):
        bad = await client.patch(url, json=body, headers=staff)
        assert bad.status_code in (400, 422), body
    not_mine = await client.patch(
        slot_url("sachbearbeitung-2", NINE), json={"capacity": 2}, headers=staff
    )
    assert_problem(not_mine, 404, "not_found")
    assert_problem(await client.patch(url, json={"capacity": 2}, headers=agent), 403, "forbidden")
    assert_problem(await client.patch(url, json={"capacity": 2}), 401, "unauthorized")
    # the same slot named in UTC, and with an unencoded "+", is the same slot
    utc = await client.patch(
        "/api/v1/calendars/sachbearbeitung-1/slots/2026-11-30T08:00:00Z",
        json={"capacity": 2}, headers=staff,
    )  # fmt: skip
    assert utc.status_code == 200, utc.text
    plain = await client.patch(
        f"/api/v1/calendars/sachbearbeitung-1/slots/{NINE}", json={"capacity": 1}, headers=staff
    )
    assert plain.status_code == 200, plain.text
    assert await free(client) == 3
    assert len(await audit(core, "slot.capacity")) == 2
    clock.set(datetime(2026, 11, 23, 7, 20, tzinfo=UTC))  # 08:20 local: the 08:00 slot is over
    past = await client.patch(
        slot_url("sachbearbeitung-1", "2026-11-23T08:00:00+01:00"),
        json={"capacity": 2}, headers=staff,
    )  # fmt: skip
    assert assert_problem(past, 422, "validation_failed")["errors"][0]["field"] == "start"


# -- wiring -----------------------------------------------------------------------------------


async def test_routes_live_beside_the_other_controllers(client: Client, core: Core) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"getAgenda", "checkInBooking", "markNoShow", "setSlotCapacity"} <= operations
    assert {"getBooking", "cancelBooking", "calendarFeed", "importClosures"} <= operations
    booking = await book(client, NINE, 1)
    token = bearer(booking["manage_token"])
    reference = booking["reference"]
    assert (await client.get(f"/api/v1/bookings/{reference}", headers=token)).status_code == 200
    ics = await client.get(f"/api/v1/bookings/{reference}/calendar.ics", headers=token)
    assert ics.status_code == 200
    feed = await client.get("/api/v1/calendars/sachbearbeitung-1/feed.ics")
    assert feed.status_code == 404
    assert (await client.get("/api/v1/calendars")).status_code == 200
