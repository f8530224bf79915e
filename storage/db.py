"""Engine and session factory. SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE transactions.

BEGIN IMMEDIATE makes a SQLite transaction take the write lock up front, so two writers (two listeners or
two bot processes on one file) serialise instead of failing with a stale-snapshot error halfway through a
compare-and-set. PostgreSQL uses row locks (``SELECT ... FOR UPDATE``) for the same purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage import deliveries

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "patchwarden_read_only"  # execution option of the connection of a Sessions.read() transaction


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` (sqlite+aiosqlite or postgresql+asyncpg) with patchwarden's settings."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN (so it can be BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # a reading transaction (Sessions.read) takes no write lock: WAL readers never block the writer
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


class Sessions(async_sessionmaker[AsyncSession]):
    """Sessions that keep loaded objects usable after commit, and claim a pending interaction key.

    When the running task handles a Slack interaction (``deliveries.PENDING`` is set and not yet claimed),
    the first transaction it opens records the interaction's key before anything else: the key commits or
    rolls back with that transaction's work. A replay raises ``deliveries.AlreadyDelivered`` there.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        pending = deliveries.PENDING.get()
        claim = pending is not None and not pending.claimed
        if pending is None or not claim:
            async with self._transaction() as session:
                yield session
            return
        pending.claimed = True  # before any await: a sibling task's transaction must not claim it too
        try:
            async with self._transaction() as session:
                if not await deliveries.first(session, key=pending.key, now=pending.at):
                    raise deliveries.AlreadyDelivered(pending.key)
                yield session
        except deliveries.AlreadyDelivered:
            raise
        except BaseException:
            pending.claimed = False  # rolled back with the work: a retry of the same request is not a replay
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A transaction that only reads (a Home tab, a card's snapshot). It never claims an interaction key,
        and on SQLite it neither queues on the in-process writer lock nor takes the write lock: a WAL reader
        sees the last commit and never holds up a writer. Do not write in it."""
        async with super().begin() as session:
            await session.connection(execution_options={READ_ONLY: True})
            yield session

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with super().begin() as session:
            yield session


class SerialSessions(Sessions):
    """SQLite sessions whose transactions queue, first come first served, on an in-process lock.

    SQLite has one writer at a time. Without the lock, waiting writers spin in SQLite's busy handler, which
    sleeps in growing steps (up to 100 ms) and serves them in no particular order: under 50 concurrent clicks
    that turned a 10 ms transaction into multi-second tail latencies. Other processes on the same file still
    wait through the busy timeout. Do not nest ``begin()`` in one task (it would wait for itself).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._lock, super()._transaction() as session:
            yield session


def session_factory(engine: AsyncEngine) -> Sessions:
    """Sessions that keep loaded objects usable after commit (serialised in-process on SQLite)."""
    if engine.dialect.name == "sqlite":
        return SerialSessions(engine)
    return Sessions(engine)


def is_sqlite(session_or_engine: AsyncSession | AsyncEngine) -> bool:
    """True when the backing database is SQLite."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, AsyncSession) else session_or_engine
    return bind.dialect.name == "sqlite"
