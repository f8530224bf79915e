"""The owner's check-in for prod (``prod_presence: required``) and the Documentation revised button and modal.

Thin listeners: ack, parse the id-only value, one workflow call, the clicker's reply.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import deployment as deployment_blocks
from bot.blocks import docs as docs_blocks
from bot.blocks import modal
from bot.commands.replies import guarded
from bot.commands.router import button_id
from bot.deps import Deps
from bot.errors import InputError
from bot.slack import notify
from bot.workflows import deploy_runs, docs, lifecycle, people_runs


def register(app: AsyncApp, deps: Deps) -> None:
    """Register the check-in button, the documentation button and its modal."""

    @app.action(deployment_blocks.DeployActionId.PRESENCE_CHECK_IN.value)
    async def handle_presence_check_in_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def reply(text: str) -> None:
            if channel.startswith("D") or not channel:  # clicked in the DM: answer there
                await notify.direct(deps, user=user, text=text)
            else:
                await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            text, run = await people_runs.on_check_in(deps, window_id=button_id(action["value"]), actor=user)
            if run is not None:
                deploy_runs.launch(deps, run)
            await reply(text)

        await guarded(reply, work)

    @app.action(docs_blocks.DocsAction.CONFIRM.value)
    async def handle_docs_confirm_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def work() -> None:
            change_id = button_id(action["value"])
            async with deps.sessions.begin() as session:
                change = await lifecycle.load(session, change_id)
            view = docs_blocks.confirm_modal(
                change_id=change.id, change_key=change.key, title=change.title, channel=channel
            )
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.view(docs_blocks.DocsCallback.CONFIRM.value)
    async def handle_docs_confirm_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            url = docs.clean_link(str(modal.read_values(view).get("link") or ""))
        except InputError as exc:
            await ack(response_action="errors", errors=exc.field_errors)
            return
        await ack()
        user = body["user"]["id"]
        meta = modal.read_metadata(view)
        channel = str(meta.get("channel", ""))

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            change_id = button_id(meta.get("change_id"))
            await reply(await people_runs.on_docs_confirmed(deps, change_id=change_id, actor=user, url=url))

        await guarded(reply, work)
