"""The Approve click asks only people who may approve, and the vote is bound to what the confirmation showed.

Issue 13: Slack's static ``confirm`` on a shared card is the same for every reader, so it asked people who
were then refused. Now the click runs the policy: a refused person is told at once who can approve (no
dialog); an eligible one gets a confirmation of change, stage, revision and votes, and only its submission
counts, for the revision it showed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import OTHER, OWNER, REQ, SEC1, Harness, eventually, make_config

from bot.blocks.common import validate_blocks
from storage import audit, changes
from storage.models import ChangeState

CONFIRM = "change_approve_confirm"


def confirms(h: Harness) -> list[dict[str, Any]]:
    return [p["view"] for p in h.fake.of("views.open") if p["view"]["callback_id"] == CONFIRM]


async def state(h: Harness) -> ChangeState:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        return change.state


async def decisions(h: Harness) -> list[tuple[str, int]]:
    async with h.deps.sessions.begin() as s:
        return [(a.user_id, a.revision) for a in await changes.approvals(s, 1)]


async def audit_actions(h: Harness) -> list[str]:
    async with h.deps.sessions.begin() as s:
        return [e.action for e in await audit.entries_since(s, None)]


async def test_card_has_no_static_confirm_and_refused_people_get_the_refusal_without_a_dialog(
    harness: Harness,
) -> None:
    h = harness
    card = await h.request_change(user=REQ)
    approve = next(e for b in card.blocks for e in b.get("elements", []) if e.get("action_id") == "change_approve")
    assert "confirm" not in approve  # Slack would show a static confirm to every reader, refused ones too
    for person, why in ((OTHER, "not an approver"), (REQ, "cannot approve")):
        before = len(h.fake.ephemerals(person))
        status, _ = await h.slack.click(card, "change_approve", user=person)
        assert status == 200
        told = await eventually(lambda p=person, n=before: h.fake.ephemerals(p)[n:], what=f"refusal of {person}")
        assert why in told[0] and f"<@{OWNER}>" in told[0], told  # says who can approve
    assert confirms(h) == []  # neither was asked to confirm anything
    assert await decisions(h) == [] and await state(h) is ChangeState.PENDING_TEST_APPROVAL
    assert (await audit_actions(h)).count("approval_refused") == 2  # the attempts are in the control log


async def test_eligible_person_confirms_what_they_approve_and_only_the_submission_counts(
    harness_factory: Any,
) -> None:
    h: Harness = await harness_factory()
    card = await h.request_change()
    trigger = "77.approve.trigger"
    await h.slack.click(card, "change_approve", user=OWNER, trigger_id=trigger)
    view = await h.slack.opened_by(trigger)
    validate_blocks(view["blocks"], surface="modal")
    text = json.dumps(view)
    assert view["callback_id"] == CONFIRM and view["title"]["text"] == "Approve test"
    assert "CHG-1" in text and "Revision 1" in text and "*test* stage" in text
    assert "0 of 1" in text and "Your approval completes the *test* stage" in text
    # opening the confirmation counted nothing
    assert await decisions(h) == [] and await state(h) is ChangeState.PENDING_TEST_APPROVAL
    status, body = await h.slack.submit(view, {}, user=OWNER)
    assert status == 200 and body in ("", "{}")
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks), what="card updated")
    assert await decisions(h) == [(OWNER, 1)]
    assert any("completed the test stage" in t for t in h.fake.ephemerals(OWNER))


async def test_prod_confirmation_shows_the_votes_so_far(harness_factory: Any) -> None:
    h: Harness = await harness_factory()
    card = await h.request_change()
    await h.slack.approve(card, user=OWNER)
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks))
    async with h.deps.sessions.begin() as s:  # straight to the prod stage for this test
        change = await changes.get(s, 1)
        assert change is not None
        change.state = ChangeState.PENDING_PROD_APPROVAL
    from bot.workflows import cards

    await cards.refresh_card(h.deps, 1)
    await h.slack.approve(h.latest(card), user=OWNER)
    await eventually(lambda: any("is recorded" in t for t in h.fake.ephemerals(OWNER)), what="owner's prod vote")
    trigger = "78.approve.trigger"
    await h.slack.click(h.latest(card), "change_approve", user=SEC1, trigger_id=trigger)
    text = json.dumps(await h.slack.opened_by(trigger))
    assert f"1 of 1 (<@{OWNER}>)" in text  # the owner's vote, by name
    assert "0 of 1 \\u00b7 *yours counts here*" in text or "0 of 1 · *yours counts here*" in text
    assert "completes the *prod* stage" in text


async def test_an_edit_between_opening_and_submitting_makes_the_confirmation_stale(harness: Harness) -> None:
    h = harness
    card = await h.request_change()

    async def edit() -> None:
        await h.slack.command("edit CHG-1", user=REQ)
        form = await h.opened_view("change_edit")
        await h.slack.submit(form, {"title": "Update OpenSSL to 3.0.16"}, user=REQ)
        await eventually(lambda: "3.0.16" in str(h.latest(card).blocks), what="edited card")

    status, _ = await h.slack.approve(card, user=OWNER, edit=edit)
    assert status == 200
    told = await eventually(lambda: [t for t in h.fake.ephemerals(OWNER) if "edited since" in t], what="stale")
    assert "you saw revision 1, it is now revision 2" in told[0] and "nothing was counted" in told[0]
    assert await decisions(h) == [] and await state(h) is ChangeState.PENDING_TEST_APPROVAL
    # the updated card's confirmation is for revision 2, and that one counts
    await h.slack.approve(h.latest(card), user=OWNER)
    await eventually(lambda: "Approved for test" in str(h.latest(card).blocks), what="approved revision 2")
    assert await decisions(h) == [(OWNER, 2)]
    assert "Revision 2" in json.dumps(confirms(h)[-1])


async def test_two_confirmations_of_one_person_count_once(harness_factory: Any) -> None:
    config = make_config(policy={"stages": {"test": [{"group": "security", "count": 2}]}})
    h: Harness = await harness_factory(config)
    card = await h.request_change()
    triggers = ["81.approve.trigger", "82.approve.trigger"]
    for t in triggers:  # a double click opens two confirmations
        await h.slack.click(card, "change_approve", user=SEC1, trigger_id=t)
    views = [await h.slack.opened_by(t) for t in triggers]
    results = await asyncio.gather(*(h.slack.submit(v, {}, user=SEC1) for v in views))
    assert [status for status, _ in results] == [200, 200]
    told = await eventually(lambda: h.fake.ephemerals(SEC1) if len(h.fake.ephemerals(SEC1)) >= 2 else None)
    assert sorted("recorded" in t for t in told) == [False, True] and any("already" in t for t in told), told
    assert await decisions(h) == [(SEC1, 1)]
    assert (await audit_actions(h)).count("approved") == 1


async def test_step_up_is_announced_in_the_confirmation_and_still_reserves(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(policy={"step_up": {"when": {"stage": "test"}, "method": "totp"}}))
    card = await h.request_change()
    trigger = "90.approve.trigger"
    await h.slack.click(card, "change_approve", user=OWNER, trigger_id=trigger)
    view = await h.slack.opened_by(trigger)
    assert "/patch confirm CHG-1 CODE" in json.dumps(view) and "second factor" in json.dumps(view)
    await h.slack.submit(view, {}, user=OWNER)
    told = await eventually(lambda: [t for t in h.fake.ephemerals(OWNER) if "reserved" in t], what="reserved")
    assert "revision 1" in told[0]
    assert await decisions(h) == [] and await state(h) is ChangeState.PENDING_TEST_APPROVAL
