"""Helpers shared by every surface: escaping, mentions, dates, limits."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from bot.text import strip_invisible

Block = dict[str, Any]

MAX_MESSAGE_BLOCKS = 50
MAX_SECTION_TEXT = 3000


class ActionId(StrEnum):
    APPROVE = "change_approve"
    REJECT = "change_reject"
    VETO = "auto_approval_veto"
    NUDGE = "change_nudge"


class CallbackId(StrEnum):
    REQUEST = "change_request"
    EDIT = "change_edit"
    REJECT = "change_reject_reason"
    VETO = "auto_approval_veto_reason"


def escape(text: str) -> str:
    """Make user or feed text inert in Slack mrkdwn (blocks and the top-level ``text`` alike).

    ``&``, ``<`` and ``>`` become entities, so no ``<!channel>``, ``<@U…>``, ``<!subteam^…>`` or
    ``<url|label>`` sneaks in; bidi-override and zero-width characters are removed.
    """
    return strip_invisible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_url(url: str) -> str | None:
    """``url`` fit for a ``<url|label>`` link: http(s) only, with ``<``, ``>``, ``|`` and spaces percent-encoded.

    Returns None for anything else (``javascript:``, ``mailto:``, relative or unparsable URLs).
    """
    url = strip_invisible(url).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~-._")


def link(url: str, label: str) -> str:
    """A mrkdwn link with an escaped label, or the escaped label alone when ``url`` is not a safe http(s) URL."""
    target = safe_url(url)
    label = escape(label).replace("|", "¦")
    return f"<{target}|{label}>" if target else label


def clip(text: str, limit: int) -> str:
    """Shorten ``text`` to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def mention(user: str | None) -> str:
    """``<@U123>`` for a Slack user id (ids are validated before they get here); ``—`` for none."""
    return f"<@{user}>" if user else "—"


def mentions(users: Any) -> str:
    """Comma-separated mentions."""
    return ", ".join(mention(u) for u in users) or "nobody"


def slack_date(when: datetime, *, fmt: str = "{date_short_pretty} {time}", tz: str = "UTC") -> str:
    """Slack date formatting (each reader sees local time) with the given zone as fallback text."""
    local = when.astimezone(ZoneInfo(tz))
    fallback = local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or tz)
    return f"<!date^{int(when.timestamp())}^{fmt}|{fallback}>"


def plain(text: str) -> dict[str, Any]:
    """A plain_text object."""
    return {"type": "plain_text", "text": text, "emoji": True}


def section(text: str) -> Block:
    """A mrkdwn section (text clipped to Slack's limit)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def context(text: str) -> Block:
    """A context line."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}]}


def validate_blocks(blocks: list[Block], *, surface: str = "message") -> None:
    """Check blocks with slack_sdk's models (the same limits Slack enforces). Raises on violation."""
    from slack_sdk.models.blocks import Block as SdkBlock

    limit = MAX_MESSAGE_BLOCKS if surface == "message" else 100
    if len(blocks) > limit:
        raise ValueError(f"{len(blocks)} blocks exceed the {surface} limit of {limit}")
    for raw in blocks:
        parsed = SdkBlock.parse(raw)
        if parsed is None:
            raise ValueError(f"unknown block {raw!r}")
        parsed.to_dict()
