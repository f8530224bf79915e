"""A captured, validly signed interaction replayed later is dropped: no second change, no second decision."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conftest import OTHER, Harness, eventually
from sqlalchemy import func, select

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
