"""The only module that imports apscheduler. The scheduler is an alarm clock; the database is the truth.

Jobs are idempotent sweeps over our own tables with a fixed id, ``coalesce=True`` and a generous
``misfire_grace_time``: a sweep missed while the process slept simply runs at the next tick, and each
unit of work inside it is claimed with a compare-and-set, so two replicas never do it twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.blocks.common import mentions, slack_date
from bot.commands import deploy
from bot.deps import Deps
from bot.slack import advisory_posts, notify, outbox_sender
from bot.workflows import announcements, audit_publish, recovery, reminders
from storage import alarms, changes
from storage.models import Change

log = logging.getLogger(__name__)
Scheduler = AsyncIOScheduler  # for type annotations elsewhere, without importing apscheduler there
SWEEP_EVERY = timedelta(minutes=1)
CARD_GRACE = timedelta(minutes=2)  # a card younger than this may still be on its way
CHECKPOINT_EVERY = timedelta(minutes=5)  # signs only once audit.checkpoint_interval has passed
AUDIT_PUBLISH_EVERY = timedelta(seconds=5)
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
    """Sign the control log's head hourly and publish it (witnesses, audit channel, stream)."""
    await audit_publish.run_checkpoint(deps)


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
        ("audit_publish", audit_publish.run_publish, AUDIT_PUBLISH_EVERY),  # heads to witnesses, log to the SIEM
        ("outbox", run_outbox, OUTBOX_EVERY),
    ]
    if feeds:
        jobs.insert(0, ("feeds_poll", run_feeds_poll, deps.config.advisories.poll_every))

    async def run_arm(d: Deps) -> None:  # exact alarms for due windows (issue 14)
        await run_arm_windows(d, scheduler)

    scheduler.add_job(
        _safe(_led("arm_windows", run_arm)),
        "interval",
        args=[deps],
        id="arm_windows",
        seconds=ARM_EVERY.total_seconds(),
        next_run_time=datetime.now(UTC),
        replace_existing=True,
    )
    for job_id, fn, every in jobs:
        scheduler.add_job(
            _safe(_led(job_id, fn)),
            "interval",
            args=[deps],
            id=job_id,
            seconds=every.total_seconds(),
            replace_existing=True,
        )
    return scheduler


ALARM_HORIZON = timedelta(hours=3)  # windows starting this far ahead get an exact alarm
ALARM_RESOLUTION = timedelta(milliseconds=100)  # starts within one step share an alarm
ARM_EVERY = timedelta(minutes=1)  # re-read the bookings (new, moved, cancelled) this often


def arm_alarms(
    scheduler: AsyncIOScheduler, starts: list[datetime], fn: Callable[..., Awaitable[object]], args: list[object]
) -> int:
    """One date job per start (rounded up to ``ALARM_RESOLUTION``) that runs ``fn(*args)``; returns alarms set.

    Ids are derived from the moment, so re-arming replaces instead of doubling; an alarm for a window that
    was moved or cancelled fires into a claim that finds nothing. The interval sweep stays the safety net.
    """
    step = ALARM_RESOLUTION.total_seconds()
    moments = sorted({datetime.fromtimestamp(math.ceil(s.timestamp() / step) * step, UTC) for s in starts})
    for moment in moments:
        scheduler.add_job(
            fn, "date", run_date=moment, args=args, id=f"window-alarm:{moment.isoformat()}", replace_existing=True
        )
    return len(moments)


async def run_arm_windows(deps: Deps, scheduler: AsyncIOScheduler) -> int:
    """Arm an exact alarm for each booked window starting within ``ALARM_HORIZON`` (at start and every minute)."""
    now = deps.clock.now()
    async with deps.sessions.begin() as session:
        starts = await alarms.upcoming_starts(session, after=now, until=now + ALARM_HORIZON)
    return arm_alarms(scheduler, starts, _safe(deploy.run_due_windows), [deps])


async def run_jobs_now(scheduler: AsyncIOScheduler) -> None:
    """Run every periodic job once, right now, in registration order (the sandbox's "skip ahead" button).

    The very jobs the scheduler runs, not copies: what the sandbox shows is what production does."""
    for job in scheduler.get_jobs():
        await job.func(*job.args)


def _led(job_id: str, fn: Callable[[Deps], Awaitable[object]]) -> Callable[[Deps], Awaitable[object]]:
    """Run the job only on the replica that leads it (bot.leader); always when there is no leadership."""

    async def wrapper(deps: Deps) -> object:
        return await fn(deps) if deps.leader is None else await deps.leader.run(job_id, lambda: fn(deps))

    wrapper.__name__ = getattr(fn, "__name__", job_id)
    return wrapper


def _safe(fn: Callable[[Deps], Awaitable[object]]) -> Callable[[Deps], Awaitable[None]]:
    """Log a failing job instead of letting it kill the scheduler; it runs again at the next tick."""

    async def wrapper(deps: Deps) -> None:
        try:
            await fn(deps)
        except Exception:
            log.exception("scheduled job %s failed; it runs again at the next tick", fn.__name__)

    wrapper.__name__ = fn.__name__
    return wrapper
