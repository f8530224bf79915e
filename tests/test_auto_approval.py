"""Approve after N days with a veto window (policy.auto_approve), on the fake clock through signed requests."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from conftest import OTHER, OWNER, SEC1, Harness, eventually, make_config
from deploy_support import in_thread, state_of, wait_state
from test_acceptance import deployed_to_test, form

from bot import jobs
from bot.errors import ConfigError
from bot.workflows import views
from storage import audit, changes
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus, ChangeState


def policy(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"policy": {"auto_approve": list(rules)}}


async def history(h: Harness, action: str) -> list[dict[str, Any]]:
    async with h.deps.sessions.begin() as s:
        entries = await audit.entries_since(s, None)
    return [json.loads(e.body) for e in entries if e.action == action]


def with_veto(h: Harness, card: Any) -> Any:
    latest = h.latest(card)
    return latest if "auto_approval_veto" in json.dumps(latest.blocks) else None


async def show(h: Harness, change_id: int = 1) -> dict[str, Any]:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, change_id)
        assert change is not None
        return views.to_json(await views.snapshot(s, config=h.config, change=change))


async def test_a_standard_change_approves_its_test_stage_by_policy(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(**policy({"stage": "test", "class": "standard", "after": "0d"})))
    card = await h.request_change(change_class="standard")
    assert "Approves itself for *test*" in json.dumps(h.latest(card).blocks)  # said from the start
    assert await jobs.run_auto_approvals(h.deps) == 1
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    note = await in_thread(h, card, "by policy")
    assert "auto_approve[1] (test, standard, after 0m)" in note.text and "nobody vetoed" in note.text
    [entry] = await history(h, "auto_approved")
    assert entry["actor"] == "policy" and entry["details"]["rule"] == "auto_approve[1] (test, standard, after 0m)"
    assert (await show(h))["auto_approval"]["vetoed_by"] is None
    assert await jobs.run_auto_approvals(h.deps) == 0  # once


async def test_no_rule_matches_a_normal_change_and_emergencies_never_match(harness_factory: Any) -> None:
    h: Harness = await harness_factory(
        make_config(**policy({"stage": "test", "class": "standard", "after": "0d"}, {"stage": "prod", "after": "1d"}))
    )
    card = await h.request_change()  # class normal: the standard-only rule does not apply
    assert "Approves itself" not in json.dumps(h.latest(card).blocks)
    await h.request_change(change_class="emergency")
    assert await jobs.run_auto_approvals(h.deps) == 0
    assert await state_of(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    assert await state_of(h, 2) is ChangeState.PENDING_TEST_APPROVAL
    assert (await show(h, 2))["auto_approval"] is None
    with pytest.raises(ConfigError, match="never approved automatically"):
        make_config(**policy({"stage": "prod", "class": "emergency", "after": "7d"}))
    with pytest.raises(ConfigError, match="veto window cannot be longer"):
        make_config(**policy({"stage": "prod", "after": "1d", "veto": "2d"}))


async def test_the_veto_window_is_announced_and_a_veto_returns_the_change_to_explicit_approval(
    harness_factory: Any,
) -> None:
    h: Harness = await harness_factory(make_config(**policy({"stage": "test", "after": "3d", "veto": "1d"})))
    card = await h.request_change()
    await jobs.run_auto_approvals(h.deps)  # books it; the veto window opens in two days
    assert "The veto window opens" in json.dumps(h.latest(card).blocks)
    h.clock.advance(timedelta(days=2, minutes=1))
    assert await jobs.run_auto_approvals(h.deps) == 1
    await in_thread(h, card, "The veto window is open")
    latest = await eventually(
        lambda: h.latest(card) if "auto_approval_veto" in json.dumps(h.latest(card).blocks) else None
    )
    # a person who cannot approve cannot veto; the refusal is audited
    await h.slack.click(latest, "auto_approval_veto", user=OTHER)
    view = await h.opened_view("auto_approval_veto_reason")
    _, body = await h.slack.submit(view, {"reason": ""}, user=OTHER)
    assert "A veto needs a reason" in body
    await h.slack.submit(view, {"reason": "not mine to stop"}, user=OTHER)
    await eventually(lambda: any("Only an eligible test approver" in t for t in h.fake.ephemerals(OTHER)))
    assert len(await history(h, "veto_refused")) == 1
    await h.slack.click(latest, "auto_approval_veto", user=OWNER)
    view = await h.opened_view("auto_approval_veto_reason", after=1)
    await h.slack.submit(view, {"reason": "wait for the <!channel> vendor fix"}, user=OWNER)
    note = await in_thread(h, card, "vetoed the automatic test approval")
    assert "&lt;!channel&gt;" in note.text and "<!channel>" not in note.text
    h.clock.advance(timedelta(days=2))
    assert await jobs.run_auto_approvals(h.deps) == 0
    assert await state_of(h) is ChangeState.PENDING_TEST_APPROVAL
    shown = (await show(h))["auto_approval"]
    assert shown["vetoed_by"] == OWNER and shown["rule"] == "auto_approve[1] (test, after 3d, veto 1d)"
    [vetoed] = await history(h, "auto_approval_vetoed")
    assert vetoed["actor"] == OWNER and vetoed["details"]["reason"].startswith("wait for")
    await h.slack.approve(h.latest(card), user=OWNER)  # explicit approval still works
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)


async def test_a_veto_window_missed_while_the_bot_was_down_is_given_in_full(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(**policy({"stage": "test", "after": "2d", "veto": "1d"})))
    card = await h.request_change()
    await jobs.run_auto_approvals(h.deps)
    h.clock.advance(timedelta(days=3))  # down through the whole veto window and past the approval time
    assert await jobs.run_auto_approvals(h.deps) == 1
    await in_thread(h, card, "The veto window is open")
    assert await state_of(h) is ChangeState.PENDING_TEST_APPROVAL  # not approved without a chance to veto
    h.clock.advance(timedelta(hours=23))
    await jobs.run_auto_approvals(h.deps)
    assert await state_of(h) is ChangeState.PENDING_TEST_APPROVAL
    h.clock.advance(timedelta(hours=1, minutes=1))
    await jobs.run_auto_approvals(h.deps)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)


async def test_an_edit_starts_a_new_booking_and_the_old_veto_button_is_out_of_date(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(**policy({"stage": "test", "after": "1d", "veto": "1d"})))
    card = await h.request_change()
    await jobs.run_auto_approvals(h.deps)
    await in_thread(h, card, "The veto window is open")
    old = await eventually(
        lambda: h.latest(card) if "auto_approval_veto" in json.dumps(h.latest(card).blocks) else None
    )
    async with h.deps.sessions.begin() as s:  # a second revision (an edit) would re-open approval
        change = await changes.get(s, 1)
        assert change is not None
        change.revision += 1
    await h.slack.click(old, "auto_approval_veto", user=SEC1)
    view = await h.opened_view("auto_approval_veto_reason")
    await h.slack.submit(view, {"reason": "stale"}, user=SEC1)
    await eventually(lambda: any("no pending auto-approval" in t for t in h.fake.ephemerals(SEC1)))
    assert await jobs.run_auto_approvals(h.deps) >= 1  # the new revision is booked and announced


async def to_pending_prod(h: Harness, *, passed: bool) -> Any:
    card = await deployed_to_test(h)
    prompt = await in_thread(h, card, "test_problems")
    if passed:
        await h.slack.click(prompt, "test_passed", user=OWNER)
    else:
        problems = {"criticality": "low", "description": "slow start"}
        await form(h, prompt, "test_problems", "test_problems_form", problems, OWNER)
        await wait_state(h, ChangeState.TEST_FAILED)
        risk = await in_thread(h, card, "test_risk_decision")
        for user in (OWNER, SEC1):
            await form(
                h, risk, "test_risk_decision", "test_risk_form", {"decision": "proceed", "reasoning": "ok"}, user
            )
        await wait_state(h, ChangeState.RISK_ACCEPTED)
    ack = await in_thread(h, card, "test_acknowledge")
    await h.slack.click(ack, "test_acknowledge", user=OWNER)
    await wait_state(h, ChangeState.PENDING_PROD_APPROVAL)
    return card


@pytest.mark.parametrize("passed", [True, False], ids=["test-passed", "test-failed-risk-accepted"])
async def test_prod_approves_itself_only_over_a_passed_test(harness_factory: Any, passed: bool) -> None:
    h: Harness = await harness_factory(make_config(**policy({"stage": "prod", "after": "0d"})))
    await to_pending_prod(h, passed=passed)
    await jobs.run_auto_approvals(h.deps)
    if passed:
        await wait_state(h, ChangeState.APPROVED_FOR_PROD)
    else:
        assert await state_of(h) is ChangeState.PENDING_PROD_APPROVAL
        assert (await show(h))["auto_approval"] is None


async def link_advisory(h: Harness, *, tier: str) -> None:
    """An advisory released ten days ago, linked to CHG-1, whose match on web-shop the rules ranked ``tier``."""
    now = h.clock.now()
    async with h.deps.sessions.begin() as s:
        record = AdvisoryRecord(
            primary_id=f"GHSA-test-{tier}", sources=["osv"], aliases=[], data={"priority": "routine"},
            content_hash="0" * 64, severity="high", published=now - timedelta(days=10), modified=None, withdrawn=None,
            status=AdvisoryStatus.CHANGE_REQUESTED, change_id=1, first_seen=now, updated_at=now,
        )  # fmt: skip
        s.add(record)
        await s.flush()
        s.add(AdvisoryMatch(advisory_id=record.id, system="web-shop", ecosystem="PyPI", package="flask",
                            installed="2.2.2", status="affected", priority=tier))  # fmt: skip


@pytest.mark.parametrize("tier", ["routine", "fix-now"])
async def test_a_priority_rule_reads_the_linked_advisorys_computed_tier(harness_factory: Any, tier: str) -> None:
    # record.data says "routine" for both: only the match's computed tier may decide
    rule = {"stage": "prod", "priority": "routine", "after": "7d", "veto": "48h"}
    tiers = [{"tier": "fix-now", "when": {"kev": True}}, {"tier": "routine"}]
    h: Harness = await harness_factory(
        make_config(policy={"auto_approve": [rule], "priority": tiers, "sla_days": {"fix-now": 7, "routine": 90}})
    )
    card = await to_pending_prod(h, passed=True)
    await link_advisory(h, tier=tier)
    await jobs.run_auto_approvals(h.deps)
    if tier == "fix-now":
        assert (await show(h))["auto_approval"] is None
        h.clock.advance(timedelta(days=9))
        await jobs.run_auto_approvals(h.deps)
        assert await state_of(h) is ChangeState.PENDING_PROD_APPROVAL
        return
    await in_thread(h, card, "The veto window is open")
    auto = (await show(h))["auto_approval"]
    assert auto is not None and "routine" in auto["rule"] and auto["vetoed_by"] is None
    assert await state_of(h) is ChangeState.PENDING_PROD_APPROVAL  # the 48h veto window runs first
    h.clock.advance(timedelta(hours=49))
    await jobs.run_auto_approvals(h.deps)
    await wait_state(h, ChangeState.APPROVED_FOR_PROD)
