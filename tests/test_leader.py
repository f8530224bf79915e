"""Issue 14, sweeps once per cluster: on PostgreSQL one replica leads each job (session advisory lock); when
it dies another one takes over at its next tick. SQLite: every job runs (one process per file)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Harness
from sqlalchemy import text

from bot import scheduler
from bot.leader import Leadership, lock_key
from storage import db


@pytest.mark.parametrize("backend", ["postgres"])
async def test_one_leader_per_job_and_takeover_when_it_dies(database_url: str) -> None:
    engines = [db.create_engine(database_url) for _ in range(3)]
    a, b = Leadership(engines[0]), Leadership(engines[1])
    runs: dict[str, int] = {"a": 0, "b": 0}

    def count(name: str) -> Callable[[], Any]:
        async def job() -> None:
            runs[name] += 1

        return job

    try:
        for _ in range(5):  # both replicas tick; only the first to take the lock works, every time
            await a.run("sweep", count("a"))
            await b.run("sweep", count("b"))
        assert runs == {"a": 5, "b": 0}
        assert await b.is_leader("outbox") and not await a.is_leader("outbox")  # per job, not per process
        # replica a dies: its session ends (as when the process is killed), and so does its lock
        async with engines[2].connect() as admin:
            killed = await admin.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND ((classid::bigint << 32) | objid::bigint) = (:k)::bigint & x'ffffffffffffffff'::bigint"
                ),
                {"k": lock_key("sweep")},
            )
        assert killed == 1
        await b.run("sweep", count("b"))  # b's next tick takes over
        await a.run("sweep", count("a"))  # a, back on a fresh connection, is now a follower
        assert runs == {"a": 5, "b": 1} and "sweep" in b.held and not a.held
    finally:
        await a.close()
        await b.close()
        for engine in engines:
            await engine.dispose()


async def test_scheduled_jobs_run_on_the_leading_replica_only(harness_factory: Any, backend: str) -> None:
    first: Harness = await harness_factory()
    second: Harness = await harness_factory()
    assert first.deps.leader is not None and second.deps.leader is not None
    scheds = [scheduler.create_scheduler(h.deps) for h in (first, second)]
    try:
        await scheduler.run_jobs_now(scheds[0])
        await scheduler.run_jobs_now(scheds[1])
        jobs = {job.id for job in scheds[0].get_jobs()}
        if backend == "sqlite":  # single leader by the file: both run, nothing is held
            assert not first.deps.leader.held and await second.deps.leader.is_leader("sweep")
            return
        assert first.deps.leader.held == jobs and not second.deps.leader.held
        await first.deps.leader.close()  # a clean shutdown hands over at once
        await scheduler.run_jobs_now(scheds[1])
        assert second.deps.leader.held == jobs
    finally:
        await first.deps.leader.close()
        await second.deps.leader.close()
