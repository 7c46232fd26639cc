"""GET /api/v1/stats: only admins, the figures of bookings made through the API, the range
limit and unknown services."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from scheduler.booking import models as m
from scheduler.booking.core import Core
from tests.api.test_keys import assert_problem, bearer, make_key

Client = AsyncTestClient[Litestar]
STATS = "/api/v1/stats"
RANGE = {"from": "2026-11-30", "to": "2026-12-13"}


async def book(
    client: Client, n: int, service: str, start: str, key: str | None = None
) -> dict[str, Any]:
    offered = await client.get(
        f"/api/v1/services/{service}/slots", params={"from": start[:10], "to": start[:10]}
    )
    assert start in {row["start"] for row in offered.json()}
    response = await client.post(
        "/api/v1/bookings",
        json={
            "service_id": service,
            "start": start,
            "citizen": {"name": f"Person {n}", "email": f"p{n}@example.org"},
            **({"channel": "counter"} if n == 4 else {}),
        },
        headers=bearer(key) if key else {},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def set_status(core: Core, reference: str, status: m.BookingStatus) -> None:
    """No check-in or no-show route yet: set the status as staff will."""
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Booking)
            .where(m.Booking.reference == reference.replace("-", ""))
            .values(status=status.value)
        )


@pytest.fixture
async def admin(core: Core) -> str:
    return await make_key(core, "admin")


async def test_figures_of_api_bookings(client: Client, core: Core, admin: str) -> None:
    agent = await make_key(core, "agent")
    no_show = await book(client, 1, "hund-anmelden", "2026-11-30T09:00:00+01:00")
    came = await book(client, 2, "hund-anmelden", "2026-11-30T09:15:00+01:00")
    phoned = await book(client, 3, "hund-anmelden", "2026-12-01T09:00:00+01:00", agent)
    counter = await book(
        client, 4, "personalausweis-beantragen", "2026-12-08T10:00:00+01:00", agent
    )
    gone = await book(client, 5, "meldebescheinigung", "2026-12-09T09:00:00+01:00")
    assert (phoned["channel"], counter["channel"]) == ("phone", "counter")
    cancelled = await client.post(
        f"/api/v1/bookings/{gone['reference']}/cancel", headers=bearer(gone["manage_token"])
    )
    assert cancelled.status_code == 200, cancelled.text
    await set_status(core, no_show["reference"], m.BookingStatus.NO_SHOW)
    await set_status(core, came["reference"], m.BookingStatus.CHECKED_IN)

    response = await client.get(STATS, params=RANGE, headers=bearer(admin))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["service_id"]) == ("2026-11-30", "2026-12-13", None)
    w49, w50 = body["weeks"]
    figures = ("bookings", "cancelled", "online", "phone", "counter", "online_share",
               "checked_in", "completed", "no_show", "no_show_rate", "seats_booked",
               "seats_capacity", "utilisation")  # fmt: skip
    assert {k: w49[k] for k in ("label", "from", "to", *figures)} == {
        "label": "2026-W49", "from": "2026-11-30", "to": "2026-12-06",
        "bookings": 3, "cancelled": 0, "online": 2, "phone": 1, "counter": 0,
        "online_share": 0.6667, "checked_in": 1, "completed": 0, "no_show": 1,
        "no_show_rate": 0.5, "seats_booked": 3, "seats_capacity": 1836, "utilisation": 0.0016,
    }  # fmt: skip
    assert {k: w50[k] for k in figures} == {
        "bookings": 2, "cancelled": 1, "online": 0, "phone": 0, "counter": 1,
        "online_share": 0.0, "checked_in": 0, "completed": 0, "no_show": 0,
        "no_show_rate": None, "seats_booked": 4, "seats_capacity": 1836, "utilisation": 0.0022,
    }  # fmt: skip
    total = body["total"]
    assert (total["label"], total["bookings"], total["online_share"]) == ("total", 5, 0.5)
    assert total["services"] == [
        {"service_id": "hund-anmelden", "bookings": 3, "cancelled": 0,
         "online": 2, "phone": 1, "counter": 0},
        {"service_id": "personalausweis-beantragen", "bookings": 1, "cancelled": 0,
         "online": 0, "phone": 0, "counter": 1},
        {"service_id": "meldebescheinigung", "bookings": 1, "cancelled": 1,
         "online": 0, "phone": 0, "counter": 0},
    ]  # fmt: skip
    assert {c["calendar_id"] for c in total["calendars"]} == set(core.catalog.calendars)

    one = await client.get(
        STATS, params={**RANGE, "service": "hund-anmelden"}, headers=bearer(admin)
    )
    assert one.status_code == 200, one.text
    total = one.json()["total"]
    assert (total["bookings"], total["no_show_rate"], total["seats_capacity"]) == (3, 0.5, 720)
    assert total["seats_booked"] == 3 + 2  # the clerk's half of the ID card appointment too


async def test_only_admins(client: Client, core: Core) -> None:
    assert_problem(await client.get(STATS, params=RANGE), 401, "unauthorized")
    agent = await make_key(core, "agent")
    staff = await make_key(core, "staff", ["schalter-1"])
    for key in (agent, staff):
        assert_problem(await client.get(STATS, params=RANGE, headers=bearer(key)), 403, "forbidden")


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"from": "2026-11-23", "to": "2027-02-24"}, "to", "Der Zeitraum ist länger als 92 Tage."),
        ({"from": "2026-11-23", "to": "2026-11-22"}, "to", "Das Ende liegt vor dem Anfang."),
        ({"to": "2026-11-22"}, "from", "Angabe fehlt."),
        ({"from": "2026-11-23"}, "to", "Angabe fehlt."),
        ({"from": "23.11.2026", "to": "2026-11-30"}, "from",
         "Erwartet ein Datum im Format JJJJ-MM-TT."),
    ],
)  # fmt: skip
async def test_bad_ranges_are_422(
    client: Client, admin: str, params: dict[str, str], field: str, message: str
) -> None:
    response = await client.get(STATS, params=params, headers=bearer(admin))
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"] == [{"field": field, "message": message}]


async def test_92_days_are_allowed(client: Client, admin: str) -> None:
    response = await client.get(
        STATS, params={"from": "2026-11-23", "to": "2027-02-23"}, headers=bearer(admin)
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["weeks"]) == 14


async def test_unknown_service_is_404(client: Client, admin: str) -> None:
    response = await client.get(STATS, params={**RANGE, "service": "nope"}, headers=bearer(admin))
    body = assert_problem(response, 404, "not_found")
    assert "nope" in body["detail"]
