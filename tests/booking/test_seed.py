"""Seed files: the demo parses, bad files are rejected with the field path and the line, relative
moments resolve against the load time, and applying a seed is idempotent on every database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.booking import models as m
from scheduler.booking.db import make_engine, make_sessionmaker
from scheduler.booking.seed import (
    Seed,
    SeedError,
    apply_seed,
    load_seed_file,
    parse_seed,
    resolve_moment,
)
from scheduler.resources import demo_seed
from tests.conftest import T0

BERLIN = ZoneInfo("Europe/Berlin")
CET = timezone(timedelta(hours=1))
DEMO = demo_seed().read_text(encoding="utf-8")


def nth_line(text: str, header: str, index: int, key: str) -> int:
    """1-based line of ``key = ...`` in the ``index``-th ``[[header]]`` table of ``text``."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines) if line.strip() == f"[[{header}]]"]
    for n in range(headers[index] + 1, len(lines)):
        if re.match(rf"{re.escape(key)}\s*=", lines[n].strip()):
            return n + 1
    raise AssertionError(f"no {key} in {header}[{index}]")


def replace_in_table(text: str, header: str, index: int, key: str, new_line: str) -> str:
    """``text`` with the ``key = ...`` line of the ``index``-th ``[[header]]`` table replaced."""
    lines = text.splitlines()
    lines[nth_line(text, header, index, key) - 1] = new_line
    return "\n".join(lines) + "\n"


def seed_error(text: str) -> str:
    with pytest.raises(SeedError) as caught:
        parse_seed(text, source="tangerhuette.toml")
    message = str(caught.value)
    assert message.startswith("tangerhuette.toml")
    return message


# -- parsing ------------------------------------------------------------------------------------


def test_demo_seed_parses() -> None:
    seed = load_seed_file(demo_seed())
    assert isinstance(seed, Seed)
    assert [loc.id for loc in seed.locations] == ["rathaus", "impfzentrum"]
    assert len(seed.calendars) == 7
    assert len(seed.services) == 10
    assert [s.id for s in seed.services if s.requires_opt_in or s.release_delay_minutes] == [
        "reisepass-beantragen"  # the ordinary services use neither
    ]
    assert seed.campaigns[0].opens_at == "now"
    assert date(2026, 12, 25) in {h.date for h in seed.holidays}


def test_wrong_type_names_path_and_line() -> None:
    text = replace_in_table(DEMO, "services", 2, "duration_minutes", 'duration_minutes = "15"')
    message = seed_error(text)
    line = nth_line(text, "services", 2, "duration_minutes")
    assert f"line {line}:" in message
    assert "services[2].duration_minutes" in message
    assert "kita-platz-abmelden" in message
    assert "Expected int, got str" in message


def test_unknown_field_names_the_field_and_its_line() -> None:
    lines = DEMO.splitlines()
    at = nth_line(DEMO, "services", 2, "duration_minutes")
    lines.insert(at, 'colour = "blau"')
    text = "\n".join(lines)
    message = seed_error(text)
    assert "services[2].colour" in message
    assert f"line {at + 1}:" in message
    assert "unknown field colour" in message


def test_missing_field_names_the_field_and_the_table_line() -> None:
    text = DEMO.replace('kind = "clerk"\n', "", 1)
    message = seed_error(text)
    header = text.splitlines().index("[[calendars]]") + 1
    assert "calendars[0].kind" in message
    assert f"line {header}:" in message


def test_bad_slug_names_path_and_line() -> None:
    text = replace_in_table(DEMO, "services", 1, "id", 'id = "Hund_Abmelden"')
    message = seed_error(text)
    assert f"line {nth_line(text, 'services', 1, 'id')}:" in message
    assert "services[1].id" in message
    assert "Hund_Abmelden" in message


def test_unknown_calendar_in_a_pool_names_path_and_line() -> None:
    text = replace_in_table(
        DEMO,
        "services",
        8,
        "requirements",
        'requirements = [{ pool = ["impflinie-1", "impflinie-9"] }]',
    )
    message = seed_error(text)
    assert "services[8].requirements[0].pool" in message
    assert f"line {nth_line(text, 'services', 8, 'requirements')}" in message
    assert "unknown calendar 'impflinie-9'" in message
    assert "impflinie-1'" not in message


def test_duration_not_a_multiple_of_the_slot_length() -> None:
    text = replace_in_table(DEMO, "services", 3, "duration_minutes", "duration_minutes = 20")
    message = seed_error(text)
    assert "services[3].duration_minutes" in message
    assert f"line {nth_line(text, 'services', 3, 'duration_minutes')}" in message
    assert "20 min is not a whole number of 15-minute slots" in message
    assert message.count("duration_minutes") == 1  # once, not once per calendar of the pool


def test_misaligned_opening_hours_name_the_interval() -> None:
    text = DEMO.replace('wed = ["08:00-12:00"]', 'wed = ["08:05-12:00"]')
    message = seed_error(text)
    line = text.splitlines().index('wed = ["08:05-12:00"]') + 1
    assert "opening_hours[0].wed[0]" in message
    assert f"line {line}" in message
    assert "08:05" in message
    assert "15-minute" in message
    assert message.count("not aligned") == 1  # once, not once per calendar using the hours


def test_misaligned_for_the_shorter_slots_of_another_calendar() -> None:
    # 08:05 fits nobody; 08:10 fits the vaccination lines' 10-minute grid, not a 15-minute one
    text = DEMO.replace('sat = ["09:00-13:00"]', 'sat = ["09:10-13:00"]')
    assert parse_seed(text)
    text = DEMO.replace('wed = ["08:00-12:00"]', 'wed = ["08:10-12:00"]')
    assert "opening_hours[0].wed[0]" in seed_error(text)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        ("08:00-25:00", "25:00 is not a time of day"),
        ("18:00-24:00", "24:00"),
        ("12:00-08:00", "after"),
    ],
)
def test_impossible_intervals(interval: str, expected: str) -> None:
    text = DEMO.replace('wed = ["08:00-12:00"]', f'wed = ["{interval}"]')
    message = seed_error(text)
    assert "opening_hours[0].wed[0]" in message
    assert expected in message


def test_overlapping_intervals_name_the_opening_hours() -> None:
    text = DEMO.replace('wed = ["08:00-12:00"]', 'wed = ["08:00-12:00", "11:00-13:00"]')
    message = seed_error(text)
    assert "opening_hours[0]" in message
    assert "overlaps" in message


def test_overlap_with_disjoint_validity_is_fine() -> None:
    text = DEMO.replace(
        '[[opening_hours]]\nid = "impfzentrum"',
        '[[opening_hours]]\nid = "impfzentrum-alt"\nmon = ["07:00-09:00"]\n'
        "valid_from = 2030-01-01\n\n"
        '[[opening_hours]]\nid = "impfzentrum"\nvalid_to = 2029-12-31',
    )
    assert parse_seed(text).opening_hours[1].valid_from == date(2030, 1, 1)


@pytest.mark.parametrize("value", ['"whenever"', "5"])
def test_bad_validity_of_opening_hours(value: str) -> None:
    text = DEMO.replace('sat = ["09:00-13:00"]', f'sat = ["09:00-13:00"]\nvalid_from = {value}')
    message = seed_error(text)
    line = text.splitlines().index(f"valid_from = {value}") + 1
    assert f"opening_hours[1].valid_from (line {line})" in message


def test_duplicate_ids_name_the_second_one() -> None:
    text = DEMO.replace('id = "schalter-2"', 'id = "schalter-1"')
    message = seed_error(text)
    assert "calendars[4].id" in message
    assert f"line {nth_line(text, 'calendars', 4, 'id')}" in message
    assert "'schalter-1' is used 2 times" in message
    services = replace_in_table(DEMO, "services", 1, "id", 'id = "hund-anmelden"')
    assert "services[1].id" in seed_error(services)


def test_unknown_time_zone() -> None:
    message = seed_error(DEMO.replace('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'))
    assert "municipality.timezone (line 7)" in message


def test_relative_moments_are_checked_at_parse_time() -> None:
    message = seed_error(DEMO.replace('opens_at = "now"', 'opens_at = "bald"'))
    assert "campaigns[0].opens_at" in message
    assert "'bald'" in message
    closure = (
        DEMO + '\n[[closures]]\nreason = "Umzug"\nstart = "irgendwann"\nlocation = "rathaus"\n'
    )
    message = seed_error(closure)
    assert "closures[0].start" in message
    assert "'irgendwann'" in message


@pytest.mark.parametrize(
    ("broken", "line"),
    [("[[calendars]", 41), ("name = ", 6)],
)
def test_broken_toml_names_the_line(broken: str, line: int) -> None:
    lines = DEMO.splitlines()
    lines[line - 1] = broken
    message = seed_error("\n".join(lines))
    assert "not valid TOML" in message
    assert f"line {line}" in message


# -- relative moments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("now", T0),
        ("NOW", T0),
        ("+2d", T0 + timedelta(days=2)),
        ("-1h", T0 - timedelta(hours=1)),
        ("now-1h", T0 - timedelta(hours=1)),
        ("+15m", T0 + timedelta(minutes=15)),
        ("+1w", T0 + timedelta(weeks=1)),
        ("today", datetime(2026, 11, 23, tzinfo=CET)),
        ("today+1d", datetime(2026, 11, 24, tzinfo=CET)),
        ("today-1w", datetime(2026, 11, 16, tzinfo=CET)),
        (" today + 3d ", datetime(2026, 11, 26, tzinfo=CET)),
    ],
)
def test_resolve_moment(value: str, expected: datetime) -> None:
    moment = resolve_moment(value, T0, BERLIN)
    assert moment == expected
    assert moment.utcoffset() == timedelta(0)


def test_today_is_the_local_day() -> None:
    # 00:30 in Berlin is still the previous day in UTC
    late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    assert resolve_moment("today", late, BERLIN) == datetime(2026, 11, 23, tzinfo=CET)


def test_today_plus_days_across_dst_is_local_midnight() -> None:
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    monday = resolve_moment("today+2d", saturday, BERLIN)
    assert monday == datetime(2026, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert monday == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["garbage", "", "+", "2d", "+2x", "now+", "today today", "+-2d"])
def test_resolve_moment_rejects_garbage(value: str) -> None:
    with pytest.raises(SeedError, match="neither a date/time nor relative"):
        resolve_moment(value, T0, BERLIN)


# -- applying -----------------------------------------------------------------------------------


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def apply(sessions: async_sessionmaker[AsyncSession], seed: Seed, now: datetime = T0) -> None:
    async with sessions() as session, session.begin():
        await apply_seed(session, seed, now)


async def row_counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        return {
            table.name: (await session.scalar(select(func.count()).select_from(table))) or 0
            for table in m.Base.metadata.sorted_tables
        }


async def catalog_version(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        state = await session.get(m.CatalogState, 1)
        assert state is not None
        return state.version


async def test_apply_twice_is_idempotent(sessions: async_sessionmaker[AsyncSession]) -> None:
    seed = parse_seed(DEMO)
    await apply(sessions, seed)
    first = await row_counts(sessions)
    assert first["locations"] == 2
    assert first["calendars"] == 7
    assert first["services"] == 10
    assert first["campaigns"] == 1
    assert first["requirements"] == 12
    assert first["opening_rules"] == 5 * 8 + 2 * 11
    assert first["closures"] == 2 * len(seed.holidays)
    assert await catalog_version(sessions) == 1

    await apply(sessions, seed, T0 + timedelta(hours=1))
    assert await row_counts(sessions) == first
    assert await catalog_version(sessions) == 2
    async with sessions() as session:
        state = await session.get(m.CatalogState, 1)
        assert state is not None
        assert state.seeded_at == T0 + timedelta(hours=1)
        campaign = await session.get(m.Campaign, "impfung-76plus")
        assert campaign is not None
        assert campaign.opens_at == T0 + timedelta(hours=1)  # "now" of the second load
        assert campaign.closes_at == T0 + timedelta(hours=1, days=60)


async def test_edited_seed_updates_without_duplicating(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await apply(sessions, parse_seed(DEMO))
    before = await row_counts(sessions)
    edited = DEMO.replace('name = "Hund anmelden"', 'name = "Hund oder Katze anmelden"').replace(
        'wed = ["08:00-12:00"]', 'wed = ["08:00-12:00", "13:00-15:00"]'
    )
    await apply(sessions, parse_seed(edited))
    after = await row_counts(sessions)
    assert after == {**before, "opening_rules": before["opening_rules"] + 5}
    async with sessions() as session:
        service = await session.get(m.Service, "hund-anmelden")
        assert service is not None
        assert service.name == "Hund oder Katze anmelden"
        assert service.name_en == "Register a dog"
        wednesday = await session.scalars(
            select(m.OpeningRule.start).where(
                m.OpeningRule.calendar_id == "sachbearbeitung-1", m.OpeningRule.weekday == 2
            )
        )
        assert sorted(t.hour for t in wednesday) == [8, 13]
    assert await catalog_version(sessions) == 2


async def test_holidays_are_location_wide_closures_of_the_local_day(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await apply(sessions, parse_seed(DEMO))
    async with sessions() as session:
        rows = (
            await session.scalars(select(m.Closure).where(m.Closure.reason == "1. Weihnachtstag"))
        ).all()
    christmas_2026 = [c for c in rows if c.starts_at.year == 2026]
    assert sorted(c.location_id for c in christmas_2026) == ["impfzentrum", "rathaus"]
    for closure in christmas_2026:
        assert closure.calendar_id is None
        assert closure.source == "seed"
        assert closure.starts_at == datetime(2026, 12, 25, tzinfo=CET)
        assert closure.ends_at == datetime(2026, 12, 26, tzinfo=CET)
        assert closure.starts_at.utcoffset() == timedelta(0)


async def test_seed_closures_are_replaced_on_reapply(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    text = DEMO + (
        '\n[[closures]]\nreason = "Betriebsausflug"\nstart = 2026-12-02\nend = 2026-12-03\n'
        'calendar = "schalter-1"\n'
    )
    await apply(sessions, parse_seed(text))
    await apply(sessions, parse_seed(text))
    async with sessions() as session:
        rows = (
            await session.scalars(select(m.Closure).where(m.Closure.reason == "Betriebsausflug"))
        ).all()
    assert len(rows) == 1
    (closure,) = rows
    assert (closure.location_id, closure.calendar_id) == ("rathaus", "schalter-1")
    assert closure.starts_at == datetime(2026, 12, 2, tzinfo=CET)
    assert closure.ends_at == datetime(2026, 12, 4, tzinfo=CET)  # the end date is inclusive
