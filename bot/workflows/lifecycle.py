"""The one place a change's state moves: checked against the transition table, compare-and-set, logged."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks.common import escape
from bot.config import Config
from bot.errors import ConflictError, IllegalTransitionError, NotFoundError, UsageError
from bot.views import state_label
from storage import audit, changes
from storage.models import PENDING_APPROVAL, TRANSITIONS, Change, ChangeState, Stage

_KEY = re.compile(r"^(?:CHG-)?(\d{1,9})$", re.IGNORECASE)


def parse_key(text: str) -> int:
    """``CHG-12`` (or ``12``) → 12; raises UsageError otherwise."""
    match = _KEY.match(text.strip())
    if not match:
        raise UsageError(
            f"{text!r} is not a change id",
            user_message=f"`{text}` is not a change id; write it like `CHG-12`.",
        )
    return int(match.group(1))


def parse_stage(text: str) -> Stage:
    """``test`` / ``prod`` (any case) → the Stage; raises UsageError naming the bad word otherwise."""
    try:
        return Stage(text.strip().lower())
    except ValueError as exc:
        raise UsageError(
            f"bad stage {text[:20]!r}", user_message=f"`{escape(text[:20])}` is not a stage; use test or prod."
        ) from exc


async def load(session: AsyncSession, change_id: int, *, lock: bool = False) -> Change:
    """The change, or NotFoundError."""
    change = await changes.get(session, change_id, lock=lock)
    if change is None:
        raise NotFoundError(f"CHG-{change_id} not found", user_message=f"There is no change CHG-{change_id}.")
    return change


async def log(
    session: AsyncSession,
    *,
    config: Config,
    now: datetime,
    actor: str,
    action: str,
    change: Change | None = None,
    **details: Any,
) -> None:
    """Append an event to the update control log, stamped with the policy version in force."""
    await audit.append(
        session,
        at=now,
        actor=actor,
        action=action,
        policy_version=config.policy.version,
        change_id=change.id if change is not None else None,
        details=details,
    )


async def transition(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    to: ChangeState,
    actor: str,
    now: datetime,
    reason: str = "",
    **fields: Any,
) -> None:
    """Move ``change`` to ``to``: illegal steps raise and change nothing; a lost race raises ConflictError."""
    current = change.state
    if to not in TRANSITIONS[current]:
        raise IllegalTransitionError(
            f"{change.key}: {current} -> {to} is not allowed",
            user_message=f"{change.key} is *{state_label(current)}*; it cannot become *{state_label(to)}*.",
        )
    if to in PENDING_APPROVAL.values():
        fields.setdefault("stage_requested_at", now)
        fields.setdefault("approval_deadline", now + config.policy.approval_ttl)
        fields.setdefault("last_reminded_at", None)
        fields.setdefault("unblock_notified", False)
    if not await changes.compare_and_set_state(session, change, expected=current, new=to, now=now, **fields):
        raise ConflictError(
            f"{change.key}: state moved away from {current}",
            user_message=f"{change.key} was changed by someone else a moment ago; look at the card and try again.",
        )
    await log(
        session,
        config=config,
        now=now,
        actor=actor,
        action="transition",
        change=change,
        **{"from": current.value, "to": to.value, "reason": reason},
    )
