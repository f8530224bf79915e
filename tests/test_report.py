"""The compliance report: numbers per system, CSV/JSON/PNG, /patch report and the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import BASE_CONFIG, OWNER, Harness, eventually
from sqlalchemy.ext.asyncio import AsyncSession

from bot.__main__ import cli
from bot.config import parse_config
from bot.render import report
from storage import db
from storage.models import (
    AdvisoryMatch,
    AdvisoryRecord,
    AdvisoryStatus,
    Change,
    ChangeClass,
    ChangeState,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def _change(n: int, state: ChangeState, *, done: datetime) -> Change:
    return Change(
        title=f"change {n}",
        details="",
        technical="",
        systems=["web-shop"],
        state=state,
        change_class=ChangeClass.NORMAL,
        requester="U0REQ1",
        last_editor="U0REQ1",
        officer="U0REQ1",
        content_hash="0" * 64,
        policy_version=1,
        created_at=done - timedelta(days=1),
        updated_at=done,
    )


def _advisory(aid: str, status: AdvisoryStatus, *, due: datetime | None, seen: datetime) -> AdvisoryRecord:
    return AdvisoryRecord(
        primary_id=aid,
        sources=["osv"],
        aliases=[],
        data={},
        content_hash="0" * 64,
        severity="high",
        status=status,
        due=due,
        first_seen=seen,
        updated_at=seen + timedelta(days=20),
    )


async def seed(session: AsyncSession) -> None:
    """Three changes (completed, rejected, open) and four advisories on web-shop."""
    completed = _change(1, ChangeState.COMPLETED, done=NOW - timedelta(days=5))
    session.add_all(
        [
            completed,
            _change(2, ChangeState.REJECTED, done=NOW),
            _change(3, ChangeState.PENDING_TEST_APPROVAL, done=NOW),
        ]
    )
    await session.flush()
    records = [
        _advisory("CVE-A", AdvisoryStatus.OPEN, due=NOW - timedelta(days=1), seen=NOW - timedelta(days=40)),
        _advisory("CVE-B", AdvisoryStatus.SNOOZED, due=NOW + timedelta(days=9), seen=NOW - timedelta(days=3)),
        # remediated by the completed change, verified by inventory 10 days after first seen
        _advisory("CVE-C", AdvisoryStatus.REMEDIATED, due=None, seen=NOW - timedelta(days=15)),
        # verified 20 days after it was first seen
        _advisory("CVE-D", AdvisoryStatus.REMEDIATED, due=None, seen=NOW - timedelta(days=60)),
        # remediated without proof (no verification): not counted in the time to remediate
        _advisory("CVE-E", AdvisoryStatus.REMEDIATED, due=None, seen=NOW - timedelta(days=90)),
        # its change completed, the inventory still shows the affected version
        _advisory("CVE-F", AdvisoryStatus.STILL_VULNERABLE, due=NOW + timedelta(days=5), seen=NOW - timedelta(days=9)),
    ]
    records[2].change_id = completed.id
    records[5].change_id = completed.id
    records[2].remediated_at, records[3].remediated_at = NOW - timedelta(days=5), NOW - timedelta(days=40)
    records[3].severity = "critical"
    for rec in records[2:4]:
        rec.remediation = {"verified_at": rec.remediated_at.isoformat()}  # type: ignore[union-attr]
    records[4].remediated_at = NOW
    records[5].remediation = {"still": ["jinja2 3.1.2 (fixed in 3.1.3)"]}
    session.add_all(records)
    await session.flush()
    for rec in records:
        session.add(
            AdvisoryMatch(
                advisory_id=rec.id,
                system="web-shop",
                ecosystem="PyPI",
                package="jinja2",
                installed="3.1.2",
                status="affected",
            )
        )
    # a second package of the same system hit by the same advisory counts once
    session.add(
        AdvisoryMatch(
            advisory_id=records[0].id,
            system="web-shop",
            ecosystem="PyPI",
            package="flask",
            installed="2.2.2",
            status="affected",
        )
    )


async def test_report_numbers_formats_and_slash_command(harness: Harness) -> None:
    h = harness
    async with h.deps.sessions.begin() as s:
        await seed(s)
    async with h.deps.sessions.begin() as s:
        rows = await report.build(s, config=h.config, now=NOW)
    assert [r.system for r in rows] == ["web-shop"]
    r = rows[0]
    assert (r.open_advisories, r.overdue_advisories, r.remediated_advisories) == (3, 1, 2)
    assert r.mean_days_to_remediate == 15.0  # (10 + 20) / 2, verified remediations only
    assert r.p90_days_to_remediate == 20.0
    assert r.ttr_by_severity == {
        "critical": {"count": 1, "mean": 20.0, "p90": 20.0},
        "high": {"count": 1, "mean": 10.0, "p90": 10.0},
    }
    assert r.still_vulnerable == [{"advisory": "CVE-F", "change": 1, "still": "jinja2 3.1.2 (fixed in 3.1.3)"}]
    assert r.changes["completed"] == 1 and r.changes["rejected"] == 1 and r.changes["open"] == 1

    parsed = list(csv.DictReader(io.StringIO(report.to_csv(rows))))
    assert parsed[0]["overdue_advisories"] == "1" and parsed[0]["changes_completed"] == "1"
    body = json.loads(report.to_json(rows, now=NOW))
    assert body["systems"][0]["mean_days_to_remediate"] == 15.0
    assert report.chart_png(rows)[:8] == b"\x89PNG\r\n\x1a\n"

    status, _ = await h.slack.command("report web-shop", user=OWNER, channel="C0OPS")
    assert status == 200
    posted = await eventually(lambda: [m for m in h.fake.channel_messages("C0OPS") if m.files], what="report posted")
    assert "*web-shop*: 3 open advisories, 1 overdue" in posted[0].text
    assert "p90 20.0 d, verified only" in posted[0].text and "1 still vulnerable" in posted[0].text
    assert h.fake.files[posted[0].files[0]["id"]]["content"][:4] == b"\x89PNG"


@pytest.fixture
def cli_env(sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A seeded SQLite database and a configuration file in the environment the CLI reads."""
    path = tmp_path / "report.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"

    async def fill() -> None:
        engine = db.create_engine(url)
        async with db.session_factory(engine).begin() as s:
            await seed(s)
        await engine.dispose()

    asyncio.run(fill())
    config = tmp_path / "patchwarden.yaml"
    config.write_text(yaml.safe_dump(BASE_CONFIG))
    parse_config(BASE_CONFIG)
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", url)
    monkeypatch.setenv("PATCHWARDEN_CONFIG", str(config))
    return tmp_path


def test_cli_report_csv_json_png(cli_env: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("system,open_advisories,overdue_advisories")
    assert result.output.splitlines()[1].startswith("web-shop,3,")  # open, snoozed and still vulnerable
    result = runner.invoke(cli, ["report", "--format", "json", "--system", "web-shop"])
    assert result.exit_code == 0 and json.loads(result.output)["systems"][0]["open_advisories"] == 3
    out = cli_env / "report.png"
    result = runner.invoke(cli, ["report", "--format", "png", "-o", str(out)])
    assert result.exit_code == 0 and out.read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(cli, ["report", "--system", "nope"])
    assert result.exit_code != 0 and "unknown system" in result.output
