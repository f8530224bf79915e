"""CSAF 2.0 conformance: schema and mandatory tests quarantine with the test number; VEX statuses are used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.advisories.matching import MatchIndex
from bot.advisories.model import Advisory, InstalledPackage, MatchStatus, NotAffected
from bot.advisories.osv import parse_osv
from bot.feeds.base import Quarantined
from bot.feeds.csaf import CsafFeed, parse_checked
from bot.feeds.csaf_map import parse_csaf
from bot.feeds.csaf_validate import IMPLEMENTED, RECOVERABLE, blocking, validate
from bot.feeds.http import HttpSettings
from tests.feeds.conftest import DATA, GpgKey, Loopback
from tests.feeds.test_csaf import BASE, _publish

LOCAL = Path(__file__).resolve().parents[1] / "data" / "csaf"
NEGATIVE = LOCAL / "mandatory"
EXPECTED: dict[str, str] = json.loads((NEGATIVE / "expected.json").read_text())


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("path", sorted((DATA / "csaf").glob("*.json")), ids=lambda p: p.name)
def test_real_documents_conform(path: Path) -> None:
    assert validate(_load(path)) == []


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: EXPECTED[n])
def test_each_negative_document_fails_its_mandatory_test(name: str) -> None:
    failures = validate(_load(NEGATIVE / name))
    assert EXPECTED[name] in {f.test for f in failures}, failures
    assert blocking(failures), "every one of these must quarantine the document"
    refused = parse_checked(_load(NEGATIVE / name), document=name, source="csaf")
    assert isinstance(refused, Quarantined) and f"CSAF {EXPECTED[name]}:" in refused.reason


def test_every_implemented_mandatory_test_has_a_negative_document() -> None:
    required = {"6.1.1", "6.1.2", "6.1.6", "6.1.8", "6.1.9", "6.1.13", "6.1.16", "6.1.18", "6.1.24", "6.1.31"}
    required |= {f"6.1.27.{n}" for n in range(1, 12)}  # the list, 6.1.27.x being every profile test
    assert required <= set(IMPLEMENTED)
    blocking_tests = set(IMPLEMENTED) - RECOVERABLE
    assert blocking_tests <= set(EXPECTED.values()), blocking_tests - set(EXPECTED.values())
    assert [f.test for f in validate(_load(LOCAL / "score-mismatch.json"))] == ["6.1.9"]  # the recoverable one


@pytest.mark.parametrize(
    "name", sorted(n for n in EXPECTED if n.startswith(("6-1-04", "6-1-05", "6-1-27-0", "6-1-27-11"))), ids=str
)
def test_a_negative_document_fails_only_its_own_test(name: str) -> None:
    if name in ("6-1-27-04-security-advisory-empty.json",):  # no product tree and no vulnerabilities: two tests
        assert {f.test for f in validate(_load(NEGATIVE / name))} == {"6.1.27.4", "6.1.27.11"}
        return
    assert {f.test for f in validate(_load(NEGATIVE / name))} == {EXPECTED[name]}


def test_a_wrong_declared_score_is_not_a_reason_to_drop_the_advisory() -> None:
    doc = _load(LOCAL / "score-mismatch.json")
    assert [f.test for f in validate(doc)] == ["6.1.9"] and blocking(validate(doc)) == []
    accepted = parse_checked(doc, document="score-mismatch.json", source="csaf")
    assert isinstance(accepted, Advisory) and accepted.cvss_score == 6.5 and accepted.severity_flag


async def test_feed_quarantines_nonconforming_documents_and_goes_on(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, _ = gpg_keys
    docs = [DATA / "csaf" / "bsi-2022-0001.json", NEGATIVE / "6-1-06-contradicting-status.json", LOCAL / "vex-npm.json"]
    _publish(loopback, pinned, docs)
    key = tmp_path / "key.asc"
    key.write_bytes(pinned.public)
    feed = CsafFeed(
        {"provider_metadata": loopback.url(f"{BASE}/provider-metadata.json"), "fingerprints": [pinned.fingerprint],
         "keys": [str(key)]},
        key_path="feeds.csaf", http=HttpSettings(retries=0, backoff=0, timeout=10),
    )  # fmt: skip
    batch = await feed.poll(cursor={})
    assert [a.id for a in batch.advisories] == ["BSI-2022-0001", "PW-VEX-2026-0001"]
    (refused,) = batch.quarantined
    assert refused.document.endswith("6-1-06-contradicting-status.json")
    assert refused.reason == "CSAF 6.1.6: vulnerabilities[0]: product 'PW-PID-1' is both affected and fixed"


# --- VEX -------------------------------------------------------------------------------------------------


def _systems() -> dict[str, list[InstalledPackage]]:
    def npm(name: str, version: str) -> InstalledPackage:
        return InstalledPackage(ecosystem="npm", name=name, version=version, purl=f"pkg:npm/{name}@{version}")

    return {
        "web-01": [npm("lodash", "4.17.20"), npm("lodash-es", "4.17.20"), npm("jquery", "3.4.1")],
        "web-02": [npm("lodash", "4.17.19")],
    }


def test_known_not_affected_suppresses_that_product_only() -> None:
    vex = parse_csaf(_load(LOCAL / "vex-npm.json"))
    osv = parse_osv(_load(DATA / "osv" / "npm" / "GHSA-35jh-r3h4-6jhm.json"))  # CVE-2021-23337: lodash, lodash-es
    # What the ingest merge does for records sharing CVE-2021-23337: the OSV packages, the vendor's statements.
    merged = osv.model_copy(update={"not_affected": vex.not_affected})
    matches = MatchIndex([merged]).match_all(_systems())
    assert sorted((m.system, m.package.name, m.package.version, m.status.value) for m in matches) == [
        ("web-01", "lodash", "4.17.20", "not_affected"),  # the product the vendor cleared: kept, with why
        ("web-01", "lodash-es", "4.17.20", "affected"),  # same CVE, another package: still affected
        ("web-02", "lodash", "4.17.19", "affected"),  # same package, a version the vendor did not clear
    ]
    (cleared,) = [m for m in matches if m.status is MatchStatus.NOT_AFFECTED]
    assert cleared.justification == "vulnerable_code_not_in_execute_path"
    assert cleared.reason.startswith("vulnerable_code_not_in_execute_path: template() is never called")
    assert cleared.fixed_versions == ()


def test_vendor_statements_named_by_product_group_are_read() -> None:
    doc = _load(LOCAL / "vex-two-products.json")
    assert validate(doc) == []
    vex = parse_csaf(doc)
    assert [(s.name, s.version, s.justification) for s in vex.not_affected] == [
        ("left-pad", "1.2.0", "vulnerable_code_not_present"), ("left-pad", "1.3.0", "vulnerable_code_not_present"),
    ]  # fmt: skip
    assert all(s.impact.startswith("The vulnerable function was added in 1.4.0") for s in vex.not_affected)
    (affected,) = vex.affected
    assert affected.name == "right-pad" and affected.remediation.startswith("Upgrade right-pad to 2.0.1")


def test_a_stored_combined_justification_is_split_on_reading() -> None:
    legacy = NotAffected.model_validate(
        {"ecosystem": "npm", "name": "lodash", "justification": "component_not_present: not shipped"}
    )
    assert (legacy.justification, legacy.impact) == ("component_not_present", "not shipped")
    words = NotAffected.model_validate({"ecosystem": "npm", "name": "lodash", "justification": "we checked"})
    assert (words.justification, words.impact, words.why()) == ("", "we checked", "we checked")


def test_under_investigation_needs_triage_and_remediation_fills_the_fix_line() -> None:
    vex = parse_csaf(_load(LOCAL / "vex-npm.json"))
    matches = {m.package.name: m for m in MatchIndex([vex]).match_all(_systems()) if m.system == "web-01"}
    assert set(matches) == {"lodash", "lodash-es", "jquery"} and matches["lodash"].status is MatchStatus.NOT_AFFECTED
    assert matches["lodash-es"].status is MatchStatus.NEEDS_TRIAGE
    assert "still investigating" in matches["lodash-es"].reason
    jquery = matches["jquery"]
    assert jquery.status is MatchStatus.AFFECTED and jquery.fixed_versions == ("3.5.0",)
    assert jquery.remediation == "Upgrade jQuery to 3.5.0. https://patchwarden.example/fix/jquery"
