"""The ``dry-run`` executor: deploys nothing and reports fake per-target results.

It is a real plugin (registered like any other), so the sandbox and the workflow tests use it as their
deployment tool. ``fail`` and ``delay`` let tests drive failures, timeouts and cancellation.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import Field

from bot.config import Duration
from bot.executors.base import (
    DeploymentRequest,
    Executor,
    ExecutorOptions,
    HookResult,
    Step,
    StepContext,
    TargetResult,
    TargetStatus,
)


class DryRunOptions(ExecutorOptions):
    """Options of the ``dry-run`` executor."""

    targets: tuple[str, ...] = Field(default=("dry-run-1", "dry-run-2"), min_length=1)
    fail: frozenset[Step] = frozenset()  # steps that report failure
    delay: Duration = timedelta(0)  # how long each step pretends to work
    verify: bool = True  # False: behave as if no verify step were configured
    rollback: bool = True  # False: behave as if no rollback were configured


class DryRunExecutor(Executor[DryRunOptions]):
    """Pretends to deploy; every target reports ``ok`` (``changed`` on apply) unless told to fail."""

    name = "dry-run"

    def _has_step(self, step: Step) -> bool:
        return {Step.VERIFY: self.options.verify, Step.ROLLBACK: self.options.rollback}.get(step, True)

    async def _pretend(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        targets = request.targets or self.options.targets
        failed = ctx.step in self.options.fail
        good = TargetStatus.CHANGED if ctx.step in (Step.APPLY, Step.ROLLBACK) else TargetStatus.OK
        status = TargetStatus.FAILED if failed else good
        await ctx.emit(f"dry-run {ctx.step} of {request.change_key} on {request.system}/{request.stage}")
        if self.options.delay:
            await asyncio.sleep(self.options.delay.total_seconds())
        results = []
        for target in targets:
            await ctx.emit(f"{target}: {status}")
            # a pretended "changed" says so: never "changed" next to "nothing was changed"
            detail = (
                "dry run: pretended to change it (nothing real was touched)"
                if good is TargetStatus.CHANGED
                else ("dry run: pretended to check it")
            )
            results.append(
                TargetResult(target=target, status=status, detail="dry run: would fail" if failed else detail)
            )
        verb = "would fail" if failed else "pretended (nothing real was touched)"
        return HookResult(
            ok=not failed,
            summary=f"dry run {ctx.step} on {len(targets)} target(s): {verb}",
            targets=tuple(results),
        )

    async def _plan(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._pretend(request, ctx)

    async def _apply(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._pretend(request, ctx)

    async def _verify(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._pretend(request, ctx)

    async def _rollback(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._pretend(request, ctx)
