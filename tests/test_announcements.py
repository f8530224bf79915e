"""Downtime announcements in the users' channels: ahead of time, reminded once, escaped, per stage."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from typing import Any

from conftest import Harness
from test_scheduling import (
    all_windows,
    approved_change,
    command,
    fast_sender,
    schedule_config,
    set_clock,
    state_of,
)

from bot.blocks.announcement import AnnouncementKind
from bot.blocks.common import validate_blocks
from bot.jobs import run_window_sweep
from bot.workflows import announcements
from storage import changes, outbox
from storage.models import ChangeState, WindowState

USERS = "C0SHOPUSERS"


def users_texts(h: Harness, channel: str = USERS) -> list[str]:
    return [m.text for m in h.fake.channel_messages(channel)]


async def test_prod_booking_announced_a_day_ahead_and_reminded_once(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h, expected_downtime="about 10 minutes", officer="U0OFFICER")
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    [window] = await all_windows(h)
    sender = fast_sender(h)
    await sender.drain()
    [booked] = h.fake.channel_messages(USERS)
    body = json.dumps(booked.blocks)
    validate_blocks(booked.blocks)
    # announced at least 24 h ahead (by the bot's clock), in Slack date markup with the system's zone as fallback
    async with h.deps.sessions.begin() as s:
        [row] = [m for m in await outbox.for_change(s, 1) if m.channel == USERS]
    assert window.start - row.created_at >= timedelta(hours=24)
    stamp = int(window.start.timestamp())
    assert f"<!date^{stamp}^" in booked.text and "|2026-12-06 02:00 CET>" in booked.text
    assert "about 10 minutes" in body and "<@U0OFFICER>" in body and "Update OpenSSL" in body
    # not yet time for the reminder
    h.clock.advance(window.start - h.clock.now() - timedelta(hours=2))
    assert await run_window_sweep(h.deps) == (0, 0)
    h.clock.advance(timedelta(hours=1, minutes=1))  # 59 minutes before the start
    assert await run_window_sweep(h.deps) == (1, 0)
    assert await run_window_sweep(h.deps) == (0, 0)  # CAS on Window.reminded: once
    await sender.drain()
    texts = users_texts(h)
    assert len(texts) == 2 and "Maintenance starts soon" in texts[1]


async def test_texts_escape_user_input(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(
        h,
        title="<!channel> patch & <https://evil.example|click>",
        details="<!everyone> read this",
        expected_downtime="<!here> none",
    )
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    await fast_sender(h).drain()
    [msg] = h.fake.channel_messages(USERS)
    everything = msg.text + json.dumps(msg.blocks)
    assert not re.search(r"<!(channel|here|everyone)>", everything)
    assert "<https://evil" not in everything
    assert "&lt;!channel&gt; patch &amp; &lt;https://evil.example|click&gt;" in everything
    assert "&lt;!here&gt; none" in everything and "&lt;!everyone&gt;" in everything


async def test_test_stage_is_announced_only_where_configured(harness_factory: Any) -> None:
    config = schedule_config(
        systems={
            "api": {"owner": "U0OWNER1", "announce_channel": "C0APIUSERS", "announce_test": True},
        }
    )
    h: Harness = await harness_factory(config)
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h, state=ChangeState.APPROVED_FOR_TEST, systems=["web-shop", "api"])
    # api announces its test stage, so the notice applies to the test booking too
    soon = await command(h, "schedule CHG-1 test 2026-12-03 12:00 1h")
    assert "too soon" in soon["text"]
    await command(h, "schedule CHG-1 test 2026-12-06 02:00 1h")
    await fast_sender(h).drain()
    assert users_texts(h) == []  # web-shop does not announce its test stage
    [api] = users_texts(h, "C0APIUSERS")
    assert "test environment of *api*" in api


async def test_announce_api_for_deployments_is_idempotent(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h)
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    [window] = await all_windows(h)
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        now = h.clock.now()
        assert (
            await announcements.announce(
                s, config=h.config, change=change, window=window, kind=AnnouncementKind.STARTED, now=now
            )
            == 1
        )
        assert (
            await announcements.announce(
                s, config=h.config, change=change, window=window, kind=AnnouncementKind.STARTED, now=now
            )
            == 0
        )
        window.end += timedelta(minutes=30)
        assert (
            await announcements.announce(
                s, config=h.config, change=change, window=window, kind=AnnouncementKind.EXTENDED, now=now
            )
            == 1
        )
        # not an emergency: completing requests no post-implementation review
        assert not await announcements.request_post_implementation_review(s, config=h.config, change=change, now=now)
    await fast_sender(h).drain()
    texts = users_texts(h)
    assert [t.split(":")[1] for t in texts] == ["calendar", "construction", "hourglass_flowing_sand"]


async def test_emergency_completion_requests_a_review_once(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    now = set_clock(h, "2026-12-03 10:00")
    card = await approved_change(h, change_class="emergency")
    when = (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    await command(h, f"schedule CHG-1 prod {when} 1h --emergency payment outage")
    [window] = await all_windows(h)
    for _ in range(2):
        async with h.deps.sessions.begin() as s:
            change = await changes.get(s, 1)
            assert change is not None
            await announcements.announce(
                s, config=h.config, change=change, window=window, kind=AnnouncementKind.COMPLETED, now=now
            )
    await fast_sender(h).drain()
    reviews = [m.text for m in h.thread(card) if "Post-implementation review" in m.text]
    assert len(reviews) == 1 and "payment outage" in reviews[0] and "<@U0OPS1>" in reviews[0]


async def test_cancelled_change_cancels_its_booking_and_tells_users(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h)
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    await h.slack.command("cancel CHG-1 no longer needed", user="U0REQ1")
    await wait_state(h, ChangeState.CANCELLED)
    assert await run_window_sweep(h.deps) == (0, 1)
    assert await run_window_sweep(h.deps) == (0, 0)
    assert [w.state for w in await all_windows(h)] == [WindowState.CANCELLED]
    await fast_sender(h).drain()
    assert "Maintenance cancelled" in users_texts(h)[-1]


async def wait_state(h: Harness, want: ChangeState) -> None:
    """Poll until the change is in ``want`` (listeners run after the ack)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (state := await state_of(h)) is not want:
        assert loop.time() < deadline, f"still {state}"
        await asyncio.sleep(0.01)
