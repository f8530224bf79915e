"""The outbound-URL policy: no internal addresses, no credentials in URLs, no redirects across origin."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import OWNER, Harness, eventually, make_config

from bot import outbound
from bot.errors import FeedError, OutboundRefusedError
from bot.executors.base import DeploymentRequest
from bot.executors.webhook import WebhookExecutor
from bot.feeds.csaf import _changes_csv
from bot.feeds.http import HttpSettings, fetch
from storage import artifacts

DIGEST = hashlib.sha256(b"x").hexdigest()


@pytest.fixture
def request_() -> DeploymentRequest:
    return DeploymentRequest(run_id="run-1", change_key="CHG-12", stage="test", system="shop", targets=("web1",))


def test_policy_refuses_internal_addresses_and_credentials_unless_allowed() -> None:
    strict = outbound.OutboundPolicy()
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/x",
        "http://[::1]/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://localhost/x",
        "http://[::ffff:127.0.0.1]/x",
        "https://user:hunter2@repo.example/x",
        "file:///etc/passwd",
    ):
        with pytest.raises(OutboundRefusedError) as info:
            strict.check_url(url)
        assert "hunter2" not in str(info.value)
    strict.check_url("https://repo.example/bundle.tar.gz")
    strict.check_url("https://93.184.215.14/x")
    allowing = outbound.OutboundPolicy(("10.0.0.0/8", "repo.internal"))
    allowing.check_url("http://10.1.2.3/x")
    allowing.check_url("http://repo.internal/x")
    with pytest.raises(OutboundRefusedError):
        allowing.check_url("http://169.254.169.254/")
    assert outbound.redact("https://u:p@h.example:8443/a?token=s") == "https://h.example:8443/a"


async def test_resolver_refuses_names_that_resolve_to_loopback() -> None:
    async with aiohttp.ClientSession(connector=outbound.connector(outbound.OutboundPolicy())) as session:
        with pytest.raises(OutboundRefusedError):
            await session.get("http://localhost:9/")  # the name is checked where it resolves


def test_csaf_changes_csv_entries_on_another_origin_are_refused() -> None:
    body = b'"2024/a.json","2024-01-02T00:00:00Z"\n"https://evil.example/b.json","2024-01-02T00:00:00Z"\n'
    entries = _changes_csv(body, "https://vendor.example/csaf/white/changes.csv")
    assert [e.url for e in entries] == ["https://vendor.example/csaf/white/2024/a.json"]


@pytest.fixture
async def two_origins() -> AsyncIterator[tuple[str, list[str]]]:
    """The receiver redirects every request to a second server (another origin) that records its hits."""
    hits: list[str] = []

    async def other(request: web.Request) -> web.Response:
        hits.append(request.headers.get("X-Patchwarden-Signature", "") or request.path)
        return web.json_response({"status": "succeeded"})

    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", other)
    other_runner = web.AppRunner(other_app)
    await other_runner.setup()
    other_site = web.TCPSite(other_runner, "127.0.0.1", 0)
    await other_site.start()
    other_base = f"http://127.0.0.1:{other_runner.addresses[0][1]}"

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{other_base}{request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", hits
    finally:
        await runner.cleanup()
        await other_runner.cleanup()


async def test_webhook_follows_no_redirect_with_its_signature(
    two_origins: tuple[str, list[str]], request_: DeploymentRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, hits = two_origins
    monkeypatch.setenv("PW_WEBHOOK_SECRET", "s3cret")
    executor = WebhookExecutor(
        {"url": f"{base}/deploy", "secret_env": "PW_WEBHOOK_SECRET"},
        key_path="systems.shop.environments.prod",
        outbound=outbound.OutboundPolicy(("127.0.0.1",)),
    )
    result = await executor.apply(request_)
    assert not result.ok and "307" in result.summary
    assert hits == []  # the other host never saw the signed request, and its answer was not taken


async def test_artifact_downloads_refuse_redirects_to_another_origin(two_origins: tuple[str, list[str]]) -> None:
    base, hits = two_origins
    async with aiohttp.ClientSession() as session:
        with pytest.raises(OutboundRefusedError, match="another origin"):
            await outbound.get(session, f"{base}/bundle.tar.gz")
    assert hits == []


async def test_artifact_with_credentials_or_metadata_address_is_refused_and_not_echoed(
    harness_factory: Any,
) -> None:
    h: Harness = await harness_factory(make_config())
    await h.request_change()
    for n, url in enumerate(("https://deploy:hunter2@repo.example/b.tar.gz", "http://169.254.169.254/latest/x")):
        await h.slack.command(f"artifact add CHG-1 {url} sha256={DIGEST}", user=OWNER)
        replies = await eventually(lambda: h.fake.responses[n:], what="a reply")  # noqa: B023
        assert "credentials" in json.dumps(replies) or "link-local" in json.dumps(replies), replies
    everything = json.dumps([c.params for c in h.fake.calls]) + json.dumps(h.fake.responses)
    assert "hunter2" not in everything
    async with h.deps.sessions.begin() as s:
        assert await artifacts.for_change(s, 1) == []


async def test_feeds_created_from_the_configuration_obey_the_policy() -> None:
    settings = HttpSettings(outbound_allow=(), retries=0, timeout=5)
    with pytest.raises(FeedError, match="loopback"):
        await fetch("http://localhost:9/kev.json", state=None, settings=settings)
