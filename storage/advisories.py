"""Queries and compare-and-set updates for advisories, their aliases and matches, feed state and quarantine."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.advisory_bulk import chunks
from storage.models import (
    AdvisoryAlias,
    AdvisoryMatch,
    AdvisoryRecord,
    AdvisoryStatus,
    EpssScore,
    FeedState,
    QuarantinedDocument,
)


async def get(session: AsyncSession, advisory_id: int, *, lock: bool = False) -> AdvisoryRecord | None:
    """Load an advisory record; ``lock`` takes a row lock (PostgreSQL) for the rest of the transaction."""
    stmt = select(AdvisoryRecord).where(AdvisoryRecord.id == advisory_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def owners_of(session: AsyncSession, ids: Iterable[str]) -> list[int]:
    """Record ids that any of ``ids`` (advisory ids or aliases) already points at, lowest first."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = await session.execute(select(AdvisoryAlias.advisory_id).where(AdvisoryAlias.alias.in_(wanted)).distinct())
    return sorted(int(r) for r in rows.scalars())


async def add(session: AsyncSession, record: AdvisoryRecord) -> AdvisoryRecord:
    """Insert a new record and assign its id."""
    session.add(record)
    await session.flush()
    return record


async def claim_aliases(session: AsyncSession, advisory_id: int, aliases: Iterable[str]) -> list[str]:
    """Point every alias not yet owned by another record at ``advisory_id``; returns the ones added."""
    wanted = sorted(set(aliases))
    if not wanted:
        return []
    owned = set((await session.execute(select(AdvisoryAlias.alias).where(AdvisoryAlias.alias.in_(wanted)))).scalars())
    added = [a for a in wanted if a not in owned]
    for alias in added:
        session.add(AdvisoryAlias(alias=alias, advisory_id=advisory_id))
    await session.flush()
    return added


async def replace_matches(
    session: AsyncSession, advisory_id: int, rows: Sequence[Mapping[str, Any]]
) -> list[AdvisoryMatch]:
    """Replace the advisory's matches with ``rows`` (dicts of AdvisoryMatch columns without ids)."""
    await session.execute(delete(AdvisoryMatch).where(AdvisoryMatch.advisory_id == advisory_id))
    seen: set[tuple[str, str, str, str]] = set()
    out: list[AdvisoryMatch] = []
    for row in rows:
        key = (row["system"], row["ecosystem"], row["package"], row["installed"])
        if key in seen:  # the unique constraint: one row per installed package version
            continue
        seen.add(key)
        match = AdvisoryMatch(advisory_id=advisory_id, **row)
        session.add(match)
        out.append(match)
    await session.flush()
    return out


# A match a vendor's VEX statement cleared (stored with its justification, exported as VEX): it is kept, but
# it is not work: no post, digest, reminder or escalation counts it unless the caller asks for it.
NOT_AFFECTED = "not_affected"


def _live_advisory_ids(system: str | None = None) -> Select[int]:
    """Subquery: ids of advisories with a match that is work (affected or needing triage), on ``system``."""
    stmt = select(AdvisoryMatch.advisory_id).where(AdvisoryMatch.status != NOT_AFFECTED)
    return stmt.where(AdvisoryMatch.system == system) if system is not None else stmt


async def matches(
    session: AsyncSession, advisory_ids: Iterable[int], *, not_affected: bool = False
) -> list[AdvisoryMatch]:
    """Matches of the given advisories, ordered by advisory, system and package (any number of ids).

    Matches a vendor cleared (``status`` not_affected) only with ``not_affected=True``."""
    out: list[AdvisoryMatch] = []
    for ids in chunks(sorted(set(advisory_ids))):
        stmt = (
            select(AdvisoryMatch)
            .where(AdvisoryMatch.advisory_id.in_(ids))
            .order_by(AdvisoryMatch.advisory_id, AdvisoryMatch.system, AdvisoryMatch.package)
        )
        if not not_affected:
            stmt = stmt.where(AdvisoryMatch.status != NOT_AFFECTED)
        out.extend((await session.execute(stmt)).scalars())
    return out


async def list_records(
    session: AsyncSession,
    *,
    statuses: Sequence[AdvisoryStatus] | None = None,
    system: str | None = None,
    due_before: datetime | None = None,
    with_matches: bool = False,
    limit: int | None = None,
) -> list[AdvisoryRecord]:
    """Records, soonest due first (undated last), filtered by status, affected system or due time.

    No cap unless ``limit`` is given; loops over many records should use :func:`record_pages`.
    """
    stmt = select(AdvisoryRecord).order_by(AdvisoryRecord.due.is_(None), AdvisoryRecord.due, AdvisoryRecord.id)
    if statuses is not None:
        stmt = stmt.where(AdvisoryRecord.status.in_(list(statuses)))
    if due_before is not None:
        stmt = stmt.where(AdvisoryRecord.due.is_not(None), AdvisoryRecord.due <= due_before)
    if system is not None or with_matches:
        stmt = stmt.where(AdvisoryRecord.id.in_(_live_advisory_ids(system)))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


async def all_records(session: AsyncSession) -> list[AdvisoryRecord]:
    """Every record (for a full re-match after an inventory change)."""
    return list((await session.execute(select(AdvisoryRecord).order_by(AdvisoryRecord.id))).scalars())


async def linked_to_change(session: AsyncSession, change_id: int) -> list[AdvisoryRecord]:
    """Records whose remediation is the given change."""
    stmt = select(AdvisoryRecord).where(AdvisoryRecord.change_id == change_id).order_by(AdvisoryRecord.id)
    return list((await session.execute(stmt)).scalars())


async def compare_and_set(
    session: AsyncSession,
    record: AdvisoryRecord,
    *,
    expected: AdvisoryStatus,
    now: datetime,
    **fields: Any,
) -> bool:
    """``UPDATE advisories SET ... WHERE id=:id AND status=:expected``; False when someone else won."""
    result = await session.execute(
        update(AdvisoryRecord)
        .where(AdvisoryRecord.id == record.id, AdvisoryRecord.status == expected)
        .values(updated_at=now, **fields)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await session.refresh(record)
    return True


async def claim_field(session: AsyncSession, advisory_id: int, column: str, value: Any) -> bool:
    """Set ``column`` from NULL to ``value`` (a one-shot claim: first post, escalation); False if taken."""
    col = getattr(AdvisoryRecord, column)
    result = await session.execute(
        update(AdvisoryRecord)
        .where(AdvisoryRecord.id == advisory_id, col.is_(None))
        .values({column: value})
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def set_fields(session: AsyncSession, advisory_id: int, **fields: Any) -> None:
    """Plain update of non-contended columns (message ts, reminder time)."""
    await session.execute(
        update(AdvisoryRecord)
        .where(AdvisoryRecord.id == advisory_id)
        .values(**fields)
        .execution_options(synchronize_session=False)
    )


# ---- feed state -----------------------------------------------------------------------------------------


async def feed_cursor(session: AsyncSession, feed: str) -> dict[str, str]:
    """The feed's stored cursor (empty before its first poll)."""
    row = await session.get(FeedState, feed)
    return {str(k): str(v) for k, v in (row.cursor if row else {}).items()}


async def save_feed_state(
    session: AsyncSession, feed: str, *, cursor: Mapping[str, str] | None, now: datetime, error: str = ""
) -> None:
    """Store the cursor (unless None: a failed poll keeps the old one) and how the poll went."""
    row = await session.get(FeedState, feed, with_for_update=True)
    if row is None:
        row = FeedState(feed=feed, cursor={})
        session.add(row)
    if cursor is not None:
        row.cursor = dict(cursor)
    row.last_polled_at = now
    row.last_error = error
    await session.flush()


# ---- quarantine -----------------------------------------------------------------------------------------


async def quarantine(
    session: AsyncSession, *, source: str, document: str, reason: str, now: datetime
) -> QuarantinedDocument | None:
    """Record a refused document once; None when this (source, document, reason) is already known."""
    reason_hash = hashlib.sha256(reason.encode()).hexdigest()
    document = document[:500]
    existing = await session.execute(
        select(QuarantinedDocument.id).where(
            QuarantinedDocument.source == source,
            QuarantinedDocument.document == document,
            QuarantinedDocument.reason_hash == reason_hash,
        )
    )
    if existing.first() is not None:
        return None
    row = QuarantinedDocument(
        source=source, document=document, reason=reason, reason_hash=reason_hash, at=now, reported=False
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a second replica recorded it a moment ago
        return None
    return row


async def unreported_quarantine(session: AsyncSession) -> list[QuarantinedDocument]:
    """Refused documents not yet reported, oldest first."""
    stmt = select(QuarantinedDocument).where(QuarantinedDocument.reported.is_(False)).order_by(QuarantinedDocument.id)
    return list((await session.execute(stmt)).scalars())


async def claim_quarantine_report(session: AsyncSession, row_id: int) -> bool:
    """Mark a quarantined document reported (compare-and-set: exactly one replica reports it)."""
    result = await session.execute(
        update(QuarantinedDocument)
        .where(QuarantinedDocument.id == row_id, QuarantinedDocument.reported.is_(False))
        .values(reported=True)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# ---- bulk ingestion and paging (issue 9: nothing dropped, fast ingestion) --------------------------------


async def record_pages(
    session: AsyncSession,
    *,
    statuses: Sequence[AdvisoryStatus] | None = None,
    with_matches: bool = False,
    system: str | None = None,
    page: int = 500,
) -> AsyncIterator[list[AdvisoryRecord]]:
    """Every record that passes the filters, ``page`` at a time, by id (keyset pagination: nothing skipped)."""
    after = 0
    while True:
        stmt = select(AdvisoryRecord).where(AdvisoryRecord.id > after).order_by(AdvisoryRecord.id).limit(page)
        if statuses is not None:
            stmt = stmt.where(AdvisoryRecord.status.in_(list(statuses)))
        if system is not None or with_matches:
            stmt = stmt.where(AdvisoryRecord.id.in_(_live_advisory_ids(system)))
        rows = list((await session.execute(stmt)).scalars())
        if not rows:
            return
        yield rows
        after = rows[-1].id


async def match_pages(
    session: AsyncSession, *, system: str | None = None, page: int = 1000
) -> AsyncIterator[list[tuple[AdvisoryMatch, AdvisoryRecord]]]:
    """Every match with its record (vendor-cleared ones too), ``page`` at a time (keyset on the match id)."""
    after = 0
    while True:
        stmt = (
            select(AdvisoryMatch, AdvisoryRecord)
            .join(AdvisoryRecord, AdvisoryRecord.id == AdvisoryMatch.advisory_id)
            .where(AdvisoryMatch.id > after)
            .order_by(AdvisoryMatch.id)
            .limit(page)
        )
        if system is not None:
            stmt = stmt.where(AdvisoryMatch.system == system)
        rows = [(m, r) for m, r in (await session.execute(stmt))]
        if not rows:
            return
        yield rows
        after = rows[-1][0].id


async def quarantine_pages(session: AsyncSession, *, page: int = 1000) -> AsyncIterator[list[QuarantinedDocument]]:
    """Every quarantined document, oldest first, ``page`` at a time."""
    after = 0
    while True:
        stmt = select(QuarantinedDocument).where(QuarantinedDocument.id > after).order_by(QuarantinedDocument.id)
        rows = list((await session.execute(stmt.limit(page))).scalars())
        if not rows:
            return
        yield rows
        after = rows[-1].id


async def epss_for(session: AsyncSession, cves: Iterable[str]) -> dict[str, tuple[float, float]]:
    """``{cve: (epss, percentile)}`` for the given CVE ids that have a score."""
    out: dict[str, tuple[float, float]] = {}
    for part in chunks(sorted({c for c in cves if c.startswith("CVE-")})):
        rows = await session.execute(
            select(EpssScore.cve, EpssScore.epss, EpssScore.percentile).where(EpssScore.cve.in_(part))
        )
        out.update({str(c): (float(e), float(p)) for c, e, p in rows})
    return out
