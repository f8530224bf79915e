"""App Home: what a person's tab shows, read in one short transaction, and who needs a fresh one."""

from __future__ import annotations

import logging
from datetime import timedelta

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
UPCOMING = frozenset({WindowState.BOOKED, WindowState.STARTED, WindowState.AWAITING_DECISION})


def systems_of(config: Config, user: str) -> list[str] | None:
    """The systems a person looks after (owner or stakeholder); None (= all) for the fallback group."""
    if user in config.group(config.policy.fallback):
        return None
    return sorted(n for n, s in config.systems.items() if user == s.owner or user in s.stakeholders)


async def load_home(deps: Deps, user: str) -> home_blocks.HomeData:
    """Read everything the Home tab shows for ``user`` in one short transaction."""
    config, now = deps.config, deps.clock.now()
    systems = systems_of(config, user)
    async with deps.sessions.begin() as session:
        pending = await views.pending_for(session, config=config, user=user)
        mine = await overview.open_changes(session, involving=user)
        windows = await overview.windows_between(
            session, start=now, end=now + HORIZON, systems=systems, states=UPCOMING
        )
        overdue = await overview.overdue_advisories(session, now=now, systems=systems)
    next_windows = []
    for name in systems if systems is not None else sorted(config.systems):
        upcoming = occurrences(config, name, start=now, end=now + HORIZON)
        if upcoming:
            next_windows.append(home_blocks.NextWindow(name, upcoming[0].start, upcoming[0].end))
    return home_blocks.HomeData(
        user=user,
        pending=sorted(pending, key=lambda s: s.change.id),
        mine=mine,
        windows=windows,
        next_windows=next_windows,
        overdue=[(r.system, r.advisory) for r in overdue],
    )


async def refresh_home(deps: Deps, user: str) -> None:
    """Re-publish ``user``'s Home tab. Failures are logged, never raised: Home is a convenience view."""
    try:
        await home_slack.publish(deps, await load_home(deps, user))
    except Exception:
        log.exception("home of %s not published", user)


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

    async def publish(user: str) -> None:
        await refresh_home(deps, user)

    deps.homes.mark(people_of(deps.config, snap), publish)
