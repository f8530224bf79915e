"""Modals: request / edit a change, the approve confirmation and the reject-with-reason form."""

from __future__ import annotations

import json
from typing import Any

from bot.blocks.common import Block, CallbackId, context, escape, mentions, plain, section
from bot.config import Config
from bot.views import ApprovePrompt, ChangeInput
from storage.models import ChangeClass

ACTION = "value"


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False, hint: str = "") -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": {**element, "action_id": ACTION},
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint)
    return block


def _text(
    initial: str | None, *, multiline: bool = False, placeholder: str = "", max_length: int = 3000
) -> dict[str, Any]:
    el: dict[str, Any] = {"type": "plain_text_input", "multiline": multiline, "max_length": max_length}
    if initial:
        el["initial_value"] = initial
    if placeholder:
        el["placeholder"] = plain(placeholder)
    return el


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": plain(label), "value": value}


def change_modal(
    config: Config,
    *,
    initial: ChangeInput | None,
    requester: str,
    systems: list[str],
    metadata: dict[str, Any],
    edit_key: str | None = None,
) -> dict[str, Any]:
    """The request form (or, with ``edit_key``, the edit form prefilled with the change)."""
    chosen = initial.systems if initial else systems
    sys_el: dict[str, Any] = {
        "type": "multi_static_select",
        "placeholder": plain("Pick systems"),
        "options": [_option(s, s) for s in sorted(config.systems)][:100],
    }
    if chosen:
        sys_el["initial_options"] = [_option(s, s) for s in chosen]
    klass = initial.change_class if initial else ChangeClass.NORMAL
    class_el = {
        "type": "static_select",
        "options": [_option(c.value, c.value.capitalize()) for c in ChangeClass],
        "initial_option": _option(klass.value, klass.value.capitalize()),
    }
    officer_el: dict[str, Any] = {
        "type": "users_select",
        "initial_user": initial.officer if initial else requester,
    }
    operator_el: dict[str, Any] = {"type": "users_select"}
    if initial and initial.operator:
        operator_el["initial_user"] = initial.operator

    def date_el(value: Any) -> dict[str, Any]:
        el: dict[str, Any] = {"type": "datepicker"}
        if value:
            el["initial_date"] = value.isoformat()
        return el

    blocks: list[Block] = [
        _input("systems", "System(s)", sys_el),
        _input(
            "title",
            "Title",
            _text(
                initial.title if initial else None,
                max_length=200,
                placeholder="e.g. OpenSSL 3.0.15 security update",
            ),
        ),
        _input(
            "details",
            "Details and purpose",
            _text(initial.details if initial else None, multiline=True),
            optional=True,
            hint="Why this update is needed; for emergencies, the reason.",
        ),
        _input(
            "technical",
            "Brief technical description",
            _text(initial.technical if initial else None, multiline=True),
            optional=True,
        ),
        _input("change_class", "Class", class_el),
        _input("officer", "Update officer", officer_el),
        _input("operator", "Update operator", operator_el, optional=True),
        _input(
            "planned_test",
            "Planned test date",
            date_el(initial.planned_test if initial else None),
            optional=True,
        ),
        _input(
            "planned_prod",
            "Planned production date",
            date_el(initial.planned_prod if initial else None),
            optional=True,
        ),
        _input(
            "expected_downtime",
            "Expected downtime",
            _text(initial.expected_downtime if initial else None, max_length=100, placeholder="e.g. 15 minutes"),
            optional=True,
        ),
        _input(
            "rollback_plan",
            "Rollback plan",
            _text(initial.rollback_plan if initial else None, multiline=True),
            hint="Required: how to undo this change if it breaks (the approvers rely on it).",
        ),
        _input(
            "advisory_ref",
            "Linked advisory",
            _text(initial.advisory_ref if initial else None, max_length=200, placeholder="e.g. CVE-2024-6387"),
            optional=True,
        ),
    ]
    return {
        "type": "modal",
        "callback_id": (CallbackId.EDIT if edit_key else CallbackId.REQUEST).value,
        "title": plain(f"Edit {edit_key}" if edit_key else "Request a change"),
        "submit": plain("Save" if edit_key else "Submit"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": blocks,
    }


def approve_modal(prompt: ApprovePrompt, *, metadata: dict[str, Any]) -> dict[str, Any]:
    """Confirm an approval: what is approved (change, stage, revision) and the votes so far.

    Opened only for a person the policy lets approve; nothing counts until it is submitted."""
    change, stage = prompt.change, prompt.stage
    lines = []
    for r in prompt.progress.requirements:
        who = f" ({mentions(r.approvers)})" if r.approvers else ""
        mine = " · *yours counts here*" if r.requirement.key == prompt.requirement else ""
        icon = ":white_check_mark:" if r.met else ":hourglass:"
        lines.append(f"{icon} {escape(r.requirement.label)}: {len(r.approvers)} of {r.requirement.count}{who}{mine}")
    left = sum(r.remaining for r in prompt.progress.requirements) - 1
    if prompt.completes:
        after = f"Your approval completes the *{stage}* stage."
    else:
        after = f"After yours, {left} more approval{'s' if left != 1 else ''} {'are' if left != 1 else 'is'} needed."
    if prompt.step_up is not None:
        how = (
            "`/patch confirm {key} CODE` with your authenticator"
            if prompt.step_up == "totp"
            else "`/patch confirm {key}`"
        )
        after += (
            f"\n:lock: This stage needs a second factor: Approve reserves your vote, then confirm it with "
            f"{how.format(key=change.key)} within {prompt.step_up_minutes} minutes."
        )
    systems = ", ".join(f"`{escape(s)}`" for s in change.systems)
    return {
        "type": "modal",
        "callback_id": CallbackId.APPROVE.value,
        "title": plain(f"Approve {stage}"),
        "submit": plain("Approve"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": [
            section(
                f"You approve the *{stage}* stage of *{change.key}* · {escape(change.title)}\n"
                f"Revision {change.revision} · {systems}"
            ),
            section("*Approvals so far*\n" + "\n".join(lines) + "\n" + after),
            context(
                f"Bound to revision {change.revision} (content {change.content_hash[:12]}): if the change is edited "
                "before you press Approve, nothing is counted and you are told so."
            ),
        ],
    }


def reject_modal(*, change_key: str, title: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Ask for the mandatory reason of a rejection."""
    return {
        "type": "modal",
        "callback_id": CallbackId.REJECT.value,
        "title": plain("Reject change"),
        "submit": plain("Reject"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"Reject *{change_key}* · {escape(title)}"},
            },
            _input("reason", "Reason (shown in the thread)", _text(None, multiline=True, max_length=2000)),
        ],
    }


def read_metadata(view: dict[str, Any]) -> dict[str, Any]:
    """A modal's ``private_metadata`` as the JSON object we stored; ``{}`` if it is missing or malformed."""
    raw = view.get("private_metadata") or "{}"
    try:
        meta = json.loads(raw) if isinstance(raw, str) and len(raw) <= 3000 else {}
    except (ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


def read_values(view: dict[str, Any]) -> dict[str, Any]:
    """Form values by block id, whatever the element type; empty fields become None."""
    out: dict[str, Any] = {}
    for block_id, actions in view.get("state", {}).get("values", {}).items():
        el = actions.get(ACTION, {})
        kind = el.get("type")
        if kind == "multi_static_select":
            out[block_id] = [o["value"] for o in el.get("selected_options") or []]
        elif kind == "static_select":
            out[block_id] = (el.get("selected_option") or {}).get("value")
        elif kind == "users_select":
            out[block_id] = el.get("selected_user")
        elif kind == "datepicker":
            out[block_id] = el.get("selected_date")
        else:
            out[block_id] = el.get("value")
    return {k: v for k, v in out.items() if v not in (None, "")}
