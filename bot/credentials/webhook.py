"""``webhook``: ask an external broker (Vault, Teleport, a small internal service) for a lease per run.

Configuration, per environment::

    credentials:
      provider: webhook
      url: https://broker.example/leases          # POST: issue
      revoke_url: https://broker.example/revoke   # POST: revoke (default: none, the lease just expires)
      secret_env: PATCHWARDEN_BROKER_SECRET       # HMAC key, signs both requests like the webhook executor

The broker receives ``{change, run, system, stage, targets, valid_before}`` and answers
``{lease_id, valid_before, env: {NAME: value}}``; ``env`` reaches the executor's environment only (never a
log, the control log or Slack). Redirects are not followed: a signed request goes to the configured origin
and nowhere else. Both URLs obey the outbound-URL policy (``bot.outbound``): an internal address (link-local,
loopback, private) is refused unless ``outbound.allow`` lists it, at startup for address literals and at
connect time for every address a name resolves to.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.config import Duration
from bot.credentials.base import Credential, CredentialProvider, CredentialRequest, ProviderOptions
from bot.errors import ConfigError, CredentialError, MissingSecretError, OutboundRefusedError
from bot.executors.webhook import sign
from bot.outbound import connector

_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
MAX_BODY = 64_000


class BrokerOptions(ProviderOptions):
    """Options of the ``webhook`` credential provider."""

    url: str
    revoke_url: str | None = None
    secret_env: str
    request_timeout: Duration = timedelta(seconds=15)

    @field_validator("url", "revoke_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/@\s]+(/\S*)?$", value):
            raise ValueError(f"{value!r} is not an http(s) URL without credentials")
        return value


class Lease(BaseModel):
    """The broker's answer."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    lease_id: str = Field(pattern=r"^[A-Za-z0-9._:/-]{1,200}$")
    valid_before: datetime
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("env")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not _ENV_NAME.fullmatch(k) or k.startswith("PATCHWARDEN_")]
        if bad:
            raise ValueError(f"environment names {bad[:3]} are not allowed")
        return value


class BrokerProvider(CredentialProvider[BrokerOptions]):
    """Leases from an external broker, revoked when the run ends."""

    name = "webhook"
    Options = BrokerOptions

    def _check(self) -> None:
        secret = os.environ.get(self.options.secret_env, "")
        if not secret.strip():
            raise MissingSecretError(
                f"{self.key_path}.secret_env: environment variable {self.options.secret_env} is not set or empty"
            )
        self._secret = secret.encode()
        for key, url in (("url", self.options.url), ("revoke_url", self.options.revoke_url)):
            if url is not None:
                try:
                    self.outbound.check_url(url)
                except OutboundRefusedError as exc:
                    raise ConfigError(f"{self.key_path}.{key}: {exc}") from exc

    async def _post(self, url: str, body: dict[str, object]) -> bytes:
        payload = json.dumps(body, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", **sign(self._secret, payload)}
        timeout = aiohttp.ClientTimeout(total=self.options.request_timeout.total_seconds())
        self.outbound.check_url(url)
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector(self.outbound)) as session,
            session.post(url, data=payload, headers=headers, allow_redirects=False) as resp,
        ):
            data = await resp.content.read(MAX_BODY + 1)
            if resp.status != 200 or len(data) > MAX_BODY:
                raise CredentialError(f"{self.name}: the broker answered HTTP {resp.status}")
            return data

    async def _issue(self, request: CredentialRequest) -> Credential:
        data = await self._post(
            self.options.url,
            {
                "change": request.change_key, "run": request.run_id, "system": request.system,
                "stage": request.stage, "targets": list(request.targets),
                "valid_before": request.valid_before.isoformat(),
            },
        )  # fmt: skip
        try:
            lease = Lease.model_validate_json(data)
        except ValidationError as exc:
            raise CredentialError(f"{self.name}: the broker's answer is not a lease") from exc
        return Credential(
            provider=self.name, key_id=lease.lease_id, serial=lease.lease_id,
            valid_before=lease.valid_before, env=dict(lease.env),
        )  # fmt: skip

    async def _revoke(self, credential: Credential) -> None:
        if self.options.revoke_url:
            await self._post(self.options.revoke_url, {"lease_id": credential.key_id})
