"""One hostile document costs that document, never the feed: deep nesting, lying zip headers, huge members."""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

from bot.feeds.csaf import CsafFeed
from bot.feeds.http import HttpSettings
from bot.feeds.kev import KevFeed
from bot.feeds.osv import OsvFeed
from tests.feeds.conftest import DATA, GpgKey, Loopback
from tests.feeds.test_csaf import DOCS, _feed, _publish

HTTP = HttpSettings(retries=0, backoff=0, timeout=10)
RECORDS = sorted(p for p in (DATA / "osv").glob("*/*.json") if p.parent.name != "schema")[:3]
DEEP = b'{"id": "DEEP-1", "affected": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _osv(source: Path) -> OsvFeed:
    return OsvFeed({"source": str(source)}, key_path="feeds.osv", http=HTTP)


async def test_osv_record_nested_100000_deep_is_quarantined_and_the_rest_ingested(tmp_path: Path) -> None:
    for path in RECORDS:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "DEEP-1.json").write_bytes(DEEP)
    batch = await _osv(tmp_path).poll(cursor={})
    assert sorted(a.id for a in batch.advisories) == sorted(p.stem for p in RECORDS)
    assert [(q.document, q.reason) for q in batch.quarantined] == [("DEEP-1.json", "nested deeper than 64 levels")]
    assert batch.cursor.get("digest")  # the cursor moves: the same bad record is not re-read forever


def _lie_about_size(archive: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size of ``member`` in its local header and the central directory."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    # local file header: uncompressed size at offset 22
    struct.pack_into("<I", data, info.header_offset + 22, size)
    # central directory entry: signature PK\1\2, uncompressed size at offset 24
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) != -1:
        name_len = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + name_len].decode() == member:
            struct.pack_into("<I", data, start + 24, size)
        start += 4
    archive.write_bytes(bytes(data))


# a complete OSV record (one without "affected" is quarantined as not OSV), small whatever its header says
HUGE_RECORD = (
    b'{"id": "HUGE-1", "modified": "2024-01-01T00:00:00Z", '
    b'"affected": [{"package": {"ecosystem": "PyPI", "name": "huge"}, "versions": ["1.0"]}]}'
)


async def test_zip_members_whose_headers_lie_are_quarantined_alone(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in RECORDS:
            zf.write(path, path.name)
        zf.writestr("SHORT-1.json", b'{"id": "SHORT-1"}' + b" " * 5000)
        zf.writestr("HUGE-1.json", HUGE_RECORD)
    _lie_about_size(archive, "SHORT-1.json", 10)  # claims 10 bytes: the CRC no longer matches
    _lie_about_size(archive, "HUGE-1.json", 0xFFFF0000)  # claims 4 GB: once refused the whole zip
    batch = await _osv(archive).poll(cursor={})
    # the real bytes count, not the header: HUGE-1 is a small, fine record
    assert sorted(a.id for a in batch.advisories) == sorted([*(p.stem for p in RECORDS), "HUGE-1"])
    assert [q.document for q in batch.quarantined] == ["SHORT-1.json"]
    assert all("all.zip" not in q.reason and str(tmp_path) not in q.reason for q in batch.quarantined)
    assert batch.cursor.get("digest")


async def test_kev_catalogue_nested_deep_is_quarantined_and_the_cursor_moves(tmp_path: Path) -> None:
    path = tmp_path / "kev.json"
    path.write_bytes(b'{"vulnerabilities": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    feed = KevFeed({"source": str(path)}, key_path="feeds.kev", http=HTTP)
    first = await feed.poll(cursor={})
    assert first.advisories == () and "nested deeper than 64 levels" in first.quarantined[0].reason
    assert (await feed.poll(cursor=first.cursor)).quarantined == ()


async def test_signed_csaf_document_nested_deep_is_quarantined_and_the_rest_ingested(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, _ = gpg_keys
    deep = tmp_path / "zz-deep.json"
    deep.write_bytes(b'{"document": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    _publish(loopback, pinned, [*DOCS[:2], deep])
    feed: CsafFeed = _feed(loopback, pinned, tmp_path)
    batch = await feed.poll(cursor={})
    assert len(batch.advisories) == 2
    assert [q.reason for q in batch.quarantined] == ["nested deeper than 64 levels"]
    assert (await feed.poll(cursor=batch.cursor)).quarantined == ()
