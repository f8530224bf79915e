"""Every time a person reads says its zone or is a ``<!date>`` token (issue 13, "Times").

Plays one change through the whole loop (advisory posts, request, approvals, proposals and bookings,
announcements, the reminder, both deployments, status, Home, calendar, list, reports) and then reads every
text the bot sent to Slack: no clock time without a zone may be left, and every ``<!date>`` token's
fallback (what clients without date support show) carries its zone too.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from conftest import OPS1, OWNER, SEC1, Harness, eventually, make_config
from deploy_support import in_thread, wait_state
from test_advisories import PACKAGES, feed_dir
from test_home import open_home
from test_scheduling import as_message, command

from bot import jobs
from bot.slack.outbox_sender import OutboxSender
from bot.workflows import announcements
from storage import windows
from storage.models import ChangeState

TIME = r"(?<![\d:.])\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp]\.?[Mm]\.?)?(?![\d:])"
DAY = r"(?:\d{4}-\d{2}-\d{2}[ T])?"
ON = r"(?:,?\s+(?:[A-Z][a-z]{2},?\s+)?\d{1,2}\.?\s+[A-Z][a-z]{2,8}\.?(?:\s+\d{4})?)?"  # "Sun 6 Dec" after a time
ZONE = r"(?:UTC|GMT|Z\b|[+-]\d{2}:?\d{2}|\(?[A-Z][a-z]+/[A-Za-z_]+\)?|\b(?:CET|CEST|BST|EET|EEST|[A-Z]{3,4}T)\b)"
# a time (or a range of two) followed by its zone, e.g. "22:00 UTC", "22:00–00:00 (Europe/Berlin)"
ZONED = re.compile(rf"{DAY}{TIME}{ON}(?:\s*[–—-]\s*{DAY}{TIME}{ON})?\s*,?\s*{ZONE}")
DATE_TOKEN = re.compile(r"<!date\^\d+\^[^|>]*(?:\^[^|>]*)?\|([^>]*)>")


def naked_times(text: str) -> list[str]:
    """Clock times in ``text`` that neither say their zone nor are a ``<!date>`` token."""
    found = [f"<!date> fallback without a zone: {fb!r}" for fb in DATE_TOKEN.findall(text) if not ZONED.search(fb)]
    rest = ZONED.sub(" ", DATE_TOKEN.sub(" ", text))
    rest = re.sub(r"https?://\S+", " ", rest)  # ports in links are not times
    found += [m.group(0) for m in re.finditer(TIME, rest)]
    return found


def test_the_scanner_finds_naked_times_and_passes_zoned_ones() -> None:
    assert naked_times("9:00:00 PM – 11:00:00 PM") == ["9:00:00 PM", "11:00:00 PM"]
    assert naked_times("window 2026-12-05 22:00") == ["22:00"]
    assert naked_times("<!date^1700000000^{time}|2023-11-14 22:13>") != []  # fallback without zone
    for fine in (
        "22:00 (Europe/Berlin)",
        "22:00–00:00 (Europe/Berlin)",
        "22:00 Sun 6 Dec – 00:00 Mon 7 Dec (Europe/Berlin)",
        "2026-12-05 22:00 UTC",
        "2026-12-05T22:00:00+00:00",
        "<!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>",
        "from 22:00 CET to 23:00 CET",
        "see <http://127.0.0.1:33951/archives/C1/p1|its card>",
    ):
        assert naked_times(fine) == [], fine


def texts(value: Any, key: str = "") -> Iterator[str]:
    """Every string a person may read in a Slack API call's parameters (``text`` fields, file comments)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from texts(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from texts(v, key)
    elif isinstance(value, str) and key in ("text", "initial_comment", "title", "alt_text"):
        yield value


async def deliver(h: Harness) -> None:
    await OutboxSender(h.deps, channel_gap=0.0).drain()


async def run_due(h: Harness) -> None:
    tasks = await jobs.run_due_windows(h.deps)
    if tasks:
        await asyncio.gather(*tasks)


async def book_first(h: Harness, stage: str) -> None:
    """``/patch schedule CHG-1 STAGE`` as the operator and book the first proposal with a click."""
    reply = await command(h, f"schedule CHG-1 {stage}")
    before = len(h.fake.responses)
    await h.slack.click(as_message(reply), "schedule_book_1", user=OPS1)
    await eventually(lambda: len(h.fake.responses) > before, what=f"{stage} booked")
    await wait_state(h, ChangeState.TEST_SCHEDULED if stage == "test" else ChangeState.PROD_SCHEDULED)


async def window_start(h: Harness, stage: str) -> Any:
    async with h.deps.sessions.begin() as s:
        return next(w.start for w in await windows.for_change(s, 1) if w.stage == stage)


async def test_no_time_a_person_reads_is_without_its_zone(harness_factory: Any, tmp_path: Any) -> None:
    config = make_config(
        systems={
            "web-shop": {
                "packages": PACKAGES,
                "maintenance_windows": [{"rrule": "FREQ=DAILY;BYHOUR=22;BYMINUTE=0", "duration": "2h"}],
            }
        },
        feeds={"osv": {"source": str(feed_dir(tmp_path))}},
        policy={"announce_notice": "24h", "remind_before": "1h"},
    )
    h: Harness = await harness_factory(config)
    await jobs.run_feeds_poll(h.deps)  # advisory posts with their SLA due dates
    card = await h.request_change(advisory_ref="GHSA-jpcq-cgw6-v4j6")
    await h.slack.approve(card, user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)

    await book_first(h, "test")
    await open_home(h, OWNER)
    await open_home(h, OPS1)
    files = len(h.fake.files)
    await h.slack.command("calendar web-shop", user=OPS1)
    await eventually(lambda: len(h.fake.files) > files, what="calendar picture")
    await command(h, "list")
    h.clock.advance(await window_start(h, "test") - h.clock.now() + timedelta(minutes=1))
    await run_due(h)
    await wait_state(h, ChangeState.TEST_PASSED)
    await h.slack.click(await in_thread(h, card, "test_passed"), "test_passed", user=OWNER)
    await h.slack.click(await in_thread(h, card, "test_acknowledge"), "test_acknowledge", user=OWNER)
    await wait_state(h, ChangeState.PENDING_PROD_APPROVAL)
    h.clock.advance(timedelta(hours=25))
    await jobs.run_sweep(h.deps)  # the approval reminder ("before <deadline>")
    # the card is re-rendered just after the acknowledgement commits: wait for its buttons, do not race it
    await eventually(lambda: "change_approve" in str(h.latest(card).blocks), what="the card asking for prod")
    await h.slack.approve(h.latest(card), user=OWNER)
    await h.slack.approve(h.latest(card), user=SEC1)
    await wait_state(h, ChangeState.APPROVED_FOR_PROD)

    await book_first(h, "prod")
    await deliver(h)  # the announcement
    start = await window_start(h, "prod")
    h.clock.advance(start - h.clock.now() - timedelta(minutes=30))
    async with h.deps.sessions.begin() as s:
        await announcements.sweep_windows(s, config=h.config, now=h.clock.now())
    await deliver(h)  # the reminder
    h.clock.advance(timedelta(minutes=31))
    await run_due(h)
    await wait_state(h, ChangeState.COMPLETED)
    await deliver(h)
    await command(h, "status CHG-1", user=SEC1)
    await command(h, "advisories")
    await open_home(h, OWNER)
    h.clock.advance(timedelta(days=40))
    await jobs.run_advisory_sweep(h.deps)  # SLA reminders and escalations
    await deliver(h)
    await h.deps.homes.flush()

    read = [(c.method, t) for c in h.fake.calls for t in texts(c.params)]
    assert len(read) > 100 and any("<!date^" in t for _, t in read)  # the scan saw the loop
    bad = [(method, t, naked_times(t)) for method, t in read if naked_times(t)]
    assert bad == [], json.dumps(bad, indent=1)[:8000]
