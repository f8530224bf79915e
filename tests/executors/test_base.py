"""Invariants the base class guarantees to every plugin: timeouts, cancellation, error wrapping, progress."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from pydantic import ValidationError

from bot.errors import ExecutorError
from bot.executors import base
from bot.executors.base import DeploymentRequest, Executor, HookResult, Step, StepContext, TargetStatus
from bot.executors.dry_run import DryRunExecutor

from .helpers import Recorder


class Exploding(Executor):
    """A plugin whose hooks misbehave in the ways the base class must contain."""

    name = "exploding"

    async def _plan(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        await ctx.emit("about to fail")
        raise RuntimeError("password=hunter2 in /secret/path")

    async def _apply(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        raise ExecutorError("the deploy tool said no", user_message="the deploy tool refused the change")

    async def _verify(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        for i in range(30):
            await ctx.emit(f"line {i}")
        return HookResult(ok=True, summary="checked")

    async def _rollback(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        await ctx.emit("progress before the hang")
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_an_unexpected_exception_becomes_a_safe_failed_result(request_: DeploymentRequest) -> None:
    result = await Exploding({}).plan(request_)
    assert not result.ok
    assert "RuntimeError" in result.summary
    assert "hunter2" not in result.summary and "/secret" not in result.summary
    assert "about to fail" in result.output  # what was captured before the failure is kept


async def test_an_executor_error_shows_its_user_message(request_: DeploymentRequest) -> None:
    result = await Exploding({}).apply(request_)
    assert (result.ok, result.summary) == (False, "apply failed: the deploy tool refused the change")


async def test_timeout_becomes_a_failed_result_with_partial_output(request_: DeploymentRequest) -> None:
    result = await Exploding({"timeout": 0.2}).rollback(request_)
    assert not result.ok and result.timed_out
    assert "timed out" in result.summary
    assert "progress before the hang" in result.output


async def test_cancellation_propagates(request_: DeploymentRequest) -> None:
    task = asyncio.create_task(DryRunExecutor({"delay": 30}).apply(request_))
    await asyncio.sleep(0)  # let the step start
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_progress_is_batched_and_complete(request_: DeploymentRequest) -> None:
    progress = Recorder()
    result = await Exploding({}).verify(request_, progress=progress)
    assert result.ok
    assert 1 <= len(progress.calls) <= 2  # 30 lines, one burst: not 30 Slack messages
    assert progress.text.splitlines() == [f"line {i}" for i in range(30)]
    assert result.output.splitlines() == [f"line {i}" for i in range(30)]


async def test_progress_calls_are_spaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "PROGRESS_INTERVAL", 0.1)
    progress = Recorder()
    ctx = StepContext(Step.APPLY, progress)
    for i in range(5):
        await ctx.emit(f"l{i}")
        await asyncio.sleep(0.06)
    await ctx.close()
    times = [t for t, _ in progress.calls]
    assert len(times) >= 2
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(times))
    assert progress.text.split() == [f"l{i}" for i in range(5)]


async def test_a_failing_progress_callback_does_not_fail_the_step(request_: DeploymentRequest) -> None:
    async def broken(text: str) -> None:
        raise ConnectionError("slack is down")

    result = await DryRunExecutor({}).apply(request_, progress=broken)
    assert result.ok


def test_output_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_OUTPUT_CHARS", 10)
    ctx = StepContext(Step.APPLY, None)
    ctx.record("0123456789abc")
    assert ctx.output.startswith("0123456789\n[output truncated")


async def test_dry_run_reports_fake_targets(request_: DeploymentRequest) -> None:
    executor = DryRunExecutor({"fail": ["verify"]})
    applied = await executor.apply(request_.model_copy(update={"targets": ()}))
    assert applied.ok
    assert [(t.target, t.status) for t in applied.targets] == [
        ("dry-run-1", TargetStatus.CHANGED),
        ("dry-run-2", TargetStatus.CHANGED),
    ]
    verified = await executor.verify(request_)
    assert not verified.ok
    assert [(t.target, t.status) for t in verified.targets] == [("web1", TargetStatus.FAILED)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("change_key", "$(touch /tmp/pwned); rm -rf x"),
        ("change_key", "CHG-12; id"),
        ("system", "shop`id`"),
        ("stage", "--prod"),
        ("run_id", "a b"),
        ("targets", ("web1", "-oProxyCommand=id")),
        ("targets", ("web1;id",)),
        ("artifacts", ({"name": "fix.deb", "path": "relative.deb", "sha256": "0" * 64},)),
        ("artifacts", ({"name": "../fix.deb", "path": "/q/fix.deb", "sha256": "0" * 64},)),
        ("artifacts", ({"name": "fix.deb", "path": "/q/fix.deb", "sha256": "not-hex"},)),
    ],
)
def test_request_fields_reject_shell_and_option_injection(field: str, value: object) -> None:
    data: dict[str, object] = {"run_id": "r1", "change_key": "CHG-1", "stage": "test", "system": "shop"}
    data[field] = value
    with pytest.raises(ValidationError):
        DeploymentRequest.model_validate(data)
