"""The local sandbox workspace: the real bot, a fake Slack, and a web page acting as Slack's client.

Everything binds to 127.0.0.1. The bot runs exactly as against Slack: its Web API client points at the
fake Slack (``SLACK_API_URL``), and every click, command or form submission on the page becomes a request
signed with the sandbox's generated signing secret and POSTed to the bot's own ``/slack/events``. The
fake Slack's messages, threads, views and Home tabs are the page's state. The database is a temporary
SQLite file migrated with ``storage.migrate.upgrade``; it disappears with the sandbox.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bot import app as app_module
from bot import scheduler
from bot.config import Config, Settings
from bot.crypto import Signer
from bot.deps import Deps, FakeClock, build_deps
from bot.sandbox import demo
from bot.sandbox.driver import TEAM, SlackDriver
from bot.sandbox.fake_slack import FakeSlack, Message
from bot.sandbox.fake_slack import start as start_fake
from bot.scheduler import Scheduler
from storage import migrate

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
HOST = "127.0.0.1"  # never anything else: the sandbox has no authentication
BANNER = (
    "SANDBOX: a local fake Slack workspace on this machine. Nothing here reaches Slack; "
    "the data is temporary and disappears when the sandbox stops."
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
        replies: dict[str, list[dict[str, Any]]] = {}
        for m in sorted(self.fake.messages.values(), key=lambda m: _ts_key(m.ts)):
            if m.ephemeral_to is not None and m.ephemeral_to != user:
                continue
            item = {**_message(m), "ephemeral": m.ephemeral_to is not None}
            if m.thread_ts and m.thread_ts != m.ts:
                replies.setdefault(m.thread_ts, []).append(item)
            else:
                top.setdefault(m.channel or "", []).append(item)
        for call in self.fake.calls:
            if call.method != "response_url":
                continue
            _, who, channel = [*str(call.params.get("response_url_id", "")).split("."), "", ""][:3]
            if who == user or call.params.get("response_type") == "in_channel":
                item = {"ts": "", "channel": channel, "text": call.params.get("text", ""), "files": []}
                item |= {"blocks": call.params.get("blocks") or [], "ephemeral": True}
                top.setdefault(channel, []).append(item)
        for note in self._notes:
            if note["user"] == user:
                top.setdefault(note["channel"], []).append(note["message"])
        for msgs in top.values():
            for entry in msgs:
                entry["replies"] = replies.get(entry["ts"], []) if entry["ts"] else []
        stack = self._stacks.get(user, [])
        modal = {"id": stack[-1], "view": self.fake.views.get(stack[-1], {})} if stack else None
        names = {**self.channels, **{c: c.lower() for c in top if c and c not in self.channels}}
        return {
            "banner": BANNER,
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
            self._notes.append({"user": user, "channel": channel, "message": message})
        return {"ok": status == 200, "status": status}

    async def action(self, user: str, req: dict[str, Any]) -> dict[str, Any]:
        """A click or selection on a message, the Home tab or an open modal."""
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


SkipAhead = Callable[[timedelta], Awaitable[datetime]]


TOKEN_HEADER = "X-Sandbox-Token"  # noqa: S105 (a header name)


def _foreign(r: web.Request, token: str) -> str | None:
    """Why a POST to the page API is refused: another site's page must not drive a sandbox (which may run
    real executors). 1. Host must be the loopback address we serve; 2. an Origin, if sent, must be ours;
    3. the body must be JSON (no cross-site ``text/plain`` form); 4. the per-start token must match."""
    host = r.headers.get("Host", "")
    if host.rsplit(":", 1)[0] not in (HOST, "localhost"):
        return "foreign Host"
    origin = r.headers.get("Origin")
    if origin is not None and origin != f"http://{host}":
        return "foreign Origin"
    if r.content_type != "application/json":
        return "not JSON"
    if not secrets.compare_digest(r.headers.get(TOKEN_HEADER, ""), token):
        return "missing or wrong sandbox token"
    return None


def page_app(ws: Workspace, *, now: Callable[[], datetime], skip_ahead: SkipAhead, token: str = "") -> web.Application:
    """The page and its JSON API (same origin, loopback only; POSTs carry the per-start ``token``)."""

    async def index(_r: web.Request) -> web.Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        meta = f'<meta name="pw-token" content="{token}">'
        return web.Response(text=html.replace("<head>", "<head>\n  " + meta, 1), content_type="text/html")

    async def state(r: web.Request) -> web.Response:
        return web.json_response({**ws.state(r.query.get("user", "")), "now": now().isoformat()})

    async def post(r: web.Request) -> web.Response:
        refused = _foreign(r, token)
        if refused is not None:
            return web.json_response({"ok": False, "error": refused}, status=403)
        body = await r.json()
        user, kind = str(body.get("user", "")), r.match_info["kind"]
        if user not in {p.id for p in ws.people}:
            return web.json_response({"ok": False, "error": "unknown person"}, status=400)
        if kind == "command":
            return web.json_response(await ws.command(user, str(body["channel"]), str(body["text"])))
        if kind == "action":
            return web.json_response(await ws.action(user, body))
        if kind == "submit":
            return web.json_response(await ws.submit(user, str(body["view_id"]), dict(body["values"])))
        if kind == "close":
            ws.close(user, str(body["view_id"]))
            return web.json_response({"ok": True})
        if kind == "home":
            return web.json_response(await ws.open_home(user))
        if kind == "clock":  # skip ahead: windows open, reminders fall due, the scheduler's jobs run
            hours = float(body.get("hours", 0))
            if not 0 < hours <= 24 * 31:
                return web.json_response({"ok": False, "error": "skip between a minute and a month"}, status=400)
            moved = await skip_ahead(timedelta(hours=hours))
            return web.json_response({"ok": True, "now": moved.isoformat()})
        raise web.HTTPNotFound()

    async def file(r: web.Request) -> web.Response:
        entry = ws.fake.files.get(r.match_info["file_id"])
        if entry is None or entry.get("content") is None:
            raise web.HTTPNotFound()
        kind = "image/png" if str(entry["name"]).endswith(".png") else "application/octet-stream"
        return web.Response(body=entry["content"], content_type=kind)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/{kind}", post)
    app.router.add_get("/files/{file_id}", file)
    return app


@dataclass
class Sandbox:
    """A running sandbox: the URL to open, and what to clean up."""

    url: str
    bot_url: str
    workspace: Workspace
    deps: Deps
    runners: list[web.AppRunner]
    http: aiohttp.ClientSession
    tmpdir: Path
    scheduler: Scheduler | None = None
    token: str = ""  # the page API's per-start token (header X-Sandbox-Token)

    async def stop(self) -> None:
        """Stop every server, close the database and delete the temporary directory."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        await self.http.close()
        for runner in reversed(self.runners):
            await runner.cleanup()
        await self.deps.engine.dispose()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


async def _serve(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1]) if sockets else port


async def start_sandbox(*, port: int = 0, config: Config | None = None, seed: bool = True) -> Sandbox:
    """Start fake Slack, bot and page on 127.0.0.1 (``port`` 0 = any free port) and seed the demo data."""
    tmpdir = Path(tempfile.mkdtemp(prefix="patchwarden-sandbox-"))
    url = f"sqlite+aiosqlite:///{tmpdir / 'sandbox.db'}"
    migrate.upgrade(url)
    fake = FakeSlack(token_prefix="xoxb-sandbox")  # noqa: S106  (a prefix check, not a secret)
    runners = [await start_fake(fake, host=HOST)]
    cfg = config or demo.demo_config(datetime.now(UTC).date())
    settings = Settings(PATCHWARDEN_DATABASE_URL=url, SLACK_API_URL=fake.url + "/api/")
    secret = secrets.token_hex(32)  # a fresh signing secret per run: only this process can sign
    client = app_module.create_client(token=f"xoxb-sandbox-{secrets.token_hex(8)}", base_url=settings.slack_api_url)
    clock = FakeClock()  # real time, until someone presses "skip ahead" on the page
    deps = build_deps(settings, cfg, client=client, clock=clock, signer=Signer.generate())
    bolt = app_module.create_app(deps, signing_secret=secret)
    bot_runner, bot_port = await _serve(app_module.create_web_app(bolt, deps), 0)
    runners.append(bot_runner)
    bot_url = f"http://{HOST}:{bot_port}"
    if seed:
        async with deps.sessions.begin() as session:
            await demo.seed(session, config=cfg, now=deps.clock.now())
    http = aiohttp.ClientSession()
    driver = SlackDriver(endpoint=f"{bot_url}/slack/events", secret=secret, fake=fake, http=http)
    channels = channels_of(cfg)
    ws = Workspace(cfg, fake, driver, bot_url, demo.people_of(cfg), channels)
    sched = scheduler.create_scheduler(deps)  # the real jobs: outbox, windows, deployments, reminders...
    sched.start()
    jobs_lock = asyncio.Lock()

    async def skip_ahead(delta: timedelta) -> datetime:
        clock.advance(delta)
        async with jobs_lock:
            await scheduler.run_jobs_now(sched)
        return clock.now()

    token = secrets.token_urlsafe(24)  # per start: only the page we served knows it
    page_runner, page_port = await _serve(page_app(ws, now=clock.now, skip_ahead=skip_ahead, token=token), port)
    runners.append(page_runner)
    return Sandbox(f"http://{HOST}:{page_port}/", bot_url, ws, deps, runners, http, tmpdir, sched, token)
