"""Sandbox time: skipping ahead plays every due event in order, as the production scheduler would.

The production scheduler ticks every 30-60 s, so a window opens within a minute of its start, its
reminder goes out an hour before, and nothing is ever "missed" while the bot runs. Jumping the clock a
day ahead and ticking once would instead find windows whose end has passed ("missed, the bot was down"),
rebook them on the operator's behalf, and send reminders for windows already open. So a skip moves the
fake clock *event by event*: to the next instant at which a job has work (``storage.due.next_event``),
never more than ``MAX_STEP`` at once, runs the scheduler's very jobs in their registration order, waits
for the deployments they started and for the outbox to deliver, and repeats until the target time.

The background scheduler's jobs share one lock with the skip, so the two never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.deps import Deps, FakeClock
from bot.scheduler import Scheduler
from storage import due

log = logging.getLogger(__name__)
MAX_STEP = timedelta(hours=1)  # unknown due times (SLA clocks, feeds) are never more than this late
RUN_TIMEOUT = 60.0  # seconds a deployment started by a skip may take before the skip goes on without it
Job = Callable[..., Awaitable[Any]]


class NoWindowError(LookupError):
    """There is no booked window ahead to jump to."""


class Clockwork:
    """Drives the sandbox's fake clock and the scheduler's jobs, one due event at a time."""

    def __init__(self, deps: Deps, clock: FakeClock, scheduler: Scheduler) -> None:
        self.deps, self.clock, self.scheduler = deps, clock, scheduler
        self.lock = asyncio.Lock()
        self.steps = 0  # how many ticks skips have played (tests and the log read it)
        self._jobs: dict[str, tuple[Job, list[Any]]] = {}
        for job in scheduler.get_jobs():  # in registration order: what falls due first, the outbox last
            self._jobs[job.id] = (job.func, list(job.args))
            job.modify(func=self._locked(job.func))

    def _locked(self, func: Job) -> Job:
        async def locked(*args: Any) -> None:
            try:
                async with self.lock:
                    await func(*args)
            except asyncio.CancelledError:  # the sandbox is stopping mid-job: nothing to report
                log.debug("job %s cancelled by shutdown", getattr(func, "__name__", "job"))

        locked.__name__ = getattr(func, "__name__", "job")
        return locked

    async def skip(self, delta: timedelta) -> datetime:
        """Let ``delta`` pass, playing every due event on the way in order; returns the new time."""
        self.scheduler.pause()  # the background ticks wait (rather than queue up) until the skip is done
        try:
            return await self._skip(delta)
        finally:
            self.scheduler.resume()

    async def _skip(self, delta: timedelta) -> datetime:
        async with self.lock:
            target = self.clock.now() + delta
            while True:
                now = self.clock.now()
                async with self.deps.sessions.begin() as session:
                    upcoming = await due.next_event(
                        session,
                        after=now,
                        remind_before=self.deps.config.policy.remind_before,
                        remind_every=self.deps.config.policy.remind_every,
                    )
                step = min(t for t in (upcoming, target, now + MAX_STEP) if t is not None)
                if step > now:
                    self.clock.advance(step - now)
                await self._tick()
                if step >= target:
                    return self.clock.now()

    async def jump_to_next_window(self) -> datetime:
        """Skip to one minute after the next booked window opens (its deployment runs on the way)."""
        async with self.deps.sessions.begin() as session:
            start = await due.next_window_start(session, after=self.clock.now())
        if start is None:
            raise NoWindowError("no booked window ahead")
        return await self.skip(start + timedelta(minutes=1) - self.clock.now())

    async def _tick(self) -> None:
        """One scheduler tick at the current time: every job once, the runs they started, the outbox."""
        self.steps += 1
        for func, args in self._jobs.values():
            await func(*args)
        running = self.deps.deployments.tasks()
        if running:
            _, late = await asyncio.wait(running, timeout=RUN_TIMEOUT)
            if late:
                log.warning("%d deployment(s) still running after %.0f s; the skip goes on", len(late), RUN_TIMEOUT)
            if "outbox" in self._jobs:  # what the runs announced
                func, args = self._jobs["outbox"]
                await func(*args)
