"""Nothing dropped: 2,000 matched advisories on one system reach Slack as one digest, every one is listed, and
every one is escalated when due; unchanged records cost no write on a re-poll."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from conftest import OWNER, SEC1, Harness, eventually, make_config
from sqlalchemy import event, func, select

from bot.__main__ import cli
from bot.jobs import run_advisory_sweep, run_feeds_poll
from bot.slack.outbox_sender import OutboxSender
from bot.workflows import advisories as flow
from storage import inventory
from storage.models import AdvisoryMatch, AdvisoryRecord, AuditEntry

N = 2000
VECTORS = [
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # 9.8 critical
    "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",  # 6.5 medium
    "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H",  # 8.1 high
    "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N",  # 3.3 low
]


def osv_record(i: int, *, published: str = "2019-05-01T00:00:00Z") -> dict[str, Any]:
    return {
        "schema_version": "1.6.0",
        "id": f"PYSEC-2099-{i}",
        "aliases": [f"CVE-2099-{10000 + i}"],
        "summary": f"Flaw number {i} in libscale",
        "published": published,
        "modified": "2026-01-01T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": VECTORS[i % len(VECTORS)]}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "libscale"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"2.{i}"}]}],
            }
        ],
    }


def write_feed(folder: Path, ids: range) -> None:
    folder.mkdir(exist_ok=True)
    for i in ids:
        (folder / f"PYSEC-2099-{i}.json").write_text(json.dumps(osv_record(i)))


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


async def test_two_thousand_matches_one_digest_all_listed_all_escalated(
    harness_factory: Any, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    feed = tmp_path / "osv"
    write_feed(feed, range(N))
    packages = [{"ecosystem": "PyPI", "name": "libscale", "version": "1.0"}]
    config = make_config(systems={"web-shop": {"packages": packages}}, feeds={"osv": {"source": str(feed)}})
    h: Harness = await harness_factory(config)

    outcome = (await run_feeds_poll(h.deps))["osv"]
    assert (outcome.changed, outcome.unchanged, outcome.quarantined) == (N, 0, 0)
    assert h.fake.channel_messages("C0ADVISORIES") == [], "no post of its own for any of the 2,000"
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    (digest,) = h.fake.channel_messages("C0ADVISORIES")
    text = str(digest.blocks)
    assert "2000 advisories newly affect web-shop" in text
    assert "*500* critical" in text and "*500* high" in text and "*500* medium" in text and "*500* low" in text
    assert "patchwarden advisories list --system web-shop" in text and "and 1995 more" in text
    buttons = [el for b in digest.blocks for el in b.get("elements", []) if el.get("type") == "button"]
    creates = [el for el in buttons if el.get("action_id") == "advisory_create_change"]
    assert len(creates) == 5 and len(buttons) == 15, "the five most urgent items carry their buttons"

    assert "`/patch advisories web-shop`" in text, "the digest names the Slack command that pages through all"

    # every one is reachable in Slack: /patch advisories web-shop, page by page, each reply naming the next
    listed_in_slack: list[str] = []
    page: int | None = 1
    while page is not None:
        before = len(h.fake.responses)
        await h.slack.command(f"advisories web-shop {page}", user=OWNER)
        (reply,) = await eventually(lambda n=before: h.fake.responses[n:], what=f"page {page}")
        listed_in_slack += re.findall(r"\*(PYSEC-2099-\d+)\*", reply["text"])
        following = re.search(r"`/patch advisories web-shop (\d+)`", reply["text"])
        page = int(following.group(1)) if following else None
    assert len(listed_in_slack) == N and len(set(listed_in_slack)) == N
    assert "(page 50 of 50)" in reply["text"] and "1961–2000 of 2000" in reply["text"]

    # a digest item's button works like a post's: the owner opens the not-applicable form
    await h.slack.click(digest, "advisory_not_applicable", user=OWNER)
    await h.opened_view("advisory_not_applicable_reason")

    # the sweep posts none of them individually (they are in the digest)
    assert await run_advisory_sweep(h.deps) == 0
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    assert len(h.fake.channel_messages("C0ADVISORIES")) == 1

    # every one is reachable with the list command, with the contract's fields
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", database_url)
    listed = await asyncio.to_thread(run, "advisories", "list", "--system", "web-shop", "--json")
    assert listed.exit_code == 0, listed.output[-500:]
    objects = json.loads(listed.output)
    assert len(objects) == N and len({o["advisory"] for o in objects}) == N
    first = next(o for o in objects if o["advisory"] == "PYSEC-2099-0")
    assert first["aliases"] == ["CVE-2099-10000"] and first["package"] == "libscale" and first["installed"] == "1.0"
    assert first["fixed"] == "2.0" and first["severity"] == {"label": "critical", "score": 9.8, "source": "cvss_v3.1"}
    assert first["priority"] == "critical"
    assert first["kev"] is False and first["epss"] is None and first["status"] == "open"
    assert first["discovered"] is not None and first["sla_due"] is not None
    plain = await asyncio.to_thread(run, "advisories", "list")
    assert len(plain.output.strip().splitlines()) == N

    # published in 2019, yet no burst: the clock started at discovery (critical: 30 days, others: 90)
    assert await run_advisory_sweep(h.deps) == 0
    h.clock.advance(timedelta(days=24))  # the 7-day reminder of the 500 critical ones: one message
    assert await run_advisory_sweep(h.deps) == 500
    reminders = [m for m in h.fake.channel_messages("C0ADVISORIES") if m.text.startswith(":bell:")]
    assert len(reminders) == 1 and "500 advisories on `web-shop` fall due" in reminders[0].text
    h.clock.advance(timedelta(days=7))
    assert await run_advisory_sweep(h.deps) == 500, "every critical one falls due, none is skipped"
    h.clock.advance(timedelta(days=60))  # past the others' 7- and 1-day reminders: straight to overdue
    assert await run_advisory_sweep(h.deps) == 1500
    assert await run_advisory_sweep(h.deps) == 0, "each is escalated once"
    async with h.deps.sessions.begin() as s:
        escalated = await s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "advisory_escalated")
        )
        unescalated = await s.scalar(
            select(func.count()).select_from(AdvisoryRecord).where(AdvisoryRecord.escalated_at.is_(None))
        )
    assert escalated == N and unescalated == 0
    escalations = [m for m in h.fake.channel_messages("C0ADVISORIES") if "overdue" in m.text]
    assert len(escalations) == 2, "one escalation per system and sweep, not 2,000 messages"
    assert "500 advisories on `web-shop` are *overdue*" in escalations[0].text and f"<@{SEC1}>" in escalations[0].text

    # a later poll with a single new match posts it on its own
    write_feed(feed, range(N, N + 1))
    assert (await run_feeds_poll(h.deps))["osv"].changed == 1
    single = await eventually(
        lambda: [m for m in h.fake.channel_messages("C0ADVISORIES") if m.text.startswith("PYSEC-2099-2000")]
    )
    assert "Create change request" in str(single[0].blocks)


async def test_unchanged_records_cost_no_write_and_discovery_is_kept(harness_factory: Any, tmp_path: Path) -> None:
    feed = tmp_path / "osv"
    write_feed(feed, range(30))
    packages = [{"ecosystem": "PyPI", "name": "libscale", "version": "1.0"}]
    config = make_config(
        systems={"web-shop": {"packages": packages}},
        feeds={"osv": {"source": str(feed)}},
        advisories={"digest_over": 100},
    )
    h: Harness = await harness_factory(config)
    await run_feeds_poll(h.deps, post=False)
    async with h.deps.sessions.begin() as s:
        discovered = {m.advisory_id: m.discovered for m in (await s.execute(select(AdvisoryMatch))).scalars()}
    assert len(discovered) == 30 and all(discovered.values())

    (feed / "PYSEC-2099-3.json").write_text(json.dumps(osv_record(3) | {"details": "more words upstream"}))
    (feed / "unrelated.txt").write_text("changes the folder's digest, so every record is read again")
    writes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(statement.split("(")[0][:60])

    event.listen(h.deps.engine.sync_engine, "before_cursor_execute", count)
    h.clock.advance(timedelta(days=3))
    outcome = (await run_feeds_poll(h.deps, post=False))["osv"]
    event.remove(h.deps.engine.sync_engine, "before_cursor_execute", count)
    assert (outcome.changed, outcome.unchanged) == (1, 29)
    tables = [w.split()[2] if w.upper().startswith(("INSERT", "DELETE")) else w.split()[1] for w in writes]
    assert set(tables) <= {"advisories", "advisory_matches", "feed_state"}, writes
    assert len(writes) <= 6, f"one changed record, a handful of statements: {writes}"
    async with h.deps.sessions.begin() as s:
        after = {m.advisory_id: m.discovered for m in (await s.execute(select(AdvisoryMatch))).scalars()}
    assert after == discovered, "a re-matched record keeps the time its match was first seen"


async def test_an_sbom_import_that_matches_many_is_digested_by_the_sweep(harness_factory: Any, tmp_path: Path) -> None:
    feed = tmp_path / "osv"
    write_feed(feed, range(40))
    config = make_config(feeds={"osv": {"source": str(feed)}})  # web-shop has no packages yet
    h: Harness = await harness_factory(config)
    await run_feeds_poll(h.deps)
    assert h.fake.channel_messages("C0ADVISORIES") == [], "nothing matches yet"
    package = {"ecosystem": "PyPI", "name": "libscale", "version": "1.0", "release": None, "purl": None}
    async with h.deps.sessions.begin() as s:
        await inventory.replace(s, system="web-shop", source="sbom.cdx.json", packages=[package], now=h.clock.now())
        changed = await flow.rematch_all(s, config=config, now=h.clock.now())
    assert len(changed) == 40
    await run_advisory_sweep(h.deps)
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    (digest,) = h.fake.channel_messages("C0ADVISORIES")
    assert "40 advisories newly affect web-shop" in str(digest.blocks)
    await run_advisory_sweep(h.deps)
    assert len(h.fake.channel_messages("C0ADVISORIES")) == 1, "digested once, never posted one by one"
