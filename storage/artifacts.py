"""Queries and updates for the patch artifacts a change references."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Artifact


async def add(session: AsyncSession, artifact: Artifact) -> Artifact:
    """Insert an artifact reference and assign its id."""
    session.add(artifact)
    await session.flush()
    return artifact


async def for_change(session: AsyncSession, change_id: int) -> list[Artifact]:
    """The change's artifacts in the order they were attached."""
    stmt = select(Artifact).where(Artifact.change_id == change_id).order_by(Artifact.id)
    return list((await session.execute(stmt)).scalars())


async def set_result(session: AsyncSession, artifact_id: int, **fields: Any) -> None:
    """Record a verification outcome (status, verified path and hash, detail)."""
    await session.execute(
        update(Artifact).where(Artifact.id == artifact_id).values(**fields).execution_options(synchronize_session=False)
    )


async def delete(session: AsyncSession, artifact_id: int) -> None:
    """Remove an artifact reference."""
    await session.execute(sql_delete(Artifact).where(Artifact.id == artifact_id))
