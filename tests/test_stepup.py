"""Step-up approvals (TOTP): a click reserves the vote; a code bound to change, revision and person counts it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from conftest import OWNER, REQ, SEC2, STAKE, Harness, eventually, make_config
from sqlalchemy import select
from test_scheduling import command

from bot import crypto
from bot.workflows import change_priority, views
from storage import changes
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus, AuditEntry, ChangeState, StepUpSecret


def step_up_config() -> Any:
    return make_config(policy={"step_up": {"when": {"stage": "test"}, "method": "totp"}})


async def enroll(h: Harness, user: str = OWNER) -> pyotp.TOTP:
    reply = await command(h, "enroll", user=user)
    match = re.search(r"Secret: `([A-Z2-7]+)`", reply["text"])
    assert match, reply["text"]
    return pyotp.TOTP(match.group(1))


async def click_approve(h: Harness, card: Any, user: str = OWNER) -> str:
    before = len(h.fake.ephemerals(user))
    await h.slack.approve(h.latest(card), user=user)
    got = await eventually(lambda: h.fake.ephemerals(user)[before:], what="approve reply")
    return str(got[0])


async def state(h: Harness, change_id: int) -> ChangeState:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, change_id)
        assert change is not None
        return change.state


async def actions(h: Harness, change_id: int) -> list[dict[str, Any]]:
    async with h.deps.sessions.begin() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.change_id == change_id))).scalars()
        wanted = [r for r in rows if "step_up" in r.action or "reserv" in r.action]
        return [{"action": r.action, **json.loads(r.body)["details"]} for r in wanted]


@pytest.fixture
def secrets_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = crypto.new_secrets_key()
    monkeypatch.setenv("PATCHWARDEN_SECRETS_KEY", key)
    return key


async def test_code_for_chg1_rev1_is_refused_for_rev2_and_for_chg2(harness_factory: Any, secrets_key: str) -> None:
    h: Harness = await harness_factory(step_up_config())
    totp = await enroll(h)
    async with h.deps.sessions.begin() as s:
        sealed = await s.get(StepUpSecret, OWNER)
    assert sealed is not None and totp.secret not in sealed.sealed  # stored encrypted
    assert crypto.unseal(secrets_key, sealed.sealed) == totp.secret
    card1 = await h.request_change()
    card2 = await h.request_change(title="Update nginx")
    # the click only reserves the vote
    assert "reserved, not yet counted" in await click_approve(h, card1)
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    code = totp.at(h.clock.now())
    # CHG-1 is edited: the code typed for revision 1 does not count for revision 2
    await h.slack.command("edit CHG-1", user=REQ)
    view = await h.opened_view("change_edit")
    await h.slack.submit(view, {"title": "Update OpenSSL to 3.0.16"}, user=REQ)
    await eventually(lambda: any("edited" in m.text for m in h.thread(card1)), what="edit notice")
    reply = await command(h, f"confirm CHG-1 {code}", user=OWNER)
    assert "you approved revision 1, it is now revision 2" in reply["text"]
    # nor for CHG-2, which this person never clicked
    reply = await command(h, f"confirm CHG-2 {code}", user=OWNER)
    assert "no approval of CHG-2 waiting" in reply["text"]
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    assert await state(h, 2) is ChangeState.PENDING_TEST_APPROVAL
    # approving revision 2 and confirming counts it, with the method in the record and the control log
    assert "revision 2" in await click_approve(h, card1)
    reply = await command(h, f"confirm CHG-1 {code}", user=OWNER)
    assert "completed the test stage" in reply["text"], reply["text"]
    assert await state(h, 1) is ChangeState.APPROVED_FOR_TEST
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        data = views.to_json(await views.snapshot(s, config=h.config, change=change))
    [approval] = [a for a in data["approvals"] if not a["stale"]]
    assert approval["step_up"] == "totp" and approval["delegated_from"] is None and approval["revision"] == 2
    log = await actions(h, 1)
    assert [e["action"] for e in log] == [
        "approval_reserved",
        "step_up_refused",
        "approval_reserved",
        "step_up_confirmed",
    ]
    assert log[1]["failed_step"] == "changed" and log[3]["method"] == "totp"
    # the same code cannot be replayed for CHG-2, even with a reservation there
    await click_approve(h, card2)
    reply = await command(h, f"confirm CHG-2 {code}", user=OWNER)
    assert "already used" in reply["text"]
    assert await state(h, 2) is ChangeState.PENDING_TEST_APPROVAL
    # and a reservation not confirmed within 5 minutes lapses
    h.clock.advance(timedelta(minutes=6))
    reply = await command(h, f"confirm CHG-2 {totp.at(h.clock.now())}", user=OWNER)
    assert "expired" in reply["text"]
    assert await state(h, 2) is ChangeState.PENDING_TEST_APPROVAL


async def test_a_delegate_confirms_with_their_own_second_factor_for_the_delegator(
    harness_factory: Any, secrets_key: str
) -> None:
    h: Harness = await harness_factory(step_up_config())
    until = (h.clock.now() + timedelta(days=3)).date().isoformat()
    await command(h, f"delegate <@{SEC2}> --until {until}", user=OWNER)
    totp = await enroll(h, SEC2)
    card1 = await h.request_change()
    card2 = await h.request_change(title="Update nginx")
    assert "reserved, not yet counted" in await click_approve(h, card1, SEC2)
    reply = await command(h, f"confirm CHG-1 {totp.at(h.clock.now())}", user=SEC2)
    assert "completed the test stage" in reply["text"], reply["text"]
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        data = views.to_json(await views.snapshot(s, config=h.config, change=change))
    [vote] = data["approvals"]
    assert (vote["user"], vote["delegated_from"], vote["step_up"]) == (SEC2, OWNER, "totp")
    assert [e.get("delegated_from") for e in await actions(h, 1)] == [OWNER, None]  # reserved, confirmed
    # a delegation cancelled between the click and the code: the reserved vote no longer counts
    assert "reserved, not yet counted" in await click_approve(h, card2, SEC2)
    await command(h, "delegate cancel 1", user=OWNER)
    h.clock.advance(timedelta(seconds=31))  # the next code
    reply = await command(h, f"confirm CHG-2 {totp.at(h.clock.now())}", user=SEC2)
    assert "Nothing was counted" in reply["text"], reply["text"]
    assert await state(h, 2) is ChangeState.PENDING_TEST_APPROVAL


async def test_wrong_code_and_no_enrolment_are_refused(harness_factory: Any, secrets_key: str) -> None:
    h: Harness = await harness_factory(step_up_config())
    card = await h.request_change()
    await click_approve(h, card)
    assert "no authenticator enrolled" in (await command(h, "confirm CHG-1 123456", user=OWNER))["text"]
    totp = await enroll(h)
    wrong = f"{(int(totp.at(h.clock.now())) + 1) % 1_000_000:06d}"
    assert "not valid" in (await command(h, f"confirm CHG-1 {wrong}", user=OWNER))["text"]
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL


async def test_step_up_keys_are_validated() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="method"):
        make_config(policy={"step_up": {"when": {"stage": "test"}, "method": "sms"}})
    with pytest.raises(ConfigError, match="unknown key"):
        make_config(policy={"step_up": {"when": {"stages": "test"}, "method": "totp"}})


async def test_a_code_is_bound_to_the_person(harness_factory: Any, secrets_key: str) -> None:
    h: Harness = await harness_factory(step_up_config())
    totp = await enroll(h)
    card = await h.request_change()
    await click_approve(h, card)
    code = totp.at(h.clock.now())
    # another person typing the owner's code finds no reservation of theirs: nothing counts
    reply = await command(h, f"confirm CHG-1 {code}", user=STAKE)
    assert "no approval of CHG-1 waiting" in reply["text"]
    # and with an enrolment and a reservation of their own, the owner's code is not theirs
    other = await enroll(h, user=STAKE)
    assert other.secret != totp.secret
    h2: Harness = await harness_factory(
        make_config(
            policy={
                "step_up": {"when": {"stage": "test"}, "method": "totp"},
                "stages": {"test": [{"role": "stakeholder", "count": 1}]},
            }
        )
    )
    await click_approve(h2, h2.latest(card), user=STAKE)
    reply = await command(h2, f"confirm CHG-1 {code}", user=STAKE)
    assert "not valid" in reply["text"], reply["text"]
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    reply = await command(h, f"confirm CHG-1 {code}", user=OWNER)
    assert "completed the test stage" in reply["text"]


async def link_advisory(h: Harness, change_id: int, *, tier: str, system: str = "web-shop") -> None:
    """An advisory the change remediates, with a match of ``tier`` on ``system`` (as triage would leave it)."""
    now = h.clock.now()
    async with h.deps.sessions.begin() as s:
        record = AdvisoryRecord(
            primary_id=f"CVE-2026-{change_id:04d}{system}", content_hash="0" * 64, severity="high",
            status=AdvisoryStatus.CHANGE_REQUESTED, change_id=change_id, first_seen=now, updated_at=now,
        )  # fmt: skip
        s.add(record)
        await s.flush()
        s.add(
            AdvisoryMatch(
                advisory_id=record.id,
                system=system,
                ecosystem="Debian",
                package="openssl",
                installed="3.0.14",
                status="affected",
                priority=tier,
                due=now + timedelta(days=2),
            )
        )


async def test_step_up_by_priority_follows_the_linked_advisory_tier(harness_factory: Any, secrets_key: str) -> None:
    cfg = make_config(
        policy={
            "step_up": {"when": {"priority": "fix-now"}, "method": "totp"},
            "priority": [{"tier": "fix-now", "when": {"kev": True}}, {"tier": "routine"}],
            "sla_days": {"fix-now": 7, "routine": 90},
        }
    )
    h: Harness = await harness_factory(cfg)
    card1 = await h.request_change()
    card2 = await h.request_change(title="Update nginx")
    card3 = await h.request_change(title="Update curl")
    await link_advisory(h, 1, tier="fix-now")
    await link_advisory(h, 2, tier="routine")
    await link_advisory(h, 3, tier="fix-now", system="elsewhere")  # not one of CHG-3's systems
    async with h.deps.sessions.begin() as s:
        tiers = [await change_priority.change_priority(s, c) for c in [await changes.get(s, i) for i in (1, 2, 3)]]
    assert tiers == ["fix-now", "routine", None]
    assert "reserved, not yet counted" in await click_approve(h, card1)
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    assert "completed the test stage" in await click_approve(h, card2)
    assert "completed the test stage" in await click_approve(h, card3)


async def test_step_up_priority_must_be_a_tier_of_the_policy() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="no tier of the policy"):
        make_config(policy={"step_up": {"when": {"priority": "fix-now"}, "method": "totp"}})
    make_config(policy={"step_up": {"when": {"priority": "critical"}, "method": "totp"}})  # a severity band
