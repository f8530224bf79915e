"""Scheduling surfaces: proposed slots as buttons, a refusal with the nearest valid slot, thread notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum

from bot.blocks.announcement import when_text
from bot.blocks.common import Block, context, escape, mention, mentions, plain, section
from bot.config import format_duration
from bot.windows import Slot, format_slot
from storage.models import Change, Stage, Window


class ScheduleAction(StrEnum):
    """Button action ids; each proposal button gets ``book`` plus ``_<n>`` (unique in its message)."""

    BOOK = "schedule_book"


class BookMode(StrEnum):
    """What a booking button may do: a fresh booking only, or move the existing one."""

    NEW = "new"
    MOVE = "move"


def slot_value(change_id: int, stage: Stage, slot: Slot, mode: BookMode) -> str:
    """Button value ``<change id>:<stage>:<start epoch>:<end epoch>:<mode>`` (ids and times only)."""
    return f"{change_id}:{stage}:{int(slot.start.timestamp())}:{int(slot.end.timestamp())}:{mode.value}"


def _button(index: int, change: Change, stage: Stage, slot: Slot, mode: BookMode, timezone: str) -> Block:
    label = format_slot(slot, timezone)
    return {
        "type": "button",
        "action_id": f"{ScheduleAction.BOOK.value}_{index}",
        "value": slot_value(change.id, stage, slot, mode),
        "text": plain(label[:75]),
        **({"style": "primary"} if index == 1 else {}),
    }


def proposals(
    change: Change,
    *,
    stage: Stage,
    slots: Sequence[Slot],
    timezone: str,
    notice: timedelta,
    mode: BookMode,
) -> list[Block]:
    """The next free slots as buttons (clicking one books it)."""
    systems = ", ".join(f"`{escape(s)}`" for s in change.systems)
    verb = "Move" if mode is BookMode.MOVE else "Book"
    if not slots:
        return [
            section(
                f"No free {stage} window for {change.key} on {systems} in the next months. "
                f"Name a time: `/patch schedule {change.key} {stage} 2026-12-06 02:00 2h`."
            )
        ]
    need = f" (at least {format_duration(notice)} ahead, so users can be told)" if notice else ""
    blocks: list[Block] = [
        section(f"*{verb} the {stage} window of {change.key}* on {systems}: the next free slots{need}."),
        {
            "type": "actions",
            "block_id": f"schedule:{change.id}:{stage}",
            "elements": [_button(i, change, stage, slot, mode, timezone) for i, slot in enumerate(slots, start=1)],
        },
        context(
            f"Times in {escape(timezone)}. Or name one: `/patch schedule {change.key} {stage} YYYY-MM-DD HH:MM [2h]`"
        ),
    ]
    return blocks


def refusal(
    change: Change, *, stage: Stage, message: str, suggestion: Slot | None, timezone: str, mode: BookMode
) -> list[Block]:
    """Why a slot was refused, with a button for the nearest valid one."""
    blocks: list[Block] = [section(f":no_entry: {message}")]
    if suggestion is not None:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"schedule_suggest:{change.id}:{stage}",
                "elements": [_button(1, change, stage, suggestion, mode, timezone)],
            }
        )
    return blocks


def booked_note(
    change: Change, window: Window, *, user: str, timezone: str, previous: Window | None, announced: int
) -> str:
    """The thread line for a booking or a move."""
    when = when_text(window.start, window.end, timezone)
    told = (
        f" Users are told in {announced} channel{'s' if announced != 1 else ''}."
        if announced
        else " No users' channel is announced."
    )
    flag = (
        f"\n:rotating_light: *Emergency bypass* of maintenance windows and notice: {escape(window.bypass_reason)}"
        if window.emergency
        else ""
    )
    if previous is not None:
        before = when_text(previous.start, previous.end, timezone)
        moved = f"moved the *{window.stage}* window of {change.key} to {when} (was {before})"
        return f":calendar: {mention(user)} {moved}.{told}{flag}"
    return f":calendar: {mention(user)} booked the *{window.stage}* window of {change.key}: {when}.{told}{flag}"


def cancelled_note(change: Change, window: Window, *, user: str, reason: str, timezone: str) -> str:
    """The thread line for a cancelled booking."""
    when = when_text(window.start, window.end, timezone)
    return (
        f":heavy_multiplication_x: {mention(user)} cancelled the *{window.stage}* window of {change.key} "
        f"({when}): {escape(reason)}. Book a new one with `/patch schedule {change.key} {window.stage}`."
    )


def review_request(change: Change, *, reasons: str, people: Sequence[str]) -> str:
    """The thread line asking for the post-implementation review of an emergency change."""
    why = f" Bypass reason: {reasons}." if reasons else ""
    return (
        f":clipboard: *Post-implementation review needed* for {change.key}: it was an emergency change "
        f"that skipped the normal windows or notice.{why} Please review what happened, whether the "
        f"emergency was justified, and what follows: {mentions(list(dict.fromkeys(people)))}"
    )


def card_windows(windows: Sequence[Window], *, timezone: str) -> list[Block]:
    """Booked, running and held windows for the change card, flagging an emergency bypass and its reason.

    For ``blocks.card.card`` (the snapshot already carries ``windows``): one context line per live window.
    """
    lines = []
    for window in windows:
        if window.state.value not in ("booked", "started", "done"):
            continue
        when = when_text(window.start, window.end, timezone)
        state = {"started": "running", "done": "held"}.get(window.state.value, "booked")
        line = f":calendar: {window.stage.capitalize()} window {state}: {when}"
        if window.emergency:
            line += f" · :rotating_light: *emergency bypass*: {escape(window.bypass_reason)}"
        lines.append(context(line))
    return lines
