"""The only module that imports apscheduler. The scheduler is an alarm clock; the database is the truth.

Jobs are idempotent sweeps over our own tables with a fixed id, ``coalesce=True`` and a generous
``misfire_grace_time``: a sweep missed while the process slept simply runs at the next tick, and each
unit of work inside it is claimed with a compare-and-set, so two replicas never do it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.blocks.common import mentions, slack_date
from bot.commands import deploy
from bot.deps import Deps
from bot.slack import advisory_posts, notify, outbox_sender
from bot.workflows import announcements, recovery, reminders, replay
from bot.workflows import audit as audit_flow
from storage import changes
from storage.models import Change

log = logging.getLogger(__name__)
Scheduler = AsyncIOScheduler  # for type annotations elsewhere, without importing apscheduler there
SWEEP_EVERY = timedelta(minutes=1)
CARD_GRACE = timedelta(minutes=2)  # a card younger than this may still be on its way
CHECKPOINT_EVERY = timedelta(hours=1)
OUTBOX_EVERY = timedelta(seconds=2)
WINDOW_SWEEP_EVERY = timedelta(seconds=30)


async def run_sweep(deps: Deps) -> int:
    """Expire overdue approvals, remind approvers, post cards that never made it to Slack. Returns nudges sent."""
    async with deps.sessions.begin() as session:
        nudges = await reminders.sweep(session, config=deps.config, now=deps.clock.now())
        cardless = await changes.claim_cardless(
            session, channel=deps.config.slack.approvals_channel, created_before=deps.clock.now() - CARD_GRACE
        )
    for change_id in cardless:  # created while Slack was unreachable: post the card now
        await notify.post_card(deps, change_id)
    for nudge in nudges:
        change = nudge.change
        if nudge.kind == "expired":
            await notify.refresh_card(deps, change.id)
            await notify.thread(
                deps,
                change,
                f":alarm_clock: {mentions([change.requester])} {change.key} expired: "
                f"it was not approved within {deps.config.policy.approval_ttl}. "
                "Request it again if it is still needed.",
            )
        elif nudge.kind == "reminder":
            deadline = change.approval_deadline
            until = f" before {slack_date(deadline)}" if deadline else ""
            await notify.thread(
                deps,
                change,
                f":bell: Reminder: {change.key} still needs your decision{until}: {mentions(nudge.people)}",
            )
    return len(nudges)


async def run_checkpoint(deps: Deps) -> None:
    """Write a signed checkpoint of the control log and post it to the audit channel if configured."""
    if deps.signer is None:
        return
    async with deps.sessions.begin() as session:
        cp = await audit_flow.write_checkpoint(session, signer=deps.signer, now=deps.clock.now())
    if cp is not None and deps.config.slack.audit_channel:
        await deps.client.chat_postMessage(
            channel=deps.config.slack.audit_channel,
            text=f"Control-log checkpoint: entry {cp.seq} hash `{cp.hash}` signed by key `{cp.key_id}` "
            f"(signature `{cp.signature}`). Keep this message: it proves the log's length.",
        )


async def run_window_sweep(deps: Deps) -> tuple[int, int]:
    """Queue due window reminders (once each) and cancel bookings whose change moved on. Returns both counts."""
    async with deps.sessions.begin() as session:
        return await announcements.sweep_windows(session, config=deps.config, now=deps.clock.now())


async def run_recovery(deps: Deps) -> int:
    """Close deployments interrupted by a crash or restart, and say so in their threads."""
    async with deps.sessions.begin() as session:
        closed = await recovery.close_interrupted(session, config=deps.config, now=deps.clock.now())
    for item in closed:
        dep, change = item.deployment, item.change
        await notify.refresh_card(deps, change.id)
        await notify.thread(
            deps,
            change,
            f":warning: The {dep.stage} deployment of {change.key} on `{dep.system}` was interrupted: the bot "
            f"stopped while it ran (started {slack_date(dep.started_at)}), so its outcome is unknown. It is "
            f"marked failed and `{dep.system}` is unlocked. {mentions(sorted(set(owners_of(deps, change))))} "
            "please check the system (and roll back by hand if needed) before deploying again.",
        )
    return len(closed)


def owners_of(deps: Deps, change: Change) -> list[str]:
    """The owners of the change's systems, and its update officer."""
    return [deps.config.systems[s].owner for s in change.systems if s in deps.config.systems] + [change.officer]


def create_scheduler(deps: Deps) -> AsyncIOScheduler:
    """An AsyncIOScheduler with the periodic sweeps (not started)."""
    scheduler = AsyncIOScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
    )
    # One sender per process: it keeps the per-channel pacing between sweeps.
    sender = outbox_sender.OutboxSender(deps)

    async def run_outbox(_deps: Deps) -> None:
        await sender.sweep()

    feeds = advisory_posts.create_feeds(deps)  # created now: an unknown feed stops startup

    async def run_feeds_poll(d: Deps) -> None:
        await advisory_posts.run_feeds_poll(d, feeds=feeds)

    async def run_replay_prune(d: Deps) -> None:
        async with d.sessions.begin() as session:
            await replay.forget_old(session, now=d.clock.now())

    # In the order one tick should run them (the sandbox's skip-ahead runs them once, in this order):
    # what falls due first, then what it produces (deployments, announcements), the outbox last.
    jobs: list[tuple[str, Callable[[Deps], Awaitable[object]], timedelta]] = [
        ("sweep", run_sweep, SWEEP_EVERY),  # approval expiry and reminders, cards never posted
        ("window_sweep", run_window_sweep, WINDOW_SWEEP_EVERY),  # window reminders, orphaned bookings
        # due windows: each is claimed by compare-and-set, so replicas running this together deploy once
        ("due_windows", deploy.run_due_windows, SWEEP_EVERY),
        ("recovery", run_recovery, SWEEP_EVERY),  # deployments interrupted by a crash
        ("advisory_sweep", advisory_posts.run_advisory_sweep, advisory_posts.SWEEP_EVERY),
        ("checkpoint", run_checkpoint, CHECKPOINT_EVERY),
        ("replay_prune", run_replay_prune, timedelta(hours=1)),  # old replay-protection keys
        ("outbox", run_outbox, OUTBOX_EVERY),
    ]
    if feeds:
        jobs.insert(0, ("feeds_poll", run_feeds_poll, deps.config.advisories.poll_every))
    for job_id, fn, every in jobs:
        scheduler.add_job(
            _safe(fn), "interval", args=[deps], id=job_id, seconds=every.total_seconds(), replace_existing=True
        )
    return scheduler


async def run_jobs_now(scheduler: AsyncIOScheduler) -> None:
    """Run every periodic job once, right now, in registration order (the sandbox's "skip ahead" button).

    The very jobs the scheduler runs, not copies: what the sandbox shows is what production does."""
    for job in scheduler.get_jobs():
        await job.func(*job.args)


def _safe(fn: Callable[[Deps], Awaitable[object]]) -> Callable[[Deps], Awaitable[None]]:
    """Log a failing job instead of letting it kill the scheduler; it runs again at the next tick."""

    async def wrapper(deps: Deps) -> None:
        try:
            await fn(deps)
        except Exception:
            log.exception("scheduled job %s failed; it runs again at the next tick", fn.__name__)

    wrapper.__name__ = fn.__name__
    return wrapper
