"""Advisories end to end: real OSV and KEV documents polled from local feeds, de-duplicated, matched, posted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import OTHER, OWNER, SHARED_DATA, Harness, eventually, make_config
from sqlalchemy import delete, select

from bot.jobs import run_feeds_poll
from bot.sandbox.fake_slack import Message
from storage import advisories as store
from storage.models import AdvisoryRecord, AdvisoryStatus, FeedState

OSV = SHARED_DATA / "osv"
KEV = SHARED_DATA / "kev" / "known_exploited_vulnerabilities.excerpt.json"
RECORDS = [
    "npm/GHSA-jpcq-cgw6-v4j6.json",  # jquery, alias CVE-2020-11023 (in KEV)
    "PyPI/PYSEC-2023-62.json",  # flask < 2.2.5
    "PyPI/PYSEC-2023-74.json",  # requests: 2.31.0 is exactly the fixed version
    "PyPI/PYSEC-2021-13.json",  # flask-caching: withdrawn, must not alert
    "PyPI/GHSA-h5c8-rqwp-cp95.json",  # jinja2 3.1.2 on the other system
]
PACKAGES = [
    {"ecosystem": "npm", "name": "jquery", "version": "3.4.1"},
    {"ecosystem": "PyPI", "name": "flask", "version": "2.2.2"},
    {"ecosystem": "PyPI", "name": "requests", "version": "2.31.0"},
    {"ecosystem": "PyPI", "name": "flask-caching", "version": "2.0.2"},
]


def feed_dir(tmp_path: Path) -> Path:
    """A local OSV export: real records plus one malformed document."""
    folder = tmp_path / "osv"
    folder.mkdir()
    for rel in RECORDS:
        shutil.copy(OSV / rel, folder / Path(rel).name)
    (folder / "BROKEN-1.json").write_text('{"id": "BROKEN-1", "affected": "not a list"}')
    return folder


def feeds_config(tmp_path: Path, **extra: Any) -> Any:
    return make_config(
        systems={
            "web-shop": {"packages": PACKAGES},
            "billing": {"owner": OTHER, "packages": [{"ecosystem": "PyPI", "name": "jinja2", "version": "3.1.2"}]},
        },
        feeds={"osv": {"source": str(feed_dir(tmp_path))}, "kev": {"source": str(KEV)}},
        **extra,
    )


def posts(h: Harness) -> list[Message]:
    return h.fake.channel_messages("C0ADVISORIES")


def post_of(h: Harness, advisory_id: str) -> Message:
    found = [m for m in posts(h) if m.text.startswith(advisory_id)]
    assert len(found) == 1, [m.text for m in posts(h)]
    return found[0]


async def record(h: Harness, alias: str) -> AdvisoryRecord:
    async with h.deps.sessions.begin() as s:
        ids = await store.owners_of(s, [alias])
        assert len(ids) == 1, f"{alias} belongs to {ids}"
        rec = await store.get(s, ids[0])
        assert rec is not None
        return rec


async def test_osv_and_kev_merge_post_only_affected_systems_and_quarantine_once(
    harness_factory: Any, tmp_path: Path
) -> None:
    h: Harness = await harness_factory(feeds_config(tmp_path))
    outcomes = await run_feeds_poll(h.deps)
    assert outcomes["osv"].quarantined == 1 and outcomes["osv"].changed == 5
    assert not outcomes["kev"].error

    # one advisory for the GHSA record and its CVE from KEV: known exploited, KEV due date merged in
    jquery = await record(h, "CVE-2020-11023")
    assert jquery.primary_id == "GHSA-jpcq-cgw6-v4j6" and jquery.known_exploited
    assert (await record(h, "GHSA-jpcq-cgw6-v4j6")).id == jquery.id
    assert sorted(jquery.sources) == ["kev", "osv"]

    # posts: jquery and flask on web-shop, jinja2 on billing; not requests (fixed), not flask-caching (withdrawn)
    texts = sorted(m.text.split(" ")[0] for m in posts(h) if not m.text.startswith(":warning:"))
    assert texts == ["GHSA-h5c8-rqwp-cp95", "GHSA-jpcq-cgw6-v4j6", "PYSEC-2023-62"]
    shown = str(post_of(h, "GHSA-jpcq-cgw6-v4j6").blocks)
    assert "Known exploited" in shown and "3.4.1 → 3.5.0" in shown and f"<@{OWNER}>" in shown
    assert "SLA due" in shown and "<!date^" in shown and "advisory_create_change" in shown
    assert "2.2.2 → 2.2.5" in str(post_of(h, "PYSEC-2023-62").blocks)
    assert f"<@{OTHER}>" in str(post_of(h, "GHSA-h5c8-rqwp-cp95").blocks)
    assert (await record(h, "PYSEC-2021-13")).status is AdvisoryStatus.WITHDRAWN

    # the malformed document is reported once, naming source, document and reason
    reports = [m.text for m in posts(h) if m.text.startswith(":warning:")]
    assert len(reports) == 1 and "osv" in reports[0] and "BROKEN-1.json" in reports[0]

    # the same documents again (cursors forgotten): nothing new is posted, nothing re-reported
    async with h.deps.sessions.begin() as s:
        await s.execute(delete(FeedState))
    before = len(h.fake.calls)
    again = await run_feeds_poll(h.deps)
    assert again["osv"].changed == 0 and again["osv"].unchanged == 5 and again["kev"].changed == 0
    assert [c.method for c in h.fake.calls[before:]] == []


async def test_upstream_modification_updates_post_and_withdrawal_marks_it(harness_factory: Any, tmp_path: Path) -> None:
    h: Harness = await harness_factory(feeds_config(tmp_path))
    await run_feeds_poll(h.deps)
    flask = post_of(h, "PYSEC-2023-62")
    path = tmp_path / "osv" / "PYSEC-2023-62.json"

    doc = json.loads(path.read_text())
    doc["modified"] = "2024-01-01T00:00:00Z"
    ecosystem = next(r for r in doc["affected"][0]["ranges"] if r["type"] == "ECOSYSTEM")
    ecosystem["events"] = [{"introduced": "0"}, {"fixed": "2.2.3"}]
    path.write_text(json.dumps(doc))
    await run_feeds_poll(h.deps, only="osv")
    assert "2.2.2 → 2.2.3" in str(h.latest(flask).blocks), "the post is updated in place"
    note = await eventually(lambda: h.thread(flask), what="thread note")
    assert "modified upstream" in note[-1].text and "fixed versions changed" in note[-1].text
    assert len([m for m in posts(h) if m.text.startswith("PYSEC-2023-62")]) == 1

    doc["withdrawn"] = "2024-02-01T00:00:00Z"
    doc["modified"] = "2024-02-01T00:00:00Z"
    path.write_text(json.dumps(doc))
    await run_feeds_poll(h.deps, only="osv")
    assert "Withdrawn" in str(h.latest(flask).blocks)
    assert "advisory_create_change" not in str(h.latest(flask).blocks), "no triage buttons on a withdrawn one"
    assert "withdrawn upstream" in h.thread(flask)[-1].text
    assert (await record(h, "PYSEC-2023-62")).status is AdvisoryStatus.WITHDRAWN


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_unmatched_critical_posted_only_when_configured(harness_factory: Any, tmp_path: Path) -> None:
    cfg = feeds_config(tmp_path, advisories={"post_unmatched_critical": True})
    h: Harness = await harness_factory(cfg)
    await run_feeds_poll(h.deps, only="kev")
    # every KEV entry counts as critical: posted although no system is known to be affected
    assert len(posts(h)) == 22 and "None of our systems" in str(posts(h)[0].blocks)
    async with h.deps.sessions.begin() as s:
        rows = (await s.execute(select(AdvisoryRecord))).scalars().all()
    assert all(r.message_ts for r in rows)
