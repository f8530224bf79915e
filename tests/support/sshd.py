"""A throw-away OpenSSH server on a loopback port, trusting one user CA (Debian's openssh-server).

The test starts it as it starts PostgreSQL: its own host key, config and pid file in a temporary folder,
certificate logins only, principals mapped per account by ``AuthorizedPrincipalsFile``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sshd:
    """A running sshd; ``login`` tries a certificate login and returns ssh's exit code and stderr."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    def login(self, *, key: Path, cert: Path, user: str) -> tuple[int, str]:
        """``ssh user@127.0.0.1 true`` with exactly this key and certificate, nothing else."""
        done = subprocess.run(
            [
                "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(key), "-o", f"CertificateFile={cert}",
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
                f"{user}@127.0.0.1", "true",
            ],
            capture_output=True,
            timeout=20,
            check=False,
        )  # fmt: skip
        return done.returncode, done.stderr.decode(errors="replace")


def start_sshd(folder: Path, *, ca_public: bytes, principals: dict[str, list[str]]) -> Sshd:
    """Start sshd trusting ``ca_public``; ``principals`` maps each account to the principals it accepts."""
    if not os.path.exists(SSHD):
        pytest.fail("sshd is not installed: apt-get install openssh-server (.ci/run does it)")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    host_key = folder / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    (folder / "ca.pub").write_bytes(ca_public + b"\n")
    (folder / "principals").mkdir(mode=0o755)
    for user, names in principals.items():
        (folder / "principals" / user).write_text("".join(n + "\n" for n in names))
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {folder}/sshd.pid
TrustedUserCAKeys {folder}/ca.pub
AuthorizedPrincipalsFile {folder}/principals/%u
AuthorizedKeysFile none
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel VERBOSE
"""
    )
    log = (folder / "sshd.log").open("wb")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:  # poll until it accepts connections (no fixed sleep)
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("sshd did not start listening within 10 s") from None
            time.sleep(0.02)
    return Sshd(port=port, folder=folder, process=process)


@pytest.fixture
def sshd_factory(tmp_path: Path) -> Iterator[list[Sshd]]:
    """Servers started by a test, stopped at its end."""
    started: list[Sshd] = []
    yield started
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.process.kill()
