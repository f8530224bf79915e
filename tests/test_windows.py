"""Maintenance windows, blackouts and slot checking (bot.windows): pure logic, exact UTC instants."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import windows
from bot.config import Config, WindowRule, load_config, parse_config
from bot.errors import InputError, NotFoundError, SchedulingError
from bot.windows import Booking, Slot, SlotRefusedError, SlotRule

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patchwarden.yaml"
SUNDAY_2AM = "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0"
DAY = timedelta(hours=24)
H2 = timedelta(hours=2)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def system(tz: str, *rules: tuple[str, str], blackouts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "owner": "U0OWNER1",
        "timezone": tz,
        "maintenance_windows": [{"rrule": r, "duration": d} for r, d in rules],
        "blackouts": blackouts or [],
    }


def make_config(systems: dict[str, dict[str, Any]], blackouts: list[dict[str, Any]] | None = None) -> Config:
    return parse_config(
        {
            "slack": {"approvals_channel": "C0APPROVALS"},
            "groups": {"security": ["U0SEC1"]},
            "systems": systems,
            "blackouts": blackouts or [],
            "policy": {
                "version": 1,
                "operators": "security",
                "stages": {"test": [{"role": "owner"}], "prod": [{"role": "owner"}]},
            },
        }
    )


def starts(config: Config, name: str, start: datetime, end: datetime) -> list[datetime]:
    return [s.start for s in windows.occurrences(config, name, start=start, end=end)]


@pytest.fixture
def config() -> Config:
    return make_config(
        {
            "web-shop": system("Europe/Berlin", (SUNDAY_2AM, "2h")),
            "ny-db": system("America/New_York", ("FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=30", "2h")),
            "utc-api": system("UTC", (SUNDAY_2AM, "2h")),
            "sat-batch": system("UTC", ("FREQ=WEEKLY;BYDAY=SA;BYHOUR=2", "2h")),
            "anytime": system("UTC"),
            "billing": system(
                "Europe/Berlin",
                (SUNDAY_2AM, "2h"),
                blackouts=[{"start": "2026-12-10T00:00", "end": "2026-12-14T00:00", "reason": "audit"}],
            ),
        },
        blackouts=[{"start": "2026-12-20T00:00", "end": "2027-01-06T00:00", "reason": "year-end freeze"}],
    )


# --- expansion and DST -------------------------------------------------------------------------


def test_weekly_window_expands_to_sundays_in_utc(config: Config) -> None:
    found = windows.occurrences(config, "web-shop", start=utc(2026, 11, 30), end=utc(2026, 12, 21))
    assert found == [Slot(utc(2026, 12, d, 1), utc(2026, 12, d, 3)) for d in (6, 13, 20)]


def test_occurrences_include_a_window_already_running_at_start(config: Config) -> None:
    found = windows.occurrences(config, "web-shop", start=utc(2026, 12, 6, 2), end=utc(2026, 12, 6, 2, 30))
    assert found == [Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 3))]


@pytest.mark.parametrize(
    ("tz", "rule", "span", "expected"),
    [
        # Berlin springs forward 2026-03-29 02:00 -> 03:00: 02:30 does not exist that day and maps
        # with the pre-switch offset (+01:00) to 01:30Z; the day before and after are unshifted.
        (
            "Europe/Berlin",
            "FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
            (3, 28, 3, 31),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)],
        ),
        (
            "Europe/Berlin",
            SUNDAY_2AM,
            (3, 20, 4, 6),
            [utc(2026, 3, 22, 1), utc(2026, 3, 29, 1), utc(2026, 4, 5, 0)],
        ),
        # Berlin falls back 2026-10-25 03:00 -> 02:00: 02:30 happens twice; the window is at the first.
        (
            "Europe/Berlin",
            "FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
            (10, 24, 10, 27),
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            "Europe/Berlin",
            SUNDAY_2AM,
            (10, 15, 11, 2),
            [utc(2026, 10, 18, 0), utc(2026, 10, 25, 0), utc(2026, 11, 1, 1)],
        ),
        # New York springs forward 2026-03-08 02:00 -> 03:00: 02:30 maps with EST (-05:00) to 07:30Z.
        (
            "America/New_York",
            "FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
            (3, 7, 3, 10),
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)],
        ),
        # New York falls back 2026-11-01 02:00 -> 01:00: 01:30 happens twice; first one is EDT (-04:00).
        (
            "America/New_York",
            "FREQ=DAILY;BYHOUR=1;BYMINUTE=30",
            (10, 31, 11, 3),
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        (
            "America/New_York",
            "FREQ=WEEKLY;BYDAY=SU;BYHOUR=1;BYMINUTE=30",
            (10, 20, 11, 10),
            [utc(2026, 10, 25, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 8, 6, 30)],
        ),
    ],
)
def test_dst_switch_neither_skips_doubles_nor_shifts(
    tz: str, rule: str, span: tuple[int, int, int, int], expected: list[datetime]
) -> None:
    cfg = make_config({"s": system(tz, (rule, "1h"))})
    m1, d1, m2, d2 = span
    assert starts(cfg, "s", utc(2026, m1, d1), utc(2026, m2, d2)) == expected


def test_wall_clock_starts_mapping_to_one_instant_give_one_occurrence() -> None:
    # 02:00 does not exist on 2026-03-29 in Berlin and maps to the same instant as 03:00 CEST.
    cfg = make_config({"s": system("Europe/Berlin", ("FREQ=DAILY;BYHOUR=1,2,3", "30m"))})
    assert starts(cfg, "s", utc(2026, 3, 28, 22), utc(2026, 3, 29, 3)) == [
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
    ]


def test_duration_is_elapsed_time_across_fall_back() -> None:
    cfg = make_config({"s": system("Europe/Berlin", ("FREQ=DAILY;BYHOUR=1", "3h"))})
    (slot,) = windows.occurrences(cfg, "s", start=utc(2026, 10, 24, 22), end=utc(2026, 10, 25))
    assert (slot.start, slot.end) == (utc(2026, 10, 24, 23), utc(2026, 10, 25, 2))  # 01:00 CEST - 03:00 CET


def test_typed_start_on_spring_forward_day_matches_the_window(config: Config) -> None:
    slot = windows.parse_slot("2026-03-29 02:00", timezone="Europe/Berlin", default_duration=H2)
    assert slot == Slot(utc(2026, 3, 29, 1), utc(2026, 3, 29, 3))
    windows.check_slot(config, ["web-shop"], slot, now=utc(2026, 3, 1), bookings=[], notice=DAY)


# --- blackouts ---------------------------------------------------------------------------------


def test_blackouts_are_global_in_utc_and_per_system_in_its_zone(config: Config) -> None:
    assert windows.blackouts(config, "billing") == [
        windows.BlackoutPeriod(utc(2026, 12, 9, 23), utc(2026, 12, 13, 23), "audit", "billing"),
        windows.BlackoutPeriod(utc(2026, 12, 20), utc(2027, 1, 6), "year-end freeze", None),
    ]
    assert [b.system for b in windows.blackouts(config, "web-shop")] == [None]


def test_global_blackout_refuses_with_its_reason(config: Config) -> None:
    slot = Slot(utc(2026, 12, 27, 1), utc(2026, 12, 27, 3))
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(config, ["web-shop"], slot, now=utc(2026, 12, 1), bookings=[], notice=DAY)
    assert info.value.rule is SlotRule.BLACKOUT
    assert info.value.blocker == "year-end freeze"
    assert "year-end freeze" in info.value.user_message and "00:00 Sun 20 Dec 2026" in info.value.user_message
    assert info.value.suggestion == Slot(utc(2027, 1, 10, 1), utc(2027, 1, 10, 3))
    assert isinstance(info.value, SchedulingError)


def test_system_blackout_refuses_with_its_reason(config: Config) -> None:
    slot = Slot(utc(2026, 12, 13, 1), utc(2026, 12, 13, 3))
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(config, ["billing"], slot, now=utc(2026, 12, 1), bookings=[], notice=DAY)
    assert (info.value.rule, info.value.blocker) == ("blackout", "audit")
    assert "billing's freeze “audit”" in info.value.user_message
    # The freeze does not apply to other systems.
    windows.check_slot(config, ["web-shop"], slot, now=utc(2026, 12, 1), bookings=[], notice=DAY)


def test_slot_ending_where_a_blackout_starts_is_allowed() -> None:
    cfg = make_config(
        {"s": system("UTC", ("FREQ=DAILY;BYHOUR=22", "2h"))},
        blackouts=[{"start": "2026-12-20T00:00", "end": "2026-12-21T00:00", "reason": "freeze"}],
    )
    windows.check_slot(
        cfg,
        ["s"],
        Slot(utc(2026, 12, 19, 22), utc(2026, 12, 20)),
        now=utc(2026, 12, 1),
        bookings=[],
        notice=DAY,
    )


# --- conflicts, notice, past, emergency --------------------------------------------------------


def test_conflict_refuses_and_suggests_the_nearest_free_window(config: Config) -> None:
    booked = Booking(utc(2026, 12, 6, 1), utc(2026, 12, 6, 3), "CHG-7", frozenset({"web-shop", "ny-db"}))
    slot = Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 2))
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(config, ["web-shop"], slot, now=utc(2026, 12, 1), bookings=[booked], notice=DAY)
    assert (info.value.rule, info.value.blocker) == ("conflict", "CHG-7")
    assert info.value.suggestion == Slot(utc(2026, 12, 13, 1), utc(2026, 12, 13, 2))
    assert "CHG-7" in info.value.user_message and "02:00–03:00 Sun 13 Dec" in info.value.user_message
    # Rescheduling the same change ignores its own booking; other systems are not affected.
    windows.check_slot(
        config,
        ["web-shop"],
        slot,
        now=utc(2026, 12, 1),
        bookings=[booked],
        notice=DAY,
        exclude_change="CHG-7",
    )
    windows.check_slot(
        config,
        ["utc-api"],
        Slot(utc(2026, 12, 6, 2), utc(2026, 12, 6, 4)),
        now=utc(2026, 12, 1),
        bookings=[booked],
        notice=DAY,
    )


def test_suggestion_falls_back_to_an_earlier_slot() -> None:
    cfg = make_config(
        {"s": system("UTC", (SUNDAY_2AM, "2h"))},
        blackouts=[{"start": "2026-12-10T00:00", "end": "2028-01-01T00:00", "reason": "migration"}],
    )
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(
            cfg,
            ["s"],
            Slot(utc(2026, 12, 13, 2), utc(2026, 12, 13, 4)),
            now=utc(2026, 12, 1),
            bookings=[],
            notice=DAY,
        )
    assert info.value.suggestion == Slot(utc(2026, 12, 6, 2), utc(2026, 12, 6, 4))


def test_notice_refuses_a_slot_too_soon_unless_emergency(config: Config) -> None:
    slot = Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 3))
    now = utc(2026, 12, 5, 12)
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(config, ["web-shop"], slot, now=now, bookings=[], notice=DAY)
    assert info.value.rule == "notice"
    assert "1d ahead" in info.value.user_message and "emergency" in info.value.user_message
    assert info.value.suggestion == Slot(utc(2026, 12, 13, 1), utc(2026, 12, 13, 3))
    windows.check_slot(config, ["web-shop"], slot, now=now, bookings=[], notice=timedelta())  # test stage
    windows.check_slot(config, ["web-shop"], slot, now=now, bookings=[], notice=DAY, emergency=True)


def test_past_is_refused_even_for_emergencies(config: Config) -> None:
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(
            config,
            ["web-shop"],
            Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 3)),
            now=utc(2026, 12, 7),
            bookings=[],
            notice=DAY,
            emergency=True,
        )
    assert info.value.rule == "past" and "in the past" in info.value.user_message
    # A start typed as the current minute is not "past".
    windows.check_slot(
        config,
        ["web-shop"],
        Slot(utc(2026, 12, 7, 9), utc(2026, 12, 7, 10)),
        now=utc(2026, 12, 7, 9, 0, 40),
        bookings=[],
        notice=DAY,
        emergency=True,
    )


def test_outside_window_names_the_rule_and_emergency_bypasses_it(config: Config) -> None:
    slot = windows.parse_slot("2026-12-05 02:00", timezone="Europe/Berlin", default_duration=H2)
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(config, ["web-shop"], slot, now=utc(2026, 11, 22), bookings=[], notice=DAY)
    assert info.value.rule == "outside_window"
    assert info.value.user_message == (
        "02:00–04:00 Sat 5 Dec (Europe/Berlin) is outside web-shop's maintenance windows (Sundays 02:00, 2h)."
        " The nearest free slot is 02:00–04:00 Sun 6 Dec (Europe/Berlin)."
    )
    windows.check_slot(config, ["web-shop"], slot, now=utc(2026, 11, 22), bookings=[], notice=DAY, emergency=True)


def test_emergency_does_not_bypass_blackouts_or_bookings_unless_told(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    slot = Slot(utc(2026, 12, 22, 9), utc(2026, 12, 22, 10))
    now = utc(2026, 12, 22, 8)
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(config, ["web-shop"], slot, now=now, bookings=[], notice=DAY, emergency=True)
    assert info.value.rule == "blackout"
    with caplog.at_level(logging.WARNING, logger="bot.windows.check"):
        windows.check_slot(
            config,
            ["web-shop"],
            slot,
            now=now,
            bookings=[],
            notice=DAY,
            emergency=True,
            unsafe_ignore_blackouts=True,
        )
    assert "blackouts bypassed" in caplog.text
    booked = Booking(slot.start, slot.end, "CHG-1", frozenset({"web-shop"}))
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(
            config,
            ["web-shop"],
            slot,
            now=now,
            bookings=[booked],
            notice=DAY,
            emergency=True,
            unsafe_ignore_blackouts=True,
        )
    assert info.value.rule == "conflict"
    assert info.value.suggestion == Slot(utc(2026, 12, 22, 10), utc(2026, 12, 22, 11))


def test_emergency_proposals_are_the_earliest_free_times(config: Config) -> None:
    booked = Booking(utc(2026, 12, 1, 12), utc(2026, 12, 1, 13, 30), "CHG-1", frozenset({"web-shop"}))
    found = windows.next_free_slots(
        config,
        ["web-shop"],
        now=utc(2026, 12, 1, 11, 57, 10),
        bookings=[booked],
        notice=DAY,
        emergency=True,
        count=2,
    )
    assert found == [
        Slot(utc(2026, 12, 1, 13, 30), utc(2026, 12, 1, 15, 30)),
        Slot(utc(2026, 12, 1, 15, 30), utc(2026, 12, 1, 17, 30)),
    ]
    found = windows.next_free_slots(
        config,
        ["web-shop"],
        now=utc(2026, 12, 1, 9, 57, 10),
        bookings=[booked],
        notice=DAY,
        emergency=True,
        count=1,
        duration=timedelta(hours=1),
    )
    assert found == [Slot(utc(2026, 12, 1, 10), utc(2026, 12, 1, 11))]


# --- several systems, next_free_slots ----------------------------------------------------------


def test_several_systems_need_a_window_of_every_one(config: Config) -> None:
    # web-shop: Sundays 01:00-03:00Z (Berlin, winter); utc-api: Sundays 02:00-04:00Z.
    found = windows.next_free_slots(
        config, ["web-shop", "utc-api"], now=utc(2026, 11, 30), bookings=[], notice=DAY, count=2
    )
    assert found == [
        Slot(utc(2026, 12, 6, 2), utc(2026, 12, 6, 3)),
        Slot(utc(2026, 12, 13, 2), utc(2026, 12, 13, 3)),
    ]
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(
            config,
            ["web-shop", "utc-api"],
            Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 3)),
            now=utc(2026, 11, 30),
            bookings=[],
            notice=DAY,
        )
    assert info.value.rule == "outside_window" and "utc-api's" in info.value.user_message
    assert info.value.suggestion is None  # no 2h stretch is inside both
    # No common window at all: nothing is proposed; a system without windows adds no restriction.
    assert (
        windows.next_free_slots(config, ["web-shop", "sat-batch"], now=utc(2026, 11, 30), bookings=[], notice=DAY) == []
    )
    assert windows.next_free_slots(
        config, ["anytime", "web-shop"], now=utc(2026, 11, 30), bookings=[], notice=DAY, count=1
    ) == [Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 3))]


def test_booking_on_any_of_the_systems_blocks(config: Config) -> None:
    booked = Booking(utc(2026, 12, 6, 2), utc(2026, 12, 6, 4), "CHG-3", frozenset({"utc-api"}))
    found = windows.next_free_slots(
        config, ["web-shop", "utc-api"], now=utc(2026, 11, 30), bookings=[booked], notice=DAY, count=1
    )
    assert found == [Slot(utc(2026, 12, 13, 2), utc(2026, 12, 13, 3))]


def test_next_free_slots_skips_booked_windows_and_honours_duration(config: Config) -> None:
    booked = Booking(utc(2026, 12, 13, 1, 30), utc(2026, 12, 13, 2, 30), "CHG-2", frozenset({"web-shop"}))
    found = windows.next_free_slots(
        config,
        ["web-shop"],
        now=utc(2026, 12, 1),
        bookings=[booked],
        notice=DAY,
        duration=timedelta(minutes=45),
    )
    assert found == [
        Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 1, 45)),
        Slot(utc(2027, 1, 10, 1), utc(2027, 1, 10, 1, 45)),
        Slot(utc(2027, 1, 17, 1), utc(2027, 1, 17, 1, 45)),
    ]
    assert (
        windows.next_free_slots(
            config, ["web-shop"], now=utc(2026, 12, 1), bookings=[], notice=DAY, duration=timedelta(hours=3)
        )
        == []
    )
    with pytest.raises(InputError):
        windows.next_free_slots(
            config, ["web-shop"], now=utc(2026, 12, 1), bookings=[], notice=DAY, duration=timedelta()
        )


def test_year_end_freeze_of_the_example_config_is_respected() -> None:
    cfg = load_config(EXAMPLE)
    found = windows.next_free_slots(
        cfg, ["web-shop"], now=utc(2026, 12, 10), bookings=[], notice=cfg.policy.announce_notice
    )
    # Sundays 02:00 Berlin = 01:00Z; 20 and 27 Dec and 3 Jan fall in the freeze (20 Dec - 6 Jan UTC).
    assert found == [
        Slot(utc(y, m, d, 1), utc(y, m, d, 3)) for y, m, d in ((2026, 12, 13), (2027, 1, 10), (2027, 1, 17))
    ]


def test_unknown_system_and_naive_times_are_refused(config: Config) -> None:
    with pytest.raises(NotFoundError, match="known systems"):
        windows.next_free_slots(config, ["nope"], now=utc(2026, 12, 1), bookings=[], notice=DAY)
    with pytest.raises(InputError):
        windows.next_free_slots(config, [], now=utc(2026, 12, 1), bookings=[], notice=DAY)
    with pytest.raises(ValueError, match="timezone-aware"):
        windows.occurrences(config, "web-shop", start=datetime(2026, 12, 1), end=utc(2026, 12, 2))
    with pytest.raises(ValueError, match="end after"):
        Slot(utc(2026, 12, 1), utc(2026, 12, 1))


def test_ten_thousand_bookings_stay_fast() -> None:
    cfg = make_config({"hourly": system("UTC", ("FREQ=HOURLY", "1h")), "free": system("UTC")})
    now = utc(2026, 1, 1)
    booked = [
        Booking(now + timedelta(hours=i), now + timedelta(hours=i + 1), f"CHG-{i}", frozenset({"hourly", "free"}))
        for i in range(10_000)
    ]
    began = time.perf_counter()
    for name in ("hourly", "free"):
        found = windows.next_free_slots(
            cfg,
            [name],
            now=now,
            bookings=booked[::-1],
            notice=timedelta(),
            horizon=timedelta(days=500),
            count=1,
        )
        assert found == [Slot(now + timedelta(hours=10_000), now + timedelta(hours=10_001))]
    with pytest.raises(SlotRefusedError) as info:
        windows.check_slot(
            cfg,
            ["hourly"],
            Slot(now + timedelta(hours=5000), now + timedelta(hours=5001)),
            now=now,
            bookings=booked,
            notice=timedelta(),
            horizon=timedelta(days=500),
        )
    assert info.value.blocker == "CHG-5000"
    assert time.perf_counter() - began < 5  # generous for CI; typically well under a second


# --- parse_slot and describe_rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06 02:00", Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 3))),
        ("  2026-12-06   02:00   90m ", Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 2, 30))),
        ("2026-12-06 02:00 1h30m", Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 2, 30))),
        ("2026-12-06T02:00+01:00 90m", Slot(utc(2026, 12, 6, 1), utc(2026, 12, 6, 2, 30))),
        ("2026-12-06T02:00Z", Slot(utc(2026, 12, 6, 2), utc(2026, 12, 6, 4))),
        ("2026-10-25 02:30", Slot(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 30))),  # ambiguous: first
        ("2026-10-25T02:30+01:00", Slot(utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 3, 30))),  # the second
    ],
)
def test_parse_slot_accepts(text: str, expected: Slot) -> None:
    assert windows.parse_slot(text, timezone="Europe/Berlin", default_duration=H2) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "is not a date and time"),
        ("tomorrow", "is not a date and time"),
        ("2026-12-06", "is not a date and time"),
        ("2026-12-06 25:00", "is not a date and time"),
        ("06.12.2026 02:00", "is not a date and time"),
        ("2026-12-06 02:00 2x", "is not a duration"),
        ("2026-12-06 02:00 0m", "more than 0m"),
        ("2026-12-06 02:00 30d", "at most 7d"),
        ("2026-12-06 02:00 2h extra", "is not a date and time"),
        ("9999-12-31 23:00 2h", "out of range"),
    ],
)
def test_parse_slot_refuses_with_a_clear_message(text: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        windows.parse_slot(text, timezone="Europe/Berlin", default_duration=H2)
    assert words in info.value.user_message


@pytest.mark.parametrize(
    ("rule", "duration", "text"),
    [
        (SUNDAY_2AM, "2h", "Sundays 02:00, 2h"),
        ("FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=22;BYMINUTE=30", "90m", "Saturdays and Sundays 22:30, 1h30m"),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;BYHOUR=6", "1h", "every 2 weeks, Tuesdays 06:00, 1h"),
        ("FREQ=DAILY;BYHOUR=3,15", "30m", "daily 03:00 and 15:00, 30m"),
        ("FREQ=MONTHLY;BYDAY=1SU;BYHOUR=2", "4h", "first Sunday of the month 02:00, 4h"),
        ("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=20", "4h", "last Friday of the month 20:00, 4h"),
        ("FREQ=MONTHLY;BYMONTHDAY=15;BYHOUR=1", "2h", "day 15 of the month 01:00, 2h"),
        ("FREQ=YEARLY;BYMONTH=7;BYHOUR=1", "2h", "FREQ=YEARLY;BYMONTH=7;BYHOUR=1, 2h"),
    ],
)
def test_describe_rule(rule: str, duration: str, text: str) -> None:
    assert windows.describe_rule(WindowRule.model_validate({"rrule": rule, "duration": duration})) == text


# --- property: whatever next_free_slots proposes, check_slot accepts ---------------------------

_SYSTEMS = ["web-shop", "ny-db", "utc-api", "anytime", "billing"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    minutes=st.integers(min_value=0, max_value=400 * 24 * 60),
    notice_hours=st.integers(min_value=0, max_value=72),
    chosen=st.lists(st.sampled_from(_SYSTEMS), min_size=1, max_size=3, unique=True),
    booked=st.lists(st.tuples(st.integers(0, 90 * 24), st.integers(1, 6), st.sampled_from(_SYSTEMS)), max_size=30),
    emergency=st.booleans(),
)
def test_every_proposed_slot_passes_check_slot(
    config: Config,
    minutes: int,
    notice_hours: int,
    chosen: list[str],
    booked: list[tuple[int, int, str]],
    emergency: bool,
) -> None:
    now = utc(2026, 1, 1) + timedelta(minutes=minutes, seconds=17)
    bookings = [
        Booking(now + timedelta(hours=h), now + timedelta(hours=h + n), f"CHG-{i}", frozenset({s}))
        for i, (h, n, s) in enumerate(booked)
    ]
    notice = timedelta(hours=notice_hours)
    found = windows.next_free_slots(
        config,
        chosen,
        now=now,
        bookings=bookings,
        notice=notice,
        emergency=emergency,
        horizon=timedelta(days=60),
    )
    assert found == sorted(found)
    for slot in found:
        assert slot.start >= now + (timedelta() if emergency else notice)
        windows.check_slot(config, chosen, slot, now=now, bookings=bookings, notice=notice, emergency=emergency)
