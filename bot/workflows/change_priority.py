"""Where a change's priority comes from: the tiers of the advisory matches it remediates.

A change is linked to advisories (``AdvisoryRecord.change_id``); each advisory has one match per affected
system, and each match carries the tier the policy gave it (``policy.priority``, see
:mod:`bot.advisories.priority`). The change's priority is the most urgent tier among the matches of its
linked advisories *on the change's own systems*, most urgent meaning the earliest SLA due date (a tier's
urgency is what its ``sla_days`` make of it). A change that addresses no advisory has no priority (None).

Shared by step-up (``policy.step_up.when.priority``) and auto-approval (``policy.auto_approve[].priority``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import advisories
from storage.models import Change

_LAST = datetime.max.replace(tzinfo=None)


async def change_priority(session: AsyncSession, change: Change) -> str | None:
    """The most urgent tier of the change's linked advisories' matches on its systems, or None."""
    records = await advisories.linked_to_change(session, change.id)
    if not records:
        return None
    systems = set(change.systems)
    rows = [m for m in await advisories.matches(session, [r.id for r in records]) if m.priority and m.system in systems]
    if not rows:
        return None
    # earliest due first; a match without a due date comes after every dated one; ties keep the stored order
    rows.sort(key=lambda m: m.due.replace(tzinfo=None) if m.due is not None else _LAST)
    return rows[0].priority
