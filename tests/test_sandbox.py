"""The local sandbox: loopback only, signed requests to the real bot, the page's JSON API end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from click.testing import CliRunner

from bot.__main__ import cli
from bot.blocks.common import validate_blocks
from bot.sandbox import demo
from bot.sandbox.server import Sandbox, start_sandbox


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await start_sandbox(port=0)
    yield box
    await box.stop()


class Page:
    """What the page's JavaScript does, as plain HTTP calls."""

    def __init__(self, box: Sandbox, http: aiohttp.ClientSession) -> None:
        self.box, self.http = box, http

    async def state(self, user: str) -> dict[str, Any]:
        async with self.http.get(f"{self.box.url}api/state", params={"user": user}) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body

    async def post(self, kind: str, **body: Any) -> dict[str, Any]:
        headers = {"X-Sandbox-Token": self.box.token}
        async with self.http.post(f"{self.box.url}api/{kind}", json=body, headers=headers) as resp:
            answer: dict[str, Any] = await resp.json()
            return answer

    async def until(self, user: str, check: Any, what: str, limit: float = 10.0) -> Any:
        """Poll the state as ``user`` until ``check`` returns something truthy (the page polls too)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            found = check(await self.state(user))
            if found:
                return found
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {limit}s waiting for {what}")
            await asyncio.sleep(0.02)


def card_of(state: dict[str, Any]) -> dict[str, Any] | None:
    cards = [m for m in state["messages"].get(demo.APPROVALS, []) if m["blocks"]]
    return cards[-1] if cards else None


async def test_sandbox_plays_request_and_approval_through_signed_requests(sandbox: Sandbox) -> None:
    assert sandbox.url.startswith("http://127.0.0.1:") and sandbox.bot_url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as http:
        page = Page(sandbox, http)
        async with http.get(sandbox.url) as resp:
            assert resp.status == 200 and "SANDBOX" in await resp.text()
        first = await page.state(demo.DANA)
        assert "SANDBOX" in first["banner"]
        assert {p["id"] for p in first["people"]} >= {demo.ALICE, demo.SAM, demo.OLGA, demo.DANA}
        assert demo.APPROVALS in {c["id"] for c in first["channels"]}

        # a bad signature never reaches a listener: the sandbox signs like Slack, and only it knows the secret
        status, _ = await sandbox.workspace.driver.post("x=1", "application/x-www-form-urlencoded", secret="wrong")
        assert status == 401

        assert (await page.post("command", user=demo.DANA, channel=demo.OPS, text="/patch request web-shop"))["ok"]
        modal = await page.until(demo.DANA, lambda s: s["modal"], "request modal")
        assert modal["view"]["callback_id"] == "change_request"
        assert (await page.state(demo.ALICE))["modal"] is None  # only the typist sees the form
        errors = await page.post("submit", user=demo.DANA, view_id=modal["id"], values={"title": None})
        assert "title" in errors["errors"]
        values = {"title": "Update jQuery to 3.5.0", "rollback_plan": "Redeploy the previous image"}
        assert (await page.post("submit", user=demo.DANA, view_id=modal["id"], values=values))["ok"]
        card = await page.until(demo.DANA, card_of, "card posted")
        assert "CHG-1" in card["text"] and (await page.state(demo.DANA))["modal"] is None

        approve = next(
            (b["block_id"], e)
            for b in card["blocks"]
            for e in b.get("elements", [])
            if e.get("action_id") == "change_approve"
        )
        action = {"type": "button", "action_id": "change_approve", "value": approve[1]["value"]}
        answer = await page.post(
            "action",
            user=demo.ALICE,
            source="message",
            channel=demo.APPROVALS,
            ts=card["ts"],
            block_id=approve[0],
            action=action,
        )
        assert answer["ok"]
        # the confirmation opens for Alice only (an approver); nothing counts until she presses Approve in it
        confirm = await page.until(demo.ALICE, lambda s: s["modal"], "approve confirmation")
        assert confirm["view"]["callback_id"] == "change_approve_confirm" and "revision 1" in str(confirm["view"])
        assert (await page.state(demo.DANA))["modal"] is None
        assert "Approved for test" not in str(card_of(await page.state(demo.ALICE)))
        assert (await page.post("submit", user=demo.ALICE, view_id=confirm["id"], values={}))["ok"]
        await page.until(demo.ALICE, lambda s: "Approved for test" in str(card_of(s)), "approved card")
        await page.until(
            demo.DANA,
            lambda s: any("is approved for *test*" in r["text"] for r in (card_of(s) or {})["replies"]),
            "thread reply",
        )

        # Home: the owner's tab shows the demo's overdue advisories; the blocks are valid Block Kit
        assert (await page.post("home", user=demo.ALICE))["ok"]
        home = await page.until(demo.ALICE, lambda s: s["home"], "home published")
        validate_blocks(home["blocks"], surface="home")
        assert "Overdue advisories" in str(home) and "GHSA-" in str(home)

        # the calendar picture arrives as a file in the channel, served by the page
        await page.post("command", user=demo.ALICE, channel=demo.OPS, text="/patch calendar web-shop")
        posted = await page.until(
            demo.ALICE, lambda s: [m for m in s["messages"][demo.OPS] if m["files"]], "calendar file"
        )
        async with http.get(sandbox.url.rstrip("/") + posted[0]["files"][0]["url"]) as resp:
            assert resp.status == 200 and (await resp.read())[:4] == b"\x89PNG"
        async with http.get(f"{sandbox.bot_url}/calendar.ics") as resp:
            assert resp.status == 200 and b"Seasonal sale" in await resp.read()
        # usage errors come back only to the typist
        await page.post("command", user=demo.OLGA, channel=demo.OPS, text="/patch frobnicate")
        await page.until(demo.OLGA, lambda s: any(m["ephemeral"] for m in s["messages"][demo.OPS]), "usage")
        assert not any(m["ephemeral"] for m in (await page.state(demo.ALICE))["messages"][demo.OPS])
        assert (await page.post("command", user="U0STRANGER", channel=demo.OPS, text="/patch help")) == {
            "ok": False,
            "error": "unknown person",
        }


def test_serve_without_credentials_starts_the_sandbox(monkeypatch: Any) -> None:
    started: list[int] = []

    async def fake_run(port: int, config: Any = None) -> None:
        started.append(port)

    monkeypatch.setattr("bot.cli.sandbox.run_sandbox", fake_run)
    result = CliRunner().invoke(cli, ["serve", "--port", "3999"])
    assert result.exit_code == 0, result.output
    assert started == [3999] and "sandbox" in result.output


async def test_page_api_refuses_cross_site_posts_and_requires_the_start_token(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{sandbox.url}api/command"
        body = {"user": demo.DANA, "channel": demo.OPS, "text": "/patch help"}
        good = {"X-Sandbox-Token": sandbox.token}
        attempts = [
            ({}, json.dumps(body), "application/json"),  # no token (a page that never saw ours)
            ({**good, "Origin": "http://evil.example"}, json.dumps(body), "application/json"),
            ({**good, "Host": "evil.example"}, json.dumps(body), "application/json"),
            (good, json.dumps(body), "text/plain"),  # the cross-site "simple request"
        ]
        for headers, data, kind in attempts:
            async with http.post(url, data=data, headers={**headers, "Content-Type": kind}) as resp:
                assert resp.status == 403, (headers, kind, resp.status)
        async with http.get(sandbox.url) as resp:
            assert sandbox.token and sandbox.token in await resp.text()  # the page we serve carries it
        async with http.post(url, json=body, headers=good) as resp:
            assert resp.status == 200 and (await resp.json())["ok"]
