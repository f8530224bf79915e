"""The owner is present for production (issue 12, item 2): ``policy.prod_presence`` and ``presence_wait``."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from conftest import OPS1, OWNER, SEC1, Harness, eventually, make_config
from deploy_support import book, in_thread, state_of, wait_state
from loop_support import through_test
from sqlalchemy import select
from test_deploy import deploy_cmd

from bot import jobs
from bot.errors import ConfigError
from bot.workflows import views
from storage import changes, deployments, windows
from storage.models import AuditEntry, ChangeState, WindowState


def presence_config(**policy: Any) -> Any:
    return make_config(policy={"prod_presence": "required", "presence_wait": "15m", **policy})


async def control_log(h: Harness, prefix: str) -> list[dict[str, Any]]:
    async with h.deps.sessions.begin() as s:
        rows = (await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars()
        return [
            {"action": r.action, "actor": r.actor, **json.loads(r.body)["details"]}
            for r in rows
            if r.action.startswith(prefix)
        ]


async def snapshot_json(h: Harness, change_id: int = 1) -> dict[str, Any]:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, change_id)
        assert change is not None
        return views.to_json(await views.snapshot(s, config=h.config, change=change))


async def prod_window_opens(h: Harness) -> Any:
    card = await through_test(h)
    await book(h, stage="prod", start_in=timedelta(hours=25))
    h.clock.advance(timedelta(hours=25, minutes=1))
    assert await jobs.run_due_windows(h.deps) == []  # asks; starts nothing
    return card


async def test_required_without_check_in_nothing_runs_and_the_thread_says_why(harness_factory: Any) -> None:
    h: Harness = await harness_factory(presence_config())
    card = await prod_window_opens(h)
    ask = await in_thread(h, card, "presence_check_in", what="the check-in button")
    assert f"<@{OWNER}>" in ask.text and "check in by" in ask.text
    dm = await eventually(lambda: h.fake.channel_messages(OWNER), what="DM to the owner")
    assert any(el.get("action_id") == "presence_check_in" for b in dm[-1].blocks for el in b.get("elements", []))
    # while the wait runs, the sweep keeps waiting (and asks only once)
    h.clock.advance(timedelta(minutes=10))
    assert await jobs.run_due_windows(h.deps) == []
    assert len([m for m in h.thread(card) if "presence_check_in" in json.dumps(m.blocks)]) == 1
    # the wait runs out: nothing starts, the thread says why, the window follows missed_window (next)
    h.clock.advance(timedelta(minutes=6))
    assert await jobs.run_due_windows(h.deps) == []
    why = await in_thread(h, card, "did not start")
    assert "no system owner" in why.text and "prod_presence: required" in why.text and "rebooked" in why.text
    async with h.deps.sessions.begin() as s:
        assert [d for d in await deployments.for_change(s, 1) if d.stage == "prod"] == []
        prod = [w for w in await windows.for_change(s, 1) if w.stage == "prod"]
    assert [w.state for w in prod] == [WindowState.RESCHEDULED, WindowState.BOOKED]
    assert await state_of(h) is ChangeState.PROD_SCHEDULED
    log = await control_log(h, "presence_")
    assert [e["action"] for e in log] == ["presence_requested", "presence_missing"]
    assert log[0]["owners"] == [OWNER] and log[1]["window_id"] == prod[0].id
    assert (await snapshot_json(h))["presence"] == {"required": True, "checked_in_by": None, "at": None}
    # a late click on the old button changes nothing
    await h.slack.click(ask, "presence_check_in", user=OWNER)
    await eventually(lambda: any("no longer waiting" in t for t in h.fake.ephemerals(OWNER)), what="late refusal")
    assert await state_of(h) is ChangeState.PROD_SCHEDULED


async def test_with_a_check_in_it_runs(harness_factory: Any) -> None:
    h: Harness = await harness_factory(presence_config())
    card = await prod_window_opens(h)
    ask = await in_thread(h, card, "presence_check_in", what="the check-in button")
    # only an owner of the systems can check in
    await h.slack.click(ask, "presence_check_in", user=SEC1)
    await eventually(lambda: any("Only a system owner" in t for t in h.fake.ephemerals(SEC1)), what="refusal")
    assert await state_of(h) is ChangeState.PROD_SCHEDULED
    # an operator cannot deploy it by hand before the check-in either
    assert "prod_presence: required" in await deploy_cmd(h, "CHG-1 prod", user=OPS1)
    assert await state_of(h) is ChangeState.PROD_SCHEDULED
    h.clock.advance(timedelta(minutes=5))
    await h.slack.click(ask, "presence_check_in", user=OWNER)
    await wait_state(h, ChangeState.COMPLETED)
    await in_thread(h, card, f"<@{OWNER}> checked in")
    log = await control_log(h, "presence_")
    assert [(e["action"], e["actor"]) for e in log] == [
        ("presence_requested", "scheduler"),
        ("presence_refused", SEC1),
        ("presence_checked_in", OWNER),
    ]
    presence = (await snapshot_json(h))["presence"]
    assert presence["required"] is True and presence["checked_in_by"] == OWNER and presence["at"]
    # the sweep after it finds nothing more to start (one run)
    assert await jobs.run_due_windows(h.deps) == []
    async with h.deps.sessions.begin() as s:
        assert len([d for d in await deployments.for_change(s, 1) if d.stage == "prod"]) == 1


async def test_missed_window_ask_lets_operators_decide_after_no_check_in(harness_factory: Any) -> None:
    h: Harness = await harness_factory(presence_config(missed_window="run"))  # run counts as ask here
    card = await prod_window_opens(h)
    h.clock.advance(timedelta(minutes=16))
    assert await jobs.run_due_windows(h.deps) == []
    prompt = await in_thread(h, card, "window_missed_run", what="Run now / Next window")
    assert "did not start" in prompt.text
    async with h.deps.sessions.begin() as s:
        prod = [w for w in await windows.for_change(s, 1) if w.stage == "prod"]
    assert [w.state for w in prod] == [WindowState.AWAITING_DECISION]


async def test_notify_tells_the_owner_it_starts(harness: Harness) -> None:
    h = harness  # the default: prod_presence notify
    await through_test(h)
    await book(h, stage="prod", start_in=timedelta(hours=25))
    h.clock.advance(timedelta(hours=25, minutes=1))
    tasks = await jobs.run_due_windows(h.deps)
    assert len(tasks) == 1
    await asyncio.gather(*tasks)
    dm = await eventually(lambda: h.fake.channel_messages(OWNER), what="DM to the owner")
    assert "prod deployment of CHG-1 starts now" in dm[-1].text
    assert (await snapshot_json(h))["presence"]["required"] is False


async def test_presence_keys_are_validated() -> None:
    with pytest.raises(ConfigError, match="prod_presence"):
        make_config(policy={"prod_presence": "sometimes"})
    with pytest.raises(ConfigError, match="presence_wait"):
        make_config(policy={"presence_wait": "0m"})
    with pytest.raises(ConfigError, match="unknown key"):
        make_config(policy={"presence": "required"})
