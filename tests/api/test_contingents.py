"""Phone contingents through the HTTP API: anonymous callers see and hold only the online share
of a day, agents (and staff) every free seat; cancelling an online booking gives its share back;
a day is released to online booking ``phone_release_days`` before it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from scheduler.booking.core import Core
from scheduler.clock import ManualClock
from tests.api.test_keys import assert_problem, bearer, make_key
from tests.booking.test_contingents import (
    CLERKS,
    ELDER,
    FRIDAY,
    budgets,
    local,
    set_contingent,
)

Client = AsyncTestClient[Litestar]
MONDAY = date(2026, 11, 30)
VACCINATION = "impfung-erstimpfung"
ELDER_IN = {"name": "Erna Alt", "birth_date": "1940-01-01", "postcode": "39517"}


async def slots(
    client: Client, service: str, day: date, headers: dict[str, str] | None = None
) -> dict[str, int]:
    response = await client.get(
        f"/api/v1/services/{service}/slots",
        params={"from": str(day), "to": str(day)},
        headers=headers or {},
    )
    assert response.status_code == 200, response.text
    return {r["start"]: r["free"] for r in response.json()}


async def post_hold(
    client: Client, service: str, start: str, headers: dict[str, str] | None = None
) -> Any:
    body: dict[str, Any] = {"service_id": service, "start": start}
    if service == VACCINATION:
        body["citizen"] = ELDER_IN
    return await client.post("/api/v1/holds", json=body, headers=headers or {})


async def test_anonymous_callers_see_and_hold_only_the_online_share(
    client: Client, core: Core
) -> None:
    """The demo campaign keeps 80 % of the vaccination lines for the hotline: per line and
    Monday 22 of 114 seat-cells (57 ten-minute cells of two seats) are for online booking."""
    agent = bearer(await make_key(core, "agent"))
    staff = bearer(await make_key(core, "staff", ["impflinie-1"]))
    anonymous = await slots(client, VACCINATION, MONDAY)
    assert len(anonymous) == 57
    assert sum(anonymous.values()) == 228  # every start is within the budget still
    assert await slots(client, VACCINATION, MONDAY, agent) == anonymous

    # online takes all but one seat-cell of the day's online budget
    starts = [local(MONDAY, 8) + timedelta(minutes=10 * n) for n in range(24)]
    starts += [local(MONDAY, 12, 30) + timedelta(minutes=10 * n) for n in range(33)]
    for start in starts[:43]:
        await core.bookings.hold([VACCINATION], start, 1, "online", citizen=ELDER)
    assert sorted((await budgets(core, ["impflinie-1", "impflinie-2"], MONDAY)).values()) == [0, 1]
    # anonymous callers (asking first, so a cache without the channel would answer the agent
    # with this) see one online booking left at every start; agents and staff see every seat
    anonymous = await slots(client, VACCINATION, MONDAY)
    assert anonymous == {start: 1 for start in anonymous}
    assert len(anonymous) == 57
    assert sum((await slots(client, VACCINATION, MONDAY, agent)).values()) == 228 - 43
    assert sum((await slots(client, VACCINATION, MONDAY, staff)).values()) == 228 - 43

    last = starts[50].isoformat()
    assert (await post_hold(client, VACCINATION, last)).status_code == 201
    assert await slots(client, VACCINATION, MONDAY) == {}
    full = await post_hold(client, VACCINATION, starts[51].isoformat())
    assert_problem(full, 409, "slot_full")
    phone = await post_hold(client, VACCINATION, starts[51].isoformat(), agent)
    assert phone.status_code == 201, phone.text
    # 44 of 228 seat-cells went online: the online share, 20 % per line rounded down
    agent_view = await slots(client, VACCINATION, MONDAY, agent)
    assert sum(agent_view.values()) == 228 - 45
    # another day has its own share; ordinary services have none
    assert len(await slots(client, VACCINATION, MONDAY + timedelta(days=1))) == 57
    assert await slots(client, "hund-anmelden", MONDAY) == await slots(
        client, "hund-anmelden", MONDAY, agent
    )


@pytest.fixture
async def clerks_contingent(core: Core) -> None:
    """90 % of the clerks' seats for the phone: on Friday's 16 morning cells one online booking
    per clerk, until Tuesday, three days before. Set before the app starts (it loads the
    catalog then)."""
    await set_contingent(core, CLERKS, 90, 3)


async def test_cancelling_an_online_booking_returns_its_share_and_release_frees_the_day(
    clerks_contingent: None, client: Client, core: Core, clock: ManualClock
) -> None:
    agent = bearer(await make_key(core, "agent"))
    friday = list(await slots(client, "hund-anmelden", FRIDAY))
    assert len(friday) == 16
    tokens = []
    for n, start in enumerate(friday[:3]):
        response = await client.post(
            "/api/v1/bookings",
            json={
                "service_id": "hund-anmelden",
                "start": start,
                "citizen": {"name": f"Person {n}", "email": f"p{n}@example.org"},
            },
        )
        assert response.status_code == 201, response.text
        tokens.append((response.json()["reference"], response.json()["manage_token"]))
    assert await slots(client, "hund-anmelden", FRIDAY) == {}
    assert_problem(await post_hold(client, "hund-anmelden", friday[5]), 409, "slot_full")
    agent_view = await slots(client, "hund-anmelden", FRIDAY, agent)
    assert sum(agent_view.values()) == 48 - 3

    reference, token = tokens[0]
    cancelled = await client.post(f"/api/v1/bookings/{reference}/cancel", headers=bearer(token))
    assert cancelled.status_code == 200, cancelled.text
    assert sum((await budgets(core, CLERKS, FRIDAY)).values()) == 1
    anonymous = await slots(client, "hund-anmelden", FRIDAY)
    assert len(anonymous) == 16  # the cancelled booking's clerk, free at every start
    assert set(anonymous.values()) == {1}
    # the phone books on, and takes nothing from online
    assert (await post_hold(client, "hund-anmelden", friday[5], agent)).status_code == 201
    assert sum((await slots(client, "hund-anmelden", FRIDAY, agent)).values()) == 48 - 2 - 1
    assert sum((await budgets(core, CLERKS, FRIDAY)).values()) == 1

    # Tuesday 00:00 in Berlin: Friday is three days ahead, what is left is released online
    clock.set(local(date(2026, 11, 24), 0))
    await core.sweep_holds()  # the agent's hold expired meanwhile
    released = await slots(client, "hund-anmelden", FRIDAY)
    assert released == await slots(client, "hund-anmelden", FRIDAY, agent)
    assert sum(released.values()) == 48 - 2
    for start in friday[6:9]:
        assert (await post_hold(client, "hund-anmelden", start)).status_code == 201


async def test_an_online_series_takes_its_second_dose_where_the_online_share_allows(
    client: Client, core: Core
) -> None:
    """The earliest second dose of an online series is the earliest with online budget left:
    with the 21 December's online share used up, an online series gets the 22nd, an agent's
    the 21st (the hotline's share is untouched)."""
    agent = bearer(await make_key(core, "agent"))
    second_day = date(2026, 12, 21)
    lines = ["impflinie-1", "impflinie-2"]
    starts = [local(second_day, 8) + timedelta(minutes=10 * n) for n in range(24)]
    starts += [local(second_day, 12, 30) + timedelta(minutes=10 * n) for n in range(33)]
    for start in starts[:44]:
        await core.bookings.hold(["impfung-zweitimpfung"], start, 1, "online", citizen=ELDER)
    assert set((await budgets(core, lines, second_day)).values()) == {0}
    body = {
        "service_id": VACCINATION, "start": local(MONDAY, 8).isoformat(), "series": True,
        "citizen": ELDER_IN,
    }  # fmt: skip
    online = await client.post("/api/v1/holds", json=body)
    assert online.status_code == 201, online.text
    assert online.json()["appointments"][1]["start"].startswith("2026-12-22")
    phone = await client.post("/api/v1/holds", json=body, headers=agent)
    assert phone.status_code == 201, phone.text
    assert phone.json()["appointments"][1]["start"].startswith("2026-12-21")
