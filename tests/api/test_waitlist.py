"""The campaign's places and its waiting list: the places limit under concurrent confirms, joining,
offers made by the job in order (once per entry, also with two runs at once), accepting before
the deadline, lapsing after it (the next person gets the series), the agents' call-back list,
and public holds refused while people wait."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.seed import bump_catalog
from scheduler.clock import ManualClock
from scheduler.jobs import make_dispatcher
from scheduler.settings import Settings
from tests.api.test_campaign import FIRST, MONDAY, agent, citizen, hold
from tests.api.test_keys import assert_problem
from tests.booking.test_contingents import local

__all__ = ["agent"]  # the fixture, used by name

Client = AsyncTestClient[Litestar]


def mails(folder: str) -> int:
    return len(list(Path(folder).rglob("*.eml")))


async def set_places(core: Core, places: int) -> None:
    async with core.sessions() as session, session.begin():
        await session.execute(update(m.Campaign).values(places=places))
        await bump_catalog(session, core.clock.now())
    await core.refresh_catalog(force=True)


def person(n: int) -> Person:
    return Person(f"Person {n}", f"p{n}@example.org", birth_date=date(1930, 1, 1) + timedelta(n),
                  postcode="39517")  # fmt: skip


async def series(core: Core, n: int, hour: int) -> str:
    view, _ = await core.bookings.book(
        [FIRST], local(MONDAY, hour), 1, BookingRequest(person(n), channel="phone"), Actor(),
        None, lambda _v: b"", series=True,
    )  # fmt: skip
    assert view is not None
    return view.id


async def active_series(core: Core) -> int:
    async with core.sessions() as session:
        return int(
            await session.scalar(
                select(func.count(func.distinct(m.Booking.id)))
                .join(m.Appointment, m.Appointment.booking_id == m.Booking.id)
                .where(
                    m.Booking.status.in_([s.value for s in m.ACTIVE_STATUSES]),
                    m.Appointment.position == 0,
                )
            )
            or 0
        )


async def entries(core: Core) -> list[m.WaitlistEntry]:
    async with core.sessions() as session:
        return list(await session.scalars(select(m.WaitlistEntry).order_by(m.WaitlistEntry.id)))


async def booking(core: Core, booking_id: str | None) -> m.Booking:
    assert booking_id is not None
    async with core.sessions() as session:
        found = await session.get(m.Booking, booking_id)
    assert found is not None
    return found


async def kinds(core: Core, booking_id: str | None) -> list[str]:
    async with core.sessions() as session:
        return list(
            await session.scalars(
                select(m.Notification.kind)
                .where(
                    m.Notification.booking_id == booking_id,
                    m.Notification.status != m.NotificationStatus.CANCELLED.value,
                )
                .order_by(m.Notification.id)
            )
        )


async def join(client: Client, headers: dict[str, str], who: dict[str, Any]) -> Any:
    return await client.post(
        "/api/v1/waitlist", json={"service_id": FIRST, "citizen": who}, headers=headers
    )


async def test_places_hold_under_concurrent_confirms(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    await set_places(core, 3)
    held = []
    for n in range(6):
        response = await hold(
            client,
            agent,
            series=True,
            start=(local(MONDAY, 8) + timedelta(minutes=10 * n)).isoformat(),
            citizen=citizen(n),
        )
        assert response.status_code == 201, response.text
        held.append(response.json()["hold_id"])
    answers = await asyncio.gather(
        *(
            client.post("/api/v1/bookings", json={"hold_id": h, "citizen": citizen(n)},
                        headers=agent)
            for n, h in enumerate(held)
        )
    )  # fmt: skip
    assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 3
    full = next(a for a in answers if a.status_code == 409)
    assert_problem(full, 409, "campaign_full")
    assert await active_series(core) == 3
    async with core.sessions() as session:
        assert await session.scalar(select(m.Campaign.taken)) == 3
    # a new hold is refused early; an English caller reads English
    later = await hold(client, agent | {"Accept-Language": "en"}, series=True,
                       start=local(MONDAY, 15).isoformat(), citizen=citizen(9))  # fmt: skip
    assert "waiting list" in assert_problem(later, 409, "campaign_full")["detail"]


async def test_the_waiting_list_moves_on_cancellations_and_unanswered_offers(
    client: Client, core: Core, clock: ManualClock, agent: dict[str, str], settings: Settings
) -> None:
    await set_places(core, 2)
    first = await series(core, 0, 8)
    second = await series(core, 1, 9)
    assert_problem(await hold(client, {}, series=True, citizen=citizen(9)), 409, "campaign_full")

    # join: online with e-mail, by an agent for a caller with a phone only; once per person
    online = await join(client, {}, citizen(2))
    assert online.status_code == 201, online.text
    assert online.json()["position"] == 1
    assert online.json()["channel"] == "online"
    caller = {"name": "Person 3", "phone": "+49 3935 1234", "birth_date": "1930-01-04",
              "postcode": "39517"}  # fmt: skip
    by_phone = await join(client, agent, caller)
    assert by_phone.status_code == 201, by_phone.text
    assert by_phone.json() | {"entry_id": 0} == {
        "entry_id": 0, "position": 2, "status": "waiting", "channel": "phone"
    }  # fmt: skip
    assert_problem(await join(client, {}, citizen(2)), 409, "limit_reached")
    assert_problem(await join(client, {}, citizen(0)), 409, "limit_reached")  # has a series
    young = await join(client, {}, citizen(4, birth="1960-01-01"))
    assert assert_problem(young, 403, "not_eligible")["reason"] == "too_young"
    assert (await join(client, {}, citizen(5))).json()["position"] == 3

    # full: nothing to offer
    assert (await core.waitlist.run_once()).offered == 0
    # a cancellation frees a series: the first in line gets it, as a pending booking
    await core.bookings.cancel(first, Actor())
    # ... and while people wait, nobody else may hold the campaign's first dose
    public = await hold(client, {}, series=True, citizen=citizen(9))
    assert "Warteliste" in assert_problem(public, 409, "waitlist_first")["detail"]
    assert (await core.waitlist.run_once()).offered == 1
    assert (await core.waitlist.run_once()).offered == 0  # no entry is offered twice
    one, three, five = await entries(core)
    assert (one.status, three.status, five.status) == ("offered", "waiting", "waiting")
    offered = await booking(core, one.booking_id)
    assert offered.status == "pending"
    assert offered.pending_until == one.offer_until
    assert clock.now() < offered.pending_until <= offered.starts_at - timedelta(hours=1)
    assert await kinds(core, offered.id) == ["waitlist_offer"]
    assert await active_series(core) == 2

    # the offer goes out with its deadline and the link to accept it
    await make_dispatcher(core, settings).run_once()
    report = await make_dispatcher(core, settings).run_once()
    assert (report.sent, report.failed) == (0, 0)  # sent by the first run already
    assert mails(settings.mail_dir) == 4  # two confirmations, a cancellation, the offer
    async with core.sessions() as session:
        sent = await session.scalar(
            select(m.Notification.status).where(m.Notification.booking_id == offered.id)
        )
    assert sent == "sent"

    # two runs at once after the next cancellation: one offer, to the next in line
    await core.bookings.cancel(second, Actor())
    reports = await asyncio.gather(core.waitlist.run_once(), core.waitlist.run_once())
    assert sum(r.offered for r in reports) == 1
    one, three, five = await entries(core)
    assert (three.status, five.status) == ("offered", "waiting")

    # the phone-only caller is on the agents' call-back list, the e-mail person is not
    callbacks = await client.get("/api/v1/agent/callbacks", headers=agent)
    assert callbacks.status_code == 200, callbacks.text
    [call] = callbacks.json()
    assert call["name"] == "Person 3"
    assert call["phone"] == "+4939351234"
    assert call["booking"]["status"] == "pending"
    assert len(call["booking"]["appointments"]) == 2
    assert (await client.get("/api/v1/agent/callbacks")).status_code == 401

    # accepting before the deadline confirms the booking and queues the confirmation
    token = core.bookings.token_for(offered)
    path = f"/api/v1/waitlist/offers/{offered.reference}/accept"
    accepted = await client.post(path, headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "confirmed"
    assert (
        await client.post(path, headers={"Authorization": f"Bearer {token}"})
    ).status_code == 200
    assert (await entries(core))[0].status == "booked"
    assert "confirmation" in await kinds(core, offered.id)
    wrong = await client.post(path, headers={"Authorization": "Bearer nope"})
    assert_problem(wrong, 404, "not_found")

    # the caller does not answer: past the deadline the agent cannot accept any more, the job
    # lets the offer lapse and the next person gets the freed series
    unanswered = await booking(core, three.booking_id)
    assert unanswered.pending_until is not None
    clock.set(unanswered.pending_until)
    late = await client.post(
        f"/api/v1/waitlist/offers/{unanswered.reference}/accept", headers=agent
    )
    assert_problem(late, 410, "offer_expired")
    report = await core.waitlist.run_once()
    assert (report.lapsed, report.offered) == (1, 1)
    one, three, five = await entries(core)
    assert (one.status, three.status, five.status) == ("booked", "expired", "offered")
    assert (await booking(core, three.booking_id)).status == "cancelled"
    assert await kinds(core, three.booking_id) == []  # a lapse sends nothing
    assert await active_series(core) == 2
    async with core.sessions() as session:
        assert await session.scalar(select(m.Campaign.taken)) == 2
    # the list is empty again (the last one holds an offer): public holds meet the full campaign
    assert_problem(await hold(client, {}, series=True, citizen=citizen(9)), 409, "campaign_full")
    # an agent accepts for a caller; the one who let it lapse may join again
    fifth = await booking(core, five.booking_id)
    by_agent = await client.post(f"/api/v1/waitlist/offers/{fifth.reference}/accept", headers=agent)
    assert by_agent.json()["status"] == "confirmed"
    assert (await join(client, agent, caller)).status_code == 201


async def test_a_declined_offer_passes_on(client: Client, core: Core) -> None:
    await set_places(core, 1)
    taken = await series(core, 0, 8)
    for n in (1, 2):
        assert (await join(client, {}, citizen(n))).status_code == 201
    await core.bookings.cancel(taken, Actor())
    await core.waitlist.run_once()
    one, _two = await entries(core)
    offered = await booking(core, one.booking_id)
    token = core.bookings.token_for(offered)
    declined = await client.post(
        f"/api/v1/bookings/{offered.reference}/cancel", headers={"Authorization": f"Bearer {token}"}
    )
    assert declined.status_code == 200, declined.text
    assert (await core.waitlist.run_once()).offered == 1
    one, two = await entries(core)
    assert (one.status, two.status) == ("withdrawn", "offered")
    gone = await client.post(
        f"/api/v1/waitlist/offers/{offered.reference}/accept",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_problem(gone, 410, "offer_expired")
