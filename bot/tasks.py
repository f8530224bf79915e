"""Coalesced background refreshes: many marks, one pass, each key once per pass.

Used for App Home tabs: a burst of approvals on one change touches the same people's Home many times;
re-publishing each Home once, shortly after the burst, keeps that work off the click's path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Coalescer:
    """Runs a function in the background for every marked key; keys marked during a pass get another pass.

    ``delay`` is waited before the first pass (a burst of marks lands in one pass); ``interval`` is the least
    time between the starts of two passes, so a steady stream of marks costs at most one pass per interval
    instead of a pass after every mark (the Home tabs of busy approvers, re-read on every click, had kept the
    event loop busy and the acks waiting)."""

    def __init__(self, delay: float = 0.2, interval: float = 0.0) -> None:
        self.delay, self.interval = delay, interval
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def mark(self, keys: Iterable[str], fn: Callable[[str], Awaitable[None]]) -> None:
        """Queue ``keys`` for ``fn(key)``, one key after the other; start a drain task unless one is running."""

        async def each(batch: list[str]) -> None:
            for key in batch:
                try:
                    await fn(key)
                except Exception:
                    log.exception("background refresh of %s failed", key)

        self.mark_many(keys, each)

    def mark_many(self, keys: Iterable[str], fn: Callable[[list[str]], Awaitable[None]]) -> None:
        """Queue ``keys`` for ``fn(keys of one pass)``: one call per pass with every key marked since the last."""
        self._dirty.update(keys)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(fn))

    async def _drain(self, fn: Callable[[list[str]], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.delay)
        while self._dirty:
            started = loop.time()
            keys, self._dirty = sorted(self._dirty), set()
            try:
                await fn(keys)
            except Exception:
                log.exception("background refresh of %s failed", ", ".join(keys[:5]))
            if self._dirty:
                await asyncio.sleep(max(0.0, started + self.interval - loop.time()))

    async def flush(self) -> None:
        """Wait for the pending pass (tests, shutdown)."""
        if self._task is not None:
            await self._task


class TaskSet:
    """Background tasks kept alive until they finish (asyncio keeps only weak references to tasks).

    One per process, in ``Deps``: the registry of running deployments. A task that fails is logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids: dict[asyncio.Task[Any], tuple[int, ...]] = {}

    def start(self, coro: Coroutine[Any, Any, T], *, ids: tuple[int, ...] = ()) -> asyncio.Task[T]:
        """Run ``coro`` in the background and keep it until it is done; ``ids`` name its database rows."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        self._ids[task] = ids
        task.add_done_callback(self._finished)
        return task

    def ids_of(self, tasks: list[asyncio.Task[Any]]) -> list[int]:
        """The rows of these tasks (``serve`` closes them as interrupted when it cuts them off)."""
        return [i for task in tasks for i in self._ids.get(task, ())]

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._ids.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def running(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks still running (shutdown and the sandbox's clock wait for them)."""
        return [t for t in self._tasks if not t.done()]

    async def wait(self) -> None:
        """Wait for every running task (tests, shutdown); their errors were logged already."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
