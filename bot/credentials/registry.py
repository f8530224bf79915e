"""Loading credential providers from the ``patchwarden.credentials`` entry-point group.

Installed is not enabled: a provider is imported only when an environment names it; an unknown, broken or
misconfigured provider stops startup with a ``ConfigError`` naming the key path. Duplicates are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from bot.config import Config
from bot.credentials.base import CredentialProvider, ProviderOptions
from bot.errors import ConfigError
from bot.outbound import OutboundPolicy

GROUP = "patchwarden.credentials"


def create(
    options: Mapping[str, Any], *, key_path: str, outbound: OutboundPolicy | None = None
) -> CredentialProvider[ProviderOptions]:
    """The provider named by ``options["provider"]``, created with the remaining options.

    ``outbound`` is the configured outbound-URL policy (none given: every internal address is refused)."""
    opts = dict(options)
    name = str(opts.pop("provider", "") or "")
    found = {ep.value: ep for ep in entry_points(group=GROUP) if ep.name == name}
    if not found:
        known = ", ".join(sorted({ep.name for ep in entry_points(group=GROUP)})) or "(none installed)"
        raise ConfigError(f"{key_path}.provider: unknown credential provider {name!r}; installed: {known}")
    if len(found) > 1:
        raise ConfigError(f"{key_path}.provider: {name!r} is registered more than once ({', '.join(found)})")
    ep = next(iter(found.values()))
    try:
        cls = ep.load()
    except Exception as exc:
        raise ConfigError(f"{key_path}.provider: {name!r} ({ep.value}) failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, CredentialProvider)):
        raise ConfigError(f"{key_path}.provider: {name!r} ({ep.value}) is not a CredentialProvider")
    provider: CredentialProvider[ProviderOptions] = cls(opts, key_path=key_path, outbound=outbound)
    return provider


class Providers:
    """The credential provider of each (system, environment) that configures ``credentials:``.

    Built once by the composition root with :meth:`validated`, so a bad provider stops startup (and
    ``check-config``); ``get`` returns None for an environment without credentials.
    """

    def __init__(self, made: Mapping[tuple[str, str], CredentialProvider[ProviderOptions]] | None = None) -> None:
        self._made = dict(made or {})

    @classmethod
    def validated(cls, config: Config) -> Providers:
        """Every configured provider, created now; ``ConfigError`` at the first problem."""
        policy = OutboundPolicy(tuple(config.outbound.allow))  # a broker obeys the same outbound-URL policy
        made = {
            (system, stage): create(
                env.credentials, key_path=f"systems.{system}.environments.{stage}.credentials", outbound=policy
            )
            for system, entry in config.systems.items()
            for stage, env in entry.environments.items()
            if env.credentials is not None
        }
        return cls(made)

    def get(self, system: str, stage: str) -> CredentialProvider[ProviderOptions] | None:
        """The provider of ``system``'s ``stage`` environment, or None."""
        return self._made.get((system, stage))
