"""SBOM import: CycloneDX 1.2-1.6 and SPDX 2.3 JSON, and a count of every component no feed covers."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SHARED_DATA

from bot.advisories.sbom import load_sbom
from bot.errors import InputError

LOCAL = REPO / "tests" / "data" / "sbom"


def test_uncovered_purl_types_are_counted_and_named() -> None:
    result = load_sbom(LOCAL / "wolfi-r.cdx-1.4.json")
    assert result.format == "CycloneDX 1.4" and result.components == 14
    assert [(p.ecosystem, p.name) for p in result.packages] == [("PyPI", "requests"), ("PyPI", "urllib3")]
    assert result.gaps() == "12 components not covered: 9 apk (wolfi), 3 cran"


def test_spdx_2_3_json_is_imported() -> None:
    result = load_sbom(LOCAL / "rocky9-mixed.spdx.json")
    assert result.format == "SPDX-2.3" and result.components == 7
    assert [(p.ecosystem, p.release, p.name, p.version) for p in result.packages] == [
        ("PyPI", None, "requests", "2.30.0"),
        ("Rocky Linux", "9", "openssl-libs", "1:3.0.7-24.el9"),
        ("Rocky Linux", "9", "sudo", "1.9.5p2-9.el9"),
    ]
    assert result.gaps() == "3 components not covered: 2 apk (wolfi), 1 cran; 1 without a purl (cannot be matched)"


@pytest.mark.parametrize(
    ("name", "spec", "packages"),
    [
        ("python-app.cdx.json", "CycloneDX 1.5", 22),
        ("debian12-webserver.cdx.json", "CycloneDX 1.6", 44),
        ("debian9-legacy-host.cdx.json", "CycloneDX 1.5", 6),
        ("proton-bridge-v1.8.0.bom.json", "CycloneDX 1.2", 201),
    ],
)
def test_real_cyclonedx_sboms(name: str, spec: str, packages: int) -> None:
    result = load_sbom(SHARED_DATA / "sbom" / name)
    assert (result.format, len(result.packages)) == (spec, packages)
    assert sum(result.uncovered.values()) + result.without_purl + len(result.packages) <= result.components


def test_bad_spdx_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InputError, match=r"not a valid SPDX-2\.3 document"):
        load_sbom(json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT"}).encode())
    with pytest.raises(InputError, match=r"unsupported SPDX-3\.0"):
        load_sbom(json.dumps({"spdxVersion": "SPDX-3.0"}).encode())
