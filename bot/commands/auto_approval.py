"""The Veto button of an auto-approval and its reason form."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import auto_approval as blocks
from bot.blocks import modal
from bot.blocks.common import ActionId, CallbackId, escape, mention
from bot.commands.approvals import parse_value
from bot.commands.replies import guarded
from bot.deps import Deps
from bot.slack import notify, thread
from bot.workflows import auto_approval, cards


def register(app: AsyncApp, deps: Deps) -> None:
    """Register the Veto button and the veto form."""

    @app.action(ActionId.VETO.value)
    async def handle_veto_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def work() -> None:
            parse_value(action["value"])  # refuses a forged or stale value before a form opens
            view = blocks.veto_modal(
                change_key=f"CHG-{action['value'].split(':')[0]}",
                metadata={"value": action["value"], "channel": channel},
            )
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.view(CallbackId.VETO.value)
    async def handle_veto_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = (modal.read_values(view).get("reason") or "").strip()
        if not reason:
            await ack(response_action="errors", errors={"reason": "A veto needs a reason."})
            return
        await ack()
        user = body["user"]["id"]
        meta = json.loads(view.get("private_metadata") or "{}")
        channel = meta.get("channel", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            change_id, stage, revision = parse_value(meta.get("value", ""))
            async with deps.sessions.begin() as session:
                result = await auto_approval.veto(
                    session, config=deps.config, change_id=change_id, stage=stage, revision=revision,
                    user=user, reason=reason, now=deps.clock.now(),
                )  # fmt: skip
            await reply(result.message)
            if result.row is None:
                return
            change = result.change
            await cards.refresh_card(deps, change.id)
            await thread.say(
                deps,
                change,
                f":octagonal_sign: {mention(user)} vetoed the automatic {stage} approval of {change.key}: "
                f"{escape(reason)}. It needs explicit approval now.",
            )

        await guarded(reply, work)
