"""Exactly once does not depend on a post finishing inside its lease; stale reminders are dropped."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from conftest import Harness, eventually
from test_announcements import USERS, users_texts
from test_scheduling import all_windows, approved_change, command, fast_sender, schedule_config, set_clock

from bot.jobs import run_window_sweep
from bot.slack.outbox_sender import OutboxSender, wall_now
from storage import outbox
from storage.models import OutboxState


async def _enqueue(h: Harness, key: str, channel: str = "C0USERSA") -> None:
    async with h.deps.sessions.begin() as s:
        await outbox.enqueue(s, key=key, channel=channel, text=key, now=h.clock.now())


def _delivered(h: Harness, channel: str = "C0USERSA") -> Counter[str]:
    return Counter(m.text for m in h.fake.channel_messages(channel))


async def test_a_skip_ahead_clock_does_not_expire_a_lease_whose_post_is_in_flight(harness: Harness) -> None:
    h = harness
    await _enqueue(h, "started")
    h.fake.latency = 0.5  # Slack is slow to answer this post
    first = asyncio.create_task(OutboxSender(h.deps, channel_gap=0.01).sweep())
    await eventually(lambda: h.fake.of("chat.postMessage"), what="the post in flight")
    h.clock.advance(timedelta(minutes=10))  # the sandbox skips ahead past the lease meanwhile
    second = await OutboxSender(h.deps, channel_gap=0.01).sweep()
    assert second.sent == 0 and second.recovered == 0
    assert (await first).sent == 1
    assert _delivered(h) == Counter({"started": 1})


async def test_the_lease_is_renewed_while_posting(harness: Harness) -> None:
    h = harness
    await _enqueue(h, "completed")
    h.fake.latency = 0.8
    slow = OutboxSender(h.deps, channel_gap=0.01, lease=timedelta(seconds=0.3))
    first = asyncio.create_task(slow.sweep())
    await eventually(lambda: h.fake.of("chat.postMessage"), what="the post in flight")
    await asyncio.sleep(0.5)
    other = await OutboxSender(h.deps, channel_gap=0.01).sweep()
    assert other.sent == 0 and other.recovered == 0
    assert (await first).sent == 1
    assert _delivered(h) == Counter({"completed": 1})


async def test_a_stale_holder_is_fenced_out(harness: Harness) -> None:
    h = harness
    await _enqueue(h, "fenced")
    async with h.deps.sessions.begin() as s:
        [old] = await outbox.claim_due(s, owner="me", now=h.clock.now(), wall=wall_now(), lease=timedelta(0))
    async with h.deps.sessions.begin() as s:  # its lease ran out; the same owner claims the row again
        [new] = await outbox.claim_due(
            s, owner="me", now=h.clock.now(), wall=wall_now() + timedelta(seconds=1), lease=timedelta(minutes=3)
        )
    assert new.attempts == old.attempts + 1
    async with h.deps.sessions.begin() as s:
        assert not await outbox.mark_sent(s, old.id, owner="me", ts="1.1", token=old.attempts)
        assert await outbox.mark_sent(s, new.id, owner="me", ts="1.2", token=new.attempts)
        row = await outbox.by_key(s, "fenced")
        assert row is not None and row.state is OutboxState.SENT and row.sent_ts == "1.2"


async def test_a_reminder_whose_window_started_is_dropped(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h)
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    [window] = await all_windows(h)
    await fast_sender(h).drain()
    assert len(users_texts(h)) == 1  # the booking
    h.clock.advance(window.start - h.clock.now() - timedelta(minutes=30))
    assert await run_window_sweep(h.deps) == (1, 0)  # the reminder is queued...
    h.clock.advance(timedelta(minutes=31))  # ...but Slack (or the bot) was down until the window started
    result = await fast_sender(h).drain()
    assert len(users_texts(h)) == 1, users_texts(h)
    assert result.sent == 0
    async with h.deps.sessions.begin() as s:
        rows = [m for m in await outbox.for_change(s, 1) if m.channel == USERS]
    assert [r.state for r in rows] == [OutboxState.SENT, OutboxState.CANCELLED]
