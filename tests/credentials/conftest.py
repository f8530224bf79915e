"""Fixtures of the credential tests: a real sshd on loopback."""

from support.sshd import sshd_factory

__all__ = ["sshd_factory"]
