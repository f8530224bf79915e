"""A captured, validly signed interaction replayed later is dropped: no second change, no second decision."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conftest import OTHER, REQ, Harness, eventually
from sqlalchemy import func, select, text

from bot.workflows import replay
from storage.models import Change, SlackDelivery


async def test_replayed_modal_submission_and_click_are_dropped(harness: Harness) -> None:
    h = harness
    sent: list[dict[str, Any]] = []
    original = h.slack.interaction

    async def capture(payload: dict[str, Any], **kw: Any) -> tuple[int, str]:
        sent.append(payload)
        return await original(payload, **kw)

    h.slack.interaction = capture  # type: ignore[method-assign]
    card = await h.request_change()
    submission = next(p for p in sent if p["type"] == "view_submission")
    status, _ = await original(submission)  # the attacker re-sends the captured request, freshly signed
    assert status == 200

    await h.slack.click(card, "change_approve", user=OTHER)  # refused: not an approver
    await eventually(lambda: h.fake.ephemerals(OTHER), what="the refusal")
    click = next(p for p in sent if p["type"] == "block_actions")
    status, _ = await original(click)
    assert status == 200
    # a fresh click (a new action_ts) is still handled
    await h.slack.click(card, "change_approve", user=OTHER)
    await eventually(lambda: len(h.fake.ephemerals(OTHER)) == 2, what="the second real click's refusal")

    async with h.deps.sessions.begin() as s:
        assert await s.scalar(select(func.count()).select_from(Change)) == 1
    assert len(h.cards()) == 1
    assert len(h.fake.ephemerals(OTHER)) == 2  # the replayed click said nothing


async def test_old_delivery_keys_are_forgotten(harness: Harness) -> None:
    h = harness
    await h.request_change()
    async with h.deps.sessions.begin() as s:
        assert await s.scalar(select(func.count()).select_from(SlackDelivery)) >= 1
    h.clock.advance(replay.KEEP + timedelta(minutes=1))
    async with h.deps.sessions.begin() as s:
        assert await replay.forget_old(s, now=h.clock.now()) >= 1
        assert await s.scalar(select(func.count()).select_from(SlackDelivery)) == 0


FAIL_ONCE = {
    "sqlite": [
        "CREATE TABLE fail_once (x INTEGER)",
        "INSERT INTO fail_once VALUES (1)",
        "CREATE TRIGGER changes_fail_once BEFORE INSERT ON changes WHEN (SELECT count(*) FROM fail_once) > 0 "
        "BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
    ],
    "postgres": [
        "CREATE TABLE fail_once (x INTEGER)",
        "INSERT INTO fail_once VALUES (1)",
        "CREATE FUNCTION changes_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF (SELECT count(*) FROM fail_once) > 0 THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER changes_fail_once BEFORE INSERT ON changes FOR EACH ROW EXECUTE FUNCTION changes_fail_once()",
    ],
}


async def test_a_submission_whose_work_failed_is_not_a_replay_when_resent(harness: Harness, backend: str) -> None:
    """The key commits with the listener's work: when that work fails (here the database refuses the new change,
    as a crash before the commit would leave it), resending the same submission creates the change."""
    h = harness
    async with h.deps.sessions.begin() as s:
        for statement in FAIL_ONCE[backend]:
            await s.execute(text(statement))
    status, _ = await h.slack.command("request web-shop", user=REQ)
    assert status == 200
    view = await h.opened_view("change_request", after=0)
    form = {"title": "Update OpenSSL", "details": "CVE-2024-5535", "rollback_plan": "Reinstall the old package"}
    status, _ = await h.slack.submit(view, form, user=REQ)
    assert status == 200
    await eventually(lambda: any("nothing was changed" in e for e in h.fake.ephemerals(REQ)), what="error")
    async with h.deps.sessions.begin() as s:
        assert await s.scalar(select(func.count()).select_from(Change)) == 0
        assert await s.scalar(select(func.count()).select_from(SlackDelivery)) == 0  # rolled back with the work
        await s.execute(text("DELETE FROM fail_once"))

    status, _ = await h.slack.submit(view, form, user=REQ)  # the identical request, sent again
    assert status == 200
    await h.card(1)
    async with h.deps.sessions.begin() as s:
        assert await s.scalar(select(func.count()).select_from(Change)) == 1
        assert await s.scalar(select(func.count()).select_from(SlackDelivery)) == 1
    status, _ = await h.slack.submit(view, form, user=REQ)  # and a third time: now that is a replay
    assert status == 200
    async with h.deps.sessions.begin() as s:
        assert await s.scalar(select(func.count()).select_from(Change)) == 1
