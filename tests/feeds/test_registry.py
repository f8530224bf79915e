"""Feed discovery through entry points, fail-closed creation, the base-class contract, severity bands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bot.advisories.model import Severity
from bot.advisories.severity import band, cvss_severity, word_severity
from bot.config import Config, parse_config
from bot.errors import ConfigError, FeedError
from bot.feeds import registry
from bot.feeds.base import Feed, FeedBatch, FeedOptions
from bot.feeds.http import HttpSettings
from bot.feeds.kev import KevFeed
from bot.feeds.osv import OsvFeed
from tests.feeds.conftest import DATA

HTTP = HttpSettings(retries=0, backoff=0)


def _config(feeds: dict[str, Any]) -> Config:
    return parse_config(
        {
            "slack": {"approvals_channel": "C0APPROVALS"},
            "groups": {"ops": ["U0OPS"], "security": ["U0SEC"]},
            "systems": {"web": {"owner": "U0OWNER"}},
            "policy": {
                "version": 1,
                "operators": "ops",
                "stages": {"test": [{"role": "owner"}], "prod": [{"group": "security"}]},
            },
            "feeds": feeds,
        }
    )


def test_builtin_feeds_are_installed_entry_points() -> None:
    found = registry.available()
    assert {"osv", "kev", "csaf"} <= set(found)
    assert found["osv"] is OsvFeed and found["kev"] is KevFeed
    assert all(cls.name == name for name, cls in found.items() if name in ("osv", "kev", "csaf"))


def test_create_all_only_configured_feeds() -> None:
    config = _config(
        {
            "osv": {"source": str(DATA / "osv")},
            "kev": {"source": str(DATA / "kev/known_exploited_vulnerabilities.excerpt.json")},
        }
    )
    feeds = registry.create_all(config, http=HTTP)
    assert set(feeds) == {"osv", "kev"}
    assert registry.create_all(_config({}), http=HTTP) == {}


def test_unknown_feed_stops_startup_and_lists_known_names() -> None:
    with pytest.raises(ConfigError) as err:
        registry.create_all(_config({"nvd": {}}), http=HTTP)
    assert "feeds.nvd" in str(err.value) and "csaf, epss, kev, osv" in str(err.value)


def test_bad_options_name_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"feeds\.osv\.source: Field required"):
        registry.create_all(_config({"osv": {}}), http=HTTP)
    with pytest.raises(ConfigError, match=r"feeds\.osv\.sources: unknown key"):
        registry.create_all(_config({"osv": {"source": str(DATA / "osv"), "sources": "x"}}), http=HTTP)


def test_feed_options_override_http_settings(tmp_path: Path) -> None:
    feed = OsvFeed(
        {"source": str(DATA / "osv"), "proxy": "http://proxy.internal:3128"}, key_path="feeds.osv", http=HTTP
    )
    assert feed.http.proxy == "http://proxy.internal:3128" and feed.http.retries == 0


class _Exploding(Feed):
    name: ClassVar[str] = "exploding"
    Options: ClassVar[type[FeedOptions]] = FeedOptions

    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        raise KeyError("secret-token-123")


class _Hanging(Feed):
    name: ClassVar[str] = "hanging"
    Options: ClassVar[type[FeedOptions]] = FeedOptions

    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        await asyncio.Event().wait()  # a provider that never answers
        raise AssertionError("unreachable")


async def test_poll_timeout_is_enforced_by_the_base_class() -> None:
    feed = _Hanging({"poll_timeout": 0.05}, key_path="feeds.hanging", http=HTTP)
    with pytest.raises(FeedError, match="timed out"):
        await feed.poll(cursor={})


async def test_poll_wraps_unexpected_errors_with_a_safe_message() -> None:
    feed = _Exploding({}, key_path="feeds.exploding", http=HTTP)
    with pytest.raises(FeedError) as err:
        await feed.poll(cursor={})
    assert "secret-token-123" not in str(err.value) and "secret-token-123" not in err.value.user_message
    assert isinstance(err.value.__cause__, KeyError)


@pytest.mark.parametrize(
    ("vector", "expected", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Severity.CRITICAL, 9.8),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", Severity.HIGH, 7.5),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", Severity.CRITICAL, 9.3),
        ("AV:N/AC:L/Au:N/C:C/I:C/A:C", Severity.HIGH, 10.0),  # CVSS v2 has no critical band
        ("CVSS:3.1/garbage", Severity.UNKNOWN, None),
    ],
)
def test_cvss_severity(vector: str, expected: Severity, score: float | None) -> None:
    assert cvss_severity(vector) == (expected, score)


def test_bands_and_words() -> None:
    assert [band(s) for s in (9.0, 7.0, 4.0, 0.1, 0.0, None)] == [
        Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.NONE, Severity.UNKNOWN,
    ]  # fmt: skip
    assert word_severity("Important") is Severity.HIGH and word_severity("MODERATE") is Severity.MEDIUM
    assert word_severity("whatever") is Severity.UNKNOWN
