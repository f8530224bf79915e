"""The advisory jobs: polling the feeds, and the SLA sweep that posts, reminds and escalates."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bot.blocks.common import escape, mentions, slack_date
from bot.deps import Deps
from bot.errors import FeedError, UsageError
from bot.feeds.base import Feed
from bot.slack import advisory_posts as advisory_slack
from bot.slack import notify
from bot.workflows import advisories as advisory_flow
from bot.workflows import advisory_digest as digest
from bot.workflows import (
    advisory_posts,
    sla,
)
from storage import advisories as advisory_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    """How one feed's poll went."""

    changed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    error: str = ""


async def run_feeds_poll(
    deps: Deps, *, feeds: Mapping[str, Feed] | None = None, only: str | None = None, post: bool = True
) -> dict[str, PollOutcome]:
    """Poll the configured feeds (or ``only`` one), store each batch with its cursor, then post."""
    feeds = feeds if feeds is not None else deps.feeds
    if only is not None and only not in feeds:
        raise UsageError(
            f"unknown feed {only!r}",
            user_message=f"No feed {only!r} is configured; configured: {', '.join(sorted(feeds)) or 'none'}.",
        )
    outcomes: dict[str, PollOutcome] = {}
    for name, feed in feeds.items():
        if only is not None and name != only:
            continue
        async with deps.sessions.begin() as session:
            cursor = await advisory_store.feed_cursor(session, name)
        try:
            batch = await feed.poll(cursor=cursor)  # outside any transaction: it may take minutes
        except FeedError as exc:
            log.warning("feed %s: %s", name, exc)
            async with deps.sessions.begin() as session:
                await advisory_store.save_feed_state(
                    session, name, cursor=None, now=deps.clock.now(), error=exc.user_message
                )
            outcomes[name] = PollOutcome(error=exc.user_message)
            continue
        async with deps.sessions.begin() as session:
            result = await advisory_flow.ingest(session, config=deps.config, batch=batch, now=deps.clock.now())
            await digest.plan(session, config=deps.config, result=result, now=deps.clock.now())
            await advisory_store.save_feed_state(session, name, cursor=batch.cursor, now=deps.clock.now())
        outcomes[name] = PollOutcome(len(result.changed) + result.scores, result.unchanged, len(result.quarantined))
        if post:
            await advisory_posts.publish_all(deps, result.changed)
    if post:
        await advisory_posts.report_quarantine(deps)
    return outcomes


async def run_advisory_sweep(deps: Deps) -> int:
    """Post advisories not yet posted, then un-snooze, follow changes, remind and escalate; returns nudges."""
    async with deps.sessions.begin() as session:
        pending: list[int] = []
        async for page in advisory_store.record_pages(session, statuses=list(sla.ACTIVE), with_matches=True):
            pending.extend(r.id for r in page if r.channel is None and r.digested_at is None)
        digested = await digest.plan_pending(session, config=deps.config, record_ids=pending, now=deps.clock.now())
        pending = [i for i in pending if i not in digested]
        nudges = await sla.sweep(session, config=deps.config, now=deps.clock.now())
    await advisory_posts.publish_all(deps, [advisory_flow.Ingested(i, True) for i in pending])
    unposted = [n for n in nudges if n.kind in ("overdue", "reminder") and n.record.message_ts is None]
    grouped = await _nudge_unposted(deps, unposted)
    for nudge in nudges:
        record = nudge.record
        if nudge.record.id in grouped:
            continue
        if nudge.kind in ("unsnoozed", "remediated", "reopened", "remediation_pending"):
            await advisory_posts.publish(deps, record.id)
        due = slack_date(record.due) if record.due else "—"
        if nudge.kind == "reminder":
            text = f":bell: {escape(record.primary_id)} is due {due}: {mentions(nudge.people)}, please remediate."
        elif nudge.kind == "overdue":
            text = (
                f":rotating_light: {escape(record.primary_id)} is *overdue* (due {due}) on "
                f"{', '.join(f'`{s}`' for s in nudge.systems)}. Escalating to {mentions(nudge.people)}."
            )
        elif nudge.kind == "remediation_pending":
            text = (
                f":hourglass: CHG-{record.change_id} for {escape(record.primary_id)} completed; the fix counts once "
                "the system's inventory shows it (`patchwarden inventory import` or the executor's SBOM)."
            )
        elif nudge.kind == "unsnoozed":
            text = f":alarm_clock: The snooze of {escape(record.primary_id)} is over; it is open again."
        elif nudge.kind == "remediated":
            text = f":white_check_mark: {escape(record.primary_id)} is remediated by CHG-{record.change_id}."
        else:
            text = (
                f":leftwards_arrow_with_hook: The change for {escape(record.primary_id)} ended unfinished; open again."
            )
        await advisory_slack.say(deps, record, text)
    return len(nudges)


async def _nudge_unposted(deps: Deps, nudges: list[sla.Nudge]) -> set[int]:
    """Remind and escalate records without a post of their own (digested) together: one message per system."""
    channel = deps.config.slack.advisories_channel
    if channel is None or not nudges:
        return set()
    async with deps.sessions.begin() as session:
        tiers = {
            m.advisory_id: m.priority for m in await advisory_store.matches(session, [n.record.id for n in nudges])
        }
    groups: dict[tuple[str, str], list[sla.Nudge]] = {}
    for n in nudges:
        groups.setdefault((n.kind, n.systems[0] if n.systems else ""), []).append(n)
    for (kind, system), group in groups.items():
        people = list(dict.fromkeys(p for n in group for p in n.people))
        items = [(n.record.primary_id, tiers.get(n.record.id, "")) for n in group]
        due = min(n.record.due for n in group if n.record.due is not None) if kind == "reminder" else None
        text = digest.nudge_text(deps.config, kind=kind, system=system, items=items, people=people, due=due)
        await notify.post(deps, channel=channel, text=text)
    return {n.record.id for n in nudges}
