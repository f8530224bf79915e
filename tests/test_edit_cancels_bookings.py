"""An edit of a booked change cancels (and announces the cancellation of) the bookings for the old revision."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import REQ, Harness
from test_announcements import users_texts
from test_scheduling import all_windows, approved_change, command, fast_sender, schedule_config, set_clock

from storage.models import WindowState


async def test_edit_cancels_and_announces_the_old_revisions_booking(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h)
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    await fast_sender(h).drain()
    assert len(users_texts(h)) == 1  # booked and announced
    status, _ = await h.slack.command("edit CHG-1", user=REQ)
    assert status == 200
    view = await h.opened_view("change_edit")
    status, body = await h.slack.submit(view, {"title": "Update OpenSSL to 3.0.16 instead"}, user=REQ)
    assert status == 200, body
    # the modal is acknowledged before the edit commits: poll for it
    deadline = asyncio.get_running_loop().time() + 10
    while (await all_windows(h))[0].state is not WindowState.CANCELLED:
        assert asyncio.get_running_loop().time() < deadline, "the booking was not cancelled"
        await asyncio.sleep(0.02)
    await fast_sender(h).drain()
    texts = users_texts(h)
    assert len(texts) == 2 and "cancel" in texts[1].lower(), texts
