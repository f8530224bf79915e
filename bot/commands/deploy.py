"""``/patch deploy``, the Roll back / Keep buttons, missed-window buttons and the due-window sweep.

Deployments run as background tasks after the starting transaction committed: the listener answers at
once and the run reports into the change's thread.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError

from bot.blocks import deployment as blocks
from bot.blocks.common import Block, escape, mention
from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.errors import UsageError
from bot.slack import notify
from bot.views import state_label
from bot.workflows import delivery, due_windows, lifecycle, remediation, runner
from bot.workflows import deployment as flow
from storage import windows
from storage.models import Change, DeploymentStatus, WindowState

log = logging.getLogger(__name__)
STAGES = ("test", "prod")
# Running deployments, so they are not garbage-collected mid-run (asyncio keeps only weak references).
_tasks: set[asyncio.Task[Change]] = set()


@dataclass(frozen=True)
class SlackSink:
    """The runner's view of Slack: the change's thread and card. Slack failures never stop a deployment."""

    deps: Deps
    change: Change

    def _where(self) -> dict[str, Any]:
        return {
            "channel": self.change.channel or self.deps.config.slack.approvals_channel,
            "thread_ts": self.change.thread_ts,
        }

    async def post(self, text: str, *, blocks: list[Block] | None = None) -> None:
        try:
            await self.deps.client.chat_postMessage(**self._where(), text=text, blocks=blocks, unfurl_links=False)
        except SlackApiError as exc:
            log.warning("thread post for %s failed: %s", self.change.key, exc.response.get("error"))

    async def attach(self, *, filename: str, content: str, comment: str) -> None:
        where = self._where()
        try:
            await self.deps.client.files_upload_v2(
                channel=where["channel"],
                thread_ts=where["thread_ts"],
                filename=filename,
                title=filename,
                content=content,
                initial_comment=comment,
            )
        except SlackApiError as exc:
            # Without the files scope (or with Slack down) fall back to the tail of the output as a snippet.
            log.warning("file upload for %s failed: %s", self.change.key, exc.response.get("error"))
            tail = content[-2500:]
            await self.post(f"{comment} Upload failed; last {len(tail):,} characters:\n```{escape(tail)}```")

    async def refresh(self) -> None:
        try:
            await notify.refresh_card(self.deps, self.change.id)
        except SlackApiError as exc:
            log.warning("card refresh for %s failed: %s", self.change.key, exc.response.get("error"))


def launch(deps: Deps, run: flow.Run) -> asyncio.Task[Change]:
    """Run ``run`` in the background; the task's result is the change in its final state."""
    sink = SlackSink(deps, run.change)
    task = asyncio.create_task(
        runner.execute(
            deps.sessions,
            config=deps.config,
            clock=deps.clock,
            sink=sink,
            run=run,
            artifacts=delivery.gate(deps, change_id=run.change.id, actor=run.actor),
            after_prod=remediation.after_prod(deps, sink=sink),
        )
    )
    _tasks.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Change]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("deployment task failed", exc_info=task.exception())


def parse_deploy(rest: str) -> tuple[int, str, str | None]:
    """``CHG-n test|prod [--now REASON...]`` → (change id, stage, reason or None). Raises UsageError."""
    parts = rest.split(None, 2)
    if len(parts) < 2:
        raise UsageError("deploy needs a change and a stage", user_message="Name the change and the stage.")
    change_id = lifecycle.parse_key(parts[0])
    stage = parts[1].lower()
    if stage not in STAGES:
        raise UsageError(
            f"bad stage {stage!r}", user_message=f"`{escape(parts[1][:20])}` is not a stage; use test or prod."
        )
    reason: str | None = None
    if len(parts) == 3:
        tail = parts[2].strip()
        if tail != "--now" and not tail.startswith("--now "):
            raise UsageError(
                "unexpected text", user_message=f"Unexpected `{escape(tail[:40])}`; only `--now REASON` may follow."
            )
        reason = tail[len("--now") :].strip()
    return change_id, stage, reason


async def run_due_windows(deps: Deps) -> list[asyncio.Task[Change]]:
    """The scheduler's sweep: start due windows (claimed by compare-and-set) and handle missed ones."""
    async with deps.sessions.begin() as session:
        ids = await due_windows.due(session, config=deps.config, now=deps.clock.now())
    tasks = []
    for window_id in ids:
        try:
            async with deps.sessions.begin() as session:
                action = await due_windows.handle_due(
                    session, config=deps.config, window_id=window_id, now=deps.clock.now()
                )
        except Exception:
            log.exception("due window %s could not be handled; the next sweep tries again", window_id)
            continue
        if action is None:
            continue
        sink = SlackSink(deps, action.change)
        if action.note and action.kind == "missed_ask":
            await sink.post(
                action.note,
                blocks=blocks.missed_blocks(window_id=action.window_id, change_key=action.change.key, text=action.note),
            )
        elif action.note:  # a refusal carries a note only the first time (see storage.windows.note_refusal_once)
            await sink.post(action.note)
        if action.run is not None:
            tasks.append(launch(deps, action.run))
    return tasks


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register /patch deploy and the deployment buttons."""
    config = deps.config

    @router.add("deploy", usage="/patch deploy CHG-n test|prod [--now REASON]", summary="deploy a stage (operators)")
    async def handle_deploy_command(ctx: CommandContext) -> None:
        try:
            change_id, stage, reason = parse_deploy(ctx.rest)
        except UsageError as exc:
            raise usage_error(router.subcommands["deploy"], exc.user_message) from exc
        async with deps.sessions.begin() as session:
            result = await flow.start(
                session,
                config=config,
                change_id=change_id,
                stage=stage,
                actor=ctx.user,
                now=deps.clock.now(),
                now_reason=reason,
            )
        if result.run is None:
            await ctx.respond(text=f":no_entry: {result.refusal}", response_type="ephemeral")
            return
        run = result.run
        if reason is not None and run.window_id is None:
            await SlackSink(deps, run.change).post(
                f":rotating_light: {mention(ctx.user)} deploys {run.change.key} to {stage} *outside a window* "
                f"(emergency): {escape(reason)}"
            )
        launch(deps, run)
        await ctx.respond(text=f"Deploying {run.change.key} to {stage}; follow its thread.", response_type="ephemeral")

    async def decide(body: dict[str, Any], action: dict[str, Any], *, roll_back: bool) -> None:
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            try:
                change_id_text, stage = str(action["value"]).split(":")
                change_id = int(change_id_text)
            except ValueError as exc:
                raise UsageError("bad button value", user_message="This button is out of date.") from exc
            now = deps.clock.now()
            async with deps.sessions.begin() as session:
                run = await flow.load_run(
                    session, change_id=change_id, stage=stage, statuses=frozenset({DeploymentStatus.VERIFY_FAILED})
                )
                change = await lifecycle.load(session, change_id)
                refused = user not in flow.owners(config, change)
                if refused:
                    await lifecycle.log(
                        session,
                        config=config,
                        now=now,
                        actor=user,
                        action="verify_decision_refused",
                        change=change,
                        stage=stage,
                    )
                kept = None
                if not refused and run is not None and not roll_back:
                    kept = await flow.keep(session, config=config, run=run, actor=user, now=now)
            # Slack only after the transaction committed.
            if refused:
                await reply(f"Only the owner of {', '.join(change.systems)} decides whether to roll back {change.key}.")
                return
            if run is None:
                await reply(f"The failed verification of {change.key} ({stage}) was already decided.")
                return
            sink = SlackSink(deps, run.change)
            if roll_back:
                await runner.rollback(
                    deps.sessions,
                    config=config,
                    clock=deps.clock,
                    sink=sink,
                    run=run,
                    actor=user,
                    reason=f"{mention(user)} chose to roll back",
                    artifacts=delivery.gate(deps, change_id=run.change.id, actor=user),
                )
                return
            if kept is None:
                await reply(f"The failed verification of {change.key} ({stage}) was already decided.")
                return
            if stage == "prod":
                from bot.workflows import announcements

                async with deps.sessions.begin() as session:
                    window = await windows.get(session, run.window_id) if run.window_id else None
                    await announcements.announce(
                        session,
                        config=config,
                        change=kept,
                        window=window,
                        kind=announcements.AnnouncementKind.COMPLETED,
                        now=now,
                        stage=stage,
                        note="Post-deployment checks reported problems; the owner kept the update.",
                    )
            await sink.refresh()
            state = state_label(kept.state)
            await sink.post(
                f"{mention(user)} kept {kept.key} ({stage}) despite the failed verification; it is now *{state}*."
            )

        await guarded(reply, work)

    @app.action(blocks.DeployActionId.ROLLBACK.value)
    async def handle_rollback_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await decide(body, action, roll_back=True)

    @app.action(blocks.DeployActionId.KEEP.value)
    async def handle_keep_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await decide(body, action, roll_back=False)

    async def missed(body: dict[str, Any], action: dict[str, Any], *, run_now: bool) -> None:
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            window_id = int(action["value"])
            now = deps.clock.now()
            async with deps.sessions.begin() as session:
                window = await windows.get(session, window_id)
                if window is None or window.state is not WindowState.AWAITING_DECISION:
                    await reply("This missed window was already handled.")
                    return
                change = await lifecycle.load(session, window.change_id, lock=True)
                if not flow.is_operator(config, user):
                    await lifecycle.log(
                        session, config=config, now=now, actor=user, action="missed_window_refused", change=change
                    )
                    await reply(f"Only members of the {config.policy.operators} group decide about missed windows.")
                    return
                await lifecycle.log(
                    session,
                    config=config,
                    now=now,
                    actor=user,
                    action="missed_window_decided",
                    change=change,
                    window_id=window_id,
                    decision="run" if run_now else "next",
                )
                if run_now:
                    await windows.compare_and_set(
                        session, window_id, expected=WindowState.AWAITING_DECISION, new=WindowState.BOOKED
                    )
                    result = await flow.start(
                        session,
                        config=config,
                        change_id=change.id,
                        stage=window.stage,
                        actor=user,
                        now=now,
                        window_id=window_id,
                    )
                    due_action = due_windows.DueAction(change, window_id, "run", result.run, result.refusal)
                else:
                    due_action = await due_windows.rebook(
                        session, config=config, change=change, window=window, actor=user, now=now
                    )
            sink = SlackSink(deps, change)
            if due_action.run is not None:
                await sink.post(f"{mention(user)} runs the missed window of {change.key} now.")
                launch(deps, due_action.run)
            else:
                await sink.post(due_action.note)

        await guarded(reply, work)

    @app.action(blocks.DeployActionId.MISSED_RUN.value)
    async def handle_missed_run_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await missed(body, action, run_now=True)

    @app.action(blocks.DeployActionId.MISSED_NEXT.value)
    async def handle_missed_next_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await missed(body, action, run_now=False)
