"""The workspace's people acting on a bot in another process: slash commands, modals and clicks through the
signed endpoint, what they see read from the fake Slack, and the database read as the truth.

A request to a bot that was just killed fails (connection refused, or no answer); a person then tries
again once the bot is back, as anyone would after an error in Slack. ``retrying`` does that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.sandbox.driver import SlackDriver
from bot.sandbox.fake_slack import FakeSlack, Message
from storage import changes
from storage.models import ChangeState

T = TypeVar("T")
APPROVALS = "C0APPROVALS"


class People:
    """What the workspace's members do and see (one driver: its trigger and view ids never repeat)."""

    def __init__(self, fake: FakeSlack, driver: SlackDriver, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.fake, self.driver, self.sessions = fake, driver, sessions
        self._clicks = 0

    def card(self, change_id: int) -> Message | None:
        """The change's card, as Slack shows it now."""
        for m in self.fake.channel_messages(APPROVALS):
            if m.text.startswith(f"CHG-{change_id}:"):
                return self.fake.messages[m.ts]
        return None

    def thread(self, change_id: int) -> list[Message]:
        card = self.card(change_id)
        return self.fake.thread(card.channel, card.ts) if card is not None else []

    def with_button(self, change_id: int, action_id: str) -> Message | None:
        """The newest message of the change (card or thread) with the button ``action_id``."""
        card = self.card(change_id)
        found = [m for m in [*([card] if card else []), *self.thread(change_id)] if _has(m, action_id)]
        return found[-1] if found else None

    async def state(self, change_id: int) -> ChangeState | None:
        async with self.sessions.begin() as s:
            change = await changes.get(s, change_id)
            return change.state if change is not None else None

    async def command(self, text: str, *, user: str) -> bool:
        """Type ``/patch text``; False when the bot did not answer (down)."""
        try:
            status, _ = await self.driver.command(text, user=user)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        return status == 200

    async def click(self, message: Message, action_id: str, *, user: str) -> bool:
        """Click a button; Approve is confirmed in the modal the bot opens for an eligible person."""
        self._clicks += 1
        trigger = f"{user}.{self._clicks}.trigger"
        try:
            status, _ = await self.driver.click(message, action_id, user=user, trigger_id=trigger)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        if status != 200 or action_id != "change_approve":
            return status == 200
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while loop.time() < deadline:  # a refused click opens no modal: its answer is an ephemeral
            opened = [v for v, t in self.fake.view_triggers.items() if t == trigger]
            if opened:
                return await self.submit(self.fake.views[opened[0]], {}, user=user)
            await asyncio.sleep(0.05)
        return True

    async def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str) -> bool:
        try:
            status, _ = await self.driver.submit(view, values, user=user)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        return status == 200

    def views(self, callback_id: str) -> list[dict[str, Any]]:
        return [p["view"] for p in self.fake.of("views.open") if p["view"]["callback_id"] == callback_id]


def _has(message: Message, action_id: str) -> bool:
    return any(el.get("action_id") == action_id for b in message.blocks for el in b.get("elements", []))


async def until(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    what: str,
    act: Callable[[], Awaitable[object]] | None = None,
    every: float = 0.1,
) -> T:
    """Poll ``check`` until it returns something; ``act`` (the person's action) is repeated every second
    while nothing happens, as a person retries after an error. Raises AssertionError at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    next_act = loop.time()
    while True:
        found = await check()
        if found is not None and found is not False:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        if act is not None and loop.time() >= next_act:
            await act()
            next_act = loop.time() + 1.0
        await asyncio.sleep(every)  # polls the database too: often enough, without starving the bot's writes
