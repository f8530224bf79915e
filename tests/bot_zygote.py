"""Forks ``patchwarden`` processes from one preloaded interpreter (for ``tests/bot_process.Zygote``).

Importing the bot takes seconds on a loaded machine; a fork of an interpreter that already imported it
starts in milliseconds, so the chaos test can kill and restart the bot 30+ times per backend. Protocol:
one JSON line per fork on stdin (``{"env": {...}, "log": path, "args": [...], "intervals": {...}}``), the
child's pid on stdout. ``intervals`` shortens the jobs' timing constants (``{"bot.jobs.OUTBOX_EVERY": 0.3}``,
seconds) so a test sees in seconds what production does in a minute; nothing else of the bot is changed.
The child is the real command line (``bot.__main__.cli``), in a fresh environment, with no event loop
inherited (none runs here). Children are reaped as they die.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bot, as `python -m bot` from it

import bot.__main__ as entry
import bot.app
import bot.cli.serve
import bot.jobs
import bot.scheduler  # noqa: F401


def _reap(*_: object) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            print(f"zygote: bot {pid} ended by itself ({status})", file=sys.stderr, flush=True)


def main() -> None:
    signal.signal(signal.SIGCHLD, _reap)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.environ.clear()
            os.environ.update(request["env"])
            fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            for name, seconds in request.get("intervals", {}).items():
                module, _, constant = name.rpartition(".")
                assert isinstance(getattr(importlib.import_module(module), constant), timedelta), name
                setattr(importlib.import_module(module), constant, timedelta(seconds=seconds))
            try:
                entry.cli.main(args=request["args"], prog_name="patchwarden", standalone_mode=True)
            finally:
                os._exit(0)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
