"""Entry-point loading: installed is not enabled; unknown or broken plugins stop startup."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from bot.executors import registry
from bot.executors.dry_run import DryRunExecutor
from bot.executors.shell import ShellExecutor


def _config(environments: dict[str, Any]) -> dict[str, Any]:
    return {
        "slack": {"approvals_channel": "C0APPROVE"},
        "groups": {"security": ["U0SEC1"], "ops": ["U0OPS1"]},
        "systems": {"shop": {"owner": "U0OWNER", "environments": environments}},
        "policy": {
            "version": 1,
            "operators": "ops",
            "stages": {"test": [{"role": "owner"}], "prod": [{"group": "security", "count": 1}]},
        },
    }


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        registry.create("sheel", {}, key_path="systems.shop.environments.test")
    message = str(info.value)
    assert "systems.shop.environments.test.executor" in message
    assert "'sheel'" in message
    for known in ("ansible", "dry-run", "shell", "webhook"):
        assert known in message


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"systems\.shop\.environments\.test\.argv"):
        registry.create("shell", {"argv": []}, key_path="systems.shop.environments.test")


def test_validate_config_builds_every_environment(tmp_path: Path) -> None:
    script = tmp_path / "deploy.sh"
    script.write_text("#!/bin/sh\n")
    config = parse_config(
        _config(
            {
                "test": {"executor": "shell", "argv": [str(script), "test"], "timeout": "15m"},
                "prod": {"executor": "dry-run"},
            }
        )
    )
    executors = registry.validate_config(config)
    assert set(executors) == {("shop", "test"), ("shop", "prod")}
    assert isinstance(executors[("shop", "test")], ShellExecutor)
    assert isinstance(executors[("shop", "prod")], DryRunExecutor)
    assert executors[("shop", "test")].options.timeout.total_seconds() == 900


def test_validate_config_stops_at_a_bad_environment() -> None:
    config = parse_config(_config({"prod": {"executor": "shell", "argv": ["./x"], "verify": {"argv": []}}}))
    with pytest.raises(ConfigError, match=r"systems\.shop\.environments\.prod\.verify\.argv"):
        registry.validate_config(config)


def test_validate_config_rejects_an_unknown_executor() -> None:
    config = parse_config(_config({"prod": {"executor": "salt"}}))
    with pytest.raises(ConfigError, match=r"systems\.shop\.environments\.prod\.executor: unknown executor 'salt'"):
        registry.validate_config(config)


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    def fake() -> dict[str, list[EntryPoint]]:
        found: dict[str, list[EntryPoint]] = {}
        for ep in eps:
            found.setdefault(ep.name, []).append(ep)
        return found

    monkeypatch.setattr(registry, "_entry_points", fake)


def test_a_broken_plugin_stops_startup_only_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    group = registry.GROUP
    _fake_entry_points(
        monkeypatch,
        EntryPoint("broken", "no_such_module_xyz:Plugin", group),
        EntryPoint("dry-run", "bot.executors.dry_run:DryRunExecutor", group),
    )
    assert set(registry.available()) == {"dry-run"}  # installed but broken: left out, not fatal
    assert registry.create("dry-run", {}, key_path="k").name == "dry-run"
    with pytest.raises(ConfigError, match=r"k\.executor: executor plugin 'broken' .* failed to load"):
        registry.create("broken", {}, key_path="k")


def test_an_entry_point_must_name_an_executor_class(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, EntryPoint("odd", "bot.executors.base:Step", registry.GROUP))
    with pytest.raises(ConfigError, match="not an Executor subclass"):
        registry.create("odd", {}, key_path="k")


def test_two_plugins_with_one_name_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    group = registry.GROUP
    _fake_entry_points(
        monkeypatch,
        EntryPoint("shell", "bot.executors.shell:ShellExecutor", group),
        EntryPoint("shell", "evil_pkg:Shell", group),
    )
    with pytest.raises(ConfigError, match="registered more than once"):
        registry.create("shell", {"argv": ["./x"]}, key_path="k")
