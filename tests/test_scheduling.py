"""Scheduling a stage through the fake Slack: proposals as buttons, refusals naming the rule, emergencies,
rescheduling and cancelling. Announcements are checked in test_announcements.py, delivery in test_outbox.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conftest import OPS1, OTHER, OWNER, Harness, eventually, make_config
from sqlalchemy import select

from bot.sandbox.fake_slack import Message
from bot.slack.outbox_sender import OutboxSender
from bot.workflows import cards
from storage import changes, windows
from storage.models import AuditEntry, ChangeState, Window, WindowState

BERLIN = ZoneInfo("Europe/Berlin")
SHOP_WINDOWS = [{"rrule": "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0", "duration": "2h"}]


def schedule_config(**overrides: Any) -> Any:
    """web-shop with Sunday 02:00-04:00 Berlin windows; extra overrides merged in."""
    systems = {"web-shop": {"maintenance_windows": SHOP_WINDOWS}}
    systems.update(overrides.pop("systems", {}))
    return make_config(systems=systems, **overrides)


def set_clock(h: Harness, local: str) -> datetime:
    """Move the fake clock to a Berlin wall-clock time like ``2026-12-05 10:00``."""
    target = datetime.fromisoformat(local).replace(tzinfo=BERLIN)
    h.clock.advance(target - h.clock.now())
    return target


async def approved_change(h: Harness, *, state: ChangeState = ChangeState.APPROVED_FOR_PROD, **values: Any) -> Message:
    """Request a change through the modal, then put it straight into ``state`` (approvals are tested elsewhere)."""
    card = await h.request_change(**values)
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        change.state = state
    await cards.refresh_card(h.deps, 1)
    return card


async def respond_after(h: Harness, count: int) -> dict[str, Any]:
    """The first response_url reply beyond the first ``count``."""
    return await eventually(lambda: h.fake.responses[count] if len(h.fake.responses) > count else None, what="reply")


async def command(h: Harness, text: str, *, user: str = OPS1) -> dict[str, Any]:
    """Type ``/patch <text>`` and return the ephemeral reply."""
    before = len(h.fake.responses)
    status, _ = await h.slack.command(text, user=user)
    assert status == 200
    return await respond_after(h, before)


def as_message(reply: dict[str, Any]) -> Message:
    """An ephemeral reply as a message the driver can click on."""
    return Message("C0OPS", "1.000001", reply.get("text", ""), reply.get("blocks") or [], None)


def buttons(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [el for b in reply.get("blocks") or [] for el in b.get("elements", []) if el.get("type") == "button"]


async def all_windows(h: Harness) -> list[Window]:
    async with h.deps.sessions.begin() as s:
        return await windows.for_change(s, 1)


async def state_of(h: Harness) -> ChangeState:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        return change.state


async def audit_actions(h: Harness) -> list[tuple[str, dict[str, Any]]]:
    async with h.deps.sessions.begin() as s:
        rows = (await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars()
        return [(e.action, json.loads(e.body).get("details", {})) for e in rows]


def fast_sender(h: Harness, **kw: Any) -> OutboxSender:
    """A sender with short pacing: the fake Slack in these tests does not rate-limit."""
    return OutboxSender(h.deps, channel_gap=kw.pop("channel_gap", 0.01), **kw)


async def test_proposals_are_buttons_and_a_click_books(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")  # a Thursday
    await approved_change(h)
    reply = await command(h, "schedule CHG-1 prod")
    offered = buttons(reply)
    assert [b["action_id"] for b in offered] == ["schedule_book_1", "schedule_book_2", "schedule_book_3"]
    starts = [datetime.fromtimestamp(int(b["value"].split(":")[2]), BERLIN) for b in offered]
    assert [s.strftime("%a %d %H:%M") for s in starts] == ["Sun 06 02:00", "Sun 13 02:00", "Sun 20 02:00"]
    before = len(h.fake.responses)
    await h.slack.click(as_message(reply), "schedule_book_2", user=OPS1)
    answer = await respond_after(h, before)
    assert "booked for" in answer["text"] and answer.get("replace_original") is True
    [window] = await all_windows(h)
    assert window.state is WindowState.BOOKED and window.start == starts[1]
    assert window.end - window.start == timedelta(hours=2) and window.booked_by == OPS1
    assert await state_of(h) is ChangeState.PROD_SCHEDULED
    # a stale proposal clicked after booking does not silently move the window
    before = len(h.fake.responses)
    await h.slack.click(as_message(reply), "schedule_book_1", user=OPS1)
    stale = await respond_after(h, before)
    assert "booked meanwhile" in stale["text"]
    assert [w.start for w in await all_windows(h)] == [starts[1]]
    actions = [a for a, _ in await audit_actions(h)]
    assert "window_booked" in actions


async def test_explicit_time_outside_window_refused_with_rule_and_nearest_slot(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h)
    reply = await command(h, "schedule CHG-1 prod 2026-12-12 02:00 2h")  # a Saturday
    assert "outside web-shop's maintenance windows" in reply["text"]
    assert "nearest free slot" in reply["text"] and "Sun 13 Dec" in reply["text"]
    assert await all_windows(h) == [] and await state_of(h) is ChangeState.APPROVED_FOR_PROD
    [suggested] = buttons(reply)
    before = len(h.fake.responses)
    await h.slack.click(as_message(reply), suggested["action_id"], user=OPS1)
    await respond_after(h, before)
    [window] = await all_windows(h)
    assert window.start == datetime(2026, 12, 13, 2, tzinfo=BERLIN)


async def test_notice_and_blackout_refusals(harness_factory: Any) -> None:
    blackout = [{"start": "2026-12-20T00:00", "end": "2027-01-06T00:00", "reason": "year-end freeze"}]
    h: Harness = await harness_factory(schedule_config(blackouts=blackout))
    set_clock(h, "2026-12-05 10:00")  # Saturday: tomorrow's 02:00 window is only 16 h away
    await approved_change(h)
    reply = await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    assert "too soon" in reply["text"] and "at least 1d ahead" in reply["text"] and "Sun 13 Dec" in reply["text"]
    reply = await command(h, "schedule CHG-1 prod 2026-12-20 02:00 2h")
    assert "freeze" in reply["text"] and "year-end freeze" in reply["text"]
    assert "Sun 10 Jan" in reply["text"]  # the first window after the freeze
    proposed = await command(h, "schedule CHG-1 prod")
    labels = [b["text"]["text"] for b in buttons(proposed)]
    assert ["Sun 13 Dec" in labels[0], "Sun 10 Jan" in labels[1]] == [True, True], labels
    assert await all_windows(h) == []


async def test_only_operators_officer_or_owner_may_schedule(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h)
    reply = await command(h, "schedule CHG-1 prod", user=OTHER)
    assert "cannot schedule" in reply["text"]
    reply = await command(h, "schedule CHG-1 prod 2026-12-13 02:00", user=OWNER)
    assert "booked for" in reply["text"]


async def test_booking_requires_the_stage_approved(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    await approved_change(h, state=ChangeState.PENDING_PROD_APPROVAL)
    reply = await command(h, "schedule CHG-1 prod")
    assert "pending prod approval" in reply["text"] and "once it is approved" in reply["text"]


async def test_emergency_bypass_needs_reason_is_flagged_and_audited(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    now = set_clock(h, "2026-12-03 10:00")
    await approved_change(h, change_class="emergency")
    when = (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    refused = await command(h, f"schedule CHG-1 prod {when} 1h")
    assert "too soon" in refused["text"]
    no_reason = await command(h, f"schedule CHG-1 prod {when} 1h --emergency  ")
    assert "needs a reason" in no_reason["text"]
    reply = await command(h, f"schedule CHG-1 prod {when} 1h --emergency database <!here> corruption")
    assert "booked for" in reply["text"]
    [window] = await all_windows(h)
    assert window.emergency and window.bypass_reason == "database <!here> corruption"
    bypass = [d for a, d in await audit_actions(h) if a == "emergency_bypass"]
    assert bypass == [
        {
            "window_id": window.id,
            "stage": "prod",
            "reason": "database <!here> corruption",
            "bypassed_rule": "notice",
            "booked_as": "operator",
        }
    ]
    await fast_sender(h).drain()
    card = h.cards()[0]
    note = await eventually(lambda: [m.text for m in h.thread(card) if "Emergency bypass" in m.text])
    assert "&lt;!here&gt;" in note[0] and "<!here>" not in note[0]
    users = h.fake.channel_messages("C0SHOPUSERS")
    assert len(users) == 1 and "Emergency change" in json.dumps(users[0].blocks)


async def test_emergency_refused_for_a_normal_change(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    now = set_clock(h, "2026-12-03 10:00")
    await approved_change(h)
    when = (now + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    reply = await command(h, f"schedule CHG-1 prod {when} 1h --emergency I am in a hurry")
    assert "only emergency changes" in reply["text"]
    assert await all_windows(h) == []


async def test_reschedule_and_cancel_are_announced(harness_factory: Any) -> None:
    h: Harness = await harness_factory(schedule_config())
    set_clock(h, "2026-12-03 10:00")
    card = await approved_change(h)
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    moved = await command(h, "schedule CHG-1 prod 2026-12-13 02:00")
    assert "moved to" in moved["text"]
    old, new = await all_windows(h)
    assert (old.state, new.state) == (WindowState.RESCHEDULED, WindowState.BOOKED)
    assert new.start == datetime(2026, 12, 13, 2, tzinfo=BERLIN)
    assert await state_of(h) is ChangeState.PROD_SCHEDULED
    cancelled = await command(h, "unschedule CHG-1 prod the vendor withdrew the patch")
    assert "cancelled" in cancelled["text"]
    assert (await all_windows(h))[1].state is WindowState.CANCELLED
    assert await state_of(h) is ChangeState.APPROVED_FOR_PROD
    await fast_sender(h).drain()
    users = [m.text for m in h.fake.channel_messages("C0SHOPUSERS")]
    assert len(users) == 3
    assert "Planned maintenance" in users[0] and "Maintenance moved" in users[1]
    assert "Maintenance cancelled" in users[2]
    thread = [m.text for m in h.thread(card)]
    assert any("booked the *prod* window" in t for t in thread)
    assert any("moved the *prod* window" in t for t in thread)
    assert any("cancelled the *prod* window" in t and "vendor withdrew" in t for t in thread)
    actions = [a for a, _ in await audit_actions(h)]
    assert {"window_booked", "window_rescheduled", "window_cancelled"} <= set(actions)


async def test_card_lines_flag_an_emergency_window(harness_factory: Any) -> None:
    from bot.blocks.common import validate_blocks
    from bot.blocks.schedule import card_windows

    h: Harness = await harness_factory(schedule_config())
    now = set_clock(h, "2026-12-03 10:00")
    await approved_change(h, change_class="emergency")
    when = (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    await command(h, f"schedule CHG-1 prod {when} 1h --emergency disk <b>full</b>")
    lines = card_windows(await all_windows(h), timezone="Europe/Berlin")
    validate_blocks(lines)
    text = json.dumps(lines)
    assert len(lines) == 1 and "emergency bypass" in text and "&lt;b&gt;full&lt;/b&gt;" in text
    # and the change card itself carries the flag once it is refreshed

    await cards.refresh_card(h.deps, 1)
    card = await h.card()
    assert "emergency bypass" in json.dumps(h.latest(card).blocks)
