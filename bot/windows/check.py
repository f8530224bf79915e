"""Checking a requested slot and finding free ones against windows, blackouts, notice and bookings.

Both entry points build one ``_Rules`` per call: bookings are filtered to the affected systems and sorted
once, then every overlap question is a bisect plus a prefix maximum, so 10,000 bookings stay cheap.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate, islice

from bot.config import Config, format_duration
from bot.errors import InputError
from bot.windows.model import BlackoutPeriod, Booking, Slot, SlotRefusedError, SlotRule, aware_utc
from bot.windows.recurrence import (
    blackouts,
    describe_windows,
    format_moment,
    format_slot,
    occurrences,
    system_config,
)

logger = logging.getLogger(__name__)

DEFAULT_HORIZON = timedelta(days=120)
# Slot length proposed where no window gives one (emergency, or systems without windows).
DEFAULT_DURATION = timedelta(hours=1)
# Proposed starts derived from "now" are rounded up to this step, so nobody is offered 21:19:23.
_STEP = timedelta(minutes=5)
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)


def _ceil(value: datetime, step: timedelta) -> datetime:
    remainder = (value - _EPOCH) % step
    return value if not remainder else value + (step - remainder)


def _merge(slots: Sequence[Slot]) -> list[Slot]:
    """Union of sorted slots; touching or overlapping ones become one."""
    merged: list[Slot] = []
    for slot in slots:
        if merged and slot.start <= merged[-1].end:
            if slot.end > merged[-1].end:
                merged[-1] = Slot(merged[-1].start, slot.end)
        else:
            merged.append(slot)
    return merged


def _longest_end(starts: Sequence[datetime], max_ends: Sequence[datetime], moment: datetime) -> datetime | None:
    """End of the longest-running occurrence containing ``moment`` (sorted starts, prefix-max ends)."""
    index = bisect_right(starts, moment) - 1
    if index >= 0 and max_ends[index] > moment:
        return max_ends[index]
    return None


def _covers(union: Sequence[Slot], starts: Sequence[datetime], start: datetime, end: datetime) -> bool:
    """Whether one interval of the (disjoint, sorted) ``union`` contains ``[start, end)``."""
    index = bisect_right(starts, start) - 1
    return index >= 0 and union[index].end >= end


class _Rules:
    """Everything a check consults, prepared once for one set of systems and one moment."""

    def __init__(
        self,
        config: Config,
        systems: Sequence[str],
        *,
        now: datetime,
        bookings: Sequence[Booking],
        notice: timedelta,
        emergency: bool,
        exclude_change: str | None,
        ignore_blackouts: bool,
    ) -> None:
        names = tuple(dict.fromkeys(systems))
        if not names:
            raise InputError("a change must name at least one system to be scheduled")
        self.config = config
        self.systems = names
        self.zone = system_config(config, names[0]).timezone
        self.now = aware_utc("now", now)
        # Minute precision: a start typed as "now" (21:19) must not count as past at 21:19:23.
        self.not_before = self.now.replace(second=0, microsecond=0)
        self.notice = timedelta() if emergency else notice
        self.emergency = emergency
        self.windowed = [name for name in names if config.systems[name].maintenance_windows]
        # Emergency bypasses windows; systems without windows impose none (see the package docstring).
        self.unrestricted = emergency or not self.windowed
        self.earliest = _ceil(max(self.not_before, self.now + self.notice), _STEP)
        self.ignore_blackouts = ignore_blackouts
        periods: set[BlackoutPeriod] = set()
        if not ignore_blackouts:
            for name in names:
                periods.update(blackouts(config, name))
        self.blackouts = sorted(periods)
        wanted = frozenset(names)
        relevant = sorted(
            (b for b in bookings if b.change_key != exclude_change and not b.systems.isdisjoint(wanted)),
            key=lambda b: (b.start, b.end),
        )
        self.bookings = relevant
        self.booking_starts = [b.start for b in relevant]
        # max end of bookings[0..i]: any booking starting before t with a later end overlaps t.
        self.booking_max_end = list(accumulate((b.end for b in relevant), max))

    def default_duration(self) -> timedelta:
        rules = [r for n in self.systems for r in self.config.systems[n].maintenance_windows]
        return min((r.duration for r in rules), default=DEFAULT_DURATION)

    def blackout_at(self, start: datetime, end: datetime) -> BlackoutPeriod | None:
        return next((p for p in self.blackouts if p.start < end and p.end > start), None)

    def booking_at(self, start: datetime, end: datetime) -> Booking | None:
        index = bisect_left(self.booking_starts, end)
        if index == 0 or self.booking_max_end[index - 1] <= start:
            return None
        # One exists; walk back to the latest-starting one (usually the first step).
        for booking in reversed(self.bookings[:index]):
            if booking.end > start:
                return booking
        return None  # pragma: no cover - unreachable given the prefix maximum

    def blocked_until(self, start: datetime, end: datetime) -> datetime | None:
        """Latest end among blackouts and bookings overlapping ``[start, end)``; every start before it
        (and at or after ``start``) is blocked too, so a search may jump straight there."""
        ends = [p.end for p in self.blackouts if p.start < end and p.end > start]
        index = bisect_left(self.booking_starts, end)
        if index and self.booking_max_end[index - 1] > start:
            ends.append(self.booking_max_end[index - 1])
        return max(ends, default=None)

    def outside_window(self, slot: Slot) -> str | None:
        """The first system whose windows do not contain the whole slot."""
        for name in self.windowed:
            union = _merge(occurrences(self.config, name, start=slot.start, end=slot.end))
            if not _covers(union, [w.start for w in union], slot.start, slot.end):
                return name
        return None

    def search(self, *, after: datetime, until: datetime, duration: timedelta | None) -> Iterator[Slot]:
        """Valid slots starting in ``[max(after, earliest), until)``, in order."""
        low = max(after, self.earliest)
        if self.unrestricted:
            yield from self._search_anytime(low, until, duration or self.default_duration())
        else:
            yield from self._search_windows(low, until, duration)

    def _search_anytime(self, low: datetime, until: datetime, duration: timedelta) -> Iterator[Slot]:
        moment = low
        while moment < until:
            blocked = self.blocked_until(moment, moment + duration)
            if blocked is None:
                yield Slot(moment, moment + duration)
                moment += duration
            else:
                moment = blocked

    def _search_windows(self, low: datetime, until: datetime, duration: timedelta | None) -> Iterator[Slot]:
        longest = max(r.duration for n in self.windowed for r in self.config.systems[n].maintenance_windows)
        # Per system: occurrences with a prefix maximum of their ends (the longest single occurrence
        # containing a moment gives a whole-window slot) and their union (a slot of a given duration may
        # span adjacent occurrences).
        single: dict[str, tuple[list[datetime], list[datetime]]] = {}
        merged: dict[str, tuple[list[Slot], list[datetime]]] = {}
        candidates: set[datetime] = set()
        for name in self.windowed:
            found = occurrences(self.config, name, start=low, end=until + longest)
            single[name] = ([o.start for o in found], list(accumulate((o.end for o in found), max)))
            union = _merge(found)
            merged[name] = (union, [w.start for w in union])
            candidates.update(o.start for o in found if low <= o.start < until)
        for moment in sorted(candidates):
            if duration is None:
                ends = [_longest_end(*single[n], moment) for n in self.windowed]
                if any(e is None for e in ends):
                    continue
                end = min(e for e in ends if e is not None)
            else:
                end = moment + duration
                if any(not _covers(*merged[n], moment, end) for n in self.windowed):
                    continue
            if self.blocked_until(moment, end) is None:
                yield Slot(moment, end)


def _refusal(rules: _Rules, slot: Slot) -> tuple[SlotRule, str, str | None] | None:
    """The first rule the slot breaks, with words for a person and the blocker's name."""
    when = format_slot(slot, rules.zone, year=slot.start.year != rules.now.year)
    if slot.start < rules.not_before:
        return SlotRule.PAST, f"{when} is in the past.", None
    if rules.notice and slot.start < rules.now + rules.notice:
        return (
            SlotRule.NOTICE,
            f"{when} is too soon: windows on these systems must be announced at least "
            f"{format_duration(rules.notice)} ahead, so the earliest start is "
            f"{format_moment(rules.earliest, rules.zone)}. Only an emergency change may skip the notice.",
            None,
        )
    if not rules.unrestricted:
        name = rules.outside_window(slot)
        if name is not None:
            system = system_config(rules.config, name)
            local = format_slot(slot, system.timezone, year=slot.start.year != rules.now.year)
            return (
                SlotRule.OUTSIDE_WINDOW,
                f"{local} is outside {name}'s maintenance windows ({describe_windows(system)}).",
                None,
            )
    period = rules.blackout_at(slot.start, slot.end)
    if period is not None:
        scope = "the global" if period.system is None else f"{period.system}'s"
        # Shown in the zone it was written in, so the operator recognises the configured times.
        zone = "UTC" if period.system is None else system_config(rules.config, period.system).timezone
        span = format_slot(Slot(period.start, period.end), zone, year=True)
        return (
            SlotRule.BLACKOUT,
            f"{when} falls in {scope} freeze “{period.reason}” ({span}).",
            period.reason,
        )
    booking = rules.booking_at(slot.start, slot.end)
    if booking is not None:
        shared = ", ".join(sorted(booking.systems & frozenset(rules.systems)))
        theirs = format_slot(Slot(booking.start, booking.end), rules.zone)
        return (
            SlotRule.CONFLICT,
            f"{when} overlaps {booking.change_key}, already booked on {shared} for {theirs}.",
            booking.change_key,
        )
    return None


def _suggest(rules: _Rules, slot: Slot, horizon: timedelta) -> Slot | None:
    after = next(iter(rules.search(after=slot.start, until=slot.start + horizon, duration=slot.duration)), None)
    if after is not None:
        return after
    earlier = deque(rules.search(after=slot.start - horizon, until=slot.start, duration=slot.duration), maxlen=1)
    return earlier[0] if earlier else None


def check_slot(
    config: Config,
    systems: Sequence[str],
    slot: Slot,
    *,
    now: datetime,
    bookings: Sequence[Booking],
    notice: timedelta,
    emergency: bool = False,
    exclude_change: str | None = None,
    unsafe_ignore_blackouts: bool = False,
    horizon: timedelta = DEFAULT_HORIZON,
) -> None:
    """Raise ``SlotRefusedError`` unless ``slot`` is valid for every system; return ``None`` if it is.

    Rules, in the order they are reported: not in the past; at least ``notice`` ahead (not for
    emergencies); inside a maintenance window of every system that has windows (not for emergencies);
    outside every global and system blackout (unless ``unsafe_ignore_blackouts``, which is logged); no
    overlap with another change's booking on a shared system (bookings of ``exclude_change`` are
    ignored, for rescheduling). The error suggests the nearest valid slot of the same duration.
    """
    rules = _Rules(
        config,
        systems,
        now=now,
        bookings=bookings,
        notice=notice,
        emergency=emergency,
        exclude_change=exclude_change,
        ignore_blackouts=unsafe_ignore_blackouts,
    )
    if unsafe_ignore_blackouts:
        logger.warning("blackouts bypassed for a slot on %s at %s", ", ".join(rules.systems), slot.start)
    refusal = _refusal(rules, slot)
    if refusal is None:
        return
    rule, words, blocker = refusal
    suggestion = _suggest(rules, slot, horizon)
    if suggestion is not None:
        advice = f" The nearest free slot is {format_slot(suggestion, rules.zone)}."
    else:
        days = horizon.days
        advice = f" No free slot of {format_duration(slot.duration)} was found within {days} days of it."
    raise SlotRefusedError(
        f"slot {slot.start.isoformat()}..{slot.end.isoformat()} refused by rule {rule}",
        rule=rule,
        suggestion=suggestion,
        blocker=blocker,
        user_message=words + advice,
    )


def next_free_slots(
    config: Config,
    systems: Sequence[str],
    *,
    now: datetime,
    bookings: Sequence[Booking],
    notice: timedelta,
    count: int = 3,
    duration: timedelta | None = None,
    emergency: bool = False,
    horizon: timedelta = DEFAULT_HORIZON,
    exclude_change: str | None = None,
    unsafe_ignore_blackouts: bool = False,
) -> list[Slot]:
    """The next ``count`` slots valid for all ``systems`` (fewer if the horizon runs out).

    A slot is a whole window occurrence (intersected across systems), or its first ``duration``; it is
    never clipped around a blackout or booking. Emergency changes (and systems without windows) get the
    earliest free times instead, back to back, ``duration`` long (default: the shortest window, or 1h).
    """
    if duration is not None and duration <= timedelta():
        raise InputError(f"a window must last longer than zero (got {format_duration(duration)})")
    rules = _Rules(
        config,
        systems,
        now=now,
        bookings=bookings,
        notice=notice,
        emergency=emergency,
        exclude_change=exclude_change,
        ignore_blackouts=unsafe_ignore_blackouts,
    )
    found = rules.search(after=rules.earliest, until=rules.now + horizon, duration=duration)
    return list(islice(found, max(count, 0)))
