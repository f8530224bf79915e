"""``/patch advisories``, ``/patch advisory add``, ``/patch artifact add`` and the advisory post's controls."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import advisory as blocks
from bot.blocks import modal
from bot.blocks.common import escape
from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router, usage_error
from bot.deps import Deps
from bot.errors import InputError, UsageError
from bot.slack import notify, thread
from bot.workflows import advisory_posts, artifacts, cards, lifecycle
from bot.workflows import advisory_triage as triage


def _advisory_id(value: str | None) -> int:
    try:
        return int(str(value).split(":", 1)[0])
    except ValueError as exc:
        raise UsageError(f"bad advisory value {value!r}", user_message="This control is out of date.") from exc


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the advisory subcommands, the post's buttons and the modals."""
    config = deps.config

    @router.add("advisories", usage="/patch advisories [open|overdue|SYSTEM] [PAGE]", summary="list advisories")
    async def handle_advisories_command(ctx: CommandContext) -> None:
        args = list(ctx.args)
        page = int(args.pop()) if args and args[-1].isdigit() else 1
        if len(args) > 1 or page < 1:
            raise usage_error(router.subcommands["advisories"], "Give one scope and a page number at most.")
        scope = args[0] if args else "open"
        async with deps.sessions.begin() as session:
            views, total = await triage.listing(session, config=config, scope=scope, now=deps.clock.now(), page=page)
        text = blocks.listing_text(config, views, scope=scope, page=page, total=total, per_page=triage.PAGE)
        await ctx.respond(text=text, response_type="ephemeral")

    @router.add("advisory", usage="/patch advisory add", summary="add an advisory by hand (opens a form)")
    async def handle_advisory_command(ctx: CommandContext) -> None:
        if ctx.args[:1] != ("add",) or len(ctx.args) != 1:
            raise usage_error(router.subcommands["advisory"], "Only `add` is supported.")
        view = blocks.manual_modal(metadata={"channel": ctx.channel})
        await notify.open_modal(deps, trigger_id=ctx.trigger_id, view=view)

    @router.add(
        "artifact",
        usage="/patch artifact add CHG-n URL sha256=HEX [sig=URL signer=TRUSTNAME] | remove CHG-n URL",
        summary="attach (or remove) a patch artifact; it is approved with the change and verified before use",
    )
    async def handle_artifact_command(ctx: CommandContext) -> None:
        adding = ctx.args[:1] == ("add",) and len(ctx.args) >= 4
        if not adding and not (ctx.args[:1] == ("remove",) and len(ctx.args) == 3):
            raise usage_error(router.subcommands["artifact"], "Name the change, the URL and its hash.")
        change_id = lifecycle.parse_key(ctx.args[1])
        async with deps.sessions.begin() as session:
            if adding:
                options = dict(arg.split("=", 1) for arg in ctx.args[3:] if "=" in arg)
                row, change, stale = await artifacts.attach(
                    session, config=config, change_id=change_id, url=ctx.args[2], options=options,
                    actor=ctx.user, now=deps.clock.now(),
                )  # fmt: skip
                signed = f", signature by `{escape(row.signer)}`" if row.signer else ""
                what = f"attached artifact `{escape(row.url)}`{signed}. It is verified before every deployment"
            else:
                change, stale = await artifacts.remove(
                    session, config=config, change_id=change_id, url=ctx.args[2], actor=ctx.user, now=deps.clock.now()
                )
                what = f"removed artifact `{escape(ctx.args[2])}`"
        snap = await cards.refresh_card(deps, change.id)
        pending = sorted(snap.progress.pending_people()) if snap and snap.progress else []
        again = f" {stale} earlier approval(s) no longer count." if stale else ""
        await thread.say(
            deps, change, f":package: <@{ctx.user}> {what} (revision {change.revision}).{again}\n"
            f"Please review and approve again: {' '.join(f'<@{p}>' for p in pending)}",
        )  # fmt: skip
        await ctx.respond(text=f"Artifacts of {change.key} updated.", response_type="ephemeral")

    @app.action(blocks.AdvisoryAction.CREATE_CHANGE.value)
    async def handle_advisory_change_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def work() -> None:
            advisory_id = _advisory_id(action.get("value"))
            async with deps.sessions.begin() as session:
                v = await triage.view(session, advisory_id, config=deps.config)
            view = modal.change_modal(
                config,
                initial=triage.change_prefill(config, v, requester=user),
                requester=user,
                systems=[],
                metadata={"channel": channel, "advisory_id": advisory_id},
            )
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.action(blocks.AdvisoryAction.NOT_APPLICABLE.value)
    async def handle_advisory_na_click(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def work() -> None:
            advisory_id = _advisory_id(action.get("value"))
            async with deps.sessions.begin() as session:
                v = await triage.view(session, advisory_id, config=deps.config)
            triage.require_triage(config, v, user)
            view = blocks.not_applicable_modal(v, metadata={"advisory_id": advisory_id, "channel": channel})
            await notify.open_modal(deps, trigger_id=body["trigger_id"], view=view)

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.view(blocks.AdvisoryCallback.NOT_APPLICABLE.value)
    async def handle_advisory_na_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = (modal.read_values(view).get("reason") or "").strip()
        if not reason:
            await ack(response_action="errors", errors={"reason": "Say why it does not apply."})
            return
        await ack()
        user = body["user"]["id"]
        meta = modal.read_metadata(view)
        channel = meta.get("channel", "")

        async def work() -> None:
            advisory_id = _advisory_id(meta.get("advisory_id"))
            async with deps.sessions.begin() as session:
                v = await triage.not_applicable(
                    session, config=config, advisory_id=advisory_id, actor=user, reason=reason, now=deps.clock.now()
                )
            await advisory_posts.publish(
                deps, advisory_id, notes=(f"marked not applicable by <@{user}>: {escape(reason)}",)
            )
            await notify.ephemeral(
                deps, channel=channel, user=user, text=f"{v.record.primary_id} is marked not applicable."
            )

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.action(blocks.AdvisoryAction.SNOOZE.value)
    async def handle_advisory_snooze_select(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body.get("channel", {}).get("id", "")

        async def work() -> None:
            value = str((action.get("selected_option") or {}).get("value", ""))
            advisory_id, _, choice = value.partition(":")
            async with deps.sessions.begin() as session:
                v = await triage.snooze(
                    session,
                    config=config,
                    advisory_id=_advisory_id(advisory_id),
                    actor=user,
                    choice=choice,
                    now=deps.clock.now(),
                )
            await advisory_posts.publish(deps, v.record.id, notes=(f"snoozed for {choice} by <@{user}>",))

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)

    @app.view(blocks.AdvisoryCallback.MANUAL.value)
    async def handle_advisory_manual_submission(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        now = deps.clock.now()
        try:
            advisory = triage.manual_advisory(modal.read_values(view), now=now)
        except InputError as exc:
            await ack(response_action="errors", errors=exc.field_errors)
            return
        await ack()
        channel = modal.read_metadata(view).get("channel", "")

        async def work() -> None:
            await advisory_posts.add_manual(deps, advisory=advisory, actor=user)
            await notify.ephemeral(deps, channel=channel, user=user, text=f"Advisory {advisory.id} is recorded.")

        await guarded(lambda text: notify.ephemeral(deps, channel=channel, user=user, text=text), work)
