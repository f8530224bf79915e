"""Loading executor plugins from the ``patchwarden.executors`` entry-point group.

Entry points name classes (``shell = "bot.executors.shell:ShellExecutor"``); built-ins register the same
way as third-party plugins. Installed is not enabled: a plugin is imported and instantiated only when an
environment names it, and an unknown, broken or misconfigured plugin stops startup with a ``ConfigError``
naming the configuration key path.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from bot.config import Config
from bot.errors import ConfigError
from bot.executors.base import Executor

GROUP = "patchwarden.executors"

log = logging.getLogger(__name__)


@functools.cache
def _entry_points() -> dict[str, list[EntryPoint]]:
    """Installed executor entry points by name, read once per process (scanning metadata costs ~3 ms a call)."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        # The same distribution can be seen twice (e.g. an editable install); only distinct targets clash.
        if all(other.value != ep.value for other in found.get(ep.name, [])):
            found.setdefault(ep.name, []).append(ep)
    return found


def _load(name: str, candidates: list[EntryPoint], key_path: str) -> type[Executor]:
    where = f"{key_path}.executor" if key_path else "executor"
    if len(candidates) > 1:
        targets = ", ".join(ep.value for ep in candidates)
        raise ConfigError(f"{where}: executor {name!r} is registered more than once ({targets}); uninstall one")
    ep = candidates[0]
    try:
        cls = ep.load()
    except Exception as exc:
        raise ConfigError(
            f"{where}: executor plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ConfigError(f"{where}: entry point {name!r} ({ep.value}) is not an Executor subclass")
    return cls


def available() -> dict[str, type[Executor]]:
    """Every installed executor plugin that loads, by name (broken ones are logged and left out)."""
    plugins: dict[str, type[Executor]] = {}
    for name, candidates in sorted(_entry_points().items()):
        try:
            plugins[name] = _load(name, candidates, "")
        except ConfigError as exc:
            log.warning("%s", exc)
    return plugins


def create(name: str, options: Mapping[str, Any], *, key_path: str) -> Executor:
    """Load the plugin ``name`` and validate ``options``; ``ConfigError`` naming ``key_path`` otherwise."""
    found = _entry_points()
    if name not in found:
        known = ", ".join(sorted(found)) or "(none installed)"
        where = f"{key_path}.executor" if key_path else "executor"
        raise ConfigError(f"{where}: unknown executor {name!r}; installed executors: {known}")
    cls = _load(name, found[name], key_path)
    return cls(options, key_path=key_path)


def validate_config(config: Config) -> dict[tuple[str, str], Executor]:
    """Create the executor of every environment of every system; stops at the first problem."""
    executors: dict[tuple[str, str], Executor] = {}
    for system_name, system in config.systems.items():
        for env_name, env in system.environments.items():
            key_path = f"systems.{system_name}.environments.{env_name}"
            options = dict(env.model_extra or {})
            executors[(system_name, env_name)] = create(env.executor, options, key_path=key_path)
    return executors


class Executors:
    """The executor of each (system, environment), created once per process and configuration.

    Built by the composition root (``bot.deps.build_deps``) with :meth:`validated`, which creates every
    configured executor up front so a bad one stops startup. :meth:`get` creates a missing one on demand
    (only an environment added after startup gets there) and raises ``ConfigError`` like :func:`create`.
    """

    def __init__(self, config: Config, made: Mapping[tuple[str, str], Executor] | None = None) -> None:
        self.config = config
        self._made: dict[tuple[str, str], Executor] = dict(made or {})

    @classmethod
    def validated(cls, config: Config) -> Executors:
        """Every configured executor, created now; ``ConfigError`` at the first problem."""
        return cls(config, validate_config(config))

    def get(self, system: str, stage: str) -> Executor:
        """The executor of ``system``'s ``stage`` environment."""
        hit = self._made.get((system, stage))
        if hit is not None:
            return hit
        key_path = f"systems.{system}.environments.{stage}"
        entry = self.config.systems.get(system)
        env = entry.environments.get(stage) if entry is not None else None
        if env is None:
            raise ConfigError(f"{key_path}: no such environment", user_message=f"No {stage} environment for {system}.")
        executor = create(env.executor, dict(env.model_extra or {}), key_path=key_path)
        self._made[(system, stage)] = executor
        return executor
