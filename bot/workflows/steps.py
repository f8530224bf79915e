"""One executor step on every system of a run, and the :class:`Sink` a run talks through.

A step gets the run's verified artifacts (``delivered``) and the environment's targets in its
``DeploymentRequest``; long output is attached to the thread as a file. No database, no Slack imports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from bot.blocks.common import Block, escape
from bot.config import Config
from bot.deps import Clock
from bot.errors import ConfigError
from bot.executors.base import ArtifactInfo, DeploymentRequest, Step, StepResult
from bot.executors.registry import Executors
from bot.workflows import deployment as flow
from bot.workflows.heartbeat import Tracker

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 8  # systems deployed at the same time within one run
ATTACH_OVER_CHARS = 1500  # longer output is attached as a file rather than left to the streamed lines
ATTACH_OVER_LINES = 20


class Sink(Protocol):
    """Where a run talks: the change's thread and card."""

    async def post(self, text: str, *, blocks: list[Block] | None = None) -> None:
        """Post in the change's thread."""

    async def attach(self, *, filename: str, content: str, comment: str) -> None:
        """Attach a text file to the change's thread."""

    async def refresh(self) -> None:
        """Re-render the change's card."""

    async def flush(self) -> None:
        """Deliver now what the run queued in its transactions (``thread.say_later``): the queue is durable,
        so a note a crash cut off is still sent by the next process."""


class NullSink:
    """A sink that drops everything (benchmarks, dry runs)."""

    async def post(self, text: str, *, blocks: list[Block] | None = None) -> None:
        return None

    async def attach(self, *, filename: str, content: str, comment: str) -> None:
        return None

    async def refresh(self) -> None:
        return None

    async def flush(self) -> None:
        return None


def _too_long(output: str) -> bool:
    return len(output) > ATTACH_OVER_CHARS or output.count("\n") > ATTACH_OVER_LINES


async def one_step(
    executors: Executors,
    run: flow.Run,
    target: flow.Target,
    step: Step,
    *,
    sink: Sink,
    clock: Clock,
    config: Config | None = None,
    delivered: tuple[ArtifactInfo, ...] = (),
    hosts: tuple[str, ...] | None = None,
    run_id: str | None = None,
    credential_env: dict[str, str] | None = None,
    tracker: Tracker | None = None,
) -> StepResult:
    """One step on one system; ``hosts`` narrows the environment's targets (a ring's host, the done rings)."""
    env = config.systems[target.system].environments.get(run.stage) if config is not None else None
    request = DeploymentRequest(
        run_id=run_id or target.run_id,
        change_key=run.change.key,
        stage=run.stage,
        system=target.system,
        targets=hosts if hosts is not None else env.targets if env is not None else (),
        artifacts=delivered,
        credential_env=credential_env or {},
    )

    async def progress(text: str) -> None:
        await sink.post(f"`{escape(target.system)}` {step}:\n```{escape(text)}```")

    try:
        executor = executors.get(target.system, run.stage)
    except ConfigError as exc:  # validated at startup; only a config swapped at runtime gets here
        now = clock.now()
        return StepResult(step=step, ok=False, summary=exc.user_message, started=now, finished=now)
    method = {
        Step.APPLY: executor.apply,
        Step.VERIFY: executor.verify,
        Step.ROLLBACK: executor.rollback,
        Step.PLAN: executor.plan,
    }[step]

    def on_process(pgid: int | None) -> None:
        if tracker is not None:
            tracker.process(target.deployment_id, pgid)

    result = await method(request, progress=progress, on_process=on_process)
    if result.output and _too_long(result.output):
        try:
            await sink.attach(
                filename=f"{target.run_id}-{step}.log",
                content=result.output,
                comment=f"Full output of {step} on `{escape(target.system)}` ({len(result.output):,} characters).",
            )
        except Exception:
            log.warning("could not attach the output of %s %s", target.run_id, step, exc_info=True)
    return result


async def run_steps(
    executors: Executors,
    run: flow.Run,
    step: Step,
    *,
    sink: Sink,
    clock: Clock,
    limit: int = DEFAULT_LIMIT,
    config: Config | None = None,
    delivered: tuple[ArtifactInfo, ...] = (),
    credentials: Mapping[int, dict[str, str]] | None = None,
    hosts: Mapping[int, tuple[str, ...]] | None = None,
    tracker: Tracker | None = None,
) -> dict[int, StepResult]:
    """Run ``step`` on every system of the run, at most ``limit`` at a time; results by deployment id.

    ``credentials`` is each deployment's just-in-time credential environment; ``hosts`` narrows a
    deployment's targets (a rollback of the rings that ran); ``tracker`` (the run's heartbeat) learns the
    step and each executor's process group."""
    gate = asyncio.Semaphore(limit)
    creds, only = credentials or {}, hosts or {}
    if tracker is not None:
        tracker.enter(step.value)

    async def one(target: flow.Target) -> tuple[int, StepResult]:
        async with gate:
            return target.deployment_id, await one_step(
                executors, run, target, step, sink=sink, clock=clock, config=config, delivered=delivered,
                hosts=only.get(target.deployment_id), credential_env=creds.get(target.deployment_id),
                tracker=tracker,
            )  # fmt: skip

    return dict(await asyncio.gather(*(one(t) for t in run.targets)))
