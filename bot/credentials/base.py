"""The credential provider plugin contract (entry-point group ``patchwarden.credentials``).

A provider gives one deployment run credentials that are valid only for that run's targets and only until
its window ends, and takes them back when the run is over. Callers use the two public steps of
:class:`CredentialProvider`; the base class guarantees, whatever the plugin does:

1. options are validated once, at startup, by the plugin's ``Options`` model (unknown keys are errors);
2. ``issue`` never returns a credential valid after the run's ``valid_before`` (the window's end): a
   provider that overshoots is refused, and the run does not start;
3. every hook runs under a timeout; a timeout or any other exception becomes ``CredentialError`` with a
   safe message (the traceback and any secret stay out of Slack);
4. ``revoke`` is best effort and idempotent: a failure is raised as ``CredentialError`` for the caller to
   record, and the credential still expires at ``valid_before``;
5. a provider that calls a service gets the configured outbound-URL policy as ``self.outbound``
   (``bot.outbound``; without one, every internal address is refused) and must connect through it; a
   refusal becomes ``CredentialError`` with the policy's message (the URL redacted).

Plugins get frozen pydantic models only, never a session or a Slack client, and never see a long-lived key
of the targets: what they hand back is scoped and short-lived by construction.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import ConfigError, CredentialError, OutboundRefusedError
from bot.outbound import OutboundPolicy

log = logging.getLogger(__name__)

TIMEOUT = timedelta(seconds=30)


class ProviderOptions(BaseModel):
    """Base of every provider's ``Options``: unknown keys are errors, options are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=ProviderOptions)


class CredentialRequest(BaseModel):
    """What one run needs access to, and until when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    change_key: str = Field(pattern=r"^CHG-\d{1,12}$")
    run_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,80}$")
    system: str
    stage: str
    targets: tuple[str, ...]
    now: datetime
    valid_before: datetime
    run_dir: Path  # private to the run (0700), deleted when it ends


class Credential(BaseModel):
    """What a run got: recorded in the control log (never the secret itself) and handed to the executor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    key_id: str
    serial: str
    valid_before: datetime
    env: dict[str, str] = Field(default_factory=dict)  # paths or lease ids for the executor's environment

    def record(self) -> dict[str, str]:
        """The control-log and JSON form: ``{provider, key_id, serial, valid_before}``."""
        return {
            "provider": self.provider,
            "key_id": self.key_id,
            "serial": self.serial,
            "valid_before": self.valid_before.isoformat(),
        }


class CredentialProvider(ABC, Generic[OptionsT]):
    """Base class of credential providers; subclasses set ``name`` and ``Options``, implement the hooks."""

    name: ClassVar[str] = "provider"
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(
        self, options: Mapping[str, Any], *, key_path: str = "", outbound: OutboundPolicy | None = None
    ) -> None:
        self.outbound = outbound if outbound is not None else OutboundPolicy()  # 5. (fail closed)
        try:  # 1.
            self.options: OptionsT = self.Options.model_validate(dict(options))  # type: ignore[assignment]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join([key_path, *(str(p) for p in first["loc"])]).strip(".")
            raise ConfigError(f"{where}: {first['msg']}") from exc
        self.key_path = key_path
        self._check()

    def _check(self) -> None:
        """Further startup checks (files exist, keys load); raise ``ConfigError``."""

    async def issue(self, request: CredentialRequest) -> Credential:
        """Credentials for ``request``: scoped to its targets, expiring at or before its ``valid_before``."""
        try:
            async with asyncio.timeout(TIMEOUT.total_seconds()):  # 3.
                credential = await self._issue(request)
        except CredentialError:
            raise
        except OutboundRefusedError as exc:  # 5.
            raise CredentialError(f"{self.name}: {exc}") from exc
        except TimeoutError as exc:
            raise CredentialError(f"{self.name}: no credential within {TIMEOUT.total_seconds():.0f} s") from exc
        except Exception as exc:
            log.exception("credential provider %s failed", self.name)
            raise CredentialError(f"{self.name}: the credential could not be issued ({type(exc).__name__})") from exc
        if credential.valid_before > request.valid_before:  # 2.
            await self.revoke(credential)
            raise CredentialError(
                f"{self.name}: the credential would outlive the window "
                f"({credential.valid_before.isoformat()} > {request.valid_before.isoformat()}); refused"
            )
        return credential

    async def revoke(self, credential: Credential) -> None:
        """Take the credential back (idempotent). It expires at ``valid_before`` in any case."""
        try:
            async with asyncio.timeout(TIMEOUT.total_seconds()):
                await self._revoke(credential)
        except OutboundRefusedError as exc:  # 5.
            raise CredentialError(f"{self.name}: revoking {credential.key_id} refused: {exc}") from exc
        except Exception as exc:  # 4.
            raise CredentialError(f"{self.name}: revoking {credential.key_id} failed ({type(exc).__name__})") from exc

    @abstractmethod
    async def _issue(self, request: CredentialRequest) -> Credential:
        """Create the credential."""

    @abstractmethod
    async def _revoke(self, credential: Credential) -> None:
        """Revoke the credential."""
