"""Every scheduled job: plain async functions of ``Deps``, registered with APScheduler by ``bot.scheduler``.

Each job is an idempotent sweep over our own tables: a unit of work inside it is claimed with a
compare-and-set, so two replicas running the same job never do it twice, and a job missed while the process
slept simply runs at the next tick. ``table`` lists them in the order one tick runs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from bot.blocks import auto_approval as auto_blocks
from bot.blocks import deployment as deployment_blocks
from bot.blocks import exception as exception_blocks
from bot.blocks.common import escape, mentions, slack_date
from bot.deps import Deps
from bot.executors import processes
from bot.jobs.advisories import PollOutcome, run_advisory_sweep, run_feeds_poll
from bot.slack import notify, outbox_sender, thread
from bot.workflows import (
    announcements,
    approval,
    audit_publish,
    auto_approval,
    cab_digest,
    cards,
    chasing,
    deploy_runs,
    due_windows,
    people_runs,
    recovery,
    reminders,
    replay,
)
from bot.workflows import exceptions as exception_flow
from storage import changes
from storage.models import Change

log = logging.getLogger(__name__)
__all__ = ["PollOutcome", "run_advisory_sweep", "run_feeds_poll"]
SWEEP_EVERY = timedelta(minutes=1)
CARD_GRACE = timedelta(minutes=2)  # a card younger than this may still be on its way
CHECKPOINT_EVERY = timedelta(minutes=5)  # signs only once audit.checkpoint_interval has passed
AUDIT_PUBLISH_EVERY = timedelta(seconds=5)
REPLAY_PRUNE_EVERY = timedelta(hours=1)
OUTBOX_EVERY = timedelta(seconds=2)
CARD_SYNC_EVERY = timedelta(seconds=15)  # cards left behind by a crash between a commit and chat.update
CARD_SYNC_GRACE = timedelta(seconds=30)  # a younger move's own card refresh may still be on its way
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


async def run_escalations(deps: Deps) -> int:
    """Remind the next person in the escalation order of stages waiting too long (each step once)."""
    async with deps.sessions.begin() as session:
        return await chasing.escalate(session, config=deps.config, now=deps.clock.now())


async def run_cab_digest(deps: Deps) -> bool:
    """Queue the CAB digest of the current occurrence of ``policy.digest`` (once across replicas)."""
    async with deps.sessions.begin() as session:
        return await cab_digest.post_due(session, config=deps.config, now=deps.clock.now())


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
        elif action.note and action.ask:  # prod_presence: required — the owners check in (thread and DM)
            blocks = deployment_blocks.presence_blocks(window_id=action.window_id, text=action.note)
            await thread.say(deps, action.change, action.note, blocks=blocks)
            for owner in action.ask:
                await notify.direct(deps, user=owner, text=action.note, blocks=blocks)
        elif action.note:  # a refusal carries a note only the first time (see storage.windows.note_refusal_once)
            await thread.say(deps, action.change, action.note)
        for owner in action.tell:  # prod_presence: notify
            await notify.direct(
                deps,
                user=owner,
                text=f":rocket: The prod deployment of {action.change.key} starts now; follow its thread.",
            )
        if action.run is not None:
            tasks.append(deploy_runs.launch(deps, action.run))
    return tasks


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


async def run_docs_reminders(deps: Deps) -> int:
    """Remind documentation still pending ``policy.docs_remind_after`` after completion (once each)."""
    return await people_runs.remind_docs(deps)


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

    checked = [0]  # the log position the card sweep has looked through (per process; a new leader rescans)

    async def run_card_sync(d: Deps) -> int:
        checked[0], redrawn = await cards.resync_behind(d, after=checked[0], grace=CARD_SYNC_GRACE)
        return redrawn

    jobs: list[tuple[str, Job, timedelta]] = [
        ("sweep", run_sweep, SWEEP_EVERY),  # approval expiry and reminders, cards never posted
        ("auto_approvals", run_auto_approvals, SWEEP_EVERY),  # approve-after-N-days, veto windows
        ("escalations", run_escalations, SWEEP_EVERY),  # policy.escalate_after: fallback group, then managers
        ("cab_digest", run_cab_digest, SWEEP_EVERY),  # policy.digest: queued in the outbox per occurrence
        ("window_sweep", run_window_sweep, WINDOW_SWEEP_EVERY),  # window reminders, orphaned bookings
        # due windows: each is claimed by compare-and-set, so replicas running this together deploy once
        ("due_windows", run_due_windows, SWEEP_EVERY),
        # deployments interrupted by a crash: looked for four times per heartbeat timeout
        ("recovery", run_recovery, min(SWEEP_EVERY, deps.config.policy.heartbeat_timeout / 4)),
        ("advisory_sweep", run_advisory_sweep, ADVISORY_SWEEP_EVERY),
        ("replay_prune", run_replay_prune, REPLAY_PRUNE_EVERY),
        (
            "docs_reminders",
            run_docs_reminders,
            ADVISORY_SWEEP_EVERY,
        ),  # documentation pending after completion  # old replay-protection keys
        ("exception_sweep", run_exception_sweep, ADVISORY_SWEEP_EVERY),  # exceptions reminded, expired
        ("card_sync", run_card_sync, CARD_SYNC_EVERY),  # cards a crash left behind their change's log
        ("checkpoint", run_checkpoint, CHECKPOINT_EVERY),
        ("audit_publish", audit_publish.run_publish, AUDIT_PUBLISH_EVERY),  # heads to witnesses, log to the SIEM
        ("outbox", run_outbox, OUTBOX_EVERY),
    ]
    if deps.feeds:
        jobs.insert(0, ("feeds_poll", run_feeds_poll, deps.config.advisories.poll_every))
    return jobs
