"""An OSV zip read again after one record changed: only that record is parsed; the others count as unchanged."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from bot.feeds.http import HttpSettings
from bot.feeds.osv import OsvFeed
from tests.feeds.conftest import DATA


def write(path: Path, details: str) -> None:
    record = json.loads((DATA / "osv" / "PyPI" / "PYSEC-2023-62.json").read_text())
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(50):
            zf.writestr(f"R-{i}.json", json.dumps(record | {"id": f"R-{i}"}))
        zf.writestr("R-changed.json", json.dumps(record | {"id": "R-changed", "details": details}))
        zf.writestr("BROKEN.json", "{not json")


async def test_only_changed_members_are_parsed(tmp_path: Path) -> None:
    path = tmp_path / "all.zip"
    write(path, "first words")
    feed = OsvFeed({"source": str(path)}, key_path="feeds.osv", http=HttpSettings())
    first = await feed.poll(cursor={})
    assert len(first.advisories) == 51 and len(first.quarantined) == 1 and first.unchanged == 0
    write(path, "second words")
    second = await feed.poll(cursor=first.cursor)
    assert [a.id for a in second.advisories] == ["R-changed"] and second.advisories[0].details == "second words"
    assert second.unchanged == 51 and second.quarantined == (), "the broken member was reported once"
    assert (await feed.poll(cursor={})).unchanged == 0, "without the cursor every member is read"
