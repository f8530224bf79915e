"""App Home: pending approvals with working buttons, open changes, booked windows, overdue advisories."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from conftest import OWNER, REQ, SEC1, Harness, eventually

from bot.blocks.common import validate_blocks
from bot.sandbox.fake_slack import Message
from storage import changes
from storage.models import (
    AdvisoryMatch,
    AdvisoryRecord,
    AdvisoryStatus,
    ChangeState,
    Window,
    WindowState,
)


async def open_home(h: Harness, user: str) -> None:
    """Send the app_home_opened event Slack sends when ``user`` opens the Home tab."""
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0SANDBOX",
            "api_app_id": "A0PATCH",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"},
        }
    )
    status, _ = await h.slack.post(body, "application/json")
    assert status == 200


def home_text(h: Harness, user: str) -> str:
    return json.dumps(h.fake.home.get(user, {}))


async def add_overdue_advisory(h: Harness, *, system: str = "web-shop") -> None:
    now = h.clock.now()
    async with h.deps.sessions.begin() as s:
        rec = AdvisoryRecord(
            primary_id="CVE-2024-6387",
            sources=["osv"],
            aliases=[],
            data={},
            content_hash="0" * 64,
            severity="critical",
            known_exploited=True,
            status=AdvisoryStatus.OPEN,
            due=now - timedelta(days=2),
            first_seen=now - timedelta(days=40),
            updated_at=now,
        )
        s.add(rec)
        await s.flush()
        s.add(
            AdvisoryMatch(
                advisory_id=rec.id,
                system=system,
                ecosystem="Debian:12",
                package="openssh-server",
                installed="1:9.2p1-2",
                fixed=["1:9.2p1-2+deb12u3"],
                status="affected",
            )
        )


async def test_home_shows_pending_approval_and_its_button_approves(harness: Harness) -> None:
    h = harness
    await h.request_change()
    # posting the card refreshed the owner's Home: the approval waits there, with the buttons
    await eventually(lambda: "change_approve" in home_text(h, OWNER), what="owner's home")
    view = h.fake.home[OWNER]
    validate_blocks(view["blocks"], surface="home")
    assert "CHG-1" in home_text(h, OWNER) and "Waiting for your approval" in home_text(h, OWNER)
    # the requester sees the change among their open changes, without buttons
    await open_home(h, REQ)
    await eventually(lambda: "Your open changes" in home_text(h, REQ), what="requester's home")
    assert "CHG-1" in home_text(h, REQ) and "change_approve" not in home_text(h, REQ)

    as_message = Message("", "", "", view["blocks"], None)
    status, _ = await h.slack.approve(as_message, user=OWNER)
    assert status == 200

    async def approved() -> bool:
        async with h.deps.sessions.begin() as s:
            change = await changes.get(s, 1)
            return change is not None and change.state is ChangeState.APPROVED_FOR_TEST

    await eventually(lambda: "change_approve" not in home_text(h, OWNER), what="home refreshed")
    assert await approved()
    assert "Nothing waits for your approval" in home_text(h, OWNER)
    validate_blocks(h.fake.home[OWNER]["blocks"], surface="home")


async def test_home_lists_booked_windows_and_overdue_advisories(harness: Harness) -> None:
    h = harness
    await h.request_change()
    now = h.clock.now()
    async with h.deps.sessions.begin() as s:
        s.add(
            Window(
                change_id=1,
                stage="test",
                systems=["web-shop"],
                start=now + timedelta(days=2),
                end=now + timedelta(days=2, hours=2),
                state=WindowState.BOOKED,
                booked_by=OWNER,
                booked_at=now,
            )
        )
    await add_overdue_advisory(h)
    await open_home(h, OWNER)
    await eventually(lambda: "CVE-2024-6387" in home_text(h, OWNER), what="overdue advisory on home")
    text = home_text(h, OWNER)
    assert "Upcoming windows" in text and "*CHG-1* test on web-shop (booked)" in text
    assert "known exploited" in text
    validate_blocks(h.fake.home[OWNER]["blocks"], surface="home")
    # security (the fallback group) looks after every system; an outsider's Home stays quiet
    await open_home(h, SEC1)
    await eventually(lambda: "CVE-2024-6387" in home_text(h, SEC1), what="security's home")
    await open_home(h, "U0NOBODY")
    await eventually(lambda: home_text(h, "U0NOBODY") != "{}", what="outsider's home")
    assert "CVE-2024-6387" not in home_text(h, "U0NOBODY")
