"""A connection stuck mid-body is answered 408 after the body timeout, not held forever."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest
from conftest import Harness

from bot import app as app_module


async def test_a_stuck_body_is_dropped_after_the_timeout(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "BODY_TIMEOUT", 0.5)
    parts = urlsplit(harness.endpoint)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    began = time.monotonic()
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"X-Slack-Request-Timestamp: 1\r\nX-Slack-Signature: v0=00\r\nContent-Length: 1000\r\n\r\npayload="
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    elapsed = time.monotonic() - began
    writer.close()
    await writer.wait_closed()
    assert b" 408 " in status_line, status_line
    assert elapsed < 3, elapsed
