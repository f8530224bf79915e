"""The sandbox's welcome post: what to try first and as whom, where the advisories are, and Reset.

Posted into the fake Slack's ``#ops`` by the sandbox itself (not by the bot), so its Reset button is
handled by the page (``RESET_ACTION``), never sent to the bot's endpoint.
"""

from __future__ import annotations

from typing import Any

from bot.config import Config
from bot.sandbox import demo

RESET_ACTION = "sandbox_reset"


def welcome_blocks(config: Config, *, advisories: int) -> tuple[str, list[dict[str, Any]]]:
    """The welcome message's fallback text and blocks for ``config`` (the demo's names where they fit)."""
    names = {p.id: p.name for p in demo.people_of(config)}

    def who(user: str) -> str:
        return f"*{names.get(user, user)}*"

    steps = [
        f"1. As {who(demo.DANA)} (requester), type `/patch request web-shop` here and submit the form.",
        f"2. As {who(demo.ALICE)} (owner of web-shop), press *Approve* on the card in <#{demo.APPROVALS}>.",
        f"3. As {who(demo.OLGA)} (operator), type `/patch schedule CHG-1 test` and book a proposed window.",
        "4. Press *Jump to the next window* in the sidebar: the window opens and the dry-run deploys.",
        f"5. As {who(demo.ALICE)}, record the test result in the change's thread and acknowledge it; then "
        f"{who(demo.ALICE)} and {who(demo.SAM)} (security) approve production, {who(demo.OLGA)} books it, "
        f"and the next jump completes it. {who(demo.DANA)} reads the announcements in <#{demo.SHOP_USERS}>.",
    ]
    posted = (
        f"{advisories} advisories that hit the demo systems are already posted in <#{demo.ADVISORIES}> "
        "(some past their SLA): *Create change request* on one starts a change linked to it."
        if advisories
        else "No advisories are posted yet."
    )
    notice = config.policy.announce_notice
    text = (
        ":wave: *Welcome to the patchwarden sandbox.* Switch people in the sidebar (*Acting as*); "
        "every click is a signed request to the real bot."
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Try first:*\n" + "\n".join(steps)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": posted}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"The demo policy is shortened: `announce_notice: {duration(notice)}` (production "
                    "policies announce at least 24 h ahead), so a window can be booked for tonight.",
                }
            ],
        },
        {
            "type": "actions",
            "block_id": "sandbox",
            "elements": [
                {
                    "type": "button",
                    "action_id": RESET_ACTION,
                    "text": {"type": "plain_text", "text": "Reset"},
                    "style": "danger",
                    "value": "reset",
                    "confirm": {
                        "title": {"type": "plain_text", "text": "Start over?"},
                        "text": {"type": "mrkdwn", "text": "Every change, message and skip is forgotten."},
                        "confirm": {"type": "plain_text", "text": "Reset"},
                        "deny": {"type": "plain_text", "text": "Keep"},
                    },
                }
            ],
        },
    ]
    return "Welcome to the patchwarden sandbox: what to try first, and Reset.", blocks


def duration(value: Any) -> str:
    """A duration as the configuration writes it (`1h`, `30m`, `1h30m`)."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h" + (f"{rest // 60}m" if rest else "") if hours else f"{rest // 60}m"
