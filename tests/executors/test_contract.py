"""Contract tests run against every installed executor plugin (built-in or third-party)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConfigError, ExecutorError
from bot.executors import registry
from bot.executors.base import DeploymentRequest, Executor, ExecutorOptions, Step, StepResult

from .helpers import LOOPBACK

PLUGINS = sorted(registry.available())


def test_the_built_ins_are_installed() -> None:
    assert {"dry-run", "shell", "webhook", "ansible"} <= set(PLUGINS)


@pytest.fixture(params=PLUGINS)
def plugin(request: pytest.FixtureRequest, plugin_options: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    name: str = request.param
    if name not in plugin_options:
        pytest.fail(f"executor plugin {name!r} has no options fixture in tests/executors/conftest.py; add one")
    return name, plugin_options[name]


def test_class_declares_its_contract(plugin: tuple[str, dict[str, Any]]) -> None:
    name, _ = plugin
    cls = registry.available()[name]
    assert issubclass(cls, Executor)
    assert cls.name == name
    assert issubclass(cls.Options, ExecutorOptions)
    assert cls.Options.model_config.get("extra") == "forbid"


def test_valid_options_create_an_executor(plugin: tuple[str, dict[str, Any]]) -> None:
    name, options = plugin
    executor = registry.create(name, options, key_path="systems.shop.environments.test", outbound=LOOPBACK)
    assert executor.name == name
    assert executor.key_path == "systems.shop.environments.test"
    assert executor.has_step(Step.PLAN) and executor.has_step(Step.APPLY)


def test_unknown_option_names_the_key_path(plugin: tuple[str, dict[str, Any]]) -> None:
    name, options = plugin
    with pytest.raises(ConfigError) as info:
        registry.create(
            name, {**options, "tiemout": "5m"}, key_path="systems.shop.environments.test", outbound=LOOPBACK
        )
    assert "systems.shop.environments.test.tiemout" in str(info.value)
    assert "unknown key" in str(info.value)


def test_bad_timeout_names_the_field(plugin: tuple[str, dict[str, Any]]) -> None:
    name, options = plugin
    with pytest.raises(ConfigError, match=r"systems\.shop\.environments\.prod\.timeout"):
        registry.create(
            name, {**options, "timeout": "soon"}, key_path="systems.shop.environments.prod", outbound=LOOPBACK
        )


async def test_plan_returns_a_step_result(plugin: tuple[str, dict[str, Any]], request_: DeploymentRequest) -> None:
    name, options = plugin
    executor = registry.create(name, options, key_path="k", outbound=LOOPBACK)
    result = await executor.plan(request_)
    assert isinstance(result, StepResult)
    assert result.step is Step.PLAN
    assert result.ok, result.summary
    assert result.summary
    assert result.started <= result.finished
    assert result.started.tzinfo is not None


async def test_missing_verify_succeeds_and_missing_rollback_fails(
    plugin: tuple[str, dict[str, Any]], request_: DeploymentRequest
) -> None:
    name, options = plugin
    executor = registry.create(name, options, key_path="k", outbound=LOOPBACK)
    verify = await executor.verify(request_)
    rollback = await executor.rollback(request_)
    assert (verify.step, verify.ok, verify.summary) == (Step.VERIFY, True, "no verify step configured")
    assert (rollback.step, rollback.ok, rollback.summary) == (Step.ROLLBACK, False, "no rollback configured")


async def test_a_request_must_be_a_deployment_request(plugin: tuple[str, dict[str, Any]]) -> None:
    name, options = plugin
    executor = registry.create(name, options, key_path="k", outbound=LOOPBACK)
    with pytest.raises(ExecutorError):
        await executor.apply({"run_id": "x"})  # type: ignore[arg-type]


def test_options_are_frozen(plugin: tuple[str, dict[str, Any]]) -> None:
    name, options = plugin
    executor = registry.create(name, options, key_path="k", outbound=LOOPBACK)
    with pytest.raises(ValueError, match="frozen"):
        executor.options.timeout = executor.options.timeout  # type: ignore[misc]
