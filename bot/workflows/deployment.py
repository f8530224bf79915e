"""Starting and finishing deployments: the checks, the locks, the state moves and the control log.

Each function here runs inside the caller's transaction and never talks to an executor or to Slack: the
runner (bot.workflows.runner) calls them between executor steps, one short transaction each.

Starting a deployment (``start``) refuses, with the specific reason, and logs the refusal, when:

1. the person is not an operator (the scheduler's own runs are exempt: the window was approved and booked);
2. the stage is not approved (state ``approved_for_<stage>`` or ``<stage>_scheduled``); production states
   only exist after the owner acknowledged the test result, so this also enforces test-before-prod;
3. it is outside the stage's booked window, unless ``--now`` is given on an emergency change with a
   reason (the bypass is logged);
4. another deployment holds one of the change's systems (a ``SystemLock`` row per system).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.executors.base import StepResult
from bot.views import state_label
from bot.workflows import lifecycle
from storage import deployments, windows
from storage.models import (
    APPROVED,
    DEPLOYING,
    PENDING_APPROVAL,
    SCHEDULED,
    VERIFYING,
    Change,
    ChangeClass,
    ChangeState,
    Deployment,
    DeploymentStatus,
    Stage,
    Window,
    WindowState,
    stage_of,
)

SCHEDULER = "patchwarden"  # the actor of runs the due-window sweep starts
S = DeploymentStatus
ROLLABLE = (S.RUNNING, S.VERIFYING, S.VERIFY_FAILED, S.FAILED, S.INTERRUPTED)  # a rollback may start from these


@dataclass(frozen=True)
class Target:
    """One system's deployment inside a run."""

    deployment_id: int
    run_id: str
    system: str
    executor: str


@dataclass(frozen=True)
class Run:
    """One deployment of one stage of a change: one ``Target`` per affected system."""

    change: Change
    stage: Stage
    targets: tuple[Target, ...]
    window_id: int | None
    actor: str

    @property
    def ids(self) -> list[int]:
        """The deployment row ids."""
        return [t.deployment_id for t in self.targets]


@dataclass(frozen=True)
class StartResult:
    """Either a started run or the reason it was refused (already logged)."""

    run: Run | None
    refusal: str = ""


def is_operator(config: Config, user: str) -> bool:
    """Members of the ``policy.operators`` group may deploy."""
    return user in config.group(config.policy.operators)


def owners(config: Config, change: Change) -> frozenset[str]:
    """The owners of the change's systems: they record results and decide on failed verifications."""
    return frozenset(config.systems[s].owner for s in change.systems if s in config.systems)


def _state_refusal(change: Change, stage: Stage) -> str:
    state = state_label(change.state)
    if change.state in (DEPLOYING[stage], VERIFYING[stage]):
        return f"{change.key} is already being deployed to {stage} (it is *{state}*)."
    if stage == "prod" and stage_of(change.state) == "test":
        return (
            f"{change.key} cannot go to production yet: the test stage must be deployed, its result recorded "
            f"and acknowledged by the owner, and production approved (it is *{state}*)."
        )
    if change.state is PENDING_APPROVAL[stage]:
        return f"{change.key} is not approved for {stage} yet (it is *{state}*)."
    return f"{change.key} is *{state}*: a {stage} deployment needs it approved for {stage}."


def _window_refusal(change: Change, stage: Stage, booked: Window | None, now: datetime) -> str:
    if booked is None:
        return f"{change.key} has no {stage} window booked. Book one with `/patch schedule {change.key} {stage}`" + (
            f", or deploy an emergency now with `/patch deploy {change.key} {stage} --now REASON`."
            if change.change_class is ChangeClass.EMERGENCY
            else "."
        )
    ts = int(booked.start.timestamp())
    fallback = f"{booked.start:%Y-%m-%d %H:%M} UTC"
    if booked.start > now:
        return (
            f"{change.key} is outside its booked {stage} window: it opens "
            f"<!date^{ts}^{{date_short_pretty}} {{time}}|{fallback}> and deploys by itself then."
        )
    return f"{change.key}'s {stage} window (from {fallback}) has ended; book a new one."


async def _refuse(
    session: AsyncSession, *, config: Config, change: Change | None, actor: str, now: datetime, stage: Stage, why: str
) -> StartResult:
    await lifecycle.log(
        session, config=config, now=now, actor=actor, action="deploy_refused", change=change, stage=stage, reason=why
    )
    return StartResult(None, why)


async def start(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    stage: Stage,
    actor: str,
    now: datetime,
    now_reason: str | None = None,
    window_id: int | None = None,
) -> StartResult:
    """Check every rule, lock the systems, create one Deployment per system and move to ``<stage>_deploying``.

    ``now_reason`` is the ``--now`` bypass (emergency changes only); ``window_id`` is a window the
    scheduler already claimed. A refusal is logged and returned, never raised, so the log entry commits.
    """
    change = await lifecycle.load(session, change_id, lock=True)
    # 1. who
    if actor != SCHEDULER and not is_operator(config, actor):
        why = f"Only members of the {config.policy.operators} group may deploy {change.key}."
        return await _refuse(session, config=config, change=change, actor=actor, now=now, stage=stage, why=why)
    # 2. which state
    if change.state not in (APPROVED[stage], SCHEDULED[stage]):
        why = _state_refusal(change, stage)
        return await _refuse(session, config=config, change=change, actor=actor, now=now, stage=stage, why=why)
    missing = [s for s in change.systems if stage not in config.systems[s].environments]
    if missing:
        why = f"{', '.join(missing)} has no {stage} environment configured, so there is nothing to deploy with."
        return await _refuse(session, config=config, change=change, actor=actor, now=now, stage=stage, why=why)
    # 3. when
    window = await windows.get(session, window_id) if window_id is not None else None
    if window is None:
        booked = await windows.active(session, change_id=change.id, stage=stage)
        if booked is not None and booked.start <= now < booked.end:
            window = booked
        elif now_reason is not None:
            if change.change_class is not ChangeClass.EMERGENCY:
                why = (
                    f"`--now` is only for emergency changes; {change.key} is a {change.change_class.value} "
                    f"change and deploys in its booked window."
                )
                return await _refuse(session, config=config, change=change, actor=actor, now=now, stage=stage, why=why)
            if not now_reason.strip():
                why = f"`--now` needs a reason: `/patch deploy {change.key} {stage} --now REASON`."
                return await _refuse(session, config=config, change=change, actor=actor, now=now, stage=stage, why=why)
            await lifecycle.log(
                session,
                config=config,
                now=now,
                actor=actor,
                action="window_bypassed",
                change=change,
                stage=stage,
                reason=now_reason.strip(),
            )
        else:
            why = _window_refusal(change, stage, booked, now)
            return await _refuse(session, config=config, change=change, actor=actor, now=now, stage=stage, why=why)
    # 4. exclusive use of every system (savepoint: a refusal leaves no deployment rows behind)
    targets: list[Target] = []
    try:
        async with session.begin_nested():
            for system in change.systems:
                executor = config.systems[system].environments[stage].executor
                row = await deployments.add(
                    session,
                    Deployment(
                        run_id=f"{change.key}-{stage}-{system}-{uuid.uuid4().hex[:10]}",
                        change_id=change.id,
                        window_id=window.id if window is not None else None,
                        stage=stage,
                        system=system,
                        executor=executor,
                        status=S.RUNNING,
                        started_by=actor,
                        started_at=now,
                        heartbeat_at=now,  # the runner's heartbeat renews it (workflows.heartbeat)
                        steps=[],
                        output="",
                        bypass_reason=now_reason.strip() if window is None and now_reason else None,
                    ),
                )
                if not await deployments.acquire_lock(session, system=system, deployment_id=row.id, now=now):
                    holder = await deployments.lock_holder(session, system)
                    raise _Busy(system, holder)
                targets.append(Target(row.id, row.run_id, system, executor))
    except _Busy as busy:
        other = f" (CHG-{busy.holder.change_id} {busy.holder.stage})" if busy.holder else ""
        why = f"Another deployment is running on {busy.system}{other}; try again when it has finished."
        return await _refuse(session, config=config, change=change, actor=actor, now=now, stage=stage, why=why)
    claimable = window is not None and window.state is WindowState.BOOKED
    if window is not None and claimable and not await windows.claim_window(session, window.id, owner=actor, now=now):
        raise _lost(change)
    await lifecycle.transition(
        session,
        config=config,
        change=change,
        to=DEPLOYING[stage],
        actor=actor,
        now=now,
        reason=f"{stage} deployment started",
    )
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=actor,
        action="deployment_started",
        change=change,
        stage=stage,
        window_id=window.id if window is not None else None,
        deployments=[
            {"id": t.deployment_id, "run_id": t.run_id, "system": t.system, "executor": t.executor} for t in targets
        ],
    )
    return StartResult(Run(change, stage, tuple(targets), window.id if window is not None else None, actor))


class _Busy(Exception):
    def __init__(self, system: str, holder: Deployment | None) -> None:
        super().__init__(system)
        self.system, self.holder = system, holder


def _lost(change: Change) -> Exception:
    from bot.errors import ConflictError

    return ConflictError(
        f"{change.key}: window claimed concurrently",
        user_message=f"{change.key}'s window was just started by someone else; look at its thread.",
    )


def step_record(result: StepResult) -> dict[str, Any]:
    """The JSON form of a step kept on the Deployment row (and shown by ``changes show --json``)."""
    return {
        "step": result.step.value,
        "ok": result.ok,
        "summary": result.summary,
        "timed_out": result.timed_out,
        "started": result.started.isoformat(),
        "finished": result.finished.isoformat(),
        "targets": [{"target": t.target, "status": t.status.value, "detail": t.detail} for t in result.targets],
    }


async def record(session: AsyncSession, *, target: Target, result: StepResult) -> None:
    """Store one step's result and output on its deployment."""
    await deployments.record_step(session, target.deployment_id, step=step_record(result), output=result.output)


async def load_run(
    session: AsyncSession, *, change_id: int, stage: Stage, statuses: frozenset[DeploymentStatus]
) -> Run | None:
    """Rebuild the run of ``stage`` from its deployment rows in ``statuses`` (for the Roll back / Keep buttons)."""
    change = await lifecycle.load(session, change_id, lock=True)
    rows = [d for d in await deployments.for_change(session, change_id, stage=stage) if d.status in statuses]
    if not rows:
        return None
    targets = tuple(Target(d.id, d.run_id, d.system, d.executor) for d in rows)
    return Run(change, stage, targets, rows[0].window_id, rows[0].started_by)


async def begin_verify(session: AsyncSession, *, config: Config, run: Run, now: datetime) -> None:
    """Apply succeeded everywhere: ``<stage>_verifying``."""
    change = await lifecycle.load(session, run.change.id, lock=True)
    for t in run.targets:
        await deployments.set_status(session, t.deployment_id, expected=[S.RUNNING], new=S.VERIFYING)
    await lifecycle.transition(
        session, config=config, change=change, to=VERIFYING[run.stage], actor=run.actor, now=now, reason="applied"
    )


async def _close(session: AsyncSession, *, run: Run, now: datetime) -> None:
    """Release the systems and finish the window."""
    await deployments.release_locks(session, run.ids)
    if run.window_id is not None:
        await windows.compare_and_set(session, run.window_id, expected=WindowState.STARTED, new=WindowState.DONE)


async def succeed(session: AsyncSession, *, config: Config, run: Run, now: datetime) -> Change:
    """Verify passed: test → ``test_passed`` (the owner records the result next), prod → ``completed``."""
    change = await lifecycle.load(session, run.change.id, lock=True)
    for t in run.targets:
        await deployments.set_status(session, t.deployment_id, expected=[S.VERIFYING], new=S.SUCCEEDED, finished_at=now)
    to = ChangeState.TEST_PASSED if run.stage == "test" else ChangeState.COMPLETED
    await lifecycle.transition(
        session, config=config, change=change, to=to, actor=run.actor, now=now, reason="verified"
    )
    await lifecycle.log(
        session, config=config, now=now, actor=run.actor, action="deployment_succeeded", change=change, stage=run.stage
    )
    await _close(session, run=run, now=now)
    return change


async def await_decision(session: AsyncSession, *, config: Config, run: Run, now: datetime, summary: str) -> Change:
    """Verify failed and the policy asks the owner: the systems stay locked until Roll back / Keep."""
    change = await lifecycle.load(session, run.change.id)
    for t in run.targets:
        await deployments.set_status(session, t.deployment_id, expected=[S.VERIFYING], new=S.VERIFY_FAILED)
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=run.actor,
        action="verify_failed",
        change=change,
        stage=run.stage,
        summary=summary,
        next="owner decides: roll back or keep",
    )
    return change


async def begin_rollback(
    session: AsyncSession, *, config: Config, run: Run, actor: str, now: datetime, reason: str
) -> bool:
    """Mark the run rolling back; False when another click or replica already decided."""
    moved = [
        await deployments.set_status(
            session, t.deployment_id, expected=[*ROLLABLE], new=S.ROLLING_BACK, heartbeat_at=now
        )
        for t in run.targets
    ]
    if not any(moved):
        return False
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=actor,
        action="rollback_started",
        change=run.change,
        stage=run.stage,
        reason=reason,
    )
    return True


async def finish_rollback(
    session: AsyncSession, *, config: Config, run: Run, now: datetime, ok: dict[int, bool], actor: str
) -> Change:
    """Rollback done: test → ``test_failed``; prod → ``rolled_back`` (all undone) or ``failed``."""
    change = await lifecycle.load(session, run.change.id, lock=True)
    for t in run.targets:
        new = S.ROLLED_BACK if ok.get(t.deployment_id) else S.ROLLBACK_FAILED
        await deployments.set_status(session, t.deployment_id, expected=[S.ROLLING_BACK], new=new, finished_at=now)
    all_ok = all(ok.get(t.deployment_id) for t in run.targets)
    prod_to = ChangeState.ROLLED_BACK if all_ok else ChangeState.FAILED
    to = ChangeState.TEST_FAILED if run.stage == "test" else prod_to
    reason = "rolled back" if all_ok else "rollback failed on at least one system"
    await lifecycle.transition(session, config=config, change=change, to=to, actor=actor, now=now, reason=reason)
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=actor,
        action="rollback_finished",
        change=change,
        stage=run.stage,
        ok=all_ok,
    )
    await _close(session, run=run, now=now)
    return change
