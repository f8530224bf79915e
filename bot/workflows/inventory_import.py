"""After ``patchwarden inventory import``: prove pending remediations, and notice unrecorded changes (drift).

1. The import is evidence: every advisory ``remediation_pending`` on the system is judged now
   (``remediation.prove``); the verdict goes to the change's thread (and the owner when still vulnerable).
2. Drift (BSI M 2.421: changes only through change management): when a package version changed on a system
   that had no change completed within ``policy.drift_window`` (default 24h), the owner is told about the
   "unrecorded change", with a button to link it to a change (the link is written to the control log).

Messages go through the outbox (the command line has no Slack client of its own); the sender delivers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks.common import escape
from bot.blocks.drift import drift_blocks
from bot.config import Config
from bot.workflows import lifecycle, remediation
from storage import changes, outbox
from storage import overview as overview_store
from storage.models import ChangeState

Versions = Mapping[tuple[str, str], str]  # (ecosystem, name) -> version


def drifted(before: Versions, after: Versions) -> list[str]:
    """``name old → new`` for every package whose version changed, appeared or went away."""
    out = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new:
            out.append(f"{key[1]} {old or '(none)'} → {new or '(removed)'}")
    return out


async def imported(
    session: AsyncSession, *, config: Config, system: str, before: Versions, after: Versions, now: datetime
) -> tuple[list[remediation.Outcome], list[str]]:
    """Steps 1–2 for one import; returns the verdicts and the drifted packages (both already queued)."""
    outcomes = await remediation.prove(session, config=config, system=system, now=now)
    owner = config.systems[system].owner
    for o in outcomes:
        text = remediation.outcome_text(o)
        change = await changes.get(session, o.change_id) if o.change_id else None
        if change is not None and change.thread_ts:
            await outbox.enqueue(
                session, key=f"verdict:{o.record.id}:{now.isoformat()}", channel=change.channel or "",
                thread_ts=change.thread_ts, text=text, now=now, change_id=change.id,
            )  # fmt: skip
        if not o.remediated:
            await outbox.enqueue(session, key=f"verdict-owner:{o.record.id}:{now.isoformat()}", channel=owner,
                                 text=text, now=now)  # fmt: skip
    lines = drifted(before, after)
    if not before or not lines:
        return outcomes, []
    since = now - config.policy.drift_window
    recent = [
        c
        for c in await overview_store.all_changes(session)
        if system in c.systems and c.state is ChangeState.COMPLETED and c.updated_at >= since
    ]
    if recent:
        return outcomes, []
    await lifecycle.log(
        session, config=config, now=now, actor="patchwarden", action="inventory_drift", system=system,
        packages=lines,  # every one: the note shows 20 and counts the rest
    )  # fmt: skip
    blocks = drift_blocks(system, lines, owner=owner)
    await outbox.enqueue(session, key=f"drift:{system}:{now.isoformat()}", channel=owner,
                         text=f"Unrecorded change on {system}", blocks=blocks, now=now)  # fmt: skip
    return outcomes, lines


async def link(session: AsyncSession, *, config: Config, system: str, change_id: int, user: str, now: datetime) -> str:
    """The owner links an unrecorded change on ``system`` to a change (audited); returns the answer."""
    change = await lifecycle.load(session, change_id)
    if system not in change.systems:
        return f"{change.key} does not touch `{escape(system)}`; pick a change of that system."
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="inventory_drift_linked", change=change, system=system
    )
    return f"The unrecorded change on `{escape(system)}` is linked to {change.key} in the control log."
