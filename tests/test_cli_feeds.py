"""CLI contract: ``feeds poll`` counts per feed and fails on a failed feed, ``feeds quarantine`` lists every
refused document, ``check-config`` refuses a priority tier without an SLA."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import BASE_CONFIG

from bot.__main__ import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def configured(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    feed = tmp_path / "osv"
    feed.mkdir()
    for i in range(3):
        (feed / f"BROKEN-{i}.json").write_text(json.dumps({"id": f"BROKEN-{i}", "affected": "not a list"}))
    good = {
        "id": "GOOD-1",
        "modified": "2026-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}}],
    }
    (feed / "GOOD-1.json").write_text(json.dumps(good))
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["feeds"] = {"osv": {"source": str(feed)}, "epss": {"source": str(tmp_path / "epss.csv")}}
    (tmp_path / "epss.csv").write_text("not an EPSS file\n")
    path = tmp_path / "patchwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("PATCHWARDEN_CONFIG", str(path))
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", database_url)
    return path


async def test_poll_counts_and_quarantine_lists_every_refusal(configured: Path) -> None:
    result = await asyncio.to_thread(run, "feeds", "poll")
    assert result.exit_code == 0, result.output
    assert "osv: 1 new or changed, 0 unchanged, 3 quarantined" in result.output
    assert "epss: 0 new or changed, 0 unchanged, 1 quarantined" in result.output
    listed = await asyncio.to_thread(run, "feeds", "quarantine", "--json")
    rows = json.loads(listed.output)
    assert sorted((r["feed"], Path(r["document"]).name) for r in rows) == [
        ("epss", "epss.csv"), ("osv", "BROKEN-0.json"), ("osv", "BROKEN-1.json"), ("osv", "BROKEN-2.json"),
    ]  # fmt: skip
    assert all(r["reason"] for r in rows)
    text = await asyncio.to_thread(run, "feeds", "quarantine")
    assert len(text.output.strip().splitlines()) == 4 and "first line is not" in text.output


async def test_a_failed_feed_exits_1(configured: Path) -> None:
    data = yaml.safe_load(await asyncio.to_thread(configured.read_text))
    data["feeds"] = {"kev": {"source": "http://127.0.0.1:9/kev.json"}}  # nothing listens on the discard port
    await asyncio.to_thread(configured.write_text, yaml.safe_dump(data))
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["feeds", "poll"])  # after the fetcher's retries
    assert result.exit_code == 1 and "kev: FAILED" in result.output


def test_check_config_refuses_a_tier_without_sla_days(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["policy"]["priority"] = [{"tier": "fix-now", "when": {"kev": True}}, {"tier": "later"}]
    data["policy"]["sla_days"] = {"fix-now": 7}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["check-config", str(path)])
    assert result.exit_code != 0 and "no sla_days for 1.tier 'later'" in result.output
    data["policy"]["sla_days"]["later"] = 90
    path.write_text(yaml.safe_dump(data))
    assert CliRunner().invoke(cli, ["check-config", str(path)]).exit_code == 0
