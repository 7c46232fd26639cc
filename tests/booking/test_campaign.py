"""Campaign rules in the core: age on the appointment day (29 February birthdays come on
1 March in common years), the window to the second, and one series per person."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from scheduler.booking import models as m
from scheduler.booking.bookings import Actor, BookingRequest, Person
from scheduler.booking.campaigns import age_on, birthday
from scheduler.booking.core import Core
from scheduler.booking.errors import NotEligible, ValidationFailed, WindowClosed
from scheduler.booking.seed import bump_catalog
from scheduler.clock import ManualClock

BERLIN = ZoneInfo("Europe/Berlin")
FIRST = "impfung-erstimpfung"
MONDAY = date(2026, 11, 30)
START = datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN)


def elder(n: int = 0, birth: date = date(1940, 1, 1), postcode: str = "39517") -> Person:
    return Person(f"Person {n}", f"p{n}@example.org", birth_date=birth, postcode=postcode)


async def set_window(core: Core, **values: datetime) -> None:
    async with core.sessions() as session, session.begin():
        await session.execute(update(m.Campaign).values(**values))
        await bump_catalog(session, core.clock.now())
    await core.refresh_catalog(force=True)


def test_age_counts_completed_years_from_the_birthday_itself() -> None:
    assert age_on(date(1950, 11, 30), date(2026, 11, 30)) == 76
    assert age_on(date(1950, 12, 1), date(2026, 11, 30)) == 75
    assert birthday(date(1950, 12, 1), 76) == date(2026, 12, 1)


def test_a_29_february_birthday_comes_on_1_march_in_common_years() -> None:
    born = date(1952, 2, 29)
    assert age_on(born, date(2027, 2, 28)) == 74
    assert age_on(born, date(2027, 3, 1)) == 75
    assert birthday(born, 75) == date(2027, 3, 1)
    assert birthday(born, 76) == date(2028, 2, 29)  # a leap year has the day
    assert age_on(born, date(2028, 2, 29)) == 76


async def test_eligibility_is_judged_on_the_appointment_day(core: Core) -> None:
    hold = await core.bookings.hold(
        [FIRST], START, 1, "phone", citizen=elder(birth=date(1950, 11, 30))
    )
    assert hold.cells
    with pytest.raises(NotEligible) as caught:
        await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder(birth=date(1950, 12, 1)))
    assert caught.value.params == {
        "reason": "too_young",
        "min_age": 76,
        "eligible_from": date(2026, 12, 1),
    }
    with pytest.raises(NotEligible) as caught:
        await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder(postcode="39576"))
    assert caught.value.params["reason"] == "not_resident"
    with pytest.raises(ValidationFailed) as missing:
        await core.bookings.hold(
            [FIRST], START, 1, "phone", citizen=Person("Erna Alt", "e@example.org")
        )
    assert {e.field for e in missing.value.errors} == {"citizen.birth_date", "citizen.postcode"}
    with pytest.raises(ValidationFailed):
        await core.bookings.hold([FIRST], START, 1, "phone")


async def test_confirm_checks_the_window_and_the_citizen_again(
    core: Core, clock: ManualClock
) -> None:
    def render(_: object) -> bytes:
        return b"{}"

    right = BookingRequest(elder(), channel="phone")
    young = BookingRequest(elder(1, birth=date(1960, 1, 1)), channel="phone")
    hold = await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder())
    with pytest.raises(NotEligible):
        await core.bookings.confirm(hold.hold_id, young, Actor(), None, render)
    # the window closes while a hold waits: its confirm is refused (and the hold released)
    closes = clock.now() + timedelta(minutes=5)
    await set_window(core, closes_at=closes)
    hold = await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder())
    clock.set(closes + timedelta(seconds=1))
    with pytest.raises(WindowClosed):
        await core.bookings.confirm(hold.hold_id, right, Actor(), None, render)
    with pytest.raises(WindowClosed):
        await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder())
    clock.set(closes)  # its last second is open still
    hold = await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder())
    view, _ = await core.bookings.confirm(hold.hold_id, right, Actor(), None, render)
    assert view is not None


async def test_the_window_opens_at_the_second(core: Core, clock: ManualClock) -> None:
    opens = clock.now() + timedelta(days=1)
    await set_window(core, opens_at=opens)
    clock.set(opens - timedelta(seconds=1))
    with pytest.raises(WindowClosed) as caught:
        await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder())
    assert caught.value.params["opens_at"] == opens
    clock.set(opens)
    assert (await core.bookings.hold([FIRST], START, 1, "phone", citizen=elder())).cells
