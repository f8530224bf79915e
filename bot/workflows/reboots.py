"""Reboots after a patch: what the executor reported, what the environment's ``reboot`` policy makes of it.

The executor's apply result says whether a target needs a reboot (``reboot_required``) or was restarted by
the step itself (``rebooted``); see the shell and Ansible executors' docstrings for how a step says so.
Per environment:

* ``if_required`` (default): a reboot is required when the executor says so;
* ``always``: a reboot is required after every apply;
* ``never``: a required reboot is recorded and said, never scheduled.

With ``reboot_window`` (an RRULE in the system's zone) a required reboot that was not done is scheduled at
the window's next occurrence. The record is ``{required, done, scheduled}`` on the deployment row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.blocks.common import escape
from bot.config import Config, Reboot
from bot.executors.base import StepResult
from bot.workflows import deployment as flow
from bot.workflows.steps import Sink
from storage import deployments


def next_reboot(rule: str, *, after: datetime, zone: str) -> datetime | None:
    """The next occurrence of ``rule`` after ``after`` (aware, in ``zone``), or None when it has ended."""
    local = after.astimezone(ZoneInfo(zone)).replace(second=0, microsecond=0)
    found = rrulestr(rule, dtstart=local).after(local)
    return found if isinstance(found, datetime) else None


def record(config: Config, *, system: str, stage: str, applied: StepResult, now: datetime) -> dict[str, Any]:
    """``{required, done, scheduled}`` for one deployment after its apply."""
    entry = config.systems[system]
    env = entry.environments[stage]
    required = applied.ok and (applied.reboot_required or env.reboot is Reboot.ALWAYS) and not applied.rebooted
    scheduled = None
    if required and env.reboot is not Reboot.NEVER and env.reboot_window:
        at = next_reboot(env.reboot_window, after=now, zone=entry.timezone)
        scheduled = at.isoformat() if at is not None else None
    return {"required": required or applied.rebooted, "done": applied.rebooted, "scheduled": scheduled}


def line(config: Config, *, system: str, stage: str, rec: dict[str, Any]) -> str:
    """The thread line for a deployment's reboot ("" when none is needed)."""
    if not rec["required"]:
        return ""
    name = f"`{escape(system)}`"
    if rec["done"]:
        return f":repeat: {name}: the machine restarted during the patch."
    policy = config.systems[system].environments[stage].reboot
    if policy is Reboot.NEVER:
        return f":warning: {name} needs a reboot; the policy says `reboot: never`, so a person must restart it."
    if rec["scheduled"]:
        return f":calendar: {name} needs a reboot: scheduled for {rec['scheduled']} (reboot_window)."
    return f":warning: {name} needs a reboot (the machine restarts); no `reboot_window` is configured for it."


async def keep(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    sink: Sink,
    run: flow.Run,
    applied: Mapping[int, StepResult],
    now: datetime,
) -> None:
    """Record each deployment's reboot on its row and say the ones that need attention in the thread (a
    reboot an earlier attempt of the same run asked for is kept)."""
    lines = []
    async with sessions.begin() as session:
        before = {d.id: d.reboot for d in await deployments.get_many(session, run.ids)}
        for t in run.targets:
            if t.deployment_id not in applied:
                continue
            rec = record(config, system=t.system, stage=run.stage, applied=applied[t.deployment_id], now=now)
            old = before.get(t.deployment_id) or {}
            if old.get("required") and not rec["required"]:  # a retried rollout: earlier rings needed one
                rec = old
            await deployments.set_fields(session, t.deployment_id, reboot=rec)
            lines.append(line(config, system=t.system, stage=run.stage, rec=rec))
    for text in filter(None, lines):
        await sink.post(text)
