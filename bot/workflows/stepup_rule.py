"""Which approvals need a second factor (``policy.step_up``), and the reservation an Approve click makes.

A rule's ``when`` must match in every key given: the stage, the change's class and its priority tier
(:func:`bot.workflows.change_priority.change_priority`, looked up only when a rule names a priority).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config, StepUpMethod
from bot.crypto import oidc
from bot.workflows import change_priority, lifecycle
from storage import stepup as stepup_store
from storage.models import Change, Stage


async def needed(session: AsyncSession, *, config: Config, change: Change, stage: Stage) -> StepUpMethod | None:
    """The second factor the approval of ``stage`` needs (None: a click counts at once)."""
    rule = config.policy.step_up
    tier = await change_priority.change_priority(session, change) if rule and rule.when.priority else None
    return step_up_method(config, change=change, stage=stage, priority=tier)


def step_up_method(config: Config, *, change: Change, stage: Stage, priority: str | None = None) -> StepUpMethod | None:
    """The second factor this approval needs under ``policy.step_up`` (None: a click counts at once).

    ``priority`` is the change's tier (:func:`bot.workflows.change_priority.change_priority`); a rule with
    ``when.priority`` matches only a change of that tier (a change that addresses no advisory has none)."""
    rule = config.policy.step_up
    if rule is None:
        return None
    when = rule.when
    if when.stage is not None and when.stage != stage:
        return None
    if when.change_class is not None and when.change_class != change.change_class.value:
        return None
    if when.priority is not None and when.priority != priority:
        return None
    return rule.method


async def reserve(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    stage: Stage,
    user: str,
    req: str | None,
    now: datetime,
    delegated_from: str | None = None,
) -> str:
    """Reserve the person's vote (bound to change, revision, content hash and person, and for a delegate to the
    delegator it is cast for); the text to show them."""
    rule = config.policy.step_up
    assert rule is not None
    bound = oidc.new_secrets() if rule.method is StepUpMethod.OIDC else None
    row = await stepup_store.reserve(
        session,
        change_id=change.id,
        stage=stage,
        revision=change.revision,
        content_hash=change.content_hash,
        user_id=user,
        requirement=req,
        delegated_from=delegated_from,
        method=rule.method.value,
        created_at=now,
        expires_at=now + rule.confirm_within,
        oidc_state=bound.state if bound else None,
        oidc_nonce=bound.nonce if bound else None,
        oidc_verifier=bound.verifier if bound else None,
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
        **({"delegated_from": delegated_from} if delegated_from else {}),
    )
    minutes = int(rule.confirm_within.total_seconds() // 60)
    how = (
        f"type `/patch confirm {change.key} CODE` with the code from your authenticator app"
        if rule.method is StepUpMethod.TOTP
        else f"<{oidc.start_link(rule.oidc, bound.state)}|sign in with the identity provider> "
        "(a link for you alone, good once)"
        if bound is not None and rule.oidc is not None
        else "sign in with the identity provider"
    )
    return (
        f":lock: Your approval of {change.key} ({stage}, revision {change.revision}) is reserved, not yet counted: "
        f"{how} within {minutes} minutes."
    )
