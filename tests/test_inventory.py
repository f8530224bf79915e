"""CycloneDX import of every sample SBOM, purl → OSV ecosystem mapping, configured package lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.advisories.inventory import from_config, from_purl, load_cyclonedx, load_inventory, split_ecosystem
from bot.config import Package, System
from bot.errors import InputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SBOM = DATA / "sbom"


def test_python_app_sbom() -> None:
    packages = load_cyclonedx(SBOM / "python-app.cdx.json")
    assert len(packages) == 22
    assert {p.ecosystem for p in packages} == {"PyPI"}
    flask = next(p for p in packages if p.name == "flask")
    assert (flask.version, flask.release, flask.purl) == ("2.2.2", None, "pkg:pypi/flask@2.2.2")


def test_debian12_sbom_nested_components_and_source_names() -> None:
    packages = load_cyclonedx(SBOM / "debian12-webserver.cdx.json")
    by_purl = {p.purl: p for p in packages}
    assert len(packages) == 44  # 31 Debian packages + 4 Maven + 4 npm + 5 Go, generic wrappers skipped
    libssl = next(p for p in packages if p.purl and "/libssl3@" in p.purl)
    assert (libssl.ecosystem, libssl.name, libssl.release, libssl.version) == (
        "Debian",
        "openssl",  # the source package, which Debian advisories name
        "12",
        "3.0.22-1~deb12u2",
    )
    ssh = next(p for p in packages if p.purl and "/openssh-server@" in p.purl)
    assert ssh.version == "1:9.2p1-2+deb12u10"  # percent-encoded epoch decoded
    assert by_purl["pkg:maven/junit/junit@4.12?type=jar"].name == "junit:junit"
    stdlib = next(p for p in packages if p.name == "stdlib")
    assert (stdlib.ecosystem, stdlib.version) == ("Go", "1.21.5")
    assert not any(p.purl and p.purl.startswith("pkg:generic/") for p in packages)


def test_debian9_and_proton_bridge_sboms() -> None:
    legacy = load_cyclonedx(SBOM / "debian9-legacy-host.cdx.json")
    assert len(legacy) == 6 and {p.release for p in legacy} == {"9"}
    proton = load_cyclonedx(SBOM / "proton-bridge-v1.8.0.bom.json")  # CycloneDX 1.2, real
    assert len(proton) == 201 and {p.ecosystem for p in proton} == {"Go"}
    assert any(p.name == "github.com/gin-gonic/gin" and p.version == "v1.4.0" for p in proton)


@pytest.mark.parametrize(
    ("purl", "expected"),
    [
        ("pkg:apk/alpine/musl@1.2.3-r4?distro=3.18", ("Alpine", "musl", "v3.18")),
        ("pkg:apk/alpine/musl@1.2.3-r4?distro=alpine-3.18.4", ("Alpine", "musl", "v3.18")),
        ("pkg:deb/debian/curl@7.88.1-10?distro=bookworm", ("Debian", "curl", "12")),
        (
            "pkg:deb/ubuntu/openssh-server@1:8.9p1?upstream=openssh&distro=ubuntu-22.04",
            ("Ubuntu", "openssh", "22.04"),
        ),
        ("pkg:npm/%40types/node@20.1.0", ("npm", "@types/node", None)),
        ("pkg:gem/rails@7.0.0", ("RubyGems", "rails", None)),
        ("pkg:rpm/redhat/openssl@3.0.7-1.el9", ("Red Hat", "openssl", None)),
        ("pkg:cargo/serde@1.0.0", ("crates.io", "serde", None)),
    ],
)
def test_purl_mapping(purl: str, expected: tuple[str, str, str | None]) -> None:
    pkg = from_purl(purl)
    assert pkg is not None and (pkg.ecosystem, pkg.name, pkg.release) == expected


def test_purls_naming_no_package() -> None:
    assert from_purl("pkg:generic/billing-portal@1.4.2") is None
    assert from_purl("pkg:pypi/flask") is None  # no version


def test_deb_without_distro_takes_the_sbom_operating_system(tmp_path: Path) -> None:
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "metadata": {"component": {"type": "operating-system", "name": "debian", "version": "12.11"}},
        "components": [{"type": "library", "name": "curl", "purl": "pkg:deb/debian/curl@7.88.1-10"}],
    }
    (pkg,) = load_cyclonedx(json.dumps(doc).encode())
    assert pkg.release == "12"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"bomFormat": "SPDX"}', "not a CycloneDX SBOM"),
        (b'{"bomFormat": "CycloneDX", "specVersion": "2.0"}', "unsupported CycloneDX specVersion"),
        (b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": {}}', "must be a list"),
        (
            b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"name": "x", "purl": "nope"}]}',
            r"components\[0\] \(x\): malformed purl",
        ),
    ],
)
def test_bad_sboms_are_refused_with_a_clear_message(content: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_cyclonedx(content)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the SBOM"):
        load_cyclonedx(tmp_path / "missing.cdx.json")


def test_from_config_splits_ecosystem_release() -> None:
    system = System(
        owner="U123",
        packages=[
            Package(ecosystem="Debian:12", name="openssl", version="3.0.11-1~deb12u2"),
            Package(ecosystem="Alpine", name="musl", version="1.2.3-r4", release="v3.18"),
        ],
    )
    packages = from_config(system)
    assert [(p.ecosystem, p.release) for p in packages] == [("Debian", "12"), ("Alpine", "v3.18")]


def test_split_ecosystem() -> None:
    assert split_ecosystem("Ubuntu:Pro:18.04:LTS") == ("Ubuntu", "18.04")
    assert split_ecosystem("Alpine:v3.18") == ("Alpine", "v3.18")
    assert split_ecosystem("PyPI") == ("PyPI", None)


def test_inventory_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text("systems:\n  x: {sbom: a.json, packages: []}\n")
    with pytest.raises(InputError, match="exactly one of 'sbom'"):
        load_inventory(bad)
    bad.write_text("systems:\n  x:\n    packages: [{ecosystem: PyPI, name: flask}]\n")
    with pytest.raises(InputError, match=r"systems\.x\.packages\[0\]"):
        load_inventory(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no \*\.json SBOM"):
        load_inventory(empty)
