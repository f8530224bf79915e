"""The audit channel: signed control-log heads posted as messages with metadata, and read back to verify."""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

EVENT_TYPE = "patchwarden_audit_head"
PAGE = 200
MAX_PAGES = 50


async def post_head(client: AsyncWebClient, *, channel: str, head: dict[str, Any]) -> str:
    """Post one signed head; its fields travel as message metadata so ``audit verify --against channel`` can read it."""
    text = (
        f"Control-log checkpoint: entry {head['seq']} hash `{head['hash']}` signed by key `{head['key_id']}` "
        f"at {head['signed_at']} (signature `{head['signature']}`). Keep this message: it proves the log's length."
    )
    resp = await client.chat_postMessage(
        channel=channel, text=text, metadata={"event_type": EVENT_TYPE, "event_payload": head}, unfurl_links=False
    )
    return str(resp["ts"])


async def read_heads(client: AsyncWebClient, *, channel: str) -> list[dict[str, Any]]:
    """Every signed head posted in ``channel`` (oldest first), from the messages' metadata."""
    heads: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        resp = await client.conversations_history(channel=channel, limit=PAGE, include_all_metadata=True, cursor=cursor)
        messages: list[dict[str, Any]] = resp.get("messages", [])
        for message in messages:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == EVENT_TYPE and isinstance(meta.get("event_payload"), dict):
                heads.append(dict(meta["event_payload"]))
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return list(reversed(heads))
