"""The only module that imports ``cryptography``: hashes, Ed25519 keys, signatures.

Security code here fails closed: every check raises ``VerificationError`` instead of returning False.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bot.errors import ConfigError, VerificationError

HASH_ALGORITHMS = ("sha256", "sha512")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, streamed."""
    if algorithm not in HASH_ALGORITHMS:
        raise VerificationError(f"unsupported hash algorithm {algorithm!r}")
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_digest(data_or_path: bytes | Path, *, algorithm: str, expected_hex: str) -> None:
    """Raise ``VerificationError`` unless the content hashes to ``expected_hex`` (constant-time compare)."""
    if isinstance(data_or_path, Path):
        actual = file_digest(data_or_path, algorithm)
    else:
        if algorithm not in HASH_ALGORITHMS:
            raise VerificationError(f"unsupported hash algorithm {algorithm!r}")
        actual = hashlib.new(algorithm, data_or_path).hexdigest()
    if not hmac.compare_digest(actual.lower(), expected_hex.strip().lower()):
        raise VerificationError(f"{algorithm} mismatch: expected {expected_hex.strip()[:16]}…, got {actual[:16]}…")


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """Hex HMAC-SHA256, as used to sign webhook bodies."""
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def hmac_equal(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


class Signer:
    """An Ed25519 signing key (audit checkpoints). ``key_id`` is the first 16 hex of the public key's hash."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = sha256_hex(self.public_bytes)[:16]

    @classmethod
    def generate(cls) -> Signer:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_base64(cls, text: str) -> Signer:
        """Load a raw 32-byte private key given in base64 (the ``PATCHWARDEN_AUDIT_KEY`` format)."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        except ValueError as exc:
            raise ConfigError("PATCHWARDEN_AUDIT_KEY is not a base64-encoded 32-byte Ed25519 private key") from exc

    @classmethod
    def load_or_create(cls, path: Path) -> Signer:
        """Load the key file, or create it with 0600 permissions on first run."""
        if path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise ConfigError(f"audit key file {path} is readable by others (mode {mode:o}); chmod 600 it")
            return cls.from_base64(path.read_text())
        signer = cls.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signer.private_base64() + "\n")
        return signer

    def private_base64(self) -> str:
        """The private key as base64 of its 32 raw bytes."""
        raw = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(raw).decode()

    def sign(self, message: bytes) -> str:
        """Base64 Ed25519 signature of ``message``."""
        return base64.b64encode(self._key.sign(message)).decode()


def verify_ed25519(public_key: bytes, *, signature: bytes, message: bytes) -> None:
    """Raise ``VerificationError`` unless ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError("Ed25519 signature does not verify") from exc


def seal(key: str, plaintext: str) -> str:
    """Encrypt ``plaintext`` with a Fernet key (AES-128-CBC + HMAC-SHA256, authenticated) for storage."""
    from cryptography.fernet import Fernet

    try:
        return Fernet(key.encode()).encrypt(plaintext.encode()).decode()
    except ValueError as exc:  # not a 32-byte url-safe base64 key
        raise ConfigError("PATCHWARDEN_SECRETS_KEY is not a Fernet key (44 characters of url-safe base64)") from exc


def unseal(key: str, token: str) -> str:
    """Decrypt what ``seal`` produced; raises ``VerificationError`` if it was altered or the key differs."""
    from cryptography.fernet import Fernet, InvalidToken

    try:
        return Fernet(key.encode()).decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise VerificationError("a stored secret does not decrypt with PATCHWARDEN_SECRETS_KEY") from exc


def new_secrets_key() -> str:
    """A fresh key for PATCHWARDEN_SECRETS_KEY."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
