"""Exploit-aware priority: tiers from KEV, EPSS, severity and exposure by the policy's rules; the post says why;
the SLA clock starts at discovery; the rule set is validated."""

from __future__ import annotations

import gzip
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import OTHER, SHARED_DATA, Harness, eventually, make_config

from bot.config import parse_config
from bot.errors import ConfigError
from bot.jobs import run_feeds_poll
from bot.workflows import advisory_export
from bot.workflows.advisory_export import status_of
from bot.workflows.sla import arrival_note, match_due
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus

PRIORITY = [
    {"tier": "fix-now", "when": {"kev": True}},
    {"tier": "fix-now", "when": {"epss_at_least": 0.5, "exposure": "internet"}},
    {"tier": "urgent", "when": {"severity_at_least": "high"}},
    {"tier": "routine"},
]
SLA = {"fix-now": 7, "urgent": 30, "routine": 90}
HEAD = "#model_version:v2023.03.01,score_date:2024-07-10T00:00:00+0000\ncve,epss,percentile\n"


def epss_file(path: Path, rows: str) -> Path:
    path.write_bytes(gzip.compress((HEAD + rows).encode()))
    return path


def config(tmp_path: Path) -> Any:
    osv = tmp_path / "osv"
    osv.mkdir()
    for rel in ("npm/GHSA-jpcq-cgw6-v4j6.json", "PyPI/PYSEC-2023-62.json", "PyPI/GHSA-h5c8-rqwp-cp95.json"):
        shutil.copy(SHARED_DATA / "osv" / rel, osv / Path(rel).name)
    epss = epss_file(
        tmp_path / "epss_scores-2024-07-10.csv.gz",
        "CVE-2020-11023,0.97123,0.99945\nCVE-2023-30861,0.61,0.98\nCVE-2024-22195,0.61,0.98\n",
    )
    web = [{"ecosystem": "npm", "name": "jquery", "version": "3.4.1"}, {"ecosystem": "PyPI", "name": "flask",
           "version": "2.2.2"}]  # fmt: skip
    return make_config(
        systems={
            "web-shop": {"packages": web, "exposure": "internet"},
            "billing": {"owner": OTHER, "packages": [{"ecosystem": "PyPI", "name": "jinja2", "version": "3.1.2"}]},
        },
        policy={"priority": PRIORITY, "sla_days": SLA},
        feeds={
            "epss": {"source": str(epss)},
            "osv": {"source": str(osv)},
            "kev": {"source": str(SHARED_DATA / "kev" / "known_exploited_vulnerabilities.excerpt.json")},
        },
    )


def post_text(h: Harness, advisory_id: str) -> str:
    found = [m for m in h.fake.channel_messages("C0ADVISORIES") if m.text.startswith(advisory_id)]
    assert len(found) == 1, [m.text for m in h.fake.channel_messages("C0ADVISORIES")]
    return str(found[0].blocks)


async def listed(h: Harness) -> dict[str, dict[str, Any]]:
    async with h.deps.sessions.begin() as s:
        return {o["advisory"]: o async for o in advisory_export.match_objects(s)}


async def test_tiers_from_kev_epss_and_exposure_and_the_post_says_why(harness_factory: Any, tmp_path: Path) -> None:
    h: Harness = await harness_factory(config(tmp_path))
    outcomes = await run_feeds_poll(h.deps)
    assert outcomes["epss"].changed == 3 and not outcomes["epss"].error
    await eventually(lambda: len(h.fake.channel_messages("C0ADVISORIES")) == 3, what="three posts")

    jquery = post_text(h, "GHSA-jpcq-cgw6-v4j6")
    assert "*Priority* fix-now" in jquery and "in CISA KEV since 2025-01-23: exploitation confirmed" in jquery
    assert "EPSS 0.97 (99th percentile): estimated chance of exploitation" in jquery and "internet-facing" in jquery
    assert "Already overdue*: overdue by its own dates since 2020-05-06 (published 2020-04-29)" in jquery
    flask = post_text(h, "PYSEC-2023-62")
    assert "*Priority* fix-now" in flask and "EPSS 0.61 (98th percentile)" in flask and "CISA KEV" not in flask
    jinja = post_text(h, "GHSA-h5c8-rqwp-cp95")
    assert "*Priority* routine" in jinja and "internet-facing" not in jinja, "same EPSS, internal system"

    rows = await listed(h)
    assert rows["GHSA-jpcq-cgw6-v4j6"]["kev"] is True and rows["GHSA-jpcq-cgw6-v4j6"]["priority"] == "fix-now"
    f = rows["PYSEC-2023-62"]
    assert f["priority"] == "fix-now" and f["epss"] == pytest.approx(0.61) and f["kev"] is False
    due = datetime.fromisoformat(f["sla_due"]) - datetime.fromisoformat(f["discovered"])
    assert due == timedelta(days=7), "the clock starts at discovery, fix-now gets 7 days"
    assert rows["GHSA-h5c8-rqwp-cp95"]["priority"] == "routine"

    # tomorrow's file: flask's CVE is no longer likely to be exploited; its tier and post follow
    epss_file(tmp_path / "epss_scores-2024-07-10.csv.gz", "CVE-2020-11023,0.97,0.999\nCVE-2023-30861,0.01,0.2\n")
    h.clock.advance(timedelta(days=1))
    await run_feeds_poll(h.deps, only="epss")
    assert (await listed(h))["PYSEC-2023-62"]["priority"] == "routine"
    await eventually(lambda: "*Priority* routine" in post_text(h, "PYSEC-2023-62"), what="post updated")


def test_match_due_from_discovery_or_publication_capped_by_kev() -> None:
    policy = make_config(policy={"priority": PRIORITY, "sla_days": SLA}).policy
    seen = datetime(2026, 3, 1, tzinfo=UTC)
    published = datetime(2026, 2, 25, tzinfo=UTC)
    assert match_due(policy, tier="urgent", discovered=seen, published=published, kev_due=None) == seen + timedelta(30)
    by_pub = make_config(policy={"priority": PRIORITY, "sla_days": SLA, "sla_from": "published"}).policy
    assert match_due(
        by_pub, tier="urgent", discovered=seen, published=published, kev_due=None
    ) == published + timedelta(30)
    capped = match_due(policy, tier="routine", discovered=seen, published=published, kev_due=date(2026, 3, 10))
    assert capped == datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC), "KEV's earlier due date wins"
    old = datetime(2019, 1, 1, tzinfo=UTC)
    late = match_due(by_pub, tier="urgent", discovered=seen, published=old, kev_due=None)
    assert late == seen + timedelta(30), "overdue by its own dates: a fresh period from discovery, no burst"
    note = arrival_note(by_pub, tier="urgent", discovered=seen, published=old, kev_due=None)
    assert note.startswith("overdue by its own dates since 2019-01-31")
    assert arrival_note(policy, tier="urgent", discovered=seen, published=published, kev_due=None) == ""


def test_priority_rules_are_validated() -> None:
    base = make_config().model_dump(mode="json")
    bad_tier = {**base, "policy": {**base["policy"], "priority": PRIORITY, "sla_days": {"fix-now": 7}}}
    with pytest.raises(ConfigError, match=r"no sla_days for 2\.tier 'urgent', 3\.tier 'routine'"):
        parse_config(bad_tier)
    typo = {**base, "policy": {**base["policy"], "priority": [{"tier": "x", "when": {"epss_over": 0.5}}],
            "sla_days": {"x": 1}}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"policy\.priority\.0\.when\.epss_over: unknown key"):
        parse_config(typo)
    severity = {**base, "policy": {**base["policy"], "priority": [{"tier": "x", "when": {"severity_at_least": "big"}}],
                "sla_days": {"x": 1}}}  # fmt: skip
    with pytest.raises(ConfigError, match="unknown severity 'big'"):
        parse_config(severity)
    exposure = {**base, "systems": {"web-shop": {**base["systems"]["web-shop"], "exposure": "public"}}}
    with pytest.raises(ConfigError, match=r"systems\.web-shop\.exposure"):
        parse_config(exposure)
    assert make_config().systems["web-shop"].exposure == "internal"


def test_list_status_words() -> None:
    def rec(status: AdvisoryStatus) -> AdvisoryRecord:
        return AdvisoryRecord(primary_id="X-1", status=status)

    affected, undecided = AdvisoryMatch(status="affected"), AdvisoryMatch(status="needs_triage")
    assert status_of(rec(AdvisoryStatus.OPEN), affected) == "open"
    assert status_of(rec(AdvisoryStatus.OPEN), undecided) == "needs_triage"
    assert status_of(rec(AdvisoryStatus.NOT_APPLICABLE), affected) == "not_affected"
    assert status_of(rec(AdvisoryStatus.CHANGE_REQUESTED), undecided) == "change_requested"
    assert status_of(rec(AdvisoryStatus.REMEDIATED), affected) == "remediated"
