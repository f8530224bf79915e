"""Downtime announcements for a system's users: what, when (in each reader's local time), impact, contact.

Written for end users, not operators: plain words, no states or ids up front. Everything that comes
from a change request is escaped, so a title like ``<!channel>`` cannot mass-mention a users' channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.blocks.common import Block, clip, context, escape, mention, plain, section, slack_date
from storage.models import Change, Stage


class AnnouncementKind(StrEnum):
    """What happened to a maintenance window (also part of each outbox key)."""

    BOOKED = "booked"
    REMINDER = "reminder"
    STARTED = "started"
    COMPLETED = "completed"
    EXTENDED = "extended"
    ROLLED_BACK = "rolled_back"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"


_HEAD: dict[AnnouncementKind, tuple[str, str]] = {
    AnnouncementKind.BOOKED: (":calendar:", "Planned maintenance"),
    AnnouncementKind.REMINDER: (":bell:", "Maintenance starts soon"),
    AnnouncementKind.STARTED: (":construction:", "Maintenance has started"),
    AnnouncementKind.COMPLETED: (":white_check_mark:", "Maintenance completed"),
    AnnouncementKind.EXTENDED: (":hourglass_flowing_sand:", "Maintenance takes longer"),
    AnnouncementKind.ROLLED_BACK: (":rewind:", "Update undone"),
    AnnouncementKind.RESCHEDULED: (":calendar:", "Maintenance moved"),
    AnnouncementKind.CANCELLED: (":heavy_multiplication_x:", "Maintenance cancelled"),
}


def when_text(start: datetime, end: datetime, timezone: str) -> str:
    """``<start> – <end>`` in Slack date markup; the end shows only its time when on the same local day."""
    zone = ZoneInfo(timezone)
    same_day = start.astimezone(zone).date() == end.astimezone(zone).date()
    until = slack_date(end, fmt="{time}", tz=timezone) if same_day else slack_date(end, tz=timezone)
    return f"{slack_date(start, tz=timezone)} – {until}"


def _lead(
    kind: AnnouncementKind,
    *,
    what: str,
    when: str,
    end: str,
    previous: str,
    contact: str,
) -> str:
    lines = {
        AnnouncementKind.BOOKED: f"{what} will be updated *{when}*.",
        AnnouncementKind.REMINDER: f"Reminder: {what} will be updated *{when}*. Please save your work before.",
        AnnouncementKind.STARTED: f"The update of {what} has started. It should be finished by *{end}*.",
        AnnouncementKind.COMPLETED: (
            f"The update of {what} is finished; everything should work as usual. If something does not, tell {contact}."
        ),
        AnnouncementKind.EXTENDED: f"The update of {what} takes longer than planned; it should now end by *{end}*.",
        AnnouncementKind.ROLLED_BACK: (
            f"The update of {what} was undone: the system is back to its previous version. "
            f"{contact} will plan a new date."
        ),
        AnnouncementKind.RESCHEDULED: f"The update of {what} has moved to *{when}*"
        + (f" (it was planned for {previous})." if previous else "."),
        AnnouncementKind.CANCELLED: (f"The planned update of {what} ({when}) is cancelled; nothing changes for you."),
    }
    return lines[kind]


def announcement(
    kind: AnnouncementKind,
    *,
    change: Change,
    systems: Sequence[str],
    stage: Stage,
    timezone: str,
    start: datetime | None,
    end: datetime | None,
    emergency: bool = False,
    previous: tuple[datetime, datetime] | None = None,
    note: str = "",
) -> tuple[str, list[Block]]:
    """The fallback text and blocks of one announcement in one users' channel."""
    icon, title = _HEAD[kind]
    names = ", ".join(f"*{escape(s)}*" for s in systems)
    what = names if stage == "prod" else f"the test environment of {names}"
    when = when_text(start, end, timezone) if start and end else "now"
    until = slack_date(end, tz=timezone) if end else "the end of the window"
    before = when_text(previous[0], previous[1], timezone) if previous else ""
    contact = mention(change.officer)
    lead = _lead(kind, what=what, when=when, end=until, previous=before, contact=contact)
    downtime = escape(change.expected_downtime) or "not stated"
    about = escape(clip(change.title, 200))
    details = escape(clip(change.details, 500))
    body = [f"*What changes:* {about}"]
    if details:
        body.append(f"*Why:* {details}")
    if kind in (AnnouncementKind.BOOKED, AnnouncementKind.REMINDER, AnnouncementKind.RESCHEDULED):
        body.append(f"*Expected downtime:* {downtime}")
    body.append(f"*Questions:* {contact} (update officer)")
    blocks: list[Block] = [{"type": "header", "text": plain(f"{title}: {', '.join(systems)}"[:150])}]
    if emergency:
        blocks.append(section(":rotating_light: *Emergency change* — announced at short notice."))
    blocks.append(section(f"{icon} {lead}"))
    if note:
        blocks.append(section(f"*Note:* {escape(clip(note, 500))}"))
    blocks.append(section("\n".join(body)))
    blocks.append(context(f"Change {change.key} · times are shown in your own time zone"))
    text = f"{icon} {title}: {lead}"
    return clip(text, 3000), blocks


def title_of(kind: AnnouncementKind) -> str:
    """The announcement's headline (``Planned maintenance``, ``Maintenance moved``, ...)."""
    return _HEAD[kind][1]


def lead_sentence(kind: AnnouncementKind, *, what: str, when: str, end: str, previous: str, contact: str) -> str:
    """The one-sentence lead from already formatted parts (Slack uses markup; e-mail plain text)."""
    return _lead(kind, what=what, when=when, end=end, previous=previous, contact=contact)
