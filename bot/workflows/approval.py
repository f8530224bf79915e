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
from bot.config import Config, StepUpMethod
from bot.errors import AlreadyDoneError, PatchwardenError, PermissionDeniedError
from bot.views import state_label
from bot.workflows import delegation, lifecycle
from storage import changes
from storage import stepup as stepup_store
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


async def _open_stage(
    session: AsyncSession,
    *,
    change_id: int,
    stage: Stage,
    revision: int,
) -> tuple[Change, DecisionResult | None]:
    change = await lifecycle.load(session, change_id, lock=True)
    if change.state is not PENDING_APPROVAL.get(stage):
        state = state_label(change.state)
        return change, DecisionResult(
            Outcome.NOT_PENDING, change, f"{change.key} is not awaiting {stage} approval (it is *{state}*)."
        )
    if change.revision != revision:
        return change, DecisionResult(
            Outcome.NOT_PENDING,
            change,
            f"{change.key} was edited since this card was shown (now revision {change.revision}); "
            "look at the updated card and decide again.",
        )
    return change, None


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
    change, early = await _open_stage(session, change_id=change_id, stage=stage, revision=revision)
    if early:
        return early
    progress = await progress_of(session, config=config, change=change, stage=stage)
    delegated_from: str | None = None
    try:
        requirement = policy.requirement_for(progress, user)
    except AlreadyDoneError as exc:
        return DecisionResult(Outcome.ALREADY, change, exc.user_message)
    except PermissionDeniedError as exc:
        vote = await delegation.vote_for(
            session, config=config, change=change, stage=stage, progress=progress, user=user, now=now
        )
        if not isinstance(vote, delegation.Vote):
            why = vote or exc.user_message
            return await _refused(session, config=config, change=change, stage=stage, user=user, now=now, why=why)
        requirement, delegated_from = vote.requirement, vote.delegator
    method = step_up_method(config, change=change, stage=stage)
    if method is not None and delegated_from is not None:  # fail closed: a reservation carries no delegation
        why = delegation.no_step_up(config, change=change, stage=stage, delegator=delegated_from)
        return await _refused(session, config=config, change=change, stage=stage, user=user, now=now, why=why)
    if method is not None:
        return await _reserve(session, config=config, change=change, stage=stage, user=user, req=requirement, now=now)
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


def step_up_method(config: Config, *, change: Change, stage: Stage) -> StepUpMethod | None:
    """The second factor this approval needs under ``policy.step_up`` (None: a click counts at once)."""
    rule = config.policy.step_up
    if rule is None:
        return None
    when = rule.when
    if when.stage is not None and when.stage != stage:
        return None
    if when.change_class is not None and when.change_class != change.change_class.value:
        return None
    # ``when.priority`` is refused by check-config until changes carry a priority; were it set, it matches
    # (fail closed: a rule we cannot evaluate asks for the second factor rather than waiving it)
    return rule.method


async def _reserve(
    session: AsyncSession, *, config: Config, change: Change, stage: Stage, user: str, req: str | None, now: datetime
) -> DecisionResult:
    rule = config.policy.step_up
    assert rule is not None
    row = await stepup_store.reserve(
        session,
        change_id=change.id,
        stage=stage,
        revision=change.revision,
        content_hash=change.content_hash,
        user_id=user,
        requirement=req,
        method=rule.method.value,
        created_at=now,
        expires_at=now + rule.confirm_within,
    )
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=user,
        action="approval_reserved",
        change=change,
        stage=stage,
        revision=change.revision,
        content_hash=change.content_hash,
        method=rule.method.value,
        reservation=row.id,
    )
    minutes = int(rule.confirm_within.total_seconds() // 60)
    how = (
        f"type `/patch confirm {change.key} CODE` with the code from your authenticator app"
        if rule.method is StepUpMethod.TOTP
        else f"type `/patch confirm {change.key}` and sign in with the identity provider"
    )
    return DecisionResult(
        Outcome.RESERVED,
        change,
        f":lock: Your approval of {change.key} ({stage}, revision {change.revision}) is reserved, not yet counted: "
        f"{how} within {minutes} minutes.",
    )


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
    change, early = await _open_stage(session, change_id=change_id, stage=stage, revision=revision)
    if early:
        return early
    progress = await progress_of(session, config=config, change=change, stage=stage)
    if not progress.eligible_anywhere(user):
        who = ", ".join(f"<@{p}>" for p in sorted(progress.pending_people())) or "nobody"
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
        return DecisionResult(
            Outcome.REFUSED,
            change,
            f"You cannot reject {change.key}: you are not an approver of its {stage} stage "
            f"(or you requested or edited it). Who can decide: {who}.",
        )
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
    return DecisionResult(Outcome.REJECTED, change, f"You rejected {change.key}.")


async def check_can_decide(
    session: AsyncSession, *, config: Config, change_id: int, stage: Stage, revision: int, user: str
) -> str | None:
    """Why ``user`` could not decide on this stage now (not pending, edited, already decided, not an
    approver), or None. Read-only: Reject asks for its reason only after this; ``reject`` checks again."""
    change = await lifecycle.load(session, change_id)
    if change.state is not PENDING_APPROVAL.get(stage):
        return f"{change.key} is not awaiting {stage} approval (it is *{state_label(change.state)}*)."
    if change.revision != revision:
        return (
            f"{change.key} was edited since this card was shown (now revision {change.revision}); "
            "look at the updated card and decide again."
        )
    rows = await changes.approvals(session, change.id, stage=stage, revision=change.revision, include_stale=False)
    if any(a.user_id == user for a in rows):
        return ALREADY_DECIDED
    progress = progress_from(config, change=change, stage=stage, rows=rows)
    if not progress.eligible_anywhere(user):
        who = ", ".join(f"<@{p}>" for p in sorted(progress.pending_people())) or "nobody"
        return (
            f"You cannot decide on {change.key}: you are not an approver of its {stage} stage "
            f"(or you requested or edited it). Who can decide: {who}."
        )
    return None
