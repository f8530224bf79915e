"""Benchmark: 10,000 booked windows fired by a scheduler sweep — firing lateness and event-loop stalls.

A real APScheduler ``AsyncIOScheduler`` (the same job defaults as ``bot.scheduler``) runs an interval sweep
that reads ``storage.windows.due_windows`` and claims each due window with ``claim_window`` (the
compare-and-set the deployment job uses). Windows start spread over ``--spread`` seconds. A ticker task
measures event-loop lag every few milliseconds. The baseline is the same scheduler with a trivial job, run
for the same time in the same process. Prints numbers; asserts nothing about time.

    python bench/window_firing.py [--windows 10000] [--spread 20] [--every 1.0] [--database-url URL]

Runs twice in one process: the sweep alone (before), then the bot's exact alarms plus the sweep (after).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import scheduler as bot_scheduler
from storage import alarms, db, migrate, windows
from storage.models import Change, ChangeClass, ChangeState, Window, WindowState

TICK = 0.005


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:<28} n={len(ms):>6}  p50={pct(ms, 50):8.2f} ms  p99={pct(ms, 99):8.2f} ms  "
        f"max={max(ms, default=0):8.2f} ms  mean={statistics.fmean(ms) if ms else 0:8.2f} ms"
    )


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    """Sleep TICK again and again; how late each wake-up is measures how long the loop was blocked."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        expected = loop.time() + TICK
        await asyncio.sleep(TICK)
        lags.append(max(0.0, loop.time() - expected))


async def seed(sessions: async_sessionmaker[AsyncSession], *, count: int, first: datetime, spread: float) -> None:
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        change = Change(
            state=ChangeState.PROD_SCHEDULED,
            systems=["bench"],
            title="bench",
            change_class=ChangeClass.NORMAL,
            requester="U0BENCH",
            last_editor="U0BENCH",
            officer="U0BENCH",
            content_hash="0" * 64,
            policy_version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(change)
        await session.flush()
        step = spread / count
        rows = [
            {
                "change_id": change.id,
                "stage": "prod",
                "systems": [f"sys-{i % 100}"],
                "start": first + timedelta(seconds=i * step),
                "end": first + timedelta(seconds=i * step + 3600),
                "state": WindowState.BOOKED,
                "emergency": False,
                "bypass_reason": "",
                "booked_by": "U0BENCH",
                "booked_at": now,
                "reminded": False,
            }
            for i in range(count)
        ]
        await session.execute(insert(Window), rows)


async def run(duration: float, every: float, job: object, starts: list[datetime] | None = None) -> list[float]:
    """Run ``job`` every ``every`` s on a real scheduler for ``duration`` s; returns the loop lags.

    With ``starts``, also the bot's exact alarms (``bot.scheduler.arm_alarms``) for those window starts."""
    scheduler = AsyncIOScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
    )
    scheduler.add_job(job, "interval", seconds=every, id="sweep", next_run_time=datetime.now(UTC))
    if starts is not None:
        armed = bot_scheduler.arm_alarms(scheduler, starts, job, [])  # type: ignore[arg-type]
        print(f"armed {armed} alarms (resolution {bot_scheduler.ALARM_RESOLUTION.total_seconds() * 1000:g} ms)")
    lags: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(lags, stop))
    scheduler.start()
    await asyncio.sleep(duration)
    scheduler.shutdown(wait=False)
    stop.set()
    await tick
    return lags


async def measure(
    sessions: async_sessionmaker[AsyncSession], args: argparse.Namespace, mode: str, *, alarmed: bool
) -> tuple[int, list[float], list[float]]:
    """Seed the windows, fire them (sweep, or alarms + sweep); returns claimed, lateness and loop stalls."""
    first = datetime.now(UTC) + timedelta(seconds=3)
    started = time.perf_counter()
    await seed(sessions, count=args.windows, first=first, spread=args.spread)
    print(f"{mode}: seeded {args.windows} booked windows in {time.perf_counter() - started:.2f} s")
    starts = None
    if alarmed:
        async with sessions.begin() as session:  # what the bot's arm_windows job reads at start
            now = datetime.now(UTC)
            starts = await alarms.upcoming_starts(session, after=now, until=now + bot_scheduler.ALARM_HORIZON)
    duration = (first - datetime.now(UTC)).total_seconds() + args.spread + 2 * args.every + 1
    lateness: list[float] = []
    claimed = 0

    async def fire() -> None:
        nonlocal claimed
        now = datetime.now(UTC)
        async with sessions.begin() as session:
            for window in await windows.due_windows(session, now=now):
                if await windows.claim_window(session, window.id, owner="bench", now=now):
                    claimed += 1
                    lateness.append((datetime.now(UTC) - window.start).total_seconds())

    fired = await run(duration, args.every, fire, starts)
    return claimed, lateness, fired


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--windows", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which the starts are spread")
    parser.add_argument("--every", type=float, default=1.0, help="sweep interval in seconds")
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        engine = db.create_engine(url)
        sessions = db.session_factory(engine)
        duration = 3 + args.spread + 2 * args.every + 1

        async def trivial() -> None:
            await asyncio.sleep(0)

        baseline = await run(duration, args.every, trivial)
        results = []
        for mode in ("sweep only (before)", "alarms + sweep (after)"):
            claimed, lateness, fired = await measure(sessions, args, mode, alarmed=mode.startswith("alarms"))
            results.append((mode, claimed, lateness, fired))
        await engine.dispose()
    print(f"{url.split(':')[0]}: sweep every {args.every:g} s, {args.windows} windows starting over {args.spread:g} s")
    for mode, claimed, lateness, fired in results:
        print(f"-- {mode}: claimed {claimed}")
        print(line("firing lateness", lateness))
        print(line("loop stall, firing", fired))
        if claimed != args.windows:
            print(f"NOTE: {args.windows - claimed} windows were not fired within the run")
    print(line("loop stall, trivial job", baseline))


if __name__ == "__main__":
    asyncio.run(main())
