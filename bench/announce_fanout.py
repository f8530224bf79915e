"""Benchmark: announcement fan-out to 200 channels against a fake Slack enforcing 1 message/s/channel.

One change on 200 systems, each with its own users' channel; a booked window is announced (booked,
reminder, started: ``--per-channel`` messages per channel) through ``workflows.announcements.announce``
and delivered by ``bot.slack.outbox_sender.OutboxSender``. The fake answers 429 (Retry-After: 1) to a second post
in a channel within a second. Checks every message arrived exactly once and compares the total time with
the theoretical minimum ((per-channel - 1) seconds). A second run without pacing (``channel_gap=0``) shows
what the 429s cost when only the client's Retry-After handling keeps the rate. Prints numbers.

    python bench/announce_fanout.py [--channels 200] [--per-channel 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import app as app_module
from bot.blocks.announcement import AnnouncementKind
from bot.config import Settings, parse_config
from bot.deps import Deps, build_deps
from bot.sandbox.fake_slack import FakeSlack
from bot.sandbox.fake_slack import start as start_fake
from bot.slack.outbox_sender import EVENT_TYPE, OutboxSender
from bot.workflows import announcements
from storage import migrate
from storage.models import Change, ChangeClass, ChangeState, Window, WindowState

KINDS = [
    AnnouncementKind.BOOKED,
    AnnouncementKind.REMINDER,
    AnnouncementKind.STARTED,
    AnnouncementKind.COMPLETED,
    AnnouncementKind.EXTENDED,
]


def config(channels: int, prefix: str) -> dict[str, Any]:
    systems = {
        f"{prefix}-{i:03d}": {"owner": "U0OWNER1", "announce_channel": f"C0{prefix.upper()}{i:03d}"}
        for i in range(channels)
    }
    return {
        "slack": {"approvals_channel": "C0APPROVALS"},
        "groups": {"security": ["U0SEC1"], "operators": ["U0OPS1"]},
        "systems": systems,
        "policy": {
            "version": 1,
            "operators": "operators",
            "stages": {"test": [{"role": "owner"}], "prod": [{"role": "owner"}]},
        },
    }


async def queue(deps: Deps, *, per_channel: int) -> int:
    """A change on every configured system, one booked window, ``per_channel`` announcements of it."""
    now = datetime.now(UTC)
    queued = 0
    async with deps.sessions.begin() as session:
        change = Change(
            state=ChangeState.PROD_SCHEDULED,
            systems=sorted(deps.config.systems),
            title="Update OpenSSL to 3.0.15",
            details="Fixes CVE-2024-5535",
            expected_downtime="10 minutes",
            change_class=ChangeClass.NORMAL,
            requester="U0REQ1",
            last_editor="U0REQ1",
            officer="U0OFFICER",
            content_hash="0" * 64,
            policy_version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(change)
        await session.flush()
        window = Window(
            change_id=change.id,
            stage="prod",
            systems=list(change.systems),
            start=now + timedelta(days=2),
            end=now + timedelta(days=2, hours=2),
            state=WindowState.BOOKED,
            emergency=False,
            bypass_reason="",
            booked_by="U0OPS1",
            booked_at=now,
            reminded=False,
        )
        session.add(window)
        await session.flush()
        for kind in KINDS[:per_channel]:
            queued += await announcements.announce(
                session, config=deps.config, change=change, window=window, kind=kind, now=now
            )
    return queued


async def one_run(fake: FakeSlack, *, channels: int, per_channel: int, gap: float, prefix: str, tmp: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp / (prefix + '.db')}"
    migrate.upgrade(url)
    settings = Settings(PATCHWARDEN_DATABASE_URL=url, SLACK_API_URL=fake.url + "/api/")
    client = app_module.create_client(token="xoxb-bench", base_url=settings.slack_api_url)
    deps = build_deps(settings, parse_config(config(channels, prefix)), client=client)
    queued = await queue(deps, per_channel=per_channel)
    calls_before = len(fake.calls)
    sender = OutboxSender(deps, channel_gap=gap)
    started = time.perf_counter()
    result = await sender.drain()
    elapsed = time.perf_counter() - started
    await deps.engine.dispose()
    keys = Counter(
        m.metadata["event_payload"]["key"]
        for m in fake.messages.values()
        if m.metadata and m.metadata.get("event_type") == EVENT_TYPE and m.channel.startswith(f"C0{prefix.upper()}")
    )
    posts = sum(1 for c in fake.calls[calls_before:] if c.method == "chat.postMessage")
    minimum = per_channel - 1
    once = len(keys) == queued and set(keys.values()) == {1}
    print(
        f"{'paced' if gap else 'unpaced':>8}: {queued} messages to {channels} channels in {elapsed:6.2f} s "
        f"(theoretical minimum {minimum} s; overhead {elapsed - minimum:+.2f} s); "
        f"exactly once: {once}; postMessage calls {posts} ({posts - queued} answered 429); "
        f"sender saw 429 {result.rate_limited}x"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--per-channel", type=int, default=3, choices=range(1, len(KINDS) + 1))
    parser.add_argument("--skip-unpaced", action="store_true")
    args = parser.parse_args()
    fake = FakeSlack(channel_rate_per_second=1)
    runner = await start_fake(fake)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await one_run(
                fake, channels=args.channels, per_channel=args.per_channel, gap=1.0, prefix="pa", tmp=Path(tmp)
            )
            if not args.skip_unpaced:
                await one_run(
                    fake, channels=args.channels, per_channel=args.per_channel, gap=0.0, prefix="un", tmp=Path(tmp)
                )
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
