"""``/patch exception ADVISORY SYSTEM accept|not-affected [JUSTIFICATION] --until DATE REASON``, its card's
Approve button, and the exception sweep (reminders before the end, expiry)."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import exception as blocks
from bot.blocks.common import mention, mentions
from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.errors import InputError, UsageError
from bot.slack import notify, thread
from bot.workflows import exceptions as flow
from bot.workflows.exceptions import AdvisoryException, AdvisoryRecord, ExceptionKind

log = logging.getLogger(__name__)
USAGE = "/patch exception ADVISORY SYSTEM accept|not-affected [JUSTIFICATION] --until YYYY-MM-DD REASON"
KINDS = {"accept": ExceptionKind.ACCEPT, "not-affected": ExceptionKind.NOT_AFFECTED}


def parse(rest: str) -> tuple[str, str, ExceptionKind, str | None, str, str]:
    """→ (advisory, system, kind, justification, until text, reason). Raises UsageError."""
    head, sep, tail = rest.partition("--until")
    words = head.split()
    if not sep or len(words) not in (3, 4) or words[2].lower() not in KINDS:
        raise UsageError("bad exception", user_message=f"Usage: `{USAGE}`")
    kind = KINDS[words[2].lower()]
    justification = words[3] if len(words) == 4 else None
    until, _, reason = tail.strip().partition(" ")
    return words[0], words[1], kind, justification, until, reason.strip()


async def _post_or_update(deps: Deps, row: AdvisoryException, record: AdvisoryRecord) -> None:
    pending = sorted(flow.progress(deps.config, row).pending_people())
    content = blocks.card(row, record, pending=pending)
    text = blocks.summary(row, record)
    if row.message_ts and row.channel:
        await notify.update_message(deps, channel=row.channel, ts=row.message_ts, text=text, blocks=content)
        return
    channel = deps.config.slack.approvals_channel
    ts = await notify.post_message(deps, channel=channel, text=text, blocks=content)
    async with deps.sessions.begin() as session:
        await flow.set_message(session, exception_id=row.id, channel=channel, ts=ts)
    await thread.deliver(
        deps, channel=channel, thread_ts=ts, text=f"Approval needed for this exception: {mentions(pending)}",
        what=f"exception {row.id} approvers",
    )  # fmt: skip


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register /patch exception and the Approve button."""
    config = deps.config

    @router.add("exception", usage=USAGE, summary="ask to accept a risk or state not-affected until a date")
    async def handle_exception_command(ctx: CommandContext) -> None:
        try:
            advisory, system, kind, justification, until_text, reason = parse(ctx.rest)
        except UsageError as exc:
            raise usage_error(router.subcommands["exception"], exc.user_message) from exc
        now = deps.clock.now()
        async with deps.sessions.begin() as session:
            try:
                until = flow.parse_until(until_text, now=now)
            except InputError as exc:
                raise usage_error(router.subcommands["exception"], exc.user_message) from exc
            row, record = await flow.request(
                session, config=config, advisory=advisory, system=system, kind=kind, until=until, reason=reason,
                justification=justification, user=ctx.user, now=now,
            )  # fmt: skip
        await _post_or_update(deps, row, record)
        await ctx.respond(text=f"Exception #{row.id} is waiting for approval.", response_type="ephemeral")

    @app.action(blocks.ExceptionActionId.APPROVE.value)
    async def handle_exception_approve_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            async with deps.sessions.begin() as session:
                row, record, done = await flow.approve(
                    session, config=config, exception_id=int(action["value"]), user=user, now=deps.clock.now()
                )
            await _post_or_update(deps, row, record)
            if done and row.channel and row.message_ts:
                await thread.deliver(
                    deps, channel=row.channel, thread_ts=row.message_ts,
                    text=f":white_check_mark: {mention(user)} completed the approval: {blocks.summary(row, record)}.",
                    what=f"exception {row.id} approved",
                )  # fmt: skip

        await guarded(reply, work)

    @app.action(blocks.ExceptionActionId.REQUEST.value)
    async def handle_exception_request_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def reply(text: str) -> None:
            await notify.ephemeral(deps, channel=channel, user=user, text=text)

        async def work() -> None:
            async with deps.sessions.begin() as session:
                advisory, systems = await flow.subject(session, config=config, advisory_id=int(action["value"]))
            meta = json.dumps({"advisory": advisory, "channel": channel})
            view = blocks.request_modal(advisory=advisory, systems=systems, metadata=meta)
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(reply, work)

    @app.view(blocks.ExceptionCallback.REQUEST.value)
    async def handle_exception_request_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = json.loads(view.get("private_metadata") or "{}")
        values = {k: next(iter(v.values())) for k, v in view["state"]["values"].items()}
        picked = {k: (v.get("selected_option") or {}).get("value") or v.get("selected_date") or v.get("value")
                  for k, v in values.items()}  # fmt: skip
        user, now = body["user"]["id"], deps.clock.now()
        try:
            until = flow.parse_until(str(picked.get("until") or ""), now=now)
            kind = KINDS[str(picked.get("kind"))]
            async with deps.sessions.begin() as session:
                row, record = await flow.request(
                    session, config=config, advisory=meta["advisory"], system=str(picked.get("system")),
                    kind=kind, until=until, reason=str(picked.get("reason") or ""),
                    justification=picked.get("justification"), user=user, now=now,
                )  # fmt: skip
        except InputError as exc:
            await ack(response_action="errors", errors={"reason": exc.user_message})
            return
        await ack()
        await _post_or_update(deps, row, record)
