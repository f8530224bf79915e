"""The ``ssh-cert`` provider, checked by OpenSSH itself: ``ssh-keygen -L`` and a real sshd on loopback."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support.sshd import Sshd, start_sshd

from bot.credentials.base import Credential, CredentialProvider, CredentialRequest, ProviderOptions
from bot.credentials.ssh_cert import SshCertProvider
from bot.errors import ConfigError, CredentialError

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def ca_key(tmp_path: Path) -> Path:
    path = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "patchwarden-ca", "-f", str(path)], check=True)
    return path


def provider(ca_key: Path, **extra: Any) -> SshCertProvider:
    return SshCertProvider({"ca_key_file": str(ca_key), "login": "deploy", **extra}, key_path="credentials")


def request(
    tmp_path: Path, *targets: str, now: datetime = NOW, valid_for: timedelta = timedelta(hours=1)
) -> CredentialRequest:
    run_dir = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    run_dir.mkdir(mode=0o700)
    return CredentialRequest(
        change_key="CHG-12", run_id="r7", system="web-shop", stage="prod", targets=targets,
        now=now, valid_before=now + valid_for, run_dir=run_dir,
    )  # fmt: skip


def exists(path: str) -> bool:
    return Path(path).exists()


def ca_public_of(ca_key: Path) -> bytes:
    return ca_key.with_suffix(".pub").read_bytes().strip()


def keygen_listing(cert: str) -> str:
    return subprocess.run(["ssh-keygen", "-L", "-f", cert], capture_output=True, text=True, check=True).stdout


async def test_certificate_shows_principals_validity_key_id_and_force_command(ca_key: Path, tmp_path: Path) -> None:
    p = provider(ca_key, force_command="/usr/local/sbin/patch-run")
    cred = await p.issue(request(tmp_path, "web-02", "web-01"))
    listing = keygen_listing(cred.env["PATCHWARDEN_SSH_CERT"])
    principals = listing.split("Principals:")[1].split("Critical Options:")[0].split()
    assert principals == ["deploy@web-01", "deploy@web-02"]
    local = lambda t: datetime.fromtimestamp(t.timestamp()).strftime("%Y-%m-%dT%H:%M:%S")  # noqa: E731
    assert f"Valid: from {local(NOW - timedelta(minutes=1))} to {local(NOW + timedelta(hours=1))}" in listing
    assert 'Key ID: "patchwarden:CHG-12:r7"' in listing
    assert f"Serial: {cred.serial}" in listing
    assert "force-command /usr/local/sbin/patch-run" in listing
    assert "user certificate" in listing
    assert "permit-agent-forwarding" not in listing and "permit-port-forwarding" not in listing
    assert cred.record() == {
        "provider": "ssh-cert", "key_id": "patchwarden:CHG-12:r7", "serial": cred.serial,
        "valid_before": (NOW + timedelta(hours=1)).isoformat(),
    }  # fmt: skip


async def test_private_files_are_owner_only_and_gone_after_revoke(ca_key: Path, tmp_path: Path) -> None:
    p = provider(ca_key)
    cred = await p.issue(request(tmp_path, "web-01"))
    files = [cred.env["PATCHWARDEN_SSH_KEY"], cred.env["PATCHWARDEN_SSH_CERT"]]
    assert [stat.S_IMODE(os.stat(f).st_mode) for f in files] == [0o600, 0o600]
    await p.revoke(cred)
    await p.revoke(cred)  # idempotent
    assert not any(map(exists, files))


async def test_sshd_accepts_the_certificate_inside_its_validity_only_for_its_principal(
    ca_key: Path, tmp_path: Path, sshd_factory: list[Sshd]
) -> None:
    user = pwd.getpwuid(os.getuid()).pw_name
    ca_public = ca_public_of(ca_key)
    server = start_sshd(tmp_path / "sshd", ca_public=ca_public, principals={user: ["deploy@web-01"]})
    sshd_factory.append(server)
    p = provider(ca_key)

    def login(cred: Credential) -> tuple[int, str]:
        return server.login(
            key=Path(cred.env["PATCHWARDEN_SSH_KEY"]), cert=Path(cred.env["PATCHWARDEN_SSH_CERT"]), user=user
        )

    good = await p.issue(request(tmp_path, "web-01"))
    assert login(good) == (0, ""), (server.folder / "sshd.log").read_text()[-2000:]

    other = await p.issue(request(tmp_path, "web-02"))  # a valid certificate, for another principal
    code, err = login(other)
    assert code == 255 and "Permission denied" in err

    past = NOW - timedelta(hours=2)
    expired = await p.issue(request(tmp_path, "web-01", now=past, valid_for=timedelta(minutes=30)))
    code, err = login(expired)
    assert code == 255 and "Permission denied" in err
    log = (server.folder / "sshd.log").read_text()
    assert "patchwarden:CHG-12:r7" in log  # sshd logs the key id: every login ties back to the change


async def test_a_world_readable_ca_key_or_bad_login_stops_startup(ca_key: Path) -> None:
    os.chmod(ca_key, 0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        provider(ca_key)
    os.chmod(ca_key, 0o600)
    with pytest.raises(ConfigError, match=r"credentials\.login"):
        provider(ca_key, login="root; rm -rf /")
    with pytest.raises(ConfigError, match=r"credentials\.principal_format"):
        provider(ca_key, principal_format="{nope}")
    with pytest.raises(ConfigError, match=r"credentials\.extra"):
        provider(ca_key, extra=1)


async def test_a_run_without_targets_gets_nothing(ca_key: Path, tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="needs the run's targets"):
        await provider(ca_key).issue(request(tmp_path))


class _Overshooting(CredentialProvider[ProviderOptions]):
    """A provider that hands out a credential outliving the window (what the base class must refuse)."""

    name = "overshoot"
    revoked: ClassVar[list[str]] = []

    async def _issue(self, request: CredentialRequest) -> Credential:
        return Credential(
            provider=self.name, key_id="k", serial="1", valid_before=request.valid_before + timedelta(days=1)
        )

    async def _revoke(self, credential: Credential) -> None:
        self.revoked.append(credential.key_id)


async def test_a_credential_outliving_the_window_is_refused_and_revoked(tmp_path: Path) -> None:
    p = _Overshooting({})
    with pytest.raises(CredentialError, match="outlive the window"):
        await p.issue(request(tmp_path, "web-01"))
    assert p.revoked == ["k"]
