"""Downtime announcements and thread notes, queued in the outbox inside the caller's transaction.

Queuing in the same transaction as the event (booking, deployment step) makes the pair atomic: a
booking that commits is always announced, a rolled-back one never is, and the outbox key makes a repeat
call a no-op. The sender (``bot.slack.outbox_sender``) delivers with pacing, retries and exactly-once checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks import announcement as announcement_blocks
from bot.blocks import schedule as schedule_blocks
from bot.blocks.announcement import AnnouncementKind
from bot.blocks.common import escape, mention
from bot.config import Config
from bot.slack import thread
from bot.views import state_label
from bot.workflows import announce_email, lifecycle
from storage import changes, outbox, windows
from storage.models import SCHEDULED, Change, ChangeClass, Stage, Window, WindowState, stage_of

__all__ = [
    "AnnouncementKind",
    "announce",
    "channels_for",
    "request_post_implementation_review",
    "request_review",
    "sweep_windows",
]


def channels_for(config: Config, systems: Sequence[str], stage: Stage) -> dict[str, list[str]]:
    """Users' channels to announce in, each with the systems it covers (test only where configured)."""
    out: dict[str, list[str]] = {}
    for name in systems:
        system = config.systems.get(name)
        if system is None or not system.announce_channel:
            continue
        if stage != "prod" and not system.announce_test:
            continue
        out.setdefault(system.announce_channel, []).append(name)
    return out


async def announce(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    window: Window | None,
    kind: AnnouncementKind,
    now: datetime,
    note: str = "",
    previous: Window | None = None,
    stage: Stage | None = None,
) -> int:
    """Queue one announcement per affected users' channel; returns how many were newly queued.

    Idempotent: the outbox key is (change, window, kind, channel) — plus the new end for ``EXTENDED``,
    so each extension is announced — and a repeated call queues nothing. ``window`` may be ``None`` for a
    deployment outside any window (``stage`` then names the stage). Completing an emergency window also
    requests the post-implementation review in the change's thread.
    """
    stage = window.stage if window is not None else (stage or stage_of(change.state) or Stage.PROD)
    systems = list(window.systems) if window is not None else list(change.systems)
    slot_id = f"w{window.id}" if window is not None else stage
    suffix = f":{int(window.end.timestamp())}" if window is not None and kind is AnnouncementKind.EXTENDED else ""
    queued = 0
    for channel, names in channels_for(config, systems, stage).items():
        text, blocks = announcement_blocks.announcement(
            kind,
            change=change,
            systems=names,
            stage=stage,
            timezone=config.systems[names[0]].timezone,
            start=window.start if window is not None else None,
            end=window.end if window is not None else None,
            emergency=window.emergency if window is not None else False,
            previous=(previous.start, previous.end) if previous is not None else None,
            note=note,
        )
        queued += await outbox.enqueue(
            session,
            key=f"announce:{change.id}:{slot_id}:{kind.value}{suffix}:{channel}",
            channel=channel,
            text=text,
            blocks=blocks,
            now=now,
            change_id=change.id,
        )
    await announce_email.queue(
        session,
        config=config,
        change=change,
        window=window,
        kind=kind,
        now=now,
        key=f"{change.id}:{slot_id}:{kind.value}{suffix}",
        stage=stage,
        note=note,
        previous=previous,
    )  # e-mail to the same users (issue 12); counted apart: callers report Slack channels
    if window is not None and window.emergency and kind is AnnouncementKind.COMPLETED:
        await request_post_implementation_review(session, config=config, change=change, now=now)
    return queued


async def request_post_implementation_review(
    session: AsyncSession, *, config: Config, change: Change, now: datetime
) -> bool:
    """Ask for the post-implementation review of an emergency change in its thread (once).

    Called when the change completes (``announce(..., COMPLETED)`` does it for emergency windows).
    Returns False when the change is not an emergency or the review was already requested.
    """
    bypasses = [w for w in await windows.for_change(session, change.id) if w.emergency]
    if not bypasses and change.change_class is not ChangeClass.EMERGENCY:
        return False
    reasons = "; ".join(escape(w.bypass_reason) for w in bypasses if w.bypass_reason)
    operators = sorted(config.group(config.policy.operators))
    text = schedule_blocks.review_request(
        change, reasons=reasons, people=[change.officer, change.requester, *operators]
    )
    new = await thread.say_later(session, config=config, change=change, key="review", text=text, now=now)
    if new:
        await lifecycle.log(
            session,
            config=config,
            now=now,
            actor="patchwarden",
            action="review_requested",
            change=change,
            bypass_reasons=[w.bypass_reason for w in bypasses],
        )
    return new


request_review = request_post_implementation_review


async def sweep_windows(session: AsyncSession, *, config: Config, now: datetime) -> tuple[int, int]:
    """Send due reminders (once each: CAS on ``Window.reminded``) and cancel orphaned bookings.

    A booking is orphaned when its change left the scheduled state without going through
    ``unschedule`` (cancelled, or edited and sent back for approval): its users are told it is off.
    Returns (reminders queued, bookings cancelled).
    """
    reminded = cancelled = 0
    for window in await windows.due_reminders(session, now=now, before=config.policy.remind_before):
        change = await changes.get(session, window.change_id)
        if change is None or change.state is not SCHEDULED.get(window.stage):
            continue  # handled as orphaned below
        if not await windows.claim_reminder(session, window.id):
            continue
        # Booked inside the reminder period (an emergency): the booking announcement was the reminder.
        if window.booked_at < window.start - config.policy.remind_before:
            reminded += bool(
                await announce(
                    session, config=config, change=change, window=window, kind=AnnouncementKind.REMINDER, now=now
                )
            )
    for window in await windows.orphaned(session):
        change = await changes.get(session, window.change_id)
        if not await windows.compare_and_set(
            session, window.id, expected=WindowState.BOOKED, new=WindowState.CANCELLED
        ):
            continue
        cancelled += 1
        if change is None:
            continue
        await _tell_cancelled(
            session,
            config=config,
            change=change,
            window=window,
            now=now,
            why=f"the change is {state_label(change.state)}",
        )
    return reminded, cancelled


async def _tell_cancelled(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    window: Window,
    now: datetime,
    why: str,
    shown: str | None = None,
) -> None:
    """Log, announce to the users and note in the thread that ``window`` (already CANCELLED) is off."""
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor="patchwarden",
        action="window_cancelled",
        change=change,
        window_id=window.id,
        stage=window.stage,
        reason=why,
    )
    await announce(session, config=config, change=change, window=window, kind=AnnouncementKind.CANCELLED, now=now)
    await thread.say_later(
        session,
        config=config,
        change=change,
        key=f"w{window.id}:cancelled",
        text=f":heavy_multiplication_x: The {window.stage} window of {change.key} is cancelled because "
        f"{shown or escape(why)}; its users are told. {mention(change.officer)}",
        now=now,
    )


async def cancel_bookings(session: AsyncSession, *, config: Config, change: Change, now: datetime, why: str) -> int:
    """Cancel (compare-and-set) and announce every booked window of ``change``; returns how many.

    Called by an edit: bookings were made for the old revision, which is no longer approved.
    """
    cancelled = 0
    for window in await windows.for_change(session, change.id):
        if window.state is not WindowState.BOOKED:
            continue
        if not await windows.compare_and_set(
            session, window.id, expected=WindowState.BOOKED, new=WindowState.CANCELLED
        ):
            continue
        cancelled += 1
        await _tell_cancelled(session, config=config, change=change, window=window, now=now, why=why)
    return cancelled
