"""A real ``patchwarden serve`` in a process of its own, against the test's fake Slack: to kill it with SIGKILL.

``BotProcess.start`` runs ``python -m bot serve`` (or forks it from a preloaded zygote, ``tests/bot_zygote.py``,
so the chaos test can restart it dozens of times without paying the interpreter's import time each time)
and waits until it listens; ``kill`` sends SIGKILL. Its output goes to a log file in the test's folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import yaml
from conftest import BASE_CONFIG, REPO, SECRET, TOKEN, _merge

from bot.sandbox.fake_slack import FakeSlack

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
START_WITHIN = 90.0  # seconds: a loaded 2-core machine imports the bot slowly


def write_config(folder: Path, **overrides: Any) -> Path:
    """The test configuration (``conftest.BASE_CONFIG`` deep-merged with ``overrides``) as a YAML file."""
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    _merge(data, overrides)
    path = folder / "patchwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def bot_env(*, database_url: str, config: Path, fake: FakeSlack, folder: Path, **extra: str) -> dict[str, str]:
    """The environment of the bot process: the database, the config, the fake Slack, a key file here."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PATCHWARDEN_")) and "PROXY" not in k}
    return keep | {
        "PYTHONUNBUFFERED": "1",
        "PATCHWARDEN_DATABASE_URL": database_url,
        "PATCHWARDEN_CONFIG": str(config),
        "PATCHWARDEN_AUDIT_KEY_FILE": str(folder / "audit.key"),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.url + "/api/",
        **extra,
    }


class Zygote:
    """A preloaded interpreter that forks bot processes on request (see ``tests/bot_zygote.py``)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> Zygote:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "tests" / "bot_zygote.py"),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        zygote = cls(proc)
        assert await zygote._line() == "ready"
        return zygote

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), START_WITHIN)
        return line.decode().strip()

    async def fork(self, env: dict[str, str], log: Path, args: list[str], intervals: dict[str, float]) -> int:
        """A new bot process running ``patchwarden *args`` with ``env``; returns its pid."""
        assert self.proc.stdin is not None
        request = {"env": env, "log": str(log), "args": args, "intervals": intervals}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()
        return int(await self._line())

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class BotProcess:
    """One bot at a time: ``start`` (again after ``kill``), ``kill`` with SIGKILL, ``stop`` at the end."""

    def __init__(
        self,
        env: dict[str, str],
        folder: Path,
        *,
        zygote: Zygote | None = None,
        intervals: dict[str, float] | None = None,
    ) -> None:
        self.env, self.folder, self.zygote, self.intervals = env, folder, zygote, intervals or {}
        self.pid: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.log = folder / "bot.log"

    async def start(self) -> str:
        """Start the bot and wait until it listens; returns its ``/slack/events`` URL."""
        self.starts += 1
        marker = f"===== start {self.starts} =====\n"
        with self.log.open("a") as f:
            f.write(marker)
        args = ["serve", "--host", "127.0.0.1", "--port", str(free_port())]
        if self.zygote is not None:
            self.pid = await self.zygote.fork(self.env, self.log, args, self.intervals)
        else:
            out = self.log.open("a")
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", *args, cwd=REPO, env=self.env, stdout=out, stderr=out
            )
            out.close()
            self.pid = self.proc.pid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_WITHIN
        while True:
            text = self.log.read_text(errors="replace")
            found = LISTENING.findall(text[text.rindex(marker) :])
            if found:
                return f"http://127.0.0.1:{found[-1]}/slack/events"
            if not self.alive():
                raise AssertionError(f"the bot exited while starting:\n{text[-3000:]}")
            assert loop.time() < deadline, f"the bot did not start within {START_WITHIN} s:\n{text[-3000:]}"
            await asyncio.sleep(0.02)

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self.proc is not None:
            return self.proc.returncode is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return not _zombie(self.pid)

    async def kill(self) -> None:
        """SIGKILL the bot (as ``kill -9`` would) and wait until it is gone."""
        assert self.pid is not None
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            raise AssertionError(f"the bot {self.pid} had ended by itself; see {self.log}") from None
        if self.proc is not None:
            await self.proc.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while self.alive():
            assert loop.time() < deadline, "the killed bot is still there"
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.alive():
            await self.kill()


def free_port() -> int:
    """A loopback port nobody listens on now (``serve`` prints the port it was given, not the bound one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan reparented to an init that does not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return _zombie(pid)
