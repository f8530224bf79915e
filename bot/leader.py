"""One leader per scheduled job across replicas: PostgreSQL session advisory locks on a dedicated connection.

Every replica runs the scheduler; before a job runs, ``Leadership.run`` tries ``pg_try_advisory_lock`` for
that job's key on a connection that this process keeps open for that purpose (autocommit, outside the pool's
churn). The lock belongs to the connection's session, so it is kept from tick to tick by the replica that
got it, and released by PostgreSQL the moment that process dies or its connection drops: the next tick of
another replica (within one interval) takes the job over. Work inside a job is still claimed row by row with
compare-and-set, so a brief overlap during a takeover is harmless; leadership only stops N replicas from
doing the same sweep N times.

SQLite is one file on one host: one bot process per file (its write lock already serialises them), so
every job simply runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)
T = TypeVar("T")


def lock_key(job_id: str) -> int:
    """A stable signed 64-bit advisory-lock key for a job id (namespaced, so other apps' keys do not clash)."""
    return int.from_bytes(hashlib.sha256(f"patchwarden-job:{job_id}".encode()).digest()[:8], "big", signed=True)


class Leadership:
    """Decides, per job and per tick, whether this replica is the one that runs it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = engine.dialect.name != "postgresql"
        self._conn: AsyncConnection | None = None
        self._held: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def held(self) -> frozenset[str]:
        """The jobs this replica leads right now."""
        return frozenset(self._held)

    async def is_leader(self, job_id: str) -> bool:
        """True when this replica holds (or has just taken) the job's lock; False when another one does.

        A lost connection drops every lock it held: they are forgotten and retried on a fresh connection once.
        """
        if self._single:
            return True
        async with self._lock:
            for attempt in (1, 2):
                try:
                    conn = await self._connection()
                    if job_id in self._held:
                        await conn.execute(text("SELECT 1"))  # still our session, so still our lock
                        return True
                    got = (
                        await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(job_id)})
                    ).scalar_one()
                except (DBAPIError, SQLAlchemyError, OSError) as exc:
                    log.warning("leader connection lost (%s); locks dropped", type(exc).__name__)
                    await self._drop()
                    if attempt == 2:
                        return False
                    continue
                if got:
                    self._held.add(job_id)
                    log.info("this replica now leads job %s", job_id)
                return bool(got)
        return False

    async def run(self, job_id: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``fn`` if this replica leads ``job_id``; None when another replica does."""
        if not await self.is_leader(job_id):
            return None
        return await fn()

    async def close(self) -> None:
        """Give every lock up (closing the session releases them)."""
        async with self._lock:
            await self._drop()

    async def _connection(self) -> AsyncConnection:
        if self._conn is None or self._conn.closed:
            conn = await self._engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    async def _drop(self) -> None:
        self._held.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.invalidate()  # never back into the pool: the session (and its locks) must end
                await conn.close()
            except (DBAPIError, SQLAlchemyError, OSError):
                pass
