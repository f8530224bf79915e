"""The ``webhook`` credential provider against a real HTTP broker on loopback."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.credentials import registry
from bot.credentials.base import CredentialRequest
from bot.crypto import hmac_sha256_hex
from bot.errors import ConfigError, CredentialError
from bot.outbound import OutboundPolicy

SECRET = "broker-secret-for-tests"
NOW = datetime.now(UTC).replace(microsecond=0)
LOOPBACK = OutboundPolicy(("127.0.0.1",))  # the broker below listens on loopback: allow-listed, as in config


class Broker:
    def __init__(self) -> None:
        self.issued: list[dict[str, Any]] = []
        self.revoked: list[str] = []
        self.answer: dict[str, Any] | None = None

    async def lease(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts, mac = request.headers["X-Patchwarden-Timestamp"], request.headers["X-Patchwarden-Signature"]
        assert mac == "sha256=" + hmac_sha256_hex(SECRET.encode(), ts.encode() + b"." + body)
        data = json.loads(body)
        self.issued.append(data)
        answer = self.answer or {
            "lease_id": f"lease-{len(self.issued)}", "valid_before": data["valid_before"],
            "env": {"VAULT_TOKEN": "s.short-lived"},
        }  # fmt: skip
        return web.json_response(answer)

    async def revoke(self, request: web.Request) -> web.Response:
        self.revoked.append(json.loads(await request.read())["lease_id"])
        return web.json_response({})

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest")


@pytest.fixture
async def broker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Broker, str]]:
    monkeypatch.setenv("PW_BROKER_SECRET", SECRET)
    b = Broker()
    app = web.Application()
    app.router.add_post("/leases", b.lease)
    app.router.add_post("/revoke", b.revoke)
    app.router.add_post("/moved", b.moved)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield b, str(server.make_url("")).rstrip("/")
    await server.close()


def request(tmp_path: Path) -> CredentialRequest:
    return CredentialRequest(
        change_key="CHG-3", run_id="r1", system="web-shop", stage="prod", targets=("web-01",),
        now=NOW, valid_before=NOW + timedelta(hours=1), run_dir=tmp_path,
    )  # fmt: skip


def options(base: str, path: str = "/leases") -> dict[str, Any]:
    return {"provider": "webhook", "url": base + path, "revoke_url": base + "/revoke", "secret_env": "PW_BROKER_SECRET"}


async def test_a_lease_is_asked_for_the_runs_scope_and_revoked(broker: tuple[Broker, str], tmp_path: Path) -> None:
    b, base = broker
    provider = registry.create(
        options(base), key_path="systems.web-shop.environments.prod.credentials", outbound=LOOPBACK
    )
    cred = await provider.issue(request(tmp_path))
    assert b.issued == [
        {"change": "CHG-3", "run": "r1", "system": "web-shop", "stage": "prod", "targets": ["web-01"],
         "valid_before": (NOW + timedelta(hours=1)).isoformat()}
    ]  # fmt: skip
    assert cred.env == {"VAULT_TOKEN": "s.short-lived"}
    assert "s.short-lived" not in json.dumps(cred.record())  # the secret never reaches the control log
    await provider.revoke(cred)
    assert b.revoked == ["lease-1"]


async def test_a_lease_outliving_the_window_or_naming_our_variables_is_refused(
    broker: tuple[Broker, str], tmp_path: Path
) -> None:
    b, base = broker
    provider = registry.create(options(base), key_path="credentials", outbound=LOOPBACK)
    b.answer = {"lease_id": "long", "valid_before": (NOW + timedelta(days=30)).isoformat()}
    with pytest.raises(CredentialError, match="outlive the window"):
        await provider.issue(request(tmp_path))
    assert b.revoked == ["long"]
    b.answer = {"lease_id": "x", "valid_before": NOW.isoformat(), "env": {"PATCHWARDEN_ARTIFACTS": "/etc/passwd"}}
    with pytest.raises(CredentialError, match="not a lease"):
        await provider.issue(request(tmp_path))


async def test_a_redirect_is_not_followed_with_the_signature(broker: tuple[Broker, str], tmp_path: Path) -> None:
    _, base = broker
    provider = registry.create(options(base, "/moved"), key_path="credentials", outbound=LOOPBACK)
    with pytest.raises(CredentialError, match="HTTP 302"):
        await provider.issue(request(tmp_path))


def test_unknown_provider_missing_secret_and_credentials_in_urls_stop_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"unknown credential provider 'vault'; installed: .*ssh-cert"):
        registry.create({"provider": "vault"}, key_path="credentials")
    monkeypatch.delenv("PW_BROKER_SECRET", raising=False)
    with pytest.raises(ConfigError, match="PW_BROKER_SECRET is not set"):
        registry.create(options("http://127.0.0.1:1"), key_path="credentials", outbound=LOOPBACK)
    with pytest.raises(ConfigError, match="without credentials"):
        registry.create({**options("http://127.0.0.1:1"), "url": "http://u:p@broker/x"}, key_path="credentials")


def test_a_broker_on_an_internal_address_needs_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_BROKER_SECRET", SECRET)
    for base, kind in (("http://127.0.0.1:1", "loopback"), ("http://169.254.169.254", "link-local")):
        with pytest.raises(ConfigError, match=kind) as info:  # no policy given: internal addresses refused
            registry.create(options(base), key_path="credentials")
        assert "credentials.url" in str(info.value) and "outbound.allow" in str(info.value)
    assert registry.create(options("http://127.0.0.1:1"), key_path="credentials", outbound=LOOPBACK).name == "webhook"


async def test_a_broker_name_resolving_to_loopback_is_refused_and_asked_nothing(
    broker: tuple[Broker, str], tmp_path: Path
) -> None:
    b, base = broker
    name = socket.gethostname()
    addresses = sorted({str(i[4][0]) for i in socket.getaddrinfo(name, None, socket.AF_INET)})
    ips = [ipaddress.ip_address(a) for a in addresses]
    if not ips or not all(ip.is_loopback or ip.is_private for ip in ips):
        pytest.fail(f"this test needs a host name resolving to an internal address; {name} resolves to {addresses}")
    kind = "loopback" if ips[0].is_loopback else "internal"
    provider = registry.create(options(base.replace("127.0.0.1", name)), key_path="credentials")
    with pytest.raises(CredentialError, match=f"resolves to the {kind} address {addresses[0]}"):
        await provider.issue(request(tmp_path))  # the name passed at startup; its address is refused now
    assert b.issued == []
