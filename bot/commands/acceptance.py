"""The test stage buttons and forms in a change's thread: result, risk decision, acknowledgement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import acceptance as blocks
from bot.blocks import modal
from bot.blocks import test_checklist as checklist_blocks
from bot.blocks.common import escape, mention, mentions
from bot.commands.replies import guarded
from bot.commands.router import button_id
from bot.deps import Deps
from bot.errors import InputError
from bot.slack import notify, thread
from bot.workflows import acceptance as flow
from bot.workflows import cards, deployment, lifecycle, test_checklist
from bot.workflows.acceptance import Next, StageStep

StepWorkflow = Callable[..., Awaitable[StageStep]]  # record_passed, acknowledge: (session, *, config, change_id, ...)


async def follow_up(deps: Deps, step: StageStep, user: str) -> None:
    """Tell the thread what the step means and show the next buttons (after the transaction)."""
    change, config = step.change, deps.config
    owners = sorted(deployment.owners(config, change))
    if step.next in (Next.REFUSED, Next.ALREADY):
        return
    await cards.refresh_card(deps, change.id)
    if step.report is not None:  # the scenario checklist and log review, for the thread's record
        await thread.say(deps, change, checklist_blocks.report_text(change.key, step.report))
    if step.next is Next.ACKNOWLEDGE:
        await thread.say(
            deps,
            change,
            step.message,
            blocks=blocks.acknowledge_prompt(
                change_id=change.id, change_key=change.key, owners=owners, conclusion=step.conclusion
            ),
        )
    elif step.next is Next.RISK:
        security = flow.security_group(config)
        await thread.say(
            deps,
            change,
            step.message,
            blocks=blocks.risk_prompt(change_id=change.id, change_key=change.key, owners=owners, security=security),
        )
    elif step.next is Next.WAITING:
        await thread.say(deps, change, f"{mention(user)}: {escape(step.message)}")
    elif step.next is Next.FAILED:
        await thread.say(
            deps,
            change,
            f":no_entry: {mention(user)} decided to stop: {change.key} has *failed*. {mention(change.requester)}",
        )
    elif step.next is Next.PROD_APPROVAL:
        snap = await cards.load_snapshot(deps, change.id)
        pending = sorted(snap.progress.pending_people()) if snap and snap.progress else []
        await thread.say(
            deps,
            change,
            f":white_check_mark: {mention(user)} acknowledged the test result ({escape(step.conclusion)}). "
            f"Approval needed for the *prod* stage: {mentions(pending)}",
        )


def register(app: AsyncApp, deps: Deps) -> None:
    """Register the test-stage buttons and forms."""
    config = deps.config

    def context(body: dict[str, Any]) -> tuple[str, str]:
        return body["user"]["id"], body.get("channel", {}).get("id", "")

    async def step_click(body: dict[str, Any], action: dict[str, Any], step_of: StepWorkflow) -> None:
        user, channel = context(body)

        async def work() -> None:
            async with deps.sessions.begin() as session:
                step = await step_of(
                    session, config=config, change_id=button_id(action["value"]), user=user, now=deps.clock.now()
                )
            await notify.ephemeral(deps, channel=channel, user=user, text=step.message)
            await follow_up(deps, step, user)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    async def open_checklist(body: dict[str, Any], action: dict[str, Any]) -> bool:
        """Open the scenario checklist if the change's systems define one (True), else leave it to the caller."""
        _, channel = context(body)
        async with deps.sessions.begin() as session:
            form = await test_checklist.form_for(
                session, config=config, change_id=button_id(action["value"]), now=deps.clock.now()
            )
        if form is None:
            return False
        meta = {"change_id": form.change.id, "channel": channel}
        view = checklist_blocks.checklist_modal(
            change_key=form.change.key, scenarios=form.scenarios, review=form.review, metadata=meta
        )
        await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)
        return True

    @app.action(blocks.TestActionId.PASSED.value)
    async def handle_test_passed_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = context(body)

        async def work() -> None:
            if not await open_checklist(body, action):
                await step_click(body, action, flow.record_passed)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.action(blocks.TestActionId.ACKNOWLEDGE.value)
    async def handle_test_acknowledge_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await step_click(body, action, flow.acknowledge)

    async def open_form(body: dict[str, Any], action: dict[str, Any], *, risk: bool) -> None:
        user, channel = context(body)

        async def work() -> None:
            if not risk and await open_checklist(body, action):
                return
            change_id = button_id(action["value"])
            async with deps.sessions.begin() as session:
                change = await lifecycle.load(session, change_id)
            meta = {"change_id": change_id, "channel": channel}
            view = (
                blocks.risk_modal(change_key=change.key, metadata=meta)
                if risk
                else blocks.problems_modal(change_key=change.key, metadata=meta)
            )
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.action(blocks.TestActionId.PROBLEMS.value)
    async def handle_test_problems_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await open_form(body, action, risk=False)

    @app.action(blocks.TestActionId.RISK.value)
    async def handle_test_risk_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        await open_form(body, action, risk=True)

    async def submit(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], *, risk: bool, checklist: bool = False
    ) -> None:
        user = body["user"]["id"]
        meta = modal.read_metadata(view)
        values = blocks.read_values(view)
        channel = str(meta.get("channel", ""))
        try:
            async with deps.sessions.begin() as session:
                if checklist:
                    step = await test_checklist.record(
                        session,
                        config=config,
                        change_id=int(meta["change_id"]),
                        user=user,
                        answers=checklist_blocks.read_answers(values),
                        criticality=values.get("criticality", ""),
                        description=values.get("description", ""),
                        now=deps.clock.now(),
                    )
                elif risk:
                    step = await flow.record_risk(
                        session,
                        config=config,
                        change_id=int(meta["change_id"]),
                        user=user,
                        decision=values.get("decision", ""),
                        reasoning=values.get("reasoning", ""),
                        now=deps.clock.now(),
                    )
                else:
                    step = await flow.record_problems(
                        session,
                        config=config,
                        change_id=int(meta["change_id"]),
                        user=user,
                        criticality=values.get("criticality", ""),
                        description=values.get("description", ""),
                        now=deps.clock.now(),
                    )
        except InputError as exc:
            await ack(response_action="errors", errors=exc.field_errors)
            return
        except Exception:
            await ack()
            raise
        await ack()

        async def work() -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=step.message)
            await follow_up(deps, step, user)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.view(blocks.TestCallbackId.PROBLEMS.value)
    async def handle_test_problems_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await submit(ack, body, view, risk=False)

    @app.view(checklist_blocks.CALLBACK)
    async def handle_test_checklist_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await submit(ack, body, view, risk=False, checklist=True)

    @app.view(blocks.TestCallbackId.RISK.value)
    async def handle_test_risk_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        await submit(ack, body, view, risk=True)
