"""The campaign's places and its waiting list: the places limit under concurrent confirms, joining,
offers made by the job in order (once per entry, also with two runs at once), accepting before
the deadline, lapsing after it (the next person gets the series), the agents' call-back list,
and public holds refused while people wait; the person's view of their entry by its token and
leaving the list, the agents' list of a campaign's entries, and the retention of entries'
personal data."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update

from scheduler.booking import codes
from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.seed import bump_catalog
from scheduler.clock import ManualClock
from scheduler.jobs import make_dispatcher
from scheduler.settings import Settings
from tests.api.test_campaign import FIRST, MONDAY, agent, citizen, hold
from tests.api.test_keys import assert_problem, bearer, make_key
from tests.booking.test_contingents import local
from tests.conftest import T0

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
    answer = by_phone.json()
    assert len(answer.pop("token")) == 43  # the entry's token, shown once
    assert answer | {"entry_id": 0} == {
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


# -- the person's view, leaving, the agents' list, retention ------------------------------------

CAMPAIGN = "impfung-76plus"
LIST = "/api/v1/waitlist"


def by_token(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def keys_of(core: Core, entry_id: int) -> int:
    async with core.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(m.WaitlistKey)
                .where(m.WaitlistKey.entry_id == entry_id)
            )
            or 0
        )


async def test_see_the_place_leave_and_join_again(client: Client, core: Core) -> None:
    await set_places(core, 1)
    await series(core, 0, 8)
    first, second = (await join(client, {}, citizen(1))), (await join(client, {}, citizen(2)))
    assert first.status_code == second.status_code == 201, first.text
    one, two = first.json(), second.json()
    assert one["token"] != two["token"]
    # the entry's token is no booking's manage token: another namespace of the same secret
    assert one["token"] != codes.manage_token(core.secret_key, str(one["entry_id"]), 1)

    url = f"{LIST}/{one['entry_id']}"
    seen = await client.get(url, headers=by_token(one["token"]))
    assert seen.status_code == 200, seen.text
    assert seen.headers["cache-control"] == "no-store"
    assert seen.json() == {
        "entry_id": one["entry_id"], "status": "waiting", "channel": "online", "position": 1
    }  # fmt: skip
    theirs = await client.get(f"{LIST}/{two['entry_id']}", headers=by_token(two["token"]))
    assert theirs.json()["position"] == 2

    # a wrong token, another entry's token, no token, a missing entry: the same 404
    missing = await client.get(f"{LIST}/99999", headers=by_token(one["token"]))
    body = assert_problem(missing, 404, "not_found")
    for headers in (by_token("guessed"), by_token(two["token"]), {}):
        refused = await client.get(url, headers=headers)
        assert assert_problem(refused, 404, "not_found") == body
    refused = await client.post(f"{url}/leave", headers=by_token(two["token"]))
    assert assert_problem(refused, 404, "not_found") == body

    # leaving: withdrawn, the keys go, the next moves up; leaving again changes nothing
    left = await client.post(f"{url}/leave", headers=by_token(one["token"]))
    assert left.status_code == 200, left.text
    assert left.json() == {"entry_id": one["entry_id"], "status": "withdrawn", "channel": "online"}
    assert await keys_of(core, one["entry_id"]) == 0
    assert await keys_of(core, two["entry_id"]) > 0
    again = await client.post(f"{url}/leave", headers=by_token(one["token"]))
    assert again.status_code == 200, again.text
    assert again.json() == left.json()
    seen = await client.get(url, headers=by_token(one["token"]))
    assert seen.json()["status"] == "withdrawn"
    assert "position" not in seen.json()
    theirs = await client.get(f"{LIST}/{two['entry_id']}", headers=by_token(two["token"]))
    assert theirs.json()["position"] == 1
    async with core.sessions() as session:
        actions = list(
            await session.scalars(
                select(m.AuditEvent.action).where(m.AuditEvent.action.like("waitlist.%"))
            )
        )
    assert sorted(actions) == ["waitlist.join", "waitlist.join", "waitlist.leave"]

    # the person may join again: a new entry, at the end of the line
    rejoined = await join(client, {}, citizen(1))
    assert rejoined.status_code == 201, rejoined.text
    assert rejoined.json()["position"] == 2
    assert rejoined.json()["entry_id"] != one["entry_id"]
    assert_problem(await join(client, {}, citizen(1)), 409, "limit_reached")

    # an agent sees and ends an entry for a caller; a staff key cannot
    agent = bearer(await make_key(core, "agent"))
    staff = bearer(await make_key(core, "staff", ["impflinie-1"]))
    other = f"{LIST}/{two['entry_id']}"
    assert_problem(await client.get(other, headers=staff), 404, "not_found")
    assert_problem(await client.post(f"{other}/leave", headers=staff), 404, "not_found")
    assert (await client.get(other, headers=agent)).json()["status"] == "waiting"
    ended = await client.post(f"{other}/leave", headers=agent)
    assert ended.json()["status"] == "withdrawn"


async def test_wrong_entry_tokens_count_against_the_address(client: Client) -> None:
    joined = (await join(client, {}, citizen(1))).json()
    url = f"{LIST}/{joined['entry_id']}"
    for _ in range(5):  # the right token never counts
        assert (await client.get(url, headers=by_token(joined["token"]))).status_code == 200
    for _ in range(20):  # Limits.token_failures_per_address
        assert (await client.get(url, headers=by_token("guessed"))).status_code == 404
    blocked = await client.get(url, headers=by_token(joined["token"]))
    assert_problem(blocked, 429, "rate_limited")
    assert_problem(
        await client.post(f"{url}/leave", headers=by_token(joined["token"])), 429, "rate_limited"
    )


async def test_leaving_with_an_open_offer_is_refused(client: Client, core: Core) -> None:
    await set_places(core, 1)
    taken = await series(core, 0, 8)
    joined = [(await join(client, {}, citizen(n))).json() for n in (1, 2)]
    await core.bookings.cancel(taken, Actor())
    await core.waitlist.run_once()
    one, _two = await entries(core)
    offered = await booking(core, one.booking_id)
    reference = f"{offered.reference[:4]}-{offered.reference[4:]}"
    url = f"{LIST}/{joined[0]['entry_id']}"
    headers = by_token(joined[0]["token"])

    seen = (await client.get(url, headers=headers)).json()
    assert seen["status"] == "offered"
    assert seen["reference"] == reference
    assert "position" not in seen
    assert offered.pending_until is not None
    assert seen["respond_by"] == local_iso(offered.pending_until)
    refused = await client.post(f"{url}/leave", headers=headers)
    assert reference in assert_problem(refused, 409, "offer_pending")["detail"]
    english = await client.post(f"{url}/leave", headers=headers | {"Accept-Language": "en"})
    assert "cancel the offered booking" in assert_problem(english, 409, "offer_pending")["detail"]
    assert (await booking(core, offered.id)).status == "pending"  # untouched

    # declining the offer (cancelling its booking) ends the entry; leaving is then a no-op
    manage = by_token(core.bookings.token_for(offered))
    declined = await client.post(f"/api/v1/bookings/{reference}/cancel", headers=manage)
    assert declined.status_code == 200, declined.text
    left = await client.post(f"{url}/leave", headers=headers)
    assert left.status_code == 200, left.text
    assert left.json()["status"] == "withdrawn"


async def test_leaving_while_an_offer_run_holds_the_entry(client: Client, core: Core) -> None:
    """The person leaves between an offer run's claim and its booking: the run books nothing."""
    await set_places(core, 1)
    taken = await series(core, 0, 8)
    joined = (await join(client, {}, citizen(1))).json()
    await core.bookings.cancel(taken, Actor())
    claimed = await core.waitlist._claim_next(CAMPAIGN, [])
    assert claimed is not None
    entry, claim = claimed
    url = f"{LIST}/{joined['entry_id']}"
    seen = (await client.get(url, headers=by_token(joined["token"]))).json()
    assert (seen["status"], seen["position"]) == ("waiting", 1)  # a claim reads as waiting
    left = await client.post(f"{url}/leave", headers=by_token(joined["token"]))
    assert left.json()["status"] == "withdrawn"
    campaign = core.catalog.campaigns[CAMPAIGN]
    assert await core.waitlist._offer(campaign, entry, claim) == "skip"
    assert await active_series(core) == 0
    async with core.sessions() as session:
        assert await session.scalar(select(m.Campaign.taken)) == 0
    [only] = await entries(core)
    assert (only.status, only.booking_id) == ("withdrawn", None)


def local_iso(moment: Any) -> str:
    from zoneinfo import ZoneInfo

    return str(moment.astimezone(ZoneInfo("Europe/Berlin")).isoformat(timespec="seconds"))


async def test_the_agents_list_in_line_order(
    client: Client, core: Core, agent: dict[str, str]
) -> None:
    await set_places(core, 1)
    await series(core, 0, 8)
    online = (await join(client, {}, citizen(1))).json()
    gone = (await join(client, {}, citizen(2))).json()
    caller = {"name": "Person 3", "phone": "03935 1234", "birth_date": "1930-01-04",
              "postcode": "39517"}  # fmt: skip
    phoned = (await join(client, agent, caller)).json()
    assert (await client.post(f"{LIST}/{gone['entry_id']}/leave", headers=agent)).status_code == 200

    listed = await client.get(LIST, params={"campaign": CAMPAIGN}, headers=agent)
    assert listed.status_code == 200, listed.text
    assert listed.headers["cache-control"] == "no-store"
    assert "link" not in listed.headers
    rows = listed.json()
    assert [(r["entry_id"], r["position"], r["status"], r["channel"]) for r in rows] == [
        (online["entry_id"], 1, "waiting", "online"),
        (gone["entry_id"], None, "withdrawn", "online"),
        (phoned["entry_id"], 2, "waiting", "phone"),
    ]
    assert rows[0] | {"created_at": ""} == {
        "entry_id": online["entry_id"], "position": 1, "status": "waiting", "channel": "online",
        "created_at": "", "name": "Person 1", "contact_name": None, "email": "p1@example.org",
        "phone": None, "language": "de", "reference": None, "respond_by": None,
    }  # fmt: skip
    assert rows[0]["created_at"] == "2026-11-23T07:00:00+01:00"
    assert (rows[2]["name"], rows[2]["phone"]) == ("Person 3", "+4939351234")

    # waiting only, a page at a time: the places in line stay right on every page
    page = await client.get(
        LIST, params={"campaign": CAMPAIGN, "status": "waiting", "limit": "1"}, headers=agent
    )
    assert [(r["entry_id"], r["position"]) for r in page.json()] == [(online["entry_id"], 1)]
    following = page.headers["link"]
    assert following.startswith(f"<{LIST}?")
    assert following.endswith('>; rel="next"')
    assert f"after={online['entry_id']}" in following
    after = await client.get(following[1 : following.index(">")], headers=agent)
    assert [(r["entry_id"], r["position"]) for r in after.json()] == [(phoned["entry_id"], 2)]
    withdrawn = await client.get(
        LIST, params={"campaign": CAMPAIGN, "status": "withdrawn"}, headers=agent
    )
    assert [r["entry_id"] for r in withdrawn.json()] == [gone["entry_id"]]

    # refusals: as on the other agent routes; unknown campaign, bad filter
    staff = bearer(await make_key(core, "staff", ["impflinie-1"]))
    params = {"campaign": CAMPAIGN}
    assert_problem(await client.get(LIST, params=params), 401, "unauthorized")
    assert_problem(await client.get(LIST, params=params, headers=staff), 403, "forbidden")
    token = by_token(online["token"])
    assert_problem(await client.get(LIST, params=params, headers=token), 401, "unauthorized")
    admin = bearer(await make_key(core, "admin"))
    assert len((await client.get(LIST, params=params, headers=admin)).json()) == 3
    unknown = await client.get(LIST, params={"campaign": "nope"}, headers=agent)
    assert_problem(unknown, 404, "not_found")
    bad = await client.get(LIST, params=params | {"status": "offering"}, headers=agent)
    assert_problem(bad, 422, "validation_failed")
    assert_problem(
        await client.get(LIST, params=params | {"limit": "500"}, headers=agent),
        422,
        "validation_failed",
    )


PERSONAL = ("attendee_name", "attendee_birth_date", "attendee_postcode", "contact_name",
            "contact_email", "contact_phone")  # fmt: skip


def erased(entry: m.WaitlistEntry) -> bool:
    if entry.person_keys == [] and all(getattr(entry, c) is None for c in PERSONAL):
        return True
    assert entry.attendee_name is not None
    assert entry.person_keys
    return False


async def test_retention_erases_ended_and_closed_entries(
    client: Client, core: Core, clock: ManualClock, agent: dict[str, str]
) -> None:
    await set_places(core, 1)
    taken = await series(core, 0, 8)
    joined = [(await join(client, {}, citizen(n))).json() for n in (1, 2, 3, 4)]
    # 3 leaves; 1 lets an offer lapse (expired); 2 takes the next offer (booked); 4 waits
    left = await client.post(f"{LIST}/{joined[2]['entry_id']}/leave", headers=agent)
    assert left.status_code == 200
    await core.bookings.cancel(taken, Actor())
    await core.waitlist.run_once()
    one, *_ = await entries(core)
    lapsing = await booking(core, one.booking_id)
    assert lapsing.pending_until is not None
    clock.set(lapsing.pending_until)
    assert (await core.waitlist.run_once()).lapsed == 1
    _, two, *_ = await entries(core)
    offer = await booking(core, two.booking_id)
    path = f"{LIST}/offers/{offer.reference}/accept"
    assert (await client.post(path, headers=agent)).status_code == 200
    # 5 joins and leaves ten days in
    clock.set(T0 + timedelta(days=10))
    fifth = (await join(client, {}, citizen(5))).json()
    assert (
        await client.post(f"{LIST}/{fifth['entry_id']}/leave", headers=agent)
    ).status_code == 200
    statuses = [e.status for e in await entries(core)]
    assert statuses == ["expired", "booked", "withdrawn", "waiting", "withdrawn"]

    # 16 days in: the entries that ended in the first days are erased, nothing else
    clock.set(T0 + timedelta(days=16))
    await core.erase_expired()
    assert [erased(e) for e in await entries(core)] == [True, True, True, False, False]
    assert [e.status for e in await entries(core)] == statuses  # statuses and times stay
    assert await keys_of(core, joined[3]["entry_id"]) > 0  # 4 still waits
    kept = await booking(core, offer.id)  # the booking keeps its data until after the visit
    assert (kept.attendee_name, kept.contact_email) == ("Person 2", "p2@example.org")
    await core.erase_expired()  # again: nothing more
    assert [erased(e) for e in await entries(core)] == [True, True, True, False, False]

    # the campaign's window closes: 4 leaves the list at once (the job), and is erased later
    closes_at = core.catalog.campaigns[CAMPAIGN].closes_at
    assert closes_at is not None
    clock.set(closes_at)
    assert (await core.waitlist.run_once()).closed == 0  # the window is open up to closes_at
    clock.set(closes_at + timedelta(minutes=1))
    assert (await core.waitlist.run_once()).closed == 1
    assert (await core.waitlist.run_once()).closed == 0
    fourth = (await entries(core))[3]
    assert fourth.status == "withdrawn"
    assert await keys_of(core, fourth.id) == 0
    seen = await client.get(f"{LIST}/{fourth.id}", headers=by_token(joined[3]["token"]))
    assert seen.json()["status"] == "withdrawn"
    await core.erase_expired()
    assert [erased(e) for e in await entries(core)] == [True, True, True, False, True]
    clock.set(closes_at + timedelta(days=14, minutes=2))
    await core.erase_expired()
    assert all(erased(e) for e in await entries(core))
    # an erased entry still answers its token, without anything personal
    seen = await client.get(f"{LIST}/{fourth.id}", headers=by_token(joined[3]["token"]))
    assert seen.json() == {"entry_id": fourth.id, "status": "withdrawn", "channel": "online"}
    rows = (await client.get(LIST, params={"campaign": CAMPAIGN}, headers=agent)).json()
    assert {(r["name"], r["email"], r["phone"]) for r in rows} == {(None, None, None)}


async def test_retention_ends_the_lists_of_closed_campaigns_without_the_job(
    client: Client, core: Core, clock: ManualClock
) -> None:
    joined = (await join(client, {}, citizen(1))).json()
    closes_at = core.catalog.campaigns[CAMPAIGN].closes_at
    assert closes_at is not None
    clock.set(closes_at + timedelta(days=1))
    await core.erase_expired()  # ends it (retention's own run), erases it 14 days later
    [entry] = await entries(core)
    assert (entry.status, erased(entry)) == ("withdrawn", False)
    assert await keys_of(core, joined["entry_id"]) == 0
    clock.set(closes_at + timedelta(days=15, hours=1))
    await core.erase_expired()
    [entry] = await entries(core)
    assert erased(entry)
