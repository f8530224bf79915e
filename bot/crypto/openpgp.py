"""OpenPGP detached-signature verification against pinned fingerprints, delegated to GnuPG's ``gpgv``.

Why ``gpgv`` (Debian package ``gpgv``, part of GnuPG) rather than a Python OpenPGP library:

* it is the verifier Debian's own apt uses for every repository signature, so it is maintained, audited and
  patched by the distribution; ``PGPy`` is unmaintained (breaks on Python 3.13) and ``pysequoia`` would
  add a 9 MB native wheel for what one binary already in the image does;
* ``gpgv`` only verifies: it has no trust database, no key import side effects, no agent, and accepts only
  the keyring file it is given, so there is no user keyring to pollute or to trust by accident;
* its ``--status-fd`` output is a documented, stable machine interface (``doc/DETAILS`` in GnuPG).

We never parse OpenPGP packets ourselves. Verification (fails closed, raises ``VerificationError``):

1. the candidate public keys are de-armored (``gpg --dearmor``) into a keyring in a fresh temporary
   directory that is used as ``--homedir`` (nothing of the host's GnuPG state is read);
2. ``gpgv --status-fd 1 --keyring <that keyring> <sig> <data>`` must exit 0;
3. its status lines must contain no ``BADSIG``/``ERRSIG``/``EXPSIG``/``EXPKEYSIG``/``REVKEYSIG``/
   ``NO_PUBKEY`` and at least one ``VALIDSIG``;
4. the primary-key fingerprint of that ``VALIDSIG`` (or the signing subkey's) must be one of the pinned
   fingerprints: keys shipped alongside the documents decide nothing by themselves, the pin decides.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from bot.errors import ConfigError, VerificationError

_FPR = re.compile(r"^[0-9A-F]{40}$|^[0-9A-F]{64}$")
_FATAL = ("BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY")
_TIMEOUT = 30.0


def normalize_fingerprint(value: str) -> str:
    """Upper-case hex without spaces or ``0x``; ``ConfigError`` unless a v4 (40) or v5/v6 (64) fingerprint."""
    fpr = value.replace(" ", "").removeprefix("0x").removeprefix("0X").upper()
    if not _FPR.match(fpr):
        raise ConfigError(f"{value!r} is not an OpenPGP fingerprint (40 or 64 hex digits); key ids are not enough")
    return fpr


def require_gpgv() -> None:
    """Raise ``ConfigError`` at startup when ``gpgv``/``gpg`` are not installed (signed feeds need them)."""
    missing = [tool for tool in ("gpgv", "gpg") if shutil.which(tool) is None]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not found; install GnuPG (Debian: apt-get install gpgv gnupg)")


async def _run(*args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise VerificationError(f"{args[0]} timed out") from None
    return proc.returncode if proc.returncode is not None else -1, out, err


class PinnedVerifier:
    """Verifies detached OpenPGP signatures made by a key whose fingerprint is pinned."""

    def __init__(self, fingerprints: Iterable[str]) -> None:
        """``fingerprints``: the pins (normalised); an empty pin list is refused (it would trust nothing)."""
        self.fingerprints = frozenset(normalize_fingerprint(f) for f in fingerprints)
        if not self.fingerprints:
            raise ConfigError("at least one pinned OpenPGP fingerprint is required")

    async def verify(self, data: bytes, signature: bytes, *, keys: Sequence[bytes]) -> str:
        """The pinned fingerprint that made ``signature`` over ``data``; ``VerificationError`` otherwise.

        ``keys`` are candidate public keys (armored or binary); which of them is trusted is decided only by
        the pins.
        """
        if not keys:
            raise VerificationError("no OpenPGP public key available to check the signature")
        with tempfile.TemporaryDirectory(prefix="pw-gpgv-") as tmp:
            home = Path(tmp)
            # Step 1: a private keyring from the candidate keys only, in a fresh home directory.
            keyring = b"".join([await _dearmor(home, key) for key in keys])
            files = await asyncio.to_thread(_write_files, home, keyring=keyring, sig=signature, data=data)
            # Step 2: gpgv must succeed.
            code, out, _ = await _run(
                "gpgv", "--homedir", str(home), "--status-fd", "1", "--keyring", str(files[0]),
                str(files[1]), str(files[2]),
            )  # fmt: skip
        status = [line.split() for line in out.decode("utf-8", "replace").splitlines()]
        status = [parts[1:] for parts in status if len(parts) > 1 and parts[0] == "[GNUPG:]"]
        # Step 3: no bad/erroneous/expired/revoked signature, and at least one valid one.
        fatal = sorted({parts[0] for parts in status if parts[0] in _FATAL})
        if fatal:
            raise VerificationError(f"OpenPGP signature rejected by gpgv ({', '.join(fatal)})")
        valid = [parts for parts in status if parts[0] == "VALIDSIG" and len(parts) >= 2]
        if code != 0 or not valid:
            raise VerificationError(f"OpenPGP signature does not verify (gpgv exit {code})")
        # Step 4: the signer must be pinned (primary key fingerprint is the last VALIDSIG field).
        for parts in valid:
            signer = {parts[1].upper(), parts[-1].upper()}
            pinned = signer & self.fingerprints
            if pinned:
                return sorted(pinned)[0]
        raise VerificationError(f"OpenPGP signature made by {valid[0][-1]}, which is not a pinned key")


def _write_files(home: Path, *, keyring: bytes, sig: bytes, data: bytes) -> tuple[Path, Path, Path]:
    home.chmod(0o700)
    paths = (home / "pinned.gpg", home / "document.sig", home / "document")
    for path, content in zip(paths, (keyring, sig, data), strict=True):
        path.write_bytes(content)
    return paths


async def _dearmor(home: Path, key: bytes) -> bytes:
    if b"-----BEGIN PGP" not in key:
        return key  # already binary
    code, out, err = await _run("gpg", "--homedir", str(home), "--batch", "--no-options", "--dearmor", stdin=key)
    if code != 0 or not out:
        raise VerificationError(f"an OpenPGP public key could not be read: {err.decode(errors='replace')[:200]}")
    return out
