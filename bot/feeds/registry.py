"""Discover feed plugins (entry point group ``patchwarden.feeds``) and create the configured ones.

Installed is not enabled: only feeds named under ``feeds:`` in the configuration are created, and any
problem (unknown name, plugin that fails to load, invalid options) stops startup with a ``ConfigError``
that names the key path ``feeds.<name>``.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from bot.config import Config
from bot.errors import ConfigError
from bot.feeds.base import Feed
from bot.feeds.http import HttpSettings

log = logging.getLogger(__name__)

GROUP = "patchwarden.feeds"


def available() -> dict[str, type[Feed]]:
    """Every installed feed class by entry point name; a plugin that fails to load raises ``ConfigError``."""
    feeds: dict[str, type[Feed]] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except Exception as exc:
            raise ConfigError(f"feed plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Feed)):
            raise ConfigError(f"feed plugin {ep.name!r} ({ep.value}) is not a Feed subclass")
        feeds[ep.name] = cls
    return feeds


def create_all(config: Config, *, http: HttpSettings) -> dict[str, Feed]:
    """Instantiate every feed named in ``config.feeds``; fail closed on any unknown or invalid feed."""
    known = available()
    feeds: dict[str, Feed] = {}
    for name, options in config.feeds.items():
        cls = known.get(name)
        if cls is None:
            raise ConfigError(
                f"feeds.{name}: unknown feed; installed feeds are: {', '.join(sorted(known)) or '(none)'}"
            )
        feeds[name] = cls(options or {}, key_path=f"feeds.{name}", http=http)
        log.info("feed %s enabled (%s)", name, cls.__qualname__)
    return feeds
