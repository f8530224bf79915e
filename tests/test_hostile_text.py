"""Hostile text from users and feeds reaches Slack inert: no mention, no link, no invisible characters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import SHARED_DATA, Harness, make_config

from bot.blocks.common import escape, link, safe_url
from bot.jobs import run_feeds_poll


def mrkdwn(node: Any) -> list[str]:
    """Every mrkdwn text in ``node`` (plain_text is never parsed for mentions)."""
    if isinstance(node, list):
        return [t for item in node for t in mrkdwn(item)]
    if isinstance(node, dict):
        own = [node["text"]] if node.get("type") == "mrkdwn" else []
        return own + [t for k, v in node.items() if k != "text" or not isinstance(v, str) for t in mrkdwn(v)]
    return []


MENTIONS = ["<!channel>", "<!here>", "<@U0SEC1>", "<!subteam^S0123>", "<https://evil.example|click>"]


def test_escape_and_links_make_mentions_and_breakouts_inert() -> None:
    for raw in MENTIONS:
        assert "<" not in escape(raw) and ">" not in escape(raw)
    assert escape("pay\u202eexe.pdf\u200b") == "payexe.pdf"
    assert safe_url("https://x.example/a|ok> <!channel> <") == "https://x.example/a%7Cok%3E%20%3C!channel%3E%20%3C"
    for bad in ("javascript:alert(1)", "mailto:a@b", "/relative", "ftp://x.example/"):
        assert safe_url(bad) is None
    assert link("javascript:alert(1)", "<!here>") == "&lt;!here&gt;"


async def test_card_text_and_advisory_post_carry_no_live_mention(harness_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "osv"
    folder.mkdir()
    doc = json.loads((SHARED_DATA / "osv" / "PyPI" / "PYSEC-2023-62.json").read_text())
    doc["summary"] = "flask " + " ".join(MENTIONS)
    doc["references"] = [{"type": "WEB", "url": "https://x.example/a|ok> <!channel> <"}]
    (folder / "PYSEC-2023-62.json").write_text(json.dumps(doc))
    config = make_config(
        systems={"web-shop": {"packages": [{"ecosystem": "PyPI", "name": "flask", "version": "2.2.2"}]}},
        feeds={"osv": {"source": str(folder)}},
    )
    h: Harness = await harness_factory(config)
    card = await h.request_change(title="Fix \u202eexe.pdf " + " ".join(MENTIONS))
    await run_feeds_poll(h.deps)
    posts = [m for m in h.fake.channel_messages("C0ADVISORIES") if m.text.startswith("PYSEC")]
    assert len(posts) == 1
    for message in (h.latest(card), posts[0]):
        everything = "\n".join([message.text, *mrkdwn(message.blocks)])
        for raw in MENTIONS:
            assert raw not in everything, (raw, message.text)
        assert "\u202e" not in everything
    shown = json.dumps(posts[0].blocks)
    assert "<https://x.example/a%7Cok%3E%20%3C!channel%3E%20%3C|reference>" in shown


async def test_quarantine_notices_post_no_server_paths(harness_factory: Any, tmp_path: Path) -> None:
    kev = tmp_path / "secret-layout" / "kev.json"
    kev.parent.mkdir()
    kev.write_text("<html>maintenance</html>")
    h: Harness = await harness_factory(make_config(feeds={"kev": {"source": str(kev)}}))
    await run_feeds_poll(h.deps)
    notices = [m.text for m in h.fake.channel_messages("C0ADVISORIES") if m.text.startswith(":warning:")]
    assert len(notices) == 1 and "kev.json" in notices[0]
    assert str(tmp_path) not in notices[0] and "secret-layout" not in notices[0], notices[0]
