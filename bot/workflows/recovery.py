"""Deployments interrupted by a crash or restart: found, the owner asked, nothing guessed.

A run lives in one process's memory; if that process dies (``kill -9``, OOM, a lost host), its rows stay
"running". While it lives, its owner renews a heartbeat on them (``workflows.heartbeat``), so
:func:`mark_silent` finds a dead owner within ``policy.heartbeat_timeout``:

1. the run's rows move to ``interrupted`` by compare-and-set (one replica wins); its systems stay locked,
   because the outcome is unknown: the orphaned apply may have finished, or may still be running;
2. an orphaned executor process group on this host is stopped (``executors.processes.stop_orphan``, which
   checks that every member belongs to the run), or it is said why it could not be;
3. the control log records it, and the question to the owner ("did it complete?" with Completed /
   Failed - roll back / Retry) is queued in the outbox in the same transaction, so a crash now cannot
   lose it. The decision is ``workflows.interrupted``.

Runs from before heartbeats existed (``heartbeat_at`` empty) are judged as before by :func:`close_interrupted`:
every executor step is bounded by its timeout, so a run older than the sum of its steps' timeouts plus a
grace period cannot still be running anywhere; such a run is closed as failed and its systems unlocked.
``close_interrupted`` also records the runs ``serve`` cut off itself at shutdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks import deployment as deployment_blocks
from bot.blocks.common import escape, mentions, slack_date
from bot.config import Config
from bot.errors import ConflictError, IllegalTransitionError
from bot.executors.base import Step
from bot.executors.registry import Executors
from bot.slack import thread
from bot.workflows import lifecycle
from storage import deployments
from storage.models import Change, ChangeState, Deployment, DeploymentStatus, Stage

GRACE = timedelta(minutes=5)
ABANDONED_AT = {
    "test": {ChangeState.TEST_DEPLOYING: ChangeState.TEST_FAILED, ChangeState.TEST_VERIFYING: ChangeState.TEST_FAILED},
    "prod": {ChangeState.PROD_DEPLOYING: ChangeState.FAILED, ChangeState.PROD_VERIFYING: ChangeState.FAILED},
}


@dataclass(frozen=True)
class Interrupted:
    deployment: Deployment
    change: Change
    moved_to: ChangeState | None


def longest_run(executors: Executors, system: str, stage: Stage) -> timedelta:
    """The longest a run of ``stage`` on ``system`` can legitimately take: apply + verify + rollback + grace."""
    try:
        executor = executors.get(system, stage)
    except Exception:  # the environment was removed from the configuration since: any old run is dead
        return GRACE
    return sum((executor.timeout_for(s) for s in (Step.APPLY, Step.VERIFY, Step.ROLLBACK)), GRACE)


async def close_interrupted(
    session: AsyncSession, *, config: Config, executors: Executors, now: datetime, ids: Sequence[int] | None = None
) -> list[Interrupted]:
    """Close every run that cannot be alive any more. Safe to run on every replica at once (compare-and-set).

    ``ids``: runs this process itself cut off while shutting down (``serve`` on SIGTERM, after its grace
    period): they are known dead, so they are closed now, whatever their age."""
    out = []
    if ids is not None:
        unfinished = (DeploymentStatus.RUNNING, DeploymentStatus.VERIFYING, DeploymentStatus.ROLLING_BACK)
        candidates = [d for d in await deployments.by_ids(session, ids) if d.status in unfinished]
    else:
        candidates = await deployments.unfinished_before(session, started_before=now - GRACE)
    for dep in candidates:
        if ids is None and now - dep.started_at < longest_run(executors, dep.system, dep.stage):
            continue
        if not await deployments.set_status(
            session, dep.id, expected=[dep.status], new=DeploymentStatus.FAILED, finished_at=now
        ):
            continue  # another replica closed it
        await deployments.release_locks(session, [dep.id])
        change = await lifecycle.load(session, dep.change_id, lock=True)
        target = ABANDONED_AT.get(dep.stage, {}).get(change.state)
        moved: ChangeState | None = None
        if target is not None:
            try:
                await lifecycle.transition(
                    session,
                    config=config,
                    change=change,
                    to=target,
                    actor="patchwarden",
                    now=now,
                    reason=f"the {dep.stage} deployment on {dep.system} was interrupted (the bot stopped)",
                )
                moved = target
            except (ConflictError, IllegalTransitionError):
                moved = None
        await lifecycle.log(
            session,
            config=config,
            now=now,
            actor="patchwarden",
            action="deployment_interrupted",
            change=change,
            stage=dep.stage,
            system=dep.system,
            run_id=dep.run_id,
            was=dep.status.value,
        )
        out.append(Interrupted(dep, change, moved))
    return out


async def silent(session: AsyncSession, *, config: Config, now: datetime, live: Sequence[int]) -> list[Deployment]:
    """Unfinished runs whose heartbeat is older than ``policy.heartbeat_timeout``, except this process's own
    live runs (``live``: a run this process still runs is alive, whatever its clock says)."""
    rows = await deployments.silent_since(session, before=now - config.policy.heartbeat_timeout)
    return [d for d in rows if d.id not in set(live)]


async def mark_interrupted(
    session: AsyncSession, *, config: Config, dep: Deployment, now: datetime, stopped: str
) -> Change | None:
    """Move a silent run to ``interrupted`` (its system stays locked), log it and queue the question to its
    owner in the same transaction; None when another replica (or the run itself) got there first."""
    if not await deployments.set_status(session, dep.id, expected=[dep.status], new=DeploymentStatus.INTERRUPTED):
        return None
    change = await lifecycle.load(session, dep.change_id, lock=True)
    step = dep.step or "apply (before it started)"
    beat = dep.heartbeat_at or dep.started_at
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor="patchwarden",
        action="deployment_interrupted",
        change=change,
        stage=dep.stage,
        system=dep.system,
        run_id=dep.run_id,
        was=dep.status.value,
        step=step,
        owner=dep.owner,
        started=dep.started_at.isoformat(),
        last_heartbeat=beat.isoformat(),
        orphan=stopped,
        next="owner decides: completed, failed (roll back) or retry",
    )
    who = mentions(sorted({config.systems[s].owner for s in change.systems if s in config.systems}))
    text = (
        f":warning: The run of {change.key} on `{escape(dep.system)}` ({dep.stage}) was interrupted at step "
        f"*{escape(step)}* (started {slack_date(dep.started_at)}, last heartbeat {slack_date(beat)}): the bot "
        f"process that ran it ({escape(dep.owner or 'unknown')}) stopped. Executor: {escape(stopped)}. "
        f"`{escape(dep.system)}` stays locked. {who} did it complete?"
    )
    await thread.say_later(
        session,
        config=config,
        change=change,
        key=f"interrupted:{dep.run_id}:{step}:{beat.isoformat()}",  # a retried run interrupted again: asked again
        text=text,
        now=now,
        blocks=deployment_blocks.interrupted_blocks(
            change_id=change.id, change_key=change.key, stage=dep.stage, text=text
        ),
    )
    return change
