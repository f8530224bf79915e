"""Artifact integrity and authenticity: download to quarantine, verify hash and signature, re-check at use.

A change may reference artifacts (a patch bundle, a package): URL, the expected SHA-256/SHA-512 and
optionally a detached signature made by a key pinned in the configuration's trust store
(``Config.trust``, changed only through reviewed configuration). Nothing reaches an executor unverified:
executors receive a ``VerifiedArtifact`` and call ``reverify`` immediately before use, which re-hashes the
file so a file swapped in quarantine after verification is refused (time-of-check/time-of-use).

Trust store entries (``trust.<name>``)::

    trust:
      vendor-minisign: {type: minisign, public_key: "RWQ..."}        # the base64 line of minisign.pub
      vendor-pgp: {type: openpgp, fingerprint: "B78E 7CA3 ...", key_file: keys/vendor.asc}

Schemes: minisign (Ed25519; the default pre-hashed ``ED`` form signs BLAKE2b-512 of the file, the legacy
``Ed`` form the file itself; both carry a trusted comment covered by a second, "global" signature; format at
https://jedisct1.github.io/minisign/), verified with ``bot.crypto.verify_ed25519``; OpenPGP detached
signatures, verified by ``gpgv`` against the pinned fingerprint (``bot.crypto.openpgp``; no OpenPGP parsing
here). Every failure raises ``VerificationError``: wrong hash, bad signature, unknown or unpinned key,
unsupported scheme, oversized download, HTTP error. There is no "accept anyway".
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from bot import crypto, outbound
from bot.crypto.openpgp import PinnedVerifier, normalize_fingerprint
from bot.errors import ConfigError, OutboundRefusedError, VerificationError

MAX_ARTIFACT_BYTES = 1 << 30
MAX_SIGNATURE_BYTES = 64 << 10
_HEX = {"sha256": re.compile(r"^[0-9a-fA-F]{64}$"), "sha512": re.compile(r"^[0-9a-fA-F]{128}$")}
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_CHUNK = 1 << 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class MinisignKey:
    """A minisign public key: 8-byte key id and 32-byte Ed25519 key."""

    key_id: bytes
    public_key: bytes


def parse_minisign_public_key(text: str) -> MinisignKey:
    """Parse a minisign public key: the base64 line, or the whole ``.pub`` file with its comment line.

    The decoded key is ``b"Ed"`` (signature algorithm) ‖ key id (8 bytes) ‖ Ed25519 public key (32 bytes).
    Raises ``ValueError`` when it is not one.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("untrusted comment:")]
    if len(lines) != 1:
        raise ValueError("expected one base64 line (the second line of minisign.pub)")
    try:
        raw = base64.b64decode(lines[0], validate=True)
    except binascii.Error as exc:
        raise ValueError("the minisign public key is not valid base64") from exc
    if len(raw) != 42 or raw[:2] != b"Ed":
        raise ValueError("not a minisign Ed25519 public key (expected 42 bytes starting with 'Ed')")
    return MinisignKey(key_id=raw[2:10], public_key=raw[10:])


class MinisignTrust(_Strict):
    """A pinned minisign key."""

    type: Literal["minisign"]
    public_key: str

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        parse_minisign_public_key(value)
        return value

    def key(self) -> MinisignKey:
        """The parsed key."""
        return parse_minisign_public_key(self.public_key)


class OpenPGPTrust(_Strict):
    """A pinned OpenPGP key: the fingerprint decides, the key file only supplies the key material."""

    type: Literal["openpgp"]
    fingerprint: str
    key_file: Path

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        try:
            return normalize_fingerprint(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc


TrustEntry = Annotated[MinisignTrust | OpenPGPTrust, Field(discriminator="type")]
_TRUST_ADAPTER: TypeAdapter[MinisignTrust | OpenPGPTrust] = TypeAdapter(TrustEntry)


def parse_trust(raw: Mapping[str, Mapping[str, Any]], *, base_dir: Path | None = None) -> dict[str, TrustEntry]:
    """Validate ``Config.trust``; raise ``ConfigError`` naming ``trust.<name>`` for a bad entry.

    Relative ``key_file`` paths are resolved against ``base_dir`` (the configuration file's folder) and
    must be readable now, so a missing key stops startup instead of failing the first verification.
    """
    entries: dict[str, TrustEntry] = {}
    for name, spec in raw.items():
        try:
            entry = _TRUST_ADAPTER.validate_python(spec)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'][1:]) or 'type'}: " + err["msg"].removeprefix("Value error, ")
                for err in exc.errors()
            )
            raise ConfigError(f"trust.{name}: {problems} (type is minisign or openpgp)") from exc
        if isinstance(entry, OpenPGPTrust):
            key_file = entry.key_file if base_dir is None else base_dir / entry.key_file
            if not key_file.is_file() or not os.access(key_file, os.R_OK):
                raise ConfigError(f"trust.{name}.key_file: {key_file} is not a readable file")
            entry = entry.model_copy(update={"key_file": key_file})
        entries[name] = entry
    return entries


class ArtifactRef(_Strict):
    """An artifact a change refers to. ``signer`` names the trust entry that must have signed it."""

    url: str
    sha256: str | None = None
    sha512: str | None = None
    signature_url: str | None = None
    signer: str | None = None

    @field_validator("url", "signature_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("only http(s) URLs can be fetched")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ArtifactRef:
        if self.sha256 is None and self.sha512 is None:
            raise ValueError("give the artifact's sha256 or sha512: an unhashed download is never accepted")
        for algorithm in ("sha256", "sha512"):
            value = getattr(self, algorithm)
            if value is not None and not _HEX[algorithm].match(value):
                raise ValueError(f"{algorithm} must be {_HEX_LENGTH[algorithm]} hex digits")
        if (self.signature_url is None) != (self.signer is None):
            raise ValueError("signature_url and signer go together (which key must have signed it)")
        return self


@dataclass(frozen=True, slots=True)
class VerifiedArtifact:
    """A verified file in quarantine. ``signer`` is the trust entry name, ``detail`` the trusted comment
    (minisign) or the signing fingerprint (OpenPGP); both empty for hash-only artifacts."""

    path: Path
    sha256: str
    scheme: str = "sha256"
    signer: str = ""
    detail: str = ""


def verify_minisign(data_path: Path, signature_text: str, key: MinisignKey) -> str:
    """Verify a minisign signature of a file; return its trusted comment. Raises ``VerificationError``.

    Signature file layout: ``untrusted comment: …`` / base64(algorithm (2) ‖ key id (8) ‖ signature (64)) /
    ``trusted comment: …`` / base64(global signature (64) over signature ‖ trusted comment).
    """
    # 1. Parse the four lines; anything else is refused.
    lines = signature_text.strip().splitlines()
    if len(lines) != 4 or not lines[0].startswith("untrusted comment:"):
        raise VerificationError("not a minisign signature file (expected 4 lines)")
    if not lines[2].startswith("trusted comment: "):
        raise VerificationError("minisign signature has no trusted comment line")
    try:
        blob = base64.b64decode(lines[1], validate=True)
        global_sig = base64.b64decode(lines[3], validate=True)
    except binascii.Error as exc:
        raise VerificationError("minisign signature is not valid base64") from exc
    if len(blob) != 74 or len(global_sig) != 64:
        raise VerificationError("minisign signature has the wrong length")
    algorithm, key_id, signature = blob[:2], blob[2:10], blob[10:]
    # 2. The signature must name the pinned key (minisign prints key ids as little-endian hex).
    if key_id != key.key_id:
        raise VerificationError(
            f"signed by minisign key {key_id[::-1].hex().upper()}, "
            f"not by the pinned key {key.key_id[::-1].hex().upper()}"
        )
    # 3. The signed message: BLAKE2b-512 of the file ("ED", the default) or the file itself (legacy "Ed").
    if algorithm == b"ED":
        digest = hashlib.blake2b(digest_size=64)
        with data_path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        message = digest.digest()
    elif algorithm == b"Ed":
        message = data_path.read_bytes()
    else:
        raise VerificationError(f"unsupported minisign algorithm {algorithm!r}")
    # 4. The file signature.
    crypto.verify_ed25519(key.public_key, signature=signature, message=message)
    # 5. The global signature binds the trusted comment to the file signature.
    trusted_comment = lines[2].removeprefix("trusted comment: ")
    try:
        crypto.verify_ed25519(key.public_key, signature=global_sig, message=signature + trusted_comment.encode())
    except VerificationError as exc:
        raise VerificationError("minisign trusted comment signature does not verify") from exc
    return trusted_comment


async def verify_openpgp(data_path: Path, signature: bytes, entry: OpenPGPTrust) -> str:
    """Verify a detached OpenPGP signature with ``gpgv`` against the pinned fingerprint; return it."""
    data = await asyncio.to_thread(data_path.read_bytes)
    key = await asyncio.to_thread(entry.key_file.read_bytes)
    return await PinnedVerifier([entry.fingerprint]).verify(data, signature, keys=[key])


async def _download(
    session: aiohttp.ClientSession, url: str, target: Path, limit: int, policy: outbound.OutboundPolicy | None
) -> tuple[str, str]:
    """Stream ``url`` into ``target`` (created exclusively, 0600); return (sha256, sha512) hex.

    Redirects are followed only within the URL's origin; ``policy`` refuses internal addresses.
    """
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    shown = outbound.redact(url)
    try:
        async with await outbound.get(session, url, policy=policy) as resp:
            if resp.status != 200:
                raise VerificationError(f"download of {shown} failed: HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > limit:
                raise VerificationError(f"{shown} is larger than the {limit}-byte limit")
            size = 0
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise VerificationError(f"{shown} is larger than the {limit}-byte limit")
                    sha256.update(chunk)
                    sha512.update(chunk)
                    fh.write(chunk)
    except OutboundRefusedError as exc:
        raise VerificationError(str(exc)) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise VerificationError(f"download of {shown} failed: {exc.__class__.__name__}") from exc
    return sha256.hexdigest(), sha512.hexdigest()


async def fetch_and_verify(
    artifact: ArtifactRef,
    *,
    quarantine: Path,
    trust: Mapping[str, TrustEntry],
    session: aiohttp.ClientSession | None = None,
    max_bytes: int = MAX_ARTIFACT_BYTES,
    policy: outbound.OutboundPolicy | None = None,
) -> VerifiedArtifact:
    """Download ``artifact`` into ``quarantine`` and verify it; raise ``VerificationError`` on any failure.

    Without ``session`` a fresh ``aiohttp.ClientSession(trust_env=True)`` is used, so HTTP(S)_PROXY and
    NO_PROXY are honoured; pass the bot's shared session to use its proxy and CA bundle settings. With
    ``policy`` (the configured outbound-URL policy) internal addresses are refused at connect time; the
    session's own connector is used as is, so pass a session built with ``outbound.connector`` too.
    """
    # 1. The signer must be pinned before anything is downloaded.
    entry: TrustEntry | None = None
    if artifact.signer is not None:
        entry = trust.get(artifact.signer)
        if entry is None:
            raise VerificationError(f"key {artifact.signer!r} is not pinned in the trust store; refusing")
    await asyncio.to_thread(quarantine.mkdir, mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    partial = quarantine / f".partial-{token}"
    sig_file = quarantine / f".partial-{token}.sig"
    own_session = session is None
    http = session or aiohttp.ClientSession(
        trust_env=True,
        timeout=aiohttp.ClientTimeout(total=600),
        connector=outbound.connector(policy) if policy is not None else None,
    )
    try:
        # 2. Download to an exclusive file in quarantine, hashing while streaming.
        sha256, sha512 = await _download(http, artifact.url, partial, max_bytes, policy)
        # 3. Every stated digest must match (constant-time comparison).
        for algorithm, actual in (("sha256", sha256), ("sha512", sha512)):
            expected = getattr(artifact, algorithm)
            if expected is not None and not crypto.hmac_equal(actual, expected.lower()):
                raise VerificationError(
                    f"{algorithm} of {outbound.redact(artifact.url)} is {actual[:16]}…, "
                    f"expected {expected[:16]}…; refusing"
                )
        # 4. The signature, by the pinned key of the named signer.
        scheme, detail = "sha512" if artifact.sha256 is None else "sha256", ""
        if entry is not None and artifact.signature_url is not None:
            await _download(http, artifact.signature_url, sig_file, MAX_SIGNATURE_BYTES, policy)
            signature = await asyncio.to_thread(sig_file.read_bytes)
            if isinstance(entry, MinisignTrust):
                scheme = "minisign"
                text = signature.decode("utf-8", "replace")
                detail = await asyncio.to_thread(verify_minisign, partial, text, entry.key())
            else:
                scheme = "openpgp"
                detail = await verify_openpgp(partial, signature, entry)
        # 5. Name the file by its digest and make it read-only; executors get only this handle.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(urlsplit(artifact.url).path).name)[:100] or "artifact"
        final = quarantine / f"{sha256[:16]}-{name}"
        os.replace(partial, final)
        final.chmod(0o400)
        return VerifiedArtifact(path=final, sha256=sha256, scheme=scheme, signer=artifact.signer or "", detail=detail)
    finally:
        partial.unlink(missing_ok=True)  # only still there when a step failed
        sig_file.unlink(missing_ok=True)
        if own_session:
            await http.close()


def reverify(artifact: VerifiedArtifact) -> Path:
    """Re-hash the file just before use; return its path, or raise ``VerificationError`` if it changed."""
    try:
        crypto.verify_digest(artifact.path, algorithm="sha256", expected_hex=artifact.sha256)
    except OSError as exc:
        raise VerificationError(f"verified artifact {artifact.path} is gone or unreadable") from exc
    except VerificationError as exc:
        raise VerificationError(f"{artifact.path} changed after verification; refusing to use it") from exc
    return artifact.path
