"""The one plugin loader: lazy, fail-closed, duplicates refused — the same rules for executors and feeds."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from bot import plugins
from bot.errors import ConfigError
from bot.executors.base import Executor
from bot.executors.dry_run import DryRunExecutor, DryRunOptions
from bot.feeds import registry as feed_registry
from bot.feeds.http import HttpSettings
from bot.feeds.kev import KevFeed
from tests.feeds.test_registry import _config  # the smallest configuration with feeds

FEEDS = feed_registry.GROUP
KEV = {"kev": {"source": "https://example.invalid/kev.json"}}


def _found(*eps: EntryPoint) -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in eps:
        found.setdefault(ep.name, []).append(ep)
    return found


def test_a_broken_feed_nobody_names_does_not_stop_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _found(EntryPoint("kev", "bot.feeds.kev:KevFeed", FEEDS), EntryPoint("bad", "no_such_mod_xyz:F", FEEDS))
    monkeypatch.setattr(plugins, "installed", lambda group: found)
    assert set(feed_registry.available()) == {"kev"}  # logged and left out, not fatal
    feeds = feed_registry.create_all(_config(KEV), http=HttpSettings())
    assert isinstance(feeds["kev"], KevFeed)
    with pytest.raises(ConfigError, match=r"feeds\.bad: feed plugin 'bad' .* failed to load"):
        feed_registry.create_all(_config({"bad": {}}), http=HttpSettings())


def test_a_feed_registered_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _found(EntryPoint("kev", "bot.feeds.kev:KevFeed", FEEDS), EntryPoint("kev", "evil_pkg:Kev", FEEDS))
    monkeypatch.setattr(plugins, "installed", lambda group: found)
    with pytest.raises(ConfigError, match=r"feeds\.kev: feed 'kev' is registered more than once"):
        feed_registry.create_all(_config(KEV), http=HttpSettings())


def test_an_entry_point_must_subclass_the_groups_contract() -> None:
    found = _found(EntryPoint("odd", "bot.feeds.kev:KevFeed", "patchwarden.executors"))
    with pytest.raises(ConfigError, match="is not an Executor subclass"):
        plugins.load(found, "odd", base=Executor, kind="executor", where="k")


def test_executors_are_generic_over_their_options_model() -> None:
    executor = DryRunExecutor({"targets": ["a", "b"]}, key_path="k")
    assert DryRunExecutor.Options is DryRunOptions
    assert isinstance(executor.options, DryRunOptions) and executor.options.targets == ("a", "b")
