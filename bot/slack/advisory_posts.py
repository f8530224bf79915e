"""Advisories in Slack, after the transaction has committed: posts, in-place updates, thread notes, SLA nudges.

Also the two jobs the scheduler (and ``patchwarden feeds poll``) run: ``run_feeds_poll`` and
``run_advisory_sweep``. Posting is idempotent: the first post of an advisory is claimed by setting its
``channel`` from NULL (compare-and-set), its ts is stored, and a re-run of the same batch changes no record,
so it posts nothing new. Never called inside a database transaction.
"""

from __future__ import annotations

import logging
import re
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
        v = await triage.view(session, advisory_id)
    config, record = deps.config, v.record
    if record.message_ts and record.channel:
        await deps.client.chat_update(
            channel=record.channel, ts=record.message_ts, text=blocks.fallback_text(v), blocks=blocks.post(config, v)
        )
        if notes:
            await _post_text(
                deps, record, f":arrows_counterclockwise: {escape(record.primary_id)}: {escape('; '.join(notes))}."
            )
        return
    channel = config.slack.advisories_channel
    if channel is None or record.channel is not None or not triage.should_post(config, v):
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
        if not item.matched and not everything:
            continue  # nothing to post or update (most of a KEV catalogue): skip loading it again
        try:
            await publish(deps, item.record_id, notes=() if item.created else item.notes)
        except SlackApiError as exc:
            log.warning("advisory %s: posting failed: %s", item.record_id, exc.response.get("error"))


# a local path (not the path part of a URL): only its last part is shown in Slack
_LOCAL_PATH = re.compile(r"(?<![\w:/.])(?:~|\.{1,2})?/(?:[^\s'\"`:/]+/)*([^\s'\"`:/]+)")


def no_paths(text: str) -> str:
    """``text`` with server paths cut to their file names (Slack readers need not see the server's layout)."""
    return _LOCAL_PATH.sub(r"\1", text)


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
            f":warning: Feed *{escape(row.source)}* refused document `{escape(no_paths(row.document)[:200])}`: "
            f"{escape(no_paths(row.reason)[:1000])}. It was not used; the rest of the feed was read."
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
    return registry.create_all(deps.config, http=HttpSettings(outbound_allow=tuple(deps.config.outbound.allow)))


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
            await store.save_feed_state(session, name, cursor=batch.cursor, now=deps.clock.now())
        outcomes[name] = PollOutcome(len(result.changed), result.unchanged, len(result.quarantined))
        if post:
            await publish_all(deps, result.changed)
    if post:
        await report_quarantine(deps)
    return outcomes


async def run_advisory_sweep(deps: Deps) -> int:
    """Post advisories not yet posted, then un-snooze, follow changes, remind and escalate; returns nudges."""
    async with deps.sessions.begin() as session:
        pending = [
            r.id
            for r in await store.list_records(session, statuses=list(sla.ACTIVE), with_matches=True)
            if r.channel is None
        ]
        nudges = await sla.sweep(session, config=deps.config, now=deps.clock.now())
    await publish_all(deps, [flow.Ingested(i, True) for i in pending])
    for nudge in nudges:
        record = nudge.record
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
