"""Value types every configuration model shares: durations, zones, Slack ids, e-mail addresses, ``Strict``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

_DURATION_PART = re.compile(r"(\d+)\s*([smhdw])")


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: object) -> timedelta:
    """Parse ``30m``, ``72h``, ``7d``, ``1h30m`` (or a timedelta / number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        try:
            return timedelta(seconds=value)
        except OverflowError as exc:
            raise ValueError(f"{value!r} is out of range for a duration") from exc
    if not isinstance(value, str):
        raise ValueError("a duration is written like 30m, 72h or 7d")
    text = value.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration; write it like 30m, 72h, 7d or 1h30m")
    total = timedelta()
    try:
        for number, unit in parts:
            total += timedelta(**{_UNITS[unit]: int(number)})
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{value!r} is out of range for a duration") from exc
    return total


def format_duration(value: timedelta) -> str:
    """The inverse of ``parse_duration`` for display: 72h, 1d2h, 45m."""
    seconds = int(value.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0m"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from exc
    return value


TimeZoneName = Annotated[str, BeforeValidator(lambda v: _check_timezone(str(v)))]


SlackUserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]


SlackChannelId = Annotated[str, Field(pattern=r"^[CGD][A-Z0-9]{2,}$")]


Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class Strict(BaseModel):
    """Base for every configuration model: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


EMAIL_PATTERN = r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$"


EmailAddress = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]


MailRecipient = Annotated[str, Field(pattern=EMAIL_PATTERN + r"|^[UW][A-Z0-9]{2,}$", max_length=254)]
