"""CISA Known Exploited Vulnerabilities (KEV) catalogue feed.

Each catalogue entry becomes ``Advisory(id=<cveID>, source="kev", known_exploited=True,
kev_due_date=<dueDate>)`` with unknown severity and no affected packages: KEV says *that* a CVE is
exploited and by when federal agencies must fix it, not which package versions are affected. The caller
merges it with the OSV/CSAF advisories carrying the same CVE id (``Advisory.all_ids``).

``source`` is the catalogue's URL (fetched with a conditional GET; cursor ``etag``/``last_modified``) or a
local JSON file (cursor ``digest``). Every entry is returned whenever the catalogue changed; the caller
de-duplicates by ``content_hash``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from bot.advisories.model import Advisory, content_hash
from bot.errors import FeedError
from bot.feeds import limits
from bot.feeds.base import Feed, FeedBatch, FeedOptions, Quarantined
from bot.feeds.http import check_source, read_source

DEFAULT_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
_CVE = re.compile(r"^CVE-\d{4}-\d{4,19}$")
_URL = re.compile(r"https?://[^\s;,]+")


class KevOptions(FeedOptions):
    """``source``: the catalogue URL (default: CISA's) or a local file path."""

    source: str = DEFAULT_URL


def parse_kev_entry(entry: Mapping[str, Any], *, source: str = "kev") -> Advisory:
    """Map one KEV catalogue entry to an ``Advisory``; raise ``FeedError`` if it is malformed."""
    if not isinstance(entry, Mapping):
        raise FeedError("a KEV entry must be a JSON object")
    cve = entry.get("cveID")
    if not isinstance(cve, str) or not _CVE.match(cve):
        raise FeedError(f"cveID {str(cve)[:40]!r} is not a CVE id")
    try:
        added = date.fromisoformat(str(entry["dateAdded"]))
        due = date.fromisoformat(str(entry["dueDate"]))
    except (KeyError, ValueError) as exc:
        raise FeedError(f"KEV {cve}: dateAdded/dueDate missing or not YYYY-MM-DD") from exc
    name = str(entry.get("vulnerabilityName") or "")
    description = str(entry.get("shortDescription") or "")
    action = str(entry.get("requiredAction") or "")
    notes = str(entry.get("notes") or "")
    details = description + (f"\n\nRequired action: {action}" if action else "")
    return Advisory(
        id=cve,
        source=source,
        summary=name or description[:200],
        details=details,
        published=datetime(added.year, added.month, added.day, tzinfo=UTC),
        known_exploited=True,
        kev_due_date=due,
        references=tuple(dict.fromkeys(_URL.findall(notes))),
        content_hash=content_hash(entry),
    )


def parse_catalog(raw: bytes, *, source: str = "kev", document: str = "catalog") -> FeedBatch:
    """Parse a whole KEV catalogue; malformed entries are quarantined, the rest accepted."""
    data = limits.load_json(raw, where=f"KEV catalogue {document}")
    entries = data.get("vulnerabilities") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise FeedError(f"KEV catalogue {document} has no 'vulnerabilities' list")
    advisories: list[Advisory] = []
    quarantined: list[Quarantined] = []
    for i, entry in enumerate(entries):
        label = entry.get("cveID") if isinstance(entry, dict) else None
        try:
            advisories.append(parse_kev_entry(entry, source=source))
        except (FeedError, ValueError, TypeError) as exc:
            quarantined.append(Quarantined(source=source, document=f"{document}#{label or i}", reason=str(exc)))
    return FeedBatch(advisories=tuple(advisories), quarantined=tuple(quarantined))


class KevFeed(Feed):
    """The CISA KEV JSON catalogue (see the module docstring)."""

    name: ClassVar[str] = "kev"
    Options: ClassVar[type[FeedOptions]] = KevOptions
    options: KevOptions

    def _check(self) -> None:
        check_source(self.options.source, key_path=self.key_path)

    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        src = self.options.source
        raw, new_cursor = await read_source(src, cursor=cursor, settings=self.http)
        if raw is None:
            return FeedBatch(cursor=new_cursor)
        try:
            batch = parse_catalog(raw, source=self.name, document=src)
        except FeedError as exc:
            # The catalogue itself is the malformed document: report it once (the cursor moves on, so
            # the same broken version is not re-reported every poll).
            batch = FeedBatch(quarantined=(Quarantined(source=self.name, document=src, reason=str(exc)),))
        return batch.model_copy(update={"cursor": new_cursor})
