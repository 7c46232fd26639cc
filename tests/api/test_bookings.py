"""Holds and bookings through the HTTP API: the happy path and the documented refusals."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from scheduler.booking.core import Core

Client = AsyncTestClient[Litestar]
START = "2026-11-30T09:00:00+01:00"
CITIZEN = {"name": "Erika Mustermann", "email": "erika@example.org"}


async def slots(
    client: Client, service: str = "hund-anmelden", day: str = "2026-11-30"
) -> dict[str, int]:
    rows = (
        await client.get(f"/api/v1/services/{service}/slots", params={"from": day, "to": day})
    ).json()
    return {r["start"]: r["free"] for r in rows}


async def hold(client: Client, start: str = START, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/holds", json={"service_id": "hund-anmelden", "start": start, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_hold_confirm_read_cancel(client: Client) -> None:
    assert (await slots(client))[START] == 3
    held = await hold(client)
    assert held["appointments"] == [
        {"service_id": "hund-anmelden", "start": START, "end": "2026-11-30T09:15:00+01:00"}
    ]
    assert held["expires_at"] == "2026-11-23T07:10:00+01:00"
    assert (await slots(client))[START] == 2  # the hold counts at once
    response = await client.post(
        "/api/v1/bookings", json={"hold_id": held["hold_id"], "citizen": CITIZEN}
    )
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking["status"] == "confirmed"
    assert booking["channel"] == "online"
    assert len(booking["reference"]) == 9
    assert booking["reference"][4] == "-"
    token = booking["manage_token"]
    assert len(token) >= 43
    assert (await slots(client))[START] == 2  # confirmed: still taken
    read = await client.get(
        f"/api/v1/bookings/{booking['reference']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert read.status_code == 200
    assert read.json()["start"] == START
    assert "manage_token" not in read.json()
    wrong = await client.get(
        f"/api/v1/bookings/{booking['reference']}", headers={"Authorization": "Bearer x" * 2}
    )
    assert wrong.status_code == 404
    missing = await client.get(
        "/api/v1/bookings/ABCD-EFGH", headers={"Authorization": f"Bearer {token}"}
    )
    assert missing.status_code == 404
    assert wrong.json() == missing.json()  # "not yours" looks exactly like "not there"
    cancelled = await client.post(
        f"/api/v1/bookings/{booking['reference'].lower()}/cancel",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await slots(client))[START] == 3


async def test_one_step_booking_and_idempotent_retries(client: Client, core: Core) -> None:
    body = {"service_id": "hund-anmelden", "start": START, "citizen": CITIZEN}
    headers = {"Idempotency-Key": "retry-1"}
    answers = [await client.post("/api/v1/bookings", json=body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({a.json()["reference"] for a in answers}) == 1
    assert answers[1].headers.get("idempotent-replayed") == "true"
    assert answers[2].json()["manage_token"] == answers[0].json()["manage_token"]
    assert (await slots(client))[START] == 2  # one booking, not three
    other = await client.post(
        "/api/v1/bookings", json={**body, "start": "2026-11-30T10:00:00+01:00"}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


async def test_full_slot_is_409(client: Client) -> None:
    for n in range(3):
        response = await client.post(
            "/api/v1/bookings",
            json={
                "service_id": "hund-anmelden",
                "start": START,
                "citizen": {"name": f"Person {n}", "email": f"p{n}@example.org"},
            },
        )
        assert response.status_code == 201, response.text
    assert START not in await slots(client)
    full = await client.post("/api/v1/holds", json={"service_id": "hund-anmelden", "start": START})
    assert full.status_code == 409
    assert full.json()["code"] == "slot_full"


async def test_person_limit(client: Client) -> None:
    body = {"service_id": "hund-anmelden", "start": START, "citizen": CITIZEN}
    assert (await client.post("/api/v1/bookings", json=body)).status_code == 201
    again = await client.post(
        "/api/v1/bookings",
        json={**body, "start": "2026-12-01T09:00:00+01:00",
              "citizen": {**CITIZEN, "email": " ERIKA@example.org "}},
    )  # fmt: skip
    assert again.status_code == 409
    assert again.json()["code"] == "limit_reached"
    assert (await slots(client, day="2026-12-01"))["2026-12-01T09:00:00+01:00"] == 3


async def test_release_gives_the_seat_back(client: Client) -> None:
    held = await hold(client)
    assert (await slots(client))[START] == 2
    released = await client.delete(f"/api/v1/holds/{held['hold_id']}")
    assert released.status_code == 204
    assert (await slots(client))[START] == 3
    again = await client.delete(f"/api/v1/holds/{held['hold_id']}")
    assert again.status_code == 409
    assert again.json()["code"] == "hold_expired"


async def test_unknown_and_foreign_holds_are_hold_expired(client: Client) -> None:
    for hold_id in ("rathaus.AAAAAAAAAAAAAAAAAAAAAA", "nothing", "impfzentrum.x" * 3):
        response = await client.post(
            "/api/v1/bookings", json={"hold_id": hold_id, "citizen": CITIZEN}
        )
        assert response.status_code == 409, hold_id
        assert response.json()["code"] == "hold_expired"


async def test_a_hold_is_confirmed_once(client: Client) -> None:
    held = await hold(client)
    first = await client.post(
        "/api/v1/bookings", json={"hold_id": held["hold_id"], "citizen": CITIZEN}
    )
    assert first.status_code == 201
    second = await client.post(
        "/api/v1/bookings",
        json={"hold_id": held["hold_id"], "citizen": {"name": "B", "email": "b@example.org"}},
    )
    assert second.status_code == 409
    assert second.json()["code"] == "hold_expired"


async def test_reschedule_and_reschedule_into_a_full_slot(client: Client) -> None:
    made = (
        await client.post(
            "/api/v1/bookings",
            json={"service_id": "hund-anmelden", "start": START, "citizen": CITIZEN},
        )
    ).json()
    auth = {"Authorization": f"Bearer {made['manage_token']}"}
    target = "2026-11-30T10:00:00+01:00"
    new_hold = await hold(client, start=target)
    moved = await client.post(
        f"/api/v1/bookings/{made['reference']}/reschedule", json={"hold_id": new_hold["hold_id"]},
        headers=auth,
    )  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert moved.json()["start"] == target
    free = await slots(client)
    assert free[START] == 3
    assert free[target] == 2
    # fill 11:00, then try to move there: refused, the booking stays at 10:00
    late = "2026-11-30T11:00:00+01:00"
    late_hold = await hold(client, start=late)
    for n in range(2):
        await client.post(
            "/api/v1/bookings",
            json={"service_id": "hund-anmelden", "start": late,
                  "citizen": {"name": f"X{n}", "email": f"x{n}@example.org"}},
        )  # fmt: skip
    assert late not in await slots(client)
    await client.delete(f"/api/v1/holds/{late_hold['hold_id']}")
    # someone else takes the seat the hold gave back before the move
    await client.post(
        "/api/v1/bookings",
        json={"service_id": "hund-anmelden", "start": late,
              "citizen": {"name": "Y", "email": "y@example.org"}},
    )  # fmt: skip
    refused = await client.post(
        "/api/v1/holds", json={"service_id": "hund-anmelden", "start": late}
    )
    assert refused.status_code == 409
    still = await client.get(f"/api/v1/bookings/{made['reference']}", headers=auth)
    assert still.json()["start"] == target
    assert still.json()["status"] == "confirmed"


async def test_validation_of_holds(client: Client) -> None:
    cases = [
        ({"service_id": "hund-anmelden", "start": "2026-11-30T09:00:00"}, "start"),
        ({"service_id": "hund-anmelden", "start": "2026-11-30T09:07:00+01:00"}, "start"),
        ({"service_id": "hund-anmelden", "start": "2026-11-23T07:30:00+01:00"}, "start"),
        ({"service_id": "hund-anmelden", "start": "2027-06-01T09:00:00+02:00"}, "start"),
        ({"service_id": "hund-anmelden"}, "start"),
        ({"start": START}, "service_id"),
    ]
    for body, field in cases:
        response = await client.post("/api/v1/holds", json=body)
        assert response.status_code in (400, 422), (body, response.text)
        assert response.json()["code"] == "validation_failed", body
        assert field in str(response.json()["errors"]), (body, response.json())
    unknown = await client.post("/api/v1/holds", json={"service_id": "katze", "start": START})
    assert unknown.status_code == 404
    closed = await client.post(
        "/api/v1/holds", json={"service_id": "hund-anmelden", "start": "2026-11-30T12:00:00+01:00"}
    )
    assert closed.status_code == 409
    phone = await client.post(
        "/api/v1/holds", json={"service_id": "hund-anmelden", "start": START, "channel": "phone"}
    )
    assert phone.status_code == 403


async def test_two_services_in_one_visit(client: Client) -> None:
    body = {
        "service_ids": ["personalausweis-beantragen", "wohnsitz-anmelden"],
        "start": START,
        "citizen": CITIZEN,
    }
    response = await client.post("/api/v1/bookings", json=body)
    assert response.status_code == 201, response.text
    booking = response.json()
    assert [a["service_id"] for a in booking["appointments"]] == body["service_ids"]
    assert booking["end"] == "2026-11-30T09:45:00+01:00"
    assert booking["appointments"][1]["start"] == "2026-11-30T09:30:00+01:00"
    calendars = booking["appointments"][0]["calendar_ids"]
    assert len([c for c in calendars if c.startswith("sachbearbeitung")]) == 1
    assert len([c for c in calendars if c.startswith("schalter")]) == 1
    ausweis = await slots(client, "personalausweis-beantragen")
    assert ausweis[START] == 1  # one room left at 09:00
    assert ausweis["2026-11-30T09:30:00+01:00"] == 1  # the room is kept for the whole visit


async def test_idempotent_hold_cancel_and_reschedule(client: Client) -> None:
    body = {"service_id": "hund-anmelden", "start": START}
    first = await client.post("/api/v1/holds", json=body, headers={"Idempotency-Key": "h-1"})
    again = await client.post("/api/v1/holds", json=body, headers={"Idempotency-Key": "h-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["hold_id"] == again.json()["hold_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert (await slots(client))[START] == 2  # one seat held, not two
    made = (
        await client.post(
            "/api/v1/bookings", json={"hold_id": first.json()["hold_id"], "citizen": CITIZEN}
        )
    ).json()
    auth = {"Authorization": f"Bearer {made['manage_token']}"}
    target = "2026-11-30T10:00:00+01:00"
    new_hold = await hold(client, start=target)
    move = {"hold_id": new_hold["hold_id"]}
    url = f"/api/v1/bookings/{made['reference']}/reschedule"
    moved = [
        await client.post(url, json=move, headers={**auth, "Idempotency-Key": "m-1"})
        for _ in range(2)
    ]
    assert [r.status_code for r in moved] == [200, 200]
    assert moved[0].json() == moved[1].json()
    assert moved[1].json()["start"] == target
    cancel_url = f"/api/v1/bookings/{made['reference']}/cancel"
    cancelled = [
        await client.post(cancel_url, headers={**auth, "Idempotency-Key": "c-1"}) for _ in range(2)
    ]
    assert [r.status_code for r in cancelled] == [200, 200]
    assert cancelled[1].json()["status"] == "cancelled"
    free = await slots(client)
    assert free[START] == 3
    assert free[target] == 3
    reused = await client.post(
        "/api/v1/holds", json={**body, "start": target}, headers={"Idempotency-Key": "h-1"}
    )
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"


async def test_bad_bodies_are_4xx(client: Client) -> None:
    for raw, content_type in [
        (b"{", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b"name=x", "application/x-www-form-urlencoded"),
        (b'{"service_id": 5, "start": []}', "application/json"),
        (b'{"citizen": {"name": "' + b"x" * 300 + b'"}}', "application/json"),
    ]:
        for url in ("/api/v1/holds", "/api/v1/bookings"):
            response = await client.post(url, content=raw, headers={"Content-Type": content_type})
            assert 400 <= response.status_code < 500, (url, raw[:30], response.text)
            assert response.json()["code"] in ("validation_failed", "bad_request"), response.text


async def test_a_manage_token_that_looks_like_an_api_key_still_works(
    client: Client, core: Core
) -> None:
    from sqlalchemy import update

    from scheduler.booking import codes
    from scheduler.booking import models as m

    booking = (
        await client.post(
            "/api/v1/bookings",
            json={"service_id": "hund-anmelden", "start": START, "citizen": CITIZEN},
        )
    ).json()
    found = await core.bookings.find(booking["reference"])
    # about one token version in 2^18 gives a token starting with "sk_"
    version = next(
        v for v in range(1, 10_000_000)
        if codes.manage_token(core.secret_key, found.id, v).startswith("sk_")
    )  # fmt: skip
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Booking).where(m.Booking.id == found.id).values(token_version=version)
        )
    token = codes.manage_token(core.secret_key, found.id, version)
    headers = {"Authorization": f"Bearer {token}"}
    read = await client.get(f"/api/v1/bookings/{booking['reference']}", headers=headers)
    assert read.status_code == 200, read.text
    cancelled = await client.post(
        f"/api/v1/bookings/{booking['reference']}/cancel", headers=headers
    )
    assert cancelled.status_code == 200, cancelled.text


async def test_a_revoked_key_is_401_and_no_token_failure(client: Client, core: Core) -> None:
    from tests.api.test_keys import make_key

    booking = (
        await client.post(
            "/api/v1/bookings",
            json={"service_id": "hund-anmelden", "start": START, "citizen": CITIZEN},
        )
    ).json()
    unknown = {"Authorization": "Bearer sk_agent_" + "x" * 43}
    for _ in range(25):  # more than the failed look-ups an address may have
        response = await client.get(f"/api/v1/bookings/{booking['reference']}", headers=unknown)
        assert response.status_code == 401
    token = {"Authorization": f"Bearer {booking['manage_token']}"}
    assert (
        await client.get(f"/api/v1/bookings/{booking['reference']}", headers=token)
    ).status_code == 200
    agent = {"Authorization": f"Bearer {await make_key(core, 'agent')}"}
    assert (
        await client.get(f"/api/v1/bookings/{booking['reference']}", headers=agent)
    ).status_code == 200
