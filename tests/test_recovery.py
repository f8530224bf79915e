"""A deployment interrupted by a crash is closed as failed, its system unlocked, and the thread told."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from conftest import OWNER, Harness, eventually

from bot.jobs import run_recovery
from storage import changes, deployments
from storage.models import ChangeState, Deployment, DeploymentStatus


async def _running(h: Harness, *, started_ago: timedelta) -> None:
    """A test deployment that a (now dead) process was running."""
    card = await h.request_change()
    await h.slack.approve(card, user=OWNER)
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks))
    now = h.clock.now()
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        change.state = ChangeState.TEST_DEPLOYING
        dep = await deployments.add(
            s,
            Deployment(
                run_id="run-crashed",
                change_id=1,
                stage="test",
                system="web-shop",
                executor="dry-run",
                status=DeploymentStatus.RUNNING,
                started_by=OWNER,
                started_at=now - started_ago,
                steps=[],
                output="",
            ),
        )
        assert await deployments.acquire_lock(s, system="web-shop", deployment_id=dep.id, now=now)


async def test_interrupted_deployment_is_closed_and_said(harness: Harness) -> None:
    h = harness
    await _running(h, started_ago=timedelta(minutes=5))
    assert await run_recovery(h.deps) == 0  # could still be running (15 min apply timeout): left alone
    h.clock.advance(timedelta(hours=1))
    assert await run_recovery(h.deps) == 1
    assert await run_recovery(h.deps) == 0  # closed once
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None and change.state is ChangeState.TEST_FAILED
        assert await deployments.lock_holder(s, "web-shop") is None
        row = await deployments.get(s, 1)
        assert row is not None and row.status is DeploymentStatus.FAILED
    card = await h.card()
    note = await eventually(lambda: [m.text for m in h.thread(card) if "was interrupted" in m.text])
    assert f"<@{OWNER}>" in note[0] and "unlocked" in note[0]


async def test_card_refused_by_slack_is_posted_by_the_sweep(harness: Harness) -> None:
    from conftest import REQ

    h = harness
    h.fake.fail("chat.postMessage", status=500)  # Slack hiccups exactly when the card would be posted
    await h.slack.command("request web-shop", user=REQ)
    view = await h.opened_view("change_request")
    await h.slack.submit(view, {"title": "Patch libfoo", "rollback_plan": "reinstall"}, user=REQ)
    note = await eventually(lambda: [t for t in h.fake.ephemerals(REQ) if "is saved" in t])
    assert "CHG-1" in note[0]
    assert h.cards() == []
    from bot.jobs import run_sweep

    await run_sweep(h.deps)
    assert h.cards() == []  # too young: its own post might still be on the way
    h.clock.advance(timedelta(minutes=3))
    await run_sweep(h.deps)
    card = await h.card()
    assert card.text.startswith("CHG-1: Patch libfoo")
    await run_sweep(h.deps)
    assert len(h.cards()) == 1  # posted once


async def test_a_thread_note_slack_refused_is_delivered_by_the_outbox(harness: Harness) -> None:
    from bot.slack.outbox_sender import OutboxSender

    h = harness
    card = await h.request_change()
    h.fake.fail("chat.postMessage", status=500)  # the "approved" note hits a Slack outage
    await h.slack.approve(card, user=OWNER)
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks))
    await eventually(lambda: len(h.fake.of("chat.postMessage")) >= 3, what="the refused post")
    assert not [m for m in h.thread(card) if "is approved for" in m.text]
    sender = OutboxSender(h.deps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not [m for m in h.thread(card) if "is approved for" in m.text]:  # the note is queued, then sent
        assert loop.time() < deadline, "the outbox never delivered the note"
        await sender.sweep()
        await asyncio.sleep(0.02)
    assert len([m for m in h.thread(card) if "is approved for" in m.text]) == 1
