"""The App Home tab: what waits for this person (approvals with buttons), their changes, windows, advisories."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks.card import status_text
from bot.blocks.common import ActionId, Block, clip, context, escape, plain, section, slack_date
from bot.config import Config
from bot.views import ChangeSnapshot
from storage.models import AdvisoryRecord, Change, Window

MAX_PER_SECTION = 10
MAX_HOME_BLOCKS = 100


@dataclass(frozen=True)
class NextWindow:
    """The next maintenance window occurrence of one system."""

    system: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class HomeData:
    """Everything the Home tab shows for one person."""

    user: str
    pending: list[ChangeSnapshot] = field(default_factory=list)
    mine: list[Change] = field(default_factory=list)
    windows: list[tuple[Window, Change]] = field(default_factory=list)
    next_windows: list[NextWindow] = field(default_factory=list)
    overdue: list[tuple[str, AdvisoryRecord]] = field(default_factory=list)


def _decision_buttons(snap: ChangeSnapshot) -> Block:
    change, stage = snap.change, snap.stage or "test"
    value = f"{change.id}:{stage}:{change.revision}"
    return {
        "type": "actions",
        "block_id": f"home_decide:{change.id}",
        "elements": [
            {
                "type": "button",
                "action_id": ActionId.APPROVE.value,
                "style": "primary",
                "value": value,
                "text": plain(f"Approve {stage}"),
            },
            {
                "type": "button",
                "action_id": ActionId.REJECT.value,
                "style": "danger",
                "value": value,
                "text": plain("Reject"),
            },
        ],
    }


def _more(items: list[Any]) -> list[Block]:
    extra = len(items) - MAX_PER_SECTION
    return [context(f"…and {extra} more")] if extra > 0 else []


def _zone(config: Config, systems: list[str]) -> str:
    return config.systems[systems[0]].timezone if systems and systems[0] in config.systems else "UTC"


def home_view(config: Config, data: HomeData) -> dict[str, Any]:
    """The ``home`` view published with views.publish."""
    blocks: list[Block] = [{"type": "header", "text": plain("Waiting for your approval")}]
    if not data.pending:
        blocks.append(context("Nothing waits for your approval. :tada:"))
    for snap in data.pending[:MAX_PER_SECTION]:
        c = snap.change
        blocks.append(
            section(
                f"*{c.key}* {escape(clip(c.title, 150))}\n{status_text(c)} · "
                f"{', '.join(f'`{escape(s)}`' for s in c.systems)} · requested by <@{c.requester}>"
                + (f" · expires {slack_date(c.approval_deadline)}" if c.approval_deadline else "")
            )
        )
        blocks.append(_decision_buttons(snap))
    blocks += _more(data.pending)

    blocks += [{"type": "divider"}, {"type": "header", "text": plain("Your open changes")}]
    if not data.mine:
        blocks.append(context("You have no open changes. Start one with `/patch request`."))
    else:
        lines = [
            f"• *{c.key}* {escape(clip(c.title, 120))} — {status_text(c)} ({', '.join(c.systems)})"
            for c in data.mine[:MAX_PER_SECTION]
        ]
        blocks.append(section("\n".join(lines)))
        blocks += _more(data.mine)

    blocks += [{"type": "divider"}, {"type": "header", "text": plain("Upcoming windows of your systems")}]
    if data.windows:
        lines = [
            f"• {slack_date(w.start, tz=_zone(config, list(w.systems)))} – "
            f"{slack_date(w.end, fmt='{time}', tz=_zone(config, list(w.systems)))} "
            f"*{c.key}* {w.stage} on {', '.join(w.systems)} ({w.state.value.replace('_', ' ')})"
            for w, c in data.windows[:MAX_PER_SECTION]
        ]
        blocks.append(section("\n".join(lines)))
        blocks += _more(data.windows)
    else:
        blocks.append(context("No change is booked on your systems in the next two weeks."))
    if data.next_windows:
        nxt = "; ".join(
            f"{n.system}: {slack_date(n.start, tz=_zone(config, [n.system]))}" for n in data.next_windows[:10]
        )
        blocks.append(context(f"Next maintenance windows — {nxt}"))

    blocks += [{"type": "divider"}, {"type": "header", "text": plain("Overdue advisories")}]
    if not data.overdue:
        blocks.append(context("No advisory on your systems is past its SLA."))
    else:
        lines = []
        for system, adv in data.overdue[:MAX_PER_SECTION]:
            due = slack_date(adv.due, fmt="{date_short}", tz=_zone(config, [system])) if adv.due else "—"
            kev = " · known exploited :rotating_light:" if adv.known_exploited else ""
            lines.append(
                f"• *{escape(adv.primary_id)}* ({escape(adv.severity)}) on `{escape(system)}` — due {due}{kev}"
            )
        blocks.append(section("\n".join(lines)))
        blocks += _more(data.overdue)
    blocks.append(context("Refreshed whenever something here changes. `/patch help` lists every command."))
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}
