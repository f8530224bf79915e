"""After a commit, Slack failures are delivered later (outbox), never reported as "nothing was changed"."""

from __future__ import annotations

from datetime import timedelta

from conftest import OWNER, REQ, Harness, eventually, eventually_async
from sqlalchemy import select

from bot.slack.notify import CARD_REFRESH
from bot.slack.outbox_sender import OutboxSender
from bot.views import Stage
from bot.workflows import approval, cards
from storage import changes
from storage.models import ChangeState, OutboxMessage


async def card_handed_to_outbox(h: Harness) -> bool:
    async with h.deps.sessions.begin() as s:
        rows = await s.execute(select(OutboxMessage.key).where(OutboxMessage.key.startswith(CARD_REFRESH)))
        return bool(rows.scalars().all())


async def test_card_update_failing_after_an_approval_is_retried_and_never_says_nothing_changed(
    harness: Harness,
) -> None:
    h = harness
    card = await h.request_change()
    h.fake.fail("chat.update", status=500, times=50)  # every card update 5xx, retries included
    status, _ = await h.slack.approve(card, user=OWNER)
    assert status == 200
    # the thread note is not lost
    await eventually(
        lambda: any(f"<@{REQ}>" in m.text and "approved" in m.text for m in h.thread(card)), what="thread note"
    )
    notes = await eventually(lambda: h.fake.ephemerals(OWNER), what="the approver's note")
    assert not any("nothing was changed" in n for n in notes), notes
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None and change.state is ChangeState.APPROVED_FOR_TEST
    assert "Approved for test" not in str(h.latest(card).blocks)  # Slack refused every update so far

    # the update gave up (after the client's own retries) and handed the card to the outbox; then Slack is back
    await eventually_async(lambda: card_handed_to_outbox(h), what="the card in the outbox")
    h.fake.failures.pop("chat.update", None)
    await OutboxSender(h.deps, channel_gap=0.01).drain()
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks), what="the card catching up")


async def test_a_card_left_behind_by_a_crash_after_the_commit_is_re_rendered(harness: Harness) -> None:
    """The decision commits, and the process dies before chat.update (here: the workflow is called directly,
    as the listener would, and nothing after the commit runs). The card sweep finds the card behind its
    change's control log once the grace has passed and re-renders it; a current card is left alone."""
    h = harness
    card = await h.request_change()
    other = await h.request_change(system="web-shop")
    await h.deps.card_marks.flush()
    async with h.deps.sessions.begin() as s:
        result = await approval.approve(
            s, config=h.deps.config, change_id=1, stage=Stage.TEST, revision=1, user=OWNER, now=h.clock.now()
        )
    assert result.change.state is ChangeState.APPROVED_FOR_TEST
    assert "Approved for test" not in str(h.latest(card).blocks)

    updates = len(h.fake.of("chat.update"))
    through, redrawn = await cards.resync_behind(h.deps, after=0, grace=timedelta(seconds=30))
    assert redrawn == 0  # within the grace: the move's own refresh may still be on its way
    h.clock.advance(timedelta(seconds=31))
    through, redrawn = await cards.resync_behind(h.deps, after=0, grace=timedelta(seconds=30))
    assert redrawn == 1 and through > 0
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks), what="the card catching up")
    assert [p["ts"] for p in h.fake.of("chat.update")[updates:]] == [card.ts]  # not the other, current card
    assert h.latest(other).ts == other.ts

    await h.deps.card_marks.flush()
    again, redrawn = await cards.resync_behind(h.deps, after=0, grace=timedelta(seconds=30))
    assert redrawn == 0 and again == through  # recorded as shown: not drawn twice
