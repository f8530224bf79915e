"""Durable runs (issue 14): a run whose bot process died is found by its heartbeat within the timeout, marked
interrupted (never guessed as failed), its system kept locked, and its owner asked what happened.

These tests move the fake clock; ``test_durable_kill.py`` kills a real ``patchwarden serve`` with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from typing import Any

from conftest import OPS1, OWNER, SEC1, Harness, eventually, make_config
from deploy_support import approved_for_test, wait_state
from sqlalchemy import select
from test_deploy import deploy_cmd

from bot.jobs import run_recovery
from bot.sandbox.fake_slack import Message
from bot.slack.outbox_sender import OutboxSender
from storage import changes, deployments
from storage.models import AuditEntry, ChangeState, Deployment, DeploymentStatus

QUESTION = "was interrupted at step"


async def _orphaned(h: Harness, *, step: str = "apply", state: ChangeState = ChangeState.TEST_DEPLOYING) -> Message:
    """CHG-1's test run, owned by a process on another host that has just died (its last heartbeat: now)."""
    card = await approved_for_test(h)
    now = h.clock.now()
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        change.state = state
        dep = await deployments.add(
            s,
            Deployment(
                run_id="CHG-1-test-web-shop-dead",
                change_id=1,
                stage="test",
                system="web-shop",
                executor="dry-run",
                status=DeploymentStatus.VERIFYING if step == "verify" else DeploymentStatus.RUNNING,
                started_by=OPS1,
                started_at=now - timedelta(seconds=20),
                heartbeat_at=now,
                owner="another-host:4242",
                step=step,
                pgid=4242,
                steps=[],
                output="",
            ),
        )
        assert await deployments.acquire_lock(s, system="web-shop", deployment_id=dep.id, now=now)
    return card


async def _question(h: Harness, card: Message) -> Message:
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    found = await eventually(lambda: [m for m in h.thread(card) if QUESTION in m.text], what="the question")
    assert len(found) == 1, [m.text for m in found]
    return found[0]


async def _row(h: Harness) -> Deployment:
    async with h.deps.sessions.begin() as s:
        [row] = await deployments.for_change(s, 1)
        return row


async def _actions(h: Harness, name: str) -> list[dict[str, Any]]:
    """The control-log entries named ``name``: actor and details."""
    async with h.deps.sessions.begin() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.action == name))).scalars()
        return [{"actor": r.actor, **json.loads(r.body)["details"]} for r in rows]


async def test_a_silent_run_is_interrupted_within_the_timeout_and_completed_by_the_owner(harness: Harness) -> None:
    h = harness
    card = await _orphaned(h)
    h.clock.advance(timedelta(seconds=50))
    assert await run_recovery(h.deps) == 0  # 50 s without a heartbeat: within the 60 s timeout
    h.clock.advance(timedelta(seconds=15))
    assert await run_recovery(h.deps) == 1
    assert await run_recovery(h.deps) == 0  # asked once
    row = await _row(h)
    assert row.status is DeploymentStatus.INTERRUPTED  # not failed: the outcome is unknown
    async with h.deps.sessions.begin() as s:
        holder = await deployments.lock_holder(s, "web-shop")
        assert holder is not None and holder.id == row.id  # nobody deploys over a run that may have finished
        change = await changes.get(s, 1)
        assert change is not None and change.state is ChangeState.TEST_DEPLOYING
    [logged] = await _actions(h, "deployment_interrupted")
    assert logged["step"] == "apply" and logged["owner"] == "another-host:4242"
    assert "another-host" in logged["orphan"] and "cannot be stopped from here" in logged["orphan"]
    question = await _question(h, card)
    assert "step *apply*" in question.text and "last heartbeat" in question.text and f"<@{OWNER}>" in question.text
    assert "did it complete?" in question.text
    buttons = [el["action_id"] for b in question.blocks for el in b.get("elements", []) if "action_id" in el]
    assert buttons == ["interrupted_completed", "interrupted_failed", "interrupted_retry"]

    await h.slack.click(question, "interrupted_completed", user=SEC1)  # neither owner nor operator
    await eventually(lambda: any("Only the owner" in t for t in h.fake.ephemerals(SEC1)), what="refusal")
    await h.slack.click(question, "interrupted_completed", user=OWNER)
    await wait_state(h, ChangeState.TEST_PASSED)
    assert (await _row(h)).status is DeploymentStatus.SUCCEEDED
    async with h.deps.sessions.begin() as s:
        assert await deployments.lock_holder(s, "web-shop") is None
    [decided] = await _actions(h, "interrupted_decided")
    assert decided["actor"] == OWNER and decided["answer"] == "completed"
    await eventually(lambda: [m for m in h.thread(card) if "test_passed" in str(m.blocks)], what="result prompt")
    await h.slack.click(question, "interrupted_retry", user=OWNER)  # too late: already answered
    await eventually(lambda: any("already decided" in t for t in h.fake.ephemerals(OWNER)), what="already decided")


async def test_failed_rolls_back_the_interrupted_run(harness: Harness) -> None:
    h = harness
    card = await _orphaned(h, step="verify", state=ChangeState.TEST_VERIFYING)
    h.clock.advance(timedelta(minutes=2))
    assert await run_recovery(h.deps) == 1
    question = await _question(h, card)
    assert "step *verify*" in question.text
    await h.slack.click(question, "interrupted_failed", user=OPS1)  # an operator may answer too
    await wait_state(h, ChangeState.TEST_FAILED)
    assert (await _row(h)).status is DeploymentStatus.ROLLED_BACK
    await eventually(lambda: [m for m in h.thread(card) if "Rollback of CHG-1 (test)" in m.text], what="rollback")


async def test_retry_runs_the_interrupted_step_again(harness: Harness) -> None:
    h = harness
    card = await _orphaned(h)
    h.clock.advance(timedelta(minutes=2))
    assert await run_recovery(h.deps) == 1
    await h.slack.click(await _question(h, card), "interrupted_retry", user=OWNER)
    await wait_state(h, ChangeState.TEST_PASSED)
    row = await _row(h)
    assert row.status is DeploymentStatus.SUCCEEDED and [st["step"] for st in row.steps] == ["apply", "verify"]
    assert row.owner is not None and row.owner != "another-host:4242"  # this process ran it, with a heartbeat
    await eventually(lambda: [m for m in h.thread(card) if "retries the interrupted test run" in m.text], what="note")


async def test_a_run_this_process_still_runs_is_never_taken_for_dead(harness_factory) -> None:  # type: ignore[no-untyped-def]
    slow = {"executor": "dry-run", "delay": "2s"}
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"environments": {"test": slow}}}))
    await approved_for_test(h, change_class="emergency", details="outage")
    assert "Deploying CHG-1" in await deploy_cmd(h, "CHG-1 test --now outage")
    await wait_state(h, ChangeState.TEST_DEPLOYING)

    async def owned() -> Deployment | None:
        row = await _row(h)
        return row if row.owner is not None and row.step == "apply" else None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (row := await owned()) is None:
        assert loop.time() < deadline, "the run never named its owner and step"
        await asyncio.sleep(0.02)
    assert row.heartbeat_at is not None and row.owner.endswith(f":{os.getpid()}")
    h.clock.advance(timedelta(minutes=5))  # its heartbeat looks old on the moved clock, but it is ours and alive
    assert await run_recovery(h.deps) == 0
    await wait_state(h, ChangeState.TEST_PASSED, within=15)
    row = await _row(h)
    assert row.status is DeploymentStatus.SUCCEEDED and row.step == "verify"
