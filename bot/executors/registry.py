"""Executor plugins from the ``patchwarden.executors`` entry-point group, loaded by ``bot.plugins``.

Installed is not enabled: a plugin is imported and instantiated only when an environment names it, and an
unknown, broken or misconfigured plugin stops startup with a ``ConfigError`` naming the configuration key
path (the rules are in ``bot.plugins``).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint
from typing import Any

from bot import plugins
from bot.config import Config
from bot.errors import ConfigError
from bot.executors.base import Executor
from bot.outbound import OutboundPolicy

GROUP = "patchwarden.executors"


def _entry_points() -> dict[str, list[EntryPoint]]:
    """Installed executor entry points by name, read once per process."""
    return plugins.installed(GROUP)


def available() -> dict[str, type[Executor[Any]]]:
    """Every installed executor plugin that loads, by name (broken ones are logged and left out)."""
    return plugins.available(_entry_points(), base=Executor, kind="executor")


def create(
    name: str, options: Mapping[str, Any], *, key_path: str, outbound: OutboundPolicy | None = None
) -> Executor[Any]:
    """Load the plugin ``name`` and validate ``options``; ``ConfigError`` naming ``key_path`` otherwise.

    ``outbound`` is the configured outbound-URL policy (none given: every internal address is refused)."""
    where = f"{key_path}.executor" if key_path else "executor"
    cls: type[Executor[Any]] = plugins.load(_entry_points(), name, base=Executor, kind="executor", where=where)
    return cls(options, key_path=key_path, outbound=outbound)


def outbound_policy(config: Config) -> OutboundPolicy:
    """The outbound-URL policy of ``config`` (``outbound.allow``), as every plugin gets it."""
    return OutboundPolicy(tuple(config.outbound.allow))


def validate_config(config: Config) -> dict[tuple[str, str], Executor[Any]]:
    """Create the executor of every environment of every system; stops at the first problem."""
    executors: dict[tuple[str, str], Executor[Any]] = {}
    policy = outbound_policy(config)
    for system_name, system in config.systems.items():
        for env_name, env in system.environments.items():
            key_path = f"systems.{system_name}.environments.{env_name}"
            options = dict(env.model_extra or {})
            executors[(system_name, env_name)] = create(env.executor, options, key_path=key_path, outbound=policy)
    return executors


class Executors:
    """The executor of each (system, environment), created once per process and configuration.

    Built by the composition root (``bot.deps.build_deps``) with :meth:`validated`, which creates every
    configured executor up front so a bad one stops startup. :meth:`get` creates a missing one on demand
    (only an environment added after startup gets there) and raises ``ConfigError`` like :func:`create`.
    """

    def __init__(self, config: Config, made: Mapping[tuple[str, str], Executor[Any]] | None = None) -> None:
        self.config = config
        self._made: dict[tuple[str, str], Executor[Any]] = dict(made or {})

    @classmethod
    def validated(cls, config: Config) -> Executors:
        """Every configured executor, created now; ``ConfigError`` at the first problem."""
        return cls(config, validate_config(config))

    def get(self, system: str, stage: str) -> Executor[Any]:
        """The executor of ``system``'s ``stage`` environment."""
        hit = self._made.get((system, stage))
        if hit is not None:
            return hit
        key_path = f"systems.{system}.environments.{stage}"
        entry = self.config.systems.get(system)
        env = entry.environments.get(stage) if entry is not None else None
        if env is None:
            raise ConfigError(f"{key_path}: no such environment", user_message=f"No {stage} environment for {system}.")
        options = dict(env.model_extra or {})
        executor = create(env.executor, options, key_path=key_path, outbound=outbound_policy(self.config))
        self._made[(system, stage)] = executor
        return executor
