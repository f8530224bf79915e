"""Blocks of the policy's auto-approval: the card line, the veto-window note and the veto form."""

from __future__ import annotations

import json
from typing import Any

from bot.blocks.common import ActionId, Block, CallbackId, escape, mention, plain, section, slack_date
from bot.views import AutoStatus
from storage.models import Stage


def veto_value(change_id: int, stage: Stage, revision: int) -> str:
    """The Veto button's value: ids only, never state."""
    return f"{change_id}:{stage}:{revision}"


def veto_button(value: str) -> dict[str, Any]:
    """The Veto button (a reason is asked for in a form)."""
    return {
        "type": "button",
        "action_id": ActionId.VETO.value,
        "style": "danger",
        "value": value,
        "text": plain("Veto"),
    }


def card_line(auto: AutoStatus) -> str:
    """One line for the change card."""
    rule = f"_{escape(auto.rule)}_"
    if auto.vetoed_by:
        return (
            f":octagonal_sign: Auto-approval of {auto.stage} *vetoed* by {mention(auto.vetoed_by)}: "
            f"{escape(auto.veto_reason)}. It needs explicit approval now. {rule}"
        )
    if auto.applied:
        return f":robot_face: *Approved by policy* for {auto.stage} {slack_date(auto.at)}; nobody vetoed. {rule}"
    window = ""
    if auto.veto_from < auto.at:
        window = (
            " The veto window is open." if auto.announced else f" The veto window opens {slack_date(auto.veto_from)}."
        )
    return (
        f":robot_face: Approves itself for *{auto.stage}* {slack_date(auto.at)} unless someone vetoes.{window} {rule}"
    )


def card_blocks(auto: AutoStatus | None, *, change_id: int, revision: int) -> list[Block]:
    """The card's auto-approval section, with a Veto button while it can still be stopped."""
    if auto is None:
        return []
    blocks: list[Block] = [section(card_line(auto))]
    if not (auto.vetoed_by or auto.applied):
        elements = [veto_button(veto_value(change_id, auto.stage, revision))]
        blocks.append({"type": "actions", "block_id": f"veto:{change_id}", "elements": elements})
    return blocks


def veto_open_note(auto: AutoStatus, *, change_key: str, value: str, people: str) -> tuple[str, list[Block]]:
    """The thread note when the veto window opens: who may veto, until when, and the button."""
    text = (
        f":robot_face: The veto window is open: {change_key} approves itself for *{auto.stage}* "
        f"{slack_date(auto.at)} by policy (_{escape(auto.rule)}_). {people}: press *Veto* before then "
        "if it must wait for explicit approval."
    )
    return text, [section(text), {"type": "actions", "elements": [veto_button(value)]}]


def veto_modal(*, change_key: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Ask for the mandatory reason of a veto."""
    return {
        "type": "modal",
        "callback_id": CallbackId.VETO.value,
        "title": plain("Veto auto-approval"),
        "submit": plain("Veto"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": [
            section(f"Stop the automatic approval of *{change_key}*; it will need explicit approval."),
            {
                "type": "input",
                "block_id": "reason",
                "label": plain("Reason (shown in the thread)"),
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 2000},
            },
        ],
    }
