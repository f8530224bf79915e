"""Announcement e-mails: ``multipart/mixed`` of a ``multipart/alternative`` (plain text + HTML) and,
for bookings, moves and cancellations, an ``.ics`` invitation (``text/calendar; method=...``).

The wording is the Slack announcement's (``bot.blocks.announcement``), with times written out in the
system's zone instead of Slack date markup. User text is HTML-escaped in the HTML part; the plain part
carries it as is (plain text has no markup to inject into).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from bot.blocks.announcement import AnnouncementKind, lead_sentence, title_of
from bot.blocks.common import clip
from bot.mail import ics

_BOLD = re.compile(r"\*([^*\n]+)\*")
ICS_METHOD = {
    AnnouncementKind.BOOKED: ics.Method.REQUEST,
    AnnouncementKind.RESCHEDULED: ics.Method.REQUEST,
    AnnouncementKind.EXTENDED: ics.Method.REQUEST,  # the end moved: update the event
    AnnouncementKind.CANCELLED: ics.Method.CANCEL,
}


@dataclass(frozen=True)
class Announcement:
    """What one announcement says, independent of the medium."""

    kind: AnnouncementKind
    change_id: int
    change_key: str
    title: str
    details: str
    expected_downtime: str
    systems: Sequence[str]
    stage: str
    timezone: str
    start: datetime | None
    end: datetime | None
    emergency: bool
    previous: tuple[datetime, datetime] | None
    note: str
    contact: str  # who to ask, already in words ("the update officer (ops@example.com)")


def local_time(when: datetime, timezone: str) -> str:
    """``2026-12-06 02:00 CET``: a wall-clock time in the system's zone, with the zone's abbreviation."""
    local = when.astimezone(ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or timezone)


def _span(start: datetime, end: datetime, timezone: str) -> str:
    zone = ZoneInfo(timezone)
    if start.astimezone(zone).date() == end.astimezone(zone).date():
        return f"{local_time(start, timezone)} – {end.astimezone(zone).strftime('%H:%M')}"
    return f"{local_time(start, timezone)} – {local_time(end, timezone)}"


def plain_lines(a: Announcement) -> list[str]:
    """The body as lines of plain text (``*bold*`` marks the few words the HTML part emphasises)."""
    names = ", ".join(a.systems)
    what = names if a.stage == "prod" else f"the test environment of {names}"
    when = _span(a.start, a.end, a.timezone) if a.start and a.end else "now"
    until = local_time(a.end, a.timezone) if a.end else "the end of the window"
    before = _span(a.previous[0], a.previous[1], a.timezone) if a.previous else ""
    lines = []
    if a.emergency:
        lines += ["*Emergency change* — announced at short notice.", ""]
    lines.append(lead_sentence(a.kind, what=what, when=when, end=until, previous=before, contact=a.contact))
    if a.note:
        lines += ["", f"Note: {clip(a.note, 500)}"]
    lines += ["", f"What changes: {clip(a.title, 200)}"]
    if a.details:
        lines.append(f"Why: {clip(a.details, 500)}")
    if a.kind in (AnnouncementKind.BOOKED, AnnouncementKind.REMINDER, AnnouncementKind.RESCHEDULED):
        lines.append(f"Expected downtime: {a.expected_downtime or 'not stated'}")
    lines += [f"Questions: {a.contact}", "", f"Change {a.change_key} · times are in {a.timezone}"]
    return lines


def _html(a: Announcement, lines: list[str]) -> str:
    body = "".join("<p>" + _BOLD.sub(r"<strong>\1</strong>", html.escape(line)) + "</p>" for line in lines if line)
    head = html.escape(f"{title_of(a.kind)}: {', '.join(a.systems)}")
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><h2>{head}</h2>{body}</body></html>'


def subject(a: Announcement) -> str:
    """``[patchwarden] Planned maintenance: web-shop, 2026-12-06 02:00 CET``."""
    when = f", {local_time(a.start, a.timezone)}" if a.start else ""
    flag = "EMERGENCY " if a.emergency else ""
    return clip(f"[patchwarden] {flag}{title_of(a.kind)}: {', '.join(a.systems)}{when}", 200).replace("\n", " ")


def wire(msg: EmailMessage) -> str:
    """The message as it goes over SMTP (CRLF line ends, 7-bit), for the outbox row."""
    return msg.as_bytes(policy=SMTP).decode("ascii")


def message(a: Announcement, *, sender: str, to: str, now: datetime) -> EmailMessage:
    """The whole message for one recipient (``Message-ID`` is new per message; the outbox sends it once)."""
    lines = plain_lines(a)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject(a)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Patchwarden-Change"] = a.change_key
    msg["X-Patchwarden-Kind"] = a.kind.value
    msg.set_content("\n".join(lines) + "\n", cte="quoted-printable")
    msg.add_alternative(_html(a, lines), subtype="html", cte="quoted-printable")
    method = ICS_METHOD.get(a.kind)
    if method is not None and a.start is not None and a.end is not None:
        calendar = ics.invitation(
            method=method,
            uid=ics.uid_for(a.change_id, a.stage),
            summary=f"Maintenance: {', '.join(a.systems)} ({a.change_key})",
            description="\n".join(plain_lines(a)).replace("*", ""),
            start=a.start,
            end=a.end,
            now=now,
            organizer=sender,
            attendee=to,
            location=", ".join(a.systems),
        )
        msg.add_attachment(
            calendar, maintype="text", subtype="calendar", filename="invite.ics", params={"method": method.value}
        )
    return msg
