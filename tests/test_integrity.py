"""Artifact verification on the signed samples in shared/data/signing, served by a loopback aiohttp server."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.crypto.integrity import (
    ArtifactRef,
    TrustEntry,
    VerifiedArtifact,
    fetch_and_verify,
    parse_minisign_public_key,
    parse_trust,
    reverify,
    verify_minisign,
)
from bot.errors import ConfigError, VerificationError

SIGNING = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "signing"
BUNDLE = SIGNING / "patch-bundle-CHG-12.tar.gz"
TAMPERED = SIGNING / "patch-bundle-CHG-12.tampered.tar.gz"
FINGERPRINT = "B78E7CA3AC90727A2C8C408EB25688F252DDA512"
needs_gpg = pytest.mark.skipif(shutil.which("gpgv") is None or shutil.which("gpg") is None, reason="no GnuPG")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def minisign_pub(name: str = "minisign.pub") -> str:
    return (SIGNING / name).read_text().splitlines()[1]


@pytest.fixture
def trust() -> dict[str, TrustEntry]:
    return parse_trust(
        {
            "vendor-minisign": {"type": "minisign", "public_key": minisign_pub()},
            "other-minisign": {"type": "minisign", "public_key": minisign_pub("other-minisign.pub")},
            "vendor-pgp": {
                "type": "openpgp",
                "fingerprint": FINGERPRINT,
                "key_file": "openpgp-release-key.asc",
            },
        },
        base_dir=SIGNING,
    )


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """Serve shared/data/signing on 127.0.0.1 at a free port; ``/good/X`` maps the tampered file to X."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # trust_env=True must not send loopback traffic to a proxy

    async def files(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if request.match_info["kind"] == "swapped" and name == BUNDLE.name:
            return web.FileResponse(TAMPERED)
        path = SIGNING / name
        return web.FileResponse(path) if path.is_file() else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{kind}/{name}", files)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def ref(base: str, *, kind: str = "plain", sig: str | None = None, signer: str | None = None, **kw: str) -> ArtifactRef:
    return ArtifactRef(
        url=f"{base}/{kind}/{BUNDLE.name}",
        sha256=kw.get("sha256", sha256(BUNDLE)),
        signature_url=f"{base}/plain/{sig}" if sig else None,
        signer=signer,
    )


async def test_minisign_artifact_accepted(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    verified = await fetch_and_verify(
        ref(server, sig=f"{BUNDLE.name}.minisig", signer="vendor-minisign"), quarantine=tmp_path, trust=trust
    )
    assert verified.scheme == "minisign" and verified.sha256 == sha256(BUNDLE)
    assert verified.detail == "patchwarden sample: CHG-12 patch bundle, signed 2024-07-01"
    assert verified.path.read_bytes() == BUNDLE.read_bytes()
    assert reverify(verified) == verified.path
    assert listing(tmp_path) == [verified.path.name]  # no partial files left


async def test_minisign_tampered_twin_refused(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    # The tampered file under the good name, with its own (correct) hash: only the signature catches it.
    artifact = ref(
        server,
        kind="swapped",
        sig=f"{BUNDLE.name}.minisig",
        signer="vendor-minisign",
        sha256=sha256(TAMPERED),
    )
    with pytest.raises(VerificationError, match="Ed25519 signature does not verify"):
        await fetch_and_verify(artifact, quarantine=tmp_path, trust=trust)
    assert listing(tmp_path) == []  # nothing left for an executor to pick up


@needs_gpg
async def test_openpgp_artifact_accepted(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    verified = await fetch_and_verify(
        ref(server, sig=f"{BUNDLE.name}.asc", signer="vendor-pgp"), quarantine=tmp_path, trust=trust
    )
    assert (verified.scheme, verified.detail) == ("openpgp", FINGERPRINT)


@needs_gpg
async def test_openpgp_tampered_twin_refused(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    artifact = ref(server, kind="swapped", sig=f"{BUNDLE.name}.asc", signer="vendor-pgp", sha256=sha256(TAMPERED))
    with pytest.raises(VerificationError, match="BADSIG"):
        await fetch_and_verify(artifact, quarantine=tmp_path, trust=trust)


@needs_gpg
async def test_openpgp_signature_by_unpinned_fingerprint_refused(server: str, tmp_path: Path) -> None:
    other = parse_trust(
        {
            "pgp": {
                "type": "openpgp",
                "fingerprint": "A" * 40,
                "key_file": str(SIGNING / "openpgp-release-key.asc"),
            }
        }
    )
    with pytest.raises(VerificationError, match="not a pinned key"):
        await fetch_and_verify(ref(server, sig=f"{BUNDLE.name}.asc", signer="pgp"), quarantine=tmp_path, trust=other)


async def test_wrong_sha256_refused(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match=r"sha256 .* expected"):
        await fetch_and_verify(ref(server, sha256="0" * 64), quarantine=tmp_path, trust=trust)
    with pytest.raises(VerificationError, match="sha256"):  # the tampered file against the good hash
        await fetch_and_verify(ref(server, kind="swapped"), quarantine=tmp_path, trust=trust)
    assert listing(tmp_path) == []


async def test_unpinned_key_refused(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="not pinned"):
        await fetch_and_verify(
            ref(server, sig=f"{BUNDLE.name}.minisig", signer="somebody"), quarantine=tmp_path, trust=trust
        )
    # A pinned entry holding a different key: the signature's key id does not match it.
    with pytest.raises(VerificationError, match="not by the pinned key D9D855158B77C609"):
        await fetch_and_verify(
            ref(server, sig=f"{BUNDLE.name}.minisig", signer="other-minisign"),
            quarantine=tmp_path,
            trust=trust,
        )


async def test_http_error_refused(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    artifact = ArtifactRef(url=f"{server}/plain/missing.tar.gz", sha256="0" * 64)
    with pytest.raises(VerificationError, match="HTTP 404"):
        await fetch_and_verify(artifact, quarantine=tmp_path, trust=trust)


async def test_size_limit(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="larger than"):
        await fetch_and_verify(ref(server), quarantine=tmp_path, trust=trust, max_bytes=100)


async def test_reverify_catches_modification(server: str, trust: dict[str, TrustEntry], tmp_path: Path) -> None:
    verified = await fetch_and_verify(ref(server), quarantine=tmp_path, trust=trust)
    assert verified.scheme == "sha256"
    verified.path.chmod(0o600)
    verified.path.write_bytes(TAMPERED.read_bytes())
    with pytest.raises(VerificationError, match="changed after verification"):
        reverify(verified)
    verified.path.unlink()
    with pytest.raises(VerificationError, match="gone"):
        reverify(VerifiedArtifact(path=verified.path, sha256=verified.sha256))


def test_minisign_legacy_and_bad_trusted_comment() -> None:
    key = parse_minisign_public_key((SIGNING / "minisign.pub").read_text())
    legacy = (SIGNING / f"{BUNDLE.name}.legacy.minisig").read_text()
    assert "legacy" in verify_minisign(BUNDLE, legacy, key)
    bad_comment = (SIGNING / f"{BUNDLE.name}.bad-trusted-comment.minisig").read_text()
    with pytest.raises(VerificationError, match="trusted comment"):
        verify_minisign(BUNDLE, bad_comment, key)
    with pytest.raises(VerificationError, match="4 lines"):
        verify_minisign(BUNDLE, "garbage", key)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "minisign", "public_key": "not base64!"}, r"trust\.k: public_key"),
        ({"type": "openpgp", "fingerprint": "ABCD", "key_file": "x.asc"}, r"trust\.k: fingerprint"),
        ({"type": "x509"}, r"trust\.k: "),
        ({"type": "openpgp", "fingerprint": FINGERPRINT, "key_file": "missing.asc"}, r"trust\.k\.key_file"),
    ],
)
def test_parse_trust_names_the_bad_entry(entry: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_trust({"k": entry}, base_dir=SIGNING)


def test_artifact_ref_requires_a_hash_and_a_signer_with_a_signature() -> None:
    with pytest.raises(ValueError, match="sha256 or sha512"):
        ArtifactRef(url="https://example.org/a.tgz")
    with pytest.raises(ValueError, match="go together"):
        ArtifactRef(url="https://example.org/a.tgz", sha256="0" * 64, signature_url="https://example.org/a.sig")
    with pytest.raises(ValueError, match="http"):
        ArtifactRef(url="file:///etc/passwd", sha256="0" * 64)
