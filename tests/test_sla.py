"""SLA clocks: due-date math, reminders as the due date nears, escalation to owner and security when overdue."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from conftest import OWNER, SEC1, SEC2, Harness, eventually, make_config

from bot.jobs import run_advisory_sweep
from bot.workflows.sla import due_date

PUBLISHED = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("severity", "kev", "days"),
    [("critical", False, 30), ("high", False, 90), ("medium", False, 90), ("low", False, 90), ("unknown", False, 90),
     ("medium", True, 30)],
)  # fmt: skip
def test_due_is_fix_publication_plus_policy_days(severity: str, kev: bool, days: int) -> None:
    policy = make_config().policy
    assert due_date(policy, severity=severity, known_exploited=kev, fix_published=PUBLISHED) == PUBLISHED + timedelta(
        days=days
    )


def test_kev_due_date_wins_when_earlier_and_configured() -> None:
    policy = make_config().policy
    kev = date(2026, 1, 20)
    due = due_date(policy, severity="low", known_exploited=True, fix_published=PUBLISHED, kev_due=kev)
    assert due == datetime(2026, 1, 20, 23, 59, 59, tzinfo=UTC)
    later = due_date(policy, severity="low", known_exploited=True, fix_published=PUBLISHED, kev_due=date(2027, 1, 1))
    assert later == PUBLISHED + timedelta(days=30), "the policy's date stands when KEV's is later"
    off = make_config(policy={"kev_due_date": False}).policy
    assert due_date(off, severity="low", known_exploited=True, fix_published=PUBLISHED, kev_due=kev) == (
        PUBLISHED + timedelta(days=30)
    )
    custom = make_config(policy={"sla_days": {"critical": 7, "high": 14}}).policy
    assert due_date(custom, severity="high", known_exploited=False, fix_published=PUBLISHED) == PUBLISHED + timedelta(
        days=14
    )


async def add_manual(h: Harness, **values: Any) -> None:
    """/patch advisory add, filled and submitted as the owner."""
    await h.slack.command("advisory add", user=OWNER)
    view = await h.opened_view("advisory_manual")
    form = {"advisory_id": "CVE-2026-0001", "summary": "Heap overflow in openssl", "severity": "critical"}
    form |= {"ecosystem": "Debian:12", "package": "openssl", "fixed": "3.0.17-1~deb12u2", **values}
    status, body = await h.slack.submit(view, form, user=OWNER)
    assert status == 200 and body in ("", "{}"), body


async def listing(h: Harness, scope: str) -> str:
    before = len(h.fake.responses)
    await h.slack.command(f"advisories {scope}", user=OWNER)
    replies = await eventually(lambda: h.fake.responses[before:], what="listing")
    return str(replies[-1]["text"])


async def test_manual_advisory_reminded_then_overdue_escalated(harness_factory: Any) -> None:
    packages = [{"ecosystem": "Debian", "release": "12", "name": "openssl", "version": "3.0.16-1~deb12u1"}]
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": packages}}))
    await add_manual(h)
    post = await eventually(lambda: h.fake.channel_messages("C0ADVISORIES"), what="post")
    assert "3.0.16-1~deb12u1 → 3.0.17-1~deb12u2" in str(post[0].blocks) and "(critical)" in str(post[0].blocks)
    assert "No advisories" in await listing(h, "overdue")
    assert "CVE-2026-0001" in await listing(h, "web-shop")

    h.clock.advance(timedelta(days=24))  # 6 days before due: the 7-day reminder, once
    assert await run_advisory_sweep(h.deps) == 1
    assert await run_advisory_sweep(h.deps) == 0
    assert ":bell: CVE-2026-0001 is due" in h.thread(post[0])[-1].text and f"<@{OWNER}>" in h.thread(post[0])[-1].text

    h.clock.advance(timedelta(days=7))  # past due
    assert "CVE-2026-0001" in await listing(h, "overdue")
    assert await run_advisory_sweep(h.deps) == 1
    escalation = h.thread(post[0])[-1].text
    assert "overdue" in escalation and all(f"<@{u}>" in escalation for u in (OWNER, SEC1, SEC2))
    assert await run_advisory_sweep(h.deps) == 0, "escalated once"
