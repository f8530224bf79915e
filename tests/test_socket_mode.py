"""`patchwarden serve --socket-mode`: Slack's envelopes arrive over a WebSocket, are acked, and handled."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import yaml
from conftest import BASE_CONFIG, REQ, eventually

from bot.cli import serve
from bot.sandbox.fake_slack import FakeSlack
from bot.sandbox.fake_slack import start as start_fake


async def test_socket_mode_slash_command_is_acked_and_opens_the_form(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSlack()
    runner = await start_fake(fake)
    config = tmp_path / "patchwarden.yaml"
    config.write_text(yaml.safe_dump(BASE_CONFIG))
    for key, value in {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "unused-in-socket-mode",
        "SLACK_APP_TOKEN": "xapp-1-test",
        "SLACK_API_URL": fake.url + "/api",
        "PATCHWARDEN_CONFIG": str(config),
        "PATCHWARDEN_DATABASE_URL": database_url,
        "PATCHWARDEN_AUDIT_KEY_FILE": str(tmp_path / "audit.key"),
    }.items():
        monkeypatch.setenv(key, value)
    task = asyncio.create_task(serve._serve("127.0.0.1", 0, True))
    try:
        await eventually(lambda: fake.of("apps.connections.open") or task.done(), what="socket connection")
        assert not task.done(), task.exception()
        await fake.socket_envelopes.put(
            {
                "envelope_id": "env-1",
                "type": "slash_commands",
                "accepts_response_payload": True,
                "payload": {
                    "command": "/patch",
                    "text": "request web-shop",
                    "user_id": REQ,
                    "user_name": "req",
                    "channel_id": "C0OPS",
                    "team_id": "T0SANDBOX",
                    "api_app_id": "A0PATCH",
                    "trigger_id": "1.socket",
                    "response_url": fake.url + "/response_url/s1",
                },
            }
        )
        opened = await eventually(lambda: fake.of("views.open"), what="the request form")
        assert opened[0]["view"]["callback_id"] == "change_request"
        await eventually(lambda: any(a.get("envelope_id") == "env-1" for a in fake.socket_acks), what="the ack")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
