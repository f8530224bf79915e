"""Deployment runs in the background, and what the deploy buttons and command do once their transaction committed.

A run is started in a transaction (``bot.workflows.deployment.start``), then handed to :func:`launch`, which
runs it as a task kept in ``deps.deployments`` and reports into the change's thread through a
:class:`~bot.slack.run_sink.SlackSink`. Listeners call one function here and render the text it returns.
"""

from __future__ import annotations

import asyncio

from bot.blocks.common import escape, mention
from bot.deps import Deps
from bot.slack.run_sink import SlackSink
from bot.views import state_label
from bot.workflows import (
    announcements,
    cards,
    delivery,
    deploy_decisions,
    interrupted,
    people_runs,
    presence,
    remediation,
    runner,
)
from bot.workflows import deployment as flow
from storage import windows
from storage.models import Change, Stage


def sink_for(deps: Deps, change: Change) -> SlackSink:
    """The run's view of Slack: the change's thread, and its card re-rendered by ``cards.refresh_card``."""

    async def refresh() -> None:
        await cards.refresh_card(deps, change.id)

    return SlackSink(deps, change, refresh)


def launch(deps: Deps, run: flow.Run, *, from_verify: bool = False) -> asyncio.Task[Change]:
    """Run ``run`` in the background; the task's result is the change in its final state."""
    sink = sink_for(deps, run.change)
    return deps.deployments.start(
        runner.execute(
            deps.sessions,
            config=deps.config,
            executors=deps.executors,
            clock=deps.clock,
            sink=sink,
            run=run,
            artifacts=delivery.gate(deps, change_id=run.change.id, actor=run.actor),
            after_prod=people_runs.after_prod(deps, remediation.after_prod(deps, sink=sink)),
            credentials=deps.credentials,
            from_verify=from_verify,
        ),
        ids=tuple(t.deployment_id for t in run.targets),
    )


async def deploy_now(deps: Deps, *, change_id: int, stage: Stage, actor: str, reason: str | None) -> flow.StartResult:
    """``/patch deploy``: start the stage (``reason`` = outside a window, an emergency) and launch it."""
    async with deps.sessions.begin() as session:
        absent = await presence.manual_refusal(
            session, config=deps.config, change_id=change_id, stage=stage, actor=actor, now=deps.clock.now()
        )
        if absent is not None:
            return flow.StartResult(None, absent)
        result = await flow.start(
            session,
            config=deps.config,
            change_id=change_id,
            stage=stage,
            actor=actor,
            now=deps.clock.now(),
            now_reason=reason,
        )
    run = result.run
    if run is None:
        return result
    if reason is not None and run.window_id is None:
        await sink_for(deps, run.change).post(
            f":rotating_light: {mention(actor)} deploys {run.change.key} to {stage} *outside a window* "
            f"(emergency): {escape(reason)}"
        )
    launch(deps, run)
    return result


async def on_verify_decision(deps: Deps, *, change_id: int, stage: Stage, actor: str, roll_back: bool) -> str:
    """Roll back / Keep after a failed verification; returns a refusal for the clicker, or ""."""
    now = deps.clock.now()
    async with deps.sessions.begin() as session:
        decision = await deploy_decisions.decide_verify(
            session, config=deps.config, change_id=change_id, stage=stage, actor=actor, roll_back=roll_back, now=now
        )
    # Slack only after the transaction committed.
    run, kept = decision.run, decision.kept
    if decision.refusal or run is None:
        return decision.refusal
    sink = sink_for(deps, run.change)
    if kept is None:
        await runner.rollback(
            deps.sessions,
            config=deps.config,
            executors=deps.executors,
            clock=deps.clock,
            sink=sink,
            run=run,
            actor=actor,
            reason=f"{mention(actor)} chose to roll back",
            artifacts=delivery.gate(deps, change_id=run.change.id, actor=actor),
            credentials=deps.credentials,
        )
        return ""
    if stage == "prod":
        async with deps.sessions.begin() as session:
            window = await windows.get(session, run.window_id) if run.window_id else None
            await announcements.announce(
                session,
                config=deps.config,
                change=kept,
                window=window,
                kind=announcements.AnnouncementKind.COMPLETED,
                now=now,
                stage=stage,
                note="Post-deployment checks reported problems; the owner kept the update.",
            )
    await sink.refresh()
    state = state_label(kept.state)
    await sink.post(f"{mention(actor)} kept {kept.key} ({stage}) despite the failed verification; it is now *{state}*.")
    return ""


async def on_retry_decision(deps: Deps, *, change_id: int, stage: Stage, actor: str) -> str:
    """Retry a ring rollout stopped at a gate; returns a refusal for the clicker, or ""."""
    async with deps.sessions.begin() as session:
        decision = await deploy_decisions.decide_retry(
            session, config=deps.config, change_id=change_id, stage=stage, actor=actor, now=deps.clock.now()
        )
    if decision.refusal or decision.run is None:
        return decision.refusal
    run = decision.run
    await sink_for(deps, run.change).post(
        f"{mention(actor)} retries {run.change.key} ({stage}): the rings that held stay done, the others run again."
    )
    launch(deps, run)
    return ""


async def on_missed_decision(deps: Deps, *, window_id: int, actor: str, run_now: bool) -> str:
    """Run a missed window now or book the next one; returns a refusal for the clicker, or ""."""
    async with deps.sessions.begin() as session:
        decision = await deploy_decisions.decide_missed(
            session, config=deps.config, window_id=window_id, actor=actor, run_now=run_now, now=deps.clock.now()
        )
    change, action = decision.change, decision.action
    if decision.refusal or change is None or action is None:
        return decision.refusal
    sink = sink_for(deps, change)
    if action.run is not None:
        await sink.post(f"{mention(actor)} runs the missed window of {change.key} now.")
        launch(deps, action.run)
    else:
        await sink.post(action.note)
    return ""


async def on_interrupted_decision(
    deps: Deps, *, change_id: int, stage: Stage, actor: str, answer: interrupted.Answer
) -> str:
    """The owner's answer about an interrupted run; returns a refusal for the clicker, or ""."""
    async with deps.sessions.begin() as session:
        decision = await interrupted.decide(
            session,
            config=deps.config,
            change_id=change_id,
            stage=stage,
            actor=actor,
            answer=answer,
            now=deps.clock.now(),
        )
    if decision.refusal:
        return decision.refusal
    change, run = decision.change, decision.run
    sink = sink_for(deps, change)
    if run is not None and decision.rollback:
        await runner.rollback(
            deps.sessions,
            config=deps.config,
            executors=deps.executors,
            clock=deps.clock,
            sink=sink,
            run=run,
            actor=actor,
            reason=f"{mention(actor)} said the interrupted run failed",
            artifacts=delivery.gate(deps, change_id=change.id, actor=actor),
        )
        return ""
    if run is not None:
        step = "verify" if decision.from_verify else "apply"
        await sink.post(f"{mention(actor)} retries the interrupted {stage} run of {change.key} from {step}.")
        launch(deps, run, from_verify=decision.from_verify)
        return ""
    await sink.refresh()
    state = state_label(change.state)
    await sink.post(f"{mention(actor)} says the interrupted {stage} run of {change.key} completed; it is *{state}*.")
    await sink.flush()  # the result prompt (test), queued with the decision
    return ""
