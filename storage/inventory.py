"""Installed packages per system, as imported from SBOMs (configured package lists live in the YAML)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import InventoryPackage

COLUMNS = ("ecosystem", "name", "version", "release", "purl")


async def replace(
    session: AsyncSession,
    *,
    system: str,
    source: str,
    packages: Sequence[Mapping[str, Any]],
    now: datetime,
) -> int:
    """Replace every stored package of ``system`` with ``packages`` (dicts with ``COLUMNS``); returns the count.

    An SBOM describes the whole system, so an import replaces the previous one rather than adding to it.
    """
    await session.execute(delete(InventoryPackage).where(InventoryPackage.system == system))
    for pkg in packages:
        session.add(
            InventoryPackage(
                system=system,
                source=source[:200],
                imported_at=now,
                **{k: pkg.get(k) for k in COLUMNS},
            )
        )
    await session.flush()
    return len(packages)


async def packages(session: AsyncSession, *, system: str | None = None) -> list[InventoryPackage]:
    """Stored packages (of one system, or of all), ordered by system and name."""
    stmt = select(InventoryPackage).order_by(
        InventoryPackage.system, InventoryPackage.ecosystem, InventoryPackage.name, InventoryPackage.version
    )
    if system is not None:
        stmt = stmt.where(InventoryPackage.system == system)
    return list((await session.execute(stmt)).scalars())


PackageRow = tuple[str, str, str, str, str | None, str | None]  # system, ecosystem, name, version, release, purl


async def package_rows(session: AsyncSession, *, page: int = 10_000) -> AsyncIterator[list[PackageRow]]:
    """Every stored package as plain tuples, ``page`` at a time (keyset on the id: nothing skipped).

    For the matcher's inventory: half a million ORM objects would hold ten times the memory of the tuples."""
    after = 0
    cols = (InventoryPackage.id, InventoryPackage.system, *(getattr(InventoryPackage, c) for c in COLUMNS))
    while True:
        stmt = select(*cols).where(InventoryPackage.id > after).order_by(InventoryPackage.id).limit(page)
        rows = list(await session.execute(stmt))
        if not rows:
            return
        yield [(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]
        after = rows[-1][0]
