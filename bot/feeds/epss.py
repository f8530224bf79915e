"""FIRST's Exploit Prediction Scoring System (EPSS) daily scores feed.

The daily file ``epss_scores-YYYY-MM-DD.csv.gz`` (gzip; plain CSV is accepted too) starts with a comment
line ``#model_version:v2023.03.01,score_date:2024-07-10T00:00:00+0000`` followed by the header
``cve,epss,percentile`` and one row per CVE. EPSS is an *estimate* of the probability that a CVE is
exploited in the next 30 days; it never proves exploitation (that is KEV's job).

``source`` is the file's URL (conditional GET; cursor ``etag``/``last_modified``) or a local path (cursor
``digest``). The batch carries ``scores`` only: a complete snapshot that replaces the stored scores. Rows
that do not parse are quarantined one by one; a file without the expected header is quarantined whole.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import re
from typing import ClassVar

from bot.errors import FeedError
from bot.feeds.base import ExploitScore, Feed, FeedBatch, FeedOptions, Quarantined
from bot.feeds.http import check_source, read_source

DEFAULT_URL = "https://epss.cyentia.com/epss_scores-current.csv.gz"
_CVE = re.compile(r"^CVE-\d{4}-\d{4,19}$")
_SCORE_DATE = re.compile(r"score_date:(\d{4}-\d{2}-\d{2})")


class EpssOptions(FeedOptions):
    """``source``: the daily file's URL (default: the current file) or a local path."""

    source: str = DEFAULT_URL


def _text(raw: bytes) -> str:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FeedError(f"not a valid gzip file: {exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeedError("not UTF-8 text") from exc


def parse_scores(raw: bytes, *, source: str = "epss", document: str = "epss") -> FeedBatch:
    """Parse a daily EPSS file; malformed rows are quarantined, a malformed file raises ``FeedError``."""
    lines = io.StringIO(_text(raw))
    first = lines.readline()
    found = _SCORE_DATE.search(first) if first.startswith("#") else None
    if found is None:
        raise FeedError(f"EPSS file {document}: first line is not '#model_version:...,score_date:YYYY-MM-DD...'")
    score_date = found.group(1)
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["cve", "epss", "percentile"]:
        raise FeedError(f"EPSS file {document}: header is not 'cve,epss,percentile'")
    scores: list[ExploitScore] = []
    quarantined: list[Quarantined] = []
    for n, row in enumerate(reader, start=3):
        try:
            cve, epss, pct = row[0].strip(), float(row[1]), float(row[2])
            if not _CVE.match(cve) or not (0 <= epss <= 1 and 0 <= pct <= 1):
                raise ValueError
        except (IndexError, ValueError):
            reason = f"line {n} is not 'CVE-id,probability,percentile' with values between 0 and 1"
            quarantined.append(Quarantined(source=source, document=f"{document}#{n}", reason=reason))
            continue
        scores.append(ExploitScore(cve=cve, epss=epss, percentile=pct, score_date=score_date))
    return FeedBatch(scores=tuple(scores), quarantined=tuple(quarantined))


class EpssFeed(Feed):
    """The FIRST EPSS daily scores (see the module docstring)."""

    name: ClassVar[str] = "epss"
    Options: ClassVar[type[FeedOptions]] = EpssOptions
    options: EpssOptions

    def _check(self) -> None:
        check_source(self.options.source, key_path=self.key_path)

    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        src = self.options.source
        raw, new_cursor = await read_source(src, cursor=cursor, settings=self.http)
        if raw is None:
            return FeedBatch(cursor=new_cursor)
        try:
            batch = await asyncio.to_thread(parse_scores, raw, source=self.name, document=src)
        except FeedError as exc:
            batch = FeedBatch(quarantined=(Quarantined(source=self.name, document=src, reason=str(exc)),))
        return batch.model_copy(update={"cursor": new_cursor})
