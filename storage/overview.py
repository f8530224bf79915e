"""Read-only queries across aggregates for the overview surfaces: App Home, calendar, report.

Nothing here writes. Systems are stored as JSON lists, so filtering by system happens in Python after a
query narrowed by time or state; the overview surfaces read at most a few hundred rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    TERMINAL,
    AdvisoryMatch,
    AdvisoryRecord,
    AdvisoryStatus,
    Change,
    Window,
    WindowState,
)

# Windows that still hold their slot (the calendar and the feed show these).
LIVE_WINDOWS: frozenset[WindowState] = frozenset(
    {WindowState.BOOKED, WindowState.STARTED, WindowState.AWAITING_DECISION, WindowState.DONE}
)
# Advisories that still ask for work.
OPEN_ADVISORIES: frozenset[AdvisoryStatus] = frozenset(
    {
        AdvisoryStatus.OPEN,
        AdvisoryStatus.CHANGE_REQUESTED,
        AdvisoryStatus.SNOOZED,
        AdvisoryStatus.REMEDIATION_PENDING,  # not fixed until the inventory proves it
        AdvisoryStatus.STILL_VULNERABLE,
    }
)


@dataclass(frozen=True)
class SystemAdvisory:
    """An advisory as it concerns one system."""

    system: str
    advisory: AdvisoryRecord


def _touches(systems: Sequence[str], wanted: Collection[str] | None) -> bool:
    return wanted is None or any(s in wanted for s in systems)


async def open_changes(
    session: AsyncSession, *, involving: str | None = None, systems: Collection[str] | None = None
) -> list[Change]:
    """Changes not yet in a terminal state, newest first; optionally only those a person requested,
    edited or is officer/operator of, or that touch one of ``systems`` (either condition matches)."""
    stmt = select(Change).where(Change.state.not_in(list(TERMINAL))).order_by(Change.id.desc())
    rows = list((await session.execute(stmt)).scalars())
    if involving is None and systems is None:
        return rows
    people = (lambda c: involving in (c.requester, c.last_editor, c.officer, c.operator)) if involving else None
    return [
        c for c in rows if (people is not None and people(c)) or (systems is not None and _touches(c.systems, systems))
    ]


async def all_changes(session: AsyncSession) -> list[Change]:
    """Every change, oldest first (the report counts outcomes over all of them)."""
    return list((await session.execute(select(Change).order_by(Change.id))).scalars())


async def windows_between(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    systems: Collection[str] | None = None,
    states: Collection[WindowState] = LIVE_WINDOWS,
) -> list[tuple[Window, Change]]:
    """Windows overlapping ``[start, end)`` in ``states`` with their change, by start time."""
    stmt = (
        select(Window, Change)
        .join(Change, Change.id == Window.change_id)
        .where(Window.start < end, Window.end > start, Window.state.in_(list(states)))
        .order_by(Window.start, Window.id)
    )
    rows = [(w, c) for w, c in (await session.execute(stmt)).all()]
    return [(w, c) for w, c in rows if _touches(w.systems, systems)]


async def system_advisories(
    session: AsyncSession,
    *,
    systems: Collection[str] | None = None,
    statuses: Collection[AdvisoryStatus] | None = None,
) -> list[SystemAdvisory]:
    """Advisories with at least one affected package on a system, one row per (system, advisory)."""
    if systems is not None and not systems:
        return []
    # DISTINCT over ids only: PostgreSQL has no equality for the JSON columns of the record
    pairs = select(AdvisoryMatch.system, AdvisoryMatch.advisory_id).where(AdvisoryMatch.status == "affected").distinct()
    if systems is not None:
        pairs = pairs.where(AdvisoryMatch.system.in_(list(systems)))
    found = sorted((str(system), int(aid)) for system, aid in (await session.execute(pairs)).all())
    if not found:
        return []
    stmt = select(AdvisoryRecord).where(AdvisoryRecord.id.in_({aid for _, aid in found}))
    if statuses is not None:
        stmt = stmt.where(AdvisoryRecord.status.in_(list(statuses)))
    records = {r.id: r for r in (await session.execute(stmt)).scalars()}
    return [SystemAdvisory(system, records[aid]) for system, aid in found if aid in records]


async def overdue_advisories(
    session: AsyncSession, *, now: datetime, systems: Collection[str] | None = None
) -> list[SystemAdvisory]:
    """Open advisories whose SLA due date has passed, most overdue first."""
    rows = await system_advisories(session, systems=systems, statuses=OPEN_ADVISORIES)
    late = [r for r in rows if r.advisory.due is not None and r.advisory.due < now]
    return sorted(late, key=lambda r: (r.advisory.due or now, r.system))


async def changes_by_id(session: AsyncSession, ids: Collection[int]) -> dict[int, Change]:
    """The changes with these ids."""
    if not ids:
        return {}
    stmt = select(Change).where(Change.id.in_(list(ids)))
    return {c.id: c for c in (await session.execute(stmt)).scalars()}
