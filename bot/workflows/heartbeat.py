"""A run's heartbeat: while it runs, its deployment rows say who runs them, in which step, and that the owner lives.

Every ``policy.heartbeat_timeout / 4`` (and at once whenever the step or the executor's process group
changes) one short transaction stamps ``heartbeat_at``, ``owner``, ``step`` and ``pgid`` on the run's rows.
A run whose heartbeat is older than the timeout has lost its owner (``bot.workflows.recovery``). A failed
beat is logged and retried at the next tick: a database hiccup must not stop a deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.deps import Clock
from bot.executors import processes
from storage import deployments

log = logging.getLogger(__name__)


class Tracker:
    """What the run is doing now (step, process groups), renewed into the database by :func:`beating`."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = list(ids)
        self.step: str | None = None
        self.pgids: dict[int, int | None] = {}
        self.changed = asyncio.Event()

    def enter(self, step: str) -> None:
        """The run starts ``step`` on every system."""
        self.step = step
        self.changed.set()

    def process(self, deployment_id: int, pgid: int | None) -> None:
        """An executor process group started (or ended, ``None``) for one system."""
        self.pgids[deployment_id] = pgid
        self.changed.set()


async def beat_once(sessions: async_sessionmaker[AsyncSession], tracker: Tracker, *, clock: Clock, owner: str) -> None:
    """Stamp the heartbeat (and what changed) on the run's rows now."""
    async with sessions.begin() as session:
        await deployments.beat(
            session, tracker.ids, owner=owner, now=clock.now(), step=tracker.step, pgids=dict(tracker.pgids)
        )


@contextlib.asynccontextmanager
async def beating(
    sessions: async_sessionmaker[AsyncSession], ids: Sequence[int], *, clock: Clock, every: float
) -> AsyncIterator[Tracker]:
    """Keep the heartbeat of the run's rows ``ids`` alive while the block runs; yields its tracker."""
    tracker = Tracker(ids)
    owner = processes.owner_id()

    async def loop() -> None:
        while True:  # the first beat at once: it names the owner
            tracker.changed.clear()
            try:
                await beat_once(sessions, tracker, clock=clock, owner=owner)
            except Exception:
                log.warning("heartbeat of deployments %s failed; retried at the next tick", tracker.ids, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.changed.wait(), timeout=every)

    task = asyncio.create_task(loop())
    try:
        yield tracker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
