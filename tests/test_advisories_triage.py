"""Triage buttons on advisory posts: create a linked change request, not applicable (audited), snooze."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from conftest import OTHER, OWNER, REQ, SHARED_DATA, Harness, eventually, make_config
from sqlalchemy import select

from bot.feeds.base import FeedBatch, parse_osv
from bot.sandbox.driver import TEAM
from bot.sandbox.fake_slack import Message
from bot.slack.advisory_posts import publish_all, run_advisory_sweep
from bot.workflows import advisories as flow
from storage import advisories as store
from storage import changes
from storage.models import AdvisoryStatus, AuditEntry, ChangeState

PACKAGES = [
    {"ecosystem": "PyPI", "name": "flask", "version": "2.2.2"},
    {"ecosystem": "PyPI", "name": "jinja2", "version": "3.1.2"},
]


async def posted(h: Harness) -> dict[str, Message]:
    """Ingest two real OSV records affecting web-shop and post them; returns posts by advisory id."""
    docs = [SHARED_DATA / "osv" / "PyPI" / n for n in ("PYSEC-2023-62.json", "GHSA-h5c8-rqwp-cp95.json")]
    batch = FeedBatch(advisories=tuple(parse_osv(json.loads(p.read_text())) for p in docs))
    async with h.deps.sessions.begin() as s:
        result = await flow.ingest(s, config=h.config, batch=batch, now=h.clock.now())
    await publish_all(h.deps, result.changed)
    msgs = await eventually(
        lambda: len(h.fake.channel_messages("C0ADVISORIES")) == 2 and h.fake.channel_messages("C0ADVISORIES")
    )
    return {m.text.split(" ")[0]: m for m in msgs}


async def status_of(h: Harness, advisory_id: str) -> tuple[AdvisoryStatus, int | None]:
    async with h.deps.sessions.begin() as s:
        rec = await store.get(s, (await store.owners_of(s, [advisory_id]))[0])
        assert rec is not None
        return rec.status, rec.change_id


async def select_snooze(h: Harness, message: Message, choice: str, *, user: str) -> None:
    """Pick an option of the Snooze select (the driver clicks buttons only)."""
    block = next(b for b in message.blocks if b.get("type") == "actions")
    select_el = next(e for e in block["elements"] if e["action_id"] == "advisory_snooze")
    option = next(o for o in select_el["options"] if o["value"].endswith(f":{choice}"))
    payload = {
        "type": "block_actions",
        "team": TEAM,
        "user": {"id": user, "username": user.lower()},
        "api_app_id": "A0PATCH",
        "trigger_id": "9.trigger",
        "channel": {"id": message.channel},
        "message": {"ts": message.ts, "text": message.text},
        "container": {"type": "message", "channel_id": message.channel, "message_ts": message.ts},
        "response_url": f"{h.fake.url}/response_url/r9",
        "actions": [
            {"type": "static_select", "action_id": "advisory_snooze", "block_id": block["block_id"],
             "selected_option": option, "action_ts": str(time.time())}
        ],
    }  # fmt: skip
    status, _ = await h.slack.interaction(payload)
    assert status == 200


async def test_create_change_request_prefilled_linked_and_following_the_change(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    post = (await posted(h))["PYSEC-2023-62"]
    await h.slack.click(post, "advisory_create_change", user=REQ)
    view = await h.opened_view("change_request")
    fields = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    assert [o["value"] for o in fields["systems"]["initial_options"]] == ["web-shop"]
    assert fields["advisory_ref"]["initial_value"] == "PYSEC-2023-62"
    assert fields["title"]["initial_value"].startswith("PYSEC-2023-62: update flask")
    assert "2.2.2 → 2.2.5" in fields["details"]["initial_value"]

    status, body = await h.slack.submit(view, {"rollback_plan": "pip install flask==2.2.2"}, user=REQ)
    assert status == 200 and body in ("", "{}"), body
    card = await h.card(1)
    assert "PYSEC-2023-62" in str(card.blocks)
    await eventually(lambda: "Change requested" in str(h.latest(post).blocks), what="post shows the change")
    assert await status_of(h, "PYSEC-2023-62") == (AdvisoryStatus.CHANGE_REQUESTED, 1)
    assert "CHG-1 requested" in (await eventually(lambda: h.thread(post)))[-1].text

    async with h.deps.sessions.begin() as s:  # the deployment engine's part, out of scope here
        change = await changes.get(s, 1)
        assert change is not None
        change.state = ChangeState.COMPLETED
    await run_advisory_sweep(h.deps)
    assert await status_of(h, "PYSEC-2023-62") == (AdvisoryStatus.REMEDIATED, 1)
    assert "Remediated" in str(h.latest(post).blocks) and "remediated" in h.thread(post)[-1].text


async def test_not_applicable_needs_reason_and_is_audited_snooze_hides_until_time_passes(
    harness_factory: Any,
) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    posts = await posted(h)
    flask, jinja = posts["PYSEC-2023-62"], posts["GHSA-h5c8-rqwp-cp95"]

    await h.slack.click(flask, "advisory_not_applicable", user=OTHER)
    refusal = await eventually(lambda: h.fake.ephemerals(OTHER), what="refusal")
    assert "Only the owners" in refusal[-1]
    await h.slack.click(flask, "advisory_not_applicable", user=OWNER)
    view = await h.opened_view("advisory_not_applicable_reason")
    _, body = await h.slack.submit(view, {"reason": None}, user=OWNER)
    assert "errors" in body and (await status_of(h, "PYSEC-2023-62"))[0] is AdvisoryStatus.OPEN
    await h.slack.submit(view, {"reason": "We never set session.permanent"}, user=OWNER)
    # the status line, not the button of the same name (that matched at once and raced the commit)
    await eventually(lambda: "*Not applicable*:" in str(h.latest(flask).blocks), what="post updated")
    assert (await status_of(h, "PYSEC-2023-62"))[0] is AdvisoryStatus.NOT_APPLICABLE
    async with h.deps.sessions.begin() as s:
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "advisory_not_applicable"))).scalar_one()
    assert entry.actor == OWNER and "We never set session.permanent" in entry.body

    await select_snooze(h, jinja, "7d", user=OWNER)
    await eventually(lambda: "Snoozed" in str(h.latest(jinja).blocks), what="snoozed")
    before = len(h.fake.responses)
    await h.slack.command("advisories", user=OWNER)
    replies = await eventually(lambda: h.fake.responses[before:], what="listing")
    assert "No advisories" in replies[-1]["text"], "snoozed and not-applicable ones are hidden"

    h.clock.advance(timedelta(days=8))
    before = len(h.fake.responses)
    await h.slack.command("advisories open", user=OWNER)
    replies = await eventually(lambda: h.fake.responses[before:], what="listing")
    assert "GHSA-h5c8-rqwp-cp95" in replies[-1]["text"] and "PYSEC-2023-62" not in replies[-1]["text"]
    await run_advisory_sweep(h.deps)
    assert (await status_of(h, "GHSA-h5c8-rqwp-cp95"))[0] is AdvisoryStatus.OPEN
    notes = [m.text for m in h.thread(jinja)]
    assert any("snooze" in t and "open again" in t for t in notes)
    assert any("overdue" in t for t in notes), "published in 2024: overdue as soon as the snooze is over"
