"""The page's view of the fake Slack (what each person sees) and the signed requests sent on their behalf.

Moved out of ``server.py`` unchanged but for the Reset hook and ordering (issue 13) to keep both modules
under 400 lines.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from bot.config import Config
from bot.sandbox import demo, welcome
from bot.sandbox.driver import TEAM, SlackDriver
from bot.sandbox.fake_slack import FakeSlack, Message

BANNER = (
    "SANDBOX: a local fake Slack workspace on this machine. Nothing here reaches Slack; "
    "the data is temporary and disappears when the sandbox stops."
)


def policy_note(config: Config) -> str:
    """Said on the page when the policy announces windows less than a day ahead (the demo's is shortened)."""
    notice = config.policy.announce_notice
    if notice >= timedelta(hours=24):
        return ""
    return (
        f"Demo policy shortened: announce_notice: {welcome.duration(notice)} (production policies announce "
        "at least 24 h ahead), so a window can be booked for tonight."
    )


def channels_of(config: Config) -> dict[str, str]:
    """Channel id -> name: the demo's names, then every channel the configuration mentions."""
    ids = [config.slack.approvals_channel, config.slack.advisories_channel, config.slack.audit_channel]
    ids += [s.announce_channel for s in config.systems.values()]
    out = {c: n for c, n in demo.DEMO_CHANNELS.items() if c in ids or c == demo.OPS}
    out |= {c: c.lower() for c in ids if c and c not in out}
    return out


def _ts_key(ts: str) -> int:
    """The fake's ts is ``<seconds>.<global counter>``: the counter orders messages exactly."""
    return int(ts.partition(".")[2] or 0)


def _message(m: Message) -> dict[str, Any]:
    files = [{**f, "url": f"/files/{f['id']}"} for f in m.files]
    return {"ts": m.ts, "channel": m.channel, "text": m.text, "blocks": m.blocks, "files": files}


@dataclass
class Workspace:
    """The page's view of the fake Slack, and the signed requests it sends on a person's behalf."""

    config: Config
    fake: FakeSlack
    driver: SlackDriver
    bot_url: str
    people: list[demo.Person]
    channels: dict[str, str]
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _stacks: dict[str, list[str]] = field(default_factory=dict)  # user -> open modal view ids
    _seen_views: set[str] = field(default_factory=set)
    _last_user: str = ""
    _notes: list[dict[str, Any]] = field(default_factory=list)  # immediate ack texts, per user
    on_reset: Callable[[], Awaitable[None]] | None = None  # the welcome post's Reset button

    def forget(self) -> None:
        """Forget open modals and typed replies (Reset)."""
        self._stacks.clear()
        self._seen_views.clear()
        self._notes.clear()

    def _trigger(self, user: str) -> str:
        self._last_user = user
        return f"{next(self._ids)}.{user}.sandbox"

    def _sync_views(self) -> None:
        for view_id, trigger in self.fake.view_triggers.items():
            if view_id in self._seen_views:
                continue
            self._seen_views.add(view_id)
            parts = trigger.split(".")
            user = parts[1] if len(parts) == 3 and parts[2] == "sandbox" else self._last_user
            self._stacks.setdefault(user, []).append(view_id)

    def _close(self, user: str, view_id: str) -> None:
        stack = self._stacks.get(user, [])
        if view_id in stack:
            stack.remove(view_id)

    def state(self, user: str) -> dict[str, Any]:
        """Everything the page shows to ``user``."""
        self._sync_views()
        top: dict[str, list[dict[str, Any]]] = {c: [] for c in self.channels}
        threads: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        # (order, channel, item): messages, response_url replies and typed-command notes share one counter,
        # so a reply appears below what was there when it came, and later messages below it.
        timeline: list[tuple[int, str, dict[str, Any]]] = []
        for m in self.fake.messages.values():
            if m.ephemeral_to is not None and m.ephemeral_to != user:
                continue
            item = {**_message(m), "ephemeral": m.ephemeral_to is not None}
            if m.thread_ts and m.thread_ts != m.ts:
                threads.setdefault(m.thread_ts, []).append((_ts_key(m.ts), item))
            else:
                timeline.append((_ts_key(m.ts), m.channel or "", item))
        for call in self.fake.calls:
            if call.method != "response_url":
                continue
            _, who, channel = [*str(call.params.get("response_url_id", "")).split("."), "", ""][:3]
            if who == user or call.params.get("response_type") == "in_channel":
                item = {"ts": "", "channel": channel, "text": call.params.get("text", ""), "files": []}
                item |= {"blocks": call.params.get("blocks") or [], "ephemeral": True}
                timeline.append((call.seq, channel, item))
        for note in self._notes:
            if note["user"] == user:
                timeline.append((note["seq"], note["channel"], note["message"]))
        for _, channel, item in sorted(timeline, key=lambda entry: entry[0]):
            top.setdefault(channel, []).append(item)
        replies = {ts: [item for _, item in sorted(items, key=lambda e: e[0])] for ts, items in threads.items()}
        for msgs in top.values():
            for entry in msgs:
                entry["replies"] = replies.get(entry["ts"], []) if entry["ts"] else []
        stack = self._stacks.get(user, [])
        modal = {"id": stack[-1], "view": self.fake.views.get(stack[-1], {})} if stack else None
        names = {**self.channels, **{c: c.lower() for c in top if c and c not in self.channels}}
        return {
            "banner": BANNER,
            "policy_note": policy_note(self.config),
            "bot_url": self.bot_url,
            "people": [p.__dict__ for p in self.people],
            "channels": [{"id": c, "name": n} for c, n in names.items()],
            "messages": top,
            "home": self.fake.home.get(user),
            "modal": modal,
        }

    async def command(self, user: str, channel: str, text: str) -> dict[str, Any]:
        """Type a slash command (``/patch ...``) in ``channel``."""
        command, _, rest = text.strip().partition(" ")
        if command != "/patch":
            return {"ok": False, "error": "The sandbox knows one command: /patch (try /patch help)."}
        trigger = self._trigger(user)
        body = urlencode(
            {
                "token": "sandbox",
                "team_id": TEAM["id"],
                "team_domain": TEAM["domain"],
                "channel_id": channel,
                "channel_name": self.channels.get(channel, channel.lower()),
                "user_id": user,
                "user_name": user.lower(),
                "command": command,
                "text": rest,
                "api_app_id": "A0PATCH",
                "trigger_id": trigger,
                "response_url": f"{self.fake.url}/response_url/{trigger.split('.')[0]}.{user}.{channel}",
            }
        )
        status, answer = await self.driver.post(body, "application/x-www-form-urlencoded")
        if answer.strip():  # an immediate reply in the ack (usage errors): Slack shows it to the typist only
            try:
                text_ = str(json.loads(answer).get("text", answer))
            except (ValueError, AttributeError):
                text_ = answer
            message = {"ts": "", "channel": channel, "text": text_, "blocks": [], "files": [], "ephemeral": True}
            self._notes.append({"user": user, "channel": channel, "message": message, "seq": self.fake.next_seq()})
        return {"ok": status == 200, "status": status}

    async def action(self, user: str, req: dict[str, Any]) -> dict[str, Any]:
        """A click or selection on a message, the Home tab or an open modal."""
        if req.get("action", {}).get("action_id") == welcome.RESET_ACTION and self.on_reset is not None:
            await self.on_reset()  # the sandbox's own button: never sent to the bot
            return {"ok": True, "reset": True}
        trigger = self._trigger(user)
        act = {**req["action"], "block_id": req.get("block_id"), "action_ts": str(time.time())}
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": TEAM,
            "user": {"id": user, "username": user.lower()},
            "api_app_id": "A0PATCH",
            "trigger_id": trigger,
            "actions": [act],
        }
        source = req.get("source")
        if source == "message":
            channel, ts = str(req["channel"]), str(req["ts"])
            msg = self.fake.messages.get(ts)
            payload |= {
                "channel": {"id": channel},
                "message": {"ts": ts, "text": msg.text if msg else "", "blocks": msg.blocks if msg else []},
                "container": {"type": "message", "channel_id": channel, "message_ts": ts},
                "response_url": f"{self.fake.url}/response_url/{trigger.split('.')[0]}.{user}.{channel}",
            }
        else:
            view_id = str(req.get("view_id") or "")
            view = self.fake.home.get(user, {}) if source == "home" else self.fake.views.get(view_id, {})
            payload |= {
                "container": {"type": "view", "view_id": view_id or f"VHOME{user}"},
                "view": {**view, "id": view_id or f"VHOME{user}", "state": {"values": {}}},
            }
        status, _ = await self.driver.interaction(payload)
        return {"ok": status == 200, "status": status}

    async def submit(self, user: str, view_id: str, values: dict[str, Any]) -> dict[str, Any]:
        """Submit the modal ``view_id`` with ``values`` by block id; returns inline errors if any."""
        self._last_user = user
        view = self.fake.views.get(view_id)
        if view is None:
            return {"ok": False, "error": "This form is no longer open."}
        status, answer = await self.driver.submit({**view, "id": view_id}, values, user=user)
        reply: dict[str, Any] = json.loads(answer) if answer.strip().startswith("{") else {}
        action = reply.get("response_action")
        if action == "errors":
            return {"ok": False, "errors": reply.get("errors", {})}
        if action == "update":
            self.fake.views[view_id] = reply.get("view", view)
        elif action == "push":
            new_id = f"VP{next(self._ids):07d}"
            self.fake.views[new_id] = reply.get("view", {})
            self._seen_views.add(new_id)
            self._stacks.setdefault(user, []).append(new_id)
        else:
            self._close(user, view_id)
        return {"ok": status == 200}

    def close(self, user: str, view_id: str) -> None:
        """The person pressed Cancel on a modal."""
        self._close(user, view_id)

    async def open_home(self, user: str) -> dict[str, Any]:
        """The person opened the Home tab: Slack sends ``app_home_opened``."""
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": TEAM["id"],
                "api_app_id": "A0PATCH",
                "event_id": f"Ev{next(self._ids):08d}",
                "event_time": int(time.time()),
                "event": {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"},
            }
        )
        status, _ = await self.driver.post(body, "application/json")
        return {"ok": status == 200}
