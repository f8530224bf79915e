"""How far each change's Slack card is behind its control log (durable card refreshes, issue 14).

Every move of a change appends to the control log in the move's own transaction; the card is re-rendered
after the commit. ``changes.card_seq`` is the newest entry of the change the card showed when it was last
rendered (or handed to the outbox). A change whose log has a newer entry, old enough that its own refresh
should have landed, has a card that fell behind: the process died between the commit and ``chat.update``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry, Change


async def log_seq(session: AsyncSession, change_id: int) -> int | None:
    """The newest control-log entry of the change (None: it has none)."""
    stmt = select(func.max(AuditEntry.seq)).where(AuditEntry.change_id == change_id)
    value = (await session.execute(stmt)).scalar_one_or_none()
    return None if value is None else int(value)


async def mark_shown(session: AsyncSession, shown: Mapping[int, int]) -> None:
    """Record that each change's card shows its log up to ``shown[change_id]`` (never moves backwards)."""
    for change_id, seq in shown.items():
        await session.execute(
            update(Change)
            .where(Change.id == change_id, or_(Change.card_seq.is_(None), Change.card_seq < seq))
            .values(card_seq=seq)
            .execution_options(synchronize_session=False)
        )


async def settled_through(session: AsyncSession, *, after: int, before: datetime) -> int:
    """The newest log position past ``after`` up to which every entry is older than ``before`` (``after``
    itself when the first newer entry is already too young). Reads only the entries past ``after``."""
    young = select(func.min(AuditEntry.seq)).where(AuditEntry.seq > after, AuditEntry.at >= before).scalar_subquery()
    stmt = select(func.max(AuditEntry.seq)).where(AuditEntry.seq > after, or_(young.is_(None), AuditEntry.seq < young))
    value = (await session.execute(stmt)).scalar_one_or_none()
    return after if value is None else int(value)


async def behind(session: AsyncSession, *, after: int, through: int) -> list[int]:
    """Changes with a posted card and a log entry in (``after``, ``through``] that the card does not show."""
    newest = (
        select(AuditEntry.change_id, func.max(AuditEntry.seq).label("seq"))
        .where(AuditEntry.seq > after, AuditEntry.seq <= through, AuditEntry.change_id.is_not(None))
        .group_by(AuditEntry.change_id)
        .subquery()
    )
    stmt = (
        select(Change.id)
        .join(newest, newest.c.change_id == Change.id)
        .where(Change.thread_ts.is_not(None), or_(Change.card_seq.is_(None), Change.card_seq < newest.c.seq))
        .order_by(Change.id)
    )
    return list((await session.execute(stmt)).scalars())
