"""OSV parsing of every sample record, and the OSV feed from a directory, a zip, modified_id.csv and HTTP."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot.advisories.model import Severity
from bot.advisories.osv import parse_osv
from bot.errors import FeedError
from bot.feeds.http import HttpSettings
from bot.feeds.osv import OsvFeed
from tests.feeds.conftest import DATA, Loopback

RECORDS = sorted(p for p in (DATA / "osv").glob("*/*.json") if p.parent.name != "schema")
HTTP = HttpSettings(retries=0, backoff=0, timeout=5)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _feed(source: str | Path) -> OsvFeed:
    return OsvFeed({"source": str(source)}, key_path="feeds.osv", http=HTTP)


def test_sample_set_is_complete() -> None:
    assert len(RECORDS) == 31


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_parse_every_record_preserves_ids_aliases_and_ranges(path: Path) -> None:
    data = _load(path)
    adv = parse_osv(data)
    assert adv.id == data["id"] == path.stem
    assert adv.source == "osv"
    assert adv.aliases[: len(data.get("aliases", []))] == tuple(data.get("aliases", []))
    assert set(data.get("upstream", [])) <= set(adv.aliases)
    with_package = [a for a in data.get("affected", []) if a.get("package")]
    assert len(adv.affected) == len(with_package)
    for raw, pkg in zip(with_package, adv.affected, strict=True):
        assert (pkg.ecosystem, pkg.name) == (raw["package"]["ecosystem"], raw["package"]["name"])
        assert pkg.versions == tuple(raw.get("versions", []))
        assert [r.type for r in pkg.ranges] == [r["type"] for r in raw.get("ranges", [])]
        events = [[e.model_dump(exclude_none=True) for e in r.events] for r in pkg.ranges]
        assert events == [r["events"] for r in raw.get("ranges", [])]
    assert (adv.withdrawn is not None) == ("withdrawn" in data)
    assert adv.modified is not None and adv.modified.tzinfo is not None
    assert len(adv.content_hash) == 64


def test_last_affected_and_withdrawn_are_kept() -> None:
    py = parse_osv(_load(DATA / "osv/PyPI/PYSEC-2022-42969.json"))
    assert py.affected[0].ranges[0].events[-1].last_affected == "1.11.0"
    caching = parse_osv(_load(DATA / "osv/PyPI/PYSEC-2021-13.json"))
    assert caching.withdrawn is not None and caching.withdrawn.year == 2023


def test_severity_from_cvss_vector_and_vendor_words() -> None:
    assert parse_osv(_load(DATA / "osv/npm/GHSA-xvch-5gv4-984h.json")).severity is Severity.CRITICAL
    ubuntu = parse_osv(_load(DATA / "osv/Ubuntu/CVE-2010-5298.json"))
    assert ubuntu.severity is Severity.LOW  # ecosystem_specific.ubuntu_priority
    go = parse_osv(_load(DATA / "osv/Go/GO-2020-0001.json"))
    assert go.severity is Severity.UNKNOWN and go.cvss_score is None


@pytest.mark.parametrize(
    "broken",
    [
        {"modified": "2024-01-01T00:00:00Z"},
        {"id": "X-1", "affected": [{"package": {"ecosystem": "PyPI"}}]},
        {
            "id": "X-1",
            "affected": [{"package": {"ecosystem": "PyPI", "name": "a"}, "ranges": [{"events": []}]}],
        },
        {
            "id": "X-1",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "a"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}],
                }
            ],
        },
        {"id": "X-1", "modified": "yesterday"},
        {"id": "X-1", "aliases": "CVE-1"},
    ],
)
def test_malformed_record_raises_feed_error(broken: dict[str, Any]) -> None:
    with pytest.raises(FeedError):
        parse_osv(broken)


async def test_directory_poll_then_unchanged_poll_is_empty() -> None:
    feed = _feed(DATA / "osv")
    first = await feed.poll(cursor={})
    assert len(first.advisories) == 31
    # The folder also holds the OSV JSON schema: not a record, so it is quarantined, not fatal.
    assert [q.document for q in first.quarantined] == ["schema/osv-schema-1.7.5.json"]
    second = await feed.poll(cursor=first.cursor)
    assert second.advisories == () and second.cursor == first.cursor


async def test_zip_poll(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in RECORDS[:5]:
            zf.write(path, path.name)
        zf.writestr("README.txt", "not a record")
    batch = await _feed(archive).poll(cursor={})
    assert sorted(a.id for a in batch.advisories) == sorted(p.stem for p in RECORDS[:5])


async def test_malformed_document_quarantined_rest_ingested(tmp_path: Path) -> None:
    for path in RECORDS[:3]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "BROKEN-1.json").write_text("{not json")
    (tmp_path / "BROKEN-2.json").write_text(json.dumps({"id": "BROKEN-2", "affected": [{"package": {}}]}))
    batch = await _feed(tmp_path).poll(cursor={})
    assert sorted(a.id for a in batch.advisories) == sorted(p.stem for p in RECORDS[:3])
    assert {q.document for q in batch.quarantined} == {"BROKEN-1.json", "BROKEN-2.json"}
    assert all(q.source == "osv" and q.reason for q in batch.quarantined)
    assert "not valid JSON" in next(q.reason for q in batch.quarantined if q.document == "BROKEN-1.json")
    # Reported once: an unchanged source yields nothing on the next poll.
    again = await _feed(tmp_path).poll(cursor=batch.cursor)
    assert again.quarantined == () and again.advisories == ()


def _index(records: list[tuple[str, str]]) -> str:
    return "".join(f"{stamp},{ident}\n" for stamp, ident in records)


async def test_modified_id_csv_incremental(tmp_path: Path) -> None:
    a, b, c = RECORDS[0], RECORDS[1], RECORDS[2]
    for path in (a, b):
        shutil.copy(path, tmp_path / path.name)
    lines = [("2024-02-01T00:00:00Z", b.stem), ("2024-01-01T00:00:00Z", a.stem)]
    (tmp_path / "modified_id.csv").write_text(_index(lines))
    feed = _feed(tmp_path)
    first = await feed.poll(cursor={})
    assert {x.id for x in first.advisories} == {a.stem, b.stem}
    assert first.cursor["modified"].startswith("2024-02-01")
    shutil.copy(c, tmp_path / c.name)
    (tmp_path / "modified_id.csv").write_text(_index([("2024-03-01T12:00:00Z", c.stem), *lines]))
    second = await feed.poll(cursor=first.cursor)
    assert [x.id for x in second.advisories] == [c.stem]
    third = await feed.poll(cursor=second.cursor)
    assert third.advisories == ()


async def test_modified_id_csv_refuses_traversal(tmp_path: Path) -> None:
    (tmp_path / "modified_id.csv").write_text("2024-01-01T00:00:00Z,../../etc/passwd\n")
    batch = await _feed(tmp_path).poll(cursor={})
    assert batch.advisories == () and "malformed line" in batch.quarantined[0].reason


async def test_http_index_with_conditional_get(loopback: Loopback) -> None:
    a, b = RECORDS[0], RECORDS[1]
    loopback.files["/PyPI/modified_id.csv"] = _index(
        [
            ("2024-02-01T00:00:00Z", b.stem),
            ("2024-01-01T00:00:00Z", a.stem),
            ("2024-01-01T00:00:00Z", "GONE-1"),
        ]
    ).encode()
    loopback.files[f"/PyPI/{a.stem}.json"] = a.read_bytes()
    loopback.files[f"/PyPI/{b.stem}.json"] = b.read_bytes()
    feed = OsvFeed({"source": loopback.url("/PyPI")}, key_path="feeds.osv", http=HTTP)
    first = await feed.poll(cursor={})
    assert {x.id for x in first.advisories} == {a.stem, b.stem}
    assert [q.document for q in first.quarantined] == ["GONE-1"]  # listed but 404
    assert "etag" in first.cursor
    second = await feed.poll(cursor=first.cursor)
    assert second.advisories == () and second.quarantined == ()
    assert loopback.hits("/PyPI/modified_id.csv")[-1]["If-None-Match"] == first.cursor["etag"]
    assert len(loopback.hits(f"/PyPI/{a.stem}.json")) == 1  # not fetched again


async def test_http_zip_with_conditional_get(loopback: Loopback, tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in RECORDS[:2]:
            zf.write(path, path.name)
    loopback.files["/Go/all.zip"] = archive.read_bytes()
    feed = OsvFeed({"source": loopback.url("/Go/all.zip")}, key_path="feeds.osv", http=HTTP)
    first = await feed.poll(cursor={})
    assert len(first.advisories) == 2
    second = await feed.poll(cursor=first.cursor)
    assert second.advisories == ()
    assert "If-None-Match" in loopback.hits("/Go/all.zip")[-1]


async def test_http_server_error_fails_the_poll_without_cursor(loopback: Loopback) -> None:
    loopback.fail["/PyPI/modified_id.csv"] = [500]
    feed = OsvFeed({"source": loopback.url("/PyPI")}, key_path="feeds.osv", http=HTTP)
    with pytest.raises(FeedError, match="HTTP 500"):
        await feed.poll(cursor={})
