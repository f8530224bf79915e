"""Self-test of the throw-away PostgreSQL server: it starts, serves SQLAlchemy, copes with load, cleans up."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Until tests/conftest.py registers this fixture for the whole suite, this module brings its own.
from .pg import ENABLE_ENV, PgServer, reap_leftovers, start_pg_server

BURST = 30


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def _database_exists(server: PgServer, name: str) -> bool:
    conn = await asyncpg.connect(server.dsn("postgres"))
    try:
        found = await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    return bool(found)


async def test_sqlalchemy_select_and_concurrent_burst(pg_server: PgServer) -> None:
    name = _unique("selftest")
    url = await pg_server.create_database(name)
    assert url == f"{pg_server.base_url}/{name}"
    engine: AsyncEngine = create_async_engine(url, pool_size=BURST, max_overflow=0)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1

        # Every session waits at the barrier holding its connection, so all 30 are open at once.
        barrier = asyncio.Barrier(BURST)
        seen: list[int] = []

        async def one_session() -> int:
            async with engine.connect() as conn:
                pid = (await conn.execute(text("select pg_backend_pid()"))).scalar_one()
                await barrier.wait()
                seen.append(
                    (
                        await conn.execute(
                            text("select count(*) from pg_stat_activity where datname = current_database()")
                        )
                    ).scalar_one()
                )
                await conn.execute(text("select pg_sleep(0.05)"))
                return int(pid)

        async with asyncio.timeout(30):
            pids = await asyncio.gather(*(one_session() for _ in range(BURST)))
        assert len(set(pids)) == BURST
        assert max(seen) >= BURST
    finally:
        await engine.dispose()
    await pg_server.drop_database(name)
    assert not await _database_exists(pg_server, name)


async def test_create_from_template_while_template_is_in_use(pg_server: PgServer) -> None:
    template, copy = _unique("tmpl"), _unique("copy")
    await pg_server.create_database(template)
    holder = await asyncpg.connect(pg_server.dsn(template))
    await holder.execute("CREATE TABLE migrated (id int PRIMARY KEY)")
    try:
        # The open session on the template would make CREATE DATABASE fail if it were not terminated.
        url = await pg_server.create_database(copy, template=template)
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("select count(*) from migrated"))).scalar_one() == 0
        finally:
            await engine.dispose()
        assert holder.is_closed() or not await _still_usable(holder)
    finally:
        await holder.close()
        await pg_server.drop_database(copy)
        await pg_server.drop_database(template)
    assert not await _database_exists(pg_server, template)


async def _still_usable(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("select 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return False
    return True


async def test_rejects_names_that_need_quoting(pg_server: PgServer) -> None:
    with pytest.raises(ValueError, match="not a plain database name"):
        await pg_server.create_database('x"; DROP DATABASE postgres; --')


def test_missing_binaries_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="initdb not found"):
        start_pg_server(tmp_path, bindir=tmp_path)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    if os.environ.get(ENABLE_ENV) == "0":
        pytest.skip(f"PostgreSQL tests disabled by {ENABLE_ENV}=0")
    # pytest's tmp_path is private to root, and the postgres user must be able to enter the folder.
    with tempfile.TemporaryDirectory(prefix="pgself-") as name:
        os.chmod(name, 0o711)
        yield Path(name)


def test_leftover_server_of_a_dead_run_is_reaped(shared_tmp: Path) -> None:
    server = start_pg_server(shared_tmp)
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        (server.run_dir / "owner.pid").write_text(str(dead.pid))
        assert reap_leftovers(shared_tmp, bindir=server.pg_ctl.parent) == [server.run_dir]
        assert not server.run_dir.exists()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=5).close()
    finally:
        server.stop()
