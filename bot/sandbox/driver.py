"""Sends what Slack would send: signed slash commands, button clicks and view submissions.

The tests use it to drive the real ``/slack/events`` endpoint; the sandbox page uses it on behalf of the
person it acts as. Bodies are signed exactly like Slack does (v0 HMAC-SHA256 over ``v0:ts:body``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier

from bot.sandbox.fake_slack import FakeSlack, Message

TEAM: dict[str, str] = {"id": "T0SANDBOX", "domain": "sandbox"}


def signed_headers(secret: str, body: str, content_type: str, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a request signed with ``secret`` (``timestamp`` defaults to now)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def element_state(element: dict[str, Any], value: Any) -> dict[str, Any]:
    """The ``state.values`` entry Slack sends for an input element holding ``value``."""
    kind = element["type"]
    if kind == "multi_static_select":
        return {
            "type": kind,
            "selected_options": [{"value": v, "text": {"type": "plain_text", "text": v}} for v in value],
        }
    if kind == "static_select":
        return {
            "type": kind,
            "selected_option": {"value": value, "text": {"type": "plain_text", "text": value}},
        }
    if kind == "users_select":
        return {"type": kind, "selected_user": value}
    if kind == "datepicker":
        return {"type": kind, "selected_date": value}
    return {"type": kind, "value": value}


def initial_value(element: dict[str, Any]) -> Any:
    """What an untouched element submits (its initial value)."""
    kind = element["type"]
    if kind == "multi_static_select":
        return [o["value"] for o in element.get("initial_options", [])] or None
    if kind == "static_select":
        return (element.get("initial_option") or {}).get("value")
    if kind == "users_select":
        return element.get("initial_user")
    if kind == "datepicker":
        return element.get("initial_date")
    return element.get("initial_value")


class SlackDriver:
    """Acts as Slack towards the bot's endpoint, as any person of the workspace."""

    def __init__(self, *, endpoint: str, secret: str, fake: FakeSlack, http: aiohttp.ClientSession) -> None:
        self.endpoint, self.secret, self.fake, self.http = endpoint, secret, fake, http
        self._ids = itertools.count(1)

    async def post(
        self, body: str, content_type: str, *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[int, str]:
        """POST a signed body; returns (status, response text)."""
        headers = signed_headers(secret or self.secret, body, content_type, timestamp=timestamp)
        async with self.http.post(self.endpoint, data=body.encode(), headers=headers) as resp:
            return resp.status, await resp.text()

    async def command(
        self, text: str, *, user: str, channel: str = "C0OPS", command: str = "/patch", **kw: Any
    ) -> tuple[int, str]:
        """A slash command as ``user`` typed it."""
        n = next(self._ids)
        body = urlencode(
            {
                "token": "legacy",
                "team_id": TEAM["id"],
                "team_domain": TEAM["domain"],
                "channel_id": channel,
                "channel_name": channel.lower(),
                "user_id": user,
                "user_name": user.lower(),
                "command": command,
                "text": text,
                "api_app_id": "A0PATCH",
                "trigger_id": f"{n}.trigger",
                "response_url": f"{self.fake.url}/response_url/r{n}",
            }
        )
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def interaction(self, payload: dict[str, Any], **kw: Any) -> tuple[int, str]:
        """Any interactivity payload (form field ``payload``)."""
        return await self.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded", **kw)

    async def click(
        self, message: Message, action_id: str, *, user: str, trigger_id: str | None = None, **kw: Any
    ) -> tuple[int, str]:
        """Click the button ``action_id`` on ``message`` (as currently rendered in the fake)."""
        for block in message.blocks:
            for el in block.get("elements", []):
                if el.get("action_id") == action_id:
                    n = next(self._ids)
                    payload = {
                        "type": "block_actions",
                        "team": TEAM,
                        "user": {"id": user, "username": user.lower()},
                        "api_app_id": "A0PATCH",
                        "trigger_id": trigger_id or f"{n}.trigger",
                        "channel": {"id": message.channel},
                        "message": {"ts": message.ts, "text": message.text},
                        "container": {
                            "type": "message",
                            "channel_id": message.channel,
                            "message_ts": message.ts,
                        },
                        "response_url": f"{self.fake.url}/response_url/r{n}",
                        "actions": [
                            {
                                "type": "button",
                                "action_id": action_id,
                                "block_id": block.get("block_id"),
                                "value": el.get("value"),
                                "action_ts": str(time.time()),
                            }
                        ],
                    }
                    return await self.interaction(payload, **kw)
        raise AssertionError(f"no button {action_id} on message {message.ts}")

    async def opened_by(self, trigger_id: str, *, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The modal the bot opened with ``trigger_id`` (polls the fake until it appears or the deadline passes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for view_id, trigger in list(self.fake.view_triggers.items()):
                if trigger == trigger_id:
                    return self.fake.views[view_id]
            if loop.time() > deadline:
                raise AssertionError(f"no modal was opened for {trigger_id} within {timeout}s")
            await asyncio.sleep(0.01)

    async def approve(
        self,
        message: Message,
        *,
        user: str,
        edit: Any = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> tuple[int, str]:
        """Click Approve on ``message`` as ``user`` and confirm in the modal the bot opens, as a person would.

        For people the policy lets approve (a refused click opens no modal: use ``click`` and read the
        ephemeral). ``edit`` is awaited between the modal opening and its submission. Returns the
        submission's (status, response text)."""
        trigger = f"{next(self._ids)}.approve.trigger"
        status, body = await self.click(message, "change_approve", user=user, trigger_id=trigger)
        if status != 200:
            return status, body
        try:
            view = await self.opened_by(trigger, timeout=timeout)
        except AssertionError as exc:
            told = self.fake.ephemerals(user)[-3:]
            raise AssertionError(f"{user} got no approve confirmation; last ephemerals: {told}") from exc
        if edit is not None:
            await edit()
        return await self.submit(view, {}, user=user)

    async def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str) -> tuple[int, str]:
        """Submit a modal: ``values`` by block id override the elements' initial values."""
        state: dict[str, Any] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            el = block["element"]
            value = values.get(block["block_id"], initial_value(el))
            state[block["block_id"]] = {
                el["action_id"]: element_state(el, value) if value is not None else {"type": el["type"]}
            }
        payload = {
            "type": "view_submission",
            "team": TEAM,
            "user": {"id": user},
            "api_app_id": "A0PATCH",
            "trigger_id": f"{next(self._ids)}.trigger",
            "view": {**view, "id": view.get("id", "V0"), "type": "modal", "state": {"values": state}},
        }
        return await self.interaction(payload)
