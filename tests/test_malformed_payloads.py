"""Signed but malformed payloads are answered 400 or with a clear ephemeral, never HTTP 500."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from typing import Any
from urllib.parse import urlencode

from conftest import OWNER, SECRET, Harness, eventually

from bot.sandbox.driver import TEAM

_TS = itertools.count(1)


def _click(card: Any, value: str, *, actions: list[Any] | None = None) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": TEAM,
        "user": {"id": OWNER, "username": "owner"},
        "api_app_id": "A0PATCH",
        "trigger_id": "1.trigger",
        "channel": {"id": card.channel},
        "container": {"type": "message", "message_ts": card.ts, "channel_id": card.channel},
        "message": {"ts": card.ts},
        "actions": actions
        if actions is not None
        else [{"type": "button", "action_id": "change_approve", "value": value, "action_ts": f"1.{next(_TS)}"}],
    }


async def test_malformed_signed_payloads_never_give_500(harness: Harness) -> None:
    h = harness
    card = await h.request_change()
    form = "application/x-www-form-urlencoded"
    bodies = [
        urlencode({"payload": "{not json"}),
        urlencode({"payload": "[]"}),
        urlencode({"payload": json.dumps(_click(card, "x", actions=[]))}),
        urlencode({"payload": json.dumps(_click(card, "1:test:" + "9" * 5000))}),
        urlencode({"payload": json.dumps(_click(card, "9" * 400 + ":test:1"))}),
        urlencode(
            {
                "payload": json.dumps(
                    {
                        "type": "view_submission",
                        "team": TEAM,
                        "user": {"id": OWNER},
                        "api_app_id": "A0PATCH",
                        "view": {
                            "id": "VBAD",
                            "type": "modal",
                            "callback_id": "change_reject_reason",
                            "private_metadata": "{broken",
                            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": "x"}}}},
                        },
                    }
                )
            }
        ),
    ]
    for body in bodies:
        status, text = await h.slack.post(body, form)
        assert status < 500, (status, text, body[:80])
    # the huge button values got the plain "out of date" answer, not "something went wrong"
    notes = await eventually(lambda: len(h.fake.ephemerals(OWNER)) >= 2 and h.fake.ephemerals(OWNER))
    assert all("out of date" in n for n in notes), notes
    # a non-numeric signature timestamp is refused, not a traceback
    headers = {
        "Content-Type": form,
        "X-Slack-Request-Timestamp": "soon",
        "X-Slack-Signature": "v0="
        + hmac.new(SECRET.encode(), b"v0:soon:" + bodies[0].encode(), hashlib.sha256).hexdigest(),
    }
    async with h.http.post(h.endpoint, data=bodies[0].encode(), headers=headers) as resp:
        assert resp.status in (400, 401), resp.status
