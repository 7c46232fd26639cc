"""Tests for the slot grid: weekly rules, closures and DST handling in Europe/Berlin."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scheduler.calendar.grid import (
    Cell,
    Closure,
    OpeningRule,
    RuleError,
    cell_index,
    cell_start,
    cells_for_day,
    day_length_minutes,
    local_midnight,
    slot_grid,
    validate_rules,
)

BERLIN = ZoneInfo("Europe/Berlin")
SPRING_FORWARD = date(2026, 3, 29)  # Sunday, 02:00-03:00 local does not exist
FALL_BACK = date(2026, 10, 25)  # Sunday, 02:00-03:00 local happens twice
DST_DAYS = [
    SPRING_FORWARD,
    FALL_BACK,
    date(2027, 3, 28),
    date(2027, 10, 31),
    date(2028, 3, 26),
    date(2028, 10, 29),
]

WEEKDAY_RULES = [
    rule
    for weekday in range(5)
    for rule in (
        OpeningRule(weekday, time(8, 0), time(12, 0)),
        OpeningRule(weekday, time(13, 0), time(15, 0)),
    )
]


def local(cell: Cell) -> datetime:
    return cell.start.astimezone(BERLIN)


def at(day: date, hour: int, minute: int = 0, *, fold: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=BERLIN).replace(fold=fold)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def assert_well_formed(cells: list[Cell], slot_minutes: int, tz: ZoneInfo = BERLIN) -> None:
    step = timedelta(minutes=slot_minutes)
    for cell in cells:
        assert cell.start.tzinfo is UTC
        assert cell.end.tzinfo is UTC
        assert cell.end - cell.start == step
        assert cell_index(cell.start, tz, slot_minutes) == (cell.day, cell.index)
        assert cell_start(cell.day, cell.index, tz, slot_minutes) == cell.start
    for previous, cell in pairwise(cells):
        assert cell.start >= previous.end


# --------------------------------------------------------------------------------------------
# Ordinary weeks


def test_weekday_counts_and_first_last_in_winter() -> None:
    monday = date(2026, 1, 12)
    cells = cells_for_day(WEEKDAY_RULES, [], 15, BERLIN, monday)
    assert len(cells) == 16 + 8
    assert cells[0].start == utc(2026, 1, 12, 7, 0)
    assert local(cells[0]) == at(monday, 8, 0)
    assert local(cells[0]).utcoffset() == timedelta(hours=1)
    assert cells[-1].start == utc(2026, 1, 12, 13, 45)
    assert local(cells[-1]) == at(monday, 14, 45)
    assert cells[-1].end == utc(2026, 1, 12, 14, 0)
    assert [c.index for c in cells] == [*range(32, 48), *range(52, 60)]
    assert all(c.day == monday for c in cells)
    # The lunch break leaves a gap: 11:45 is followed by 13:00.
    assert local(cells[15]).time() == time(11, 45)
    assert local(cells[16]).time() == time(13, 0)
    assert_well_formed(cells, 15)


def test_weekday_in_summer_uses_summer_offset() -> None:
    monday = date(2026, 6, 15)
    cells = cells_for_day(WEEKDAY_RULES, [], 15, BERLIN, monday)
    assert len(cells) == 24
    assert cells[0].start == utc(2026, 6, 15, 6, 0)
    assert local(cells[0]).utcoffset() == timedelta(hours=2)
    assert cells[-1].start == utc(2026, 6, 15, 12, 45)


def test_week_with_empty_weekend() -> None:
    cells = slot_grid(WEEKDAY_RULES, [], 15, BERLIN, date(2026, 1, 12), date(2026, 1, 18))
    per_day = {date(2026, 1, 12) + timedelta(days=n): 0 for n in range(7)}
    for cell in cells:
        per_day[cell.day] += 1
    assert list(per_day.values()) == [24, 24, 24, 24, 24, 0, 0]
    assert cells_for_day(WEEKDAY_RULES, [], 15, BERLIN, date(2026, 1, 17)) == []
    assert cells_for_day(WEEKDAY_RULES, [], 15, BERLIN, date(2026, 1, 18)) == []


def test_thursday_long_day() -> None:
    rules = [*WEEKDAY_RULES, OpeningRule(3, time(15, 0), time(18, 0))]
    validate_rules(rules, 15)  # touching 15:00 end and 15:00 start is fine
    thursday = date(2026, 1, 15)
    cells = cells_for_day(rules, [], 15, BERLIN, thursday)
    assert len(cells) == 24 + 12
    assert local(cells[-1]) == at(thursday, 17, 45)
    assert cells[-1].end == utc(2026, 1, 15, 17, 0)
    # 13:00-15:00 and 15:00-18:00 join without a gap or a duplicate.
    starts = [local(c).time() for c in cells]
    assert starts.count(time(15, 0)) == 1
    assert time(14, 45) in starts
    assert len(cells_for_day(rules, [], 15, BERLIN, date(2026, 1, 14))) == 24


def test_valid_from_and_valid_to_are_inclusive() -> None:
    extra = OpeningRule(
        0, time(16, 0), time(17, 0), valid_from=date(2026, 1, 19), valid_to=date(2026, 2, 2)
    )
    rules = [*WEEKDAY_RULES, extra]
    validate_rules(rules, 15)
    counts = {
        monday: len(cells_for_day(rules, [], 15, BERLIN, monday))
        for monday in (
            date(2026, 1, 12),
            date(2026, 1, 19),
            date(2026, 1, 26),
            date(2026, 2, 2),
            date(2026, 2, 9),
        )
    }
    assert counts == {
        date(2026, 1, 12): 24,
        date(2026, 1, 19): 28,
        date(2026, 1, 26): 28,
        date(2026, 2, 2): 28,
        date(2026, 2, 9): 24,
    }
    assert extra.applies_on(date(2026, 1, 19))
    assert not extra.applies_on(date(2026, 1, 20))  # Tuesday


def test_open_ended_validity() -> None:
    from_only = OpeningRule(0, time(8, 0), time(9, 0), valid_from=date(2026, 1, 19))
    to_only = OpeningRule(0, time(10, 0), time(11, 0), valid_to=date(2026, 1, 12))
    rules = [from_only, to_only]
    assert [local(c).hour for c in cells_for_day(rules, [], 60, BERLIN, date(2026, 1, 5))] == [10]
    assert [local(c).hour for c in cells_for_day(rules, [], 60, BERLIN, date(2026, 1, 12))] == [10]
    assert cells_for_day(rules, [], 60, BERLIN, date(2026, 1, 5) + timedelta(days=7)) != []
    assert [local(c).hour for c in cells_for_day(rules, [], 60, BERLIN, date(2026, 1, 19))] == [8]
    assert [local(c).hour for c in cells_for_day(rules, [], 60, BERLIN, date(2030, 1, 7))] == [8]


# --------------------------------------------------------------------------------------------
# Daylight saving time


def test_local_midnight_and_day_length() -> None:
    assert local_midnight(date(2026, 1, 12), BERLIN) == utc(2026, 1, 11, 23, 0)
    assert local_midnight(date(2026, 6, 15), BERLIN) == utc(2026, 6, 14, 22, 0)
    assert local_midnight(SPRING_FORWARD, BERLIN) == utc(2026, 3, 28, 23, 0)
    assert local_midnight(FALL_BACK, BERLIN) == utc(2026, 10, 24, 22, 0)
    assert local_midnight(FALL_BACK, BERLIN).tzinfo is UTC
    assert day_length_minutes(date(2026, 1, 12), BERLIN) == 1440
    assert day_length_minutes(date(2026, 3, 28), BERLIN) == 1440
    assert day_length_minutes(SPRING_FORWARD, BERLIN) == 1380
    assert day_length_minutes(date(2026, 3, 30), BERLIN) == 1440
    assert day_length_minutes(FALL_BACK, BERLIN) == 1500
    assert day_length_minutes(date(2026, 10, 26), BERLIN) == 1440


def test_local_midnight_in_a_zone_that_skips_midnight() -> None:
    # Brazil's 2018 DST began at 00:00 on 2018-11-04: the day starts at 01:00-02:00.
    sao_paulo = ZoneInfo("America/Sao_Paulo")
    day = date(2018, 11, 4)
    assert local_midnight(day, sao_paulo) == utc(2018, 11, 4, 3, 0)
    assert local_midnight(day, sao_paulo).astimezone(sao_paulo).time() == time(1, 0)
    assert day_length_minutes(day, sao_paulo) == 1380
    cells = cells_for_day([OpeningRule(6, time(0, 0), time(2, 0))], [], 30, sao_paulo, day)
    assert [c.start.astimezone(sao_paulo).time() for c in cells] == [time(1, 0), time(1, 30)]
    assert [c.index for c in cells] == [0, 1]


def test_spring_forward_night_has_no_missing_hour_cells() -> None:
    rules = [OpeningRule(6, time(0, 0), time(6, 0))]
    cells = cells_for_day(rules, [], 30, BERLIN, SPRING_FORWARD)
    # 00:00+01:00 to 06:00+02:00 is five real hours.
    assert len(cells) == 10
    assert all(local(c).hour != 2 for c in cells)
    assert [local(c).strftime("%H:%M%z") for c in cells] == [
        "00:00+0100",
        "00:30+0100",
        "01:00+0100",
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
        "04:00+0200",
        "04:30+0200",
        "05:00+0200",
        "05:30+0200",
    ]
    assert cells[0].start == utc(2026, 3, 28, 23, 0)
    assert cells[-1].end == utc(2026, 3, 29, 4, 0)
    assert [c.index for c in cells] == list(range(10))
    assert all(c.end - c.start == timedelta(minutes=30) for c in cells)
    assert day_length_minutes(SPRING_FORWARD, BERLIN) == 1380
    assert_well_formed(cells, 30)


def test_spring_forward_rule_across_the_gap() -> None:
    rules = [OpeningRule(6, time(1, 0), time(4, 0))]
    cells = cells_for_day(rules, [], 30, BERLIN, SPRING_FORWARD)
    # 01:00+01:00 (00:00Z) to 04:00+02:00 (02:00Z): two real hours.
    assert [local(c).strftime("%H:%M%z") for c in cells] == [
        "01:00+0100",
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
    ]
    assert [c.index for c in cells] == [2, 3, 4, 5]
    indices = [c.index for c in cells]
    assert indices == sorted(set(indices))
    assert_well_formed(cells, 30)


def test_spring_forward_wall_times_in_the_gap() -> None:
    # A start inside the gap maps to 03:00+02:00, the first instant after it; so does an end.
    starts_in_gap = cells_for_day(
        [OpeningRule(6, time(2, 30), time(4, 0))], [], 30, BERLIN, SPRING_FORWARD
    )
    assert [local(c).strftime("%H:%M%z") for c in starts_in_gap] == ["03:00+0200", "03:30+0200"]
    ends_in_gap = cells_for_day(
        [OpeningRule(6, time(1, 0), time(2, 30))], [], 30, BERLIN, SPRING_FORWARD
    )
    assert [local(c).strftime("%H:%M%z") for c in ends_in_gap] == ["01:00+0100", "01:30+0100"]
    inside_gap = cells_for_day(
        [OpeningRule(6, time(2, 0), time(2, 30))], [], 30, BERLIN, SPRING_FORWARD
    )
    assert inside_gap == []


def test_overlapping_rules_are_deduplicated_on_spring_forward() -> None:
    rules = [OpeningRule(6, time(0, 0), time(6, 0)), OpeningRule(6, time(1, 0), time(4, 0))]
    with pytest.raises(RuleError, match="overlaps"):
        validate_rules(rules, 30)
    assert cells_for_day(rules, [], 30, BERLIN, SPRING_FORWARD) == cells_for_day(
        rules[:1], [], 30, BERLIN, SPRING_FORWARD
    )


def test_fall_back_night_covers_the_repeated_hour_twice() -> None:
    rules = [OpeningRule(6, time(0, 0), time(6, 0))]
    cells = cells_for_day(rules, [], 15, BERLIN, FALL_BACK)
    # 00:00+02:00 (22:00Z) to 06:00+01:00 (05:00Z): seven real hours.
    assert len(cells) == 28
    assert cells[0].start == utc(2026, 10, 24, 22, 0)
    assert cells[-1].end == utc(2026, 10, 25, 5, 0)
    assert len({c.start for c in cells}) == 28
    for previous, cell in pairwise(cells):
        assert cell.start >= previous.end
    two_oclock = [local(c) for c in cells if local(c).time() == time(2, 0)]
    assert [t.utcoffset() for t in two_oclock] == [timedelta(hours=2), timedelta(hours=1)]
    assert [t.fold for t in two_oclock] == [0, 1]
    assert [c.index for c in cells] == list(range(28))
    assert day_length_minutes(FALL_BACK, BERLIN) == 1500
    assert_well_formed(cells, 15)


def test_fall_back_end_in_repeated_hour_uses_the_later_instant() -> None:
    # 01:00-02:30 ends at 02:30+01:00 (01:30Z), the second time the clock shows 02:30.
    cells = cells_for_day([OpeningRule(6, time(1, 0), time(2, 30))], [], 30, BERLIN, FALL_BACK)
    assert cells[0].start == utc(2026, 10, 24, 23, 0)
    assert cells[-1].end == utc(2026, 10, 25, 1, 30)
    assert len(cells) == 5
    # A start in the repeated hour uses the first instant (02:30+02:00).
    cells = cells_for_day([OpeningRule(6, time(2, 30), time(4, 0))], [], 30, BERLIN, FALL_BACK)
    assert local(cells[0]).strftime("%H:%M%z") == "02:30+0200"
    assert len(cells) == 5


def test_fall_back_end_at_start_of_repeated_hour_keeps_the_first_instant() -> None:
    # [00:00, 02:00) contains none of the repeated hour: it ends at 02:00+02:00 (00:00Z), so no
    # cell shows 02:xx and the rule lasts two real hours as on any other night.
    before = OpeningRule(6, time(0, 0), time(2, 0))
    cells = cells_for_day([before], [], 15, BERLIN, FALL_BACK)
    assert len(cells) == 8
    assert cells[-1].end == utc(2026, 10, 25, 0, 0)
    assert all(local(c).hour < 2 for c in cells)
    # So rules touching at 02:00 stay touching, and the second one covers both passes.
    after = OpeningRule(6, time(2, 0), time(4, 0))
    after_cells = cells_for_day([after], [], 15, BERLIN, FALL_BACK)
    assert after_cells[0].start == cells[-1].end
    assert len(after_cells) == 12
    assert cells_for_day([before, after], [], 15, BERLIN, FALL_BACK) == cells + after_cells


def test_fall_back_rules_touching_in_wall_time_overlap_in_real_time() -> None:
    rules = [OpeningRule(6, time(1, 0), time(2, 30)), OpeningRule(6, time(2, 30), time(4, 0))]
    validate_rules(rules, 30)  # disjoint in wall-clock time
    cells = cells_for_day(rules, [], 30, BERLIN, FALL_BACK)
    # Real time 23:00Z-03:00Z, the shared stretch 00:30Z-01:30Z produced only once.
    assert len(cells) == 8
    assert len({c.start for c in cells}) == 8
    assert_well_formed(cells, 30)


@pytest.mark.parametrize(
    ("day", "offset_hours", "first_index"),
    [
        (date(2026, 3, 28), 1, 20),
        (SPRING_FORWARD, 2, 18),
        (date(2026, 3, 30), 2, 20),
        (date(2026, 10, 24), 2, 20),
        (FALL_BACK, 1, 22),
        (date(2026, 10, 26), 1, 20),
    ],
)
def test_daytime_hours_unaffected_around_dst(
    day: date, offset_hours: int, first_index: int
) -> None:
    rules = [OpeningRule(weekday, time(10, 0), time(12, 0)) for weekday in range(7)]
    cells = cells_for_day(rules, [], 30, BERLIN, day)
    assert [local(c).time() for c in cells] == [
        time(10, 0),
        time(10, 30),
        time(11, 0),
        time(11, 30),
    ]
    assert all(local(c).utcoffset() == timedelta(hours=offset_hours) for c in cells)
    assert cells[0].start == datetime.combine(day, time(10 - offset_hours, 0), tzinfo=UTC)
    # The index counts real time since local midnight, so it shifts on DST days.
    assert [c.index for c in cells] == list(range(first_index, first_index + 4))
    assert_well_formed(cells, 30)


def test_offset_change_that_does_not_fit_the_slot_is_rejected() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 60-minute cells cannot stay aligned.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    day = date(2026, 10, 4)  # Sunday, 02:00 -> 02:30
    assert day_length_minutes(day, lord_howe) == 1410
    rules = [OpeningRule(6, time(6, 0), time(8, 0))]
    with pytest.raises(RuleError, match="offset change does not fit"):
        cells_for_day(rules, [], 60, lord_howe, day)
    cells = cells_for_day(rules, [], 30, lord_howe, day)
    assert len(cells) == 4
    assert_well_formed(cells, 30, lord_howe)


# --------------------------------------------------------------------------------------------
# Closures


def test_whole_day_closure_removes_the_day() -> None:
    monday = date(2026, 1, 12)
    closure = Closure(local_midnight(monday, BERLIN), local_midnight(date(2026, 1, 13), BERLIN))
    cells = slot_grid(WEEKDAY_RULES, [closure], 15, BERLIN, date(2026, 1, 12), date(2026, 1, 13))
    assert {c.day for c in cells} == {date(2026, 1, 13)}
    assert len(cells) == 24


def test_whole_day_closure_on_fall_back_day() -> None:
    rules = [OpeningRule(6, time(0, 0), time(23, 45))]
    closure = Closure(at(FALL_BACK, 0, 0), at(FALL_BACK + timedelta(days=1), 0, 0))
    assert len(cells_for_day(rules, [], 15, BERLIN, FALL_BACK)) == (1500 - 15) // 15
    assert cells_for_day(rules, [closure], 15, BERLIN, FALL_BACK) == []


def test_partial_closure_removes_exactly_the_overlapping_cells() -> None:
    monday = date(2026, 1, 12)
    # Starts mid-cell (09:10 lies inside 09:00-09:15) and ends on a cell boundary.
    closure = Closure(at(monday, 9, 10), at(monday, 10, 0))
    all_cells = cells_for_day(WEEKDAY_RULES, [], 15, BERLIN, monday)
    cells = cells_for_day(WEEKDAY_RULES, [closure], 15, BERLIN, monday)
    removed = [local(c).time() for c in all_cells if c not in cells]
    assert removed == [time(9, 0), time(9, 15), time(9, 30), time(9, 45)]
    kept = {local(c).time() for c in cells}
    assert time(8, 45) in kept  # ends 09:00, before the closure starts
    assert time(10, 0) in kept  # starts exactly when the closure ends
    assert len(cells) == 20


def test_closure_ending_mid_cell_removes_that_cell() -> None:
    monday = date(2026, 1, 12)
    closure = Closure(at(monday, 11, 0), at(monday, 13, 5))
    cells = cells_for_day(WEEKDAY_RULES, [closure], 15, BERLIN, monday)
    times = [local(c).time() for c in cells]
    assert time(10, 45) in times
    assert time(11, 0) not in times
    assert time(13, 0) not in times
    assert times[times.index(time(10, 45)) + 1] == time(13, 15)


def test_closures_in_utc_local_and_other_zones_agree() -> None:
    monday = date(2026, 1, 12)
    in_local = [Closure(at(monday, 9, 10), at(monday, 10, 0))]
    in_utc = [Closure(utc(2026, 1, 12, 8, 10), utc(2026, 1, 12, 9, 0))]
    plus_five = timezone(timedelta(hours=5))
    in_other = [
        Closure(
            datetime(2026, 1, 12, 13, 10, tzinfo=plus_five),
            datetime(2026, 1, 12, 14, 0, tzinfo=plus_five),
        )
    ]
    expected = cells_for_day(WEEKDAY_RULES, in_local, 15, BERLIN, monday)
    assert cells_for_day(WEEKDAY_RULES, in_utc, 15, BERLIN, monday) == expected
    assert cells_for_day(WEEKDAY_RULES, in_other, 15, BERLIN, monday) == expected
    assert len(expected) == 20


def test_overlapping_and_touching_closures() -> None:
    monday = date(2026, 1, 12)
    closures = [
        Closure(at(monday, 8, 0), at(monday, 8, 30)),
        Closure(at(monday, 8, 30), at(monday, 9, 0)),  # touches the first
        Closure(at(monday, 8, 15), at(monday, 8, 20)),  # inside the first
        Closure(at(monday, 14, 0), at(monday, 20, 0)),  # runs past closing time
    ]
    cells = cells_for_day(WEEKDAY_RULES, closures, 15, BERLIN, monday)
    times = [local(c).time() for c in cells]
    assert times[0] == time(9, 0)
    assert times[-1] == time(13, 45)
    assert len(cells) == 24 - 4 - 4


def test_closure_of_only_the_second_repeated_hour() -> None:
    rules = [OpeningRule(6, time(0, 0), time(6, 0))]
    # 02:00+01:00 (fold=1) to 03:00+01:00 is 01:00Z-02:00Z: only the second pass of 02:xx.
    closure = Closure(at(FALL_BACK, 2, 0, fold=1), at(FALL_BACK, 3, 0))
    # An ambiguous local time never compares equal to a time in another zone (PEP 495), so
    # compare in UTC.
    assert closure.start != utc(2026, 10, 25, 1, 0)
    assert closure.start.astimezone(UTC) == utc(2026, 10, 25, 1, 0)
    cells = cells_for_day(rules, [closure], 15, BERLIN, FALL_BACK)
    assert len(cells) == 24
    two_oclock = [local(c) for c in cells if local(c).hour == 2]
    assert len(two_oclock) == 4
    assert all(t.utcoffset() == timedelta(hours=2) for t in two_oclock)


def test_closure_validation() -> None:
    with pytest.raises(RuleError, match="timezone-aware"):
        Closure(datetime(2026, 1, 12, 9, 0), utc(2026, 1, 12, 10, 0))
    with pytest.raises(RuleError, match="must be after its start"):
        Closure(utc(2026, 1, 12, 10, 0), utc(2026, 1, 12, 10, 0))
    # Same tzinfo compares by wall clock; the check uses real time: 02:30+02:00 -> 02:10+01:00
    # is a valid 40-minute closure.
    closure = Closure(at(FALL_BACK, 2, 30), at(FALL_BACK, 2, 10, fold=1))
    assert closure.end.astimezone(UTC) - closure.start.astimezone(UTC) == timedelta(minutes=40)


# --------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("rules", "slot_minutes", "message"),
    [
        ([OpeningRule(7, time(8, 0), time(9, 0))], 15, "weekday must be an integer from 0"),
        ([OpeningRule(-1, time(8, 0), time(9, 0))], 15, "weekday must be an integer from 0"),
        ([OpeningRule(0, time(9, 0), time(9, 0))], 15, "end 09:00 must be after start 09:00"),
        ([OpeningRule(0, time(9, 0), time(8, 0))], 15, "end 08:00 must be after start 09:00"),
        ([OpeningRule(0, time(9, 0), time(0, 0))], 15, "end 00:00 must be after start"),
        ([OpeningRule(0, time(8, 10), time(9, 0))], 15, "start 08:10:00 is not aligned"),
        ([OpeningRule(0, time(8, 0), time(9, 5))], 15, "end 09:05:00 is not aligned"),
        ([OpeningRule(0, time(8, 0, 30), time(9, 0))], 15, "not aligned"),
        ([OpeningRule(0, time(8, 0), time(9, 0))], 7, "slot_minutes must divide 60"),
        ([OpeningRule(0, time(8, 0), time(9, 0))], 4, "slot_minutes must divide 60"),
        ([OpeningRule(0, time(8, 0), time(9, 0))], 45, "slot_minutes must divide 60"),
        (
            [OpeningRule(0, time(8, 0), time(12, 0)), OpeningRule(0, time(11, 0), time(13, 0))],
            15,
            r"rule #0 \(Monday 08:00-12:00\) overlaps rule #1 \(Monday 11:00-13:00\)",
        ),
        (
            [
                OpeningRule(2, time(8, 0), time(12, 0), valid_to=date(2026, 5, 1)),
                OpeningRule(2, time(9, 0), time(10, 0), valid_from=date(2026, 5, 1)),
            ],
            15,
            "overlaps",
        ),
        (
            [
                OpeningRule(
                    0,
                    time(8, 0),
                    time(9, 0),
                    valid_from=date(2026, 2, 1),
                    valid_to=date(2026, 1, 1),
                )
            ],
            15,
            "valid_from 2026-02-01 is after valid_to 2026-01-01",
        ),
        (
            [OpeningRule(0, time(8, 0, tzinfo=UTC), time(9, 0))],
            15,
            "must be a naive local wall-clock time",
        ),
    ],
)
def test_validate_rules_errors(rules: list[OpeningRule], slot_minutes: int, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        validate_rules(rules, slot_minutes)


def test_validate_rules_accepts_good_calendars() -> None:
    validate_rules(WEEKDAY_RULES, 15)
    validate_rules([], 5)
    for slot in (5, 6, 10, 12, 15, 20, 30, 60):
        validate_rules([OpeningRule(0, time(8, 0), time(23, 0))], slot)
    # Same hours with disjoint validity, and same hours on different weekdays, do not overlap.
    validate_rules(
        [
            OpeningRule(0, time(8, 0), time(12, 0), valid_to=date(2026, 4, 30)),
            OpeningRule(0, time(9, 0), time(13, 0), valid_from=date(2026, 5, 1)),
            OpeningRule(1, time(8, 0), time(12, 0)),
        ],
        15,
    )


def test_grid_functions_reject_invalid_rules() -> None:
    bad = [OpeningRule(0, time(8, 10), time(9, 0))]
    with pytest.raises(RuleError, match="not aligned"):
        cells_for_day(bad, [], 15, BERLIN, date(2026, 1, 12))
    with pytest.raises(RuleError, match="not aligned"):
        slot_grid(bad, [], 15, BERLIN, date(2026, 1, 12), date(2026, 1, 18))
    with pytest.raises(RuleError, match="slot_minutes"):
        cell_index(utc(2026, 1, 12, 8, 0), BERLIN, 7)


def test_rule_error_is_a_value_error() -> None:
    assert issubclass(RuleError, ValueError)


# --------------------------------------------------------------------------------------------
# Inverse functions


def test_cell_index_and_cell_start() -> None:
    monday = date(2026, 1, 12)
    assert cell_index(utc(2026, 1, 12, 7, 0), BERLIN, 15) == (monday, 32)
    assert cell_index(at(monday, 8, 0), BERLIN, 15) == (monday, 32)
    assert cell_index(utc(2026, 1, 12, 7, 5), BERLIN, 15) is None
    assert cell_index(utc(2026, 1, 12, 7, 0, 30), BERLIN, 15) is None
    # 23:30Z on Jan 11 is 00:30 local on Jan 12.
    assert cell_index(utc(2026, 1, 11, 23, 30), BERLIN, 30) == (monday, 1)
    assert cell_start(monday, 32, BERLIN, 15) == utc(2026, 1, 12, 7, 0)
    assert cell_start(FALL_BACK, 99, BERLIN, 15) == utc(2026, 10, 25, 22, 45)
    with pytest.raises(ValueError, match="outside"):
        cell_start(FALL_BACK, 100, BERLIN, 15)
    with pytest.raises(ValueError, match="outside"):
        cell_start(SPRING_FORWARD, 23, BERLIN, 60)
    with pytest.raises(ValueError, match="outside"):
        cell_start(monday, -1, BERLIN, 15)
    with pytest.raises(ValueError, match="timezone-aware"):
        cell_index(datetime(2026, 1, 12, 8, 0), BERLIN, 15)


def test_cell_index_in_the_repeated_hour() -> None:
    first = at(FALL_BACK, 2, 0)
    second = at(FALL_BACK, 2, 0, fold=1)
    assert cell_index(first, BERLIN, 15) == (FALL_BACK, 8)
    assert cell_index(second, BERLIN, 15) == (FALL_BACK, 12)
    assert cell_start(FALL_BACK, 12, BERLIN, 15) == second.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Whole grids


def _busy_calendar() -> tuple[list[OpeningRule], list[Closure]]:
    rules = [OpeningRule(weekday, time(8, 0), time(18, 0)) for weekday in range(5)]
    rules.append(OpeningRule(5, time(9, 0), time(12, 0)))
    closures = [
        Closure(at(date(2026, 5, 1), 0, 0), at(date(2026, 5, 2), 0, 0)),
        Closure(utc(2026, 3, 3, 10, 5), utc(2026, 3, 3, 11, 0)),
    ]
    return rules, closures


def test_slot_grid_over_120_days_is_idempotent_and_sorted() -> None:
    rules, closures = _busy_calendar()
    first, last = date(2026, 2, 1), date(2026, 5, 31)
    assert (last - first).days + 1 == 120
    grid = slot_grid(rules, closures, 15, BERLIN, first, last)
    assert grid == slot_grid(rules, closures, 15, BERLIN, first, last)
    assert grid == sorted(grid, key=lambda c: c.start)
    assert len({c.start for c in grid}) == len(grid)
    assert {c.day for c in grid} <= {first + timedelta(days=n) for n in range(120)}
    assert date(2026, 5, 1) not in {c.day for c in grid}
    assert_well_formed(grid, 15)
    # The grid is the concatenation of its days.
    by_day = [
        cell
        for n in range(120)
        for cell in cells_for_day(rules, closures, 15, BERLIN, first + timedelta(days=n))
    ]
    assert grid == by_day


def test_slot_grid_empty_range_and_single_day() -> None:
    assert slot_grid(WEEKDAY_RULES, [], 15, BERLIN, date(2026, 1, 13), date(2026, 1, 12)) == []
    monday = date(2026, 1, 12)
    assert slot_grid(WEEKDAY_RULES, [], 15, BERLIN, monday, monday) == cells_for_day(
        WEEKDAY_RULES, [], 15, BERLIN, monday
    )


def test_slot_grid_is_fast() -> None:
    rules, closures = _busy_calendar()
    best = float("inf")
    for _ in range(3):
        started = clock.perf_counter()
        grid = slot_grid(rules, closures, 15, BERLIN, date(2026, 1, 1), date(2026, 4, 30))
        best = min(best, clock.perf_counter() - started)
    assert len(grid) > 3000
    # The target is well under 50 ms; the bound is loose so a busy CI machine does not flake.
    assert best < 0.25


# --------------------------------------------------------------------------------------------
# Property test against a brute-force oracle


ZONES = [BERLIN, ZoneInfo("Europe/London"), ZoneInfo("America/New_York")]


@lru_cache(maxsize=256)
def _walls(day: date, tz: ZoneInfo) -> tuple[tuple[datetime, time], ...]:
    """Every UTC minute whose local date is ``day``, with its local wall time, in order."""
    origin = datetime.combine(day - timedelta(days=1), time(0, 0), tzinfo=UTC)
    out = []
    for minute in range(3 * 24 * 60):
        instant = origin + timedelta(minutes=minute)
        shown = instant.astimezone(tz)
        if shown.date() == day:
            out.append((instant, shown.time()))
    return tuple(out)


def _oracle(
    rules: list[OpeningRule], closures: list[Closure], slot: int, tz: ZoneInfo, day: date
) -> list[Cell]:
    """Expected cells, computed minute by minute without the module's wall-time mapping.

    A rule covers the smallest real-time interval holding every instant whose wall time lies in
    [start, end): it starts at the first instant showing a wall time >= start and ends at the
    first instant from which the clock never again shows less than end.
    """
    walls = _walls(day, tz)
    midnight = walls[0][0]
    suffix_min: list[time] = [time.max] * (len(walls) + 1)
    for i in range(len(walls) - 1, -1, -1):
        suffix_min[i] = min(walls[i][1], suffix_min[i + 1])
    step = timedelta(minutes=slot)
    starts: set[datetime] = set()
    for rule in rules:
        if not rule.applies_on(day):
            continue
        # A wall time the day never reaches (a gap running past midnight) maps to the day's end.
        day_end = walls[-1][0] + timedelta(minutes=1)
        start = next((instant for instant, wall in walls if wall >= rule.start), day_end)
        end = next((walls[i][0] for i in range(len(walls)) if suffix_min[i] >= rule.end), day_end)
        instant = start
        while instant + step <= end:
            starts.add(instant)
            instant += step
    spans = [(c.start.astimezone(UTC), c.end.astimezone(UTC)) for c in closures]
    return [
        Cell(s, s + step, day, (s - midnight) // step)
        for s in sorted(starts)
        if not any(cs < s + step and s < ce for cs, ce in spans)
    ]


@st.composite
def calendars(draw: st.DrawFn) -> tuple[int, ZoneInfo, date, list[OpeningRule], list[Closure]]:
    slot = draw(st.sampled_from([5, 6, 10, 12, 15, 20, 30, 60]))
    tz = draw(st.sampled_from(ZONES))
    day = draw(
        st.one_of(
            st.sampled_from(DST_DAYS),
            st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
        )
    )
    last_slot = 1440 // slot - 1  # the latest allowed end is 24:00 minus one slot
    rules = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        a = draw(st.integers(min_value=0, max_value=last_slot - 1))
        b = draw(st.integers(min_value=a + 1, max_value=last_slot))
        weekday = draw(st.one_of(st.just(day.weekday()), st.integers(min_value=0, max_value=6)))
        valid_from = draw(
            st.none() | st.sampled_from([day - timedelta(days=1), day, day + timedelta(days=1)])
        )
        valid_to = draw(
            st.none() | st.sampled_from([day - timedelta(days=1), day, day + timedelta(days=1)])
        )
        if valid_from and valid_to and valid_from > valid_to:
            valid_from, valid_to = valid_to, valid_from
        rules.append(
            OpeningRule(
                weekday,
                time(a * slot // 60, a * slot % 60),
                time(b * slot // 60, b * slot % 60),
                valid_from,
                valid_to,
            )
        )
    closures = []
    base = datetime.combine(day, time(0, 0), tzinfo=UTC) - timedelta(hours=14)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        start = base + timedelta(minutes=draw(st.integers(min_value=0, max_value=52 * 60)))
        length = timedelta(minutes=draw(st.integers(min_value=1, max_value=6 * 60)))
        closures.append(Closure(start.astimezone(tz), start + length))
    return slot, tz, day, rules, closures


@settings(max_examples=300, deadline=None)
@given(calendars())
@example((30, BERLIN, SPRING_FORWARD, [OpeningRule(6, time(0, 0), time(23, 30))], []))
@example((15, BERLIN, FALL_BACK, [OpeningRule(6, time(0, 0), time(23, 45))], []))
@example(
    (
        30,
        BERLIN,
        FALL_BACK,
        [OpeningRule(6, time(1, 0), time(2, 30)), OpeningRule(6, time(2, 30), time(4, 0))],
        [],
    )
)
def test_grid_properties(
    calendar: tuple[int, ZoneInfo, date, list[OpeningRule], list[Closure]],
) -> None:
    slot, tz, day, rules, closures = calendar
    cells = cells_for_day(rules, closures, slot, tz, day)
    step = timedelta(minutes=slot)
    midnight = local_midnight(day, tz)
    next_midnight = local_midnight(day + timedelta(days=1), tz)
    for cell in cells:
        assert cell.end - cell.start == step
        assert cell.day == day
        assert midnight <= cell.start
        assert cell.end <= next_midnight
        assert cell_index(cell.start, tz, slot) == (cell.day, cell.index)
        assert cell_start(cell.day, cell.index, tz, slot) == cell.start
        assert not any(
            c.start.astimezone(UTC) < cell.end and cell.start < c.end.astimezone(UTC)
            for c in closures
        )
    for previous, cell in pairwise(cells):
        assert cell.start >= previous.end
    assert cells == _oracle(rules, closures, slot, tz, day)
    # The multi-day grid agrees with the single day, and closures only ever remove cells.
    assert slot_grid(rules, closures, slot, tz, day, day) == cells
    assert set(cells) <= set(cells_for_day(rules, [], slot, tz, day))
