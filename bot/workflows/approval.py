"""Approve and reject under policy: exactly one decision per person, stage and revision.

Concurrency: the change row is locked for the transaction (PostgreSQL ``FOR UPDATE``; SQLite transactions
are ``BEGIN IMMEDIATE``), a unique constraint refuses a second decision by the same person, and the state
moves by compare-and-set. Double clicks, simultaneous approvers and two bot replicas all end with one
decision each and one state change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from bot import policy
from bot.config import Config
from bot.errors import AlreadyDoneError, PatchwardenError, PermissionDeniedError
from bot.views import state_label
from bot.workflows import delegation, lifecycle, stepup_rule
from bot.workflows.stepup_rule import step_up_method  # noqa: F401 (re-exported: the name callers know)
from storage import changes
from storage.models import APPROVED, PENDING_APPROVAL, Approval, Change, ChangeState, Decision, Stage


class Outcome(StrEnum):
    RECORDED = "recorded"  # counted; more approvals needed
    STAGE_APPROVED = "stage_approved"  # this approval completed the stage
    REJECTED = "rejected"
    REFUSED = "refused"  # not allowed (audited); nothing counted
    ALREADY = "already"  # repeat click / requirement already met; nothing recorded
    NOT_PENDING = "not_pending"  # the stage is not awaiting approval (any more)
    RESERVED = "reserved"  # step-up: the vote waits for the second factor; nothing counted yet


@dataclass(frozen=True)
class DecisionResult:
    outcome: Outcome
    change: Change
    message: str  # for the person who clicked (ephemeral)


async def progress_of(session: AsyncSession, *, config: Config, change: Change, stage: Stage) -> policy.StageProgress:
    """The stage's approval progress from live approvals of the current revision."""
    rows = await changes.approvals(session, change.id, stage=stage, revision=change.revision, include_stale=False)
    return progress_from(config, change=change, stage=stage, rows=rows)


def progress_from(config: Config, *, change: Change, stage: Stage, rows: Sequence[Approval]) -> policy.StageProgress:
    """The stage's progress from already loaded decisions (any stage/revision: filtered here)."""
    rows = [a for a in rows if a.stage == stage and a.revision == change.revision and not a.stale]
    return policy.evaluate(
        config,
        systems=change.systems,
        stage=stage,
        requester=change.requester,
        last_editor=change.last_editor,
        approvals=[(a.user_id, a.requirement) for a in rows if a.decision is Decision.APPROVE],
        acting_for={a.user_id: a.delegated_from for a in rows if a.delegated_from and a.decision is Decision.APPROVE},
    )


ALREADY_DECIDED = "You have already decided on this stage."


async def _record(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    stage: Stage,
    user: str,
    decision: Decision,
    requirement: str | None,
    reason: str,
    now: datetime,
    step_up: str | None = None,
    delegated_from: str | None = None,
) -> bool:
    """Insert the decision (the unique constraint refuses a second one: False) and log it, bound to the
    change's content hash."""
    row = await changes.record_decision(
        session,
        change=change,
        stage=stage,
        user_id=user,
        decision=decision,
        requirement=requirement,
        reason=reason,
        now=now,
        step_up=step_up,
        delegated_from=delegated_from,
    )
    if row is None:
        return False
    details: dict[str, object] = {"requirement": requirement} if decision is Decision.APPROVE else {"reason": reason}
    details |= {k: v for k, v in (("step_up", step_up), ("delegated_from", delegated_from)) if v is not None}
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=user,
        change=change,
        stage=stage,
        revision=change.revision,
        action="approved" if decision is Decision.APPROVE else "rejected",
        content_hash=change.content_hash,
        **details,
    )
    return True


def edited_since(change: Change, revision: int) -> str:
    """What a person is told when they decide on a revision that is no longer the change's."""
    return (
        f"{change.key} was edited since you saw it (you saw revision {revision}, it is now revision "
        f"{change.revision}): nothing was counted. Look at the updated card and decide again."
    )


async def open_stage(
    session: AsyncSession, *, change_id: int, stage: Stage, revision: int, lock: bool = True
) -> tuple[Change, DecisionResult | None]:
    """The change (row-locked unless ``lock`` is False), with the answer if it is not open for this decision."""
    change = await lifecycle.load(session, change_id, lock=lock)
    if change.state is not PENDING_APPROVAL.get(stage):
        state = state_label(change.state)
        return change, DecisionResult(
            Outcome.NOT_PENDING, change, f"{change.key} is not awaiting {stage} approval (it is *{state}*)."
        )
    if change.revision != revision:
        return change, DecisionResult(Outcome.NOT_PENDING, change, edited_since(change, revision))
    return change, None


async def eligibility(
    session: AsyncSession, *, config: Config, change: Change, stage: Stage, user: str, now: datetime
) -> tuple[policy.StageProgress, str, str | None] | DecisionResult:
    """The stage's progress, the requirement ``user``'s approval would fill and whose delegate they vote as
    (None: their own vote), or the (audited) refusal."""
    progress = await progress_of(session, config=config, change=change, stage=stage)
    try:
        return progress, policy.requirement_for(progress, user), None
    except AlreadyDoneError as exc:
        return DecisionResult(Outcome.ALREADY, change, exc.user_message)
    except PermissionDeniedError as exc:
        vote = await delegation.vote_for(
            session, config=config, change=change, stage=stage, progress=progress, user=user, now=now
        )
        if not isinstance(vote, delegation.Vote):
            why = vote or exc.user_message
            return await _refused(session, config=config, change=change, stage=stage, user=user, now=now, why=why)
        return progress, vote.requirement, vote.delegator


async def approve(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    stage: Stage,
    revision: int,
    user: str,
    now: datetime,
) -> DecisionResult:
    """Record ``user``'s approval if the policy allows it; complete the stage when every requirement is met."""
    change, early = await open_stage(session, change_id=change_id, stage=stage, revision=revision)
    if early:
        return early
    allowed = await eligibility(session, config=config, change=change, stage=stage, user=user, now=now)
    if isinstance(allowed, DecisionResult):
        return allowed
    progress, requirement, delegated_from = allowed
    if await stepup_rule.needed(session, config=config, change=change, stage=stage) is not None:
        text = await stepup_rule.reserve(
            session,
            config=config,
            change=change,
            stage=stage,
            user=user,
            req=requirement,
            now=now,
            delegated_from=delegated_from,
        )
        return DecisionResult(Outcome.RESERVED, change, text)
    return await count(
        session,
        config=config,
        change=change,
        stage=stage,
        user=user,
        requirement=requirement,
        progress=progress,
        now=now,
        delegated_from=delegated_from,
    )


async def _refused(
    session: AsyncSession, *, config: Config, change: Change, stage: Stage, user: str, now: datetime, why: str
) -> DecisionResult:
    """Log a refused approval and tell the clicker why."""
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=user,
        action="approval_refused",
        change=change,
        stage=stage,
        revision=change.revision,
        reason=why,
    )
    return DecisionResult(Outcome.REFUSED, change, why)


async def count(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    stage: Stage,
    user: str,
    requirement: str | None,
    progress: policy.StageProgress,
    now: datetime,
    step_up: str | None = None,
    delegated_from: str | None = None,
) -> DecisionResult:
    """Record an allowed approval (``progress`` as read before it) and complete the stage if it is the last."""
    if not await _record(
        session,
        config=config,
        change=change,
        stage=stage,
        user=user,
        decision=Decision.APPROVE,
        requirement=requirement,
        reason="",
        now=now,
        step_up=step_up,
        delegated_from=delegated_from,
    ):
        return DecisionResult(Outcome.ALREADY, change, ALREADY_DECIDED)
    progress = policy.evaluate(  # the decisions read above plus this one: no need to read them again
        config,
        systems=change.systems,
        stage=stage,
        requester=change.requester,
        last_editor=change.last_editor,
        approvals=[*progress.approvals.items(), (user, requirement)],
        acting_for={**progress.acting_for, **({user: delegated_from} if delegated_from else {})},
    )
    behalf = f" on behalf of <@{delegated_from}>" if delegated_from else ""
    if not progress.complete:
        return DecisionResult(Outcome.RECORDED, change, f"Your approval of {change.key} ({stage}){behalf} is recorded.")
    await lifecycle.transition(
        session,
        config=config,
        change=change,
        to=APPROVED[stage],
        actor=user,
        now=now,
        reason="all approval requirements met",
        approval_deadline=None,
    )
    return DecisionResult(Outcome.STAGE_APPROVED, change, f"Your approval completed the {stage} stage of {change.key}.")


async def reject(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    stage: Stage,
    revision: int,
    user: str,
    reason: str,
    now: datetime,
) -> DecisionResult:
    """Reject the change (one eligible reject rejects it). A reason is required."""
    reason = reason.strip()
    if not reason:
        raise PatchwardenError("reject without reason", user_message="A rejection needs a reason.")
    change, early = await open_stage(session, change_id=change_id, stage=stage, revision=revision)
    if early:
        return early
    progress = await progress_of(session, config=config, change=change, stage=stage)
    delegated_from = None
    if not progress.eligible_anywhere(user):
        vote = await delegation.vote_for(
            session, config=config, change=change, stage=stage, progress=progress, user=user, now=now
        )
        if not isinstance(vote, delegation.Vote):
            await lifecycle.log(
                session,
                config=config,
                now=now,
                actor=user,
                action="rejection_refused",
                change=change,
                stage=stage,
                revision=revision,
            )
            return DecisionResult(Outcome.REFUSED, change, vote or not_an_approver(change, stage, progress, "reject"))
        delegated_from = vote.delegator
    if not await _record(
        session,
        config=config,
        change=change,
        stage=stage,
        user=user,
        decision=Decision.REJECT,
        requirement=None,
        reason=reason,
        now=now,
        delegated_from=delegated_from,
    ):
        return DecisionResult(Outcome.ALREADY, change, ALREADY_DECIDED)
    await lifecycle.transition(
        session,
        config=config,
        change=change,
        to=ChangeState.REJECTED,
        actor=user,
        now=now,
        reason=reason,
        approval_deadline=None,
    )
    behalf = f" on behalf of <@{delegated_from}>" if delegated_from else ""
    return DecisionResult(Outcome.REJECTED, change, f"You rejected {change.key}{behalf}.")


async def check_can_decide(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, revision: int, user: str, now: datetime
) -> str | None:
    """Why ``user`` could not decide on this stage now (not pending, edited, already decided, not an
    approver nor a delegate of one), or None. Read-only: Reject asks for its reason only after this;
    ``reject`` checks again."""
    change = await lifecycle.load(session, change_id)
    if change.state is not PENDING_APPROVAL.get(stage):
        return f"{change.key} is not awaiting {stage} approval (it is *{state_label(change.state)}*)."
    if change.revision != revision:
        return edited_since(change, revision)
    rows = await changes.approvals(session, change.id, stage=stage, revision=change.revision, include_stale=False)
    if any(a.user_id == user for a in rows):
        return ALREADY_DECIDED
    progress = progress_from(config, change=change, stage=stage, rows=rows)
    if progress.eligible_anywhere(user):
        return None
    vote = await delegation.vote_for(
        session, config=config, change=change, stage=stage, progress=progress, user=user, now=now
    )
    if isinstance(vote, delegation.Vote):
        return None
    return vote or not_an_approver(change, stage, progress, "decide on")


def not_an_approver(change: Change, stage: Stage, progress: policy.StageProgress, verb: str) -> str:
    """What someone who may not decide on a stage is told, naming who can."""
    who = ", ".join(f"<@{p}>" for p in sorted(progress.pending_people())) or "nobody"
    return (
        f"You cannot {verb} {change.key}: you are not an approver of its {stage} stage "
        f"(or you requested or edited it). Who can decide: {who}."
    )
