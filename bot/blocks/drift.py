"""The owner's note about an unrecorded change (drift) on a system, with its Link-to-a-change button."""

from __future__ import annotations

from bot.blocks.common import Block, escape, mention, section

DRIFT_ACTION = "drift_link"
SHOWN = 20  # package lines in the note; the rest are counted, never dropped silently


def drift_blocks(system: str, lines: list[str], *, owner: str) -> list[Block]:
    """The owner's note: what changed, and the Link-to-a-change button (value: the system)."""
    text = (
        f":mag: {mention(owner)} *Unrecorded change on `{escape(system)}`*: package versions changed without a "
        f"completed change:\n"
        + "\n".join(f"• {escape(line)}" for line in lines[:SHOWN])
        + (f"\n…and {len(lines) - SHOWN} more changed packages" if len(lines) > SHOWN else "")
    )
    return [
        section(text),
        {
            "type": "actions",
            "block_id": f"drift:{system}",
            "elements": [
                {
                    "type": "button",
                    "action_id": DRIFT_ACTION,
                    "value": system,
                    "text": {"type": "plain_text", "text": "Link to a change"},
                }
            ],
        },
    ]
