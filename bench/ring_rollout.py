"""Benchmark: a ring rollout to 1,000 dry-run targets with ``max_parallel: 50``; overhead per target.

Three shapes in the same process, each repeated and reported as median with its spread:

* baseline: 1,000 dry-run executor steps (apply, then verify) through one semaphore of 50, no rings;
* rollout, one ring of 1,000 targets (the pacing machinery alone: semaphore, cutoff check, results);
* rollout, three rings (10 / 90 / 900 targets) with gates and a soak on a fake clock.

Run: ``python bench/ring_rollout.py [--targets 1000] [--parallel 50] [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta

from bot.config import Gate, Ring
from bot.deps import FakeClock
from bot.executors.base import DeploymentRequest, Step, StepResult
from bot.executors.dry_run import DryRunExecutor
from bot.workflows.rollout import Pacing, Rollout

EXECUTOR = DryRunExecutor({})


async def step(host: str, which: Step) -> StepResult:
    request = DeploymentRequest(run_id="r1", change_key="CHG-1", stage="prod", system="web", targets=(host,))
    return await (EXECUTOR.apply if which is Step.APPLY else EXECUTOR.verify)(request)


async def baseline(hosts: list[str], parallel: int) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(host: str, which: Step) -> StepResult:
        async with gate:
            return await step(host, which)

    applied = await asyncio.gather(*(one(h, Step.APPLY) for h in hosts))
    await asyncio.gather(*(one(h, Step.VERIFY) for h, r in zip(hosts, applied, strict=True) if r.ok))


async def rollout(rings: list[Ring], parallel: int) -> None:
    clock = FakeClock()

    async def sleep(delta: timedelta) -> None:
        clock.advance(delta)

    r = Rollout(rings=rings, step=step, now=clock.now, sleep=sleep, pacing=Pacing(max_parallel=parallel))
    await r.run()
    assert r.succeeded


def measure(fn: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        asyncio.run(fn())  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    hosts = [f"web-{n:04}" for n in range(args.targets)]
    one = [Ring(name="all", targets=hosts)]
    a, b = max(1, args.targets // 100), max(2, args.targets // 10)
    three = [
        Ring(name="canary", targets=hosts[:a], gate=Gate(min_success=1, soak=timedelta(minutes=30))),
        Ring(name="half", targets=hosts[a:b], gate=Gate(min_success_rate=0.9, soak=timedelta(hours=1))),
        Ring(name="rest", targets=hosts[b:]),
    ]
    shapes = {
        "baseline (no rings)": lambda: baseline(hosts, args.parallel),
        "rollout, 1 ring": lambda: rollout(one, args.parallel),
        "rollout, 3 rings + soak": lambda: rollout(three, args.parallel),
    }
    print(f"{args.targets} dry-run targets, max_parallel {args.parallel}, {args.repeat} runs each (median, min-max)")
    base = None
    for name, fn in shapes.items():
        times = measure(fn, args.repeat)
        med = statistics.median(times)
        per = med / args.targets * 1e6
        base = base if base is not None else per
        print(
            f"  {name:26} {med * 1000:8.1f} ms  ({min(times) * 1000:.1f}-{max(times) * 1000:.1f})"
            f"  {per:7.1f} µs/target  overhead vs baseline {per - base:+6.1f} µs/target"
        )


if __name__ == "__main__":
    main()
