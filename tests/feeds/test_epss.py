"""FIRST EPSS daily scores: the gzip CSV with its comment line, from a file or a URL with a conditional GET."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.feeds.epss import EpssFeed, parse_scores
from bot.feeds.http import HttpSettings
from tests.feeds.conftest import Loopback

HTTP = HttpSettings(retries=0, backoff=0, timeout=5)
DAILY = (
    "#model_version:v2023.03.01,score_date:2024-07-10T00:00:00+0000\n"
    "cve,epss,percentile\n"
    "CVE-2020-11023,0.97123,0.99945\n"
    "CVE-2023-30861,0.00311,0.70012\n"
    "CVE-2024-22195,0.00044,0.12000\n"
)


def daily(text: str = DAILY) -> bytes:
    """A file as FIRST publishes it (epss_scores-YYYY-MM-DD.csv.gz)."""
    return gzip.compress(text.encode())


def test_parse_daily_file() -> None:
    batch = parse_scores(daily(), document="epss_scores-2024-07-10.csv.gz")
    assert batch.advisories == () and batch.quarantined == ()
    by = {s.cve: s for s in batch.scores}
    assert len(by) == 3 and by["CVE-2020-11023"].epss == pytest.approx(0.97123)
    assert by["CVE-2020-11023"].percentile == pytest.approx(0.99945) and by["CVE-2020-11023"].score_date == "2024-07-10"
    plain = parse_scores(DAILY.encode())
    assert len(plain.scores) == 3, "an uncompressed CSV is read as well"


def test_bad_rows_quarantined_bad_file_refused() -> None:
    batch = parse_scores(daily(DAILY + "not-a-cve,0.5,0.5\nCVE-2024-0001,1.7,0.5\n"), document="e.csv.gz")
    assert len(batch.scores) == 3
    assert [q.document for q in batch.quarantined] == ["e.csv.gz#6", "e.csv.gz#7"]
    with pytest.raises(Exception, match="first line"):
        parse_scores(daily("cve,epss,percentile\nCVE-2020-11023,0.9,0.9\n"))
    with pytest.raises(Exception, match="header"):
        parse_scores(daily("#model_version:v1,score_date:2024-07-10T00:00:00+0000\ncve,score\n"))


async def test_local_file_poll_is_incremental(tmp_path: Path) -> None:
    path = tmp_path / "epss_scores-2024-07-10.csv.gz"
    path.write_bytes(daily())
    feed = EpssFeed({"source": str(path)}, key_path="feeds.epss", http=HTTP)
    first = await feed.poll(cursor={})
    assert len(first.scores) == 3 and "digest" in first.cursor
    assert (await feed.poll(cursor=first.cursor)).scores == ()


async def test_http_poll_with_conditional_get(loopback: Loopback) -> None:
    loopback.files["/epss_scores-current.csv.gz"] = daily()
    feed = EpssFeed({"source": loopback.url("/epss_scores-current.csv.gz")}, key_path="feeds.epss", http=HTTP)
    first = await feed.poll(cursor={})
    assert len(first.scores) == 3 and "etag" in first.cursor
    second = await feed.poll(cursor=first.cursor)
    assert second.scores == () and second.cursor == first.cursor
    assert loopback.hits("/epss_scores-current.csv.gz")[-1]["If-None-Match"] == first.cursor["etag"]


async def test_broken_file_is_quarantined(loopback: Loopback) -> None:
    loopback.files["/e.csv.gz"] = b"\x1f\x8bnot really gzip"
    feed = EpssFeed({"source": loopback.url("/e.csv.gz")}, key_path="feeds.epss", http=HTTP)
    batch = await feed.poll(cursor={})
    assert batch.scores == () and "gzip" in batch.quarantined[0].reason


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"feeds\.epss\.source"):
        EpssFeed({"source": "/nonexistent/epss.csv.gz"}, key_path="feeds.epss", http=HTTP)
    with pytest.raises(ConfigError, match="unknown key"):
        EpssFeed({"source": "https://example.org/e.csv.gz", "colour": 1}, key_path="feeds.epss", http=HTTP)
