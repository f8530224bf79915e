"""Every scheduled job: plain async functions of ``Deps``, registered with APScheduler by ``bot.scheduler``.

Each job is an idempotent sweep over our own tables: a unit of work inside it is claimed with a
compare-and-set, so two replicas running the same job never do it twice, and a job missed while the process
slept simply runs at the next tick. ``table`` lists them in the order one tick runs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.blocks import auto_approval as auto_blocks
from bot.blocks import deployment as deployment_blocks
from bot.blocks import exception as exception_blocks
from bot.blocks.common import escape, mentions, slack_date
from bot.deps import Deps
from bot.errors import FeedError, UsageError
from bot.executors import processes
from bot.feeds.base import Feed
from bot.slack import advisory_posts as advisory_slack
from bot.slack import notify, outbox_sender, thread
from bot.workflows import advisories as advisory_flow
from bot.workflows import advisory_digest as digest
from bot.workflows import (
    advisory_posts,
    announcements,
    approval,
    audit_publish,
    auto_approval,
    cards,
    deploy_runs,
    due_windows,
    recovery,
    reminders,
    replay,
    sla,
)
from bot.workflows import exceptions as exception_flow
from storage import advisories as advisory_store
from storage import changes
from storage.models import Change

log = logging.getLogger(__name__)
SWEEP_EVERY = timedelta(minutes=1)
CARD_GRACE = timedelta(minutes=2)  # a card younger than this may still be on its way
CHECKPOINT_EVERY = timedelta(minutes=5)  # signs only once audit.checkpoint_interval has passed
AUDIT_PUBLISH_EVERY = timedelta(seconds=5)
REPLAY_PRUNE_EVERY = timedelta(hours=1)
OUTBOX_EVERY = timedelta(seconds=2)
OUTBOX_LEASE = outbox_sender.LEASE  # how long a post in flight is held before another process may take it
WINDOW_SWEEP_EVERY = timedelta(seconds=30)
ADVISORY_SWEEP_EVERY = timedelta(minutes=15)  # SLA reminders are about days: a quarter hour is prompt enough
Job = Callable[[Deps], Awaitable[object]]


async def run_sweep(deps: Deps) -> int:
    """Expire overdue approvals, remind approvers, post cards that never made it to Slack. Returns nudges sent."""
    async with deps.sessions.begin() as session:
        nudges = await reminders.sweep(session, config=deps.config, now=deps.clock.now())
        cardless = await changes.claim_cardless(
            session,
            channel=deps.config.slack.approvals_channel,
            created_before=deps.clock.now() - CARD_GRACE,
            reclaim_before=deps.clock.now() - 2 * CARD_GRACE,  # a claim its process died holding
        )
    for change_id in cardless:  # created while Slack was unreachable: post the card now
        await cards.post_card(deps, change_id)
    for nudge in nudges:
        change = nudge.change
        if nudge.kind == "expired":
            await cards.refresh_card(deps, change.id)
            await thread.say(
                deps,
                change,
                f":alarm_clock: {mentions([change.requester])} {change.key} expired: "
                f"it was not approved within {deps.config.policy.approval_ttl}. "
                "Request it again if it is still needed.",
            )
        elif nudge.kind == "reminder":
            deadline = change.approval_deadline
            until = f" before {slack_date(deadline)}" if deadline else ""
            await thread.say(
                deps,
                change,
                f":bell: Reminder: {change.key} still needs your decision{until}: {mentions(nudge.people)}",
            )
    return len(nudges)


async def run_checkpoint(deps: Deps) -> None:
    """Sign the control log's head and publish it (witnesses, audit channel, stream)."""
    await audit_publish.run_checkpoint(deps)


async def run_auto_approvals(deps: Deps) -> int:
    """Book, announce and apply the policy's auto-approvals (``policy.auto_approve``). Returns events."""
    async with deps.sessions.begin() as session:
        happened = await auto_approval.sweep(session, config=deps.config, now=deps.clock.now())
        notes = []
        for h in happened:
            progress = await approval.progress_of(session, config=deps.config, change=h.change, stage=h.stage)
            notes.append((h, mentions(sorted(progress.pending_people()))))
    for h, people in notes:
        change, row = h.change, h.row
        await cards.refresh_card(deps, change.id)
        if h.event is auto_approval.Event.VETO_OPEN:
            status = await auto_approval.status_of(row)
            value = auto_blocks.veto_value(change.id, h.stage, row.revision)
            text, blocks = auto_blocks.veto_open_note(status, change_key=change.key, value=value, people=people)
            await thread.say(deps, change, text, blocks=blocks)
        else:
            await thread.say(
                deps,
                change,
                f":white_check_mark: {mentions([change.requester])} {change.key} is approved for *{h.stage}* "
                f"by policy (_{escape(row.rule)}_); nobody vetoed. Next: `/patch schedule {change.key} {h.stage}`.",
            )
    return len(notes)


async def run_window_sweep(deps: Deps) -> tuple[int, int]:
    """Queue due window reminders (once each) and cancel bookings whose change moved on. Returns both counts."""
    async with deps.sessions.begin() as session:
        return await announcements.sweep_windows(session, config=deps.config, now=deps.clock.now())


async def run_recovery(deps: Deps, ids: Sequence[int] | None = None) -> int:
    """Close deployments interrupted by a crash or restart (or ``ids``, cut off at shutdown), and say so."""
    async with deps.sessions.begin() as session:
        closed = await recovery.close_interrupted(
            session, config=deps.config, executors=deps.executors, now=deps.clock.now(), ids=ids
        )
    for item in closed:
        dep, change = item.deployment, item.change
        await cards.refresh_card(deps, change.id)
        await thread.say(
            deps,
            change,
            f":warning: The {dep.stage} deployment of {change.key} on `{dep.system}` was interrupted: the bot "
            f"stopped while it ran (started {slack_date(dep.started_at)}), so its outcome is unknown. It is "
            f"marked failed and `{dep.system}` is unlocked. {mentions(sorted(set(owners_of(deps, change))))} "
            "please check the system (and roll back by hand if needed) before deploying again.",
        )
    return len(closed) + (await run_silent_runs(deps) if ids is None else 0)


async def run_silent_runs(deps: Deps) -> int:
    """Runs whose owner stopped beating: stop an orphan here, mark them interrupted, ask the owner (queued)."""
    async with deps.sessions.begin() as session:
        live = deps.deployments.ids_of(deps.deployments.tasks())
        found = await recovery.silent(session, config=deps.config, now=deps.clock.now(), live=live)
    asked = 0
    for dep in found:
        stopped = await asyncio.to_thread(processes.stop_orphan, owner=dep.owner, pgid=dep.pgid, run_id=dep.run_id)
        async with deps.sessions.begin() as session:
            change = await recovery.mark_interrupted(
                session, config=deps.config, dep=dep, now=deps.clock.now(), stopped=stopped
            )
        if change is not None:
            asked += 1
            await cards.refresh_card(deps, change.id)
    return asked


def owners_of(deps: Deps, change: Change) -> list[str]:
    """The owners of the change's systems, and its update officer."""
    return [deps.config.systems[s].owner for s in change.systems if s in deps.config.systems] + [change.officer]


async def run_due_windows(deps: Deps) -> list[asyncio.Task[Change]]:
    """Start due windows (claimed by compare-and-set) and handle missed ones; returns the started runs."""
    async with deps.sessions.begin() as session:
        ids = await due_windows.due(session, config=deps.config, now=deps.clock.now())
    tasks = []
    for window_id in ids:
        try:
            async with deps.sessions.begin() as session:
                action = await due_windows.handle_due(
                    session, config=deps.config, window_id=window_id, now=deps.clock.now()
                )
        except Exception:
            log.exception("due window %s could not be handled; the next sweep tries again", window_id)
            continue
        if action is None:
            continue
        if action.note and action.kind == "missed_ask":
            blocks = deployment_blocks.missed_blocks(
                window_id=action.window_id, change_key=action.change.key, text=action.note
            )
            await thread.say(deps, action.change, action.note, blocks=blocks)
        elif action.note:  # a refusal carries a note only the first time (see storage.windows.note_refusal_once)
            await thread.say(deps, action.change, action.note)
        if action.run is not None:
            tasks.append(deploy_runs.launch(deps, action.run))
    return tasks


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


async def run_exception_sweep(deps: Deps) -> int:
    """The scheduler's job: remind before an exception ends, expire it at its end; returns the nudges."""
    async with deps.sessions.begin() as session:
        nudges = await exception_flow.sweep(session, config=deps.config, now=deps.clock.now())
    for n in nudges:
        head = exception_blocks.summary(n.exception, n.record)
        if n.kind == "reminder":
            text = (
                f":bell: {head} ends soon. Today {escape(n.record.primary_id)} is "
                f"{exception_flow.risk_today(n.record)}. "
                f"{mentions(n.people)}: renew it with `/patch exception` (renewals so far: "
                f"{n.exception.renewals}), or patch."
            )
        else:
            text = f":alarm_clock: {head} has *expired*: the advisory is open again and its SLA restarted."
        if n.exception.channel and n.exception.message_ts:
            await thread.deliver(
                deps, channel=n.exception.channel, thread_ts=n.exception.message_ts, text=text,
                what=f"{n.kind} of exception {n.exception.id}",
            )  # fmt: skip
    return len(nudges)


async def run_replay_prune(deps: Deps) -> int:
    """Forget replay-protection keys older than a day (Slack refuses older signatures anyway)."""
    async with deps.sessions.begin() as session:
        return await replay.forget_old(session, now=deps.clock.now())


def table(deps: Deps) -> list[tuple[str, Job, timedelta]]:
    """Every periodic job as (fixed id, job, interval), in the order one tick should run them.

    What falls due first, then what it produces (deployments, announcements), the outbox last (the sandbox's
    skip-ahead runs them once, in this order)."""
    # One sender per process: it keeps the per-channel pacing between sweeps.
    sender = outbox_sender.OutboxSender(deps, lease=OUTBOX_LEASE)

    async def run_outbox(_deps: Deps) -> None:
        await sender.sweep()

    jobs: list[tuple[str, Job, timedelta]] = [
        ("sweep", run_sweep, SWEEP_EVERY),  # approval expiry and reminders, cards never posted
        ("auto_approvals", run_auto_approvals, SWEEP_EVERY),  # approve-after-N-days, veto windows
        ("window_sweep", run_window_sweep, WINDOW_SWEEP_EVERY),  # window reminders, orphaned bookings
        # due windows: each is claimed by compare-and-set, so replicas running this together deploy once
        ("due_windows", run_due_windows, SWEEP_EVERY),
        # deployments interrupted by a crash: looked for four times per heartbeat timeout
        ("recovery", run_recovery, min(SWEEP_EVERY, deps.config.policy.heartbeat_timeout / 4)),
        ("advisory_sweep", run_advisory_sweep, ADVISORY_SWEEP_EVERY),
        ("replay_prune", run_replay_prune, REPLAY_PRUNE_EVERY),  # old replay-protection keys
        ("exception_sweep", run_exception_sweep, ADVISORY_SWEEP_EVERY),  # exceptions reminded, expired
        ("checkpoint", run_checkpoint, CHECKPOINT_EVERY),
        ("audit_publish", audit_publish.run_publish, AUDIT_PUBLISH_EVERY),  # heads to witnesses, log to the SIEM
        ("outbox", run_outbox, OUTBOX_EVERY),
    ]
    if deps.feeds:
        jobs.insert(0, ("feeds_poll", run_feeds_poll, deps.config.advisories.poll_every))
    return jobs
