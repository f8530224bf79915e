"""Shared fixtures: the database backends (SQLite and a real PostgreSQL), the fake Slack, and the bot.

Every test that takes ``harness`` runs twice: once on SQLite, once on PostgreSQL. It drives the real
``/slack/events`` endpoint with signed requests and asserts on what the fake Slack recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from support.pg import PgServer, pg_server  # noqa: F401  (session fixture)

from bot import app as app_module
from bot.config import Config, Settings, parse_config
from bot.crypto import Signer
from bot.deps import Deps, FakeClock, build_deps
from bot.sandbox.driver import SlackDriver
from bot.sandbox.fake_slack import FakeSlack, Message
from bot.sandbox.fake_slack import start as start_fake
from storage import migrate

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

OWNER, STAKE, SEC1, SEC2, OPS1, OPS2, REQ, OTHER = (
    "U0OWNER1",
    "U0STAKE1",
    "U0SEC1",
    "U0SEC2",
    "U0OPS1",
    "U0OPS2",
    "U0REQ1",
    "U0NOBODY",
)

BASE_CONFIG: dict[str, Any] = {
    "slack": {"approvals_channel": "C0APPROVALS", "advisories_channel": "C0ADVISORIES"},
    "outbound": {"allow": ["127.0.0.1"]},  # the local test servers; everything internal else is refused
    "groups": {"security": [SEC1, SEC2], "operators": [OPS1, OPS2]},
    "systems": {
        "web-shop": {
            "owner": OWNER,
            "stakeholders": [STAKE],
            "announce_channel": "C0SHOPUSERS",
            "timezone": "Europe/Berlin",
            "environments": {"test": {"executor": "dry-run"}, "prod": {"executor": "dry-run"}},
        },
    },
    "policy": {
        "version": 1,
        "self_approval": False,
        "approval_ttl": "72h",
        "operators": "operators",
        "stages": {
            "test": [{"role": "owner", "count": 1}],
            "prod": [{"role": "owner", "count": 1}, {"group": "security", "count": 1}],
        },
    },
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first: under xdist a long test that starts last keeps one core busy alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise as collected


@pytest.fixture(autouse=True)
def _no_slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """bolt reads SLACK_* implicitly and aiohttp reads proxies: tests start from a clean environment."""
    for key in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_CLIENT_ID",
        "SLACK_CLIENT_SECRET",
        "SLACK_APP_TOKEN",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
    ):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(autouse=True)
def _logger_levels() -> Iterator[None]:
    """A CLI test runs ``configure_logging``, which quiets chatty loggers process-wide: restore them, so a later
    test that reads the access log through caplog does not depend on the order the suite runs in."""
    from bot.__main__ import CHATTY_LOGGERS

    names = ("", *CHATTY_LOGGERS)
    before = {name: logging.getLogger(name).level for name in names}
    # a library that runs logging.config with disable_existing_loggers (the default) silences every logger
    # created before it: a test reading caplog must not depend on whether such a test ran earlier
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.name.startswith(("bot", "storage", "aiohttp")):
            logger.disabled = False
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:  # noqa: F811
    """A PostgreSQL database migrated to head once per session; each test gets a copy."""
    # may be first requested from inside a running loop (an async fixture): run it on a thread of its own
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        url = pool.submit(asyncio.run, pg_server.create_database("pw_template")).result()
    migrate.upgrade(url)
    return "pw_template"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "patchwarden.db"
        shutil.copy(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"pw_{uuid.uuid4().hex[:12]}"
    url = await server.create_database(name, template=template_name)
    yield url
    await server.drop_database(name)


def make_config(**overrides: Any) -> Config:
    """The test configuration with top-level sections deep-merged from ``overrides``."""
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = value
    return parse_config(data)


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


async def eventually(
    predicate: Callable[[], Any],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (a polling deadline, not a cancellation timeout)
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy or the deadline passes (no fixed sleeps)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def eventually_async(
    predicate: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 (a polling deadline, not a cancellation timeout)
    what: str = "condition",
) -> Any:
    """:func:`eventually` for a predicate that must be awaited (a database query, say)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Harness:
    """The bot under test, the fake Slack it talks to, and a driver acting as Slack's users."""

    deps: Deps
    fake: FakeSlack
    slack: SlackDriver
    clock: FakeClock
    config: Config
    endpoint: str
    http: aiohttp.ClientSession

    def cards(self) -> list[Message]:
        """Top-level messages in the approvals channel (change cards)."""
        return self.fake.channel_messages(self.config.slack.approvals_channel)

    async def card(self, n: int = 1) -> Message:
        """The n-th card, once posted."""
        return await eventually(lambda: self.cards()[n - 1] if len(self.cards()) >= n else None, what=f"card {n}")

    async def opened_view(self, callback_id: str, *, after: int = 0) -> dict[str, Any]:
        """The newest modal opened with ``callback_id`` (beyond the first ``after`` ones)."""

        def find() -> dict[str, Any] | None:
            views = [p["view"] for p in self.fake.of("views.open") if p["view"]["callback_id"] == callback_id]
            return views[-1] if len(views) > after else None

        return await eventually(find, what=f"modal {callback_id}")

    async def request_change(self, *, user: str = "U0REQ1", system: str = "web-shop", **values: Any) -> Message:
        """Type /patch request, fill the modal, submit; returns the posted card."""
        before = len(self.cards())
        opened = len([p for p in self.fake.of("views.open") if p["view"]["callback_id"] == "change_request"])
        status, _ = await self.slack.command(f"request {system}", user=user)
        assert status == 200
        view = await self.opened_view("change_request", after=opened)
        form = {
            "title": "Update OpenSSL to 3.0.15",
            "details": "Fixes CVE-2024-5535",
            "rollback_plan": "Reinstall the previous package",
            **values,
        }
        status, body = await self.slack.submit(view, form, user=user)
        assert status == 200 and body in ("", "{}"), body
        card = await self.card(before + 1)
        # the card's ts is stored before the approvers are mentioned in its thread: wait for that too
        await eventually(lambda: self.thread(card), what="approvers mentioned in the thread")
        return card

    def thread(self, card: Message) -> list[Message]:
        return self.fake.thread(card.channel, card.ts)

    def latest(self, card: Message) -> Message:
        return self.fake.messages[card.ts]


@pytest_asyncio.fixture
async def harness_factory(database_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Build harnesses (several may share one database: two bot replicas)."""
    fake = FakeSlack()
    fake_runner = await start_fake(fake)
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []
    deps_list: list[Deps] = []

    async def make(config: Config | None = None, clock: FakeClock | None = None) -> Harness:
        cfg = config or make_config()
        settings = Settings(PATCHWARDEN_DATABASE_URL=database_url, SLACK_API_URL=fake.url + "/api/")
        clk = clock or FakeClock()
        slack_http = aiohttp.ClientSession()
        sessions.append(slack_http)
        client = app_module.create_client(token=TOKEN, base_url=settings.slack_api_url, session=slack_http)
        deps = build_deps(settings, cfg, client=client, clock=clk, signer=Signer.generate())
        deps_list.append(deps)
        bolt = app_module.create_app(deps, signing_secret=SECRET)
        runner = web.AppRunner(app_module.create_web_app(bolt, deps))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        endpoint = f"http://127.0.0.1:{port}/slack/events"
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Harness(
            deps,
            fake,
            SlackDriver(endpoint=endpoint, secret=SECRET, fake=fake, http=http),
            clk,
            cfg,
            endpoint,
            http,
        )

    yield make
    for deps in deps_list:
        await deps.plans.flush()
        await deps.homes.flush()
    for http in sessions:
        await http.close()
    for runner in runners:
        await runner.cleanup()
    for deps in deps_list:
        await deps.engine.dispose()
    await fake_runner.cleanup()


@pytest_asyncio.fixture
async def harness(harness_factory: Callable[..., Any]) -> Harness:
    h: Harness = await harness_factory()
    return h


@pytest.fixture
def shared_data() -> Iterator[Path]:
    if not SHARED_DATA.exists():
        pytest.fail(f"sample data not found at {SHARED_DATA}")
    yield SHARED_DATA
