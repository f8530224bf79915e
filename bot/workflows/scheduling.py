"""Booking, moving and cancelling a stage's maintenance window under the scheduling rules.

The rules themselves (windows, blackouts, notice, other bookings) live in ``bot.windows``; this module
adds who may schedule, which state the change must be in, the booking row, the state transition, the
control log, and the announcements — all in the caller's transaction, so they commit together.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot import windows as rules
from bot.blocks import schedule as schedule_blocks
from bot.blocks.announcement import AnnouncementKind
from bot.blocks.common import mentions
from bot.blocks.schedule import BookMode
from bot.config import Config
from bot.errors import AlreadyDoneError, IllegalTransitionError, PermissionDeniedError, UsageError
from bot.slack import thread
from bot.views import state_label
from bot.windows import Booking, Slot, SlotRefusedError
from bot.workflows import announcements, lifecycle
from storage import windows
from storage.models import APPROVED, SCHEDULED, Change, ChangeClass, Stage, Window, WindowState


@dataclass(frozen=True)
class Proposal:
    """The next free slots for a stage, and how they were chosen."""

    change: Change
    stage: Stage
    slots: list[Slot]
    notice: timedelta
    timezone: str
    mode: BookMode


@dataclass(frozen=True)
class BookingResult:
    """A new booking (``previous`` is None) or a move of an existing one."""

    change: Change
    window: Window
    previous: Window | None
    announced: int
    timezone: str

    @property
    def kind(self) -> AnnouncementKind:
        """BOOKED or RESCHEDULED."""
        return AnnouncementKind.RESCHEDULED if self.previous is not None else AnnouncementKind.BOOKED


def timezone_of(config: Config, change: Change) -> str:
    """The zone used to read and show times for a change: its first system's."""
    return config.systems[change.systems[0]].timezone if change.systems else "UTC"


def notice_for(config: Config, systems: list[str], stage: Stage) -> timedelta:
    """Announcement notice: always for prod, for test only if a system announces its test stage."""
    if stage == "prod" or any(config.systems[s].announce_test for s in systems if s in config.systems):
        return config.policy.announce_notice
    return timedelta()


def may_schedule(config: Config, change: Change, user: str) -> bool:
    """Operators (and emergency approvers), the change's update officer and operator, and its owners may schedule."""
    owners = {config.systems[s].owner for s in change.systems if s in config.systems}
    return user in emergency_bookers(config) or user in (change.officer, change.operator) or user in owners


def _check_allowed(config: Config, change: Change, user: str) -> None:
    if not may_schedule(config, change, user):
        raise PermissionDeniedError(
            f"{user} may not schedule {change.key}",
            user_message=f"You cannot schedule {change.key}: only the operators, its update officer, its "
            f"update operator or the owner of its systems can.",
        )


def emergency_bookers(config: Config) -> set[str]:
    """Who may book an emergency window: the operators, plus the policy's ``emergency_approvers`` group."""
    people = set(config.group(config.policy.operators))
    if config.policy.emergency_approvers is not None:
        people |= set(config.group(config.policy.emergency_approvers))
    return people


def _check_emergency_booker(config: Config, change: Change, user: str) -> None:
    # an emergency skips windows and notice: someone accountable for operations must book it, never just
    # the requester (the update officer defaults to the requester)
    if user not in emergency_bookers(config):
        raise PermissionDeniedError(
            f"{user} may not book an emergency window for {change.key}",
            user_message=f"An emergency booking of {change.key} bypasses maintenance windows and notice, so an "
            f"operator must make it. Ask one of {mentions(sorted(emergency_bookers(config)))}.",
        )


def _mode(change: Change, stage: Stage) -> BookMode:
    """NEW when the stage is approved and unbooked, MOVE when it is booked; anything else is refused."""
    if change.state is APPROVED[stage]:
        return BookMode.NEW
    if change.state is SCHEDULED[stage]:
        return BookMode.MOVE
    raise IllegalTransitionError(
        f"{change.key} is {change.state}, cannot schedule {stage}",
        user_message=f"{change.key} is *{state_label(change.state)}*; the {stage} stage can be "
        f"scheduled once it is approved for {stage}.",
    )


async def _bookings(session: AsyncSession, change: Change, now: datetime) -> list[Booking]:
    rows = await windows.occupying(session, systems=change.systems, after=now, exclude_change_id=change.id)
    return [Booking(w.start, w.end, f"CHG-{w.change_id}", frozenset(w.systems)) for w in rows]


def default_duration(config: Config, change: Change) -> timedelta:
    """A typed slot without a duration lasts as long as the systems' shortest window (else 1h)."""
    rules_ = [r for s in change.systems for r in config.systems[s].maintenance_windows]
    return min((r.duration for r in rules_), default=rules.DEFAULT_DURATION)


async def propose(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, user: str, now: datetime, count: int = 3
) -> Proposal:
    """The next ``count`` free slots for ``stage`` (to book, or to move an existing booking to)."""
    change = await lifecycle.load(session, change_id)
    _check_allowed(config, change, user)
    mode = _mode(change, stage)
    notice = notice_for(config, change.systems, stage)
    bookings = await _bookings(session, change, now)
    # rule expansion is CPU work: off the event loop, so acks and /healthz keep answering meanwhile
    slots = await asyncio.to_thread(
        functools.partial(
            rules.next_free_slots,
            config,
            change.systems,
            now=now,
            bookings=bookings,
            notice=notice,
            count=count,
            exclude_change=change.key,
        )
    )
    return Proposal(change, stage, slots, notice, timezone_of(config, change), mode)


async def book(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    stage: Stage,
    slot: Slot | str,
    user: str,
    now: datetime,
    emergency_reason: str | None = None,
    only: BookMode | None = None,
) -> BookingResult:
    """Book (or move) the stage's window at ``slot`` (a Slot, or text like ``2026-12-06 02:00 2h``).

    Raises ``SlotRefusedError`` naming the rule and the nearest valid slot. ``emergency_reason`` (only
    for emergency changes, never empty) bypasses windows and notice; the bypass is audited and flagged.
    ``only`` refuses a booking button that no longer fits (a proposal clicked after the stage was booked).
    """
    change = await lifecycle.load(session, change_id, lock=True)
    _check_allowed(config, change, user)
    mode = _mode(change, stage)
    if only is not None and only is not mode:
        raise AlreadyDoneError(
            f"{change.key} {stage} is {mode}, button was {only}",
            user_message=f"The {stage} window of {change.key} was booked meanwhile; to move it, type "
            f"`/patch schedule {change.key} {stage}` again.",
        )
    emergency = emergency_reason is not None
    if emergency:
        if change.change_class is not ChangeClass.EMERGENCY:
            raise PermissionDeniedError(
                f"{change.key} is not an emergency change",
                user_message=f"{change.key} is a {change.change_class.value} change; only emergency changes "
                "may bypass maintenance windows and notice.",
            )
        if not (emergency_reason or "").strip():
            raise UsageError(
                "emergency without reason",
                user_message="An emergency booking needs a reason: `--emergency database corruption`.",
            )
        _check_emergency_booker(config, change, user)
    zone = timezone_of(config, change)
    chosen = (
        rules.parse_slot(slot, timezone=zone, default_duration=default_duration(config, change))
        if isinstance(slot, str)
        else slot
    )
    await windows.lock_systems(session, change.systems)
    bookings = await _bookings(session, change, now)
    notice = notice_for(config, change.systems, stage)

    async def verify(*, bypass: bool) -> None:
        await asyncio.to_thread(
            functools.partial(
                rules.check_slot,
                config,
                change.systems,
                chosen,
                now=now,
                bookings=bookings,
                notice=notice,
                emergency=bypass,
                exclude_change=change.key,
            )
        )

    await verify(bypass=emergency)
    bypassed = ""
    if emergency:
        try:
            await verify(bypass=False)
        except SlotRefusedError as exc:
            bypassed = exc.rule.value  # what the emergency skipped, for the control log
    previous = await windows.active(session, change_id=change.id, stage=stage) if mode is BookMode.MOVE else None
    if mode is BookMode.MOVE and (previous is None or previous.state is not WindowState.BOOKED):
        raise IllegalTransitionError(
            f"{change.key} {stage} window is not movable",
            user_message=f"The {stage} window of {change.key} has already started; it can no longer be moved.",
        )
    window = await windows.add(
        session,
        Window(
            change_id=change.id,
            stage=stage,
            systems=list(change.systems),
            start=chosen.start,
            end=chosen.end,
            state=WindowState.BOOKED,
            emergency=emergency,
            bypass_reason=(emergency_reason or "").strip(),
            booked_by=user,
            booked_at=now,
            reminded=False,
        ),
    )
    if previous is not None:
        if not await windows.compare_and_set(
            session, previous.id, expected=WindowState.BOOKED, new=WindowState.RESCHEDULED
        ):
            raise IllegalTransitionError(
                "window moved under us",
                user_message=f"The {stage} window of {change.key} just started or changed; look at the thread.",
            )
    else:
        await lifecycle.transition(
            session,
            config=config,
            change=change,
            to=SCHEDULED[stage],
            actor=user,
            now=now,
            reason=f"{stage} window booked",
        )
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=user,
        action="window_rescheduled" if previous is not None else "window_booked",
        change=change,
        window_id=window.id,
        stage=stage,
        start=chosen.start.isoformat(),
        end=chosen.end.isoformat(),
        emergency=emergency,
        **({"previous_window_id": previous.id} if previous is not None else {}),
    )
    if emergency:
        await lifecycle.log(
            session,
            config=config,
            now=now,
            actor=user,
            action="emergency_bypass",
            change=change,
            window_id=window.id,
            stage=stage,
            reason=window.bypass_reason,
            bypassed_rule=bypassed or "none",
            booked_as="operator" if user in config.group(config.policy.operators) else "emergency approver",
        )
    kind = AnnouncementKind.RESCHEDULED if previous is not None else AnnouncementKind.BOOKED
    announced = await announcements.announce(
        session, config=config, change=change, window=window, kind=kind, now=now, previous=previous
    )
    note = schedule_blocks.booked_note(change, window, user=user, timezone=zone, previous=previous, announced=announced)
    await thread.say_later(session, config=config, change=change, key=f"w{window.id}:{kind.value}", text=note, now=now)
    return BookingResult(change, window, previous, announced, zone)


async def unschedule(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, user: str, reason: str, now: datetime
) -> Window:
    """Cancel the stage's booked window (with a reason); the change goes back to approved-for-stage."""
    reason = reason.strip()
    if not reason:
        raise UsageError("unschedule without reason", user_message="Cancelling a window needs a reason.")
    change = await lifecycle.load(session, change_id, lock=True)
    _check_allowed(config, change, user)
    window = await windows.active(session, change_id=change.id, stage=stage)
    if window is None or window.state is not WindowState.BOOKED or change.state is not SCHEDULED[stage]:
        raise IllegalTransitionError(
            f"{change.key} has no booked {stage} window",
            user_message=f"{change.key} has no booked {stage} window to cancel"
            + (" (it has already started)." if window is not None else "."),
        )
    if not await windows.compare_and_set(session, window.id, expected=WindowState.BOOKED, new=WindowState.CANCELLED):
        raise IllegalTransitionError(
            "window moved under us", user_message=f"The {stage} window of {change.key} just started."
        )
    await lifecycle.transition(
        session, config=config, change=change, to=APPROVED[stage], actor=user, now=now, reason=reason
    )
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=user,
        action="window_cancelled",
        change=change,
        window_id=window.id,
        stage=stage,
        reason=reason,
    )
    await announcements.announce(
        session, config=config, change=change, window=window, kind=AnnouncementKind.CANCELLED, now=now, note=reason
    )
    zone = timezone_of(config, change)
    await thread.say_later(
        session,
        config=config,
        change=change,
        key=f"w{window.id}:cancelled",
        text=schedule_blocks.cancelled_note(change, window, user=user, reason=reason, timezone=zone),
        now=now,
    )
    return window


def offer_mode(change: Change, stage: Stage) -> BookMode:
    """How slots are offered again after a refusal: MOVE when the stage is booked already, else NEW."""
    return BookMode.MOVE if change.state is SCHEDULED[stage] else BookMode.NEW
