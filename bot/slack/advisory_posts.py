"""Advisories in Slack, after the transaction has committed: posts, in-place updates, thread notes, SLA nudges.

Also the two jobs the scheduler (and ``patchwarden feeds poll``) run: ``run_feeds_poll`` and
``run_advisory_sweep``. Posting is idempotent: the first post of an advisory is claimed by setting its
``channel`` from NULL (compare-and-set), its ts is stored, and a re-run of the same batch changes no record,
so it posts nothing new. Never called inside a database transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk.errors import SlackApiError

from bot.blocks import advisory as blocks
from bot.blocks.common import escape, mentions, slack_date
from bot.deps import Deps
from bot.errors import FeedError, UsageError
from bot.feeds import registry
from bot.feeds.base import Feed
from bot.feeds.http import HttpSettings
from bot.workflows import advisories as flow
from bot.workflows import advisory_digest as digest
from bot.workflows import advisory_triage as triage
from bot.workflows import sla
from storage import advisories as store
from storage.models import AdvisoryRecord

log = logging.getLogger(__name__)
SWEEP_EVERY = timedelta(minutes=15)  # SLA reminders are about days: a quarter hour is prompt enough


@dataclass(frozen=True)
class PollOutcome:
    """How one feed's poll went."""

    changed: int = 0
    unchanged: int = 0
    quarantined: int = 0
    error: str = ""


async def _post_text(deps: Deps, record: AdvisoryRecord, text: str) -> None:
    """Say something in the advisory's thread, or top-level in the advisories channel before it has a post."""
    channel = record.channel or deps.config.slack.advisories_channel
    if channel is None:
        log.info("advisory %s: %s (no advisories channel configured)", record.primary_id, text)
        return
    await deps.client.chat_postMessage(channel=channel, thread_ts=record.message_ts, text=text, unfurl_links=False)


async def publish(deps: Deps, advisory_id: int, *, notes: tuple[str, ...] = ()) -> None:
    """Post the advisory if it should be and is not yet; else update its post in place and note changes."""
    async with deps.sessions.begin() as session:
        v = await triage.view(session, advisory_id, config=deps.config)
    config, record = deps.config, v.record
    if record.message_ts and record.channel:
        await deps.client.chat_update(
            channel=record.channel, ts=record.message_ts, text=blocks.fallback_text(v), blocks=blocks.post(config, v)
        )
        if notes:
            await _post_text(
                deps, record, f":arrows_counterclockwise: {escape(record.primary_id)}: {'; '.join(notes)}."
            )
        return
    channel = config.slack.advisories_channel
    if channel is None or record.channel is not None or record.digested_at is not None:
        return  # posted already, or carried by its system's digest
    if not triage.should_post(config, v):
        return
    async with deps.sessions.begin() as session:
        claimed = await store.claim_field(session, advisory_id, "channel", channel)
    if not claimed:
        return  # another replica (or an earlier run) posts it
    try:
        resp = await deps.client.chat_postMessage(
            channel=channel, text=blocks.fallback_text(v), blocks=blocks.post(config, v), unfurl_links=False
        )
    except Exception:
        async with deps.sessions.begin() as session:  # release the claim so the next sweep retries
            await store.set_fields(session, advisory_id, channel=None)
        raise
    async with deps.sessions.begin() as session:
        await store.set_fields(session, advisory_id, message_ts=str(resp["ts"]))


async def publish_all(deps: Deps, changed: list[flow.Ingested]) -> None:
    """Publish every changed record; one failure is logged and does not stop the others."""
    everything = deps.config.advisories.post_unmatched_critical
    for item in changed:
        if item.digested:
            continue  # its system's digest carries it
        if not item.matched and not everything:
            continue  # nothing to post or update (most of a KEV catalogue): skip loading it again
        try:
            await publish(deps, item.record_id, notes=() if item.created else item.notes)
        except SlackApiError as exc:
            log.warning("advisory %s: posting failed: %s", item.record_id, exc.response.get("error"))


async def report_quarantine(deps: Deps) -> int:
    """Report each newly quarantined document once (advisories channel, or the log); returns how many."""
    async with deps.sessions.begin() as session:
        rows = await store.unreported_quarantine(session)
    reported = 0
    for row in rows:
        async with deps.sessions.begin() as session:
            if not await store.claim_quarantine_report(session, row.id):
                continue
        text = (
            f":warning: Feed *{escape(row.source)}* refused document `{escape(row.document[:200])}`: "
            f"{escape(row.reason[:1000])}. It was not used; the rest of the feed was read."
        )
        channel = deps.config.slack.advisories_channel
        if channel is None:
            log.warning("quarantined: feed %s document %s: %s", row.source, row.document, row.reason)
        else:
            await deps.client.chat_postMessage(channel=channel, text=text, unfurl_links=False)
        reported += 1
    return reported


def create_feeds(deps: Deps) -> dict[str, Feed]:
    """The configured feeds (ConfigError for unknown ones: fail closed at startup)."""
    return registry.create_all(deps.config, http=HttpSettings())


async def run_feeds_poll(
    deps: Deps, *, feeds: Mapping[str, Feed] | None = None, only: str | None = None, post: bool = True
) -> dict[str, PollOutcome]:
    """Poll the configured feeds (or ``only`` one), store each batch with its cursor, then post."""
    feeds = feeds if feeds is not None else create_feeds(deps)
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
            cursor = await store.feed_cursor(session, name)
        try:
            batch = await feed.poll(cursor=cursor)  # outside any transaction: it may take minutes
        except FeedError as exc:
            log.warning("feed %s: %s", name, exc)
            async with deps.sessions.begin() as session:
                await store.save_feed_state(session, name, cursor=None, now=deps.clock.now(), error=exc.user_message)
            outcomes[name] = PollOutcome(error=exc.user_message)
            continue
        async with deps.sessions.begin() as session:
            result = await flow.ingest(session, config=deps.config, batch=batch, now=deps.clock.now())
            await digest.plan(session, config=deps.config, result=result, now=deps.clock.now())
            await store.save_feed_state(session, name, cursor=batch.cursor, now=deps.clock.now())
        outcomes[name] = PollOutcome(len(result.changed) + result.scores, result.unchanged, len(result.quarantined))
        if post:
            await publish_all(deps, result.changed)
    if post:
        await report_quarantine(deps)
    return outcomes


async def run_advisory_sweep(deps: Deps) -> int:
    """Post advisories not yet posted, then un-snooze, follow changes, remind and escalate; returns nudges."""
    async with deps.sessions.begin() as session:
        pending: list[int] = []
        async for page in store.record_pages(session, statuses=list(sla.ACTIVE), with_matches=True):
            pending.extend(r.id for r in page if r.channel is None and r.digested_at is None)
        digested = await digest.plan_pending(session, config=deps.config, record_ids=pending, now=deps.clock.now())
        pending = [i for i in pending if i not in digested]
        nudges = await sla.sweep(session, config=deps.config, now=deps.clock.now())
    await publish_all(deps, [flow.Ingested(i, True) for i in pending])
    unposted = [n for n in nudges if n.kind in ("overdue", "reminder") and n.record.message_ts is None]
    grouped = await _nudge_unposted(deps, unposted)
    for nudge in nudges:
        record = nudge.record
        if nudge.record.id in grouped:
            continue
        if nudge.kind in ("unsnoozed", "remediated", "reopened"):
            await publish(deps, record.id)
        due = slack_date(record.due) if record.due else "—"
        if nudge.kind == "reminder":
            text = f":bell: {escape(record.primary_id)} is due {due}: {mentions(nudge.people)}, please remediate."
        elif nudge.kind == "overdue":
            text = (
                f":rotating_light: {escape(record.primary_id)} is *overdue* (due {due}) on "
                f"{', '.join(f'`{s}`' for s in nudge.systems)}. Escalating to {mentions(nudge.people)}."
            )
        elif nudge.kind == "unsnoozed":
            text = f":alarm_clock: The snooze of {escape(record.primary_id)} is over; it is open again."
        elif nudge.kind == "remediated":
            text = f":white_check_mark: {escape(record.primary_id)} is remediated by CHG-{record.change_id}."
        else:
            text = (
                f":leftwards_arrow_with_hook: The change for {escape(record.primary_id)} ended unfinished; open again."
            )
        await _post_text(deps, record, text)
    return len(nudges)


async def _nudge_unposted(deps: Deps, nudges: list[sla.Nudge]) -> set[int]:
    """Remind and escalate records without a post of their own (digested) together: one message per system."""
    channel = deps.config.slack.advisories_channel
    if channel is None or not nudges:
        return set()
    async with deps.sessions.begin() as session:
        tiers = {m.advisory_id: m.priority for m in await store.matches(session, [n.record.id for n in nudges])}
    groups: dict[tuple[str, str], list[sla.Nudge]] = {}
    for n in nudges:
        groups.setdefault((n.kind, n.systems[0] if n.systems else ""), []).append(n)
    for (kind, system), group in groups.items():
        people = list(dict.fromkeys(p for n in group for p in n.people))
        items = [(n.record.primary_id, tiers.get(n.record.id, "")) for n in group]
        due = min(n.record.due for n in group if n.record.due is not None) if kind == "reminder" else None
        text = digest.nudge_text(deps.config, kind=kind, system=system, items=items, people=people, due=due)
        await deps.client.chat_postMessage(channel=channel, text=text, unfurl_links=False)
    return {n.record.id for n in nudges}
