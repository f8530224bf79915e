"""The owner's and operators' decisions about deployments: a failed verification, a missed window.

Each decision is made here, in the caller's transaction: who may decide, the control-log entry (also for
a refusal), the state move. The listener only parses the button and renders what comes back; Slack is
talked to after the commit (``bot.workflows.deploy_runs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.workflows import due_windows, lifecycle
from bot.workflows.deployment import Run, S, _close, is_operator, load_run, owners, start
from storage import deployments, windows
from storage.models import Change, ChangeState, DeploymentStatus, Stage, WindowState


@dataclass(frozen=True)
class VerifyDecision:
    """What became of a Roll back / Keep click: ``refusal`` for the clicker, else a run to roll back or kept."""

    change: Change
    run: Run | None = None  # the run whose verification failed (None: already decided)
    kept: Change | None = None  # the change after "keep" (None with a run: roll back, or lost the race)
    refusal: str = ""


async def decide_verify(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, actor: str, roll_back: bool, now: datetime
) -> VerifyDecision:
    """The owner decides on a failed verification; anyone else is refused (and logged)."""
    run = await load_run(
        session, change_id=change_id, stage=stage, statuses=frozenset({DeploymentStatus.VERIFY_FAILED})
    )
    change = await lifecycle.load(session, change_id)
    if actor not in owners(config, change):
        await lifecycle.log(
            session, config=config, now=now, actor=actor, action="verify_decision_refused", change=change, stage=stage
        )
        refusal = f"Only the owner of {', '.join(change.systems)} decides whether to roll back {change.key}."
        return VerifyDecision(change, refusal=refusal)
    if run is None:
        return VerifyDecision(change, refusal=f"The failed verification of {change.key} ({stage}) was already decided.")
    if roll_back:
        return VerifyDecision(change, run=run)
    kept = await keep(session, config=config, run=run, actor=actor, now=now)
    if kept is None:
        return VerifyDecision(change, refusal=f"The failed verification of {change.key} ({stage}) was already decided.")
    return VerifyDecision(change, run=run, kept=kept)


@dataclass(frozen=True)
class MissedDecision:
    """What became of a missed-window click: ``refusal`` for the clicker, else the due action to carry out."""

    change: Change | None
    action: due_windows.DueAction | None = None
    refusal: str = ""


async def decide_missed(
    session: AsyncSession, *, config: Config, window_id: int, actor: str, run_now: bool, now: datetime
) -> MissedDecision:
    """An operator runs a missed window now or books the next one; anyone else is refused (and logged)."""
    window = await windows.get(session, window_id)
    if window is None or window.state is not WindowState.AWAITING_DECISION:
        return MissedDecision(None, refusal="This missed window was already handled.")
    change = await lifecycle.load(session, window.change_id, lock=True)
    if not is_operator(config, actor):
        await lifecycle.log(session, config=config, now=now, actor=actor, action="missed_window_refused", change=change)
        refusal = f"Only members of the {config.policy.operators} group decide about missed windows."
        return MissedDecision(change, refusal=refusal)
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=actor,
        action="missed_window_decided",
        change=change,
        window_id=window_id,
        decision="run" if run_now else "next",
    )
    if not run_now:
        action = await due_windows.rebook(session, config=config, change=change, window=window, actor=actor, now=now)
        return MissedDecision(change, action)
    await windows.compare_and_set(session, window_id, expected=WindowState.AWAITING_DECISION, new=WindowState.BOOKED)
    result = await start(
        session, config=config, change_id=change.id, stage=window.stage, actor=actor, now=now, window_id=window_id
    )
    return MissedDecision(change, due_windows.DueAction(change, window_id, "run", result.run, result.refusal))


async def keep(session: AsyncSession, *, config: Config, run: Run, actor: str, now: datetime) -> Change | None:
    """The owner keeps a deployment whose verification failed: prod → ``completed``, test → ``test_failed``.

    Returns None when the decision was already taken (double click, the other button, another replica).
    """
    change = await lifecycle.load(session, run.change.id, lock=True)
    moved = [
        await deployments.set_status(session, t.deployment_id, expected=[S.VERIFY_FAILED], new=S.KEPT, finished_at=now)
        for t in run.targets
    ]
    if not any(moved):
        return None
    to = ChangeState.TEST_FAILED if run.stage == "test" else ChangeState.COMPLETED
    await lifecycle.transition(
        session, config=config, change=change, to=to, actor=actor, now=now, reason="verification failed; owner kept it"
    )
    await _close(session, run=run, now=now)
    return change
