"""What the fake Slack records: calls and messages (``bot.sandbox.fake_slack``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_BLOCKS = 50


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    seq: int = 0  # the same counter as message ts: orders replies among messages (the sandbox page)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    user: str = "UBOT"
    ephemeral_to: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier versions (chat.update)
    metadata: dict[str, Any] | None = None  # chat.postMessage metadata (event_type, event_payload)
    files: list[dict[str, Any]] = field(default_factory=list)  # files shared with the message
