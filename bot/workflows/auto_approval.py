"""Approve after N days, with a veto window announced in the thread (``policy.auto_approve``).

Rules, in order (each is a check that fails closed):

1. never for an emergency change (the config refuses such a rule; the change class is checked again here);
2. the first rule of ``policy.auto_approve`` matching the stage, class and priority wins; none: explicit
   approval only;
3. never over a failed test stage: the prod stage approves itself only after an acknowledged *passed* test
   (a test accepted with known problems needs people);
4. the delay runs from the release of the advisory the change addresses, else from the request;
5. a veto window (``veto``) that was never announced is announced first and the approval moves to the end
   of a full window: nobody loses their chance to veto because the bot was down;
6. a veto by any eligible approver, with a reason, stops it for this revision; the change returns to
   explicit approval;
7. the approval itself is the policy's decision: the control log names the rule, the actor is ``policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import AutoApproveRule, Config
from bot.errors import InputError, PermissionDeniedError
from bot.views import AutoStatus
from bot.workflows import approval, lifecycle
from storage import advisories, changes, reports
from storage import auto_approvals as store
from storage.models import APPROVED, STAGE_STATES, AutoApproval, Change, ChangeClass, Stage

ACTOR = "policy"


@dataclass(frozen=True)
class Plan:
    """When a stage will approve itself, by which rule, and when its veto window opens."""

    rule: str
    at: datetime
    veto_from: datetime


class Event(StrEnum):
    VETO_OPEN = "veto_open"
    APPROVED = "approved"


@dataclass(frozen=True)
class Happened:
    """Something the sweep did, for the thread."""

    event: Event
    change: Change
    stage: Stage
    row: AutoApproval


@dataclass(frozen=True)
class Vetoed:
    """The outcome of a Veto: ``row`` is None when nothing was vetoed (``message`` says why)."""

    change: Change
    row: AutoApproval | None
    message: str


def pending_stage(change: Change) -> Stage | None:
    """The stage whose approval the change awaits, or None."""
    return next((stage for stage, states in STAGE_STATES.items() if change.state is states.pending), None)


def match(config: Config, *, change: Change, stage: Stage, priority: str | None) -> tuple[int, AutoApproveRule] | None:
    """The first rule that applies (steps 1-2), with its 1-based index."""
    if change.change_class is ChangeClass.EMERGENCY:  # 1.
        return None
    for index, rule in enumerate(config.policy.auto_approve, 1):  # 2.
        if rule.stage != stage or (rule.change_class and rule.change_class != change.change_class.value):
            continue
        if rule.priority and rule.priority != priority:
            continue
        return index, rule
    return None


async def priority_of(session: AsyncSession, change: Change) -> str | None:
    """The priority tier of the advisories the change addresses (the most urgent), or None."""
    tiers = [str(t) for r in await advisories.linked_to_change(session, change.id) if (t := r.data.get("priority"))]
    return tiers[0] if tiers else None


async def _test_passed(session: AsyncSession, change: Change) -> bool:
    """Step 3: the owner acknowledged a passed test (not a test accepted with problems)."""
    acks = await reports.for_change(session, change.id, kind="acknowledgement")
    return bool(acks) and acks[-1].payload.get("conclusion") == "passed"


async def _anchor(session: AsyncSession, change: Change) -> datetime:
    """Step 4: the advisory's release, else the request."""
    released = [r.published for r in await advisories.linked_to_change(session, change.id) if r.published]
    return min(released) if released else change.created_at


async def plan(session: AsyncSession, *, config: Config, change: Change) -> Plan | None:
    """What the policy will do for the stage the change awaits (None: explicit approval only)."""
    stage = pending_stage(change)
    if stage is None:
        return None
    found = match(config, change=change, stage=stage, priority=await priority_of(session, change))
    if found is None or (stage == "prod" and not await _test_passed(session, change)):
        return None
    index, rule = found
    at = max(await _anchor(session, change) + rule.after, change.updated_at)
    return Plan(rule=rule.describe(index), at=at, veto_from=at - rule.veto)


async def status_of(row: AutoApproval) -> AutoStatus:
    """The read model of a booking."""
    return AutoStatus(
        rule=row.rule, stage=row.stage, at=row.at, veto_from=row.veto_from, vetoed_by=row.vetoed_by,
        veto_reason=row.veto_reason, announced=row.announced_at is not None, applied=row.applied_at is not None,
    )  # fmt: skip


async def status(session: AsyncSession, *, config: Config, change: Change) -> AutoStatus | None:
    """The auto-approval to show: the booking of the awaited stage, else the plan, else the newest booking."""
    stage = pending_stage(change)
    row = await store.get(session, change_id=change.id, stage=stage, revision=change.revision) if stage else None
    if row is None and stage is not None:
        p = await plan(session, config=config, change=change)
        if p is not None:
            return AutoStatus(rule=p.rule, stage=stage, at=p.at, veto_from=p.veto_from)
    row = row or await store.latest(session, change.id)
    return None if row is None else await status_of(row)


async def sweep(session: AsyncSession, *, config: Config, now: datetime) -> list[Happened]:
    """Book, announce and apply due auto-approvals of every change awaiting approval."""
    if not config.policy.auto_approve:
        return []
    out: list[Happened] = []
    for change in await changes.awaiting_approval(session):
        stage = pending_stage(change)
        assert stage is not None
        row = await store.get(session, change_id=change.id, stage=stage, revision=change.revision)
        if row is None:
            p = await plan(session, config=config, change=change)
            if p is None:
                continue
            row = await store.add(
                session, change_id=change.id, stage=stage, revision=change.revision,
                rule=p.rule, at=p.at, veto_from=p.veto_from,
            )  # fmt: skip
            await lifecycle.log(
                session, config=config, now=now, actor=ACTOR, action="auto_approval_scheduled", change=change,
                stage=stage, revision=change.revision, rule=p.rule, at=p.at.isoformat(),
            )  # fmt: skip
        if row.vetoed_by or row.applied_at or now < row.veto_from:
            continue
        if row.veto_from < row.at and row.announced_at is None:
            if now >= row.at:  # 5. the window was never announced: give it in full from now
                row.veto_from, row.at = now, now + (row.at - row.veto_from)
            if await store.mark(session, row.id, field="announced_at", now=now, veto_from=row.veto_from, at=row.at):
                row.announced_at = now
                out.append(Happened(Event.VETO_OPEN, change, stage, row))
            continue
        if now >= row.at and await _apply(session, config=config, row=row, now=now):
            out.append(Happened(Event.APPROVED, await lifecycle.load(session, change.id), stage, row))
    return out


async def _apply(session: AsyncSession, *, config: Config, row: AutoApproval, now: datetime) -> bool:
    """Step 7, re-checking steps 1-3 under the change's lock."""
    change = await lifecycle.load(session, row.change_id, lock=True)
    if pending_stage(change) != row.stage or change.revision != row.revision:
        return False
    again = await plan(session, config=config, change=change)
    if again is None or not await store.mark(session, row.id, field="applied_at", now=now):
        return False
    await lifecycle.log(
        session, config=config, now=now, actor=ACTOR, action="auto_approved", change=change, stage=row.stage,
        revision=change.revision, rule=row.rule, content_hash=change.content_hash,
    )  # fmt: skip
    await lifecycle.transition(
        session, config=config, change=change, to=APPROVED[row.stage], actor=ACTOR, now=now,
        reason=f"approved by policy: {row.rule}; nobody vetoed", approval_deadline=None,
    )  # fmt: skip
    return True


async def veto(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    stage: Stage,
    revision: int,
    user: str,
    reason: str,
    now: datetime,
) -> Vetoed:
    """Step 6: stop the auto-approval of this revision. A refusal is audited (and committed), not raised."""
    reason = reason.strip()
    if not reason:
        raise InputError("veto without reason", field_errors={"reason": "A veto needs a reason."})
    change = await lifecycle.load(session, change_id, lock=True)
    row = await store.get(session, change_id=change_id, stage=stage, revision=revision)
    if row is None or row.applied_at or pending_stage(change) != stage or change.revision != revision:
        raise PermissionDeniedError(
            "nothing to veto", user_message=f"{change.key} has no pending auto-approval for {stage} any more."
        )
    progress = await approval.progress_of(session, config=config, change=change, stage=stage)
    if not progress.eligible_anywhere(user):
        await lifecycle.log(
            session, config=config, now=now, actor=user, action="veto_refused", change=change, stage=stage,
            revision=revision, reason="not an eligible approver",
        )  # fmt: skip
        return Vetoed(change, None, f"Only an eligible {stage} approver can veto {change.key}.")
    if not await store.mark(session, row.id, field="vetoed_at", now=now, vetoed_by=user, veto_reason=reason):
        return Vetoed(change, None, f"The auto-approval of {change.key} already ended.")
    row.vetoed_by, row.vetoed_at, row.veto_reason = user, now, reason
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="auto_approval_vetoed", change=change, stage=stage,
        revision=revision, rule=row.rule, reason=reason,
    )  # fmt: skip
    return Vetoed(change, row, f"You vetoed the auto-approval of {change.key}; it needs explicit approval now.")
