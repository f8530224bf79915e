"""The webhook executor against a local aiohttp server that checks the HMAC signature and serves a status."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.crypto import hmac_equal, hmac_sha256_hex
from bot.errors import ConfigError, MissingSecretError
from bot.executors.base import ArtifactInfo, DeploymentRequest, Step, TargetStatus
from bot.executors.webhook import WebhookExecutor

from .helpers import LOOPBACK

SECRET = "s3cret-webhook-key"


@dataclass
class Remote:
    """A fake Jenkins/AWX: records what it received; ``statuses`` are served in order, the last repeats."""

    statuses: list[dict[str, Any]] = field(default_factory=list)
    post_answer: dict[str, Any] = field(default_factory=lambda: {"status": "running", "status_url": "/status/job-7"})
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    rejected: int = 0
    polls: int = 0
    failures: int = 0  # the first status requests answer 503

    def _signed(self, request: web.Request, payload: bytes) -> bool:
        ts = request.headers.get("X-Patchwarden-Timestamp", "")
        sig = request.headers.get("X-Patchwarden-Signature", "")
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            return False
        return hmac_equal(sig, "sha256=" + hmac_sha256_hex(SECRET.encode(), ts.encode() + b"." + payload))

    async def deploy(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._signed(request, body):
            self.rejected += 1
            return web.json_response({"error": "bad signature"}, status=401)
        self.bodies.append(json.loads(body))
        self.paths.append(request.path)
        return web.json_response(self.post_answer)

    async def status(self, request: web.Request) -> web.Response:
        if not self._signed(request, request.raw_path.encode()):
            self.rejected += 1
            return web.json_response({"error": "bad signature"}, status=401)
        self.polls += 1
        if self.polls <= self.failures:
            return web.json_response({"error": "busy"}, status=503)
        index = min(self.polls, len(self.statuses)) - 1
        return web.json_response(self.statuses[index])


@pytest.fixture
async def remote(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Remote, str]]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # trust_env is on; loopback must not go through a proxy
    monkeypatch.setenv("PW_WEBHOOK_SECRET", SECRET)
    fake = Remote(
        statuses=[
            {"status": "running", "output": "pulling image\n"},
            {
                "status": "succeeded",
                "output": "pulling image\nrestarted web1\n",
                "targets": [{"target": "web1", "status": "changed", "detail": "restarted"}],
            },
        ]
    )
    app = web.Application()
    app.router.add_post("/deploy", fake.deploy)
    app.router.add_post("/verify", fake.deploy)
    app.router.add_get("/status/{job}", fake.status)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield fake, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


def _executor(base: str, **extra: Any) -> WebhookExecutor:
    options = {"url": f"{base}/deploy", "secret_env": "PW_WEBHOOK_SECRET", "poll_interval": 0.01, **extra}
    return WebhookExecutor(options, key_path="systems.shop.environments.prod", outbound=LOOPBACK)


async def test_signed_post_then_polling_until_done(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    progress_lines: list[str] = []

    async def progress(text: str) -> None:
        progress_lines.append(text)

    result = await _executor(base).apply(request_, progress=progress)
    assert result.ok, result.summary
    assert fake.rejected == 0
    assert fake.bodies == [
        {
            "run_id": "run-1",
            "change": "CHG-12",
            "stage": "test",
            "system": "shop",
            "step": "apply",
            "targets": ["web1"],
            "artifacts": [],
        }
    ]
    assert fake.polls == 2
    assert [(t.target, t.status, t.detail) for t in result.targets] == [("web1", TargetStatus.CHANGED, "restarted")]
    assert result.output.count("pulling image") == 1  # cumulative remote output is not duplicated
    assert "restarted web1" in result.output
    assert "restarted web1" in "\n".join(progress_lines)


async def test_a_wrong_secret_is_rejected(
    remote: tuple[Remote, str], request_: DeploymentRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base = remote
    monkeypatch.setenv("PW_WEBHOOK_SECRET", "not-the-secret")
    result = await _executor(base).apply(request_)
    assert not result.ok
    assert "HTTP 401" in result.summary
    assert fake.rejected == 1 and not fake.bodies


async def test_a_failed_remote_status_fails_the_step(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    fake.statuses = [{"status": "failed", "output": "boom", "targets": [{"target": "web1", "status": "failed"}]}]
    result = await _executor(base).apply(request_)
    assert not result.ok
    assert result.targets[0].status is TargetStatus.FAILED
    assert "boom" in result.output


async def test_transient_status_errors_are_retried(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    fake.failures = 2
    result = await _executor(base).apply(request_)
    assert result.ok, result.summary
    assert "attempt 2 of 3" in result.output


async def test_persistent_status_errors_fail(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    fake.failures = 10
    result = await _executor(base).apply(request_)
    assert not result.ok
    assert "failed 3 times in a row" in result.summary


async def test_status_url_template_from_the_options(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    fake.post_answer = {}
    result = await _executor(base, status_url=f"{base}/status/{{run_id}}").apply(request_)
    assert result.ok
    assert fake.polls == 2


async def test_a_status_url_on_another_origin_is_refused(
    remote: tuple[Remote, str], request_: DeploymentRequest
) -> None:
    fake, base = remote
    fake.post_answer = {"status": "running", "status_url": "http://169.254.169.254/latest/meta-data"}
    result = await _executor(base).apply(request_)
    assert not result.ok
    assert "refusing to poll" in result.summary
    assert fake.polls == 0


async def test_a_job_that_never_finishes_times_out(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    fake.statuses = [{"status": "running"}]
    result = await _executor(base, timeout=0.3).apply(request_)
    assert not result.ok and result.timed_out
    assert fake.polls >= 1


async def test_verify_posts_to_its_own_url(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    fake.post_answer = {"status": "succeeded", "output": "all green"}
    executor = _executor(base, verify_url=f"{base}/verify")
    assert not executor.has_step(Step.ROLLBACK)
    result = await executor.verify(request_)
    assert result.ok and "all green" in result.output
    assert fake.paths == ["/verify"] and fake.bodies[0]["step"] == "verify"


async def test_plan_contacts_nobody(remote: tuple[Remote, str], request_: DeploymentRequest) -> None:
    fake, base = remote
    result = await _executor(base).plan(request_)
    assert result.ok and f"{base}/deploy" in result.summary
    assert not fake.bodies and fake.polls == 0


async def test_an_unreachable_url_fails_cleanly(request_: DeploymentRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_WEBHOOK_SECRET", SECRET)
    result = await _executor("http://127.0.0.1:9").apply(request_)
    assert not result.ok and "cannot reach" in result.summary


def test_a_missing_secret_stops_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PW_WEBHOOK_SECRET", raising=False)
    with pytest.raises(MissingSecretError, match=r"systems\.shop\.environments\.prod\.secret_env"):
        _executor("http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"status_url": "http://h/status/{change}"}, "status_url"),
        ({"url": "ftp://h/deploy"}, "url"),
        ({"secret": "inline-secret"}, "secret"),
        ({"ca_bundle": "/no/such/ca.pem"}, "ca_bundle"),
    ],
)
def test_bad_options_name_the_field(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], field: str) -> None:
    monkeypatch.setenv("PW_WEBHOOK_SECRET", SECRET)
    with pytest.raises(ConfigError, match=rf"systems\.shop\.environments\.prod\.{field}"):
        _executor("http://127.0.0.1:9", **extra)


async def test_signed_payload_carries_the_verified_artifacts_only(
    remote: tuple[Remote, str], request_: DeploymentRequest, tmp_path: Path
) -> None:
    fake, base = remote
    info = ArtifactInfo(name="fix.deb", path=tmp_path / "fix.deb", sha256="ab" * 32, signer="vendor", size=42)
    request = request_.model_copy(update={"artifacts": (info,)})
    result = await _executor(base, artifact_base_url="https://files.example/verified").apply(request)
    assert result.ok, result.summary
    assert fake.rejected == 0  # the artifacts are inside the signed body
    assert fake.bodies[0]["artifacts"] == [
        {
            "name": "fix.deb",
            "sha256": "ab" * 32,
            "size": 42,
            "signer": "vendor",
            "url": f"https://files.example/verified/{'ab' * 32}/fix.deb",
        }
    ]
    assert str(tmp_path) not in json.dumps(fake.bodies), "no local path leaves the bot"
