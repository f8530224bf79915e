"""The weekly CAB digest (issue 12, item 7): ``policy.digest: {rrule, channel}``.

At each occurrence of the RRULE (UTC) one message goes to the digest channel (default: approvals): pending
changes by priority, booked changes whose SLA falls due before their window, conflicts (bookings that overlap
on a system, or fall into a freeze declared after them) and freezes until the next occurrence, each change
with a link to its thread; "nothing pending" is said explicitly.

Exactly once per occurrence across replicas: the message is queued in the outbox under the key
``cab_digest:<occurrence>`` in the transaction that composed it; a second replica's insert does nothing and
logs nothing. An occurrence older than ``GRACE`` (the bot was down) is skipped, not posted late.

Priority, highest first: emergency class, then a known-exploited advisory, then the advisory's severity,
then the earliest SLA due date, then the oldest request.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations

from dateutil.rrule import rrulestr
from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks import cab_digest as blocks
from bot.config import SEVERITY_RANK, Config
from bot.slack import channel_posts
from bot.views import state_label
from bot.windows import blackouts
from bot.workflows import lifecycle
from storage import advisories, changes, windows
from storage.models import AdvisoryRecord, Change, ChangeClass

GRACE = timedelta(hours=6)
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
CLASS_RANK = {ChangeClass.EMERGENCY: 0}


def occurrences(config: Config, now: datetime) -> tuple[datetime, datetime] | None:
    """The latest occurrence at or before ``now`` (within ``GRACE``) and the next one after it."""
    rule = config.policy.digest
    if rule is None:
        return None
    recurrence = rrulestr(rule.rrule, dtstart=ANCHOR)
    last = recurrence.before(now, inc=True)
    if last is None or now - last > GRACE:
        return None
    following = recurrence.after(last) or last + timedelta(days=7)
    return last, following


def thread_url(change: Change) -> str | None:
    """A link to the change's thread (Slack resolves ``slack.com/archives`` to the workspace)."""
    if not change.channel or not change.thread_ts:
        return None
    return f"https://slack.com/archives/{change.channel}/p{change.thread_ts.replace('.', '')}"


def _priority(change: Change, records: list[AdvisoryRecord]) -> tuple[tuple[object, ...], str]:
    kev = any(r.known_exploited for r in records)
    severity = max((SEVERITY_RANK.get(r.severity, 0) for r in records), default=0)
    due = min((r.due for r in records if r.due is not None), default=None)
    far = datetime.max.replace(tzinfo=UTC)
    key = (CLASS_RANK.get(change.change_class, 1), 0 if kev else 1, -severity, due or far, change.created_at)
    words = [change.change_class.value]
    if records:
        words.append(max(records, key=lambda r: SEVERITY_RANK.get(r.severity, 0)).severity)
    if kev:
        words.append("KEV")
    if due is not None:
        words.append(f"due {due:%Y-%m-%d}")
    return key, ", ".join(words)


def _item(change: Change, label: str, detail: str = "") -> blocks.Item:
    return blocks.Item(change.key, change.title, state_label(change.state), label, thread_url(change), detail)


async def compose(session: AsyncSession, *, config: Config, occurrence: datetime, until: datetime) -> blocks.Digest:
    """Read what the digest says (pending, breaching, conflicts, freezes) as of ``occurrence``."""
    ranked = []
    for change in await changes.awaiting_approval(session):
        key, label = _priority(change, await advisories.linked_to_change(session, change.id))
        ranked.append((key, _item(change, label)))
    pending = [item for _, item in sorted(ranked, key=lambda pair: pair[0])]
    booked = await windows.occupying(session, systems=list(config.systems), after=occurrence)
    breaching = []
    for w in sorted(booked, key=lambda w: (w.start, w.id)):
        change = await lifecycle.load(session, w.change_id)
        records = await advisories.linked_to_change(session, change.id)
        late = [r for r in records if r.due is not None and r.due < w.start]
        if late:
            first = min(late, key=lambda r: r.due or w.start)
            _, label = _priority(change, records)
            detail = (
                f"{first.primary_id} due {first.due:%Y-%m-%d}, window {w.stage} starts {w.start:%Y-%m-%d %H:%M} UTC"
            )
            breaching.append(_item(change, label, detail))
    conflicts = []
    ahead = [w for w in booked if w.start < until]
    for a, b in combinations(sorted(ahead, key=lambda w: (w.start, w.id)), 2):
        shared = sorted(set(a.systems) & set(b.systems))
        if shared and a.start < b.end and b.start < a.end and a.change_id != b.change_id:
            conflicts.append(
                f"• CHG-{a.change_id} ({a.stage}) and CHG-{b.change_id} ({b.stage}) overlap on {', '.join(shared)} "
                f"around {max(a.start, b.start):%Y-%m-%d %H:%M} UTC"
            )
    for w in sorted(ahead, key=lambda w: (w.start, w.id)):  # a freeze declared after the booking
        for system in sorted(set(w.systems) & set(config.systems)):
            hit = next((p for p in blackouts(config, system) if p.start < w.end and w.start < p.end), None)
            if hit is not None:
                conflicts.append(
                    f"• CHG-{w.change_id} ({w.stage}) is booked on {system} during a freeze ({hit.reason}) "
                    f"at {w.start:%Y-%m-%d %H:%M} UTC"
                )
    freezes = []
    seen: set[tuple[datetime, datetime, str]] = set()
    for system in config.systems:
        for p in blackouts(config, system):
            if p.start < until and p.end > occurrence and (p.start, p.end, p.reason) not in seen:
                seen.add((p.start, p.end, p.reason))
                where = p.system or "all systems"
                freezes.append(f"• {where}: {p.start:%Y-%m-%d %H:%M} – {p.end:%Y-%m-%d %H:%M} UTC, {p.reason}")
    return blocks.Digest(occurrence, until, pending, breaching, conflicts, freezes)


async def post_due(session: AsyncSession, *, config: Config, now: datetime) -> bool:
    """Queue the digest of the current occurrence unless it was queued before (any replica); True if queued."""
    window = occurrences(config, now)
    if window is None or config.policy.digest is None:
        return False
    occurrence, until = window
    digest = await compose(session, config=config, occurrence=occurrence, until=until)
    text, body = blocks.render(digest)
    channel = config.policy.digest.channel or config.slack.approvals_channel
    key = f"cab_digest:{occurrence.isoformat()}"
    if not await channel_posts.post_later(session, key=key, channel=channel, text=text, blocks=body, now=now):
        return False
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor="patchwarden",
        action="cab_digest",
        occurrence=occurrence.isoformat(),
        channel=channel,
        pending=[i.key for i in digest.pending],
        breaching=[i.key for i in digest.breaching],
        conflicts=len(digest.conflicts),
        freezes=len(digest.freezes),
    )
    return True
