"""A deployment run's view of Slack: the change's thread and card (see ``bot.workflows.runner.Sink``).

Slack failures never stop a deployment and never lose a line: thread posts go through ``bot.slack.thread``
(post, else the outbox), a failed upload is said as its tail, and a failed card refresh is logged (the next
refresh renders the same state).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.blocks.common import Block
from bot.deps import Deps
from bot.slack import thread
from storage.models import Change

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlackSink:
    """Posts into ``change``'s thread; ``refresh`` re-renders its card (given by the workflow that builds it)."""

    deps: Deps
    change: Change
    refresh_card: Callable[[], Awaitable[object]]

    async def post(self, text: str, *, blocks: list[Block] | None = None) -> None:
        """Say ``text`` in the change's thread (the outbox delivers it if Slack refuses now)."""
        await thread.say(self.deps, self.change, text, blocks=blocks or ())

    async def attach(self, *, filename: str, content: str, comment: str) -> None:
        """Upload ``content`` into the thread; its tail is said instead if the upload fails."""
        await thread.attach(self.deps, self.change, filename=filename, content=content, comment=comment)

    async def refresh(self) -> None:
        """Re-render the card; a failure is logged only (the next refresh shows the same state)."""
        try:
            await self.refresh_card()
        except thread.SLACK_FAILURES as exc:
            log.warning("card refresh for %s failed: %s", self.change.key, type(exc).__name__)

    async def flush(self) -> None:
        """Send what is due in the outbox now (the run's durable notes) instead of at the next outbox tick."""
        from bot.slack.outbox_sender import OutboxSender

        try:
            await OutboxSender(self.deps, channel_gap=0.0).sweep()
        except Exception:  # the outbox job sends them at its next tick
            log.warning("outbox flush for %s failed", self.change.key, exc_info=True)
