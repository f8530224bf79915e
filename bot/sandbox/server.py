"""The local sandbox workspace: the real bot, a fake Slack, and a web page acting as Slack's client.

Everything binds to 127.0.0.1. The bot runs exactly as against Slack: its Web API client points at the
fake Slack (``SLACK_API_URL``), and every click, command or form submission on the page becomes a request
signed with the sandbox's generated signing secret and POSTed to the bot's own ``/slack/events``. The
fake Slack's messages, threads, views and Home tabs are the page's state. The database is a temporary
SQLite file migrated with ``storage.migrate.upgrade``; it disappears with the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from bot import app as app_module
from bot import scheduler
from bot.config import Config, Settings
from bot.crypto import Signer
from bot.deps import Deps, FakeClock, build_deps
from bot.errors import PortInUseError
from bot.sandbox import demo, welcome
from bot.sandbox.clockwork import Clockwork, NoWindowError
from bot.sandbox.driver import SlackDriver
from bot.sandbox.fake_slack import FakeSlack
from bot.sandbox.fake_slack import start as start_fake
from bot.sandbox.workspace import Workspace, channels_of
from bot.scheduler import Scheduler
from bot.workflows import advisory_posts
from storage import advisories, migrate

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
STOP_GRACE = 5.0  # seconds a job in flight may take to finish when the sandbox stops
HOST = "127.0.0.1"  # never anything else: the sandbox has no authentication


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


def page_app(ws: Workspace, *, now: Callable[[], datetime], clockwork: Clockwork, token: str = "") -> web.Application:
    """The page and its JSON API (same origin, loopback only)."""

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
            if body.get("next_window"):
                try:
                    moved = await clockwork.jump_to_next_window()
                except NoWindowError:
                    error = "No window is booked ahead: book one with /patch schedule CHG-n test|prod."
                    return web.json_response({"ok": False, "error": error})
                return web.json_response({"ok": True, "now": moved.isoformat()})
            hours = float(body.get("hours", 0))
            if not 0 < hours <= 24 * 31:
                return web.json_response({"ok": False, "error": "skip between a minute and a month"}, status=400)
            moved = await clockwork.skip(timedelta(hours=hours))
            return web.json_response({"ok": True, "now": moved.isoformat()})
        raise web.HTTPNotFound()

    async def file(r: web.Request) -> web.Response:
        entry = ws.fake.files.get(r.match_info["file_id"])
        if entry is None or entry.get("content") is None:
            raise web.HTTPNotFound()
        kind = "image/png" if str(entry["name"]).endswith(".png") else "application/octet-stream"
        return web.Response(body=entry["content"], content_type=kind)

    async def calendar(r: web.Request) -> web.Response:
        """The bot's ``.ics`` feeds on the page's own port (the bot's port is random)."""
        async with ws.driver.http.get(f"{ws.bot_url}{r.path}", params=r.query) as resp:
            body = await resp.read()
            return web.Response(body=body, status=resp.status, content_type="text/calendar")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/calendar.ics", calendar)
    app.router.add_get("/calendar/{name}", calendar)
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
    clockwork: Clockwork | None = None
    token: str = ""  # the page API's per-start token (header X-Sandbox-Token)

    async def stop(self) -> None:
        """Stop every server, close the database and delete the temporary directory."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.clockwork is not None:  # let a job or skip in flight finish its transaction first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.clockwork.lock.acquire(), timeout=STOP_GRACE)
        await self.http.close()
        for runner in reversed(self.runners):
            await runner.cleanup()
        await self.deps.engine.dispose()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


async def seed_workspace(deps: Deps, fake: FakeSlack, config: Config) -> None:
    """The demo data, its advisories posted as the bot posts them, and the welcome post in ``#ops``."""
    async with deps.sessions.begin() as session:
        await demo.seed(session, config=config, now=deps.clock.now())
        ids = [r.id for r in await advisories.all_records(session)]
    for advisory_id in ids:
        await advisory_posts.publish(deps, advisory_id)
    text, blocks = welcome.welcome_blocks(config, advisories=len(ids))
    fake.post(demo.OPS, text, blocks)


async def _serve(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(port) from exc
        raise
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1]) if sockets else port


async def start_sandbox(*, port: int = 0, config: Config | None = None, seed: bool = True) -> Sandbox:
    """Start fake Slack, bot and page on 127.0.0.1 (``port`` 0 = any free port) and seed the demo data."""
    tmpdir = Path(tempfile.mkdtemp(prefix="patchwarden-sandbox-"))
    url = f"sqlite+aiosqlite:///{tmpdir / 'sandbox.db'}"
    migrate.upgrade(url)
    pristine = tmpdir / "pristine.db"  # Reset copies this back instead of migrating again
    shutil.copyfile(tmpdir / "sandbox.db", pristine)
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
    http = aiohttp.ClientSession()
    driver = SlackDriver(endpoint=f"{bot_url}/slack/events", secret=secret, fake=fake, http=http)
    channels = channels_of(cfg)
    ws = Workspace(cfg, fake, driver, bot_url, demo.people_of(cfg), channels)
    if seed:
        await seed_workspace(deps, fake, cfg)
    sched = scheduler.create_scheduler(deps)  # the real jobs: outbox, windows, deployments, reminders...
    clockwork = Clockwork(deps, clock, sched)  # skips play every due event in order (bot/sandbox/clockwork.py)
    sched.start()
    box = Sandbox("", bot_url, ws, deps, runners, http, tmpdir, sched, clockwork)

    async def reset() -> None:
        """Back to the first minute: the pristine database, an empty fake Slack, real time, the welcome."""
        sched.pause()
        try:
            async with clockwork.lock:
                for task in deps.deployments.tasks():
                    task.cancel()
                await deps.engine.dispose()
                for suffix in ("-wal", "-shm"):
                    (tmpdir / f"sandbox.db{suffix}").unlink(missing_ok=True)
                shutil.copyfile(pristine, tmpdir / "sandbox.db")
                fake.reset()
                ws.forget()
                clock.offset = timedelta()
                if seed:
                    await seed_workspace(deps, fake, cfg)
        finally:
            sched.resume()

    ws.on_reset = reset
    try:
        box.token = secrets.token_urlsafe(24)  # per start: only the page we served knows it
        app = page_app(ws, now=clock.now, clockwork=clockwork, token=box.token)
        page_runner, page_port = await _serve(app, port)
    except BaseException:
        await box.stop()  # a busy port: close what started (no "Unclosed client session"), then say so
        raise
    runners.append(page_runner)
    box.url = f"http://{HOST}:{page_port}/"
    return box
