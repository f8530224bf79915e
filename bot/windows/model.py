"""Value types of scheduling: slots, bookings, blackout periods, and the refusal error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.errors import SchedulingError


def aware_utc(name: str, value: datetime) -> datetime:
    """``value`` as UTC; raises ``ValueError`` for a naive datetime."""
    # Naive datetimes are refused rather than guessed: a wrong guess moves a window by hours.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True, order=True)
class Slot:
    """A maintenance slot ``[start, end)``; both ends are normalised to aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", aware_utc("Slot.start", self.start))
        object.__setattr__(self, "end", aware_utc("Slot.end", self.end))
        if self.end <= self.start:
            raise ValueError(f"a slot must end after it starts ({self.start} .. {self.end})")

    @property
    def duration(self) -> timedelta:
        """Elapsed time from start to end."""
        return self.end - self.start


@dataclass(frozen=True)
class Booking:
    """A window already booked by another change, on the systems it affects."""

    start: datetime
    end: datetime
    change_key: str
    systems: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", aware_utc("Booking.start", self.start))
        object.__setattr__(self, "end", aware_utc("Booking.end", self.end))
        object.__setattr__(self, "systems", frozenset(self.systems))
        if self.end <= self.start:
            raise ValueError(f"booking of {self.change_key} must end after it starts")


@dataclass(frozen=True, order=True)
class BlackoutPeriod:
    """A freeze ``[start, end)`` in aware UTC; ``system`` is ``None`` for a global freeze."""

    start: datetime
    end: datetime
    reason: str
    system: str | None


class SlotRule(StrEnum):
    """The scheduling rule that refused a slot (machine names, stable for callers and logs)."""

    PAST = "past"
    NOTICE = "notice"
    OUTSIDE_WINDOW = "outside_window"
    BLACKOUT = "blackout"
    CONFLICT = "conflict"


class SlotRefusedError(SchedulingError):
    """A requested slot breaks a scheduling rule.

    ``rule`` names the rule (a ``SlotRule``, equal to its string value), ``suggestion`` is the nearest
    valid slot of the same duration (at or after the requested start, else before it) or ``None``, and
    ``blocker`` is the blackout reason or the other change's key when one of those refused the slot.
    """

    def __init__(
        self,
        message: str,
        *,
        rule: SlotRule,
        suggestion: Slot | None = None,
        blocker: str | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message, user_message=user_message)
        self.rule = rule
        self.suggestion = suggestion
        self.blocker = blocker
