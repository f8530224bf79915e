"""Expansion of recurring maintenance windows and blackouts into UTC instants, and their wording.

Local wall-clock times become instants with ``zoneinfo`` and ``fold=0``, which gives exactly the
documented DST semantics (see the package docstring): a start that does not exist (spring forward) is
read with the offset in force before the switch, an ambiguous one (fall back) as its first occurrence.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rruleset, rrulestr

from bot.config import Blackout, Config, System, WindowRule, format_duration
from bot.errors import ConfigError, NotFoundError, SchedulingError
from bot.windows.model import BlackoutPeriod, Slot, aware_utc

# Fields a rule leaves out (weekday of a plain WEEKLY rule, minute, second, the phase of INTERVAL and
# the first of COUNT) come from DTSTART. A fixed anchor keeps them stable whatever range is queried; a
# Monday at midnight makes the defaults unsurprising. A rule may carry its own DTSTART line instead.
ANCHOR = datetime(2024, 1, 1, 0, 0)
# Local and UTC bounds differ by at most the zone's offset (< 1 day); widen queries so no edge is lost.
_MARGIN = timedelta(days=1)
# Every expansion is bounded: a rule that needs more steps than this for one query is refused (a
# COUNT=99999999 or a dense rule must not hold the event loop; config refuses sub-minute ones outright).
MAX_STEPS = 50_000
# Fixed-length periods a rule without COUNT or DTSTART may be re-anchored by (its phase stays the same),
# so that expanding near today does not walk every occurrence since the anchor.
_PERIODS = {"WEEKLY": timedelta(weeks=1), "DAILY": timedelta(days=1), "HOURLY": timedelta(hours=1)}
_PERIODS["MINUTELY"] = timedelta(minutes=1)
UTC_ZONE = ZoneInfo("UTC")

_DAYS = {
    "MO": "Monday",
    "TU": "Tuesday",
    "WE": "Wednesday",
    "TH": "Thursday",
    "FR": "Friday",
    "SA": "Saturday",
    "SU": "Sunday",
}
_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", -1: "last", -2: "second-to-last"}


def system_config(config: Config, name: str) -> System:
    """The named system, or ``NotFoundError`` naming the known ones."""
    try:
        return config.systems[name]
    except KeyError:
        known = ", ".join(sorted(config.systems))
        raise NotFoundError(f"unknown system {name!r} (known systems: {known})") from None


def local_to_utc(value: datetime, zone: ZoneInfo) -> datetime:
    """An aware UTC instant for ``value``; naive values are wall-clock times in ``zone`` (fold=0)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone, fold=0)
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=256)
def _parsed(text: str, anchor: datetime = ANCHOR) -> tuple[rrule | rruleset, bool]:
    """The parsed rule and whether it yields aware datetimes (a DTSTART with TZID or Z)."""
    try:
        parsed = rrulestr(text, dtstart=anchor)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"maintenance window rule {text!r} is not a valid RFC 5545 rule: {exc}") from exc
    first = next(iter(parsed), None)
    return parsed, first is not None and first.tzinfo is not None


def _anchor_near(text: str, lo: datetime) -> datetime:
    """ANCHOR moved forward by whole periods of the rule to just before ``lo`` (same phase), if allowed."""
    parts = _rrule_parts(text)
    period = _PERIODS.get(parts.get("FREQ", ""))
    if period is None or "COUNT" in parts or "DTSTART" in text.upper() or "\n" in text.strip():
        return ANCHOR
    try:
        step = period * max(1, int(parts.get("INTERVAL", "1") or "1"))
    except ValueError:
        return ANCHOR
    # whole periods keep the phase: a week keeps the anchor's weekday (and its parity for INTERVAL=2)
    whole = (lo - ANCHOR - timedelta(days=1)) // step  # a day of slack for BYxxx before the anchor's time
    return ANCHOR + step * whole if whole > 0 else ANCHOR


def _bounded_between(parsed: rrule | rruleset, lo: datetime, hi: datetime, *, text: str) -> list[datetime]:
    """``parsed.between(lo, hi, inc=True)`` in at most ``MAX_STEPS`` steps, else ``SchedulingError``."""
    found: list[datetime] = []
    for steps, value in enumerate(parsed):
        if value > hi:
            break
        if value >= lo:
            found.append(value)
        if steps >= MAX_STEPS:
            raise SchedulingError(
                f"window rule {text!r} needs more than {MAX_STEPS} steps to expand",
                user_message=f"The maintenance window rule `{text.strip()[:200]}` is too dense to expand (more "
                f"than {MAX_STEPS:,} occurrences to walk); ask an administrator to simplify it.",
            )
    return found


def _rule_starts(rule: WindowRule, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC starts of ``rule`` whose occurrence may overlap ``[start, end)`` (a superset; caller filters)."""
    lo, hi = start - rule.duration - _MARGIN, end + _MARGIN
    naive_lo = lo.astimezone(zone).replace(tzinfo=None)
    naive_hi = hi.astimezone(zone).replace(tzinfo=None)
    parsed, aware = _parsed(rule.rrule, _anchor_near(rule.rrule, naive_lo))
    if aware:
        found = _bounded_between(parsed, lo, hi, text=rule.rrule)
    else:
        found = _bounded_between(parsed, naive_lo, naive_hi, text=rule.rrule)
    return [local_to_utc(dt, zone) for dt in found]


def occurrences(config: Config, system: str, *, start: datetime, end: datetime) -> list[Slot]:
    """Maintenance window occurrences of one system overlapping ``[start, end)``, sorted, in UTC.

    Durations are elapsed time, so a 2h window that straddles a DST switch still lasts 2 hours. Two
    wall-clock starts that map to the same instant (an hourly rule over a spring-forward gap) give one
    occurrence, never two.
    """
    sys = system_config(config, system)
    zone = ZoneInfo(sys.timezone)
    start, end = aware_utc("start", start), aware_utc("end", end)
    found: set[Slot] = set()
    for rule in sys.maintenance_windows:
        for begin in _rule_starts(rule, zone, start, end):
            finish = begin + rule.duration
            if begin < end and finish > start:
                found.add(Slot(begin, finish))
    return sorted(found)


def _period(item: Blackout, zone: ZoneInfo, system: str | None) -> BlackoutPeriod:
    return BlackoutPeriod(
        start=local_to_utc(item.start, zone),
        end=local_to_utc(item.end, zone),
        reason=item.reason,
        system=system,
    )


def blackouts(config: Config, system: str) -> list[BlackoutPeriod]:
    """Global freezes (naive times in UTC) and the system's own (naive times in its zone), sorted."""
    sys = system_config(config, system)
    zone = ZoneInfo(sys.timezone)
    periods = [_period(item, UTC_ZONE, None) for item in config.blackouts]
    periods += [_period(item, zone, system) for item in sys.blackouts]
    return sorted(periods)


def _rrule_parts(text: str) -> dict[str, str]:
    line = text.strip()
    for candidate in text.splitlines():
        if candidate.strip().upper().startswith("RRULE:"):
            line = candidate.strip()[len("RRULE:") :]
    parts = {}
    for part in line.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            parts[key.strip().upper()] = value.strip().upper()
    return parts


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _ints(value: str | None, default: int) -> list[int]:
    return sorted({int(v) for v in value.split(",")}) if value else [default]


def _days(value: str) -> str | None:
    """``SA,SU`` -> ``Saturdays and Sundays``; ``1SU`` -> ``first Sunday``; ``None`` when unreadable."""
    plain, ordinal = [], []
    for code in value.split(","):
        name = _DAYS.get(code[-2:])
        number = code[:-2]
        if name is None:
            return None
        if not number:
            plain.append(name + "s")
        elif number.lstrip("+-").isdigit() and int(number) in _ORDINALS:
            ordinal.append(f"{_ORDINALS[int(number)]} {name}")
        else:
            return None
    if plain and ordinal:
        return None
    return _join(plain) if plain else _join(ordinal) + " of the month"


def _when(parts: dict[str, str]) -> str | None:
    freq, interval = parts.get("FREQ"), int(parts.get("INTERVAL", "1") or "1")
    extra = set(parts) - {"FREQ", "INTERVAL", "BYDAY", "BYHOUR", "BYMINUTE", "WKST", "BYMONTHDAY"}
    if extra:
        return None
    byday, bymonthday = parts.get("BYDAY"), parts.get("BYMONTHDAY")
    if freq == "DAILY" and not byday and not bymonthday:
        return "daily" if interval == 1 else f"every {interval} days"
    if freq in {"DAILY", "WEEKLY"} and not bymonthday:
        days = _days(byday) if byday else "Mondays"  # the anchor's weekday
        if days is None or "of the month" in days:
            return None
        return days if interval == 1 else f"every {interval} weeks, {days}"
    if freq == "MONTHLY":
        if byday and not bymonthday:
            days = _days(byday)
            if days is None or "of the month" not in days:
                return None
        elif bymonthday and not byday:
            days = f"day {_join(bymonthday.split(','))} of the month"
        else:
            days = "day 1 of the month"
        return days if interval == 1 else f"{days}, every {interval} months"
    return None


def describe_rule(rule: WindowRule) -> str:
    """Human text for messages, like ``Sundays 02:00, 2h``; unusual rules fall back to the raw rule."""
    parts = _rrule_parts(rule.rrule)
    duration = format_duration(rule.duration)
    try:
        when = _when(parts)
        times = [f"{h:02d}:{m:02d}" for h in _ints(parts.get("BYHOUR"), 0) for m in _ints(parts.get("BYMINUTE"), 0)]
    except ValueError:
        when = None
    if when is None or "DTSTART" in rule.rrule.upper():
        return f"{rule.rrule.strip()}, {duration}"
    clock = _join(times) if len(times) <= 4 else f"{times[0]} and {len(times) - 1} other times"
    return f"{when} {clock}, {duration}"


def describe_windows(system: System) -> str:
    """All of a system's windows in words, or a note that it has none."""
    if not system.maintenance_windows:
        return "no maintenance windows (any time)"
    return "; ".join(describe_rule(rule) for rule in system.maintenance_windows)


def format_slot(slot: Slot, timezone: str, *, year: bool = False) -> str:
    """``02:00–04:00 Sat 5 Dec (Europe/Berlin)``, or both dates when the slot crosses midnight."""
    zone = ZoneInfo(timezone)
    start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)

    def day(value: datetime) -> str:
        text = f"{value:%a} {value.day} {value:%b}"
        return f"{text} {value.year}" if year else text

    if start.date() == end.date():
        return f"{start:%H:%M}–{end:%H:%M} {day(start)} ({timezone})"
    return f"{start:%H:%M} {day(start)} – {end:%H:%M} {day(end)} ({timezone})"


def format_moment(moment: datetime, timezone: str) -> str:
    """``02:00 Sun 6 Dec (Europe/Berlin)``."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%H:%M} {local:%a} {local.day} {local:%b} ({timezone})"
