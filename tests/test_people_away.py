"""People are away (issue 12, items 6 and 7): delegation, escalation, the requester's nudge, the CAB digest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import OWNER, REQ, SEC1, SEC2, Harness, eventually, make_config
from dateutil.rrule import rrulestr
from deploy_support import book, wait_state
from sqlalchemy import select
from test_scheduling import command

from bot import jobs
from bot.errors import ConfigError
from bot.slack.outbox_sender import OutboxSender
from bot.workflows import views
from storage import changes
from storage.models import AdvisoryRecord, AdvisoryStatus, AuditEntry, ChangeState, Nudge

MANAGER = "U0MGR1"


def replies(h: Harness, user: str) -> list[str]:
    """The person's ephemerals apart from request confirmations (which may arrive late: do not race them)."""
    return [t for t in h.fake.ephemerals(user) if "is requested: see" not in t]


async def click_reply(h: Harness, card: Any, action: str, user: str) -> str:
    before = len(replies(h, user))
    await h.slack.click(h.latest(card), action, user=user)
    got = await eventually(lambda: replies(h, user)[before:], what=f"{action} reply")
    return str(got[0])


async def approve_reply(h: Harness, card: Any, user: str) -> str:
    """Click Approve as ``user``: confirm in the modal when one opens (eligible), then the reply either way."""
    before = len(replies(h, user))
    trigger = f"{user}.{before}.approve"
    await h.slack.click(h.latest(card), "change_approve", user=user, trigger_id=trigger)

    def opened() -> dict[str, Any] | None:
        return next((h.fake.views[v] for v, t in h.fake.view_triggers.items() if t == trigger), None)

    await eventually(lambda: opened() is not None or replies(h, user)[before:], what="approve modal or reply")
    view = opened()
    if view is not None:
        await h.slack.submit(view, {}, user=user)
    got = await eventually(lambda: replies(h, user)[before:], what="change_approve reply")
    return str(got[0])


async def log_of(h: Harness, action: str) -> list[dict[str, Any]]:
    async with h.deps.sessions.begin() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.action == action))).scalars()
        return [{"actor": r.actor, "change_id": r.change_id, **json.loads(r.body)["details"]} for r in rows]


def until(h: Harness, days: int) -> str:
    return (h.clock.now() + timedelta(days=days)).date().isoformat()


async def test_a_delegate_approves_for_the_delegator_but_never_their_own_change(harness: Harness) -> None:
    h = harness
    reply = await command(h, f"delegate <@{SEC2}|sam> --until {until(h, 3)}", user=OWNER)
    assert "Delegation #1" in reply["text"] and f"<@{SEC2}>" in reply["text"], reply
    card = await h.request_change()
    assert "completed the test stage" in await approve_reply(h, card, SEC2)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        data = views.to_json(await views.snapshot(s, config=h.config, change=change))
    [vote] = data["approvals"]
    assert vote["user"] == SEC2 and vote["delegated_from"] == OWNER
    [entry] = await log_of(h, "approved")
    assert entry["actor"] == SEC2 and entry["delegated_from"] == OWNER and entry["requirement"] == "owner:web-shop"
    assert (await log_of(h, "delegation_created"))[0]["delegate"] == SEC2
    await eventually(lambda: f"<@{SEC2}> (for <@{OWNER}>)" in json.dumps(h.latest(card).blocks), what="card")
    # the delegate requested CHG-2: no approving it, not even for the owner
    card2 = await h.request_change(user=SEC2, title="Update nginx")
    assert "not even as delegate" in await approve_reply(h, card2, SEC2)
    async with h.deps.sessions.begin() as s:
        change2 = await changes.get(s, 2)
        assert change2 is not None and change2.state is ChangeState.PENDING_TEST_APPROVAL
    refusals = await log_of(h, "approval_refused")
    assert refusals[-1]["actor"] == SEC2 and "not even as delegate" in refusals[-1]["reason"]
    # list and cancel: only the delegator cancels; afterwards the delegate is an ordinary colleague again
    assert "#1" in (await command(h, "delegate list", user=SEC2))["text"]
    assert "no delegation #1" in (await command(h, "delegate cancel 1", user=SEC2))["text"]
    assert "is cancelled" in (await command(h, "delegate cancel 1", user=OWNER))["text"]
    card3 = await h.request_change(title="Update curl")
    assert "You are not an approver" in await approve_reply(h, card3, SEC2)


async def test_a_delegate_rejects_for_the_delegator_and_it_is_recorded_as_such(harness: Harness) -> None:
    h = harness
    card = await h.request_change()
    # before any delegation SEC2 is no approver of the test stage: refused before a reason is asked for
    assert "not an approver" in await click_reply(h, card, "change_reject", SEC2)
    await command(h, f"delegate <@{SEC2}> --until {until(h, 3)}", user=OWNER)
    await h.slack.click(h.latest(card), "change_reject", user=SEC2)
    view = await h.opened_view("change_reject_reason")
    await h.slack.submit(view, {"reason": "Clashes with the sale"}, user=SEC2)
    await wait_state(h, ChangeState.REJECTED)
    assert any(f"on behalf of <@{OWNER}>" in t for t in await eventually(lambda: replies(h, SEC2)[1:]))
    [entry] = await log_of(h, "rejected")
    assert entry["actor"] == SEC2 and entry["delegated_from"] == OWNER and entry["reason"] == "Clashes with the sale"


async def test_delegation_is_refused_for_a_forbidden_stage_and_bad_requests(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(policy={"delegation": {"forbid": ["test"]}}))
    assert (
        "not for the test stage" in (await command(h, f"delegate <@{SEC2}> --until {until(h, 2)}", user=OWNER))["text"]
    )
    card = await h.request_change()
    assert "not allowed for the test stage" in await approve_reply(h, card, SEC2)
    assert (await log_of(h, "approval_refused"))[-1]["actor"] == SEC2
    # bad input is answered specifically
    assert "yourself" in (await command(h, f"delegate <@{OWNER}> --until {until(h, 2)}", user=OWNER))["text"]
    assert "not a date" in (await command(h, f"delegate <@{SEC2}> --until soon", user=OWNER))["text"]
    assert "at most 90 days" in (await command(h, f"delegate <@{SEC2}> --until {until(h, 200)}", user=OWNER))["text"]
    assert "approve nothing" in (await command(h, f"delegate <@{SEC2}> --until {until(h, 2)}", user=REQ))["text"]
    try:
        make_config(policy={"delegation": {"forbid": ["staging"]}})
    except ConfigError as exc:
        assert "unknown stage(s) staging" in str(exc)
    else:
        raise AssertionError("an unknown stage was accepted")


async def test_escalation_reaches_the_fallback_then_the_manager_once_each(harness_factory: Any) -> None:
    config = make_config(policy={"escalate_after": "24h", "managers": [MANAGER], "approval_ttl": "120h"})
    h: Harness = await harness_factory(config)
    replica: Harness = await harness_factory(config, clock=h.clock)
    card = await h.request_change()
    h.clock.advance(timedelta(hours=23))
    assert await jobs.run_escalations(h.deps) == 0
    h.clock.advance(timedelta(hours=2))
    assert await jobs.run_escalations(h.deps) == 1
    assert await jobs.run_escalations(replica.deps) == 0, "the other replica does not repeat the step"
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    first = [m.text for m in h.thread(card) if ":rotating_light:" in m.text]
    assert len(first) == 1 and f"the security group: <@{SEC1}>, <@{SEC2}>" in first[0], first
    assert "waited 1d" in first[0]
    h.clock.advance(timedelta(hours=24))
    assert await jobs.run_escalations(replica.deps) == 1
    assert await jobs.run_escalations(h.deps) == 0
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    notes = [m.text for m in h.thread(card) if ":rotating_light:" in m.text]
    assert len(notes) == 2 and f"a manager: <@{MANAGER}>" in notes[1]
    h.clock.advance(timedelta(hours=24))
    assert await jobs.run_escalations(h.deps) == 0, "the order is exhausted: nobody is reminded twice"
    logged = await log_of(h, "escalated")
    assert [(e["step"], e["to"]) for e in logged] == [(1, [SEC1, SEC2]), (2, [MANAGER])]


async def test_the_requester_nudges_once_per_interval(harness: Harness) -> None:
    h = harness
    card = await h.request_change()

    async def nudge(user: str) -> str:
        return await click_reply(h, card, "change_nudge", user)

    assert f"Nudged <@{OWNER}>" in await nudge(REQ)
    await eventually(lambda: any(":wave:" in m.text and f"<@{OWNER}>" in m.text for m in h.thread(card)), what="nudge")
    assert "less than 1d ago" in await nudge(REQ)
    assert "Only the requester" in await nudge(OWNER)
    h.clock.advance(timedelta(hours=23, minutes=59))
    assert "less than 1d ago" in await nudge(REQ)
    h.clock.advance(timedelta(minutes=1))
    assert "Nudged" in await nudge(REQ)
    assert len([m for m in h.thread(card) if ":wave:" in m.text]) == 2
    async with h.deps.sessions.begin() as s:
        (row,) = (await s.execute(select(Nudge))).scalars()
    assert row.count == 2
    assert [e["actor"] for e in await log_of(h, "nudge_refused")] == [REQ, OWNER, REQ]
    # the outcome always reaches the requester: an expiry mentions them
    h.clock.advance(timedelta(hours=73))
    await jobs.run_sweep(h.deps)
    await eventually(lambda: any("expired" in m.text and f"<@{REQ}>" in m.text for m in h.thread(card)), what="expiry")


RRULE = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;BYSECOND=0"


def next_monday(now: datetime) -> datetime:
    found = rrulestr(RRULE, dtstart=datetime(2026, 1, 1, tzinfo=UTC)).after(now)
    assert found is not None
    return found


async def digest_posts(h: Harness) -> list[Any]:
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    return h.fake.channel_messages("C0CAB")


async def test_cab_digest_says_nothing_pending_then_ranks_and_warns(harness_factory: Any) -> None:
    clock_probe: Harness = await harness_factory()
    monday = next_monday(clock_probe.clock.now())
    freeze_start = monday + timedelta(days=2)
    config = make_config(
        policy={"digest": {"rrule": RRULE, "channel": "C0CAB"}},
        blackouts=[
            {
                "start": freeze_start.replace(tzinfo=None).isoformat(),
                "end": (freeze_start + timedelta(days=1)).replace(tzinfo=None).isoformat(),
                "reason": "year-end freeze",
            }
        ],
    )
    h: Harness = await harness_factory(config, clock=clock_probe.clock)
    replica: Harness = await harness_factory(config, clock=h.clock)
    h.clock.advance(monday - h.clock.now() + timedelta(minutes=1))
    assert await jobs.run_cab_digest(h.deps) is True
    assert await jobs.run_cab_digest(replica.deps) is False, "one digest per occurrence across replicas"
    [post] = await digest_posts(h)
    text = json.dumps(post.blocks)
    assert "Nothing pending" in text and "year-end freeze" in text and "No conflicts ahead" in text
    # a week later: an emergency change ranks above a normal one; a booked change whose SLA falls due first
    h.clock.advance(timedelta(days=6))
    normal = await h.request_change(title="Update libxml2")
    await approve_reply(h, normal, OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    await book(h, stage="test", start_in=timedelta(days=3))
    await h.request_change(title="Update curl")
    await h.request_change(title="Patch the exploited VPN", change_class="emergency")
    async with h.deps.sessions.begin() as s:
        s.add(
            AdvisoryRecord(
                primary_id="CVE-2026-0001",
                content_hash="0" * 64,
                severity="critical",
                status=AdvisoryStatus.CHANGE_REQUESTED,
                change_id=1,
                due=h.clock.now() + timedelta(days=2),
                first_seen=h.clock.now(),
                updated_at=h.clock.now(),
            )
        )
    # a freeze declared after the booking (the configuration changed and the bot restarted): a conflict
    booked_at = h.clock.now().replace(second=0, microsecond=0) + timedelta(days=3)
    later = make_config(
        policy={"digest": {"rrule": RRULE, "channel": "C0CAB"}},
        blackouts=[
            {
                "start": (booked_at - timedelta(hours=1)).replace(tzinfo=None).isoformat(),
                "end": (booked_at + timedelta(hours=3)).replace(tzinfo=None).isoformat(),
                "reason": "datacenter move",
            }
        ],
    )
    restarted: Harness = await harness_factory(later, clock=h.clock)
    h.clock.advance(next_monday(h.clock.now()) - h.clock.now() + timedelta(minutes=5))
    assert await jobs.run_cab_digest(restarted.deps) is True
    assert await jobs.run_cab_digest(replica.deps) is False
    posts = await digest_posts(h)
    assert len(posts) == 2
    body = "\n".join(b["text"]["text"] for b in posts[1].blocks)
    pending = body.split("*Pending approval (2), by priority:*")[1].split("\n\n")[0]
    assert pending.index("CHG-3") < pending.index("CHG-2"), "emergency first"
    assert "https://slack.com/archives/C0APPROVALS/p" in pending, "each change links to its thread"
    assert "SLA breaches before the booked window (1)" in body and "CVE-2026-0001 due" in body
    assert "Nothing pending" not in body
    assert (
        "Conflicts ahead (1)" in body and "CHG-1 (test) is booked on web-shop during a freeze (datacenter move)" in body
    )
    assert "Freezes ahead (1)" in body and "datacenter move" in body
    logged = await log_of(h, "cab_digest")
    assert [e["pending"] for e in logged] == [[], ["CHG-3", "CHG-2"]] and logged[1]["breaching"] == ["CHG-1"]


def test_people_keys_are_validated() -> None:
    for bad, needle in [
        ({"digest": {"rrule": "FREQ=MINUTELY"}}, "more often than hourly"),
        ({"digest": {"rrule": RRULE, "when": "monday"}}, "unknown key"),
        ({"escalate_after": "soon"}, "escalate_after"),
        ({"managers": ["bob"]}, "managers"),
    ]:
        try:
            make_config(policy=bad)
        except ConfigError as exc:
            assert needle in str(exc), exc
        else:
            raise AssertionError(f"accepted {bad}")
