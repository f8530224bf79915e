"""A change's card: posted once, re-rendered after every move, with the plan preview it waits for.

Reads the snapshot in its own short transaction, then talks to Slack through ``bot.slack`` (never inside a
transaction) and queues the Home refreshes of everyone involved.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.blocks.common import mentions
from bot.deps import Deps
from bot.slack import notify, thread
from bot.views import ChangeSnapshot
from bot.workflows import home, plan_preview, views
from storage import cards as shown_cards
from storage import changes
from storage.models import PENDING_APPROVAL

log = logging.getLogger(__name__)


async def load_snapshot(deps: Deps, change_id: int) -> ChangeSnapshot | None:
    """A fresh snapshot of the change, read in its own short transaction (a reading one: no write lock)."""
    async with deps.sessions.read() as session:
        change = await changes.get(session, change_id)
        if change is None:
            return None
        return await views.snapshot(session, config=deps.config, change=change)


async def post_card(deps: Deps, change_id: int) -> ChangeSnapshot | None:
    """Post the card in the approvals channel, remember its ts, and mention the pending approvers."""
    snap = await load_snapshot(deps, change_id)
    if snap is None:
        return None
    channel, ts = await notify.post_card(deps, snap)
    async with deps.sessions.begin() as session:
        await changes.set_message(session, change_id, channel=channel, ts=ts)
        if snap.log_seq is not None:
            await shown_cards.mark_shown(session, {change_id: snap.log_seq})
    snap.change.channel, snap.change.thread_ts = channel, ts
    if snap.progress is not None and not snap.progress.complete:
        await thread.say(
            deps,
            snap.change,
            f"Approval needed for the *{snap.stage}* stage: {mentions(sorted(snap.progress.pending_people()))}",
        )
    home.refresh_involved(deps, snap)
    _want_preview(deps, snap)
    return snap


def _want_preview(deps: Deps, snap: ChangeSnapshot) -> None:
    """Queue a plan preview when the card awaits approval and has none for this revision yet."""
    if snap.stage is not None and not snap.plans and snap.change.state in PENDING_APPROVAL.values():

        async def run(key: str) -> None:
            await preview_plans(deps, int(key))

        deps.plans.mark([str(snap.change.id)], run)


async def preview_plans(deps: Deps, change_id: int) -> None:
    """Run the executors' dry-run previews for the stage awaiting approval and show them on the card."""
    snap = await load_snapshot(deps, change_id)
    if snap is None or snap.stage is None or snap.plans:
        return
    previews = await plan_preview.run_plans(deps.config, executors=deps.executors, change=snap.change, stage=snap.stage)
    async with deps.sessions.begin() as session:
        change = await changes.get(session, change_id)
        if change is None or change.revision != snap.change.revision:
            return  # edited meanwhile: that edit runs its own preview
        await plan_preview.record(session, change=change, stage=snap.stage, previews=previews, now=deps.clock.now())
    await refresh_card(deps, change_id)


async def refresh_card(deps: Deps, change_id: int, *, snap: ChangeSnapshot | None = None) -> ChangeSnapshot | None:
    """Re-render the card in place (after every decision, edit or transition).

    Pass ``snap`` when the caller already built it inside its own transaction: it saves a database round trip
    on the hot path (the Approve click)."""
    if snap is None:
        snap = await load_snapshot(deps, change_id)
    if snap is None or not snap.change.thread_ts or not snap.change.channel:
        return snap
    await notify.update_card_or_later(deps, snap)  # updated, or durably queued in the outbox
    _shown(deps, snap)
    home.refresh_involved(deps, snap)  # Home tabs show pending approvals and open changes
    _want_preview(deps, snap)
    return snap


def _shown(deps: Deps, snap: ChangeSnapshot) -> None:
    """Note (batched, off the click's path) how far into the log the card now shows its change. A note lost
    in a crash costs one needless re-render by ``resync_behind``, never a stale card."""
    if snap.log_seq is None:
        return
    marks = deps.shown_cards
    marks[snap.change.id] = max(marks.get(snap.change.id, 0), snap.log_seq)

    async def record(keys: list[str]) -> None:
        batch = {int(k): marks.pop(int(k)) for k in keys if int(k) in marks}
        if batch:
            async with deps.sessions.begin() as session:
                await shown_cards.mark_shown(session, batch)

    deps.card_marks.mark_many([str(snap.change.id)], record)


async def resync_behind(deps: Deps, *, after: int, grace: timedelta) -> tuple[int, int]:
    """Re-render the cards that fell behind their change's control log: a move committed, and the process
    died before ``chat.update`` (or before handing the card to the outbox). Looks at the entries past
    ``after`` that are older than ``grace`` (a younger one's own refresh may still be on its way).

    Returns (the log position checked through, which the caller passes as ``after`` next time; cards
    re-rendered)."""
    await deps.card_marks.flush()
    async with deps.sessions.begin() as session:
        through = await shown_cards.settled_through(session, after=after, before=deps.clock.now() - grace)
        stale = await shown_cards.behind(session, after=after, through=through) if through > after else []
    for change_id in stale:
        log.info("card of change %s fell behind its log: re-rendering it", change_id)
        await refresh_card(deps, change_id)
    return through, len(stale)
