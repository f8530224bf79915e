"""``ssh-cert``: an OpenSSH user certificate per run, signed by a CA key patchwarden holds.

Configuration, per environment::

    credentials:
      provider: ssh-cert
      ca_key_file: /etc/patchwarden/ssh_ca      # Ed25519, mode 0600
      login: deploy                             # principal is "<login>@<target>" unless principal_format says
      principal_format: "{login}@{target}"
      force_command: /usr/local/sbin/patch-run  # optional

Each target host maps the principal to an account (``AuthorizedPrincipalsFile``) and trusts the CA
(``TrustedUserCAKeys``). The run's private key and certificate are written into the run directory
(``PATCHWARDEN_SSH_KEY``, ``PATCHWARDEN_SSH_CERT``) and deleted when the run ends; the certificate expires
at the window's end whatever happens to the files.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import field_validator

from bot.credentials.base import Credential, CredentialProvider, CredentialRequest, ProviderOptions
from bot.crypto import ssh
from bot.errors import CredentialError

_LOGIN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class SshCertOptions(ProviderOptions):
    """Options of the ``ssh-cert`` provider."""

    ca_key_file: Path
    login: str
    principal_format: str = "{login}@{target}"
    force_command: str | None = None

    @field_validator("login")
    @classmethod
    def _login(cls, value: str) -> str:
        if not _LOGIN.fullmatch(value):
            raise ValueError(f"{value!r} is not a POSIX login name")
        return value

    @field_validator("principal_format")
    @classmethod
    def _format(cls, value: str) -> str:
        try:
            value.format(login="x", target="y")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError("principal_format may use {login} and {target} only") from exc
        return value


class SshCertProvider(CredentialProvider[SshCertOptions]):
    """Signs a fresh key per run; principals are the run's targets' logins and nothing else."""

    name = "ssh-cert"
    Options = SshCertOptions

    def _check(self) -> None:
        self._ca = ssh.load_ca_key(self.options.ca_key_file)

    def principals(self, targets: tuple[str, ...]) -> tuple[str, ...]:
        """The principals a run on ``targets`` gets."""
        fmt, login = self.options.principal_format, self.options.login
        return tuple(sorted({fmt.format(login=login, target=t) for t in targets}))

    async def _issue(self, request: CredentialRequest) -> Credential:
        if not request.targets:
            raise CredentialError(f"{request.system} {request.stage}: ssh-cert needs the run's targets")
        key_id = f"patchwarden:{request.change_key}:{request.run_id}"
        cert = ssh.issue_user_certificate(
            self._ca,
            principals=self.principals(request.targets),
            key_id=key_id,
            now=request.now,
            valid_before=request.valid_before,
            force_command=self.options.force_command,
        )
        folder = request.run_dir / "ssh"
        folder.mkdir(mode=0o700, exist_ok=False)
        key_path, cert_path = folder / "id_ed25519", folder / "id_ed25519-cert.pub"
        ssh.write_private(key_path, cert.private_key)
        ssh.write_private(cert_path, cert.certificate)
        return Credential(
            provider=self.name,
            key_id=key_id,
            serial=str(cert.serial),
            valid_before=cert.valid_before,
            env={"PATCHWARDEN_SSH_KEY": str(key_path), "PATCHWARDEN_SSH_CERT": str(cert_path)},
        )

    async def _revoke(self, credential: Credential) -> None:
        _remove(credential.env.get(var) for var in ("PATCHWARDEN_SSH_KEY", "PATCHWARDEN_SSH_CERT"))


def _remove(paths: Iterable[str | None]) -> None:
    for path in paths:
        if path:
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()
