"""Issue 14, windows open on time: an exact alarm per booked window starting in the next hours, armed from
the database; the minute sweep stays as the safety net."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import Harness, eventually

from bot import scheduler
from storage.models import Change, ChangeClass, ChangeState, Window, WindowState


async def _book(h: Harness, *starts: datetime) -> None:
    now = datetime.now(UTC)
    async with h.deps.sessions.begin() as s:
        change = Change(
            state=ChangeState.PROD_SCHEDULED,
            systems=["web-shop"],
            title="t",
            change_class=ChangeClass.NORMAL,
            requester="U0REQ1",
            last_editor="U0REQ1",
            officer="U0REQ1",
            content_hash="0" * 64,
            policy_version=1,
            created_at=now,
            updated_at=now,
        )
        s.add(change)
        await s.flush()
        for i, start in enumerate(starts):
            s.add(
                Window(
                    change_id=change.id,
                    stage="prod",
                    systems=["web-shop"],
                    start=start,
                    end=start + timedelta(hours=1),
                    state=WindowState.CANCELLED if i == 2 else WindowState.BOOKED,
                    emergency=False,
                    bypass_reason="",
                    booked_by="U0REQ1",
                    booked_at=now,
                    reminded=False,
                )
            )


async def test_booked_windows_in_the_horizon_get_an_alarm(harness: Harness) -> None:
    h = harness
    now = h.deps.clock.now()
    soon, later, cancelled, too_late = (
        now + timedelta(minutes=5),
        now + timedelta(hours=2),
        now + timedelta(minutes=7),
        now + timedelta(hours=5),
    )
    await _book(h, soon, later, cancelled, too_late)
    sched = scheduler.create_scheduler(h.deps)
    sched.start(paused=True)  # jobs in the store (replace_existing applies), nothing runs
    try:
        await _arm_twice(h, sched, soon, later)
    finally:
        sched.shutdown(wait=False)


async def _arm_twice(h: Harness, sched: scheduler.Scheduler, soon: datetime, later: datetime) -> None:
    assert await scheduler.run_arm_windows(h.deps, sched) == 2
    alarms = sorted(j.trigger.run_date for j in sched.get_jobs() if j.id.startswith("window-alarm:"))
    assert len(alarms) == 2
    assert timedelta(0) <= alarms[0] - soon < timedelta(milliseconds=100)
    assert timedelta(0) <= alarms[1] - later < timedelta(milliseconds=100)
    assert await scheduler.run_arm_windows(h.deps, sched) == 2  # re-arming replaces, never doubles
    assert len([j for j in sched.get_jobs() if j.id.startswith("window-alarm:")]) == 2
    assert "due_windows" in {j.id for j in sched.get_jobs()}  # the sweep stays as the safety net


async def test_alarms_fire_on_time_not_at_the_next_sweep() -> None:
    sched = scheduler.Scheduler(timezone="UTC")
    fired: list[datetime] = []

    async def job() -> None:
        fired.append(datetime.now(UTC))

    now = datetime.now(UTC)
    starts = [now + timedelta(milliseconds=ms) for ms in (300, 320, 700)]
    assert scheduler.arm_alarms(sched, starts, job, []) in (2, 3)  # 300 and 320 ms may share one 100 ms step
    sched.start()
    try:
        await eventually(lambda: len(fired) >= 2 and fired[-1] >= starts[-1], timeout=5, what="alarms")
    finally:
        sched.shutdown(wait=False)
    assert fired[0] >= starts[0] and fired[-1] - starts[-1] < timedelta(milliseconds=600)
