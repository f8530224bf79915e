"""What the presence and documentation buttons, the prod-completion hook and the reminder job do once their
transaction committed: thread notes, card refreshes, an immediate start after a check-in (issue 12, items 2, 4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.blocks import docs as docs_blocks
from bot.blocks.common import escape, link, mention
from bot.deps import Deps
from bot.slack import thread
from bot.workflows import cards, docs, due_windows, presence
from bot.workflows import deployment as flow
from bot.workflows.remediation import StepsBySystem
from storage.models import Change


async def on_check_in(deps: Deps, *, window_id: int, actor: str) -> tuple[str, flow.Run | None]:
    """An owner checks in for a waiting prod window; returns the clicker's reply and the run to launch now
    (``deploy_runs.launch``; the sweep would start it within a minute, too)."""
    async with deps.sessions.begin() as session:
        change, refusal = await presence.check_in(
            session, config=deps.config, window_id=window_id, user=actor, now=deps.clock.now()
        )
    if refusal is not None:
        return refusal, None
    await thread.say(
        deps, change, f":bust_in_silhouette: {mention(actor)} checked in for the prod deployment of {change.key}."
    )
    async with deps.sessions.begin() as session:
        action = await due_windows.handle_due(session, config=deps.config, window_id=window_id, now=deps.clock.now())
    if action is not None and action.note:
        await thread.say(deps, action.change, action.note)
    run = action.run if action is not None else None
    if run is None:
        return f"You are checked in for {change.key}; the deployment starts when its window allows.", None
    return f"You are checked in for {change.key}; the prod deployment starts now. Follow its thread.", run


def after_prod(
    deps: Deps, then: Callable[[Change, StepsBySystem], Awaitable[None]]
) -> Callable[[Change, StepsBySystem], Awaitable[None]]:
    """The runner's hook after a completed prod run: ``then`` (proving the fix), then ask for the documentation."""

    async def hook(change: Change, steps: StepsBySystem) -> None:
        try:
            await then(change, steps)
        finally:
            async with deps.sessions.begin() as session:
                note = await docs.request(session, config=deps.config, change=change, now=deps.clock.now())
            if note is not None:
                await thread.say(deps, change, note, blocks=docs_blocks.request_blocks(change_id=change.id, text=note))
                await cards.refresh_card(deps, change.id)

    return hook


async def on_docs_confirmed(deps: Deps, *, change_id: int, actor: str, url: str) -> str:
    """The documentation was confirmed: say so in the thread, refresh the card; the clicker's reply."""
    async with deps.sessions.begin() as session:
        change = await docs.confirm(
            session, config=deps.config, change_id=change_id, user=actor, link=url, now=deps.clock.now()
        )
    where = f" ({link(url, 'revised page')})" if url else ""
    await thread.say(
        deps, change, f":memo: {mention(actor)} confirmed the documentation of {change.key} was revised{where}."
    )
    await cards.refresh_card(deps, change.id)
    return f"Thanks: the documentation of {escape(change.key)} is confirmed."


async def remind_docs(deps: Deps) -> int:
    """Remind pending documentation older than ``policy.docs_remind_after`` (once each)."""
    async with deps.sessions.begin() as session:
        due = await docs.due_reminders(session, config=deps.config, now=deps.clock.now())
    for r in due:
        await thread.say(deps, r.change, r.text, blocks=docs_blocks.request_blocks(change_id=r.change.id, text=r.text))
    return len(due)
