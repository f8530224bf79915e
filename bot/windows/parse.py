"""Parsing a slot typed by a person: ``2026-12-06 02:00 [2h]`` or ``2026-12-06T02:00+01:00 90m``."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.config import format_duration, parse_duration
from bot.errors import InputError
from bot.windows.model import Slot
from bot.windows.recurrence import local_to_utc

# Longer than a week is not a maintenance window but a project; it also keeps datetimes in range.
MAX_DURATION = timedelta(days=7)


def _usage(timezone: str) -> str:
    return (
        f"Write the start as 2026-12-06 02:00 (local time in {timezone}) or with an offset like "
        "2026-12-06T02:00+01:00, optionally followed by a duration like 2h or 90m."
    )


def parse_slot(text: str, *, timezone: str, default_duration: timedelta) -> Slot:
    """Parse a start (local time of ``timezone`` unless it has an offset) and optional duration.

    A local time that does not exist (spring forward) is read with the offset before the switch, an
    ambiguous one (fall back) as its first occurrence, like window starts; give an offset to pick the
    other. Raises ``InputError`` with the accepted forms when the text does not parse.
    """
    tokens = text.split()
    if len(tokens) >= 2 and "T" not in tokens[0].upper():
        stamp, rest = f"{tokens[0]}T{tokens[1]}", tokens[2:]
    else:
        stamp, rest = (tokens[0], tokens[1:]) if tokens else ("", [])
    if not stamp or len(rest) > 1 or "T" not in stamp.upper():
        raise InputError(f"{text.strip()!r} is not a date and time. {_usage(timezone)}")
    try:
        start = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise InputError(f"{stamp.replace('T', ' ')!r} is not a date and time. {_usage(timezone)}") from exc
    try:
        duration = parse_duration(rest[0]) if rest else default_duration
    except ValueError as exc:
        raise InputError(f"{rest[0]!r} is not a duration; write it like 2h, 90m or 1h30m.") from exc
    if not timedelta() < duration <= MAX_DURATION:
        raise InputError(
            f"a window must last more than 0m and at most {format_duration(MAX_DURATION)} "
            f"(got {format_duration(duration)})."
        )
    try:
        begin = local_to_utc(start, ZoneInfo(timezone))
        return Slot(begin, begin + duration)
    except OverflowError as exc:
        raise InputError(f"{stamp.replace('T', ' ')!r} is out of range. {_usage(timezone)}") from exc
