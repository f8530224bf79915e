"""The weekly CAB digest's text (issue 12, item 7): what waits, what will breach, what collides, what freezes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.blocks.common import Block, clip, escape, link, section, slack_date


@dataclass(frozen=True)
class Item:
    """One change in the digest: its key, title, state, priority label and thread link."""

    key: str
    title: str
    state: str
    priority: str
    url: str | None
    detail: str = ""


@dataclass(frozen=True)
class Digest:
    """Everything the digest says, each list already in its order."""

    occurrence: datetime
    until: datetime
    pending: Sequence[Item]
    breaching: Sequence[Item]
    conflicts: Sequence[str]
    freezes: Sequence[str]


def _line(item: Item) -> str:
    name = link(item.url, item.key) if item.url else escape(item.key)
    detail = f" — {escape(item.detail)}" if item.detail else ""
    return f"• {name} *{escape(item.priority)}* {escape(clip(item.title, 80))} ({escape(item.state)}){detail}"


def render(d: Digest) -> tuple[str, list[Block]]:
    """The fallback text and the blocks (sections of at most 3000 characters, as Slack allows)."""
    head = f":calendar: *CAB digest* for {slack_date(d.occurrence)}, looking ahead to {slack_date(d.until)}"
    parts = [head]
    if d.pending:
        parts.append(f"*Pending approval ({len(d.pending)}), by priority:*\n" + "\n".join(_line(i) for i in d.pending))
    else:
        parts.append("*Nothing pending*: no change is waiting for approval.")
    if d.breaching:
        lines = "\n".join(_line(i) for i in d.breaching)
        parts.append(f"*SLA breaches before the booked window ({len(d.breaching)}):*\n{lines}")
    else:
        parts.append("No booked change will breach its SLA before its window.")
    parts.append(
        f"*Conflicts ahead ({len(d.conflicts)}):*\n" + "\n".join(d.conflicts) if d.conflicts else "No conflicts ahead."
    )
    parts.append(f"*Freezes ahead ({len(d.freezes)}):*\n" + "\n".join(d.freezes) if d.freezes else "No freezes ahead.")
    blocks: list[Block] = []
    for part in parts:
        chunk = ""
        for line in part.split("\n"):  # long lists continue in the next section rather than being cut off
            if len(chunk) + len(line) + 1 > 2900:
                blocks.append(section(chunk))
                chunk = ""
            chunk = f"{chunk}\n{line}" if chunk else line
        blocks.append(section(chunk))
    pending = f"{len(d.pending)} pending" if d.pending else "nothing pending"
    return f"CAB digest: {pending}, {len(d.breaching)} SLA breach(es) ahead", blocks
