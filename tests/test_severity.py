"""Severity you can defend: computed CVSS scores, flagged declared scores, the vendor-word fallback order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SHARED_DATA

from bot.advisories import severity
from bot.advisories.model import Severity
from bot.advisories.osv import parse_osv, rate_osv
from bot.feeds.csaf_map import parse_csaf

LOCAL = REPO / "tests" / "data"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_the_pillow_record_is_high_from_its_vector() -> None:
    pillow = parse_osv(_load(LOCAL / "osv" / "GHSA-3f63-hfp8-52jq.json"))
    rated = severity.of(pillow)
    assert rated.as_json() == {"label": "high", "score": 8.1, "source": "cvss_v3.1"}
    assert rated.vector == "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H" and not rated.flagged


@pytest.mark.parametrize(
    ("record", "label", "score", "source"),
    [
        ("npm/GHSA-xvch-5gv4-984h.json", "critical", 9.8, "cvss_v3.1"),
        ("Maven/GHSA-3pxv-7cmr-fjr4.json", "medium", 6.9, "cvss_v4.0"),  # CVSS v4 vector beats the GHSA word
        ("RubyGems/GHSA-35c4-f3rq-f9g3.json", "medium", None, "ghsa"),  # no vector: database_specific
        ("Ubuntu/CVE-2010-5298.json", "low", None, "ubuntu_priority"),
        ("OSS-Fuzz/OSV-2023-1161.json", "medium", None, "ecosystem_specific"),
        ("Debian/DLA-3008-1.json", "unknown", None, "none"),  # none of the sources: honestly unknown
    ],
)
def test_real_osv_records(record: str, label: str, score: float | None, source: str) -> None:
    rated = severity.of(parse_osv(_load(SHARED_DATA / "osv" / record)))
    assert rated.as_json() == {"label": label, "score": score, "source": source}


def test_only_records_without_any_source_are_unknown() -> None:
    for path in sorted((SHARED_DATA / "osv").rglob("*.json")):
        data = _load(path)
        if "id" not in data:
            continue  # the schema
        has_source = bool(data.get("severity")) or any(
            isinstance(block, dict) and ({"severity", "ubuntu_priority", "urgency"} & set(block))
            for block in [data.get("database_specific")]
            + [a.get(k) for a in data.get("affected", []) for k in ("ecosystem_specific", "database_specific")]
        )
        assert (rate_osv(data).label is not Severity.UNKNOWN) is has_source, path.name


def test_debian_urgency_fallback() -> None:
    rated = severity.of(parse_osv(_load(LOCAL / "osv" / "PW-DSA-1571-1.json")))
    assert (rated.label, rated.source) == (Severity.HIGH, "debian_urgency")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # GHSA's word comes before Debian urgency and Ubuntu priority.
        (
            {"database_specific": {"severity": "LOW"}, "affected": [{"ecosystem_specific": {"urgency": "high"}}]},
            (Severity.LOW, "ghsa"),
        ),
        ({"affected": [{"ecosystem_specific": {"urgency": "unimportant"}}]}, (Severity.LOW, "debian_urgency")),
        ({"affected": [{"ecosystem_specific": {"urgency": "not yet assigned"}}]}, (Severity.UNKNOWN, "none")),
        ({"severity": [{"type": "Ubuntu", "score": "medium"}]}, (Severity.MEDIUM, "ubuntu_priority")),
        ({"id": "RHSA-2024:0001", "database_specific": {"severity": "Important"}}, (Severity.HIGH, "redhat_severity")),
        # An unscorable vector is not a score: the word decides.
        (
            {"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:Q"}], "database_specific": {"severity": "HIGH"}},
            (Severity.HIGH, "ghsa"),
        ),
        ({"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"}]}, (Severity.HIGH, "cvss_v2")),
    ],
)
def test_fallback_order(record: dict[str, Any], expected: tuple[Severity, str]) -> None:
    rated = rate_osv({"id": "X-1", **record})
    assert (rated.label, rated.source) == expected


def test_csaf_declared_score_that_disagrees_with_its_vector_is_flagged_and_recomputed() -> None:
    adv = parse_csaf(_load(LOCAL / "csaf" / "score-mismatch.json"))
    assert (adv.severity, adv.cvss_score, adv.severity_source) == (Severity.MEDIUM, 6.5, "cvss_v3.1")
    assert "declared base score 10" in adv.severity_flag and "computes to 6.5" in adv.severity_flag
    assert "6.1.9" in adv.severity_flag


def test_real_csaf_documents() -> None:
    csaf = SHARED_DATA / "csaf"
    bsi = severity.of(parse_csaf(_load(csaf / "bsi-2022-0001.json")))
    assert bsi.as_json() == {"label": "medium", "score": 6.1, "source": "cvss_v3.1"} and not bsi.flagged
    cisco = severity.of(parse_csaf(_load(csaf / "cisco-sa-20180328-smi2.json")))
    assert (cisco.label, cisco.source) == (Severity.CRITICAL, "cvss_v3.0")
    telnet = severity.of(parse_csaf(_load(csaf / "rhsa-2022_0011.json")))  # no scores: Red Hat's word
    assert telnet.as_json() == {"label": "high", "score": None, "source": "csaf_aggregate"}
    threat_only = _load(csaf / "rhsa-2022_0011.json")
    del threat_only["document"]["aggregate_severity"]
    assert severity.of(parse_csaf(threat_only)).source == "csaf_threat_impact"


def test_most_severe_prefers_computed_scores_among_equals() -> None:
    word = severity.Rated(Severity.HIGH, None, "ghsa")
    vector = severity.Rated(Severity.HIGH, 7.5, "cvss_v3.1", "CVSS:3.1/...")
    low = severity.Rated(Severity.LOW, 2.0, "cvss_v3.1")
    assert severity.most_severe([low, word, vector]) is not None
    assert severity.most_severe([low, word, vector]).source == "cvss_v3.1"
    assert severity.most_severe([]).label is Severity.UNKNOWN
