"""Small helpers for the executor tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from bot.outbound import OutboundPolicy


async def wait_for(predicate: Callable[[], bool], *, within: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or the deadline passes (no fixed sleeps to wait for work)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


class Recorder:
    """A progress callback that records every call with its loop time."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    async def __call__(self, text: str) -> None:
        self.calls.append((asyncio.get_running_loop().time(), text))

    @property
    def text(self) -> str:
        """Everything delivered, joined."""
        return "\n".join(text for _, text in self.calls)


# the local test servers listen on loopback, which the outbound-URL policy refuses unless allow-listed
LOOPBACK = OutboundPolicy(("127.0.0.1",))
