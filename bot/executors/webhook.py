"""The ``webhook`` executor: a signed JSON POST, then polling a status URL (Jenkins, AWX, Rundeck, ...).

Signing (the receiver must check it; the secret is read from the environment variable named by
``secret_env`` and never sits in the YAML):

1. ``X-Patchwarden-Timestamp``: Unix seconds of the request;
2. ``X-Patchwarden-Signature``: ``sha256=`` + hex HMAC-SHA256 over ``"<timestamp>.<body>"`` for the POST,
   and over ``"<timestamp>.<path?query>"`` (the raw path and query as sent) for each status GET.

The POST body is ``{"run_id", "change", "stage", "system", "step", "targets", "artifacts"}``; each artifact
is ``{name, sha256, size, signer}`` plus ``url`` (``<artifact_base_url>/<sha256>/<name>``) when
``artifact_base_url`` is configured, where the verified copies are published. The receiver answers 2xx,
optionally with ``{"status_url": ...}`` (else the ``status_url`` option, a template using only
``{run_id}``, is polled). Polling stops when the status document
``{"status": "succeeded"|"failed"|"running", "targets": [...], "output": "..."}`` says done, or at the
timeout. Status URLs must share the scheme, host and port of the configured URL, so a receiver cannot
point the bot at other hosts. Proxies come from ``HTTPS_PROXY``/``NO_PROXY`` (``trust_env``); a private
CA can be given with ``ca_bundle``; certificate checks are never turned off.

Every URL obeys the one outbound-URL policy (``bot.outbound``, ``self.outbound``): no credentials in it, no
link-local, loopback or private address unless ``outbound.allow`` lists it, checked on the configured URLs
at startup and on every address a name resolves to when connecting; no redirect is followed (the signature
would go along). Threads and logs show URLs without their query (``redact``), which may carry a token.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import string
import time
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from yarl import URL

from bot.config import Duration
from bot.crypto import hmac_sha256_hex
from bot.errors import ConfigError, ExecutorError, MissingSecretError, OutboundRefusedError
from bot.executors.base import (
    ArtifactInfo,
    DeploymentRequest,
    Executor,
    ExecutorOptions,
    HookResult,
    Step,
    StepContext,
    TargetResult,
    TargetStatus,
)
from bot.outbound import connector, redact

MAX_BODY = 5_000_000
MAX_POLL_ERRORS = 3  # consecutive transient failures (5xx, connection) tolerated while polling


def _http_url(value: str) -> str:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value


class WebhookOptions(ExecutorOptions):
    """Options of the ``webhook`` executor."""

    url: str
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    status_url: str | None = None  # template; only {run_id} may be used
    verify_url: str | None = None
    rollback_url: str | None = None
    poll_interval: Duration = timedelta(seconds=10)
    request_timeout: Duration = timedelta(seconds=30)
    ca_bundle: Path | None = None
    artifact_base_url: str | None = None  # where the verified artifact copies are served from, if anywhere

    @field_validator("url", "verify_url", "rollback_url", "artifact_base_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("status_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from exc
        if fields - {"run_id"}:
            raise ValueError("the template may only use {run_id}")
        _http_url(value.replace("{run_id}", "x"))
        return value


class TargetReport(BaseModel):
    """One target as reported by the remote system."""

    model_config = ConfigDict(extra="ignore")

    target: str = Field(max_length=255)
    status: TargetStatus
    detail: str = Field(default="", max_length=2000)


class StatusReport(BaseModel):
    """The status document served at the status URL (and optionally in the POST answer)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["succeeded", "failed", "running"] = "running"
    targets: tuple[TargetReport, ...] = ()
    output: str = ""
    status_url: str | None = None


def sign(secret: bytes, payload: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The two signature headers for ``payload`` (the body, or the raw path and query of a GET)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac_sha256_hex(secret, ts.encode() + b"." + payload)
    return {"X-Patchwarden-Timestamp": ts, "X-Patchwarden-Signature": f"sha256={mac}"}


class WebhookExecutor(Executor[WebhookOptions]):
    """Triggers a deployment in another system and follows its status."""

    name = "webhook"

    def _check(self) -> None:
        secret = os.environ.get(self.options.secret_env, "")
        if not secret.strip():
            raise MissingSecretError(
                f"{self._key('secret_env')}: environment variable {self.options.secret_env} is not set or empty"
            )
        self._secret = secret.encode()
        if self.options.ca_bundle is not None and not self.options.ca_bundle.is_file():
            raise ConfigError(f"{self._key('ca_bundle')}: file {self.options.ca_bundle} does not exist")
        urls = {
            "url": self.options.url,
            "verify_url": self.options.verify_url,
            "rollback_url": self.options.rollback_url,
            "status_url": (self.options.status_url or "").replace("{run_id}", "run") or None,
        }
        for key, url in urls.items():  # address literals and credentials now; names when they resolve
            if url is not None:
                try:
                    self.outbound.check_url(url)
                except OutboundRefusedError as exc:
                    raise ConfigError(f"{self._key(key)}: {exc}") from exc

    def _url(self, step: Step) -> str | None:
        return {
            Step.APPLY: self.options.url,
            Step.VERIFY: self.options.verify_url,
            Step.ROLLBACK: self.options.rollback_url,
        }.get(step)

    def _has_step(self, step: Step) -> bool:
        return self._url(step) is not None

    def _same_origin(self, url: URL) -> bool:
        return url.origin() == URL(self.options.url).origin()

    def _session(self) -> aiohttp.ClientSession:
        ssl_ctx: ssl.SSLContext | bool = True
        if self.options.ca_bundle is not None:
            ssl_ctx = ssl.create_default_context(cafile=str(self.options.ca_bundle))
        return aiohttp.ClientSession(
            trust_env=True,
            timeout=aiohttp.ClientTimeout(total=self.options.request_timeout.total_seconds()),
            connector=connector(self.outbound, ssl=ssl_ctx),  # every address checked when it resolves
        )

    async def _read_report(self, resp: aiohttp.ClientResponse, what: str) -> StatusReport:
        raw = await resp.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise ExecutorError(f"{what} answered with more than {MAX_BODY} bytes")
        if not raw.strip():
            return StatusReport()
        try:
            return StatusReport.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise ExecutorError(f"{what} answered with a malformed status document") from exc

    async def _plan(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        poll = " and poll its status" if self.options.status_url else ""
        shown = redact(self.options.url)
        return HookResult(ok=True, summary=f"would POST a signed {Step.APPLY} request to {shown}{poll}")

    async def _call(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        url = self._url(ctx.step)
        assert url is not None
        body = json.dumps(
            {
                "run_id": request.run_id,
                "change": request.change_key,
                "stage": request.stage,
                "system": request.system,
                "step": str(ctx.step),
                "targets": list(request.targets),
                "artifacts": [self._artifact(a) for a in request.artifacts],
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", **sign(self._secret, body)}
        shown = redact(url)
        self.outbound.check_url(url)
        async with self._session() as session:
            await ctx.emit(f"POST {shown} ({ctx.step})")
            try:
                # never follow a redirect: the signature headers would go along to wherever it points
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                    if resp.status >= 300:
                        raise ExecutorError(f"{shown} answered HTTP {resp.status} to the {ctx.step} request")
                    report = await self._read_report(resp, shown)
            except aiohttp.ClientError as exc:
                raise ExecutorError(f"cannot reach {shown}: {type(exc).__name__}") from exc
            status_url = report.status_url or self._status_url(request)
            if report.status != "running" or status_url is None:
                # Nothing to follow: the answer itself is the result (a bare 2xx means "accepted").
                for line in report.output.splitlines():
                    await ctx.emit(line)
                return self._result(report, ctx.step)
            target = URL(url).join(URL(status_url))
            if not self._same_origin(target):
                raise ExecutorError(f"refusing to poll {target.origin()}: not the origin of {shown}")
            return await self._poll(session, target, ctx)

    def _artifact(self, artifact: ArtifactInfo) -> dict[str, object]:
        """An artifact as the receiver sees it: no local path; the verified copy's URL when configured."""
        entry: dict[str, object] = {
            "name": artifact.name,
            "sha256": artifact.sha256,
            "size": artifact.size,
            "signer": artifact.signer,
        }
        if self.options.artifact_base_url:
            entry["url"] = f"{self.options.artifact_base_url.rstrip('/')}/{artifact.sha256}/{artifact.name}"
        return entry

    def _status_url(self, request: DeploymentRequest) -> str | None:
        template = self.options.status_url
        return None if template is None else template.replace("{run_id}", quote(request.run_id, safe=""))

    async def _get_report(self, session: aiohttp.ClientSession, url: URL) -> StatusReport | None:
        """One signed status GET; None on a transient failure (5xx, connection error, request timeout)."""
        headers = sign(self._secret, url.raw_path_qs.encode())
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status >= 500:
                    return None
                if resp.status >= 300:
                    raise ExecutorError(f"status URL answered HTTP {resp.status}")
                return await self._read_report(resp, "status URL")
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _poll(self, session: aiohttp.ClientSession, url: URL, ctx: StepContext) -> HookResult:
        errors = 0
        last_status = ""
        seen_output = ""
        while True:
            await asyncio.sleep(self.options.poll_interval.total_seconds())
            report = await self._get_report(session, url)
            if report is None:
                errors += 1
                await ctx.emit(f"status check failed, attempt {errors} of {MAX_POLL_ERRORS}")
                if errors >= MAX_POLL_ERRORS:
                    raise ExecutorError(f"the status URL failed {errors} times in a row")
                continue
            errors = 0
            if report.output.startswith(seen_output):
                # The remote output is cumulative: stream only what is new.
                for line in report.output[len(seen_output) :].splitlines():
                    await ctx.emit(line)
            else:
                ctx.record("\n[remote output restarted]\n" + report.output)
            seen_output = report.output
            if report.status != last_status:
                await ctx.emit(f"status: {report.status}")
                last_status = report.status
            if report.status != "running":
                return self._result(report, ctx.step)

    @staticmethod
    def _result(report: StatusReport, step: Step) -> HookResult:
        targets = tuple(TargetResult(target=t.target, status=t.status, detail=t.detail) for t in report.targets)
        verb = {"succeeded": "succeeded", "failed": "failed", "running": "was accepted"}[report.status]
        return HookResult(ok=report.status != "failed", summary=f"{step} {verb} (webhook)", targets=targets)

    async def _apply(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._call(request, ctx)

    async def _verify(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._call(request, ctx)

    async def _rollback(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._call(request, ctx)
