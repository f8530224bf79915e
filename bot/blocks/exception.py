"""Block Kit of an exception card: what is excepted, why, until when, who approved, the Approve button."""

from __future__ import annotations

from enum import StrEnum

from bot.blocks.common import Block, context, escape, mention, mentions, plain, section, slack_date
from storage.models import AdvisoryException, AdvisoryRecord, ExceptionKind, ExceptionState


class ExceptionActionId(StrEnum):
    APPROVE = "exception_approve"
    REQUEST = "exception_request"  # the advisory post's button


STATE_LABELS = {
    ExceptionState.PENDING: ":hourglass: Waiting for approval",
    ExceptionState.APPROVED: ":white_check_mark: Approved",
    ExceptionState.REJECTED: ":no_entry: Rejected",
    ExceptionState.EXPIRED: ":alarm_clock: Expired (the advisory is open again)",
    ExceptionState.RENEWED: ":repeat: Superseded by its renewal",
}


def summary(row: AdvisoryException, record: AdvisoryRecord) -> str:
    """One line: ``Exception #3: GHSA-… on `web-shop`: risk accepted until …``."""
    what = "risk accepted" if row.kind is ExceptionKind.ACCEPT else f"not affected ({escape(row.justification or '')})"
    return (
        f"Exception #{row.id}: {escape(record.primary_id)} on `{escape(row.system)}`: {what} "
        f"until {slack_date(row.until)}"
    )


def card(row: AdvisoryException, record: AdvisoryRecord, *, pending: list[str]) -> list[Block]:
    """The exception's card in the approvals channel."""
    approvers = ", ".join(mention(a["user"]) for a in row.approvals) or "nobody yet"
    blocks: list[Block] = [
        section(f"*{summary(row, record)}*\n{STATE_LABELS[row.state]}"),
        section(f"*Reason:* {escape(row.reason)}"),
        context(f"Requested by {mention(row.requested_by)} · approved by {approvers} · renewals: {row.renewals}"),
    ]
    if row.state is ExceptionState.PENDING:
        blocks.append(context(f"Waiting for: {mentions(pending) or 'nobody eligible is left'}"))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"exception:{row.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ExceptionActionId.APPROVE.value,
                        "value": str(row.id),
                        "style": "primary",
                        "text": plain("Approve exception"),
                    }
                ],
            }
        )
    return blocks


class ExceptionCallback(StrEnum):
    REQUEST = "exception_request_form"


JUSTIFICATION_OPTIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)


def _select(block_id: str, label: str, options: list[tuple[str, str]], *, optional: bool = False) -> Block:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": plain(label),
        "element": {
            "type": "static_select",
            "action_id": "value",
            "options": [{"text": plain(text), "value": value} for value, text in options],
        },
    }


def request_modal(*, advisory: str, systems: list[str], metadata: str) -> dict[str, object]:
    """The exception form opened from an advisory post's "Request exception" button."""
    return {
        "type": "modal",
        "callback_id": ExceptionCallback.REQUEST.value,
        "private_metadata": metadata,
        "title": plain("Request an exception"),
        "submit": plain("Request"),
        "blocks": [
            section(f"*{escape(advisory)}*: an exception is approved by the owner and security, and expires."),
            _select("system", "System", [(s, s) for s in systems]),
            _select(
                "kind", "Decision", [("accept", "Accept the risk until the date"), ("not-affected", "Not affected")]
            ),
            _select(
                "justification",
                "Why not affected (OpenVEX)",
                [(j, j.replace("_", " ")) for j in JUSTIFICATION_OPTIONS],
                optional=True,
            ),
            {
                "type": "input",
                "block_id": "until",
                "label": plain("Until"),
                "element": {"type": "datepicker", "action_id": "value"},
            },
            {
                "type": "input",
                "block_id": "reason",
                "label": plain("Reason"),
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
            },
        ],
    }
