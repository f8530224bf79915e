"""Copies of the control log outside the database: the witness file and URL, NDJSON and syslog streams.

What is written here is what an attacker with write access to the database cannot change afterwards. Each
sink takes plain JSON objects; verification of what comes back is the audit workflow's job.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bot.errors import ConfigError

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=10)


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def append_file(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append JSON lines with ``O_APPEND`` and fsync (the file may be on a separate, append-only mount)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, "".join(_line(r) + "\n" for r in records).encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: Path) -> list[dict[str, Any]]:
    """Every JSON object in a witness file (blank lines skipped); raises ``ConfigError`` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read witness file {path}: {type(exc).__name__}") from exc
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise ConfigError(f"witness file {path} line {n} is not JSON") from exc
    return out


async def post_ndjson(http: aiohttp.ClientSession, url: str, records: Sequence[dict[str, Any]]) -> None:
    """POST records as NDJSON; raises ``aiohttp.ClientError`` unless the receiver answers 2xx."""
    body = "".join(_line(r) + "\n" for r in records).encode()
    async with http.post(
        url, data=body, headers={"Content-Type": "application/x-ndjson"}, timeout=TIMEOUT, allow_redirects=False
    ) as resp:
        resp.raise_for_status()


class Rfc5424Formatter(logging.Formatter):
    """``VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`` (RFC 5424; the handler adds ``<PRI>``)."""

    def __init__(self, app_name: str = "patchwarden", msgid: str = "audit") -> None:
        super().__init__()
        self.hostname = socket.gethostname() or "-"
        self.app_name, self.msgid = app_name, msgid

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return f"1 {stamp} {self.hostname} {self.app_name} {os.getpid()} {self.msgid} - {record.getMessage()}"


class SyslogSink:
    """Sends each record as one RFC 5424 message (UDP) through the stdlib ``SysLogHandler``."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"audit.stream.syslog must be host:port, not {address!r}")
        self.handler = logging.handlers.SysLogHandler(
            address=(host, int(port)), facility=logging.handlers.SysLogHandler.LOG_AUTH, socktype=socket.SOCK_DGRAM
        )
        self.handler.append_nul = False
        self.handler.setFormatter(Rfc5424Formatter())

    def send(self, records: Sequence[dict[str, Any]]) -> None:
        """Emit one message per record; ``SysLogHandler`` reports send errors through ``handleError``."""
        for r in records:
            self.handler.emit(logging.LogRecord("patchwarden.audit", logging.INFO, __file__, 0, _line(r), None, None))

    def close(self) -> None:
        self.handler.close()
