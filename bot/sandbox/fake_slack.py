"""A fake Slack Web API (aiohttp): answers like Slack for the methods patchwarden uses and records every call.

Used by the tests and, later, by the local sandbox workspace. Fault injection: latency, HTTP 429 with
Retry-After, 5xx and Slack error codes; optionally it enforces Slack's ~1 message/second/channel limit.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any
from urllib.parse import parse_qs

from aiohttp import WSMsgType, web

from bot.sandbox.fake_files import FakeFiles
from bot.sandbox.fake_model import MAX_MESSAGE_BLOCKS, Call, Message

__all__ = ["MAX_MESSAGE_BLOCKS", "Call", "FakeSlack", "Message", "bound_port", "start"]


class FakeSlack(FakeFiles):
    """Records Web API calls under ``/api/{method}`` and keeps channels, threads and views in memory."""

    def __init__(
        self,
        *,
        token_prefix: str = "xox",  # noqa: S107 (a prefix, not a secret)
        channel_rate_per_second: float | None = None,
    ) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}  # ts -> message
        self.views: dict[str, dict[str, Any]] = {}
        self.home: dict[str, dict[str, Any]] = {}  # user -> published home view
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_url
        self.view_triggers: dict[str, str] = {}  # view id -> trigger id that opened it
        self.files: dict[str, dict[str, Any]] = {}  # file id -> {name, title, length, content}
        self.failures: dict[str, list[dict[str, Any]]] = {}
        self.latency = 0.0
        self.channel_rate = channel_rate_per_second
        self._last_post: dict[str, float] = {}
        self._ts = itertools.count(1)
        self._token_prefix = token_prefix
        self.url = ""
        self.socket_envelopes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # pushed to a Socket Mode client
        self.socket_acks: list[dict[str, Any]] = []  # what the client answered, by envelope_id
        self.app = web.Application()
        self.app.router.add_post("/api/{method}", self._api)
        self.app.router.add_get("/api/{method}", self._api)  # slack_sdk reads conversations.* with GET
        self.app.router.add_post("/response_url/{rid}", self._response_url)
        self.app.router.add_get("/socket", self._socket)
        self.app.router.add_post("/upload/{file_id}", self._upload)
        self.app.router.add_get("/files/{file_id}", self._file)

    # ---- assertions helpers -------------------------------------------------------------------------

    def of(self, method: str) -> list[dict[str, Any]]:
        """Parameters of every call to ``method``, in order."""
        return [c.params for c in self.calls if c.method == method]

    def channel_messages(self, channel: str, *, thread_ts: str | None = None) -> list[Message]:
        """Messages in a channel (top level) or in one thread."""
        return [
            m
            for m in self.messages.values()
            if m.channel == channel
            and m.ephemeral_to is None
            and (m.thread_ts == thread_ts if thread_ts else m.thread_ts is None)
        ]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """Replies in the thread under ``ts``."""
        return [m for m in self.messages.values() if m.channel == channel and m.thread_ts == ts]

    def ephemerals(self, user: str) -> list[str]:
        """Texts shown only to ``user`` (chat.postEphemeral and ephemeral response_url replies)."""
        out = [p.get("text", "") for p in self.of("chat.postEphemeral") if p.get("user") == user]
        return out

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str = "internal_error",
        retry_after: int = 1,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (429 uses Retry-After)."""
        self.failures.setdefault(method, []).extend(
            [{"status": status, "error": error, "retry_after": retry_after}] * times
        )

    # ---- the API ------------------------------------------------------------------------------------

    def post(self, channel: str, text: str, blocks: list[dict[str, Any]]) -> Message:
        """Put a message into ``channel`` directly, as another app would (the sandbox's welcome post)."""
        message = Message(channel, self._next_ts(), text, blocks, None, user="USANDBOX")
        self.messages[message.ts] = message
        return message

    def next_seq(self) -> int:
        """The next number of the counter that orders messages (``ts`` is ``<seconds>.<counter>``)."""
        return next(self._ts)

    def reset(self) -> None:
        """Forget every message, view, Home tab, file and recorded call (the sandbox's Reset)."""
        for store in (self.calls, self.responses, self.socket_acks):
            store.clear()
        for mapping in (self.messages, self.views, self.home, self.view_triggers, self.files, self.failures):
            mapping.clear()
        self._last_post.clear()

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            raw = await request.text()
            return dict(json.loads(raw or "{}"))
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            return {k: v for k, v in form.items() if isinstance(v, str)}
        params: dict[str, Any] = {k: v[0] for k, v in parse_qs(await request.text()).items()}
        for key in ("blocks", "view", "attachments"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        params.update({k: v for k, v in request.query.items() if k not in params})
        self.calls.append(Call(method, params, time.monotonic()))
        if self.latency:
            await asyncio.sleep(self.latency)
        auth = request.headers.get("Authorization", "")
        if method == "apps.connections.open":  # Socket Mode: app-level token (xapp-), not the bot token
            if not auth.startswith("Bearer xapp-"):
                return web.json_response({"ok": False, "error": "not_authed"})
            return web.json_response({"ok": True, "url": self.url.replace("http://", "ws://") + "/socket"})
        if not auth.startswith(f"Bearer {self._token_prefix}"):
            return web.json_response({"ok": False, "error": "not_authed"})
        queued = self.failures.get(method)
        if queued:
            fail = queued.pop(0)
            if fail["status"] == 429:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(fail["retry_after"])},
                )
            if fail["status"] >= 500:
                return web.json_response({"ok": False, "error": fail["error"]}, status=fail["status"])
            return web.json_response({"ok": False, "error": fail["error"]})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": True})
        result: web.Response = await handler(params)
        return result

    async def _auth_test(self, _p: dict[str, Any]) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "team_id": "T0SANDBOX",
                "user_id": "UBOT",
                "bot_id": "BBOT",
                "team": "Sandbox",
                "user": "patchwarden",
                "url": "https://sandbox.invalid/",
            }
        )

    def _rate_limited(self, channel: str) -> web.Response | None:
        if self.channel_rate is None:
            return None
        now = time.monotonic()
        gap = 1.0 / self.channel_rate
        last = self._last_post.get(channel)
        if last is not None and now - last < gap:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"})
        self._last_post[channel] = now
        return None

    async def _chat_postMessage(self, p: dict[str, Any]) -> web.Response:
        channel = p.get("channel")
        if not channel:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        blocks = p.get("blocks") or []
        if len(blocks) > MAX_MESSAGE_BLOCKS:
            return web.json_response({"ok": False, "error": "invalid_blocks"})
        limited = self._rate_limited(channel)
        if limited is not None:
            return limited
        ts = self._next_ts()
        metadata = p.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata or "null")
        self.messages[ts] = Message(
            channel, ts, p.get("text", ""), blocks, p.get("thread_ts"), metadata=metadata or None
        )
        return web.json_response(
            {"ok": True, "channel": channel, "ts": ts, "message": {"text": p.get("text", ""), "ts": ts}}
        )

    def _listing(self, p: dict[str, Any], messages: list[Message]) -> web.Response:
        with_meta = str(p.get("include_all_metadata", "")).lower() in ("1", "true")
        limit = int(p.get("limit") or 100)
        out = []
        for m in messages[:limit]:
            item: dict[str, Any] = {"type": "message", "ts": m.ts, "text": m.text, "user": m.user}
            if m.thread_ts:
                item["thread_ts"] = m.thread_ts
            if with_meta and m.metadata:
                item["metadata"] = m.metadata
            out.append(item)
        return web.json_response({"ok": True, "messages": out, "has_more": len(messages) > limit})

    async def _conversations_history(self, p: dict[str, Any]) -> web.Response:
        """Top-level messages of a channel, newest first (``include_all_metadata`` adds metadata)."""
        channel = p.get("channel", "")
        found = [
            m
            for m in self.messages.values()
            if m.channel == channel and m.ephemeral_to is None and m.thread_ts in (None, m.ts)
        ]
        return self._listing(p, list(reversed(found)))

    async def _conversations_replies(self, p: dict[str, Any]) -> web.Response:
        """The parent and replies of a thread, oldest first."""
        channel, ts = p.get("channel", ""), p.get("ts", "")
        found = [
            m
            for m in self.messages.values()
            if m.channel == channel and m.ephemeral_to is None and (m.ts == ts or m.thread_ts == ts)
        ]
        return self._listing(p, found)

    async def _chat_update(self, p: dict[str, Any]) -> web.Response:
        msg = self.messages.get(p.get("ts", ""))
        if msg is None or msg.channel != p.get("channel"):
            return web.json_response({"ok": False, "error": "message_not_found"})
        if len(p.get("blocks") or []) > MAX_MESSAGE_BLOCKS:
            return web.json_response({"ok": False, "error": "invalid_blocks"})
        msg.history.append({"text": msg.text, "blocks": msg.blocks})
        msg.text, msg.blocks = p.get("text", msg.text), p.get("blocks", msg.blocks)
        return web.json_response({"ok": True, "channel": msg.channel, "ts": msg.ts})

    async def _chat_getPermalink(self, p: dict[str, Any]) -> web.Response:
        if p.get("message_ts", "") not in self.messages:
            return web.json_response({"ok": False, "error": "message_not_found"})
        ts = str(p["message_ts"]).replace(".", "")
        return web.json_response({"ok": True, "permalink": f"{self.url}/archives/{p.get('channel')}/p{ts}"})

    async def _chat_postEphemeral(self, p: dict[str, Any]) -> web.Response:
        ts = self._next_ts()
        self.messages[ts] = Message(
            p.get("channel", ""),
            ts,
            p.get("text", ""),
            p.get("blocks") or [],
            p.get("thread_ts"),
            ephemeral_to=p.get("user"),
        )
        return web.json_response({"ok": True, "message_ts": ts})

    async def _chat_scheduleMessage(self, p: dict[str, Any]) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "scheduled_message_id": f"Q{next(self._ts)}",
                "post_at": int(p.get("post_at", 0)),
                "channel": p.get("channel"),
            }
        )

    async def _view(self, p: dict[str, Any]) -> web.Response:
        view = p.get("view") or {}
        view_id = p.get("view_id") or f"V{next(self._ts):08d}"
        if isinstance(view, dict):
            view["id"] = view_id  # as Slack does: the submission payload carries the view's id
        self.views[view_id] = view
        return web.json_response({"ok": True, "view": {**view, "id": view_id, "hash": "h"}})

    async def _views_open(self, p: dict[str, Any]) -> web.Response:
        if not p.get("trigger_id"):
            return web.json_response({"ok": False, "error": "invalid_trigger_id"})
        resp = await self._view(p)
        self.view_triggers[list(self.views)[-1]] = str(p["trigger_id"])
        return resp

    async def _views_update(self, p: dict[str, Any]) -> web.Response:
        return await self._view(p)

    async def _views_push(self, p: dict[str, Any]) -> web.Response:
        return await self._view(p)

    async def _views_publish(self, p: dict[str, Any]) -> web.Response:
        self.home[p.get("user_id", "")] = p.get("view") or {}
        return web.json_response({"ok": True, "view": p.get("view")})

    async def _users_info(self, p: dict[str, Any]) -> web.Response:
        user = p.get("user", "U0")
        return web.json_response(
            {
                "ok": True,
                "user": {
                    "id": user,
                    "name": user.lower(),
                    "tz": "Europe/Berlin",
                    "real_name": user,
                    "profile": {"display_name": user},
                },
            }
        )

    async def _conversations_info(self, p: dict[str, Any]) -> web.Response:
        channel = p.get("channel", "C0")
        return web.json_response(
            {
                "ok": True,
                "channel": {"id": channel, "name": channel.lower(), "is_channel": True, "is_member": True},
            }
        )

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, push queued envelopes, record the client's acks."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0PATCH"}})
        pump = asyncio.create_task(_socket_pump(ws, self.socket_envelopes))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(msg.data))
        finally:
            pump.cancel()
        return ws

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append(body)
        # the id travels in the call record so the sandbox can tell whose reply it was
        self.calls.append(
            Call(
                "response_url",
                {**body, "response_url_id": request.match_info["rid"]},
                time.monotonic(),
                seq=self.next_seq(),
            )
        )
        return web.Response(text="ok")


async def _socket_pump(ws: web.WebSocketResponse, envelopes: asyncio.Queue[dict[str, Any]]) -> None:
    while True:
        await ws.send_json(await envelopes.get())


def bound_port(site: web.TCPSite) -> int:
    """The port a TCPSite actually listens on (useful with port 0)."""
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    port: int = server.sockets[0].getsockname()[1]
    return port


async def start(fake: FakeSlack, *, host: str = "127.0.0.1", port: int = 0) -> web.AppRunner:
    """Serve ``fake`` on ``host:port`` (0 = any free port) and set ``fake.url``."""
    runner = web.AppRunner(fake.app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    fake.url = f"http://{host}:{bound_port(site)}"
    return runner
