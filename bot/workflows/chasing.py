"""Chasing a waiting stage (issue 12, item 6): the requester's Nudge and escalation after ``escalate_after``.

* **Nudge**: the requester may remind the pending approvers once per ``policy.remind_every`` per stage and
  revision; the database enforces it (``storage.away.nudge``: a unique row and a compare-and-set).
* **Escalation**: when a stage has waited ``k × escalate_after``, step ``k`` of the escalation order is
  reminded: the ``fallback`` group first, then each of ``policy.managers`` in turn. Each step happens once
  across replicas (a once-mark in the same transaction as its outbox note and control-log entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks.common import mentions
from bot.config import Config, format_duration
from bot.slack import thread
from bot.workflows import approval, lifecycle
from storage import away, changes
from storage.models import PENDING_APPROVAL, Change, Stage, stage_of


@dataclass(frozen=True)
class Nudged:
    """The outcome of a Nudge click: whether it was sent, what to tell the requester, whom to remind."""

    sent: bool
    change: Change
    message: str
    people: tuple[str, ...] = ()


async def nudge(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, revision: int, user: str, now: datetime
) -> Nudged:
    """The requester reminds the stage's pending approvers (once per ``remind_every``; refusals audited)."""
    change = await lifecycle.load(session, change_id, lock=True)
    why = None
    if change.state is not PENDING_APPROVAL.get(stage) or change.revision != revision:
        why = f"{change.key} is not waiting for {stage} approval of revision {revision} any more."
    elif user != change.requester:
        why = f"Only the requester of {change.key} (<@{change.requester}>) can nudge its approvers."
    elif not await away.nudge(
        session, change_id=change.id, stage=stage, revision=revision, now=now, every=config.policy.remind_every
    ):
        last = await away.last_nudge(session, change_id=change.id, stage=stage, revision=revision)
        when = f" (last at {last:%Y-%m-%d %H:%M} UTC)" if last else ""
        every = format_duration(config.policy.remind_every)
        why = f"The approvers of {change.key} were nudged less than {every} ago{when}; try again later."
    if why is not None:
        await lifecycle.log(
            session, config=config, now=now, actor=user, action="nudge_refused", change=change, stage=stage, reason=why
        )
        return Nudged(False, change, why)
    progress = await approval.progress_of(session, config=config, change=change, stage=stage)
    people = tuple(sorted(progress.pending_people()))
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="nudged", change=change, stage=stage, people=list(people)
    )
    return Nudged(
        True, change, f"Nudged {mentions(people) or 'nobody (no approver is left)'} about {change.key}.", people
    )


def escalation_order(config: Config, change: Change) -> list[tuple[str, tuple[str, ...]]]:
    """The steps: (label, people) for the fallback group, then each manager."""
    excluded = {change.requester, change.last_editor}
    fallback = tuple(sorted(config.group(config.policy.fallback) - excluded))
    steps = [(f"the {config.policy.fallback} group", fallback)] if fallback else []
    steps += [("a manager", (m,)) for m in config.policy.managers if m not in excluded]
    return steps


async def escalate(session: AsyncSession, *, config: Config, now: datetime) -> int:
    """Remind the next step of every stage waiting too long; returns the steps taken now."""
    after = config.policy.escalate_after
    if after is None:
        return 0
    taken = 0
    for change in await changes.awaiting_approval(session):
        stage = stage_of(change.state)
        since = change.stage_requested_at or change.created_at
        if stage is None or now - since < after:
            continue
        order = escalation_order(config, change)
        due = min(int((now - since) / after), len(order))
        prefix = f"escalate:{change.id}:{stage}:{change.revision}:"
        if len(await away.marked(session, prefix=prefix)) >= due:
            continue  # every step due so far was taken (the common case: one read, no progress computed)
        progress = await approval.progress_of(session, config=config, change=change, stage=stage)
        for step in range(1, due + 1):
            key = f"{prefix}{step}"
            if not await away.mark_once(session, key=key, now=now):
                continue
            label, people = order[step - 1]
            waited = format_duration(step * after)
            await lifecycle.log(
                session,
                config=config,
                now=now,
                actor="patchwarden",
                action="escalated",
                change=change,
                stage=stage,
                step=step,
                to=list(people),
                waited=waited,
            )
            pending = mentions(sorted(progress.pending_people())) or "nobody"
            await thread.say_later(
                session,
                config=config,
                change=change,
                key=key,
                text=f":rotating_light: {change.key} has waited {waited} for *{stage}* approval "
                f"(pending: {pending}). Escalating to {label}: {mentions(people)}.",
                now=now,
            )
            taken += 1
    return taken
