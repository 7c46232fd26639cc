"""The admin API for API keys: who may call it, what a key looks like, that it is stored hashed."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from scheduler.api import auth
from scheduler.booking import apikeys
from scheduler.booking import models as m
from scheduler.booking.core import Core

Client = AsyncTestClient[Litestar]
KEYS = "/api/v1/keys"


async def make_key(core: Core, role: str, calendar_ids: list[str] | None = None) -> str:
    """A key written straight into the database, as `scheduler keys create` does."""
    async with core.sessions() as session, session.begin():
        _, secret = await apikeys.create_key(
            session,
            role=role,
            name=f"first {role}",
            calendar_ids=calendar_ids or [],
            known_calendars=set(core.catalog.calendars),
            now=core.clock.now(),
        )
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


@pytest.fixture
async def admin(core: Core) -> str:
    return await make_key(core, "admin")


async def test_without_a_key_is_401(client: Client) -> None:
    response = await client.post(KEYS, json={"role": "agent", "name": "Anna"})
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(await client.get(KEYS), 401, "unauthorized")
    assert_problem(await client.delete(f"{KEYS}/abc"), 401, "unauthorized")


@pytest.mark.parametrize("role", ["agent", "staff"])
async def test_other_roles_are_403(client: Client, core: Core, role: str) -> None:
    secret = await make_key(core, role, ["schalter-1"] if role == "staff" else None)
    response = await client.post(
        KEYS, json={"role": "admin", "name": "Mallory"}, headers=bearer(secret)
    )
    assert_problem(response, 403, "forbidden")
    assert_problem(await client.get(KEYS, headers=bearer(secret)), 403, "forbidden")


@pytest.mark.parametrize(
    "authorization",
    [
        "sk_admin_nope",
        "Basic abc",
        "Bearer ",
        "Bearer sk_admin_nope",
        "Bearer nothing-like-a-key",
        "Bearer sk_admin_" + "x" * 300,
    ],
)
async def test_garbage_credentials_are_401(client: Client, admin: str, authorization: str) -> None:
    response = await client.post(
        KEYS, json={"role": "agent", "name": "Anna"}, headers={"Authorization": authorization}
    )
    assert_problem(response, 401, "unauthorized")


async def test_the_admin_key_without_bearer_scheme_is_401(client: Client, admin: str) -> None:
    assert_problem(await client.get(KEYS, headers={"Authorization": admin}), 401, "unauthorized")
    assert_problem(
        await client.get(KEYS, headers={"Authorization": f"Basic {admin}"}), 401, "unauthorized"
    )
    ok = await client.get(KEYS, headers={"Authorization": f"bearer  {admin} "})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("role", "calendar_ids"),
    [("agent", []), ("staff", ["schalter-1", "sachbearbeitung-2"]), ("admin", [])],
)
async def test_admin_creates_keys_that_work(
    client: Client, admin: str, role: str, calendar_ids: list[str]
) -> None:
    response = await client.post(
        KEYS,
        json={"role": role, "name": f"Neuer Schlüssel {role}", "calendar_ids": calendar_ids},
        headers=bearer(admin),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "role", "calendar_ids", "created_at", "key"}
    assert body["role"] == role
    assert body["name"] == f"Neuer Schlüssel {role}"
    assert body["calendar_ids"] == sorted(calendar_ids)
    assert body["key"].startswith(f"sk_{role}_")
    assert len(body["key"]) >= len(f"sk_{role}_") + 43
    # the new key authenticates as its role
    listing = await client.get(KEYS, headers=bearer(body["key"]))
    assert listing.status_code == (200 if role == "admin" else 403)
    assert listing.status_code != 401


async def test_every_key_is_different(client: Client, admin: str) -> None:
    keys = set()
    for _ in range(5):
        response = await client.post(
            KEYS, json={"role": "agent", "name": "Callcenter"}, headers=bearer(admin)
        )
        keys.add(response.json()["key"])
    assert len(keys) == 5


async def test_list_shows_keys_but_never_their_secrets(client: Client, admin: str) -> None:
    created = []
    for role, calendars in (("agent", []), ("staff", ["schalter-2"]), ("admin", [])):
        response = await client.post(
            KEYS,
            json={"role": role, "name": f"K {role}", "calendar_ids": calendars},
            headers=bearer(admin),
        )
        assert response.status_code == 201
        created.append(response.json())
    listing = await client.get(KEYS, headers=bearer(admin))
    assert listing.status_code == 200
    rows = listing.json()
    assert len(rows) == 4  # the first admin key and the three new ones
    for row in rows:
        assert set(row) == {"id", "name", "role", "calendar_ids", "created_at", "revoked_at"}
        assert row["revoked_at"] is None
    by_id = {row["id"]: row for row in rows}
    for key in created:
        assert by_id[key["id"]]["role"] == key["role"]
        assert by_id[key["id"]]["calendar_ids"] == key["calendar_ids"]
    for secret in [admin] + [k["key"] for k in created]:
        assert secret not in listing.text
        assert hashlib.sha256(secret.encode()).hexdigest() not in listing.text
        assert secret[:20] not in listing.text


async def test_staff_key_needs_a_calendar(client: Client, admin: str) -> None:
    response = await client.post(
        KEYS, json={"role": "staff", "name": "Schalter"}, headers=bearer(admin)
    )
    body = assert_problem(response, 422, "validation_failed")
    assert [e["field"] for e in body["errors"]] == ["calendar_ids"]
    assert "Kalender" in body["errors"][0]["message"]


async def test_unknown_calendar_is_422(client: Client, admin: str) -> None:
    response = await client.post(
        KEYS,
        json={"role": "staff", "name": "Schalter", "calendar_ids": ["schalter-1", "mond-1"]},
        headers={**bearer(admin), "Accept-Language": "en"},
    )
    body = assert_problem(response, 422, "validation_failed")
    assert [e["field"] for e in body["errors"]] == ["calendar_ids"]
    assert "mond-1" in body["errors"][0]["message"]
    assert "schalter-1" not in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"role": "superuser", "name": "X"}, "role"),
        ({"role": "Admin", "name": "X"}, "role"),
        ({"name": "X"}, "role"),
        ({"role": "agent"}, "name"),
        ({"role": "agent", "name": "   "}, "name"),
        ({"role": "agent", "name": "x" * 201}, "name"),
        ({"role": "agent", "name": "X", "secret": "mine"}, "secret"),
    ],
)
async def test_bad_bodies_are_422(
    client: Client, admin: str, payload: dict[str, Any], field: str
) -> None:
    response = await client.post(KEYS, json=payload, headers=bearer(admin))
    body = assert_problem(response, 422, "validation_failed")
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    # A missing or unknown field is reported by msgspec on the whole body ("data"); the
    # message then names the field.
    assert error["field"] == field or (
        error["field"] == "data" and f"`{field}`" in error["message"]
    )


async def test_nothing_is_created_by_a_rejected_request(client: Client, admin: str) -> None:
    await client.post(KEYS, json={"role": "staff", "name": "S"}, headers=bearer(admin))
    await client.post(KEYS, json={"role": "root", "name": "S"}, headers=bearer(admin))
    rows = (await client.get(KEYS, headers=bearer(admin))).json()
    assert [row["role"] for row in rows] == ["admin"]


async def test_revoked_key_is_401_at_once(client: Client, admin: str) -> None:
    created = (
        await client.post(KEYS, json={"role": "admin", "name": "Vertretung"}, headers=bearer(admin))
    ).json()
    other = created["key"]
    # used once, so the 5-second principal cache holds it
    assert (await client.get(KEYS, headers=bearer(other))).status_code == 200
    assert auth._cache, "the principal cache should hold the key now"
    revoked = await client.delete(f"{KEYS}/{created['id']}", headers=bearer(admin))
    assert revoked.status_code == 204
    assert revoked.content == b""
    # well within CACHE_SECONDS: revoking through the API cleared the cache
    assert_problem(await client.get(KEYS, headers=bearer(other)), 401, "unauthorized")
    rows = {row["id"]: row for row in (await client.get(KEYS, headers=bearer(admin))).json()}
    assert rows[created["id"]]["revoked_at"] is not None
    assert rows[created["id"]]["revoked_at"].startswith("2026-11-23T06:00:00")
    # revoking twice, or an id that never existed, is 404
    assert_problem(
        await client.delete(f"{KEYS}/{created['id']}", headers=bearer(admin)), 404, "not_found"
    )
    body = assert_problem(
        await client.delete(f"{KEYS}/ffffffffffff", headers=bearer(admin)), 404, "not_found"
    )
    assert "ffffffffffff" in body["detail"]


async def test_revoking_behind_the_apis_back_takes_the_cache_time(
    client: Client, core: Core, admin: str
) -> None:
    """The cache is real: a key revoked directly in the database still works until it expires
    (here: until the cache is dropped), which is why the API clears it when it revokes."""
    agent = await make_key(core, "agent")
    row_id = (await client.get(KEYS, headers=bearer(admin))).json()[-1]["id"]
    assert (await client.get(KEYS, headers=bearer(agent))).status_code == 403
    async with core.sessions() as session, session.begin():
        await apikeys.revoke_key(session, row_id, core.clock.now())
    assert (await client.get(KEYS, headers=bearer(agent))).status_code == 403  # cached
    auth.forget_cached_keys()
    assert_problem(await client.get(KEYS, headers=bearer(agent)), 401, "unauthorized")


async def test_only_the_sha256_is_stored(client: Client, core: Core, admin: str) -> None:
    created = (
        await client.post(
            KEYS,
            json={"role": "staff", "name": "Schalter 1", "calendar_ids": ["schalter-1"]},
            headers=bearer(admin),
        )
    ).json()
    secret = created["key"]
    async with core.sessions() as session:
        row = await session.get(m.ApiKey, created["id"])
        assert row is not None
        assert row.key_hash != secret
        assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert row.role == "staff"
        assert row.calendar_ids == ["schalter-1"]
        # the secret is in no column of any key row
        for key_row in await session.scalars(select(m.ApiKey)):
            for column in m.ApiKey.__table__.columns:
                assert secret not in str(getattr(key_row, column.key))
