"""The outbox delivers every message exactly once: 429 storms, crashes after posting, two senders at once."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter
from datetime import timedelta
from typing import Any

from conftest import TOKEN, Harness
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from sqlalchemy import update

from bot.app import create_client
from bot.slack.outbox_sender import EVENT_TYPE, OutboxSender
from storage import outbox
from storage.models import OutboxMessage, OutboxState

CHANNELS = ["C0USERSA", "C0USERSB", "C0USERSC", "C0USERSD"]


async def enqueue(h: Harness, keys: list[tuple[str, str]], *, thread_ts: str | None = None) -> None:
    async with h.deps.sessions.begin() as s:
        for key, channel in keys:
            await outbox.enqueue(
                s, key=key, channel=channel, text=f"message {key}", thread_ts=thread_ts, now=h.clock.now()
            )


def delivered(h: Harness) -> Counter[str]:
    """How many times each outbox key reached Slack (from the metadata the fake kept)."""
    return Counter(
        m.metadata["event_payload"]["key"]
        for m in h.fake.messages.values()
        if m.metadata and m.metadata.get("event_type") == EVENT_TYPE
    )


async def states(h: Harness) -> Counter[OutboxState]:
    async with h.deps.sessions.begin() as s:
        return Counter({state: await outbox.count(s, state=state) for state in OutboxState})


async def test_enqueue_is_idempotent_by_key(harness: Harness) -> None:
    async with harness.deps.sessions.begin() as s:
        assert await outbox.enqueue(s, key="k1", channel="C0A", text="one", now=harness.clock.now())
        assert not await outbox.enqueue(s, key="k1", channel="C0A", text="again", now=harness.clock.now())
    assert (await states(harness))[OutboxState.PENDING] == 1


async def test_429_storm_during_fanout_delivers_each_once(harness: Harness) -> None:
    keys = [(f"k{n}:{c}", c) for n in range(3) for c in CHANNELS]
    await enqueue(harness, keys[:8])
    # a storm the client's own Retry-After retries absorb
    harness.fake.fail("chat.postMessage", status=429, retry_after=0, times=6)
    absorbed = await OutboxSender(harness.deps, channel_gap=0.01).drain()
    assert absorbed.sent == 8 and absorbed.rate_limited == 0
    # a storm that outlasts them (a client with one retry): the sender gets the 429 and retries later itself
    await enqueue(harness, keys[8:])
    client = create_client(token=TOKEN, base_url=harness.deps.settings.slack_api_url)
    client.retry_handlers = [AsyncRateLimitErrorRetryHandler(max_retry_count=1)]
    harness.fake.fail("chat.postMessage", status=429, retry_after=0, times=10)
    impatient = OutboxSender(dataclasses.replace(harness.deps, client=client), channel_gap=0.01)
    result = await impatient.drain()
    assert result.rate_limited >= 1 and result.failed == 0
    assert delivered(harness) == Counter({key: 1 for key, _ in keys})
    assert (await states(harness))[OutboxState.SENT] == len(keys)
    async with harness.deps.sessions.begin() as s:
        rows = [await outbox.by_key(s, key) for key, _ in keys[8:]]
    assert all(row is not None and row.attempts == 1 for row in rows)  # 429s do not use up the retry budget


async def test_pacing_keeps_each_channel_under_its_rate(harness: Harness) -> None:
    harness.fake.channel_rate = 10  # the fake answers 429 to a second post within 100 ms
    keys = [(f"p{n}:{c}", c) for n in range(3) for c in CHANNELS[:3]]
    await enqueue(harness, keys)
    await OutboxSender(harness.deps, channel_gap=0.12).drain()
    posts = [c for c in harness.fake.calls if c.method == "chat.postMessage"]
    assert len(posts) == len(keys)  # no post was refused: pacing, not 429s, kept the rate
    for channel in CHANNELS[:3]:
        times = [c.at for c in posts if c.params["channel"] == channel]
        assert all(b - a >= 0.1 for a, b in itertools.pairwise(times))
    # channels went concurrently: the whole run took about one channel's time, not three
    assert max(c.at for c in posts) - min(c.at for c in posts) < 3 * 0.12 * 3


async def test_crash_after_posting_does_not_send_twice(harness: Harness) -> None:
    await enqueue(harness, [("top", "C0USERSA")])
    await enqueue(harness, [("reply", "C0USERSA")], thread_ts="1700000000.000001")
    await enqueue(harness, [("never-posted", "C0USERSB")])
    sender = OutboxSender(harness.deps, channel_gap=0.01)
    await sender.drain()
    assert delivered(harness) == Counter({"top": 1, "reply": 1, "never-posted": 1})
    # simulate a process that posted and died before recording it: pending, leased to a dead owner, lease expired
    past = harness.clock.now() - timedelta(seconds=1)
    async with harness.deps.sessions.begin() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key.in_(["top", "reply"]))
            .values(state=OutboxState.PENDING, sent_ts=None, lease_owner="dead:1", lease_until=past, attempts=1)
        )
    # and one that died after claiming but before posting (nothing in Slack)
    async with harness.deps.sessions.begin() as s:
        await s.execute(update(OutboxMessage).where(OutboxMessage.key == "never-posted").values(state=OutboxState.SENT))
    await enqueue(harness, [("claimed-then-died", "C0USERSB")])
    async with harness.deps.sessions.begin() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == "claimed-then-died")
            .values(lease_owner="dead:1", lease_until=past, attempts=1)
        )
    result = await OutboxSender(harness.deps, channel_gap=0.01).drain()
    assert result.recovered == 2 and result.sent == 1
    assert delivered(harness) == Counter({"top": 1, "reply": 1, "never-posted": 1, "claimed-then-died": 1})
    async with harness.deps.sessions.begin() as s:
        top = await outbox.by_key(s, "top")
        assert top is not None and top.state is OutboxState.SENT
        assert top.sent_ts is not None and harness.fake.messages[top.sent_ts].metadata is not None


async def test_two_senders_on_one_database_do_not_double_send(harness_factory: Any) -> None:
    first: Harness = await harness_factory()
    second: Harness = await harness_factory()
    keys = [(f"d{n}:{c}", c) for n in range(5) for c in CHANNELS]
    await enqueue(first, keys)
    one = OutboxSender(first.deps, channel_gap=0.01, per_channel=2, batch=6)
    two = OutboxSender(second.deps, channel_gap=0.01, per_channel=2, batch=6)
    results = await asyncio.gather(one.drain(), two.drain())
    assert delivered(first) == Counter({key: 1 for key, _ in keys})
    assert sum(r.sent for r in results) == len(keys)
    assert all(r.sent for r in results)  # both really took part


async def test_gives_up_after_max_attempts_and_reports_once_in_the_thread(harness: Harness) -> None:
    card = await harness.request_change()
    async with harness.deps.sessions.begin() as s:
        await outbox.enqueue(s, key="doomed", channel="C0GONE", text="hello", now=harness.clock.now(), change_id=1)
    harness.fake.fail("chat.postMessage", error="channel_not_found", times=2)
    sender = OutboxSender(harness.deps, channel_gap=0.01, max_attempts=2)
    first = await sender.sweep()
    assert first.retried == 1 and first.failed == 0
    assert (await sender.sweep()).retried == 0  # backing off: not due yet
    harness.clock.advance(timedelta(seconds=11))
    assert (await sender.sweep()).failed == 1
    harness.clock.advance(timedelta(hours=1))
    assert (await sender.sweep()).failed == 0
    async with harness.deps.sessions.begin() as s:
        row = await outbox.by_key(s, "doomed")
        assert row is not None and row.state is OutboxState.FAILED and "channel_not_found" in row.last_error
    assert delivered(harness) == Counter()
    reports = [m.text for m in harness.thread(card) if "could not be posted" in m.text]
    assert len(reports) == 1 and "<#C0GONE>" in reports[0] and "CHG-1" in reports[0]
