"""The maintenance calendar picture of the coming weeks (``/patch calendar``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.deps import Deps
from bot.render import calendar_image
from storage import overview


async def picture(deps: Deps, *, systems: list[str]) -> bytes:
    """A PNG of the windows of ``systems`` from now over ``calendar_image.DEFAULT_WEEKS`` weeks."""
    start = deps.clock.now()
    end = start + timedelta(weeks=calendar_image.DEFAULT_WEEKS)
    async with deps.sessions.begin() as session:
        windows = await overview.windows_between(session, start=start, end=end, systems=systems)
    # matplotlib is CPU-bound: draw on a worker thread so the event loop keeps serving clicks
    return await asyncio.to_thread(calendar_image.render, deps.config, systems=systems, windows=windows, start=start)
