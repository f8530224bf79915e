"""Benchmark: a deployment to 1,000 dry-run targets with a concurrency limit; overhead per target.

Two shapes, both through ``bot.workflows.runner.run_steps`` (the code path of a real run, minus Slack and
the database, which a real run touches once per step, not per target):

* fan-out: 1,000 systems with one target each, at most ``--limit`` executor steps at a time;
* one system whose executor reports 1,000 targets in one step.

Baseline in the same process: a bare asyncio loop doing the same number of no-op awaits through the same
semaphore. Run: ``python bench/deploy_targets.py [--targets 1000] [--limit 50] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bot.config import parse_config
from bot.deps import Clock
from bot.executors import registry
from bot.executors.base import Step
from bot.workflows import deployment as flow
from bot.workflows import runner
from storage.models import Change

OWNER = "U0OWNER1"


def make_config(systems: dict[str, dict[str, Any]]) -> Any:
    return parse_config(
        {
            "slack": {"approvals_channel": "C0APPROVALS"},
            "groups": {"security": ["U0SEC1"], "operators": ["U0OPS1"]},
            "systems": systems,
            "policy": {
                "version": 1,
                "operators": "operators",
                "stages": {"test": [{"role": "owner"}], "prod": [{"role": "owner"}]},
            },
        }
    )


def fan_out(n: int) -> tuple[Any, flow.Run]:
    systems = {
        f"s{i:04d}": {"owner": OWNER, "environments": {"test": {"executor": "dry-run", "targets": [f"host-{i}"]}}}
        for i in range(n)
    }
    config = make_config(systems)
    change = Change(id=1, systems=list(systems))
    targets = tuple(flow.Target(i, f"CHG-1-test-s{i:04d}-bench", name, "dry-run") for i, name in enumerate(systems))
    return config, flow.Run(change, "test", targets, None, "bench")


def one_system(n: int) -> tuple[Any, flow.Run]:
    hosts = [f"host-{i}" for i in range(n)]
    config = make_config({"big": {"owner": OWNER, "environments": {"test": {"executor": "dry-run", "targets": hosts}}}})
    change = Change(id=1, systems=["big"])
    return config, flow.Run(change, "test", (flow.Target(1, "CHG-1-test-big-bench", "big", "dry-run"),), None, "bench")


async def bare(n: int, limit: int) -> float:
    """The same number of no-op awaits through the same kind of semaphore and gather."""
    gate = asyncio.Semaphore(limit)

    async def one() -> None:
        async with gate:
            await asyncio.sleep(0)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - start


async def timed(executors: registry.Executors, run: flow.Run, limit: int) -> float:
    start = time.perf_counter()
    results = await runner.run_steps(executors, run, Step.APPLY, sink=runner.NullSink(), clock=Clock(), limit=limit)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results.values())
    return elapsed


async def main(targets: int, limit: int, repeat: int) -> None:
    config, run = fan_out(targets)
    start = time.perf_counter()
    executors = registry.Executors.validated(config)
    setup = time.perf_counter() - start
    big_config, big_run = one_system(targets)
    big_executors = registry.Executors.validated(big_config)
    fan, single, base = [], [], []
    for _ in range(repeat):
        fan.append(await timed(executors, run, limit))
        single.append(await timed(big_executors, big_run, limit))
        base.append(await bare(targets, limit))
    f, s, b = statistics.median(fan), statistics.median(single), statistics.median(base)
    us = 1e6 / targets
    print(f"targets={targets} limit={limit} repeat={repeat} (medians)")
    print(f"  executor creation at startup (validate_config): {setup * 1e3:8.1f} ms  ({setup * us:6.1f} µs/target)")
    print(f"  fan-out, 1 target per system:   {f * 1e3:8.1f} ms  {f * us:7.1f} µs/target")
    print(f"  one system, {targets} targets:     {s * 1e3:8.1f} ms  {s * us:7.1f} µs/target")
    print(f"  bare asyncio no-op awaits:      {b * 1e3:8.1f} ms  {b * us:7.1f} µs/await")
    print(f"  overhead per target (fan-out - bare): {(f - b) * us:7.1f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.targets, args.limit, args.repeat))
