"""The read API on the demo municipality: services, slots, errors as problem details."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]


async def test_services_are_the_seed_slugs(client: Client) -> None:
    response = await client.get("/api/v1/services")
    assert response.status_code == 200
    ids = [s["id"] for s in response.json()]
    for expected in (
        "hund-anmelden",
        "hund-abmelden",
        "kita-platz-abmelden",
        "personalausweis-beantragen",
        "meldebescheinigung",
        "wohnsitz-anmelden",
        "fuehrungszeugnis-beantragen",
        "impfung-erstimpfung",
    ):
        assert expected in ids
    ausweis = next(s for s in response.json() if s["id"] == "personalausweis-beantragen")
    assert ausweis["duration_minutes"] == 30
    assert ausweis["campaign_id"] is None
    english = await client.get("/api/v1/services", headers={"Accept-Language": "en"})
    assert english.json()[0]["name"] == "Register a dog"


async def test_locations_and_calendars(client: Client) -> None:
    locations = (await client.get("/api/v1/locations")).json()
    assert {loc["id"] for loc in locations} == {"rathaus", "impfzentrum"}
    assert all(loc["timezone"] == "Europe/Berlin" for loc in locations)
    calendars = (await client.get("/api/v1/calendars", params={"location": "rathaus"})).json()
    assert sorted(c["id"] for c in calendars) == [
        "sachbearbeitung-1",
        "sachbearbeitung-2",
        "sachbearbeitung-3",
        "schalter-1",
        "schalter-2",
    ]
    unknown = await client.get("/api/v1/calendars", params={"location": "mond"})
    assert unknown.status_code == 404


async def test_slots_of_a_normal_day(client: Client) -> None:
    # Monday 2026-11-30: 08:00-12:00 and 13:00-15:30, three clerks, 15-minute slots.
    response = await client.get(
        "/api/v1/services/hund-anmelden/slots", params={"from": "2026-11-30", "to": "2026-11-30"}
    )
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 16 + 10
    assert rows[0] == {
        "start": "2026-11-30T08:00:00+01:00",
        "end": "2026-11-30T08:15:00+01:00",
        "free": 3,
    }
    assert rows[-1]["start"] == "2026-11-30T15:15:00+01:00"
    assert "2026-11-30T12:00:00+01:00" not in [r["start"] for r in rows]  # lunch break


async def test_thirty_minute_service_needs_a_clerk_and_a_room(client: Client) -> None:
    rows = (
        await client.get(
            "/api/v1/services/personalausweis-beantragen/slots",
            params={"from": "2026-11-30", "to": "2026-11-30"},
        )
    ).json()
    # starts every 15 minutes where 30 minutes fit; two rooms limit it to 2 at once
    assert rows[0] == {
        "start": "2026-11-30T08:00:00+01:00",
        "end": "2026-11-30T08:30:00+01:00",
        "free": 2,
    }
    starts = [r["start"][11:16] for r in rows]
    assert "11:45" not in starts
    assert "11:30" in starts
    assert starts[-1] == "15:00"


async def test_notice_and_holidays_and_weekends(client: Client) -> None:
    # now is Monday 2026-11-23 07:00 local; notice 60 min: first start 08:00 today
    rows = (
        await client.get(
            "/api/v1/services/hund-anmelden/slots",
            params={"from": "2026-11-23", "to": "2026-11-29"},
        )
    ).json()
    assert rows[0]["start"] == "2026-11-23T08:00:00+01:00"
    days = {r["start"][:10] for r in rows}
    assert "2026-11-28" not in days
    assert "2026-11-29" not in days
    christmas = (
        await client.get(
            "/api/v1/services/hund-anmelden/slots",
            params={"from": "2026-12-24", "to": "2026-12-26"},
        )
    ).json()
    assert {r["start"][:10] for r in christmas} == {"2026-12-24"}  # 25th/26th are holidays


async def test_horizon_of_the_service(client: Client) -> None:
    # bookable 90 days ahead: 2027-02-21 is the last day (a Sunday) → last rows on 2027-02-19
    rows = (
        await client.get(
            "/api/v1/services/hund-anmelden/slots",
            params={"from": "2027-02-15", "to": "2027-03-01"},
        )
    ).json()
    assert rows
    assert max(r["start"][:10] for r in rows) == "2027-02-19"


async def test_past_days_are_empty(client: Client) -> None:
    response = await client.get(
        "/api/v1/services/hund-anmelden/slots", params={"from": "2026-11-01", "to": "2026-11-20"}
    )
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01", "to": "2026-12-01"}, "from"),
        ({"from": "gestern", "to": "2026-12-01"}, "from"),
        ({"from": "2026-12-01", "to": "2026-11-30"}, "to"),
        ({"from": "2026-12-01", "to": "2027-06-01"}, "to"),
        ({"from": "2026-12-01", "to": "2026-12-01T00:00"}, "to"),
        ({"from": "99999-01-01", "to": "2026-12-01"}, "from"),
    ],
)
async def test_bad_ranges_are_422_problems(
    client: Client, params: dict[str, str], field: str
) -> None:
    response = await client.get("/api/v1/services/hund-anmelden/slots", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "validation_failed"
    assert body["status"] == 422
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["title"] == "Ungültige Eingabe"


async def test_92_days_is_the_longest_range(client: Client) -> None:
    ok = await client.get(
        "/api/v1/services/hund-anmelden/slots", params={"from": "2026-12-01", "to": "2027-03-03"}
    )
    assert ok.status_code == 200
    too_long = await client.get(
        "/api/v1/services/hund-anmelden/slots", params={"from": "2026-12-01", "to": "2027-03-04"}
    )
    assert too_long.status_code == 422


async def test_unknown_service_is_a_404_problem_in_both_languages(client: Client) -> None:
    german = await client.get("/api/v1/services/katze-anmelden/slots")
    assert german.status_code == 404
    body: dict[str, Any] = german.json()
    assert body["code"] == "not_found"
    assert "katze-anmelden" in body["detail"]
    assert "gibt es nicht" in body["detail"]
    english = await client.get(
        "/api/v1/services/katze-anmelden/slots", headers={"Accept-Language": "en-GB,en;q=0.8"}
    )
    assert english.json()["title"] == "Not found"


async def test_unknown_route_and_method(client: Client) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong = await client.delete("/api/v1/services")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"


async def test_health_reports_sql_and_redis(client: Client) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "sql": "ok", "redis": "ok"}


async def test_openapi_and_docs(client: Client) -> None:
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/services/{service_id}/slots" in paths
    docs = await client.get("/schema")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


async def test_default_range_starts_today(client: Client) -> None:
    rows = (await client.get("/api/v1/services/hund-anmelden/slots")).json()
    first = datetime.fromisoformat(rows[0]["start"])
    last = datetime.fromisoformat(rows[-1]["start"])
    assert first.date().isoformat() == "2026-11-23"
    assert last.date() - first.date() <= timedelta(days=13)
