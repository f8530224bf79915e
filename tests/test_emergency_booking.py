"""An emergency booking skips windows and notice, so an operator (or an emergency approver) must make it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conftest import OTHER, OWNER, Harness
from test_scheduling import all_windows, approved_change, audit_actions, command, schedule_config, set_clock

from bot.config import parse_config


async def test_the_requester_or_owner_cannot_book_an_emergency_but_an_emergency_approver_can(
    harness_factory: Any,
) -> None:
    base = schedule_config().model_dump(mode="json")
    base["groups"]["oncall"] = [OTHER]
    base["policy"]["emergency_approvers"] = "oncall"
    h: Harness = await harness_factory(parse_config(base))
    now = set_clock(h, "2026-12-03 10:00")
    await approved_change(h, change_class="emergency", officer=OWNER)
    when = (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    refused = await command(h, f"schedule CHG-1 prod {when} 1h --emergency db down", user=OWNER)
    assert "an operator must make it" in refused["text"], refused
    assert await all_windows(h) == []
    booked = await command(h, f"schedule CHG-1 prod {when} 1h --emergency db down", user=OTHER)
    assert "booked for" in booked["text"], booked
    [bypass] = [d for a, d in await audit_actions(h) if a == "emergency_bypass"]
    assert bypass["booked_as"] == "emergency approver"
