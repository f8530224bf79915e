"""The owner's answer about a run whose bot process died (``interrupted``): Completed, Failed - roll back, Retry.

Decided here, in the caller's transaction, like the other deployment decisions (``deploy_decisions``):
who may answer (the owners of the change's systems, or an operator), the control-log entry (also for a
refusal), the state moves. Only one answer wins: the rows leave ``interrupted`` by compare-and-set.

- **Completed**: the orphaned step finished (the owner checked): the run is recorded as succeeded, the
  change moves on as after a verified run (test → the owner records the result; prod → completed and
  announced), the systems are unlocked. Interrupted in a rollback: the rollback is recorded as done.
- **Failed - roll back**: the rollback runs now (``runner.rollback``).
- **Retry**: the interrupted step runs again: from apply, or from verify when the apply had been recorded
  (the change was already verifying); a rollback is run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.workflows import announcements, lifecycle, runner
from bot.workflows.deployment import Run, S, finish_rollback, is_operator, load_run, owners, succeed
from storage import deployments, windows
from storage.models import VERIFYING, Change, Stage


class Answer(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True)
class Decision:
    """What became of the click: ``refusal`` for the clicker, else what to run after the commit."""

    change: Change
    answer: Answer | None = None
    run: Run | None = None  # to roll back (FAILED, or a retried rollback) or to run again (RETRY)
    rollback: bool = False
    from_verify: bool = False
    refusal: str = ""


async def decide(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, actor: str, answer: Answer, now: datetime
) -> Decision:
    """Record the answer about the change's interrupted ``stage`` run; refuse anyone but its owners/operators."""
    change = await lifecycle.load(session, change_id, lock=True)
    if actor not in owners(config, change) and not is_operator(config, actor):
        await lifecycle.log(
            session, config=config, now=now, actor=actor, action="interrupted_decision_refused", change=change
        )
        return Decision(change, refusal=f"Only the owner of {', '.join(change.systems)} or an operator answers this.")
    run = await load_run(session, change_id=change_id, stage=stage, statuses=frozenset({S.INTERRUPTED}))
    rows = [d for d in await deployments.for_change(session, change_id, stage=stage) if d.status is S.INTERRUPTED]
    if run is None or not rows:
        return Decision(change, refusal=f"The interrupted run of {change.key} ({stage}) was already decided.")
    step = rows[0].step or "apply"
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=actor,
        action="interrupted_decided",
        change=change,
        stage=stage,
        answer=answer.value,
        step=step,
        run_ids=[d.run_id for d in rows],
    )
    if step == "rollback":
        if answer is Answer.COMPLETED:
            await _move(session, run, to=S.ROLLING_BACK, now=now)
            done = await finish_rollback(
                session, config=config, run=run, now=now, ok={t: True for t in run.ids}, actor=actor
            )
            return Decision(done, answer)
        return Decision(change, answer, run=run, rollback=True)
    if answer is Answer.FAILED:
        return Decision(change, answer, run=run, rollback=True)
    verifying = change.state is VERIFYING[stage]
    if answer is Answer.RETRY:
        await _move(session, run, to=S.VERIFYING if verifying else S.RUNNING, now=now)
        return Decision(change, answer, run=run, from_verify=verifying)
    await _move(session, run, to=S.VERIFYING, now=now)
    if not verifying:
        await lifecycle.transition(
            session, config=config, change=change, to=VERIFYING[stage], actor=actor, now=now, reason="applied"
        )
    done = await succeed(session, config=config, run=run, now=now)
    if stage == "test":
        await runner.result_prompt(session, config=config, change=done, now=now, key=run.targets[0].run_id)
    if stage == "prod":
        window = await windows.get(session, run.window_id) if run.window_id is not None else None
        await announcements.announce(
            session,
            config=config,
            change=done,
            window=window,
            kind=announcements.AnnouncementKind.COMPLETED,
            now=now,
            stage=stage,
        )
    return Decision(done, answer)


async def _move(session: AsyncSession, run: Run, *, to: S, now: datetime) -> None:
    for t in run.targets:
        await deployments.set_status(session, t.deployment_id, expected=[S.INTERRUPTED], new=to, heartbeat_at=now)
