"""Feed plugins from the ``patchwarden.feeds`` entry-point group, loaded by ``bot.plugins``.

Installed is not enabled: only feeds named under ``feeds:`` in the configuration are imported and created,
and any problem (unknown name, plugin that fails to load, invalid options) stops startup with a
``ConfigError`` that names the key path ``feeds.<name>``; a broken feed nobody names does not.
"""

from __future__ import annotations

import logging

from bot import plugins
from bot.config import Config
from bot.feeds.base import Feed
from bot.feeds.http import HttpSettings

log = logging.getLogger(__name__)

GROUP = "patchwarden.feeds"


def available() -> dict[str, type[Feed]]:
    """Every installed feed class that loads, by entry point name (broken ones are logged and left out)."""
    return plugins.available(plugins.installed(GROUP), base=Feed, kind="feed")


def create_all(config: Config, *, http: HttpSettings) -> dict[str, Feed]:
    """Instantiate every feed named in ``config.feeds``; fail closed on any unknown or invalid feed."""
    found = plugins.installed(GROUP)
    feeds: dict[str, Feed] = {}
    for name, options in config.feeds.items():
        cls: type[Feed] = plugins.load(found, name, base=Feed, kind="feed", where=f"feeds.{name}")
        feeds[name] = cls(options or {}, key_path=f"feeds.{name}", http=http)
        log.info("feed %s enabled (%s)", name, cls.__qualname__)
    return feeds
