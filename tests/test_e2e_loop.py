"""The whole loop through the fake Slack with a real ``shell`` executor running a script:

request → approvals → test window → deploy → results → owner records passed → acknowledgement → prod
approval → announcement ≥ 24h ahead → reminder → deploy (due-window sweep) → verify → completed; and a
failed production verify → rollback announced.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

from conftest import OWNER, SEC1, Harness, eventually, make_config
from deploy_support import Script, approved_for_test, book, in_thread, wait_state

from bot import jobs
from bot.sandbox.fake_slack import Message
from bot.slack.outbox_sender import OutboxSender
from bot.workflows import announcements
from storage import deployments
from storage.models import ChangeState, DeploymentStatus


async def _harness(harness_factory, tmp_path: Path, **policy: str) -> tuple[Harness, Script]:  # type: ignore[no-untyped-def]
    script = Script(tmp_path, lines=40)
    config = make_config(
        systems={
            "web-shop": {"environments": {"test": script.environment("test"), "prod": script.environment("prod")}}
        },
        policy={"announce_notice": "24h", "remind_before": "1h", **policy},
    )
    return await harness_factory(config), script


async def _sweep(h: Harness) -> None:
    """Run the due-window sweep as the scheduler would, and wait for the runs it started."""
    tasks = await jobs.run_due_windows(h.deps)
    if tasks:
        await asyncio.gather(*tasks)


async def _deliver(h: Harness) -> None:
    await OutboxSender(h.deps, channel_gap=0.0).drain()


async def _through_test(h: Harness, script: Script) -> Message:
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    await wait_state(h, ChangeState.TEST_SCHEDULED)
    h.clock.advance(timedelta(minutes=11))
    await _sweep(h)
    await wait_state(h, ChangeState.TEST_PASSED)
    assert [c["argv"][1:] for c in script.calls()] == [["apply", "test"], ["verify", "test"]]
    prompt = await in_thread(h, card, "test_passed", what="Passed / Problems buttons")
    await h.slack.click(prompt, "test_passed", user=OWNER)
    ack = await in_thread(h, card, "test_acknowledge", what="Acknowledge button")
    await h.slack.click(ack, "test_acknowledge", user=OWNER)
    await wait_state(h, ChangeState.PENDING_PROD_APPROVAL)
    await in_thread(h, card, "Approval needed for the *prod* stage", what="prod approvers mentioned")
    await h.slack.approve(h.latest(card), user=OWNER)
    await h.slack.approve(h.latest(card), user=SEC1)
    await wait_state(h, ChangeState.APPROVED_FOR_PROD)
    return card


async def test_whole_loop_with_a_real_shell_script(harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    h, script = await _harness(harness_factory, tmp_path)
    card = await _through_test(h, script)
    # the test deployment's output went to the thread: streamed lines and, being long, a file
    await in_thread(h, card, "Apply of CHG-1 (test)")
    assert any(f["name"].endswith("-apply.log") for f in h.fake.files.values())
    assert (
        "apply line 39"
        in next(f for f in h.fake.files.values() if f["name"].endswith("-apply.log"))["content"].decode()
    )

    # production: booked 25h ahead, announced at once (≥ 24h ahead), reminded 1h before, deployed when due
    await book(h, stage="prod", start_in=timedelta(hours=25))
    await _deliver(h)
    shop = h.fake.channel_messages("C0SHOPUSERS")
    assert len(shop) == 1 and "Planned maintenance" in shop[0].text
    announced_start = int(re.search(r"<!date\^(\d+)", shop[0].text).group(1))  # type: ignore[union-attr]
    assert announced_start - h.clock.now().timestamp() >= 24 * 3600
    h.clock.advance(timedelta(hours=24, minutes=5))
    async with h.deps.sessions.begin() as s:
        reminded, _ = await announcements.sweep_windows(s, config=h.config, now=h.clock.now())
    assert reminded == 1
    await _deliver(h)  # the reminder goes out before the window starts (afterwards it would be dropped)
    await _sweep(h)  # not due yet
    assert await _state(h) is ChangeState.PROD_SCHEDULED
    h.clock.advance(timedelta(minutes=60))
    await _sweep(h)
    await wait_state(h, ChangeState.COMPLETED)
    await _deliver(h)
    shop_texts = [m.text for m in h.fake.channel_messages("C0SHOPUSERS")]
    assert len(shop_texts) == 4, shop_texts  # booked, reminder, started, completed
    assert [c["argv"][1:] for c in script.calls()][2:] == [["apply", "prod"], ["verify", "prod"]]
    await in_thread(h, card, "deployed to production and verified")
    assert "Deployments" in str(h.latest(card).blocks)
    async with h.deps.sessions.begin() as s:
        rows = await deployments.for_change(s, 1)
    assert [(d.stage, d.status) for d in rows] == [
        ("test", DeploymentStatus.SUCCEEDED),
        ("prod", DeploymentStatus.SUCCEEDED),
    ]
    assert [st["step"] for st in rows[1].steps] == ["apply", "verify"]


async def _state(h: Harness) -> ChangeState:
    from deploy_support import state_of

    return await state_of(h)


async def test_failed_prod_verify_rolls_back_and_is_announced(harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    h, script = await _harness(harness_factory, tmp_path, on_failed_verify="rollback")
    card = await _through_test(h, script)
    await book(h, stage="prod", start_in=timedelta(hours=25))
    script.fail("verify-prod")
    h.clock.advance(timedelta(hours=25, minutes=1))
    await _sweep(h)
    await wait_state(h, ChangeState.ROLLED_BACK)
    assert [c["argv"][1:] for c in script.calls()][2:] == [["apply", "prod"], ["verify", "prod"], ["rollback", "prod"]]
    await in_thread(h, card, "Rollback of CHG-1 (prod)")
    await _deliver(h)
    assert any("Update undone" in m.text for m in h.fake.channel_messages("C0SHOPUSERS"))
    async with h.deps.sessions.begin() as s:
        rows = await deployments.for_change(s, 1, stage="prod")
        assert rows[0].status is DeploymentStatus.ROLLED_BACK
        assert await deployments.lock_holder(s, "web-shop") is None


async def test_failed_verify_asks_the_owner_who_rolls_back(harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    h, script = await _harness(harness_factory, tmp_path, on_failed_verify="ask")
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    script.fail("verify-test")
    h.clock.advance(timedelta(minutes=11))
    await _sweep(h)
    prompt = await in_thread(h, card, "deploy_rollback", what="Roll back / Keep buttons")
    assert await _state(h) is ChangeState.TEST_VERIFYING
    await h.slack.click(prompt, "deploy_rollback", user=SEC1)  # not the owner
    await eventually(lambda: any("Only the owner" in t for t in h.fake.ephemerals(SEC1)), what="refusal")
    await h.slack.click(prompt, "deploy_rollback", user=OWNER)
    await wait_state(h, ChangeState.TEST_FAILED)
    assert [c["argv"][1] for c in script.calls()] == ["apply", "verify", "rollback"]
    await h.slack.click(prompt, "deploy_keep", user=OWNER)  # too late: already decided
    await eventually(lambda: any("already decided" in t for t in h.fake.ephemerals(OWNER)), what="already decided")
