"""Which process owns a run, and stopping an orphaned executor process group after the owner died.

A run records its owner (``host:pid``) and the executor's local process group (shell, ansible). When the
owner is killed (``kill -9``, OOM) the group lives on as an orphan and would finish the step unobserved.
A recovery on the same host stops it, but only after checking, for each member, that it really belongs to
that run (its environment carries ``PATCHWARDEN_RUN_ID=<run id>``, or it is an ansible process): a stale or
reused pgid can never make the bot kill a stranger, nor its own group.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil

KILL_WAIT = 3.0  # seconds to wait for a group to disappear after SIGKILL


def owner_id() -> str:
    """This process as a run owner: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def host_of(owner: str | None) -> str:
    """The host part of an owner id ("" when unknown)."""
    return (owner or "").rpartition(":")[0]


def _members(pgid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                out.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


def _belongs(proc: psutil.Process, run_id: str) -> bool:
    try:
        if proc.environ().get("PATCHWARDEN_RUN_ID") == run_id:
            return True
        return any("ansible" in part for part in proc.cmdline()[:2])
    except (psutil.Error, OSError):
        return False


def stop_orphan(*, owner: str | None, pgid: int | None, run_id: str) -> str:
    """Stop the run's orphaned process group if it is on this host and still alive; says what was done."""
    if pgid is None:
        return "no executor process was running"
    if host_of(owner) != socket.gethostname():
        return f"its process group {pgid} ran on {host_of(owner) or 'an unknown host'}; it cannot be stopped from here"
    if pgid in (os.getpgrp(), os.getpid()):
        return f"process group {pgid} is the bot's own now; nothing was stopped"
    members = _members(pgid)
    if not members:
        return f"its process group {pgid} had already ended"
    if not all(_belongs(p, run_id) for p in members):
        return f"process group {pgid} is alive but does not belong to this run; it was left alone"
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return f"its process group {pgid} had already ended"
    except PermissionError:
        return f"its process group {pgid} is still running and may not be stopped by the bot"
    deadline = time.monotonic() + KILL_WAIT
    while _alive(members) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(members):
        return f"its process group {pgid} was sent SIGKILL but is still there"
    return f"its orphaned process group {pgid} ({len(members)} process(es)) was stopped"


def _alive(members: list[psutil.Process]) -> bool:
    for proc in members:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False
