"""The technical documentation is revised after each update (issue 12, item 4)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from conftest import OWNER, STAKE, Harness, eventually, make_config
from deploy_support import in_thread, state_of
from loop_support import deploy_prod, through_test
from test_presence import control_log, snapshot_json

from bot import jobs
from bot.errors import ConfigError
from bot.render import report
from storage.models import ChangeState

DOCS = "https://wiki.example/web-shop/operations"


def docs_config() -> Any:
    return make_config(systems={"web-shop": {"docs_url": DOCS}})


async def docs_pending_in_report(h: Harness) -> int:
    async with h.deps.sessions.begin() as s:
        [row] = await report.build(s, config=h.config, now=h.clock.now())
    assert ("docs_pending" in report.to_csv([row]).splitlines()[0]) is True
    return row.docs_pending


async def completed(h: Harness) -> Any:
    card = await through_test(h)
    assert await docs_pending_in_report(h) == 0
    assert (await snapshot_json(h))["docs"]["status"] == "not_due"
    await deploy_prod(h)
    assert await state_of(h) is ChangeState.COMPLETED
    return card


async def test_completion_asks_for_the_documentation_until_confirmed(harness_factory: Any) -> None:
    h: Harness = await harness_factory(docs_config())
    card = await completed(h)
    ask = await in_thread(h, card, "docs_confirm", what="the documentation button")
    assert DOCS in ask.text and f"<@{OWNER}>" in ask.text
    # the card and the status reply say it; the JSON and the report count it
    await eventually(lambda: "documentation pending" in json.dumps(h.latest(card).blocks), what="card says pending")
    assert (await snapshot_json(h))["docs"] == {"status": "pending", "confirmed_by": None, "at": None, "url": DOCS}
    assert await docs_pending_in_report(h) == 1
    # a stakeholder may not confirm; a bad link is refused under the field, nothing saved
    await h.slack.click(ask, "docs_confirm", user=STAKE)
    view = await h.opened_view("docs_confirm_link")
    await h.slack.submit(view, {}, user=STAKE)
    await eventually(lambda: any("Only a system owner" in t for t in h.fake.ephemerals(STAKE)), what="refusal")
    await h.slack.click(ask, "docs_confirm", user=OWNER)
    view = await h.opened_view("docs_confirm_link", after=1)
    status, body = await h.slack.submit(view, {"link": "javascript:alert(1)"}, user=OWNER)
    assert status == 200 and "errors" in body and "link" in body
    assert (await snapshot_json(h))["docs"]["status"] == "pending"
    revised = "https://wiki.example/web-shop/operations?rev=42"
    status, body = await h.slack.submit(view, {"link": revised}, user=OWNER)
    assert status == 200 and "errors" not in body
    await in_thread(h, card, "confirmed the documentation")
    docs = (await snapshot_json(h))["docs"]
    assert docs["status"] == "confirmed" and docs["confirmed_by"] == OWNER and docs["url"] == revised and docs["at"]
    await eventually(lambda: "documentation pending" not in json.dumps(h.latest(card).blocks), what="card updated")
    assert await docs_pending_in_report(h) == 0
    log = await control_log(h, "docs_")
    assert [(e["action"], e["actor"]) for e in log] == [("docs_requested", "scheduler"), ("docs_confirmed", OWNER)]
    assert log[0]["urls"] == [DOCS] and log[1]["link"] == revised
    # a second confirmation changes nothing
    await h.slack.click(ask, "docs_confirm", user=OWNER)
    view = await h.opened_view("docs_confirm_link", after=2)
    await h.slack.submit(view, {}, user=OWNER)
    await eventually(lambda: any("already confirmed" in t for t in h.fake.ephemerals(OWNER)), what="already")


async def test_pending_documentation_is_reminded_once_after_docs_remind_after(harness_factory: Any) -> None:
    h: Harness = await harness_factory(docs_config())
    card = await completed(h)
    await in_thread(h, card, "docs_confirm", what="the documentation button")
    h.clock.advance(timedelta(days=2, hours=23))
    assert await jobs.run_docs_reminders(h.deps) == 0
    h.clock.advance(timedelta(hours=2))
    assert await jobs.run_docs_reminders(h.deps) == 1
    reminder = await in_thread(h, card, "Reminder: the documentation of CHG-1")
    assert any(el.get("action_id") == "docs_confirm" for b in reminder.blocks for el in b.get("elements", []))
    assert await jobs.run_docs_reminders(h.deps) == 0  # once
    assert [e["action"] for e in await control_log(h, "docs_")] == ["docs_requested", "docs_reminded"]


async def test_docs_keys_are_validated() -> None:
    with pytest.raises(ConfigError, match="docs_url"):
        make_config(systems={"web-shop": {"docs_url": "javascript:alert(1)"}})
    with pytest.raises(ConfigError, match="docs_remind_after"):
        make_config(policy={"docs_remind_after": "0d"})
    assert make_config().policy.docs_remind_after == timedelta(days=3)
