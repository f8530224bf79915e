"""Due maintenance windows, run by the scheduler's sweep: start the deployment when a window opens, and
handle a window missed while the bot was down according to ``policy.missed_window`` (next | ask | run).

Each due window is claimed by compare-and-set (``storage.windows``), so replicas sweeping together start it
once; a window whose deployment cannot start is said in its thread once (``note_refusal_once``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config, PresencePolicy
from bot.workflows import lifecycle, presence
from bot.workflows.deployment import SCHEDULER, Run, start
from storage import windows
from storage.models import Change, Window, WindowState


@dataclass(frozen=True)
class DueAction:
    """What the sweep did with one due window; the caller posts ``note`` and launches ``run``."""

    change: Change
    window_id: int
    kind: str  # "run" | "missed_run" | "missed_next" | "missed_ask" | "refused" | "skipped"
    run: Run | None = None
    note: str = ""
    ask: tuple[str, ...] = ()  # owners to ask to check in (policy.prod_presence: required)
    tell: tuple[str, ...] = ()  # owners to tell by DM that the prod deployment starts (prod_presence: notify)


async def due(session: AsyncSession, *, config: Config, now: datetime) -> list[int]:
    """Ids of booked windows whose start has come (each is then handled in its own transaction)."""
    return [w.id for w in await windows.due_windows(session, now=now)]


async def handle_due(session: AsyncSession, *, config: Config, window_id: int, now: datetime) -> DueAction | None:
    """Start one due window, or apply ``policy.missed_window`` when its end passed while nobody ran it.

    Two replicas may both call this for the same window: the change row lock and the window's
    compare-and-set let exactly one act; the other gets ``None``.
    """
    window = await windows.get(session, window_id)
    if window is None:
        return None
    change = await lifecycle.load(session, window.change_id, lock=True)
    window = await windows.get(session, window_id)  # re-read under the change lock
    if window is None or window.state is not WindowState.BOOKED:
        return None
    missed = now >= window.end
    policy = config.policy.missed_window.value
    if missed:
        await lifecycle.log(
            session,
            config=config,
            now=now,
            actor=SCHEDULER,
            action="window_missed",
            change=change,
            window_id=window.id,
            stage=window.stage,
            end=window.end.isoformat(),
            policy=policy,
        )
    if not missed or policy == "run":
        gated = await presence.gate(session, config=config, change=change, window=window, now=now)
        if not gated.go and not gated.absent:
            return DueAction(change, window.id, "presence_wait", note=gated.note, ask=gated.ask)
        if gated.absent:
            return await _absent(session, config=config, change=change, window=window, note=gated.note, now=now)
        result = await start(
            session,
            config=config,
            change_id=change.id,
            stage=window.stage,
            actor=SCHEDULER,
            now=now,
            window_id=window.id,
        )
        if result.run is None:
            first = await windows.note_refusal_once(session, window.id)
            note = (
                f":warning: The {window.stage} window of {change.key} is open, but the deployment cannot start: "
                f"{result.refusal} It is tried again every minute while the window lasts."
                if first
                else ""
            )
            return DueAction(change, window.id, "refused", note=note)
        note = (
            f":warning: The {window.stage} window of {change.key} passed while the bot was down; "
            "the policy (`missed_window: run`) deploys it now."
            if missed
            else ""
        )
        tell = (
            tuple(presence.owners(config, change))
            if window.stage == "prod" and config.policy.prod_presence is PresencePolicy.NOTIFY
            else ()
        )
        return DueAction(change, window.id, "missed_run" if missed else "run", result.run, note, tell=tell)
    if policy == "ask":
        await windows.compare_and_set(
            session, window.id, expected=WindowState.BOOKED, new=WindowState.AWAITING_DECISION
        )
        note = (
            f":warning: The {window.stage} window of {change.key} passed while the bot was down and nothing was "
            "deployed. Operators: run it now, or book the next free window?"
        )
        return DueAction(change, window.id, "missed_ask", note=note)
    return await rebook(session, config=config, change=change, window=window, actor=SCHEDULER, now=now)


async def _absent(
    session: AsyncSession, *, config: Config, change: Change, window: Window, note: str, now: datetime
) -> DueAction:
    """Nobody checked in for a prod window: it did not start; ``missed_window`` decides (``run`` asks)."""
    if config.policy.missed_window.value == "next":
        action = await rebook(session, config=config, change=change, window=window, actor=SCHEDULER, now=now,
                              why="nobody checked in")  # fmt: skip
        return DueAction(change, window.id, "presence_missing", note=f"{note}\n{action.note}")
    await windows.compare_and_set(session, window.id, expected=WindowState.BOOKED, new=WindowState.AWAITING_DECISION)
    ask = "Operators: run it now (with the owner there), or book the next free window?"
    return DueAction(change, window.id, "missed_ask", note=f"{note}\n{ask}")


async def rebook(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    window: Window,
    actor: str,
    now: datetime,
    why: str = "the bot was down",
) -> DueAction:
    """Book the next free slot for a missed window (announced as rescheduled by the scheduling workflow)."""
    from bot.workflows import scheduling  # imported here: scheduling imports announcements, which is heavy

    if window.state is WindowState.AWAITING_DECISION:
        await windows.compare_and_set(
            session, window.id, expected=WindowState.AWAITING_DECISION, new=WindowState.BOOKED
        )
    on_behalf = window.booked_by  # booking needs someone allowed to schedule; the log names the sweep too
    proposal = await scheduling.propose(
        session, config=config, change_id=change.id, stage=window.stage, user=on_behalf, now=now, count=1
    )
    if not proposal.slots:
        await windows.compare_and_set(session, window.id, expected=WindowState.BOOKED, new=WindowState.MISSED)
        note = (
            f":warning: The {window.stage} window of {change.key} was missed and no free window was found; "
            "book one by hand."
        )
        return DueAction(change, window.id, "missed_next", note=note)
    booked = await scheduling.book(
        session, config=config, change_id=change.id, stage=window.stage, slot=proposal.slots[0], user=on_behalf, now=now
    )
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=actor,
        action="window_rebooked",
        change=change,
        missed_window_id=window.id,
        window_id=booked.window.id,
        start=booked.window.start.isoformat(),
    )
    ts = int(booked.window.start.timestamp())
    note = (
        f":warning: The {window.stage} window of {change.key} was missed ({why}); it is rebooked "
        f"for <!date^{ts}^{{date_short_pretty}} {{time}}|{booked.window.start:%Y-%m-%d %H:%M} UTC> and announced."
    )
    return DueAction(change, window.id, "missed_next", note=note)
