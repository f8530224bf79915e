"""Publishing advisories: post once (claimed by compare-and-set), update in place, note changes, report quarantine.

Posting is idempotent: the first post of an advisory is claimed by setting its ``channel`` from NULL
(compare-and-set), its ts is stored, and a re-run of the same batch changes no record, so it posts nothing
new. Never called inside a database transaction; Slack is reached through ``bot.slack.advisory_posts``.
"""

from __future__ import annotations

import logging
import re

from slack_sdk.errors import SlackApiError

from bot.advisories.model import Advisory
from bot.blocks.common import escape
from bot.deps import Deps
from bot.feeds.base import FeedBatch
from bot.slack import advisory_posts as slack_posts
from bot.slack import thread
from bot.workflows import advisories as flow
from bot.workflows import advisory_triage as triage
from bot.workflows import lifecycle
from storage import advisories as store

log = logging.getLogger(__name__)


async def publish(deps: Deps, advisory_id: int, *, notes: tuple[str, ...] = ()) -> None:
    """Post the advisory if it should be and is not yet; else update its post in place and note changes."""
    async with deps.sessions.begin() as session:
        v = await triage.view(session, advisory_id, config=deps.config)
    config, record = deps.config, v.record
    if record.message_ts and record.channel:
        await slack_posts.update(deps, v)
        if notes:
            await slack_posts.say(
                deps, record, f":arrows_counterclockwise: {escape(record.primary_id)}: {escape('; '.join(notes))}."
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
        ts = await slack_posts.post(deps, channel=channel, view=v)
    except Exception:
        async with deps.sessions.begin() as session:  # release the claim so the next sweep retries
            await store.set_fields(session, advisory_id, channel=None)
        raise
    async with deps.sessions.begin() as session:
        await store.set_fields(session, advisory_id, message_ts=ts)


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
            await thread.deliver(deps, channel=channel, text=text, what="quarantine report")
        reported += 1
    return reported


async def add_manual(deps: Deps, *, advisory: Advisory, actor: str) -> None:
    """A person's advisory (the manual form): stored like a feed's, logged as theirs, then published."""
    now = deps.clock.now()
    async with deps.sessions.begin() as session:
        result = await flow.ingest(session, config=deps.config, batch=FeedBatch(advisories=(advisory,)), now=now)
        await lifecycle.log(
            session, config=deps.config, now=now, actor=actor, action="advisory_added", advisory=advisory.id
        )
    await publish_all(deps, result.changed)
