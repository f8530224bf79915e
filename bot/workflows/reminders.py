"""Expiry of stale approval requests and reminders to pending approvers (run by the scheduler)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.errors import ConflictError
from bot.workflows import approval, lifecycle
from storage import changes
from storage.models import Change, ChangeState, stage_of


@dataclass(frozen=True)
class Nudge:
    """Something to say in a change's thread after the sweep's transaction commits."""

    change: Change
    kind: str  # "expired" | "reminder" | "blocked"
    people: tuple[str, ...] = ()


async def sweep(session: AsyncSession, *, config: Config, now: datetime) -> list[Nudge]:
    """Expire overdue approval requests; remind pending approvers every ``remind_every``."""
    out: list[Nudge] = []
    for change in await changes.awaiting_approval(session):
        stage = stage_of(change.state)
        assert stage is not None
        if change.approval_deadline is not None and now >= change.approval_deadline:
            try:
                await lifecycle.transition(
                    session,
                    config=config,
                    change=change,
                    to=ChangeState.EXPIRED,
                    actor="patchwarden",
                    now=now,
                    reason=f"not approved within {config.policy.approval_ttl}",
                    approval_deadline=None,
                )
            except ConflictError:
                continue  # another replica or a click got there first
            out.append(Nudge(change, "expired"))
            continue
        last = change.last_reminded_at or change.stage_requested_at or change.created_at
        if now - last >= config.policy.remind_every:
            progress = await approval.progress_of(session, config=config, change=change, stage=stage)
            if await changes.compare_and_set_reminder(session, change, previous=change.last_reminded_at, now=now):
                out.append(Nudge(change, "reminder", tuple(sorted(progress.pending_people()))))
    return out
