"""The one plugin loader, for executors (``patchwarden.executors``) and feeds (``patchwarden.feeds``).

Entry points name classes (``shell = "bot.executors.shell:ShellExecutor"``); built-ins register the same way
as third-party plugins. The rules, the same for every group:

1. Lazy: installed is not enabled. A plugin is imported only when the configuration names it, so a broken
   plugin nobody names cannot stop startup (``available`` logs it and leaves it out).
2. Fail closed: an unknown name, a plugin that fails to import, or one that is not a subclass of the
   group's base class raises ``ConfigError`` naming the configuration key path, and startup stops.
3. Duplicates refused: two distributions registering one name with different targets is an error (one
   could shadow the other); the same target seen twice (an editable install) is one plugin.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from bot.errors import ConfigError

log = logging.getLogger(__name__)


@functools.cache
def installed(group: str) -> dict[str, list[EntryPoint]]:
    """The entry points of ``group`` by name, distinct targets only, read once per process (~3 ms a scan)."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=group):
        if all(other.value != ep.value for other in found.get(ep.name, [])):
            found.setdefault(ep.name, []).append(ep)
    return found


def load(found: dict[str, list[EntryPoint]], name: str, *, base: type, kind: str, where: str) -> type[Any]:
    """Import the ``kind`` plugin ``name`` from ``found``, a subclass of ``base``; ``ConfigError`` prefixed by
    ``where`` otherwise."""
    candidates = found.get(name)
    if not candidates:
        known = ", ".join(sorted(found)) or "(none installed)"
        raise ConfigError(f"{where}: unknown {kind} {name!r}; installed {kind}s: {known}")
    if len(candidates) > 1:
        targets = ", ".join(ep.value for ep in candidates)
        raise ConfigError(f"{where}: {kind} {name!r} is registered more than once ({targets}); uninstall one")
    ep = candidates[0]
    try:
        cls = ep.load()
    except Exception as exc:
        raise ConfigError(
            f"{where}: {kind} plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{where}: entry point {name!r} ({ep.value}) is not a{_n(base)} {base.__name__} subclass")
    return cls


def available(found: dict[str, list[EntryPoint]], *, base: type, kind: str) -> dict[str, type[Any]]:
    """Every plugin in ``found`` that loads, by name; broken ones are logged and left out (nobody named them)."""
    plugins: dict[str, type[Any]] = {}
    for name in sorted(found):
        try:
            plugins[name] = load(found, name, base=base, kind=kind, where=kind)
        except ConfigError as exc:
            log.warning("%s", exc)
    return plugins


def _n(base: type) -> str:
    return "n" if base.__name__[:1].lower() in "aeiou" else ""
