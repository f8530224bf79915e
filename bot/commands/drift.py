"""The "Link to a change" button of an unrecorded-change (drift) note: a small form, then the control log."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks.drift import DRIFT_ACTION
from bot.commands.replies import guarded
from bot.deps import Deps
from bot.errors import UsageError
from bot.slack import notify, thread
from bot.workflows import inventory_import, lifecycle

CALLBACK = "drift_link_form"


def register(app: AsyncApp, deps: Deps) -> None:
    """Register the drift button and its form."""

    @app.action(DRIFT_ACTION)
    async def handle_drift_link_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        system = str(action.get("value", ""))[:64]
        view = {
            "type": "modal",
            "callback_id": CALLBACK,
            "private_metadata": json.dumps({"system": system, "channel": body.get("channel", {}).get("id", "")}),
            "title": {"type": "plain_text", "text": "Link to a change"},
            "submit": {"type": "plain_text", "text": "Link"},
            "blocks": [
                {
                    "type": "input",
                    "block_id": "change",
                    "label": {"type": "plain_text", "text": "Change (CHG-n)"},
                    "element": {"type": "plain_text_input", "action_id": "value"},
                }
            ],
        }
        await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

    @app.view(CALLBACK)
    async def handle_drift_link_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = json.loads(view.get("private_metadata") or "{}")
        text = str(view["state"]["values"]["change"]["value"].get("value") or "")
        try:
            change_id = lifecycle.parse_key(text.strip())
        except UsageError as exc:
            await ack(response_action="errors", errors={"change": exc.user_message})
            return
        await ack()
        user, channel = body["user"]["id"], meta.get("channel") or body["user"]["id"]

        async def reply(message: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=message)

        async def work() -> None:
            async with deps.sessions.begin() as session:
                answer = await inventory_import.link(
                    session, config=deps.config, system=meta["system"], change_id=change_id, user=user,
                    now=deps.clock.now(),
                )  # fmt: skip
            await thread.deliver(deps, channel=user, text=answer, what="drift link answer")

        await guarded(reply, work)
