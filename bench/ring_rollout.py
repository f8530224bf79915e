"""Benchmark: a ring rollout to 1,000 dry-run targets with ``max_parallel: 50`` through the real runner path.

Shapes, all in the same process on the same database, each repeated (median, min-max):

* baseline: the dry-run executor's apply then verify per target, 50 at a time, no runner at all;
* ``runner.run_steps`` apply then verify on 1,000 systems of one dry-run target each, at most 50 at a time
  (the path without rings; no database, like ``bench/deploy_targets.py``);
* ``rings.walk``: one system whose environment has the 1,000 targets, one ring and three rings (10/90/900,
  gates), ``max_parallel: 50``: one executor call per target, ring progress written to the deployment row;
* ``runner.execute``, end to end: start (``deployment.start``, ``--now`` on an emergency change), the rings,
  results on the row, reboots, verify state, success, locks released, the control log: three rings.

Overhead per target = (shape - baseline) / targets, in CPU time of the process (the machine is shared);
the baseline is the executor calls alone (apply then verify per target through one semaphore of 50).
SQLite (a migrated file) and, unless ``--backends sqlite``, PostgreSQL (a throw-away server from
``tests/support/pg.py``).
Run: ``python bench/ring_rollout.py [--targets 1000] [--parallel 50] [--repeat 5] [--backends sqlite,postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.config import parse_config
from bot.deps import Clock
from bot.executors import registry
from bot.executors.base import DeploymentRequest, Step
from bot.workflows import deployment as flow
from bot.workflows import rings, runner
from storage import db, deployments, migrate
from storage.models import Change, ChangeClass, ChangeState, Deployment, DeploymentStatus

REPO = Path(__file__).resolve().parent.parent
OWNER = "U0OWNER1"


def config_of(systems: dict[str, Any]) -> Any:
    return parse_config(
        {
            "slack": {"approvals_channel": "C0APPROVALS"},
            "groups": {"security": ["U0SEC1"], "operators": ["U0OPS1"]},
            "systems": systems,
            "policy": {
                "version": 1, "operators": "operators",
                "stages": {"test": [{"role": "owner"}], "prod": [{"role": "owner"}]},
            },
        }
    )  # fmt: skip


def ringed(hosts: list[str], parallel: int, three: bool) -> Any:
    a, b = max(1, len(hosts) // 100), max(2, len(hosts) // 10)
    rings_ = (
        [
            {"name": "canary", "targets": hosts[:a], "gate": {"min_success": 1}},
            {"name": "half", "targets": hosts[a:b], "gate": {"min_success_rate": 0.9}},
            {"name": "rest", "targets": hosts[b:]},
        ]
        if three
        else [{"name": "all", "targets": hosts}]
    )
    env = {"executor": "dry-run", "rings": rings_, "max_parallel": parallel}
    return config_of({"big": {"owner": OWNER, "environments": {"test": env}}})


async def bare(n: int, parallel: int) -> Callable[[], Awaitable[None]]:
    """The executor calls alone: apply then verify per target through one semaphore, no runner, no rings."""
    executor = registry.create("dry-run", {}, key_path="bench")
    hosts = [f"web-{i:04}" for i in range(n)]

    async def one(gate: asyncio.Semaphore, host: str, step: Step) -> bool:
        request = DeploymentRequest(
            run_id="CHG-1-bench", change_key="CHG-1", stage="test", system="big", targets=(host,)
        )
        async with gate:
            return (await (executor.apply if step is Step.APPLY else executor.verify)(request)).ok

    async def go() -> None:
        gate = asyncio.Semaphore(parallel)
        for step in (Step.APPLY, Step.VERIFY):
            assert all(await asyncio.gather(*(one(gate, h, step) for h in hosts)))

    return go


async def baseline(n: int, parallel: int) -> Callable[[], Awaitable[None]]:
    systems = {f"s{i:04d}": {"owner": OWNER, "environments": {"test": {"executor": "dry-run", "targets": [f"h-{i}"]}}}
               for i in range(n)}  # fmt: skip
    config = config_of(systems)
    executors = registry.Executors.validated(config)
    targets = tuple(flow.Target(i, f"CHG-1-test-s{i:04d}-bench", name, "dry-run") for i, name in enumerate(systems))
    run = flow.Run(Change(id=1, systems=list(systems)), "test", targets, None, "bench")

    async def go() -> None:
        sink = runner.NullSink()
        for step in (Step.APPLY, Step.VERIFY):
            out = await runner.run_steps(executors, run, step, sink=sink, clock=Clock(), limit=parallel, config=config)
            assert all(r.ok for r in out.values())

    return go


async def new_run(sessions: Any, config: Any) -> flow.Run:
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        change = Change(
            state=ChangeState.APPROVED_FOR_TEST, systems=["big"], title="bench", change_class=ChangeClass.EMERGENCY,
            requester=OWNER, last_editor=OWNER, officer=OWNER, content_hash="0" * 64, policy_version=1,
            created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(change)
        await session.flush()
        started = await flow.start(
            session, config=config, change_id=change.id, stage="test", actor=flow.SCHEDULER, now=now,
            now_reason="bench",
        )  # fmt: skip
    assert started.run is not None, started.refusal
    return started.run


async def walk(sessions: Any, config: Any) -> Callable[[], Awaitable[None]]:
    executors = registry.Executors.validated(config)

    async def go() -> None:
        run = await new_run(sessions, config)  # a fresh deployment row (not timed separately: one insert)
        walked = await rings.walk(
            sessions, config=config, executors=executors, clock=Clock(), sink=runner.NullSink(), run=run,
            delivered=(), credentials={}, window_end=None,
        )  # fmt: skip
        assert not walked.failure and not walked.refused, walked
        async with sessions.begin() as session:  # release the lock for the next repeat
            for t in run.targets:
                row = await session.get(Deployment, t.deployment_id)
                assert row is not None
                row.status = DeploymentStatus.SUCCEEDED
            await deployments.release_locks(session, run.ids)

    return go


async def execute(sessions: Any, config: Any) -> Callable[[], Awaitable[None]]:
    executors = registry.Executors.validated(config)

    async def go() -> None:
        run = await new_run(sessions, config)
        change = await runner.execute(
            sessions, config=config, executors=executors, clock=Clock(), sink=runner.NullSink(), run=run
        )
        assert change.state is ChangeState.TEST_PASSED, change.state

    return go


async def measure(go: Callable[[], Awaitable[None]], repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each run (CPU time is what the overhead is read from: the machine is
    shared, and wall-clock time then mostly measures the neighbours)."""
    await go()  # warm-up (imports, first statements)
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        await go()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


async def backend(url: str, label: str, args: argparse.Namespace) -> None:
    await asyncio.to_thread(migrate.upgrade, url)
    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    hosts = [f"web-{n:04}" for n in range(args.targets)]
    shapes = {
        "baseline: executor calls only": await bare(args.targets, args.parallel),
        "run_steps fan-out, no rings": await baseline(args.targets, args.parallel),
        "rings.walk, 1 ring": await walk(sessions, ringed(hosts, args.parallel, three=False)),
        "rings.walk, 3 rings": await walk(sessions, ringed(hosts, args.parallel, three=True)),
        "runner.execute, 3 rings": await execute(sessions, ringed(hosts, args.parallel, three=True)),
    }
    print(
        f"{label}: {args.targets} dry-run targets, max_parallel {args.parallel}, {args.repeat} runs (median, min-max)"
    )
    base = None
    us = 1e6 / args.targets
    for name, go in shapes.items():
        wall, cpu = await measure(go, args.repeat)
        med, cmed = statistics.median(wall), statistics.median(cpu)
        base = base if base is not None else cmed
        print(
            f"  {name:30} wall {med * 1e3:7.1f} ms ({min(wall) * 1e3:.0f}-{max(wall) * 1e3:.0f})"
            f"  cpu {cmed * us:6.1f} µs/target ({min(cpu) * us:.0f}-{max(cpu) * us:.0f})"
            f"  overhead vs baseline {(cmed - base) * us:+6.1f} µs/target"
        )
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in args.backends:
            asyncio.run(backend(f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite", args))
        if "postgres" in args.backends:
            sys.path.insert(0, str(REPO / "tests"))
            from support.pg import start_pg_server

            pg = start_pg_server(Path(tempfile.gettempdir()))
            try:
                url = asyncio.run(pg.create_database("bench_rings"))
                asyncio.run(backend(url, "PostgreSQL", args))
            finally:
                pg.stop()


if __name__ == "__main__":
    main()
