"""Bulk statements of advisory ingestion: chunked lookups, executemany inserts, match swaps, EPSS snapshots.

A feed batch of 20,000 records costs a few dozen statements here, not several per record (issue 9).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AdvisoryAlias, AdvisoryMatch, AdvisoryRecord, EpssScore


def _table(model: type[Any]) -> Table:
    """The Core table of a model: plain executemany INSERTs skip the ORM's per-row bookkeeping."""
    return cast(Table, model.__table__)


CHUNK = 5000  # bound parameters per IN (...): under SQLite's 32766 and asyncpg's 32767


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def alias_owners(session: AsyncSession, ids: Iterable[str]) -> dict[str, int]:
    """Which record each of ``ids`` (advisory ids or aliases) already points at; unknown ids are absent."""
    out: dict[str, int] = {}
    for part in chunks(sorted(set(ids))):
        rows = await session.execute(
            select(AdvisoryAlias.alias, AdvisoryAlias.advisory_id).where(AdvisoryAlias.alias.in_(part))
        )
        out.update({str(a): int(i) for a, i in rows})
    return out


async def get_many(session: AsyncSession, advisory_ids: Iterable[int]) -> dict[int, AdvisoryRecord]:
    """Records by id (any number of ids)."""
    out: dict[int, AdvisoryRecord] = {}
    for part in chunks(sorted(set(advisory_ids))):
        rows = await session.execute(select(AdvisoryRecord).where(AdvisoryRecord.id.in_(part)))
        out.update({r.id: r for r in rows.scalars()})
    return out


async def add_aliases(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``{"alias", "advisory_id"}`` rows in one executemany (the caller knows they are new)."""
    for part in chunks(rows):
        await session.execute(insert(_table(AdvisoryAlias)), list(part))


async def swap_matches(session: AsyncSession, advisory_ids: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace the matches of ``advisory_ids`` with ``rows`` (column dicts with ``advisory_id``), in bulk."""
    for part in chunks(sorted(set(advisory_ids))):
        await session.execute(
            delete(AdvisoryMatch)
            .where(AdvisoryMatch.advisory_id.in_(part))
            .execution_options(synchronize_session=False)
        )
    for part in chunks(rows):
        await session.execute(insert(_table(AdvisoryMatch)), list(part))


async def replace_epss(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> int:
    """Replace the EPSS table with a new daily file's ``{"cve","epss","percentile","score_date"}`` rows."""
    await session.execute(delete(EpssScore).execution_options(synchronize_session=False))
    for part in chunks(rows):
        await session.execute(insert(_table(EpssScore)), list(part))
    return len(rows)


async def mark_digested(session: AsyncSession, advisory_ids: Sequence[int], *, now: datetime) -> None:
    """Mark records as reached through a digest (they get no post of their own)."""
    for part in chunks(list(advisory_ids)):
        await session.execute(
            update(AdvisoryRecord)
            .where(AdvisoryRecord.id.in_(part))
            .values(digested_at=now)
            .execution_options(synchronize_session=False)
        )


async def insert_records(session: AsyncSession, records: Sequence[AdvisoryRecord]) -> None:
    """Insert new (transient) records in one executemany and give each its id (looked up by primary_id).

    Faster than the ORM's unit of work, which inserts row by row when it must read back generated ids.
    """
    if not records:
        return
    table = AdvisoryRecord.__table__
    rows = []
    for record in records:
        state = inspect(record).dict
        row: dict[str, Any] = {}
        for col in table.columns:
            if col.key == "id":
                continue
            if col.key in state:
                row[col.key] = state[col.key]
            else:
                row[col.key] = col.default.arg if col.default is not None and col.default.is_scalar else None
        rows.append(row)
    for part in chunks(rows):
        await session.execute(insert(_table(AdvisoryRecord)), list(part))
    by_id = {r.primary_id: r for r in records}
    for part in chunks(sorted(by_id)):
        found = await session.execute(
            select(AdvisoryRecord.primary_id, AdvisoryRecord.id).where(AdvisoryRecord.primary_id.in_(part))
        )
        for primary_id, ident in found:
            by_id[primary_id].id = int(ident)
