"""The owner is present for production (``policy.prod_presence``, issue 12 item 2).

"The IT department updates the prod environment in the presence of the System owners." With ``required``,
a due prod window does not start by itself: :func:`gate`, called by the due-window sweep before it starts
a prod deployment, decides step by step:

1. not prod, or the policy is not ``required``: go;
2. an owner checked in for this window: go;
3. nobody asked yet and the wait (``presence_wait`` from the window's start) still runs: ask the owners
   (a button in the thread and a DM) and wait;
4. asked, the wait still runs: wait (the next sweep looks again);
5. the wait ran out with nobody checked in: the deployment does not start (``presence_missing`` in the
   control log, the thread says why) and the window follows ``policy.missed_window`` (``run`` counts as
   ``ask`` here: nothing runs without the owner unless an operator decides so).

:func:`check_in` is the button: only an owner of the change's systems, only while the window waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks.common import mention, mentions
from bot.config import Config, PresencePolicy
from bot.errors import ConflictError, NotFoundError
from bot.workflows import lifecycle
from storage import presence as store
from storage import windows
from storage.models import Change, ProdPresence, Stage, Window, WindowState

SCHEDULER = "scheduler"


@dataclass(frozen=True)
class Gate:
    """What the sweep does about presence for one due window."""

    go: bool
    note: str = ""  # for the thread (said once)
    ask: tuple[str, ...] = ()  # owners to ask (thread button and DM), the first time only
    absent: bool = False  # the wait ran out: follow missed_window


def owners(config: Config, change: Change) -> list[str]:
    """The owners of the change's systems, each once."""
    return list(dict.fromkeys(config.systems[s].owner for s in change.systems if s in config.systems))


def required(config: Config, stage: str) -> bool:
    """Whether a window of ``stage`` waits for an owner's check-in."""
    return stage == "prod" and config.policy.prod_presence is PresencePolicy.REQUIRED


async def gate(session: AsyncSession, *, config: Config, change: Change, window: Window, now: datetime) -> Gate:
    """May the due ``window`` start now (the steps are in the module docstring)?"""
    # 1. only prod, only when required
    if not required(config, window.stage):
        return Gate(go=True)
    row = await store.for_window(session, window.id)
    # 2. checked in
    if row is not None and row.checked_in_by is not None:
        return Gate(go=True)
    deadline = window.start + config.policy.presence_wait
    ts = int(deadline.timestamp())
    by = f"<!date^{ts}^{{time}}|{deadline:%H:%M} UTC>"
    people = owners(config, change)
    if now < deadline:
        if row is not None:  # 4. asked, still waiting
            return Gate(go=False)
        # 3. ask
        await store.ask(session, change_id=change.id, window_id=window.id, now=now)
        await lifecycle.log(
            session, config=config, now=now, actor=SCHEDULER, action="presence_requested", change=change,
            window_id=window.id, owners=people, wait_until=deadline.isoformat(),
        )  # fmt: skip
        note = (
            f":bust_in_silhouette: The prod window of {change.key} is open. The policy needs a system owner present: "
            f"{mentions(people)}, check in by {by} and the deployment starts; without a check-in it does not."
        )
        return Gate(go=False, note=note, ask=tuple(people))
    # 5. the wait ran out
    if row is None:
        await store.ask(session, change_id=change.id, window_id=window.id, now=now)
    if not await store.mark_absent(session, window_id=window.id, now=now):
        row = await store.for_window(session, window.id)
        return Gate(go=row is not None and row.checked_in_by is not None)
    await lifecycle.log(
        session, config=config, now=now, actor=SCHEDULER, action="presence_missing", change=change,
        window_id=window.id, owners=people, waited_until=deadline.isoformat(),
    )  # fmt: skip
    note = (
        f":no_entry: The prod deployment of {change.key} did not start: no system owner ({mentions(people)}) "
        f"checked in by {by}, and the policy (`prod_presence: required`) deploys prod only in an owner's presence."
    )
    return Gate(go=False, note=note, absent=True)


async def manual_refusal(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, actor: str, now: datetime
) -> str | None:
    """``/patch deploy CHG-n prod`` inside a window under ``required``: refused (and logged) until an owner
    checked in for that window. Outside a window the deployment's own rules decide (an emergency ``--now``
    has no window to check in to)."""
    if not required(config, stage):
        return None
    window = await windows.active(session, change_id=change_id, stage=stage)
    if window is None or not window.start <= now < window.end:
        return None
    row = await store.for_window(session, window.id)
    if row is not None and row.checked_in_by is not None:
        return None
    change = await lifecycle.load(session, change_id)
    why = (
        f"The policy (`prod_presence: required`) deploys prod only with a system owner present: "
        f"{mentions(owners(config, change))} checks in with the button in the {change.key} thread first."
    )
    await lifecycle.log(
        session, config=config, now=now, actor=actor, action="deploy_refused", change=change, stage=stage, reason=why
    )
    return why


async def check_in(
    session: AsyncSession, *, config: Config, window_id: int, user: str, now: datetime
) -> tuple[Change, str | None]:
    """Record an owner's check-in for a waiting prod window: (change, None), or (change, refusal) for someone
    who is not an owner (the refusal is in the control log, so it is returned, not raised). Conflicts raise."""
    window = await windows.get(session, window_id)
    if window is None:
        raise NotFoundError(f"window {window_id} not found", user_message="That window no longer exists.")
    change = await lifecycle.load(session, window.change_id, lock=True)
    people = owners(config, change)
    if user not in people:
        await lifecycle.log(
            session, config=config, now=now, actor=user, action="presence_refused", change=change,
            window_id=window_id, reason="not an owner",
        )  # fmt: skip
        return change, f"Only a system owner of {change.key} can check in ({mentions(people)})."
    row = await store.for_window(session, window_id)
    if row is not None and row.checked_in_by is not None:
        raise ConflictError(
            "already checked in",
            user_message=f"{mention(row.checked_in_by)} already checked in for this window of {change.key}.",
        )
    if (
        window.state is not WindowState.BOOKED
        or row is None
        or not await store.check_in(session, window_id=window_id, user=user, now=now)
    ):
        raise ConflictError(
            "window not waiting",
            user_message=f"This prod window of {change.key} is no longer waiting for a check-in; nothing changed.",
        )
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="presence_checked_in", change=change, window_id=window_id
    )
    return change, None


async def view(session: AsyncSession, *, config: Config, change: Change) -> dict[str, object]:
    """``presence`` of ``changes show --json``: whether prod needs a check-in, and who checked in when."""
    row: ProdPresence | None = await store.latest(session, change.id)
    at = row.checked_in_at.isoformat() if row is not None and row.checked_in_at is not None else None
    return {
        "required": config.policy.prod_presence is PresencePolicy.REQUIRED,
        "checked_in_by": row.checked_in_by if row is not None else None,
        "at": at,
    }
