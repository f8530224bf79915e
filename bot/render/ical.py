"""The iCalendar feed (``GET /calendar.ics``, ``/calendar/<system>.ics``): booked windows and blackouts.

Events carry the system's own time zone (``DTSTART;TZID=Europe/Berlin``) with a matching VTIMEZONE, so
a subscriber's calendar shows the wall-clock time the owners planned, across DST switches. Global
blackouts and windows of several systems in different zones are given in UTC. UIDs are stable (window id,
or a hash of a blackout's system, times and reason), so a calendar app updates events instead of
duplicating them when it re-reads the feed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from icalendar import Calendar, Event

from bot import crypto
from bot.config import Config
from bot.deps import Deps
from bot.windows import BlackoutPeriod, blackouts
from storage import overview
from storage.models import Change, Window

UID_DOMAIN = "patchwarden"
PAST = timedelta(days=30)
FUTURE = timedelta(days=180)


def _zone_of(config: Config, systems: list[str]) -> ZoneInfo:
    zones = {config.systems[s].timezone for s in systems if s in config.systems}
    return ZoneInfo(zones.pop()) if len(zones) == 1 else ZoneInfo("UTC")


def window_event(config: Config, window: Window, change: Change, *, stamp: datetime) -> Event:
    """One booked window as an event, in the zone of its system(s)."""
    systems = list(window.systems)
    zone = _zone_of(config, systems)
    summary = f"{change.key} {window.stage}: {change.title}"
    description = (
        f"Change {change.key} ({window.stage} stage) on {', '.join(systems)}.\n"
        f"Window state: {window.state.value}. Change state: {change.state.value}."
    )
    event = Event.new(
        uid=f"window-{window.id}@{UID_DOMAIN}",
        summary=summary[:250],
        description=description,
        start=window.start.astimezone(zone),
        end=window.end.astimezone(zone),
        stamp=stamp,
        categories=["maintenance", window.stage],
    )
    event.add("location", ", ".join(systems))
    return event


def _blackout_uid(period: BlackoutPeriod) -> str:
    key = f"{period.system or '*'}|{period.start.isoformat()}|{period.end.isoformat()}|{period.reason}"
    return f"blackout-{hashlib.sha256(key.encode()).hexdigest()[:24]}@{UID_DOMAIN}"


def blackout_event(config: Config, period: BlackoutPeriod, *, stamp: datetime) -> Event:
    """One blackout (freeze) as an all-system or per-system event."""
    zone = _zone_of(config, [period.system]) if period.system else ZoneInfo("UTC")
    where = period.system or "all systems"
    event = Event.new(
        uid=_blackout_uid(period),
        summary=f"Blackout ({where}): {period.reason}"[:250],
        description=f"No changes on {where}: {period.reason}",
        start=period.start.astimezone(zone),
        end=period.end.astimezone(zone),
        stamp=stamp,
        categories=["blackout"],
    )
    event.add("transp", "OPAQUE")
    return event


def build_feed(
    config: Config,
    *,
    windows: list[tuple[Window, Change]],
    system: str | None,
    now: datetime,
) -> bytes:
    """The feed as bytes (``text/calendar``): windows given, plus every blackout of the systems shown."""
    name = f"patchwarden: {system}" if system else "patchwarden: all systems"
    cal = Calendar.new(prodid="-//patchwarden//maintenance calendar//EN", name=name)
    for window, change in windows:
        cal.add_component(window_event(config, window, change, stamp=window.booked_at))
    periods: dict[str, BlackoutPeriod] = {}
    for name_ in [system] if system else sorted(config.systems):
        for period in blackouts(config, name_):
            if period.end >= now - PAST:
                periods.setdefault(_blackout_uid(period), period)
    for period in sorted(periods.values()):
        cal.add_component(blackout_event(config, period, stamp=now))
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


async def feed(deps: Deps, system: str | None) -> bytes:
    """The feed for one system (or all) from 30 days ago to 180 days ahead."""
    now = deps.clock.now()
    async with deps.sessions.begin() as session:
        windows = await overview.windows_between(
            session, start=now - PAST, end=now + FUTURE, systems=[system] if system else None
        )
    return build_feed(deps.config, windows=windows, system=system, now=now)


def routes(deps: Deps) -> list[web.RouteDef]:
    """``GET /calendar.ics`` and ``GET /calendar/<system>.ics`` (404 for an unknown system)."""

    token = deps.settings.calendar_token

    async def handle_calendar_feed(request: web.Request) -> web.Response:
        # A calendar app subscribes by URL only, so the secret travels in it (like a "secret iCal address").
        if token is not None and not crypto.hmac_equal(request.query.get("token", ""), token.get_secret_value()):
            raise web.HTTPNotFound(text="no such calendar")  # 404, not 401: do not confirm the feed exists
        system = request.match_info.get("system")
        if system is not None and system not in deps.config.systems:
            raise web.HTTPNotFound(text=f"no system named {system!r}")
        body = await feed(deps, system)
        return web.Response(body=body, content_type="text/calendar", charset="utf-8")

    return [
        web.get("/calendar.ics", handle_calendar_feed),
        web.get(r"/calendar/{system:[a-z0-9][a-z0-9_.-]*}.ics", handle_calendar_feed),
    ]
