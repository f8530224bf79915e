"""The test stage through the thread: problems, risk decisions by owner and security, acknowledgement."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from conftest import OPS1, OWNER, REQ, SEC1, Harness, eventually
from deploy_support import approved_for_test, book, in_thread, state_of, wait_state

from bot import jobs
from bot.sandbox.fake_slack import Message
from storage import reports
from storage.models import ChangeState


async def deployed_to_test(h: Harness) -> Message:
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=5))
    h.clock.advance(timedelta(minutes=6))
    await asyncio.gather(*await jobs.run_due_windows(h.deps))
    await wait_state(h, ChangeState.TEST_PASSED)
    return card


async def form(h: Harness, prompt: Message, action: str, callback: str, values: dict[str, Any], user: str) -> str:
    opened = len([p for p in h.fake.of("views.open") if p["view"]["callback_id"] == callback])
    await h.slack.click(prompt, action, user=user)
    view = await h.opened_view(callback, after=opened)
    _, body = await h.slack.submit(view, values, user=user)
    return body


async def test_problems_risk_accepted_then_acknowledged(harness: Harness) -> None:
    h = harness
    card = await deployed_to_test(h)
    prompt = await in_thread(h, card, "test_problems")
    # only the owner records the result; the refusal is ephemeral and audited
    await h.slack.click(prompt, "test_passed", user=REQ)
    await eventually(lambda: any("Only the owner" in t for t in h.fake.ephemerals(REQ)), what="refusal")
    # both fields are required
    body = await form(h, prompt, "test_problems", "test_problems_form", {"description": ""}, OWNER)
    assert "criticality" in body and "description" in body
    body = await form(
        h, prompt, "test_problems", "test_problems_form", {"criticality": "high", "description": "slow"}, OWNER
    )
    await wait_state(h, ChangeState.TEST_FAILED)
    risk = await in_thread(h, card, "test_risk_decision", what="risk prompt")
    await form(h, risk, "test_risk_decision", "test_risk_form", {"decision": "proceed", "reasoning": "ok"}, OPS1)
    await eventually(lambda: any("security group" in t for t in h.fake.ephemerals(OPS1)), what="ops refused")
    await form(h, risk, "test_risk_decision", "test_risk_form", {"decision": "proceed", "reasoning": "fine"}, OWNER)
    await eventually(lambda: any("Waiting for a member" in t for t in h.fake.ephemerals(OWNER)), what="waiting")
    assert await state_of(h) is ChangeState.TEST_FAILED
    await form(h, risk, "test_risk_decision", "test_risk_form", {"decision": "proceed", "reasoning": "low"}, SEC1)
    await wait_state(h, ChangeState.RISK_ACCEPTED)
    ack = await in_thread(h, card, "test_acknowledge")
    await h.slack.click(ack, "test_acknowledge", user=SEC1)  # not the owner
    await eventually(lambda: any("Only the owner" in t for t in h.fake.ephemerals(SEC1)), what="ack refusal")
    await h.slack.click(ack, "test_acknowledge", user=OWNER)
    await wait_state(h, ChangeState.PENDING_PROD_APPROVAL)
    async with h.deps.sessions.begin() as s:
        kinds = [r.kind for r in await reports.for_change(s, 1) if r.kind != "plan"]  # previews aside
    assert kinds == ["test_result", "risk_decision", "risk_decision", "acknowledgement"]
    # the card asks for production approval (it is re-rendered just after the commit: poll, do not race it)
    await eventually(lambda: "change_approve" in str(h.latest(card).blocks), what="the card asking for prod")


async def test_a_stop_decision_fails_the_change(harness: Harness) -> None:
    h = harness
    card = await deployed_to_test(h)
    prompt = await in_thread(h, card, "test_problems")
    await form(
        h, prompt, "test_problems", "test_problems_form", {"criticality": "critical", "description": "data loss"}, OWNER
    )
    risk = await in_thread(h, card, "test_risk_decision")
    await form(h, risk, "test_risk_decision", "test_risk_form", {"decision": "stop", "reasoning": "too risky"}, SEC1)
    await wait_state(h, ChangeState.FAILED)
    await in_thread(h, card, "decided to stop")


async def test_passed_clicked_again_shows_the_acknowledge_prompt_again_and_counts_once(harness: Harness) -> None:
    """The process may die after the result commits and before the Acknowledge prompt reaches Slack: the
    owner's second click on Passed must bring the prompt back, not be told "already recorded" and stuck."""
    h = harness
    card = await deployed_to_test(h)
    prompt = await in_thread(h, card, "test_passed")

    def ack_prompts() -> list[Message]:
        return [m for m in h.thread(card) if "test_acknowledge" in str(m.blocks)]

    await h.slack.click(prompt, "test_passed", user=OWNER)
    await eventually(lambda: len(ack_prompts()) == 1, what="the acknowledge prompt")
    await h.slack.click(prompt, "test_passed", user=OWNER)
    await eventually(lambda: len(ack_prompts()) == 2, what="the acknowledge prompt, shown again")
    await eventually(lambda: any("already recorded" in t for t in h.fake.ephemerals(OWNER)), what="the note")
    async with h.deps.sessions.begin() as s:
        results = [r for r in await reports.for_change(s, 1) if r.kind == "test_result"]
    assert len(results) == 1
    await h.slack.click(ack_prompts()[-1], "test_acknowledge", user=OWNER)
    await wait_state(h, ChangeState.PENDING_PROD_APPROVAL)
