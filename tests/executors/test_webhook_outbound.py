"""The webhook executor obeys the one outbound-URL policy (issue 14): internal addresses need the allow-list.

The receiver is a real server on loopback. Loopback is internal, so every test says which policy it runs
under: the configured one without ``outbound.allow`` (refused: a clear error, nothing sent) or with
``127.0.0.1`` allow-listed (the request goes out). Names are checked where they resolve, so a host name
that resolves to 127.0.0.1 is refused like the address itself.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_config

from bot.errors import ConfigError
from bot.executors import registry
from bot.executors.base import DeploymentRequest
from bot.executors.webhook import WebhookExecutor
from bot.outbound import OutboundPolicy

from .helpers import LOOPBACK

SECRET = "outbound-webhook-secret"
KEY = "systems.shop.environments.prod"


class Receiver:
    """A receiver that records every request it gets and answers "succeeded"."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.server: TestServer | None = None

    async def start(self, host: str) -> int:
        async def deploy(request: web.Request) -> web.Response:
            self.hits.append(request.path_qs)
            return web.json_response({"status": "succeeded", "output": "done\n"})

        app = web.Application()
        app.router.add_post("/deploy", deploy)
        self.server = TestServer(app, host=host, port=0)
        await self.server.start_server()
        return int(self.server.port or 0)


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Receiver]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PW_WEBHOOK_SECRET", SECRET)
    r = Receiver()
    try:
        yield r
    finally:
        if r.server is not None:
            await r.server.close()


def webhook(url: str, policy: OutboundPolicy | None) -> WebhookExecutor:
    return WebhookExecutor({"url": url, "secret_env": "PW_WEBHOOK_SECRET"}, key_path=KEY, outbound=policy)


def loopback_name() -> tuple[str, str, str]:
    """A host name (not an address literal, not ``localhost``) resolving to this machine's own internal
    address, that address, and the word the policy uses for it. On most machines the host name resolves to
    loopback; in a container it resolves to the container's private address, which is refused the same way.
    """
    name = socket.gethostname()
    addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None, socket.AF_INET)})
    ips = [ipaddress.ip_address(a) for a in addresses]
    if not ips or not all(ip.is_loopback or ip.is_private for ip in ips):
        pytest.fail(f"this test needs a host name resolving to an internal address; {name} resolves to {addresses}")
    return name, addresses[0], "loopback" if ips[0].is_loopback else "internal"


def test_a_loopback_url_not_allow_listed_stops_startup_naming_the_key_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PW_WEBHOOK_SECRET", SECRET)
    env = {"executor": "webhook", "url": "http://127.0.0.1:8080/deploy", "secret_env": "PW_WEBHOOK_SECRET"}
    config = make_config(outbound={"allow": []}, systems={"web-shop": {"environments": {"prod": env}}})
    with pytest.raises(ConfigError) as info:
        registry.validate_config(config)  # what check-config and serve run
    message = str(info.value)
    assert "systems.web-shop.environments.prod.url" in message
    assert "loopback address 127.0.0.1" in message and "outbound.allow" in message
    for url, kind in (
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.7/deploy", "internal"),
        ("http://localhost:8080/deploy", "loopback"),
    ):
        with pytest.raises(ConfigError, match=kind):
            webhook(url, None)  # no policy given: every internal address is refused (fail closed)
    # allow-listed in the configuration: the same URL is fine
    allowed = make_config(outbound={"allow": ["127.0.0.1"]}, systems={"web-shop": {"environments": {"prod": env}}})
    assert registry.validate_config(allowed)[("web-shop", "prod")].name == "webhook"


def test_credentials_in_a_webhook_url_are_refused_and_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_WEBHOOK_SECRET", SECRET)
    with pytest.raises(ConfigError, match="credentials") as info:
        webhook("https://deploy:hunter2@jenkins.example/job/x/build", LOOPBACK)
    assert "hunter2" not in str(info.value)


async def test_a_name_resolving_to_loopback_is_refused_when_connecting_and_nothing_is_sent(
    receiver: Receiver, request_: DeploymentRequest
) -> None:
    name, address, kind = loopback_name()
    port = await receiver.start(address)
    executor = webhook(f"http://{name}:{port}/deploy", OutboundPolicy())  # a name: checked when it resolves
    result = await executor.apply(request_)
    assert not result.ok
    assert f"resolves to the {kind} address {address}" in result.summary and "outbound.allow" in result.summary
    assert receiver.hits == []  # the signed request never left
    # the same name with its address allow-listed reaches the receiver
    result = await webhook(f"http://{name}:{port}/deploy", OutboundPolicy((f"{address}/32",))).apply(request_)
    assert result.ok, result.summary
    assert receiver.hits == ["/deploy"]


async def test_allow_listed_loopback_is_called_and_a_query_token_is_never_shown(
    receiver: Receiver, request_: DeploymentRequest
) -> None:
    port = await receiver.start("127.0.0.1")
    executor = webhook(f"http://127.0.0.1:{port}/deploy?token=tok-s3cret", LOOPBACK)
    plan = await executor.plan(request_)
    result = await executor.apply(request_)
    assert result.ok, result.summary
    assert receiver.hits == ["/deploy?token=tok-s3cret"]  # the receiver gets its token
    shown: list[Any] = [plan.summary, result.summary, result.output]
    assert all("tok-s3cret" not in str(s) for s in shown), shown  # the thread and the log never do
    assert f"POST http://127.0.0.1:{port}/deploy (apply)" in result.output
