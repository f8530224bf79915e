"""Sandbox time skips play every due event in order, as the production scheduler would (issue 13).

Drives the page's JSON API (what the page's JavaScript sends) through the whole loop with +1 day and
+1 week skips over booked windows, and asserts exactly one announcement of each kind, in order, and no
"missed" notice or phantom rebooking anywhere.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest_asyncio
from test_sandbox import Page, card_of

from bot.sandbox import demo
from bot.sandbox.server import Sandbox, start_sandbox


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await start_sandbox(port=0)
    yield box
    await box.stop()


def texts(state: dict[str, Any], channel: str) -> list[str]:
    """Every message text in ``channel`` (top level and threads), in order."""
    out: list[str] = []
    for m in state["messages"].get(channel, []):
        out.append(m["text"])
        out += [r["text"] for r in m["replies"]]
    return out


def everything(state: dict[str, Any]) -> str:
    return "\n".join(t for c in state["messages"] for t in texts(state, c))


async def click(page: Page, user: str, action_id: str, channel: str, where: str = "card") -> dict[str, Any]:
    """Click the last button ``action_id`` in ``channel`` (top-level messages and their threads)."""
    state = await page.state(user)
    for m in reversed([x for top in state["messages"][channel] for x in [top, *top["replies"]]]):
        for b in m["blocks"]:
            for e in b.get("elements", []) + ([b["accessory"]] if "accessory" in b else []):
                if e.get("action_id") == action_id:
                    action = {"type": "button", "action_id": action_id, "value": e.get("value")}
                    body = {"source": "message", "channel": channel, "ts": m["ts"], "block_id": b.get("block_id")}
                    answer = await page.post("action", user=user, action=action, **body)
                    assert answer["ok"], answer
                    return answer
    raise AssertionError(f"no {action_id} button in {channel} ({where})")


async def approve(page: Page, user: str, channel: str) -> None:
    """Click Approve on the card as ``user`` and press Approve in the confirmation that opens."""
    await click(page, user, "change_approve", channel)
    confirm = await page.until(
        user, lambda s: s["modal"] if s["modal"] and "approve" in s["modal"]["view"]["callback_id"] else None, "confirm"
    )
    assert (await page.post("submit", user=user, view_id=confirm["id"], values={}))["ok"]


async def test_skipping_days_and_weeks_plays_each_window_once_in_order(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        page = Page(sandbox, http)
        await page.post("command", user=demo.DANA, channel=demo.OPS, text="/patch request web-shop")
        modal = await page.until(demo.DANA, lambda s: s["modal"], "request modal")
        values = {"title": "Update jQuery to 3.5.0", "rollback_plan": "Redeploy the previous image"}
        assert (await page.post("submit", user=demo.DANA, view_id=modal["id"], values=values))["ok"]
        await page.until(demo.DANA, card_of, "card posted")
        await approve(page, demo.ALICE, demo.APPROVALS)
        await page.until(demo.ALICE, lambda s: "Approved for test" in str(card_of(s)), "approved for test")

        await page.post("command", user=demo.OLGA, channel=demo.OPS, text="/patch schedule CHG-1 test")
        await page.until(demo.OLGA, lambda s: "schedule_book_1" in str(s["messages"][demo.OPS]), "proposals")
        await click(page, demo.OLGA, "schedule_book_1", demo.OPS)
        booked = await page.until(demo.OLGA, lambda s: "test window of CHG-1 is booked" in everything(s), "test booked")
        # the reply shows the window as the card does (<!date> tokens), plus the system's own clock and zone
        state = await page.state(demo.OLGA)
        reply = next(t for t in texts(state, demo.OPS) if "test window of CHG-1 is booked" in t)
        start = re.search(r"<!date\^(\d+)\^", reply)
        assert booked and start and "(Europe/Berlin)" in reply, reply
        assert f"<!date^{start.group(1)}^" in str(card_of(state)), "card and reply show different times"

        # +1 day over the test window: it opens and deploys; the owner is asked for the result
        assert (await page.post("clock", user=demo.OLGA, hours=24))["ok"]
        await page.until(demo.ALICE, lambda s: "test_passed" in str(s["messages"][demo.APPROVALS]), "result ask")
        await click(page, demo.ALICE, "test_passed", demo.APPROVALS)
        await page.until(demo.ALICE, lambda s: "test_acknowledge" in str(s["messages"][demo.APPROVALS]), "ack")
        await click(page, demo.ALICE, "test_acknowledge", demo.APPROVALS)
        await page.until(demo.ALICE, lambda s: "Pending prod approval" in str(card_of(s)), "prod approval")
        await approve(page, demo.ALICE, demo.APPROVALS)
        await approve(page, demo.SAM, demo.APPROVALS)
        await page.until(demo.SAM, lambda s: "Approved for prod" in str(card_of(s)), "approved for prod")

        await page.post("command", user=demo.OLGA, channel=demo.OPS, text="/patch schedule CHG-1 prod")
        await page.until(demo.OLGA, lambda s: "Book the prod window" in str(s["messages"][demo.OPS]), "prod proposals")
        await click(page, demo.OLGA, "schedule_book_1", demo.OPS)
        await page.until(demo.OLGA, lambda s: "prod window of CHG-1 is booked" in everything(s), "prod booked")

        # +1 week over the prod window: reminder, started, completed, each once and in that order
        assert (await page.post("clock", user=demo.OLGA, hours=168))["ok"]
        await page.until(demo.DANA, lambda s: "Completed" in str(card_of(s)), "completed", limit=30)
        shop = texts(
            await page.until(
                demo.DANA,
                lambda s: s if any("completed" in t.lower() for t in texts(s, demo.SHOP_USERS)) else None,
                "completed announcement",
            ),
            demo.SHOP_USERS,
        )
        kinds = [k for t in shop for k in ("Planned maintenance", "Reminder", "has started", "completed") if k in t]
        assert kinds == ["Planned maintenance", "Reminder", "has started", "completed"], shop
        final = everything(await page.state(demo.OLGA))
        assert "missed" not in final and "rebooked" not in final and "moved" not in final
        assert sandbox.clockwork is not None and sandbox.clockwork.steps > 2


async def test_welcome_reset_jump_calendar_and_reply_order(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        page = Page(sandbox, http)
        first = await page.state(demo.DANA)
        welcome = first["messages"][demo.OPS][0]
        assert "Welcome" in welcome["text"] and "sandbox_reset" in str(welcome["blocks"])
        assert "/patch request web-shop" in str(welcome["blocks"]) and "Dana" in str(welcome["blocks"])
        assert len(first["messages"][demo.ADVISORIES]) >= 3  # the advisories are already posted
        assert "announce_notice: 1h" in first["policy_note"]

        # nothing booked: the jump says what to do instead of moving time
        answer = await page.post("clock", user=demo.OLGA, next_window=True)
        assert not answer["ok"] and "/patch schedule" in answer["error"]

        # an unknown command's reply sits below the command's place, and later messages below the reply
        await page.post("command", user=demo.OLGA, channel=demo.OPS, text="/patch frobnicate")
        await page.until(demo.OLGA, lambda s: len(s["messages"][demo.OPS]) == 2, "usage reply")
        await page.post("command", user=demo.OLGA, channel=demo.OPS, text="/patch calendar web-shop")
        msgs = await page.until(
            demo.OLGA, lambda s: [m for m in s["messages"][demo.OPS] if m["files"]] and s["messages"][demo.OPS], "file"
        )
        assert msgs[1]["ephemeral"] and "frobnicate" in msgs[1]["text"].lower() and msgs[-1]["files"]

        async with http.get(f"{sandbox.url}calendar.ics") as resp:  # on the page's port, not the bot's
            assert resp.status == 200 and b"BEGIN:VCALENDAR" in await resp.read()

        # Reset: back to the welcome alone, real time, no changes
        await page.post("clock", user=demo.OLGA, hours=5)
        reset = {"type": "button", "action_id": "sandbox_reset", "value": "reset"}
        answer = await page.post(
            "action", user=demo.OLGA, source="message", channel=demo.OPS, ts=welcome["ts"], action=reset
        )
        assert answer == {"ok": True, "reset": True}
        after = await page.state(demo.OLGA)
        assert [m["text"] for m in after["messages"][demo.OPS]] == [welcome["text"]]
        assert sandbox.deps.clock.now() - datetime.now(UTC) < timedelta(minutes=1)
        await page.post("command", user=demo.DANA, channel=demo.OPS, text="/patch list all")
        listing = await page.until(demo.DANA, lambda s: len(s["messages"][demo.OPS]) > 1 and s, "list reply")
        assert "CHG-" not in str(listing["messages"][demo.OPS][1:])


async def test_a_change_created_from_an_advisory_links_its_post_on_the_card(sandbox: Sandbox) -> None:
    from bot.blocks.advisory import AdvisoryAction

    async with aiohttp.ClientSession() as http:
        page = Page(sandbox, http)
        await click(page, demo.ALICE, AdvisoryAction.CREATE_CHANGE.value, demo.ADVISORIES)
        modal = await page.until(demo.ALICE, lambda s: s["modal"], "request modal")
        values = {"title": "Fix the advisory", "rollback_plan": "Reinstall the old package"}
        answer = await page.post("submit", user=demo.ALICE, view_id=modal["id"], values=values)
        assert answer["ok"], answer
        card = await page.until(demo.ALICE, card_of, "card")
        linked = next(f["text"] for b in card["blocks"] for f in b.get("fields", []) if "Linked advisory" in f["text"])
        assert f"/archives/{demo.ADVISORIES}/p" in linked, linked
