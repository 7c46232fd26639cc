"""Phone contingents on every database, against the real Redis: a calendar (or its campaign)
keeps a share of each day's seats from online booking until some days before the day. Online
holds stop at the day's online budget while the phone still books, released and expired holds
and cancelled online bookings give budget back, a reconcile rebuilds the same budgets, released
days have no limit, and many concurrent online holds never take more than the budget."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from scheduler.booking import models as m
from scheduler.booking import scripts
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.core import Core
from scheduler.booking.counters import Keys
from scheduler.booking.errors import HoldExpired, SlotFull, ValidationFailed
from scheduler.booking.holds import Hold, Reservations, plan_visit
from scheduler.booking.seed import SeedError, bump_catalog, parse_seed
from scheduler.clock import ManualClock
from scheduler.redisproc import RedisServer
from scheduler.resources import demo_seed

BERLIN = ZoneInfo("Europe/Berlin")
CLERKS = ("sachbearbeitung-1", "sachbearbeitung-2", "sachbearbeitung-3")
LINES = ("impflinie-1", "impflinie-2")
# now (T0) is Monday 2026-11-23 07:00 in Berlin; with 3 release days, days up to Thursday the
# 26th are released, Friday the 27th and later are under the contingent
MONDAY = date(2026, 11, 30)  # clerks: 08:00-12:00, 13:00-15:30: 26 cells of 15 minutes
THURSDAY = date(2026, 11, 26)
FRIDAY = date(2026, 11, 27)  # clerks: 08:00-12:00: 16 cells


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BERLIN)


def clerk_starts(day: date) -> list[datetime]:
    """The 15-minute starts of the citizens' office on a Monday-to-Friday morning."""
    return [local(day, 8) + timedelta(minutes=15 * n) for n in range(16)]


def person(n: int, channel: str = "online") -> BookingRequest:
    return BookingRequest(Person(f"Person {n}", f"p{n}@example.org"), channel=channel)


# someone the vaccination campaign takes (76 or older, a resident)
ELDER = Person("Erna Alt", "erna@example.org", birth_date=date(1940, 1, 1), postcode="39517")


def render(_: object) -> bytes:
    return b"{}"


async def set_contingent(
    core: Core, calendar_ids: Sequence[str], share: int | None, release_days: int | None
) -> None:
    """A contingent set on the calendars themselves, as a seed (or an admin) would; the catalog
    is reloaded and the counters rebuilt, as ``watch_counters`` does on a configuration change."""
    async with core.sessions() as session, session.begin():
        await session.execute(
            update(m.Calendar)
            .where(m.Calendar.id.in_(calendar_ids))
            .values(phone_share_percent=share, phone_release_days=release_days)
        )
        await bump_catalog(session, core.clock.now())
    await core.watch_counters()


async def budget(core: Core, calendar_id: str, day: date) -> int | None:
    location_id = core.catalog.calendars[calendar_id].location_id
    value = await core.redis.get(Keys(location_id).online(calendar_id, day))
    return None if value is None else int(value)


async def budgets(core: Core, calendar_ids: Sequence[str], day: date) -> dict[str, int | None]:
    return {c: await budget(core, c, day) for c in calendar_ids}


async def free(core: Core, service_id: str, day: date, channel: str) -> dict[datetime, int]:
    _, rows = await core.free_starts(service_id, day, day, core.clock.now(), channel=channel)
    return {start: n for start, _, n in rows}


async def hold_until_full(
    core: Core, service_id: str, starts: Sequence[datetime], channel: str
) -> list[Hold]:
    """One hold per start, in order, until the first SlotFull; the holds taken."""
    taken = []
    for start in starts:
        try:
            taken.append(await core.bookings.hold([service_id], start, 1, channel))
        except SlotFull:
            break
    return taken


# -- configuration --------------------------------------------------------------------------


async def test_the_campaign_contingent_applies_to_its_calendars(core: Core) -> None:
    catalog = core.catalog
    for line in LINES:
        assert catalog.calendars[line].phone_share_percent == 80
        assert catalog.calendars[line].phone_release_days == 3
    for clerk in CLERKS:
        assert catalog.calendars[clerk].phone_share_percent == 0
    # a calendar's own setting wins, field by field
    await set_contingent(core, ["impflinie-1"], 50, None)
    assert core.catalog.calendars["impflinie-1"].phone_share_percent == 50
    assert core.catalog.calendars["impflinie-1"].phone_release_days == 3
    await set_contingent(core, ["impflinie-1"], None, 0)
    assert core.catalog.calendars["impflinie-1"].phone_share_percent == 80
    assert core.catalog.calendars["impflinie-1"].phone_release_days == 0
    await set_contingent(core, ["impflinie-1"], 0, None)
    assert core.catalog.calendars["impflinie-1"].phone_share_percent == 0


async def test_budgets_of_the_demo_vaccination_lines(core: Core) -> None:
    # Monday: 08:00-12:00 and 12:30-18:00 = 57 cells of two seats; 20 % of 114 is 22.8
    assert await budgets(core, LINES, MONDAY) == {"impflinie-1": 22, "impflinie-2": 22}
    # Saturday 09:00-13:00: 24 cells of two seats, 20 % of 48 = 9.6
    assert await budget(core, "impflinie-1", date(2026, 11, 28)) == 9
    assert await budget(core, "impflinie-1", date(2026, 11, 29)) == 0  # closed Sunday
    # released days (three days ahead and nearer) and calendars without a share: no budget
    assert await budget(core, "impflinie-1", THURSDAY) is None
    assert await budget(core, "impflinie-1", FRIDAY) == 22
    assert await budget(core, "sachbearbeitung-1", MONDAY) is None
    # a budget key expires with the day's counters
    ttl = await core.redis.pttl(Keys("impfzentrum").online("impflinie-1", MONDAY))
    counters_ttl = await core.redis.pttl(Keys("impfzentrum").day("impflinie-1", MONDAY))
    assert abs(ttl - counters_ttl) < 5_000


def test_seed_contingent_errors_name_the_field() -> None:
    text = demo_seed().read_text(encoding="utf-8")
    bad_share = text.replace(
        'id = "impflinie-1"\n', 'id = "impflinie-1"\nphone_share_percent = 120\n', 1
    )
    with pytest.raises(SeedError, match=r"calendars\[5\]\.phone_share_percent"):
        parse_seed(bad_share, source="demo.toml")
    bad_days = text.replace("phone_release_days = 3", "phone_release_days = -1")
    with pytest.raises(SeedError, match=r"campaigns\[0\]\.phone_release_days"):
        parse_seed(bad_days, source="demo.toml")
    # a second campaign on the same lines with another share: the calendar must decide
    second = (
        '\n[[campaigns]]\nid = "impfung-boost"\nlocation = "impfzentrum"\nname = "Boost"\n'
        'opens_at = "now"\nplaces = 10\nphone_share_percent = 50\n'
        '\n[[services]]\nid = "impfung-boost"\nlocation = "impfzentrum"\n'
        'campaign = "impfung-boost"\nname = "Boost"\nduration_minutes = 10\n'
        'requirements = [{ pool = ["impflinie-1"] }]\n'
    )
    with pytest.raises(SeedError) as caught:
        parse_seed(text + second, source="demo.toml")
    message = str(caught.value)
    assert "calendars[5].phone_share_percent" in message
    assert "'impfung-76plus'" in message
    assert "'impfung-boost'" in message
    assert "phone_release_days" in message  # 3 days and 0 days: also undecided
    decided = text.replace(
        'id = "impflinie-1"\n',
        'id = "impflinie-1"\nphone_share_percent = 60\nphone_release_days = 2\n',
        1,
    )
    parse_seed(decided + second, source="demo.toml")


# -- holds against the budget ---------------------------------------------------------------


async def test_online_holds_stop_at_the_budget_while_the_phone_still_books(core: Core) -> None:
    # 90 % for the phone: 10 % of a clerk's 26 seat-cells on Monday = 2 online bookings each
    await set_contingent(core, CLERKS, 90, 3)
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 2)
    online = await hold_until_full(core, "hund-anmelden", clerk_starts(MONDAY), "online")
    assert len(online) == 6
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 0)
    assert Counter(h.cells[0].calendar_id for h in online) == dict.fromkeys(CLERKS, 2)
    # the next start has three free clerks, but none with online budget left
    start = clerk_starts(MONDAY)[6]
    assert await free(core, "hund-anmelden", MONDAY, "online") == {}
    assert (await free(core, "hund-anmelden", MONDAY, "phone"))[start] == 3
    with pytest.raises(SlotFull):
        await core.bookings.hold(["hund-anmelden"], start, 1, "online")
    phone = await core.bookings.hold(["hund-anmelden"], start, 1, "phone")
    counter = await core.bookings.hold(["hund-anmelden"], start, 1, "counter")
    assert len(phone.cells) == len(counter.cells) == 1
    assert (await free(core, "hund-anmelden", MONDAY, "phone"))[start] == 1
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 0)  # untouched
    # other days have budgets of their own
    await core.bookings.hold(["hund-anmelden"], local(MONDAY + timedelta(days=1), 8), 1, "online")


async def test_a_longer_service_takes_budget_per_cell(core: Core) -> None:
    """Personalausweis: 30 minutes = two clerk cells (and two room cells; the rooms have no
    contingent), so a clerk with 2 online seat-cells left takes one such booking."""
    await set_contingent(core, CLERKS, 90, 3)
    first = local(MONDAY, 8)
    assert (await free(core, "personalausweis-beantragen", MONDAY, "online"))[first] == 2  # rooms
    taken = await hold_until_full(
        core, "personalausweis-beantragen", clerk_starts(MONDAY)[::2], "online"
    )
    assert len(taken) == 3
    assert {h.cells[0].calendar_id for h in taken} == set(CLERKS)
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 0)
    assert await budget(core, "schalter-1", MONDAY) is None
    assert await free(core, "personalausweis-beantragen", MONDAY, "online") == {}
    assert await free(core, "hund-anmelden", MONDAY, "online") == {}
    assert await free(core, "personalausweis-beantragen", MONDAY, "phone")


async def test_the_online_view_is_limited_per_start(core: Core) -> None:
    # 99 % for the phone: one online seat-cell per line and day, though each cell seats two
    await set_contingent(core, LINES, 99, 3)
    first = local(MONDAY, 8)
    assert (await free(core, "impfung-erstimpfung", MONDAY, "phone"))[first] == 4
    assert (await free(core, "impfung-erstimpfung", MONDAY, "online"))[first] == 2
    hold = await core.bookings.hold(["impfung-erstimpfung"], first, 1, "online", citizen=ELDER)
    online = await free(core, "impfung-erstimpfung", MONDAY, "online")
    assert set(online.values()) == {1}  # the other line only, at every start
    assert len(online) == 57
    await core.bookings.release(hold.hold_id)
    assert (await free(core, "impfung-erstimpfung", MONDAY, "online"))[first] == 2


# -- budget comes back ----------------------------------------------------------------------


async def test_released_and_expired_holds_give_budget_back(core: Core, clock: ManualClock) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    starts = clerk_starts(MONDAY)
    held = await hold_until_full(core, "hund-anmelden", starts, "online")
    assert len(held) == 6
    # released by the holder
    await core.bookings.release(held[0].hold_id)
    assert await budget(core, held[0].cells[0].calendar_id, MONDAY) == 1
    # a claimed hold whose booking fails (the channel does not match) comes back as well
    with pytest.raises(ValidationFailed) as caught:
        await core.bookings.confirm(held[1].hold_id, person(1, "phone"), Actor(), None, render)
    assert caught.value.errors[0].message_key == "channel_mismatch"
    assert sum((await budgets(core, CLERKS, MONDAY)).values()) == 2
    # expired: the periodic sweep gives the rest back
    clock.advance(timedelta(seconds=core.hold_seconds + 1))
    assert await core.sweep_holds() == 4
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 2)
    # expired holds swept by the next hold script
    clock.advance(timedelta(minutes=1))
    held = await hold_until_full(core, "hund-anmelden", starts, "online")
    assert len(held) == 6
    clock.advance(timedelta(seconds=core.hold_seconds + 1))
    again = await hold_until_full(core, "hund-anmelden", starts, "online")
    assert len(again) == 6
    with pytest.raises(HoldExpired):
        await core.bookings.release(held[0].hold_id)


async def test_confirmed_online_bookings_keep_it_and_cancelling_gives_it_back(
    core: Core,
) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    start = local(MONDAY, 9)
    booking, _ = await core.bookings.book(
        ["hund-anmelden"], start, 1, person(1), Actor(), None, render
    )
    assert booking is not None
    clerk = booking.appointments[0].calendar_ids[0]
    assert await budget(core, clerk, MONDAY) == 1
    phone, _ = await core.bookings.book(
        ["hund-anmelden"], start, 1, person(2, "phone"), Actor(), None, render
    )
    assert phone is not None
    assert sum((await budgets(core, CLERKS, MONDAY)).values()) == 5  # the phone takes none
    await core.bookings.cancel(phone.id, Actor())
    assert sum((await budgets(core, CLERKS, MONDAY)).values()) == 5
    await core.bookings.cancel(booking.id, Actor())
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 2)


async def test_moving_an_online_booking_moves_its_budget(core: Core) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    tuesday = MONDAY + timedelta(days=1)
    booking, _ = await core.bookings.book(
        ["hund-anmelden"], local(MONDAY, 9), 1, person(1), Actor(), None, render
    )
    assert booking is not None
    hold = await core.bookings.hold(["hund-anmelden"], local(tuesday, 9), 1, "online")
    await core.bookings.reschedule(booking.id, hold.hold_id, Actor())
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 2)
    assert sum((await budgets(core, CLERKS, tuesday)).values()) == 5
    before = await budgets(core, CLERKS, tuesday)
    await core.rebuild_counters()
    assert await budgets(core, CLERKS, tuesday) == before


# -- reconcile --------------------------------------------------------------------------------


async def online_keys(core: Core) -> dict[str, int]:
    out = {}
    for location_id in core.catalog.locations:
        async for key in core.redis.scan_iter(match=f"{Keys(location_id).base}o:*"):
            out[key.decode()] = int(await core.redis.get(key))
    return out


async def test_a_reconcile_rebuilds_the_same_budgets(core: Core) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    tuesday = MONDAY + timedelta(days=1)
    for n, start in enumerate(clerk_starts(MONDAY)[:3]):
        await core.bookings.book(["hund-anmelden"], start, 1, person(n), Actor(), None, render)
    await core.bookings.book(
        ["hund-anmelden"], local(MONDAY, 11), 1, person(10, "phone"), Actor(), None, render
    )
    await core.bookings.hold(["personalausweis-beantragen"], local(tuesday, 8), 1, "online")
    await core.bookings.hold(["hund-anmelden"], local(tuesday, 10), 1, "online")
    await core.bookings.hold(["hund-anmelden"], local(tuesday, 10), 1, "phone")
    await core.bookings.hold(["impfung-erstimpfung"], local(MONDAY, 8), 2, "online", citizen=ELDER)
    before = await online_keys(core)
    assert sum(before[k] for k in before if k.endswith(f"{MONDAY:%Y%m%d}")) == 3 + 22 + 20
    for key in before:
        await core.redis.delete(key)
    await core.rebuild_counters()
    assert await online_keys(core) == before
    # and after losing everything but SQL, the bookings alone
    await core.redis.flushall()
    await core.watch_counters()
    after = await online_keys(core)
    assert (
        after[Keys("rathaus").online("sachbearbeitung-1", MONDAY)]
        + after[Keys("rathaus").online("sachbearbeitung-2", MONDAY)]
        + after[Keys("rathaus").online("sachbearbeitung-3", MONDAY)]
        == 3
    )
    assert sum((await budgets(core, CLERKS, tuesday)).values()) == 6
    assert await budgets(core, LINES, MONDAY) == dict.fromkeys(LINES, 22)


async def test_reads_fall_back_to_sql_budgets_while_redis_is_down(
    core: Core, redis_server: RedisServer
) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    for n, start in enumerate(clerk_starts(MONDAY)[:6]):
        await core.bookings.book(["hund-anmelden"], start, 1, person(n), Actor(), None, render)
    assert await free(core, "hund-anmelden", MONDAY, "online") == {}
    redis_server.kill()
    try:
        assert await free(core, "hund-anmelden", MONDAY, "online") == {}
        assert len(await free(core, "hund-anmelden", MONDAY, "phone")) == 26
    finally:
        redis_server.start()


# -- release --------------------------------------------------------------------------------


async def test_a_day_within_the_release_days_is_all_online(core: Core) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    assert await budgets(core, CLERKS, THURSDAY) == dict.fromkeys(CLERKS, None)
    assert await free(core, "hund-anmelden", THURSDAY, "online") == await free(
        core, "hund-anmelden", THURSDAY, "phone"
    )
    taken = await hold_until_full(core, "hund-anmelden", clerk_starts(THURSDAY) * 3, "online")
    assert len(taken) == 48  # every seat of the morning
    # release days 0: the reserve holds until the day itself
    await set_contingent(core, CLERKS, 90, 0)
    assert await budget(core, "sachbearbeitung-1", date(2026, 11, 24)) == 2
    assert await budget(core, "sachbearbeitung-1", date(2026, 11, 23)) is None


async def test_crossing_the_release_boundary_releases_the_day(
    core: Core, clock: ManualClock
) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    assert len(await hold_until_full(core, "hund-anmelden", clerk_starts(FRIDAY), "online")) == 3
    assert await free(core, "hund-anmelden", FRIDAY, "online") == {}
    # Friday is 4 days ahead on Monday; from Tuesday 00:00 in Berlin it is 3
    clock.set(local(date(2026, 11, 23), 23, 59))
    assert await free(core, "hund-anmelden", FRIDAY, "online") == {}
    clock.set(local(date(2026, 11, 24), 0, 0))
    released = await free(core, "hund-anmelden", FRIDAY, "online")
    assert released == await free(core, "hund-anmelden", FRIDAY, "phone")
    assert len(released) == 16
    # at once, before any reconcile: the hold script is only told to count budgets still held
    await core.bookings.hold(["hund-anmelden"], clerk_starts(FRIDAY)[10], 1, "online")
    await core.rebuild_counters()
    assert await budgets(core, CLERKS, FRIDAY) == dict.fromkeys(CLERKS, None)
    assert await budget(core, "sachbearbeitung-1", date(2026, 11, 28)) == 0  # Saturday, closed
    assert await budget(core, "sachbearbeitung-1", MONDAY) == 2


# -- concurrency ------------------------------------------------------------------------------

BUDGET_CHECK = "if left - (taking[okey] or 0) < need[1] then fits = false end"


async def test_concurrent_online_holds_never_exceed_the_budget(core: Core) -> None:
    await set_contingent(core, CLERKS, 90, 3)
    starts = clerk_starts(MONDAY)

    async def attempt(n: int) -> str:
        try:
            await core.bookings.hold(["hund-anmelden"], starts[n % len(starts)], 1, "online")
        except SlotFull:
            return "full"
        return "held"

    results = Counter(await asyncio.gather(*(attempt(n) for n in range(50))))
    assert results == {"held": 6, "full": 44}
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 0)
    assert len(await free(core, "hund-anmelden", MONDAY, "phone")) == 16 + 10


async def test_control_without_the_budget_check_online_overbooks(core: Core) -> None:
    """The same rush through a hold script without the budget check takes far more than the
    online share: the test above can fail."""
    assert BUDGET_CHECK in scripts.HOLD
    await set_contingent(core, CLERKS, 90, 3)
    unguarded = Reservations(core.redis)
    unguarded._hold = core.redis.register_script(scripts.HOLD.replace(BUDGET_CHECK, ""))
    starts = clerk_starts(MONDAY)
    now = core.clock.now()

    async def attempt(n: int) -> str:
        visit = plan_visit(
            core.catalog, ["hund-anmelden"], starts[n % len(starts)], 1, now, channel="online"
        )
        try:
            await unguarded.hold(visit, "online", now, 600, claimed=False)
        except SlotFull:
            return "full"
        return "held"

    results = Counter(await asyncio.gather(*(attempt(n) for n in range(50))))
    assert results == {"held": 48, "full": 2}  # every seat of the morning
    assert await budgets(core, CLERKS, MONDAY) == dict.fromkeys(CLERKS, 2 - 16)
