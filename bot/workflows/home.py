"""App Home: what a person's tab shows, read in one short transaction, and who needs a fresh one."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from bot.blocks import home as home_blocks
from bot.config import Config
from bot.deps import Deps
from bot.slack import home as home_slack
from bot.views import ChangeSnapshot
from bot.windows import occurrences
from bot.workflows import views
from storage import overview
from storage.models import WindowState

log = logging.getLogger(__name__)
HORIZON = timedelta(days=14)
PUBLISH_AT_ONCE = 8  # views.publish calls in flight per pass (Tier 4: 100+ per minute)
UPCOMING = frozenset({WindowState.BOOKED, WindowState.STARTED, WindowState.AWAITING_DECISION})


def systems_of(config: Config, user: str) -> list[str] | None:
    """The systems a person looks after (owner or stakeholder); None (= all) for the fallback group."""
    if user in config.group(config.policy.fallback):
        return None
    return sorted(n for n, s in config.systems.items() if user == s.owner or user in s.stakeholders)


async def load_home(deps: Deps, user: str) -> home_blocks.HomeData:
    """Read everything the Home tab shows for ``user`` in one short transaction."""
    return (await load_homes(deps, [user]))[0]


async def load_homes(deps: Deps, users: list[str]) -> list[home_blocks.HomeData]:
    """Read the Home tabs of ``users``: the pending approvals of all of them in one transaction (worked out
    once), then each person's own rows in a short transaction of their own (a pass over many people must not
    hold SQLite's write lock for all of them at once)."""
    config, now = deps.config, deps.clock.now()
    async with deps.sessions.read() as session:
        pending = await views.pending_by_user(session, config=config, users=users)
    out = []
    for user in users:
        systems = systems_of(config, user)
        async with deps.sessions.read() as session:
            mine = await overview.open_changes(session, involving=user)
            windows = await overview.windows_between(
                session, start=now, end=now + HORIZON, systems=systems, states=UPCOMING
            )
            overdue = await overview.overdue_advisories(session, now=now, systems=systems)
        out.append(
            home_blocks.HomeData(
                user=user,
                pending=sorted(pending[user], key=lambda s: s.change.id),
                mine=mine,
                windows=windows,
                next_windows=next_windows(config, systems, now=now),
                overdue=[(r.system, r.advisory) for r in overdue],
            )
        )
    return out


def next_windows(config: Config, systems: list[str] | None, *, now: datetime) -> list[home_blocks.NextWindow]:
    """The next maintenance window of each of ``systems`` (None: all) within the horizon."""
    found = []
    for name in systems if systems is not None else sorted(config.systems):
        upcoming = occurrences(config, name, start=now, end=now + HORIZON)
        if upcoming:
            found.append(home_blocks.NextWindow(name, upcoming[0].start, upcoming[0].end))
    return found


async def refresh_home(deps: Deps, user: str) -> None:
    """Re-publish ``user``'s Home tab. Failures are logged, never raised: Home is a convenience view."""
    await refresh_homes(deps, [user])


async def refresh_homes(deps: Deps, users: list[str]) -> None:
    """Re-publish the Home tabs of ``users`` (read together, published side by side, PUBLISH_AT_ONCE at a time).
    Failures are logged, never raised: Home is a convenience view."""
    try:
        homes = await load_homes(deps, users)
    except Exception:
        log.exception("homes of %s not read", ", ".join(users[:5]))
        return
    gate = asyncio.Semaphore(PUBLISH_AT_ONCE)

    async def publish(data: home_blocks.HomeData) -> None:
        async with gate:
            try:
                await home_slack.publish(deps, data)
            except Exception:
                log.exception("home of %s not published", data.user)

    await asyncio.gather(*(publish(data) for data in homes))


def people_of(config: Config, snap: ChangeSnapshot) -> set[str]:
    """Everyone whose Home shows this change: requester, editor, officer, operator, owners, approvers."""
    c = snap.change
    people = {c.requester, c.last_editor, c.officer, *(p for p in [c.operator] if p)}
    people |= {config.systems[s].owner for s in c.systems if s in config.systems}
    people |= {a.user_id for a in snap.approvals}
    if snap.progress is not None:
        people |= set(snap.progress.pending_people())
    return people


def refresh_involved(deps: Deps, snap: ChangeSnapshot) -> None:
    """Queue a Home refresh for everyone involved in the change (coalesced, off the click's path)."""

    async def publish(users: list[str]) -> None:
        await refresh_homes(deps, users)

    deps.homes.mark_many(people_of(deps.config, snap), publish)
