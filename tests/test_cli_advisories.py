"""CLI: offline ``advisories match``, ``inventory import`` of a real SBOM, ``feeds poll`` of a local OSV folder."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import BASE_CONFIG, SHARED_DATA
from sqlalchemy import select

from bot.__main__ import cli
from storage import db
from storage.models import AdvisoryMatch, AdvisoryRecord, FeedState, InventoryPackage


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_advisories_match_prints_installed_fixed_and_ids() -> None:
    result = run(
        "advisories", "match", "--inventory", str(SHARED_DATA / "sbom"), "--advisories", str(SHARED_DATA / "osv")
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "python-app:" in out and "PyPI/jinja2" in out and "3.1.2 → 3.1.3  GHSA-h5c8-rqwp-cp95" in out
    assert "2.2.2 → 2.2.5  PYSEC-2023-62" in out
    assert "PYSEC-2021-13" not in out, "withdrawn records never match"
    rows = json.loads(
        run(
            "advisories", "match", "--json", "--inventory", str(SHARED_DATA / "sbom"),
            "--advisories", str(SHARED_DATA / "osv"),
        ).output
    )  # fmt: skip
    flask = [r for r in rows if r["advisory_id"] == "PYSEC-2023-62"]
    assert flask and flask[0]["package"]["version"] == "2.2.2" and flask[0]["fixed_versions"] == ["2.2.5"]


def test_advisories_match_bad_input_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "inv.yaml").write_text("systems: {a: {nonsense: 1}}")
    result = CliRunner().invoke(
        cli,
        ["advisories", "match", "--inventory", str(tmp_path / "inv.yaml"), "--advisories", str(SHARED_DATA / "osv")],
    )
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output


@pytest.fixture
def configured(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A configuration file with a local OSV feed, and the environment pointing at it and the test database."""
    feed = tmp_path / "osv"
    feed.mkdir()
    for name in ("PYSEC-2023-62.json", "GHSA-h5c8-rqwp-cp95.json", "PYSEC-2023-74.json"):
        shutil.copy(SHARED_DATA / "osv" / "PyPI" / name, feed / name)
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["systems"]["billing"] = {"owner": "U0OWNER1"}
    data["feeds"] = {"osv": {"source": str(feed)}}
    path = tmp_path / "patchwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("PATCHWARDEN_CONFIG", str(path))
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", database_url)
    return {"url": database_url, "feed": feed}


async def rows(url: str, model: Any) -> list[Any]:
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine).begin() as s:
            return list((await s.execute(select(model))).scalars())
    finally:
        await engine.dispose()


async def test_inventory_import_then_feeds_poll_matches_the_sbom(configured: dict[str, Any]) -> None:
    sbom = SHARED_DATA / "sbom" / "python-app.cdx.json"
    result = await asyncio.to_thread(run, "inventory", "import", "billing", str(sbom))
    assert result.exit_code == 0, result.output
    assert "billing: 22 packages imported from python-app.cdx.json" in result.output
    stored = await rows(configured["url"], InventoryPackage)
    assert len(stored) == 22 and {p.system for p in stored} == {"billing"}
    assert any(p.name == "flask" and p.version == "2.2.2" for p in stored)

    result = await asyncio.to_thread(run, "feeds", "poll", "--feed", "osv")
    assert result.exit_code == 0, result.output
    assert "osv: 3 new or changed, 0 unchanged, 0 quarantined" in result.output
    assert {r.primary_id for r in await rows(configured["url"], AdvisoryRecord)} == {
        "PYSEC-2023-62", "GHSA-h5c8-rqwp-cp95", "PYSEC-2023-74",
    }  # fmt: skip
    matches = await rows(configured["url"], AdvisoryMatch)
    assert sorted((m.system, m.package, m.installed, tuple(m.fixed)) for m in matches) == [
        ("billing", "flask", "2.2.2", ("2.2.5",)),
        ("billing", "jinja2", "3.1.2", ("3.1.3",)),
    ]
    assert [s.feed for s in await rows(configured["url"], FeedState)] == ["osv"]

    again = await asyncio.to_thread(run, "feeds", "poll")
    assert "osv: 0 new or changed" in again.output

    unknown = await asyncio.to_thread(CliRunner().invoke, cli, ["feeds", "poll", "--feed", "nope"])
    assert unknown.exit_code == 1 and "No feed 'nope'" in unknown.output


LOCAL_SBOM = Path(__file__).resolve().parent / "data" / "sbom"


async def test_inventory_import_spdx_says_what_it_could_not_cover(configured: dict[str, Any]) -> None:
    sbom = LOCAL_SBOM / "wolfi-r.cdx-1.4.json"
    result = await asyncio.to_thread(run, "inventory", "import", "billing", str(sbom))
    assert result.exit_code == 0, result.output
    assert "billing: 2 packages imported from wolfi-r.cdx-1.4.json (CycloneDX 1.4, 14 components)" in result.output
    assert "billing: 12 components not covered: 9 apk (wolfi), 3 cran." in result.output
    spdx = LOCAL_SBOM / "rocky9-mixed.spdx.json"
    result = await asyncio.to_thread(run, "inventory", "import", "billing", str(spdx))
    assert "billing: 3 packages imported from rocky9-mixed.spdx.json (SPDX-2.3, 7 components)" in result.output
    assert "1 without a purl" in result.output
    stored = await rows(configured["url"], InventoryPackage)
    assert sorted((p.ecosystem, p.release, p.name) for p in stored) == [
        ("PyPI", None, "requests"), ("Rocky Linux", "9", "openssl-libs"), ("Rocky Linux", "9", "sudo"),
    ]  # fmt: skip
