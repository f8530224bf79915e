"""Fixtures for the feed tests: a loopback static HTTP server and throwaway OpenPGP keys."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

DATA = Path(__file__).resolve().parents[1].parent.parent / "shared" / "data"


@dataclass
class Loopback:
    """A static HTTP server on 127.0.0.1 with ETags, scripted failures and a request log."""

    files: dict[str, bytes] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: TestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def hits(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers)))
        script = self.fail.get(request.path)
        if script:
            return web.Response(status=script.pop(0))
        body = self.files.get(request.path)
        if body is None:
            return web.Response(status=404)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"ETag": etag})


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    state = Loopback()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.server = server
    yield state
    await server.close()


@dataclass(frozen=True)
class GpgKey:
    home: Path
    fingerprint: str
    public: bytes

    def sign(self, data: bytes) -> bytes:
        """ASCII-armoured detached signature of ``data``."""
        return _gpg(self.home, "--local-user", self.fingerprint, "--armor", "--detach-sign", stdin=data)


def _gpg(home: Path, *args: str, stdin: bytes = b"") -> bytes:
    cmd = [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--yes",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]
    return subprocess.run([*cmd, *args], input=stdin, capture_output=True, check=True).stdout


@pytest.fixture(scope="session")
def gpg_keys() -> Iterator[tuple[GpgKey, GpgKey]]:
    """Two throwaway Ed25519 signing keys: (pinned, unpinned). Short home path: gpg-agent socket limit."""
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.skip("GnuPG (gpg, gpgv) is not installed")
    home = Path(tempfile.mkdtemp(prefix="pwgpg", dir="/tmp"))
    home.chmod(0o700)
    keys = []
    for uid in ("CSAF Test Provider <csaf@provider.example>", "Mallory <mallory@evil.example>"):
        _gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "1d")
        listing = _gpg(home, "--with-colons", "--list-keys", uid).decode()
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        keys.append(GpgKey(home, fpr, _gpg(home, "--armor", "--export", fpr)))
    try:
        yield keys[0], keys[1]
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)
