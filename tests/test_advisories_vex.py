"""VEX and fix lines through ingestion: the merged record suppresses one product only and posts the fix line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result
from conftest import BASE_CONFIG, OWNER, REPO, SHARED_DATA, Harness, eventually, make_config

from bot.__main__ import cli
from bot.advisories import vex
from bot.advisories.model import Advisory
from bot.advisories.osv import parse_osv
from bot.feeds.base import FeedBatch
from bot.feeds.csaf import parse_checked
from bot.feeds.csaf_validate import validate
from bot.workflows import advisories as flow
from bot.workflows.advisory_posts import publish_all
from storage import advisories as store
from storage import inventory

PACKAGES = [
    {"ecosystem": "npm", "name": "lodash", "version": "4.17.20"},
    {"ecosystem": "npm", "name": "lodash-es", "version": "4.17.20"},
    {"ecosystem": "npm", "name": "jquery", "version": "3.4.1"},
]


def _csaf(path: Path) -> Advisory:
    adv = parse_checked(json.loads(path.read_text()), document=path.name, source="csaf")
    assert isinstance(adv, Advisory)
    return adv


async def test_vex_and_remediation_reach_the_stored_matches_and_the_post(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    osv = parse_osv(json.loads((SHARED_DATA / "osv" / "npm" / "GHSA-35jh-r3h4-6jhm.json").read_text()))
    vex = _csaf(REPO / "tests" / "data" / "csaf" / "vex-npm.json")
    async with h.deps.sessions.begin() as s:
        result = await flow.ingest(s, config=h.config, batch=FeedBatch(advisories=(osv, vex)), now=h.clock.now())
    async with h.deps.sessions.begin() as s:
        # The VEX document carries two CVEs: it merges with the OSV lodash record by CVE-2021-23337.
        (owner,) = await store.owners_of(s, ["CVE-2021-23337"])
        record = await store.get(s, owner)
        assert record is not None
        merged = flow.merged(record)
        assert merged.severity_source == "cvss_v3.1" and merged.not_affected[0].name == "lodash"
        rows = await store.matches(s, [record.id])
        assert sorted((m.package, m.status) for m in rows) == [("jquery", "affected"), ("lodash-es", "affected")]
        jquery = next(m for m in rows if m.package == "jquery")
        assert jquery.fixed == ["3.5.0"] and jquery.remediation.startswith("Upgrade jQuery to 3.5.0.")
    await publish_all(h.deps, result.changed)
    (post,) = await eventually(lambda: h.fake.channel_messages("C0ADVISORIES"))
    text = json.dumps(post.blocks, ensure_ascii=False)
    assert "lodash-es" in text and "npm/lodash`" not in text  # the cleared product is not listed
    assert "fix: Upgrade jQuery to 3.5.0." in text


async def test_the_post_says_where_the_severity_came_from(harness_factory: Any) -> None:
    packages = [{"ecosystem": "PyPI", "name": "widget", "version": "1.0.0"}]
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": packages}}))
    flagged = _csaf(REPO / "tests" / "data" / "csaf" / "score-mismatch.json")
    async with h.deps.sessions.begin() as s:
        result = await flow.ingest(s, config=h.config, batch=FeedBatch(advisories=(flagged,)), now=h.clock.now())
    await publish_all(h.deps, result.changed)
    (post,) = await eventually(lambda: h.fake.channel_messages("C0ADVISORIES"))
    text = json.dumps(post.blocks, ensure_ascii=False)
    assert "*Medium* (CVSS 6.5) · from CVSS 3.1 vector" in text
    assert "declared score disagreed with its vector" in text


# --- a vendor's known_not_affected is stored, listed and exported (issue 9, point 5) ----------------------

TWO_PRODUCTS = REPO / "tests" / "data" / "csaf" / "vex-two-products.json"  # left-pad cleared, right-pad affected
PADS: dict[str, list[dict[str, Any]]] = {
    "web-shop": [
        {"ecosystem": "npm", "name": "left-pad", "version": "1.3.0", "purl": "pkg:npm/left-pad@1.3.0"},
        {"ecosystem": "npm", "name": "right-pad", "version": "1.9.0", "purl": "pkg:npm/right-pad@1.9.0"},
    ],
    "billing": [{"ecosystem": "npm", "name": "left-pad", "version": "1.3.0", "purl": "pkg:npm/left-pad@1.3.0"}],
}


def _cli(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


async def test_known_not_affected_is_stored_listed_and_exported_for_that_product_only(
    harness_factory: Any, tmp_path: Path
) -> None:
    systems = {name: {"owner": OWNER} for name in PADS}
    config = make_config(systems=systems)
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["systems"] = {**data["systems"], **systems}
    (tmp_path / "patchwarden.yaml").write_text(yaml.safe_dump(data))
    h: Harness = await harness_factory(config)
    async with h.deps.sessions.begin() as s:
        for name, pkgs in PADS.items():  # as an SBOM import stores them: with their purls
            rows = [{**p, "release": None} for p in pkgs]
            await inventory.replace(s, system=name, source=f"{name}.cdx.json", packages=rows, now=h.clock.now())
        batch = FeedBatch(advisories=(_csaf(TWO_PRODUCTS),))
        result = await flow.ingest(s, config=config, batch=batch, now=h.clock.now())
    async with h.deps.sessions.begin() as s:
        (owner,) = await store.owners_of(s, ["CVE-2099-2222"])
        record = await store.get(s, owner)
        assert record is not None
        stored = await store.matches(s, [owner], not_affected=True)
        assert sorted((m.system, m.package, m.status, m.justification) for m in stored) == [
            ("billing", "left-pad", "not_affected", "vulnerable_code_not_present"),
            ("web-shop", "left-pad", "not_affected", "vulnerable_code_not_present"),
            ("web-shop", "right-pad", "affected", ""),  # the same CVE on the other package: still affected
        ]
        cleared = next(m for m in stored if m.status == "not_affected")
        assert cleared.reason.startswith("vulnerable_code_not_present: The vulnerable function was added in 1.4.0")
        assert cleared.due is None and cleared.priority == ""
        assert [m.package for m in await store.matches(s, [owner])] == ["right-pad"], "work only, by default"
        assert record.due is not None  # from right-pad's match alone
        # an inventory re-match with nothing new keeps the vendor's rows as they are
        assert await flow.rematch_all(s, config=config, now=h.clock.now()) == []
    (item,) = result.changed
    assert item.new_systems == ("web-shop",), "a cleared product never makes a system newly affected"
    await publish_all(h.deps, result.changed)
    (post,) = await eventually(lambda: h.fake.channel_messages("C0ADVISORIES"))
    text = json.dumps(post.blocks, ensure_ascii=False)
    assert "`npm/right-pad` 1.9.0 → 2.0.1" in text and "npm/left-pad" not in text and "billing" not in text

    env = {
        "PATCHWARDEN_DATABASE_URL": str(h.deps.settings.database_url),
        "PATCHWARDEN_CONFIG": str(tmp_path / "patchwarden.yaml"),
        "PATCHWARDEN_AUDIT_KEY_FILE": str(tmp_path / "audit.key"),
    }
    listed = await asyncio.to_thread(_cli, ["advisories", "list", "--json"], env)
    rows = {(o["system"], o["package"]): o for o in json.loads(listed.output)}
    assert set(rows) == {("billing", "left-pad"), ("web-shop", "left-pad"), ("web-shop", "right-pad")}
    billing = rows[("billing", "left-pad")]
    assert billing["status"] == "not_affected" and billing["justification"] == "vulnerable_code_not_present"
    assert billing["sla_due"] is None and billing["priority"] is None and billing["advisory"] == "PW-VEX-2026-0002"
    assert rows[("web-shop", "right-pad")]["status"] == "open" and rows[("web-shop", "right-pad")]["sla_due"]

    out = tmp_path / "vex.json"
    exported = await asyncio.to_thread(_cli, ["vex", "export", "-o", str(out)], env)
    assert exported.exit_code == 0, exported.output
    doc = json.loads(out.read_text())
    vex.validate_openvex(doc)
    by_product = {s["products"][0]["@id"].rsplit("/", 1)[1]: s for s in doc["statements"]}
    assert by_product["billing"]["status"] == "not_affected"
    assert by_product["billing"]["justification"] == "vulnerable_code_not_present"
    assert "added in 1.4.0" in by_product["billing"]["status_notes"]
    assert by_product["web-shop"]["status"] == "affected", "right-pad is affected there"
    web_subs = [p["@id"] for p in by_product["web-shop"]["products"][0]["subcomponents"]]
    assert web_subs == ["pkg:npm/right-pad@1.9.0"]
    csaf_out = tmp_path / "vex.csaf.json"
    exported = await asyncio.to_thread(_cli, ["vex", "export", "--format", "csaf", "-o", str(csaf_out)], env)
    assert exported.exit_code == 0, exported.output
    csaf_doc = json.loads(csaf_out.read_text())
    assert validate(csaf_doc) == [], "our own CSAF VEX passes the mandatory tests we apply to others"
    (vuln,) = csaf_doc["vulnerabilities"]
    pids = {p["product_id"]: p["name"].rsplit("/", 1)[1] for p in csaf_doc["product_tree"]["full_product_names"]}
    assert [pids[p] for p in vuln["product_status"]["known_not_affected"]] == ["billing"]
    assert [pids[p] for p in vuln["product_status"]["known_affected"]] == ["web-shop"]
    assert vuln["flags"] == [
        {"label": "vulnerable_code_not_present", "product_ids": vuln["product_status"]["known_not_affected"]}
    ]
