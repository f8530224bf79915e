"""Window rules cannot freeze the bot: sub-minute rules refused at config time, every expansion bounded."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_config

from bot.config import Config, WindowRule
from bot.errors import ConfigError, SchedulingError
from bot.windows import recurrence


def _with_rule(rrule: str) -> Config:
    return make_config(systems={"web-shop": {"maintenance_windows": [{"rrule": rrule, "duration": "1h"}]}})


@pytest.mark.parametrize("rrule", ["FREQ=SECONDLY", "FREQ=MINUTELY;BYSECOND=0,30", "FREQ=HOURLY;COUNT=99999999"])
def test_sub_minute_and_endless_count_rules_are_refused_at_config_time(rrule: str) -> None:
    with pytest.raises((ConfigError, ValueError)):
        _with_rule(rrule)


def test_a_minutely_rule_expands_near_today_without_walking_from_the_anchor() -> None:
    config = _with_rule("FREQ=MINUTELY;INTERVAL=5")
    now = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    began = time.perf_counter()
    slots = recurrence.occurrences(config, "web-shop", start=now, end=now + timedelta(days=2))
    elapsed = time.perf_counter() - began
    assert slots and slots[0].start <= now + timedelta(minutes=5)
    assert all(s.start.minute % 5 == 0 for s in slots)  # the phase survives re-anchoring
    assert elapsed < 1.0, f"{elapsed:.2f}s"


def test_an_expansion_that_would_walk_too_far_is_refused_quickly() -> None:
    config = _with_rule("FREQ=DAILY")
    dense = WindowRule.model_construct(rrule="FREQ=MINUTELY;COUNT=99999999", duration=timedelta(minutes=1))
    system = config.systems["web-shop"].model_copy(update={"maintenance_windows": [dense]})
    config = config.model_copy(update={"systems": {"web-shop": system}})
    now = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    began = time.perf_counter()
    with pytest.raises(SchedulingError, match="steps to expand"):
        recurrence.occurrences(config, "web-shop", start=now, end=now + timedelta(days=1))
    assert time.perf_counter() - began < 2.0
