"""The test stage in the thread: Passed / Problems found, the risk decision and the acknowledgement."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from bot.blocks.common import Block, escape, mentions, plain, section

CRITICALITIES = ("low", "medium", "high", "critical")
DECISIONS = ("proceed", "stop")


class TestActionId(StrEnum):
    PASSED = "test_passed"
    PROBLEMS = "test_problems"
    RISK = "test_risk_decision"
    ACKNOWLEDGE = "test_acknowledge"


class TestCallbackId(StrEnum):
    PROBLEMS = "test_problems_form"
    RISK = "test_risk_form"


def _button(action: TestActionId, text: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    el: dict[str, Any] = {"type": "button", "action_id": action.value, "value": value, "text": plain(text)}
    if style:
        el["style"] = style
    return el


def _actions(change_id: int, kind: str, *elements: dict[str, Any]) -> Block:
    return {"type": "actions", "block_id": f"{kind}:{change_id}", "elements": list(elements)}


def result_prompt(*, change_id: int, change_key: str, owners: Sequence[str]) -> list[Block]:
    """After the test deployment: the owner records Passed or Problems found."""
    value = str(change_id)
    return [
        section(
            f":test_tube: {mentions(sorted(owners))}: {change_key} is deployed to test. Try it, then record the result."
        ),
        _actions(
            change_id,
            "test_result",
            _button(TestActionId.PASSED, "Passed", value, style="primary"),
            _button(TestActionId.PROBLEMS, "Problems found", value, style="danger"),
        ),
    ]


def risk_prompt(*, change_id: int, change_key: str, owners: Sequence[str], security: str) -> list[Block]:
    """Problems were found: the owner and a member of the security group each record a risk decision."""
    return [
        section(
            f":scales: {change_key} has test problems. {mentions(sorted(owners))} and a member of the "
            f"{escape(security)} group: record your risk decision (proceed or stop, with reasoning)."
        ),
        _actions(change_id, "risk", _button(TestActionId.RISK, "Record risk decision", str(change_id))),
    ]


def acknowledge_prompt(*, change_id: int, change_key: str, owners: Sequence[str], conclusion: str) -> list[Block]:
    """The owner acknowledges the test conclusion; production approval starts then."""
    return [
        section(
            f":memo: {change_key} test conclusion: *{escape(conclusion)}*. {mentions(sorted(owners))}: "
            "acknowledge it to start production approval."
        ),
        _actions(
            change_id,
            "ack",
            _button(TestActionId.ACKNOWLEDGE, "Acknowledge test result", str(change_id), style="primary"),
        ),
    ]


def _option(value: str) -> dict[str, Any]:
    return {"text": plain(value.capitalize()), "value": value}


def _modal(callback: TestCallbackId, title: str, blocks: list[Block], metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback.value,
        "title": plain(title),
        "submit": plain("Record"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": blocks,
    }


def _select(block_id: str, label: str, options: Sequence[str]) -> Block:
    return {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": {"type": "static_select", "action_id": "value", "options": [_option(o) for o in options]},
    }


def _textarea(block_id: str, label: str) -> Block:
    return {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 3000},
    }


def problems_modal(*, change_key: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Criticality and description of the problems found in test (both required)."""
    return _modal(
        TestCallbackId.PROBLEMS,
        "Test problems",
        [
            section(f"Problems found while testing *{change_key}*."),
            _select("criticality", "Criticality", CRITICALITIES),
            _textarea("description", "What went wrong"),
        ],
        metadata,
    )


def risk_modal(*, change_key: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Proceed or stop, with reasoning (both required)."""
    return _modal(
        TestCallbackId.RISK,
        "Risk decision",
        [
            section(f"Should *{change_key}* proceed to production despite the test problems?"),
            _select("decision", "Decision", DECISIONS),
            _textarea("reasoning", "Reasoning"),
        ],
        metadata,
    )


def read_values(view: dict[str, Any]) -> dict[str, str]:
    """Submitted values by block id (selects give their value, text inputs their text)."""
    out: dict[str, str] = {}
    for block_id, actions in view.get("state", {}).get("values", {}).items():
        for el in actions.values():
            if el.get("type") == "static_select":
                out[block_id] = (el.get("selected_option") or {}).get("value") or ""
            else:
                out[block_id] = el.get("value") or ""
    return out


def problems_only(change_id: int) -> Block:
    """The test-result actions with only the "Problems found" button (after a failed test deployment)."""
    return {
        "type": "actions",
        "block_id": f"test_result:{change_id}",
        "elements": [
            {
                "type": "button",
                "action_id": TestActionId.PROBLEMS.value,
                "value": str(change_id),
                "style": "danger",
                "text": {"type": "plain_text", "text": "Problems found"},
            }
        ],
    }
