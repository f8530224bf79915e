"""Exceptions with quorum and expiry (issue 10, point 3), through the signed Slack endpoint on the fake clock:
requested, approved by owner + security, not escalated, reminded with today's KEV status, renewed (counted),
expired and reopened with a fresh SLA."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from conftest import OTHER, OWNER, REQ, SEC1, SHARED_DATA, Harness, eventually, make_config
from sqlalchemy import select

from bot.advisories.osv import parse_osv
from bot.feeds.base import FeedBatch
from bot.jobs import run_exception_sweep
from bot.sandbox.fake_slack import Message
from bot.workflows import advisories as flow
from bot.workflows import sla
from bot.workflows.advisory_posts import publish_all
from storage import advisories as store
from storage.models import AdvisoryException, AdvisoryRecord, AdvisoryStatus, AuditEntry, ExceptionState

PACKAGES = [{"ecosystem": "PyPI", "name": "flask", "version": "2.2.2"}]


async def _advisory(h: Harness) -> None:
    doc = json.loads((SHARED_DATA / "osv" / "PyPI" / "PYSEC-2023-62.json").read_text())
    async with h.deps.sessions.begin() as s:
        await flow.ingest(s, config=h.config, batch=FeedBatch(advisories=(parse_osv(doc),)), now=h.clock.now())


async def _record(h: Harness) -> AdvisoryRecord:
    async with h.deps.sessions.begin() as s:
        rec = await store.get(s, (await store.owners_of(s, ["PYSEC-2023-62"]))[0])
        assert rec is not None
        return rec


async def _rows(h: Harness) -> list[AdvisoryException]:
    async with h.deps.sessions.begin() as s:
        return list((await s.execute(select(AdvisoryException).order_by(AdvisoryException.id))).scalars())


async def _card(h: Harness, n: int) -> Message:
    found: Message = await eventually(
        lambda: next((m for m in h.fake.channel_messages("C0APPROVALS") if f"Exception #{n}" in m.text), None),
        what=f"exception card #{n}",
    )
    return found


async def _approve(h: Harness, card: Message) -> None:
    await h.slack.click(h.latest(card), "exception_approve", user=OWNER)
    await eventually(lambda: "<@U0OWNER1>" in str(h.latest(card).blocks), what="owner's approval shown")
    await h.slack.click(h.latest(card), "exception_approve", user=SEC1)
    await eventually(lambda: "Approved" in str(h.latest(card).blocks), what="approved card")


async def test_exception_requested_approved_reminded_renewed_expired_and_reopened(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    await _advisory(h)
    until = (h.clock.now() + timedelta(days=10)).date().isoformat()
    await h.slack.command(f"exception PYSEC-2023-62 web-shop accept --until {until} WAF rule blocks it", user=REQ)
    card = await _card(h, 1)
    assert "risk accepted" in card.text and "Waiting for approval" in str(card.blocks)
    assert "WAF rule blocks it" in str(card.blocks)

    # quorum: the requester cannot approve, a stranger cannot either, owner + security can
    await h.slack.click(card, "exception_approve", user=REQ)
    await h.slack.click(card, "exception_approve", user=OTHER)
    await eventually(lambda: any("cannot approve" in t for t in h.fake.ephemerals(REQ)), what="no self-approval")
    await eventually(lambda: any("not an approver" in t for t in h.fake.ephemerals(OTHER)), what="not eligible")
    await _approve(h, card)
    rec = await _record(h)
    assert rec.status is AdvisoryStatus.RISK_ACCEPTED
    assert rec.remediation["exception"]["approved_by"] == [OWNER, SEC1]
    assert rec.status not in sla.ACTIVE, "an accepted risk is not escalated"

    # three days before the end the thread asks again, with today's KEV status
    h.clock.advance(timedelta(days=8))
    assert await run_exception_sweep(h.deps) == 1
    reminder = await eventually(lambda: [m.text for m in h.fake.thread(card.channel, card.ts) if ":bell:" in m.text])
    assert "not in CISA KEV" in reminder[0] and "renewals so far: 0" in reminder[0]
    assert await run_exception_sweep(h.deps) == 0, "reminded once"

    # renewed: a second exception, approved again, replaces the first and counts the renewal
    longer = (h.clock.now() + timedelta(days=5)).date().isoformat()
    await h.slack.command(f"exception PYSEC-2023-62 web-shop accept --until {longer} WAF rule still there", user=REQ)
    second = await _card(h, 2)
    await _approve(h, second)
    assert "renewals: 1" in str(h.latest(second).blocks)
    first, renewal = await _rows(h)
    assert (first.state, renewal.state, renewal.renewals) == (ExceptionState.RENEWED, ExceptionState.APPROVED, 1)

    # at its end the exception expires: the advisory is open again and its SLA restarts from now
    h.clock.advance(timedelta(days=6))
    assert await run_exception_sweep(h.deps) == 1
    await eventually(
        lambda: any("expired" in m.text for m in h.fake.thread(second.channel, second.ts)), what="expiry note"
    )
    rec = await _record(h)
    assert rec.status is AdvisoryStatus.OPEN and "exception" not in rec.remediation
    assert rec.due is not None and rec.due - h.clock.now() > timedelta(days=29)
    assert rec.escalated_at is None
    async with h.deps.sessions.begin() as s:
        actions = [r.action for r in (await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars()]
    expected = ["exception_requested", "exception_approved", "exception_reminded", "exception_expired"]
    assert [a for a in actions if a in expected] == [
        "exception_requested", "exception_approved", "exception_reminded",
        "exception_requested", "exception_approved", "exception_expired",
    ]  # fmt: skip


async def test_not_affected_needs_an_openvex_justification(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    await _advisory(h)
    until = (h.clock.now() + timedelta(days=30)).date().isoformat()
    await h.slack.command(f"exception PYSEC-2023-62 web-shop not-affected --until {until} we do not use it", user=REQ)
    replies = await eventually(lambda: [r["text"] for r in h.fake.responses if "justification" in r.get("text", "")])
    assert "vulnerable_code_not_in_execute_path" in replies[-1]
    await h.slack.command(
        f"exception PYSEC-2023-62 web-shop not-affected vulnerable_code_not_in_execute_path --until {until} "
        "the debugger is never enabled",
        user=REQ,
    )
    card = await _card(h, 1)
    await _approve(h, card)
    rec = await _record(h)
    assert rec.status is AdvisoryStatus.NOT_AFFECTED
    assert rec.remediation["exception"]["justification"] == "vulnerable_code_not_in_execute_path"


async def test_the_advisory_post_button_opens_the_exception_form(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    await _advisory(h)
    async with h.deps.sessions.begin() as s:
        changed = [flow.Ingested(r.id, True) for r in await store.all_records(s)]
    await publish_all(h.deps, changed)
    post = await eventually(lambda: next(iter(h.fake.channel_messages("C0ADVISORIES")), None), what="advisory post")
    await h.slack.click(post, "exception_request", user=OWNER)
    form = await h.opened_view("exception_request_form")
    until = (h.clock.now() + timedelta(days=20)).date().isoformat()
    values = {"system": "web-shop", "kind": "not-affected", "until": until, "reason": "no debugger in prod"}
    _, body = await h.slack.submit(form, values, user=OWNER)
    assert "errors" in body and "justification" in body, "not-affected needs its OpenVEX justification"
    _, body = await h.slack.submit(form, {**values, "justification": "vulnerable_code_not_in_execute_path"}, user=OWNER)
    assert "errors" not in body
    card = await _card(h, 1)
    assert "not affected (vulnerable_code_not_in_execute_path)" in card.text
    rows = await _rows(h)
    assert [(r.requested_by, r.state) for r in rows] == [(OWNER, ExceptionState.PENDING)]
