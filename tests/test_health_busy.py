"""/healthz answers within its own timeout and says "database busy" while another process holds the lock."""

from __future__ import annotations

import sqlite3
import time

import pytest
from conftest import Harness

from bot import app as app_module


async def test_health_says_busy_while_another_process_holds_the_sqlite_write_lock(
    harness: Harness, backend: str, database_url: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the write lock is SQLite's")
    h = harness
    health = h.endpoint.replace("/slack/events", "/healthz")
    async with h.http.get(health) as resp:
        assert resp.status == 200
    other = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing (a CLI import, a second bot)
        began = time.monotonic()
        async with h.http.get(health) as resp:
            body = await resp.json()
            status = resp.status
        elapsed = time.monotonic() - began
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert status == 503 and body["database"] == "busy", body
    assert elapsed < app_module.HEALTH_TIMEOUT + 1.0, elapsed
