"""``/patch deploy``, the Roll back / Keep buttons and the missed-window buttons.

Thin listeners: ack, parse the id-only value, one call into ``bot.workflows.deploy_runs``, render its answer.
Deployments run as background tasks after the starting transaction committed: the listener answers at
once and the run reports into the change's thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import deployment as blocks
from bot.blocks.common import escape
from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router, button_id, out_of_date, usage_error
from bot.deps import Deps
from bot.errors import UsageError
from bot.slack import notify
from bot.views import Stage
from bot.workflows import deploy_runs, interrupted, lifecycle

Listener = Callable[[AsyncAck, dict[str, Any], dict[str, Any]], Awaitable[None]]


def parse_deploy(rest: str) -> tuple[int, Stage, str | None]:
    """``CHG-n test|prod [--now REASON...]`` → (change id, stage, reason or None). Raises UsageError."""
    parts = rest.split(None, 2)
    if len(parts) < 2:
        raise UsageError("deploy needs a change and a stage", user_message="Name the change and the stage.")
    change_id = lifecycle.parse_key(parts[0])
    stage = lifecycle.parse_stage(parts[1])
    reason: str | None = None
    if len(parts) == 3:
        tail = parts[2].strip()
        if tail != "--now" and not tail.startswith("--now "):
            raise UsageError(
                "unexpected text", user_message=f"Unexpected `{escape(tail[:40])}`; only `--now REASON` may follow."
            )
        reason = tail[len("--now") :].strip()
    return change_id, stage, reason


def parse_decision(value: Any) -> tuple[int, Stage]:
    """Roll back / Keep button value ``<change id>:<stage>``."""
    try:
        change_id_text, stage = str(value).split(":")
        return int(change_id_text), Stage(stage)
    except ValueError as exc:
        raise out_of_date(value) from exc


async def handle_deploy_command(deps: Deps, router: Router, ctx: CommandContext) -> None:
    """``/patch deploy CHG-n test|prod [--now REASON]``."""
    try:
        change_id, stage, reason = parse_deploy(ctx.rest)
    except UsageError as exc:
        raise usage_error(router.subcommands["deploy"], exc.user_message) from exc
    result = await deploy_runs.deploy_now(deps, change_id=change_id, stage=stage, actor=ctx.user, reason=reason)
    if result.run is None:
        await ctx.respond(text=f":no_entry: {result.refusal}", response_type="ephemeral")
        return
    await ctx.respond(
        text=f"Deploying {result.run.change.key} to {stage}; follow its thread.", response_type="ephemeral"
    )


async def handle_verify_click(deps: Deps, body: dict[str, Any], action: dict[str, Any], *, roll_back: bool) -> None:
    """Roll back / Keep after a failed verification (the owner decides)."""
    user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

    async def reply(text: str) -> None:
        await notify.ephemeral(deps, channel=channel, user=user, text=text)

    async def work() -> None:
        change_id, stage = parse_decision(action["value"])
        refusal = await deploy_runs.on_verify_decision(
            deps, change_id=change_id, stage=stage, actor=user, roll_back=roll_back
        )
        if refusal:
            await reply(refusal)

    await guarded(reply, work)


async def handle_retry_click(deps: Deps, body: dict[str, Any], action: dict[str, Any]) -> None:
    """Retry the rings of a rollout that did not hold (the owner decides)."""
    user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

    async def reply(text: str) -> None:
        await notify.ephemeral(deps, channel=channel, user=user, text=text)

    async def work() -> None:
        change_id, stage = parse_decision(action["value"])
        refusal = await deploy_runs.on_retry_decision(deps, change_id=change_id, stage=stage, actor=user)
        if refusal:
            await reply(refusal)

    await guarded(reply, work)


async def handle_missed_click(deps: Deps, body: dict[str, Any], action: dict[str, Any], *, run_now: bool) -> None:
    """Run a missed window now, or book the next one (operators decide)."""
    user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

    async def reply(text: str) -> None:
        await notify.ephemeral(deps, channel=channel, user=user, text=text)

    async def work() -> None:
        refusal = await deploy_runs.on_missed_decision(
            deps, window_id=button_id(action["value"]), actor=user, run_now=run_now
        )
        if refusal:
            await reply(refusal)

    await guarded(reply, work)


async def handle_interrupted_click(
    deps: Deps, body: dict[str, Any], action: dict[str, Any], *, answer: interrupted.Answer
) -> None:
    """Completed / Failed - roll back / Retry about a run whose bot process died (owners or operators)."""
    user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

    async def reply(text: str) -> None:
        await notify.ephemeral(deps, channel=channel, user=user, text=text)

    async def work() -> None:
        change_id, stage = parse_decision(action["value"])
        refusal = await deploy_runs.on_interrupted_decision(
            deps, change_id=change_id, stage=stage, actor=user, answer=answer
        )
        if refusal:
            await reply(refusal)

    await guarded(reply, work)


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register /patch deploy and the deployment buttons."""

    @router.add("deploy", usage="/patch deploy CHG-n test|prod [--now REASON]", summary="deploy a stage (operators)")
    async def deploy_command(ctx: CommandContext) -> None:
        await handle_deploy_command(deps, router, ctx)

    def on_click(run: Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]) -> Listener:
        async def click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            await run(body, action)

        return click

    verify, missed = handle_verify_click, handle_missed_click
    app.action(blocks.DeployActionId.ROLLBACK.value)(on_click(lambda b, a: verify(deps, b, a, roll_back=True)))
    app.action(blocks.DeployActionId.KEEP.value)(on_click(lambda b, a: verify(deps, b, a, roll_back=False)))
    app.action(blocks.DeployActionId.RETRY.value)(on_click(lambda b, a: handle_retry_click(deps, b, a)))
    app.action(blocks.DeployActionId.MISSED_RUN.value)(on_click(lambda b, a: missed(deps, b, a, run_now=True)))
    app.action(blocks.DeployActionId.MISSED_NEXT.value)(on_click(lambda b, a: missed(deps, b, a, run_now=False)))

    def answering(answer: interrupted.Answer) -> Listener:
        return on_click(lambda b, a: handle_interrupted_click(deps, b, a, answer=answer))

    for action_id, answer in (
        (blocks.DeployActionId.INTERRUPTED_COMPLETED, interrupted.Answer.COMPLETED),
        (blocks.DeployActionId.INTERRUPTED_FAILED, interrupted.Answer.FAILED),
        (blocks.DeployActionId.INTERRUPTED_RETRY, interrupted.Answer.RETRY),
    ):
        app.action(action_id.value)(answering(answer))
