"""CISA KEV catalogue: every entry becomes a known-exploited advisory with its due date."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from bot.advisories.model import Severity
from bot.errors import ConfigError
from bot.feeds.http import HttpSettings
from bot.feeds.kev import KevFeed, parse_catalog
from tests.feeds.conftest import DATA, Loopback

CATALOG = DATA / "kev" / "known_exploited_vulnerabilities.excerpt.json"
HTTP = HttpSettings(retries=0, backoff=0, timeout=5)


def test_parse_catalog() -> None:
    batch = parse_catalog(CATALOG.read_bytes())
    assert len(batch.advisories) == 22 and batch.quarantined == ()
    by_id = {a.id: a for a in batch.advisories}
    jquery = by_id["CVE-2020-11023"]
    assert jquery.source == "kev" and jquery.known_exploited
    assert jquery.kev_due_date == date(2025, 2, 13)
    assert jquery.published is not None and jquery.published.date() == date(2025, 1, 23)
    assert jquery.severity is Severity.UNKNOWN and jquery.affected == ()
    assert jquery.summary == "JQuery Cross-Site Scripting (XSS) Vulnerability"
    assert all(a.known_exploited and a.kev_due_date for a in batch.advisories)
    git = by_id["CVE-2025-48384"]
    assert "https://nvd.nist.gov/vuln/detail/CVE-2025-48384" in git.references
    assert "Required action:" in git.details


def test_malformed_entry_quarantined_rest_kept() -> None:
    data = json.loads(CATALOG.read_text())
    data["vulnerabilities"][0]["dueDate"] = "soon"
    data["vulnerabilities"][1]["cveID"] = "not-a-cve"
    batch = parse_catalog(json.dumps(data).encode(), document="kev.json")
    assert len(batch.advisories) == 20
    assert [q.document for q in batch.quarantined] == ["kev.json#CVE-2025-48384", "kev.json#not-a-cve"]


async def test_local_file_poll_is_incremental(tmp_path: Path) -> None:
    path = tmp_path / "kev.json"
    path.write_bytes(CATALOG.read_bytes())
    feed = KevFeed({"source": str(path)}, key_path="feeds.kev", http=HTTP)
    first = await feed.poll(cursor={})
    assert len(first.advisories) == 22
    assert (await feed.poll(cursor=first.cursor)).advisories == ()


async def test_http_poll_with_conditional_get(loopback: Loopback) -> None:
    loopback.files["/kev.json"] = CATALOG.read_bytes()
    feed = KevFeed({"source": loopback.url("/kev.json")}, key_path="feeds.kev", http=HTTP)
    first = await feed.poll(cursor={})
    assert len(first.advisories) == 22 and "etag" in first.cursor
    second = await feed.poll(cursor=first.cursor)
    assert second.advisories == () and second.cursor == first.cursor
    assert loopback.hits("/kev.json")[-1]["If-None-Match"] == first.cursor["etag"]


async def test_broken_catalog_is_quarantined_once(loopback: Loopback) -> None:
    loopback.files["/kev.json"] = b"<html>maintenance</html>"
    feed = KevFeed({"source": loopback.url("/kev.json")}, key_path="feeds.kev", http=HTTP)
    first = await feed.poll(cursor={})
    assert first.advisories == () and "not valid JSON" in first.quarantined[0].reason
    assert (await feed.poll(cursor=first.cursor)).quarantined == ()


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"feeds\.kev\.surce: unknown key"):
        KevFeed({"surce": "x"}, key_path="feeds.kev", http=HTTP)
    with pytest.raises(ConfigError, match=r"feeds\.kev\.source"):
        KevFeed({"source": "/does/not/exist.json"}, key_path="feeds.kev", http=HTTP)
