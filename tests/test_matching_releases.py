"""Matches a scanner would agree with: Red Hat family majors, Debian ``X.0``, non-OSV records quarantined."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SHARED_DATA

from bot.advisories.matching import MatchIndex
from bot.advisories.model import Advisory, InstalledPackage, MatchStatus
from bot.advisories.osv import parse_osv
from bot.advisories.purls import from_purl, split_ecosystem
from bot.errors import FeedError
from bot.feeds.csaf_map import parse_csaf
from bot.feeds.http import HttpSettings
from bot.feeds.osv import OsvFeed

LOCAL = REPO / "tests" / "data"


def _osv(name: str) -> Advisory:
    return parse_osv(json.loads((LOCAL / "osv" / name).read_text()))


def _host(*purls: str) -> list[InstalledPackage]:
    packages = [from_purl(p) for p in purls]
    assert all(p is not None for p in packages)
    return [p for p in packages if p is not None]


@pytest.mark.parametrize(
    ("ecosystem", "expected"),
    [
        ("Red Hat:enterprise_linux:8::appstream", ("Red Hat", "8")),
        ("Red Hat:rhel_aus:8.4::appstream", ("Red Hat", "8")),
        ("Rocky Linux:9", ("Rocky Linux", "9")),
        ("AlmaLinux:9", ("AlmaLinux", "9")),
        ("Debian:4.0", ("Debian", "4")),
        ("Debian:12", ("Debian", "12")),
    ],
)
def test_release_of_an_advisory_ecosystem(ecosystem: str, expected: tuple[str, str]) -> None:
    assert split_ecosystem(ecosystem) == expected


def test_syft_rpm_purls_carry_the_major_release_and_the_epoch() -> None:
    pkg = from_purl("pkg:rpm/redhat/openssl@1.1.1k-7.el8_6?arch=x86_64&epoch=1&distro=rhel-8.6")
    assert pkg is not None
    assert (pkg.ecosystem, pkg.release, pkg.version) == ("Red Hat", "8", "1:1.1.1k-7.el8_6")
    rocky = from_purl("pkg:rpm/rocky/sudo@1.9.5p2-9.el9?arch=x86_64&distro=rocky-9.3")
    alma = from_purl("pkg:rpm/almalinux/sudo@1.9.5p2-9.el9?arch=x86_64&distro=almalinux-9")
    assert rocky is not None and (rocky.ecosystem, rocky.release) == ("Rocky Linux", "9")
    assert alma is not None and (alma.ecosystem, alma.release) == ("AlmaLinux", "9")


def test_rpm_hosts_match_osv_records_of_their_major_release() -> None:
    names = ("PW-RHSA-2026-0002.json", "PW-RLSA-2026-0003.json", "PW-ALSA-2026-0004.json")
    index = MatchIndex([_osv(n) for n in names])
    systems = {
        "rhel86": _host("pkg:rpm/redhat/openssl@1.1.1k-7.el8_6?arch=x86_64&epoch=1&distro=rhel-8.6"),
        "rhel9": _host("pkg:rpm/redhat/openssl@3.0.7-24.el9?arch=x86_64&epoch=1&distro=rhel-9"),
        "rhel9-fixed": _host("pkg:rpm/redhat/openssl@3.0.7-27.el9?arch=x86_64&epoch=1&distro=rhel-9.4"),
        "rocky9": _host("pkg:rpm/rocky/sudo@1.9.5p2-9.el9?arch=x86_64&distro=rocky-9.3"),
        "alma9": _host("pkg:rpm/almalinux/sudo@1.9.5p2-9.el9?arch=x86_64&distro=almalinux-9"),
    }
    found = sorted((m.system, m.advisory_id, m.fixed_versions, m.status) for m in index.match_all(systems))
    assert found == [
        ("alma9", "PW-ALSA-2026:0004", ("1.9.5p2-10.el9_3",), MatchStatus.AFFECTED),
        ("rhel86", "PW-RHSA-2026:0002", ("1:1.1.1k-12.el8_9",), MatchStatus.AFFECTED),  # the 8 stream's fix
        ("rhel9", "PW-RHSA-2026:0002", ("1:3.0.7-27.el9",), MatchStatus.AFFECTED),
        ("rocky9", "PW-RLSA-2026:0003", ("1.9.5p2-10.el9_3",), MatchStatus.AFFECTED),
    ]


def test_rpm_hosts_match_red_hat_csaf_products_by_platform_release() -> None:
    csaf = parse_csaf(json.loads((LOCAL / "csaf" / "rhel-openssl.json").read_text()))
    assert sorted(p.ecosystem for p in csaf.affected) == ["Red Hat:8", "Red Hat:9"]
    assert all(p.remediation.startswith("Update openssl") for p in csaf.affected)
    systems = {
        "rhel86": _host("pkg:rpm/redhat/openssl@1.1.1k-7.el8_6?arch=x86_64&epoch=1&distro=rhel-8.6"),
        "rhel9": _host("pkg:rpm/redhat/openssl@3.0.7-24.el9?arch=x86_64&epoch=1&distro=rhel-9"),
    }
    found = {m.system: m for m in MatchIndex([csaf]).match_all(systems)}
    assert found["rhel9"].fixed_versions == ("1:3.0.7-27.el9",)
    assert found["rhel86"].fixed_versions == ("1:1.1.1k-12.el8_9",)
    assert "errata/PW-RHSA-2026:0001" in found["rhel9"].remediation


def test_a_real_red_hat_csaf_document_matches_a_rhel_7_host() -> None:
    # RHSA-2022:0011 names its rpms only by NEVRA ("telnet-1:0.17-65.el7_6.x86_64") on RHEL 7 platforms.
    rhsa = parse_csaf(json.loads((SHARED_DATA / "csaf" / "rhsa-2022_0011.json").read_text()))
    assert {(p.ecosystem, p.name) for p in rhsa.affected} >= {("Red Hat:7", "telnet"), ("Red Hat:7", "telnet-server")}
    systems = {
        "rhel7": _host("pkg:rpm/redhat/telnet@0.17-64.el7?arch=x86_64&epoch=1&distro=rhel-7.9"),
        "rhel7-fixed": _host("pkg:rpm/redhat/telnet@0.17-65.el7_6?arch=x86_64&epoch=1&distro=rhel-7.6"),
        "rhel8": _host("pkg:rpm/redhat/telnet@0.17-64.el8?arch=x86_64&epoch=1&distro=rhel-8.6"),
    }
    matches = MatchIndex([rhsa]).match_all(systems)
    assert [(m.system, m.fixed_versions, m.status) for m in matches] == [
        ("rhel7", ("1:0.17-65.el7_6",), MatchStatus.AFFECTED)
    ]
    assert "access.redhat.com" in matches[0].remediation


def test_debian_x_0_releases_match() -> None:
    etch = _host("pkg:deb/debian/libssl0.9.8@0.9.8c-4etch1?distro=debian-4.0&upstream=openssl")
    lenny = _host("pkg:deb/debian/libssl0.9.8@0.9.8c-4etch1?distro=debian-5.0&upstream=openssl")
    matches = MatchIndex([_osv("PW-DSA-1571-1.json")]).match_all({"etch": etch, "lenny": lenny})
    assert [(m.system, m.package.name, m.fixed_versions) for m in matches] == [("etch", "openssl", ("0.9.8c-4etch3",))]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("legacy-OSV-2020-111.json", "legacy layout (top-level package, affects)"),
        ("no-affected-PW-2026-0005.json", "no 'affected' packages"),
    ],
)
def test_records_that_are_not_osv_are_refused(name: str, reason: str) -> None:
    with pytest.raises(FeedError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_osv(json.loads((LOCAL / "osv" / name).read_text()))


def test_a_record_naming_only_source_repositories_is_refused() -> None:
    git_only = {
        "id": "PW-GIT-1",
        "modified": "2026-11-30T10:00:00Z",
        "affected": [{"ranges": [{"type": "GIT", "repo": "https://git.example/r", "events": [{"introduced": "0"}]}]}],
    }
    with pytest.raises(FeedError, match="names no package, only source repositories"):
        parse_osv(git_only)


async def test_feed_quarantines_non_osv_records_with_a_reason(tmp_path: Path) -> None:
    for name in ("legacy-OSV-2020-111.json", "no-affected-PW-2026-0005.json", "PW-DSA-1571-1.json"):
        shutil.copy(LOCAL / "osv" / name, tmp_path / name)
    stamp = "2026-11-30T10:00:00Z"
    withdrawn: dict[str, Any] = {"id": "PW-W-1", "modified": stamp, "withdrawn": stamp}
    (tmp_path / "withdrawn.json").write_text(json.dumps(withdrawn))  # withdrawn: no packages needed
    feed = OsvFeed({"source": str(tmp_path)}, key_path="feeds.osv", http=HttpSettings())
    batch = await feed.poll(cursor={})
    assert sorted(a.id for a in batch.advisories) == ["PW-DSA-1571-1", "PW-W-1"]
    reasons = {q.document: q.reason for q in batch.quarantined}
    assert set(reasons) == {"legacy-OSV-2020-111.json", "no-affected-PW-2026-0005.json"}
    assert reasons["legacy-OSV-2020-111.json"].startswith("OSV OSV-2020-111: not an OSV record: legacy layout")
    assert "nothing could ever match" in reasons["no-affected-PW-2026-0005.json"]
    assert all(a.affected for a in batch.advisories if a.withdrawn is None), "nothing is stored empty"
