"""The Approve click: an eligible person confirms what they approve; anyone else is told why not, at once.

Slack's static ``confirm`` dialog is part of the shared card, the same for every reader, so it asked people
who were then refused. The click therefore runs the policy first (read-only, except that a refusal writes
``approval_refused`` to the control log, as ``approval.approve`` does) and answers with either

- the refusal, naming who can approve (no dialog at all), or
- an ``ApprovePrompt``: the change, stage, revision and content hash the person is about to approve and the votes so
  far, shown in a small confirm modal.

Nothing is counted until that modal is submitted. The submission goes through ``approval.approve`` with the
revision the modal showed, so the database still decides exactly once (row lock, unique constraint,
compare-and-set), and an edit between opening and submitting makes the confirmation stale: nothing counts
and the person is told which revision they saw.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot import policy
from bot.config import Config
from bot.views import ApprovePrompt, Stage
from bot.workflows import approval, stepup_rule
from bot.workflows.approval import DecisionResult


async def prepare(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    stage: Stage,
    revision: int,
    user: str,
    now: datetime,
) -> ApprovePrompt | DecisionResult:
    """The confirmation to show ``user`` for approving ``stage`` of ``revision``, or why they cannot."""
    change, early = await approval.open_stage(session, change_id=change_id, stage=stage, revision=revision, lock=False)
    if early:
        return early
    allowed = await approval.eligibility(session, config=config, change=change, stage=stage, user=user, now=now)
    if isinstance(allowed, DecisionResult):
        return allowed
    progress, requirement, _delegated_from = allowed
    after = policy.evaluate(
        config,
        systems=change.systems,
        stage=stage,
        requester=change.requester,
        last_editor=change.last_editor,
        approvals=[*progress.approvals.items(), (user, requirement)],
    )
    method = await stepup_rule.needed(session, config=config, change=change, stage=stage)
    rule = config.policy.step_up
    minutes = int(rule.confirm_within.total_seconds() // 60) if rule is not None else 0
    return ApprovePrompt(
        change, stage, progress, requirement, after.complete, method.value if method else None, minutes
    )
