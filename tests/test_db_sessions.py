"""The session factory: reading transactions never wait for a writer; an interaction key is claimed by the
first writing transaction of its listener and rolls back with it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from storage import db, deliveries
from storage.models import SlackDelivery

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


async def test_a_reading_transaction_does_not_wait_for_a_writer(database_url: str) -> None:
    engine = db.create_engine(database_url)
    sessions = db.session_factory(engine)
    try:
        async with sessions.begin() as writer:
            await writer.execute(text("UPDATE changes SET title = title"))  # holds the write lock (SQLite)
            await writer.execute(text("INSERT INTO slack_deliveries (key, at) VALUES ('w', :at)"), {"at": NOW})
            async with asyncio.timeout(5), sessions.read() as reader:  # same task: a begin() would wait forever
                count = await reader.scalar(select(func.count()).select_from(SlackDelivery))
            assert count == 0  # the last commit, not the writer's uncommitted row
    finally:
        await engine.dispose()


async def test_the_first_writing_transaction_claims_the_pending_key(database_url: str) -> None:
    engine = db.create_engine(database_url)
    sessions = db.session_factory(engine)

    async def keys() -> int:
        async with sessions.read() as s:
            return int(await s.scalar(select(func.count()).select_from(SlackDelivery)) or 0)

    try:
        token = deliveries.PENDING.set(deliveries.PendingDelivery(key="click:1:U1:a", at=NOW))
        try:
            async with sessions.read():
                pass
            assert await keys() == 0  # a read claims nothing
            with pytest.raises(RuntimeError):
                async with sessions.begin():
                    raise RuntimeError("the listener's work failed")
            assert await keys() == 0  # rolled back with the work
            async with sessions.begin():
                pass
            assert await keys() == 1
            async with sessions.begin():  # later transactions of the same listener claim nothing more
                pass
        finally:
            deliveries.PENDING.reset(token)
        token = deliveries.PENDING.set(deliveries.PendingDelivery(key="click:1:U1:a", at=NOW))
        try:
            with pytest.raises(deliveries.AlreadyDelivered):
                async with sessions.begin():
                    pytest.fail("a replay's work must not run")
        finally:
            deliveries.PENDING.reset(token)
    finally:
        await engine.dispose()
