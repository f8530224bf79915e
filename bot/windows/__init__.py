"""Maintenance windows, blackouts and slot checking: pure logic, no database, no Slack.

Semantics (decided here; callers and messages rely on them):

* **Windows** are RFC 5545 recurrence rules expanded with dateutil in the system's time zone, as
  wall-clock times. Fields a rule leaves out come from a fixed anchor, Monday 2024-01-01 00:00 local
  (so ``FREQ=WEEKLY`` without ``BYDAY`` means Mondays, a missing ``BYMINUTE`` means :00, and INTERVAL
  and COUNT count from there) unless the rule has its own ``DTSTART`` line.
* **DST.** A window whose local start does not exist (spring forward) happens once, at the instant
  that local time denotes with the offset in force before the switch (02:30 Europe/Berlin on the last
  Sunday of March is 01:30 UTC, i.e. 03:30 CEST). A start that exists twice (fall back) happens once,
  at its first occurrence (``fold=0``). Durations are elapsed time. Nothing is skipped or doubled.
* **Blackouts** are half-open ``[start, end)``; naive times are in the system's zone, global ones in
  UTC. A slot that touches a blackout's edge does not overlap it.
* **Systems without windows** impose no window restriction (blackouts, notice and bookings still do).
* **Several systems:** a slot must lie inside a window of every system that has windows, outside the
  blackouts of all of them, and clear of bookings on any of them.
* **Emergency** bypasses windows and notice, never blackouts or other changes' bookings; a blackout is
  bypassed only with ``unsafe_ignore_blackouts=True``, which is logged. Past starts are always refused
  (at minute precision, so a start typed as the current minute is not "past").
* A slot from ``next_free_slots`` is a whole window occurrence (or its first ``duration``), never one
  clipped around a blackout or booking. Every slot it returns passes ``check_slot`` with the same
  arguments.
"""

from __future__ import annotations

from bot.windows.check import DEFAULT_DURATION, DEFAULT_HORIZON, check_slot, next_free_slots
from bot.windows.model import BlackoutPeriod, Booking, Slot, SlotRefusedError, SlotRule
from bot.windows.parse import parse_slot
from bot.windows.recurrence import (
    blackouts,
    describe_rule,
    describe_windows,
    format_moment,
    format_slot,
    occurrences,
)

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_HORIZON",
    "BlackoutPeriod",
    "Booking",
    "Slot",
    "SlotRefusedError",
    "SlotRule",
    "blackouts",
    "check_slot",
    "describe_rule",
    "describe_windows",
    "format_moment",
    "format_slot",
    "next_free_slots",
    "occurrences",
    "parse_slot",
]
