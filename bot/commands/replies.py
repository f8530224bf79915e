"""The one translator from errors to what a person sees. Tracebacks and secrets never reach Slack."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import PatchwardenError
from bot.workflows.replay import Replayed

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong on our side; nothing was changed. The operators can find details in the bot's log."
AFTER_COMMIT = (
    "Your action was recorded, but Slack did not take every update just now; the card and the thread will "
    "catch up shortly."
)


def user_text(exc: BaseException) -> str:
    """The message for a person: ours verbatim, anything else generic (and logged with its traceback)."""
    if isinstance(exc, PatchwardenError):
        return f":warning: {exc.user_message}"
    log.exception("unexpected error in a listener", exc_info=exc)
    return f":warning: {UNEXPECTED}"


async def guarded(
    reply: Callable[[str], Awaitable[Any]],
    work: Callable[[], Awaitable[None]],
    *,
    committed: Callable[[], bool] | None = None,
) -> None:
    """Run ``work``; any error becomes one ephemeral reply.

    ``committed`` tells whether ``work`` got past its commit: an error after that point never says
    "nothing was changed" (it was), only that Slack is catching up.
    """
    try:
        await work()
    except Replayed as exc:  # a replayed request: its work ran once already, nothing more to say
        log.warning("dropped a replayed interaction (%s)", exc.key.split(":", 1)[0])
    except Exception as exc:  # the one place errors become user text
        after = committed is not None and committed()
        if after:
            log.exception("error after commit (the change stands; Slack catches up)", exc_info=exc)
        try:
            await reply(f":hourglass: {AFTER_COMMIT}" if after else user_text(exc))
        except Exception:
            log.exception("could not deliver an error reply")
