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

from bot import advisory_notify, notify, outbox_sender
from bot.blocks.common import mentions, slack_date
from bot.commands import deploy
from bot.deps import Deps
from bot.workflows import announcements, recovery, reminders
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
    scheduler.add_job(
        _safe(run_sweep),
        "interval",
        args=[deps],
        id="sweep",
        seconds=SWEEP_EVERY.total_seconds(),
        replace_existing=True,
    )
    # One sender per process: it keeps the per-channel pacing between sweeps.
    sender = outbox_sender.OutboxSender(deps)

    async def run_outbox(_deps: Deps) -> None:
        await sender.sweep()

    scheduler.add_job(
        _safe(run_outbox),
        "interval",
        args=[deps],
        id="outbox",
        seconds=OUTBOX_EVERY.total_seconds(),
        replace_existing=True,
    )
    scheduler.add_job(
        _safe(run_window_sweep),
        "interval",
        args=[deps],
        id="window_sweep",
        seconds=WINDOW_SWEEP_EVERY.total_seconds(),
        replace_existing=True,
    )
    _add_advisory_jobs(scheduler, deps)
    scheduler.add_job(
        _safe(run_recovery),
        "interval",
        args=[deps],
        id="recovery",
        seconds=SWEEP_EVERY.total_seconds(),
        replace_existing=True,
    )
    scheduler.add_job(
        _safe(run_checkpoint),
        "interval",
        args=[deps],
        id="checkpoint",
        seconds=CHECKPOINT_EVERY.total_seconds(),
        replace_existing=True,
    )
    # Due windows: each is claimed by compare-and-set, so replicas running this together deploy once.
    scheduler.add_job(
        _safe(deploy.run_due_windows),
        "interval",
        args=[deps],
        id="due_windows",
        seconds=SWEEP_EVERY.total_seconds(),
        replace_existing=True,
    )
    return scheduler


async def run_jobs_now(scheduler: AsyncIOScheduler) -> None:
    """Run every periodic job once, right now, in registration order (the sandbox's "skip ahead" button).

    The very jobs the scheduler runs, not copies: what the sandbox shows is what production does."""
    for job in scheduler.get_jobs():
        await job.func(*job.args)


def _add_advisory_jobs(scheduler: AsyncIOScheduler, deps: Deps) -> None:
    """Feed polling every ``advisories.poll_every`` (feeds created now: an unknown one stops startup) and
    the advisory sweep (pending posts, snoozes, SLA reminders and escalation)."""
    feeds = advisory_notify.create_feeds(deps)

    async def run_feeds_poll(d: Deps) -> None:
        await advisory_notify.run_feeds_poll(d, feeds=feeds)

    if feeds:
        scheduler.add_job(
            _safe(run_feeds_poll),
            "interval",
            args=[deps],
            id="feeds_poll",
            seconds=deps.config.advisories.poll_every.total_seconds(),
            replace_existing=True,
        )
    scheduler.add_job(
        _safe(advisory_notify.run_advisory_sweep),
        "interval",
        args=[deps],
        id="advisory_sweep",
        seconds=advisory_notify.SWEEP_EVERY.total_seconds(),
        replace_existing=True,
    )


def _safe(fn: Callable[[Deps], Awaitable[object]]) -> Callable[[Deps], Awaitable[None]]:
    """Log a failing job instead of letting it kill the scheduler; it runs again at the next tick."""

    async def wrapper(deps: Deps) -> None:
        try:
            await fn(deps)
        except Exception:
            log.exception("scheduled job %s failed; it runs again at the next tick", fn.__name__)

    wrapper.__name__ = fn.__name__
    return wrapper
