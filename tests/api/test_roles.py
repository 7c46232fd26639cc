"""Every route with every kind of caller: no key, a citizen's manage token, a waiting-list
entry's token, an agent key, a staff key of the booking's calendars, a staff key of another
calendar, an admin key.

The table below must name every route the app has (a new route without an entry fails), so no
route can be added without deciding who may call it. "Not found" and "not yours" look the
same: a staff key of another calendar gets exactly the 404 of something that does not exist."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from scheduler.booking.core import Core
from tests.api.test_keys import bearer, make_key
from tests.pages import with_csrf

Client = AsyncTestClient[Litestar]
OWN = "sachbearbeitung-1"
START = "2026-11-30T09:00:00+01:00"

# who may call: public (anyone), token (manage token, agent, admin, staff of the booking's
# calendars), feed (its feed token only), agent, admin, staff (of that calendar; admin too),
# entry (a waiting-list entry's token, agent, admin)
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/metrics"): "admin",
    ("GET", "/api/v1/locations"): "public",
    ("GET", "/api/v1/calendars"): "public",
    ("GET", "/api/v1/services"): "public",
    ("GET", "/api/v1/services/{service_id:str}/slots"): "public",
    ("POST", "/api/v1/holds"): "public",
    ("DELETE", "/api/v1/holds/{hold_id:str}"): "public",  # the hold id is the secret
    ("POST", "/api/v1/bookings"): "public",
    ("GET", "/api/v1/bookings/{reference:str}"): "token",
    ("POST", "/api/v1/bookings/{reference:str}/cancel"): "token",
    ("POST", "/api/v1/bookings/{reference:str}/reschedule"): "token",
    ("GET", "/api/v1/bookings/{reference:str}/calendar.ics"): "token",
    ("POST", "/api/v1/bookings/{reference:str}/confirm"): "token",
    ("POST", "/api/v1/waitlist"): "public",
    ("POST", "/api/v1/waitlist/offers/{reference:str}/accept"): "token",
    ("GET", "/api/v1/waitlist"): "agent",
    ("GET", "/api/v1/waitlist/{entry_id:int}"): "entry",
    ("POST", "/api/v1/waitlist/{entry_id:int}/leave"): "entry",
    ("GET", "/api/v1/calendars/{calendar_id:str}/feed.ics"): "feed",
    ("GET", "/api/v1/agent/next-slots"): "agent",
    ("GET", "/api/v1/agent/bookings"): "agent",
    ("GET", "/api/v1/agent/callbacks"): "agent",
    ("GET", "/api/v1/keys"): "admin",
    ("POST", "/api/v1/keys"): "admin",
    ("DELETE", "/api/v1/keys/{key_id:str}"): "admin",
    ("GET", "/api/v1/feeds"): "admin",
    ("POST", "/api/v1/feeds"): "admin",
    ("DELETE", "/api/v1/feeds/{token_id:str}"): "admin",
    ("GET", "/api/v1/admin/notifications"): "admin",
    ("POST", "/api/v1/admin/notifications/{notification_id:int}/retry"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/stats"): "admin",
    ("GET", "/api/v1/calendars/{calendar_id:str}/agenda"): "staff",
    ("PATCH", "/api/v1/calendars/{calendar_id:str}/slots/{start:str}"): "staff",
    ("POST", "/api/v1/calendars/{calendar_id:str}/closures"): "staff",
    ("POST", "/api/v1/calendars/{calendar_id:str}/closures/import"): "staff",
    ("POST", "/api/v1/bookings/{reference:str}/check-in"): "staff",
    ("POST", "/api/v1/bookings/{reference:str}/no-show"): "staff",
}
# The pages (scheduler/web): "page" anyone; "page-token" the booking's manage token in the link
# or form (the same guard as the API's, tested in tests/reliability/test_security.py); "login"
# the key's login form; "agent"/"staff" the console's session cookie only — an API key sent as
# a bearer opens none of them (tested below). Every form also needs the CSRF token.
PAGES: dict[tuple[str, str], str] = {
    ("GET", "/"): "page",
    ("GET", "/static/{file_path:path}"): "page",
    ("GET", "/termine/{service_id:str}"): "page",
    ("GET", "/termine/{service_id:str}/tag/{day:str}"): "page",
    ("POST", "/termine/{service_id:str}/reservieren"): "page",
    ("GET", "/termine/{service_id:str}/reservieren"): "page",  # back to the days (a switch)
    ("GET", "/termine/{service_id:str}/freigeben"): "page",
    ("GET", "/termine/{service_id:str}/angaben"): "page",
    ("POST", "/termine/{service_id:str}/angaben"): "page",
    ("POST", "/termine/{service_id:str}/freigeben"): "page",  # the hold id is the secret
    ("GET", "/buchung/{reference:str}"): "page-token",
    ("POST", "/buchung/{reference:str}/absagen"): "page-token",
    ("POST", "/buchung/{reference:str}/annehmen"): "page-token",
    ("GET", "/buchung/{reference:str}/bestaetigen"): "page-token",
    ("POST", "/buchung/{reference:str}/bestaetigen"): "page-token",
    ("GET", "/buchung/{reference:str}/verschieben"): "page-token",
    ("POST", "/buchung/{reference:str}/verschieben"): "page-token",
    ("GET", "/buchung/{reference:str}/verschieben/tag/{day:str}"): "page-token",
    ("GET", "/agent/anmelden"): "login",
    ("POST", "/agent/anmelden"): "login",
    ("GET", "/staff/anmelden"): "login",
    ("POST", "/staff/anmelden"): "login",
    ("GET", "/agent"): "agent",
    ("POST", "/agent/abmelden"): "agent",
    ("GET", "/agent/suche"): "agent",
    ("POST", "/agent/suche"): "agent",
    ("GET", "/agent/termin"): "agent",
    ("POST", "/agent/termin"): "agent",
    ("GET", "/agent/termin/pruefen"): "agent",
    ("POST", "/agent/termin/pruefen"): "agent",
    ("GET", "/agent/termin/buchen"): "agent",
    ("POST", "/agent/termin/buchen"): "agent",
    ("POST", "/agent/termin/freigeben"): "agent",
    ("GET", "/agent/buchung/{reference:str}"): "agent",
    ("GET", "/agent/buchung/{reference:str}/absagen"): "agent",
    ("POST", "/agent/buchung/{reference:str}/absagen"): "agent",
    ("POST", "/agent/buchung/{reference:str}/annehmen"): "agent",
    ("GET", "/agent/buchung/{reference:str}/verschieben"): "agent",
    ("POST", "/agent/buchung/{reference:str}/verschieben"): "agent",
    ("GET", "/staff"): "staff",
    ("POST", "/staff/abmelden"): "staff",
    ("GET", "/staff/buchung/{reference:str}/{mark:str}"): "staff",
    ("POST", "/staff/buchung/{reference:str}/{mark:str}"): "staff",
    ("GET", "/staff/kalender/{calendar_id:str}/abo"): "staff",
    ("POST", "/staff/kalender/{calendar_id:str}/abo"): "staff",
}
# routes called with ids that do not exist: past the guard, 404 is their honest answer
FAKE_IDS = {
    ("DELETE", "/api/v1/keys/{key_id:str}"),
    ("DELETE", "/api/v1/feeds/{token_id:str}"),
    ("POST", "/api/v1/admin/notifications/{notification_id:int}/retry"),
}
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/calendars/{calendar_id:str}/slots/{start:str}"): {"capacity": 1},
    ("POST", "/api/v1/bookings/{reference:str}/reschedule"): {"hold_id": "rathaus.nothing"},
    ("POST", "/api/v1/calendars/{calendar_id:str}/closures"): {
        "from": "2026-12-01T08:00:00+01:00",
        "to": "2026-12-01T09:00:00+01:00",
        "reason": "Fortbildung",
        "policy": "cancel",
    },
    ("POST", "/api/v1/keys"): {"role": "agent", "name": "Neu"},
    ("POST", "/api/v1/feeds"): {"calendar_id": OWN},
}
CALLERS = ["nobody", "manage_token", "waitlist_token", "agent", "staff_own", "staff_other", "admin"]
DENIED = {401, 403, 404}


def expected(kind: str, caller: str) -> int | None:
    """The exact refusal, or None when the caller passes the guard (any other answer)."""
    key_routes = {"agent", "admin", "staff"}
    if kind == "public":
        return None
    if kind in key_routes and caller in ("nobody", "manage_token", "waitlist_token"):
        return 401  # a manage token is never a key
    if kind == "admin":
        return None if caller == "admin" else 403
    if kind == "agent":
        return None if caller in ("agent", "admin") else 403
    if kind == "staff":
        if caller == "agent":
            return 403
        return 404 if caller == "staff_other" else None
    if kind == "token":
        return 404 if caller in ("nobody", "staff_other", "waitlist_token") else None
    if kind == "entry":  # a booking's manage token or a staff key opens no entry
        return None if caller in ("waitlist_token", "agent", "admin") else 404
    if kind == "feed":
        return 404  # only its feed token opens a feed; no key, no manage token
    raise AssertionError(kind)


def test_the_table_names_every_route(app: Litestar) -> None:
    routes = {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", set()) - {"HEAD", "OPTIONS"}
        if not route.path.startswith("/schema")
    }
    assert routes == set(ROUTES) | set(PAGES)
    assert not set(ROUTES) & set(PAGES)


@pytest.mark.parametrize("caller", CALLERS)
async def test_console_pages_open_only_with_their_session(
    client: Client, callers: dict[str, Any], caller: str
) -> None:
    """An API key (or token) sent as a bearer opens no console page: each one answers with the
    way to its login form, and nothing is done."""
    headers = callers["headers"][caller]
    form = await with_csrf(client, {"start": START, "leistung": "hund-anmelden"})
    wrong = []
    for (method, path), kind in PAGES.items():
        if kind not in ("agent", "staff"):
            continue
        url = concrete(path, callers["reference"], callers["entry_id"]).replace(
            "{mark:str}", "erschienen"
        )
        if method == "GET":  # the query a console page may need, so only the session decides
            url += f"?leistung=hund-anmelden&start={quote(START, safe='')}"
        response = await client.request(
            method, url, headers=headers, data=form if method == "POST" else None,
            follow_redirects=False,
        )  # fmt: skip
        location = response.headers.get("location", "")
        # to the login form; a form's own path opened by GET leads back to the area's page
        back = method == "GET" and location.split("?")[0] == f"/{kind}"
        if response.status_code != 303 or not (location.startswith(f"/{kind}/anmelden") or back):
            wrong.append(f"{method} {url}: {response.status_code} {location}")
    assert wrong == []


@pytest.fixture
async def callers(client: Client, core: Core) -> dict[str, Any]:
    own = await make_key(
        core, "staff", ["sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3"]
    )
    booked = await client.post(
        "/api/v1/bookings",
        json={
            "service_id": "hund-anmelden",
            "start": START,
            "citizen": {"name": "Erika Mustermann", "email": "erika@example.org"},
        },
    )
    assert booked.status_code == 201, booked.text
    body = booked.json()
    joined = await client.post(
        "/api/v1/waitlist",
        json={
            "service_id": "impfung-erstimpfung",
            "citizen": {"name": "Karl Muster", "email": "karl@example.org",
                        "birth_date": "1930-01-01", "postcode": "39517"},
        },
    )  # fmt: skip
    assert joined.status_code == 201, joined.text
    entry = joined.json()
    return {
        "reference": body["reference"],
        "entry_id": entry["entry_id"],
        "headers": {
            "nobody": {},
            "manage_token": {"Authorization": f"Bearer {body['manage_token']}"},
            "waitlist_token": {"Authorization": f"Bearer {entry['token']}"},
            "agent": bearer(await make_key(core, "agent")),
            "staff_own": bearer(own),
            "staff_other": bearer(await make_key(core, "staff", ["schalter-1"])),
            "admin": bearer(await make_key(core, "admin")),
        },
    }


def concrete(path: str, reference: str, entry_id: int) -> str:
    return (
        path.replace("{reference:str}", reference)
        .replace("{entry_id:int}", str(entry_id))
        .replace("{calendar_id:str}", OWN)
        .replace("{service_id:str}", "hund-anmelden")
        .replace("{hold_id:str}", "rathaus.nothing")
        .replace("{key_id:str}", "nokey")
        .replace("{token_id:str}", "notoken")
        .replace("{notification_id:int}", "1")
        .replace("{start:str}", quote(START, safe=""))
    )


@pytest.mark.parametrize("caller", CALLERS)
async def test_every_route_with_every_caller(
    client: Client, callers: dict[str, Any], caller: str
) -> None:
    headers = callers["headers"][caller]
    wrong: list[str] = []
    # harmless, valid-looking requests; the cancelling ones run last
    order = sorted(
        ROUTES, key=lambda r: (any(w in r[1] for w in ("cancel", "absagen", "leave")), r)
    )
    for method, path in order:
        kind = ROUTES[(method, path)]
        url = concrete(path, callers["reference"], callers["entry_id"])
        params = {
            "booking": callers["reference"],
            "from": "2026-11-30",
            "to": "2026-11-30",
            "date": "2026-11-30",
            "reference": callers["reference"],
            "campaign": "impfung-76plus",
        }
        json_body: Any = BODIES.get((method, path), {})
        response = await client.request(
            method,
            url,
            headers=headers,
            params=params if method == "GET" else None,
            json=json_body if method in ("POST", "PATCH") else None,
        )
        want = expected(kind, caller)
        got = response.status_code
        if want is None and got in DENIED and not (kind == "public" or (method, path) in FAKE_IDS):
            wrong.append(f"{method} {path}: {got}, expected to pass the guard")
        elif want is not None and got != want:
            wrong.append(f"{method} {path}: {got}, expected {want}")
        assert got < 500, f"{method} {path}: {got} {response.text}"
    assert not wrong, "\n".join(wrong)


async def test_not_yours_is_the_same_answer_as_not_there(
    client: Client, callers: dict[str, Any]
) -> None:
    other = callers["headers"]["staff_other"]
    reference = callers["reference"]
    for path in (f"/api/v1/bookings/{reference}", f"/api/v1/calendars/{OWN}/agenda"):
        theirs = await client.get(path, headers=other, params={"date": "2026-11-30"})
        missing_path = path.replace(reference, "ZZZZ-ZZZZ").replace(OWN, "schalter-9")
        missing = await client.get(missing_path, headers=other, params={"date": "2026-11-30"})
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["code"] == missing.json()["code"] == "not_found"
        assert theirs.json()["title"] == missing.json()["title"]
    # a waiting-list entry: a staff key or a booking's manage token is not its token
    entry_id = callers["entry_id"]
    for headers in (callers["headers"]["staff_own"], callers["headers"]["manage_token"]):
        theirs = await client.get(f"/api/v1/waitlist/{entry_id}", headers=headers)
        missing = await client.get(f"/api/v1/waitlist/{entry_id + 1000}", headers=headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()
