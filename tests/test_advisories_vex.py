"""VEX and fix lines through ingestion: the merged record suppresses one product only and posts the fix line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import REPO, SHARED_DATA, Harness, eventually, make_config

from bot.advisories.model import Advisory
from bot.advisories.osv import parse_osv
from bot.feeds.base import FeedBatch
from bot.feeds.csaf import parse_checked
from bot.workflows import advisories as flow
from bot.workflows.advisory_posts import publish_all
from storage import advisories as store

PACKAGES = [
    {"ecosystem": "npm", "name": "lodash", "version": "4.17.20"},
    {"ecosystem": "npm", "name": "lodash-es", "version": "4.17.20"},
    {"ecosystem": "npm", "name": "jquery", "version": "3.4.1"},
]


def _csaf(path: Path) -> Advisory:
    adv = parse_checked(json.loads(path.read_text()), document=path.name, source="csaf")
    assert isinstance(adv, Advisory)
    return adv


async def test_vex_and_remediation_reach_the_stored_matches_and_the_post(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    osv = parse_osv(json.loads((SHARED_DATA / "osv" / "npm" / "GHSA-35jh-r3h4-6jhm.json").read_text()))
    vex = _csaf(REPO / "tests" / "data" / "csaf" / "vex-npm.json")
    async with h.deps.sessions.begin() as s:
        result = await flow.ingest(s, config=h.config, batch=FeedBatch(advisories=(osv, vex)), now=h.clock.now())
    async with h.deps.sessions.begin() as s:
        # The VEX document carries two CVEs: it merges with the OSV lodash record by CVE-2021-23337.
        (owner,) = await store.owners_of(s, ["CVE-2021-23337"])
        record = await store.get(s, owner)
        assert record is not None
        merged = flow.merged(record)
        assert merged.severity_source == "cvss_v3.1" and merged.not_affected[0].name == "lodash"
        rows = await store.matches(s, [record.id])
        assert sorted((m.package, m.status) for m in rows) == [("jquery", "affected"), ("lodash-es", "affected")]
        jquery = next(m for m in rows if m.package == "jquery")
        assert jquery.fixed == ["3.5.0"] and jquery.remediation.startswith("Upgrade jQuery to 3.5.0.")
    await publish_all(h.deps, result.changed)
    (post,) = await eventually(lambda: h.fake.channel_messages("C0ADVISORIES"))
    text = json.dumps(post.blocks, ensure_ascii=False)
    assert "lodash-es" in text and "npm/lodash`" not in text  # the cleared product is not listed
    assert "fix: Upgrade jQuery to 3.5.0." in text


async def test_the_post_says_where_the_severity_came_from(harness_factory: Any) -> None:
    packages = [{"ecosystem": "PyPI", "name": "widget", "version": "1.0.0"}]
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": packages}}))
    flagged = _csaf(REPO / "tests" / "data" / "csaf" / "score-mismatch.json")
    async with h.deps.sessions.begin() as s:
        result = await flow.ingest(s, config=h.config, batch=FeedBatch(advisories=(flagged,)), now=h.clock.now())
    await publish_all(h.deps, result.changed)
    (post,) = await eventually(lambda: h.fake.channel_messages("C0ADVISORIES"))
    text = json.dumps(post.blocks, ensure_ascii=False)
    assert "*Medium* (CVSS 6.5) · from CVSS 3.1 vector" in text
    assert "declared score disagreed with its vector" in text
