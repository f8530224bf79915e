"""Deployments interrupted by a crash or restart: found, closed as failed, locks released, said in the thread.

A run lives in one process's memory; if that process dies, its row stays "running" and its systems stay
locked. No heartbeat is needed to tell a dead run from a live one: every executor step is bounded by its
timeout (enforced by the executor base class), so a run older than the sum of its steps' timeouts plus a
grace period cannot still be running anywhere, on any replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.errors import ConflictError, IllegalTransitionError
from bot.executors.base import Step
from bot.executors.registry import Executors
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
