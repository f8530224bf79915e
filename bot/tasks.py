"""Coalesced background refreshes: many marks, one pass, each key once per pass.

Used for App Home tabs: a burst of approvals on one change touches the same people's Home many times;
re-publishing each Home once, shortly after the burst, keeps that work off the click's path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)


class Coalescer:
    """Runs ``fn(key)`` in the background for every marked key; keys marked during a pass get another pass."""

    def __init__(self, delay: float = 0.2) -> None:
        self.delay = delay
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def mark(self, keys: Iterable[str], fn: Callable[[str], Awaitable[None]]) -> None:
        """Queue ``keys``; start a drain task unless one is running."""
        self._dirty.update(keys)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(fn))

    async def _drain(self, fn: Callable[[str], Awaitable[None]]) -> None:
        await asyncio.sleep(self.delay)
        while self._dirty:
            keys, self._dirty = sorted(self._dirty), set()
            for key in keys:
                try:
                    await fn(key)
                except Exception:
                    log.exception("background refresh of %s failed", key)

    async def flush(self) -> None:
        """Wait for the pending pass (tests, shutdown)."""
        if self._task is not None:
            await self._task
