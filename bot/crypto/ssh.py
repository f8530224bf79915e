"""OpenSSH user certificates: the just-in-time credential of one deployment run.

A certificate is signed by a CA key that patchwarden holds; sshd trusts the CA (``TrustedUserCAKeys``)
and maps principals to accounts (``AuthorizedPrincipalsFile``). What this module guarantees:

1. the run's key pair is fresh (Ed25519, generated per run, never reused);
2. principals are exactly the ones asked for (no empty list: OpenSSH treats that as "any principal");
3. ``valid_before`` is bounded by the caller (the window's end) and ``valid_after`` starts a minute back
   to tolerate clock skew;
4. the key id names the change and run, so sshd's log ties every login to the control log;
5. ``force-command`` is a critical option when given, so a stolen certificate can run nothing else.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import SSHCertificateBuilder, SSHCertificateType

from bot.errors import ConfigError

SKEW = timedelta(minutes=1)
# Extensions an interactive deployment needs; agent and X11 forwarding are deliberately not granted.
EXTENSIONS = (b"permit-pty",)


@dataclass(frozen=True)
class IssuedCertificate:
    """A run's private key and its certificate, in OpenSSH formats."""

    private_key: bytes
    certificate: bytes
    key_id: str
    serial: int
    principals: tuple[str, ...]
    valid_after: datetime
    valid_before: datetime


def load_ca_key(path: Path) -> Ed25519PrivateKey:
    """The CA's private key (OpenSSH or PEM, unencrypted, not readable by others); ``ConfigError`` otherwise."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"SSH CA key {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise ConfigError(f"SSH CA key {path} is readable by group or others: chmod 600 it")
    try:
        key = (
            serialization.load_ssh_private_key(data, password=None)
            if data.lstrip().startswith(b"-----BEGIN OPENSSH")
            else serialization.load_pem_private_key(data, password=None)
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"SSH CA key {path} is not an unencrypted private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"SSH CA key {path} must be an Ed25519 key")
    return key


def ca_public_line(ca: Ed25519PrivateKey) -> bytes:
    """The CA's public key as one ``authorized_keys``-style line, for ``TrustedUserCAKeys``."""
    return ca.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def issue_user_certificate(
    ca: Ed25519PrivateKey,
    *,
    principals: tuple[str, ...],
    key_id: str,
    now: datetime,
    valid_before: datetime,
    force_command: str | None = None,
) -> IssuedCertificate:
    """A fresh key pair and a user certificate for it (steps 1-5 of the module docstring)."""
    if not principals:  # 2. an empty principal list would be valid for every account
        raise ConfigError("an SSH certificate needs at least one principal")
    if valid_before <= now:
        raise ConfigError("an SSH certificate must end after it starts")
    user_key = Ed25519PrivateKey.generate()  # 1.
    serial = secrets.randbits(63)
    valid_after = now - SKEW  # 3.
    builder = (
        SSHCertificateBuilder()
        .public_key(user_key.public_key())
        .serial(serial)
        .type(SSHCertificateType.USER)
        .key_id(key_id.encode())  # 4.
        .valid_principals([p.encode() for p in principals])
        .valid_after(int(valid_after.timestamp()))
        .valid_before(int(valid_before.timestamp()))
    )
    if force_command:  # 5.
        builder = builder.add_critical_option(b"force-command", force_command.encode())
    for ext in EXTENSIONS:
        builder = builder.add_extension(ext, b"")
    cert = builder.sign(ca)
    private = user_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return IssuedCertificate(
        private_key=private,
        certificate=cert.public_bytes() + b" " + key_id.encode() + b"\n",
        key_id=key_id,
        serial=serial,
        principals=principals,
        valid_after=valid_after,
        valid_before=valid_before,
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
