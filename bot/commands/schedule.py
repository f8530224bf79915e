"""``/patch schedule`` and ``/patch unschedule``, and the buttons that book a proposed slot."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.blocks import schedule as schedule_blocks
from bot.blocks.announcement import when_text
from bot.blocks.schedule import BookMode, ScheduleAction
from bot.commands.replies import guarded
from bot.commands.router import CommandContext, Router, out_of_date, usage_error
from bot.deps import Deps
from bot.views import Stage
from bot.windows import Slot, SlotRefusedError, format_slot
from bot.workflows import cards, lifecycle, scheduling

Respond = Callable[..., Awaitable[Any]]
_BOOK_BUTTON = re.compile(rf"^{ScheduleAction.BOOK.value}_\d+$")


def parse_value(value: str) -> tuple[int, Stage, Slot, BookMode]:
    """Button value ``<change id>:<stage>:<start>:<end>:<mode>`` (see ``blocks.schedule.slot_value``)."""
    try:
        change_id, stage, start, end, mode = value.split(":")
        slot = Slot(datetime.fromtimestamp(int(start), UTC), datetime.fromtimestamp(int(end), UTC))
        return int(change_id), Stage(stage), slot, BookMode(mode)
    except ValueError as exc:
        raise out_of_date(value) from exc


async def book_and_answer(
    deps: Deps,
    respond: Respond,
    *,
    user: str,
    change_id: int,
    stage: Stage,
    slot: Slot | str,
    emergency_reason: str | None = None,
    only: BookMode | None = None,
) -> None:
    """Book; answer with the booking, or with the refused rule and a button for the nearest valid slot."""
    try:
        async with deps.sessions.begin() as session:
            result = await scheduling.book(
                session,
                config=deps.config,
                change_id=change_id,
                stage=stage,
                slot=slot,
                user=user,
                now=deps.clock.now(),
                emergency_reason=emergency_reason,
                only=only,
            )
    except SlotRefusedError as exc:
        async with deps.sessions.begin() as session:
            change = await lifecycle.load(session, change_id)
        mode = scheduling.offer_mode(change, stage)
        blocks = schedule_blocks.refusal(
            change,
            stage=stage,
            message=exc.user_message,
            suggestion=exc.suggestion,
            timezone=scheduling.timezone_of(deps.config, change),
            mode=mode,
        )
        await respond(text=f":no_entry: {exc.user_message}", blocks=blocks, response_type="ephemeral")
        return
    await cards.refresh_card(deps, change_id)
    window = result.window
    # the same <!date> rendering as the card (each reader's local time), then the system's own clock
    local = format_slot(Slot(window.start, window.end), result.timezone)
    when = f"{when_text(window.start, window.end, result.timezone)} · on the system's clock {local}"
    verb = "moved to" if result.previous is not None else "booked for"
    n = result.announced
    told = f"; users are told in {n} channel{'s' if n != 1 else ''}" if n else ""
    await respond(
        text=f"The {stage} window of {result.change.key} is {verb} {when}{told}.",
        response_type="ephemeral",
        replace_original=only is not None,
    )


def register(app: AsyncApp, deps: Deps, router: Router) -> None:
    """Register the scheduling subcommands and the slot buttons."""
    config = deps.config

    @router.add(
        "schedule",
        usage="/patch schedule CHG-n test|prod [YYYY-MM-DD HH:MM [2h]] [--emergency REASON]",
        summary="book or move a maintenance window (without a time: proposes free ones)",
    )
    async def handle_schedule_command(ctx: CommandContext) -> None:
        sub = router.subcommands["schedule"]
        head, flag, reason = ctx.rest.partition("--emergency")
        tokens = head.split()
        if len(tokens) < 2:
            raise usage_error(sub, "Name the change and the stage.")
        change_id, stage = lifecycle.parse_key(tokens[0]), lifecycle.parse_stage(tokens[1])
        typed = " ".join(tokens[2:])
        if flag and not typed:
            raise usage_error(sub, "An emergency booking names its start time.")
        if flag and not reason.strip():
            raise usage_error(sub, "An emergency booking needs a reason after `--emergency`.")
        if typed:
            await book_and_answer(
                deps,
                ctx.respond,
                user=ctx.user,
                change_id=change_id,
                stage=stage,
                slot=typed,
                emergency_reason=reason.strip() if flag else None,
            )
            return
        async with deps.sessions.begin() as session:
            proposal = await scheduling.propose(
                session, config=config, change_id=change_id, stage=stage, user=ctx.user, now=deps.clock.now()
            )
        blocks = schedule_blocks.proposals(
            proposal.change,
            stage=stage,
            slots=proposal.slots,
            timezone=proposal.timezone,
            notice=proposal.notice,
            mode=proposal.mode,
        )
        await ctx.respond(
            text=f"Free {stage} windows for {proposal.change.key}", blocks=blocks, response_type="ephemeral"
        )

    @router.add(
        "unschedule",
        usage="/patch unschedule CHG-n test|prod REASON",
        summary="cancel a booked maintenance window, with a reason",
    )
    async def handle_unschedule_command(ctx: CommandContext) -> None:
        parts = ctx.rest.split(None, 2)
        if len(parts) < 3:
            raise usage_error(router.subcommands["unschedule"], "Name the change, the stage and a reason.")
        change_id, stage = lifecycle.parse_key(parts[0]), lifecycle.parse_stage(parts[1])
        async with deps.sessions.begin() as session:
            window = await scheduling.unschedule(
                session,
                config=config,
                change_id=change_id,
                stage=stage,
                user=ctx.user,
                reason=parts[2],
                now=deps.clock.now(),
            )
        await cards.refresh_card(deps, change_id)
        await ctx.respond(
            text=f"The {stage} window of CHG-{change_id} is cancelled (window {window.id}); its users will be told.",
            response_type="ephemeral",
        )

    @app.action(_BOOK_BUTTON)
    async def handle_schedule_click(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = body["user"]["id"]

        async def reply(text: str) -> None:
            await respond(text=text, response_type="ephemeral", replace_original=False)

        async def work() -> None:
            change_id, stage, slot, mode = parse_value(action["value"])
            await book_and_answer(deps, respond, user=user, change_id=change_id, stage=stage, slot=slot, only=mode)

        await guarded(reply, work)
