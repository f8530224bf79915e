"""CSAF 2.0 feed: hash and pinned-OpenPGP checks of real CSAF documents on a loopback provider."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from bot.advisories.model import Severity
from bot.errors import ConfigError, FeedError
from bot.feeds.csaf import CsafFeed
from bot.feeds.csaf_map import parse_csaf, purl_package
from bot.feeds.http import HttpSettings
from tests.feeds.conftest import DATA, GpgKey, Loopback

HTTP = HttpSettings(retries=0, backoff=0, timeout=10)
BASE = "/.well-known/csaf"
DOCS = sorted((DATA / "csaf").glob("*.json"))


def _publish(
    loopback: Loopback, signer: GpgKey, docs: list[Path], *, rolie: bool = False, key: GpgKey | None = None
) -> None:
    """Lay out a CSAF provider: documents with .sha256/.sha512/.asc, changes.csv or a ROLIE feed, metadata."""
    lines, entries = [], []
    for i, path in enumerate(docs):
        body = path.read_bytes()
        rel = f"2022/{path.name}"
        url_path = f"{BASE}/white/{rel}"
        loopback.files[url_path] = body
        loopback.files[url_path + ".sha256"] = f"{hashlib.sha256(body).hexdigest()}  {path.name}\n".encode()
        loopback.files[url_path + ".sha512"] = f"{hashlib.sha512(body).hexdigest()}  {path.name}\n".encode()
        loopback.files[url_path + ".asc"] = signer.sign(body)
        stamp = f"2022-01-{i + 10:02d}T08:00:00Z"
        lines.append(f'"{rel}","{stamp}"\n')
        entries.append({"id": path.stem, "updated": stamp, "link": [{"rel": "self", "href": loopback.url(url_path)}]})
    loopback.files[f"{BASE}/white/changes.csv"] = "".join(reversed(lines)).encode()
    loopback.files[f"{BASE}/feed-tlp-white.json"] = json.dumps({"feed": {"id": "white", "entry": entries}}).encode()
    dist = {"rolie": {"feeds": [{"url": loopback.url(f"{BASE}/feed-tlp-white.json"), "tlp_label": "WHITE"}]}}
    published_key = key or signer
    loopback.files[f"{BASE}/openpgp/key.asc"] = published_key.public
    metadata = {
        "canonical_url": loopback.url(f"{BASE}/provider-metadata.json"),
        "distributions": [dist if rolie else {"directory_url": loopback.url(f"{BASE}/white/")}],
        "metadata_version": "2.0",
        "public_openpgp_keys": [{"fingerprint": published_key.fingerprint, "url": "openpgp/key.asc"}],
        "role": "csaf_trusted_provider",
    }
    loopback.files[f"{BASE}/provider-metadata.json"] = json.dumps(metadata).encode()


def _feed(loopback: Loopback, pinned: GpgKey, tmp_path: Path, *extra_keys: GpgKey, local: bool = True) -> CsafFeed:
    options: dict[str, Any] = {
        "provider_metadata": loopback.url(f"{BASE}/provider-metadata.json"),
        "fingerprints": [pinned.fingerprint],
    }
    if local:
        paths = []
        for i, key in enumerate((pinned, *extra_keys)):
            paths.append(tmp_path / f"key{i}.asc")
            paths[-1].write_bytes(key.public)
        options["keys"] = [str(p) for p in paths]
    return CsafFeed(options, key_path="feeds.csaf", http=HTTP)


def _doc_path(name: str) -> str:
    return f"{BASE}/white/2022/{name}"


async def test_good_documents_accepted_then_not_modified(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, _ = gpg_keys
    _publish(loopback, pinned, DOCS)
    feed = _feed(loopback, pinned, tmp_path)
    first = await feed.poll(cursor={})
    assert first.quarantined == ()
    assert [a.id for a in first.advisories] == [
        "BSI-2022-0001", "cisco-sa-20180328-smi2", "RHSA-2019:1862",
        "RHSA-2021:5186", "RHSA-2021:5217", "RHSA-2022:0011",
    ]  # fmt: skip
    telnet = first.advisories[-1]
    assert telnet.source == "csaf" and telnet.aliases == ("CVE-2020-10188",)
    assert telnet.severity is Severity.HIGH  # aggregate_severity "Important"
    second = await feed.poll(cursor=first.cursor)
    assert second.advisories == () and second.quarantined == ()
    changes = loopback.hits(f"{BASE}/white/changes.csv")
    assert "If-None-Match" in changes[-1]


async def test_only_newer_changes_are_fetched(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, _ = gpg_keys
    _publish(loopback, pinned, DOCS[:2])
    feed = _feed(loopback, pinned, tmp_path)
    first = await feed.poll(cursor={})
    _publish(loopback, pinned, DOCS[:3])
    second = await feed.poll(cursor=first.cursor)
    assert [a.id for a in second.advisories] == ["RHSA-2019:1862"]
    assert len(loopback.hits(_doc_path(DOCS[0].name))) == 1


async def test_wrong_sha256_refused(loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path) -> None:
    pinned, _ = gpg_keys
    _publish(loopback, pinned, DOCS[:2])
    loopback.files[_doc_path(DOCS[0].name) + ".sha256"] = b"0" * 64 + b"  x.json\n"
    batch = await _feed(loopback, pinned, tmp_path).poll(cursor={})
    assert [a.id for a in batch.advisories] == ["cisco-sa-20180328-smi2"]
    (refused,) = batch.quarantined
    assert refused.source == "csaf" and refused.document.endswith(DOCS[0].name)
    assert "sha256 mismatch" in refused.reason


async def test_tampered_document_bad_signature_refused(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, _ = gpg_keys
    _publish(loopback, pinned, DOCS[:1])
    # The attacker changes the document and its hashes, but cannot re-sign it with the pinned key.
    path = _doc_path(DOCS[0].name)
    tampered = loopback.files[path].replace(b"CVE-2022-27193", b"CVE-2022-00000")
    loopback.files[path] = tampered
    loopback.files[path + ".sha256"] = hashlib.sha256(tampered).hexdigest().encode()
    loopback.files[path + ".sha512"] = hashlib.sha512(tampered).hexdigest().encode()
    batch = await _feed(loopback, pinned, tmp_path).poll(cursor={})
    assert batch.advisories == ()
    assert "BADSIG" in batch.quarantined[0].reason


async def test_signature_by_unpinned_key_refused(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, mallory = gpg_keys
    _publish(loopback, mallory, DOCS[:1])
    # Mallory's key is even in the keyring handed to gpgv: the pin, not the keyring, decides.
    batch = await _feed(loopback, pinned, tmp_path, mallory).poll(cursor={})
    assert batch.advisories == ()
    assert f"made by {mallory.fingerprint}, which is not a pinned key" in batch.quarantined[0].reason


async def test_missing_signature_or_hashes_refused(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, _ = gpg_keys
    _publish(loopback, pinned, DOCS[:2])
    del loopback.files[_doc_path(DOCS[0].name) + ".asc"]
    del loopback.files[_doc_path(DOCS[1].name) + ".sha256"]
    del loopback.files[_doc_path(DOCS[1].name) + ".sha512"]
    batch = await _feed(loopback, pinned, tmp_path).poll(cursor={})
    assert batch.advisories == ()
    reasons = sorted(q.reason for q in batch.quarantined)
    assert reasons == [
        "no .asc OpenPGP signature next to the document",
        "no .sha512 or .sha256 file next to the document",
    ]


async def test_keys_from_provider_metadata_and_rolie(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, _ = gpg_keys
    _publish(loopback, pinned, DOCS[:2], rolie=True)
    batch = await _feed(loopback, pinned, tmp_path, local=False).poll(cursor={})
    assert [a.id for a in batch.advisories] == ["BSI-2022-0001", "cisco-sa-20180328-smi2"]
    assert loopback.hits(f"{BASE}/openpgp/key.asc")


async def test_provider_key_swap_is_not_trusted(
    loopback: Loopback, gpg_keys: tuple[GpgKey, GpgKey], tmp_path: Path
) -> None:
    pinned, mallory = gpg_keys
    _publish(loopback, mallory, DOCS[:1], key=mallory)  # the provider now lists only Mallory's key
    with pytest.raises(FeedError, match="no public key for the pinned fingerprints"):
        await _feed(loopback, pinned, tmp_path, local=False).poll(cursor={})


def test_options_fail_closed(tmp_path: Path) -> None:
    base = {"provider_metadata": "https://provider.example/.well-known/csaf/provider-metadata.json"}
    with pytest.raises(ConfigError, match=r"feeds\.csaf\.fingerprints"):
        CsafFeed({**base, "fingerprints": []}, key_path="feeds.csaf", http=HTTP)
    with pytest.raises(ConfigError, match="not an OpenPGP fingerprint"):
        CsafFeed({**base, "fingerprints": ["B25688F252DDA512"]}, key_path="feeds.csaf", http=HTTP)
    with pytest.raises(ConfigError, match=r"feeds\.csaf\.keys\.0"):
        CsafFeed(
            {
                **base,
                "fingerprints": ["B78E 7CA3 AC90 727A 2C8C 408E B256 88F2 52DD A512"],
                "keys": ["/nope.asc"],
            },
            key_path="feeds.csaf",
            http=HTTP,
        )


# --- mapping -----------------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "csaf" / name).read_text())
    return data


def test_mapping_of_real_documents() -> None:
    bsi = parse_csaf(_load("bsi-2022-0001.json"))
    assert bsi.aliases == ("CVE-2022-27193",) and bsi.severity is Severity.MEDIUM and bsi.cvss_score == 6.1
    cisco = parse_csaf(_load("cisco-sa-20180328-smi2.json"))
    assert cisco.severity is Severity.CRITICAL and cisco.cvss_vector and cisco.cvss_vector.startswith("CVSS:3.0/")
    info = parse_csaf(_load("rhsa-2019_1862.json"))
    assert info.aliases == () and info.affected == ()  # informational: no vulnerabilities
    assert all(parse_csaf(_load(p.name)).published is not None for p in DOCS)


def test_purls_become_affected_packages() -> None:
    data = _load("rhsa-2022_0011.json")
    doc = copy.deepcopy(data)

    def add_purls(branches: list[dict[str, Any]]) -> None:
        for branch in branches:
            product = branch.get("product")
            if product and product["product_id"].startswith("telnet-server-1:0.17-65.el7_6"):
                arch = product["product_id"].rsplit(".", 1)[1]
                purl = f"pkg:rpm/redhat/telnet-server@0.17-65.el7_6?arch={arch}&epoch=1"
                product["product_identification_helper"] = {"purl": purl}
            add_purls(branch.get("branches", []))

    add_purls(doc["product_tree"]["branches"])
    adv = parse_csaf(doc)
    # Products without a purl are read from their Red Hat NEVRA ids (telnet, telnet-debuginfo) as well.
    assert [p.name for p in adv.affected] == ["telnet", "telnet-debuginfo", "telnet-server"]
    pkg = adv.affected[-1]
    assert (pkg.ecosystem, pkg.name) == ("Red Hat:7", "telnet-server")  # release from the platform CPE
    assert pkg.purl == "pkg:rpm/redhat/telnet-server"
    assert [e.model_dump(exclude_none=True) for e in pkg.ranges[0].events] == [
        {"introduced": "0"},
        {"fixed": "1:0.17-65.el7_6"},
    ]


@pytest.mark.parametrize(
    ("purl", "expected"),
    [
        ("pkg:pypi/jinja2@3.1.2", ("PyPI", "jinja2", "3.1.2")),
        (
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.17.1",
            ("Maven", "org.apache.logging.log4j:log4j-core", "2.17.1"),
        ),
        ("pkg:golang/github.com/gin-gonic/gin@v1.4.0", ("Go", "github.com/gin-gonic/gin", "v1.4.0")),
        ("pkg:npm/%40babel/core@7.0.0", ("npm", "@babel/core", "7.0.0")),
        (
            "pkg:deb/debian/openssl@1.1.0l-1~deb9u5?distro=debian-9",
            ("Debian:9", "openssl", "1.1.0l-1~deb9u5"),
        ),
        ("pkg:apk/alpine/musl@1.2.3-r4?distro=alpine-3.18", ("Alpine:v3.18", "musl", "1.2.3-r4")),
        ("pkg:rpm/fedora/curl@8.0-1", ("purl:rpm/fedora", "curl", "8.0-1")),
    ],
)
def test_purl_to_ecosystem(purl: str, expected: tuple[str, str, str]) -> None:
    assert purl_package(purl) == expected
