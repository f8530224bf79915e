"""The documentation confirmation after a completed change: the thread's button and the optional-link modal."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from bot.blocks.common import Block, escape, plain, section
from bot.blocks.modal import ACTION


class DocsAction(StrEnum):
    CONFIRM = "docs_confirm"


class DocsCallback(StrEnum):
    CONFIRM = "docs_confirm_link"


def request_blocks(*, change_id: int, text: str) -> list[Block]:
    """The request in the thread, with the Documentation revised button (value: the change id only)."""
    return [
        section(text),
        {
            "type": "actions",
            "block_id": f"docs:{change_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": DocsAction.CONFIRM.value,
                    "style": "primary",
                    "value": str(change_id),
                    "text": plain("Documentation revised"),
                }
            ],
        },
    ]


def confirm_modal(*, change_id: int, change_key: str, title: str, channel: str) -> dict[str, Any]:
    """Confirm that the documentation was revised, with an optional link to the revised page."""
    return {
        "type": "modal",
        "callback_id": DocsCallback.CONFIRM.value,
        "title": plain("Documentation revised"),
        "submit": plain("Confirm"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps({"change_id": change_id, "channel": channel}),
        "blocks": [
            section(f"The technical documentation of *{change_key}* · {escape(title)} was revised."),
            {
                "type": "input",
                "block_id": "link",
                "optional": True,
                "label": plain("Link to the revised page (optional)"),
                "element": {"type": "url_text_input", "action_id": ACTION},
            },
        ],
    }
