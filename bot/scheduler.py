"""The only module that imports apscheduler: it registers the jobs of ``bot.jobs``, nothing else.

The scheduler is an alarm clock; the database is the truth. Each job gets a fixed id, ``coalesce=True``
and a generous ``misfire_grace_time``: a sweep missed while the process slept simply runs at the next
tick, and each unit of work inside it is claimed with a compare-and-set, so two replicas never do it twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot import jobs
from bot.deps import Deps
from storage import alarms

log = logging.getLogger(__name__)
Scheduler = AsyncIOScheduler  # for type annotations elsewhere, without importing apscheduler there


def create_scheduler(deps: Deps) -> AsyncIOScheduler:
    """An AsyncIOScheduler with the periodic sweeps (not started)."""
    scheduler = AsyncIOScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
    )
    for job_id, fn, every in jobs.table(deps):
        scheduler.add_job(
            _safe(_led(job_id, fn)),
            "interval",
            args=[deps],
            id=job_id,
            seconds=every.total_seconds(),
            replace_existing=True,
        )

    async def run_arm(d: Deps) -> None:  # exact alarms for due windows; the interval sweep stays the net
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
    return arm_alarms(scheduler, starts, _safe(jobs.run_due_windows), [deps])


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


def _led(job_id: str, fn: Callable[[Deps], Awaitable[object]]) -> Callable[[Deps], Awaitable[object]]:
    """Run the job only on the replica that leads it (bot.leader); always when there is no leadership."""

    async def wrapper(deps: Deps) -> object:
        return await fn(deps) if deps.leader is None else await deps.leader.run(job_id, lambda: fn(deps))

    wrapper.__name__ = getattr(fn, "__name__", job_id)
    return wrapper


async def stop(scheduler: AsyncIOScheduler, *, grace: float = 5.0) -> None:
    """Stop taking jobs and let the ones running finish (within ``grace`` seconds) before the engine goes.

    ``shutdown(wait=False)`` alone leaves a running sweep holding a database connection while the caller
    disposes of the engine, which can hang the exit."""
    if not scheduler.running:
        return
    scheduler.pause()  # no new job starts; the running ones finish (shutdown would cancel them mid-query)
    running = [f for ex in scheduler._executors.values() for f in getattr(ex, "_pending_futures", ()) if not f.done()]
    if running:
        await asyncio.wait(running, timeout=grace)
    scheduler.shutdown(wait=False)
