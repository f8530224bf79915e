"""End to end through the real /slack/events endpoint: request → card → approvals under policy."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from conftest import OPS1, OTHER, OWNER, REQ, SEC1, SEC2, Harness, eventually, make_config

from bot.jobs import run_sweep
from bot.sandbox.fake_slack import Message
from bot.workflows import cards
from storage import changes
from storage.models import ChangeState


def as_first_shown(h: Harness, card: Message) -> Message:
    """The card as first rendered (a person whose Slack client has not refreshed yet)."""
    first = next(v for v in h.latest(card).history if "change_approve" in str(v["blocks"]))
    return Message(card.channel, card.ts, card.text, first["blocks"], None)


def texts(h: Harness, card) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.text for m in h.thread(card)]


async def state_of(h: Harness, change_id: int = 1) -> ChangeState:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, change_id)
        assert change is not None
        return change.state


async def test_request_modal_submit_posts_card_and_mentions_approvers(harness: Harness) -> None:
    card = await harness.request_change()
    assert card.channel == "C0APPROVALS"
    assert card.text.startswith("CHG-1: Update OpenSSL")
    assert any(b.get("type") == "actions" for b in card.blocks)
    assert await eventually(lambda: any(f"<@{OWNER}>" in t for t in texts(harness, card)), what="mention")
    assert await state_of(harness) is ChangeState.PENDING_TEST_APPROVAL


async def test_invalid_modal_input_is_shown_inline_and_nothing_saved(harness: Harness) -> None:
    await harness.slack.command("request web-shop", user=REQ)
    view = await harness.opened_view("change_request")
    status, body = await harness.slack.submit(view, {"title": "x", "rollback_plan": "r"}, user=REQ)
    assert status == 200
    assert '"response_action":"errors"' in body.replace(" ", "") and "title" in body
    async with harness.deps.sessions.begin() as s:
        assert await changes.list_changes(s) == []


async def test_owner_approves_test_stage_and_requester_is_told(harness: Harness) -> None:
    card = await harness.request_change()
    status, _ = await harness.slack.approve(card, user=OWNER)
    assert status == 200
    await eventually(lambda: "Approved for test" in str(harness.latest(card).blocks), what="card updated")
    assert await state_of(harness) is ChangeState.APPROVED_FOR_TEST
    assert await eventually(lambda: any(f"<@{REQ}>" in t and "approved" in t for t in texts(harness, card)))
    # the buttons are gone once nothing is pending
    assert not any(b.get("type") == "actions" for b in harness.latest(card).blocks)


async def test_self_approval_refused_and_audited(harness: Harness) -> None:
    config = make_config(systems={"web-shop": {"owner": REQ}})
    h = harness
    h.config = config
    object.__setattr__(h.deps, "config", config)
    card = await h.request_change(user=REQ)
    await h.slack.click(card, "change_approve", user=REQ)
    await eventually(lambda: any("cannot approve" in t for t in h.fake.ephemerals(REQ)), what="refusal")
    assert await state_of(h) is ChangeState.PENDING_TEST_APPROVAL
    async with h.deps.sessions.begin() as s:
        assert await changes.approvals(s, 1) == []
    # nobody else is eligible: the card says so and names the fallback group
    assert "Nobody eligible" in str(h.latest(card).blocks) or "security group can unblock" in str(h.latest(card).blocks)
    await h.slack.approve(card, user=SEC1)  # fallback member unblocks
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks), what="fallback approval")


async def test_ineligible_approver_refused_named_who_can(harness: Harness) -> None:
    card = await harness.request_change()
    await harness.slack.click(card, "change_approve", user=OTHER)
    msg = await eventually(lambda: harness.fake.ephemerals(OTHER), what="ephemeral")
    assert "not an approver" in msg[-1] and f"<@{OWNER}>" in msg[-1]
    assert await state_of(harness) is ChangeState.PENDING_TEST_APPROVAL


async def test_prod_needs_owner_and_security_distinct_people(harness_factory) -> None:  # type: ignore[no-untyped-def]
    # the owner is also in security: one person fills one requirement only (four eyes)
    config = make_config(groups={"security": [OWNER, SEC1]})
    h: Harness = await harness_factory(config)
    card = await h.request_change()
    await h.slack.approve(card, user=OWNER)
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks))
    async with h.deps.sessions.begin() as s:  # skip the test stage for this policy test
        c = await changes.get(s, 1)
        assert c is not None
        c.state = ChangeState.PENDING_PROD_APPROVAL

    await cards.refresh_card(h.deps, 1)
    await h.slack.approve(h.latest(card), user=OWNER)
    await eventually(lambda: h.fake.ephemerals(OWNER)[-1:] and "recorded" in h.fake.ephemerals(OWNER)[-1])
    assert await state_of(h) is ChangeState.PENDING_PROD_APPROVAL
    await h.slack.approve(h.latest(card), user=SEC1)
    await eventually(lambda: "Approved for prod" in str(h.latest(card).blocks))


async def test_reject_requires_reason_and_rejects(harness: Harness) -> None:
    card = await harness.request_change()
    await harness.slack.click(card, "change_reject", user=OWNER)
    view = await harness.opened_view("change_reject_reason")
    _status, body = await harness.slack.submit(view, {"reason": None}, user=OWNER)
    assert "errors" in body and await state_of(harness) is ChangeState.PENDING_TEST_APPROVAL
    await harness.slack.submit(view, {"reason": "Breaks the <!channel> checkout"}, user=OWNER)
    await eventually(lambda: "Rejected" in str(harness.latest(card).blocks))
    reason_msgs = await eventually(lambda: [t for t in texts(harness, card) if t.startswith("Reason:")])
    assert "&lt;!channel&gt;" in reason_msgs[0]  # escaped: no mass mention
    assert await state_of(harness) is ChangeState.REJECTED


async def test_edit_makes_approvals_stale_and_asks_again(harness_factory) -> None:  # type: ignore[no-untyped-def]
    config = make_config(
        policy={"stages": {"test": [{"role": "owner", "count": 1}, {"group": "security", "count": 1}]}}
    )
    h: Harness = await harness_factory(config)
    card = await h.request_change()
    await h.slack.approve(card, user=OWNER)
    await eventually(lambda: "recorded" in " ".join(h.fake.ephemerals(OWNER)))
    await h.slack.command("edit CHG-1", user=REQ)
    view = await h.opened_view("change_edit")
    await h.slack.submit(view, {"title": "Update OpenSSL to 3.0.16"}, user=REQ)
    msg = await eventually(lambda: [t for t in texts(h, card) if "edited" in t], what="edit notice")
    assert "Title" in msg[0] and "1 earlier approval" in msg[0] and f"<@{OWNER}>" in msg[0]
    async with h.deps.sessions.begin() as s:
        rows = await changes.approvals(s, 1)
    assert [a.stale for a in rows] == [True]
    # the old card's button (revision 1) no longer counts
    await h.slack.click(as_first_shown(h, card), "change_approve", user=SEC1)
    await eventually(lambda: any("edited since" in t for t in h.fake.ephemerals(SEC1)))
    await h.slack.approve(h.latest(card), user=SEC1)
    await h.slack.approve(h.latest(card), user=OWNER)
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks))


async def test_expiry_and_reminders(harness: Harness) -> None:
    card = await harness.request_change()
    harness.clock.advance(timedelta(hours=25))
    assert await run_sweep(harness.deps) == 1
    await eventually(lambda: any("Reminder" in t and f"<@{OWNER}>" in t for t in texts(harness, card)))
    harness.clock.advance(timedelta(hours=48))
    await run_sweep(harness.deps)
    await eventually(lambda: "Expired" in str(harness.latest(card).blocks))
    assert await state_of(harness) is ChangeState.EXPIRED
    await harness.slack.click(as_first_shown(harness, card), "change_approve", user=OWNER)  # a late click
    await eventually(lambda: any("not awaiting" in t for t in harness.fake.ephemerals(OWNER)))


async def test_double_click_and_concurrent_clicks_count_once(harness_factory) -> None:  # type: ignore[no-untyped-def]
    config = make_config(
        groups={"security": [SEC1, SEC2, OPS1] + [f"U0SEC{i:02d}" for i in range(20)]},
        policy={"stages": {"test": [{"group": "security", "count": 2}]}},
    )
    h: Harness = await harness_factory(config)
    card = await h.request_change()
    # a double click by one person
    await asyncio.gather(h.slack.approve(card, user=SEC1), h.slack.approve(card, user=SEC1))
    await eventually(lambda: len(h.fake.ephemerals(SEC1)) == 2)
    async with h.deps.sessions.begin() as s:
        assert len(await changes.approvals(s, 1)) == 1
    # 20 eligible people click at once: exactly one more approval completes the stage
    people = [f"U0SEC{i:02d}" for i in range(20)]
    results = await asyncio.gather(*(h.slack.approve(card, user=u) for u in people))
    assert all(status == 200 for status, _ in results)
    await eventually(lambda: sum(len(h.fake.ephemerals(u)) for u in people) == 20, timeout=15)
    async with h.deps.sessions.begin() as s:
        rows = await changes.approvals(s, 1)
    assert len(rows) == 2 and len({a.user_id for a in rows}) == 2
    assert await state_of(h) is ChangeState.APPROVED_FOR_TEST


async def test_two_replicas_one_database_one_decision(harness_factory) -> None:  # type: ignore[no-untyped-def]
    a: Harness = await harness_factory()
    b: Harness = await harness_factory()
    card = await a.request_change()
    # the same person confirms twice, once through each replica, at the same moment
    await a.slack.click(card, "change_approve", user=OWNER, trigger_id="a.approve")
    await b.slack.click(card, "change_approve", user=OWNER, trigger_id="b.approve")
    views = [await a.slack.opened_by("a.approve"), await a.slack.opened_by("b.approve")]
    await asyncio.gather(a.slack.submit(views[0], {}, user=OWNER), b.slack.submit(views[1], {}, user=OWNER))
    await eventually(lambda: len(a.fake.ephemerals(OWNER)) == 2)
    async with a.deps.sessions.begin() as s:
        assert len(await changes.approvals(s, 1)) == 1
        entries = [e.action for e in await __import__("storage.audit", fromlist=["x"]).entries_since(s, None)]
    assert entries.count("approved") == 1


async def test_forged_or_stale_signature_gets_401_and_stores_nothing(harness: Harness) -> None:
    status, _ = await harness.slack.command("request web-shop", user=REQ, secret="wrong-secret")
    assert status == 401
    status, _ = await harness.slack.command("request web-shop", user=REQ, timestamp=int(time.time()) - 600)
    assert status == 401
    assert harness.fake.of("views.open") == []
    async with harness.deps.sessions.begin() as s:
        assert await changes.list_changes(s) == []


async def test_card_shows_the_executor_plan_preview_for_the_stage(harness: Harness) -> None:
    card = await harness.request_change()
    await eventually(lambda: "executor preview" in str(harness.latest(card).blocks), what="plan preview")
    text = str(harness.latest(card).blocks)
    assert "What the test deployment will do" in text and "`web-shop` (dry-run)" in text
    # an edit makes a new revision, which gets its own preview
    await harness.slack.command("edit CHG-1", user=REQ)
    view = await harness.opened_view("change_edit")
    await harness.slack.submit(view, {"title": "Update OpenSSL to 3.0.16"}, user=REQ)
    await eventually(
        lambda: (
            "Revision 2" in str(harness.latest(card).blocks) and "executor preview" in str(harness.latest(card).blocks)
        ),
        what="preview of revision 2",
    )
    async with harness.deps.sessions.begin() as s:
        from storage import reports

        rows = await reports.for_change(s, 1, kind="plan")
    assert sorted(r.payload["revision"] for r in rows) == [1, 2]
