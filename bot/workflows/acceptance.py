"""The test stage as the policy describes it: result, risk decision, acknowledgement.

After the test deployment the owner records the result (passed, or problems with a criticality and a
description). With problems, the owner and a member of the security group each record a risk decision
(proceed or stop, with reasoning): both proceed → ``risk_accepted``, any stop → ``failed``. The owner then
acknowledges the test conclusion; only then does production approval start (``test_acknowledged`` →
``pending_prod_approval`` at once).

Only the owners of the change's systems record results and acknowledge; refusals are logged and returned
(not raised) so the log entry commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.views import state_label
from bot.workflows import deployment, lifecycle
from storage import reports
from storage.models import Change, ChangeState, StageReport

S = ChangeState
CRITICALITIES = ("low", "medium", "high", "critical")
SECURITY_GROUP = "security"


class Next(StrEnum):
    """What the thread should show after a step."""

    REFUSED = "refused"
    ALREADY = "already"
    ACKNOWLEDGE = "acknowledge"  # show the Acknowledge button
    RISK = "risk"  # ask for risk decisions
    WAITING = "waiting"  # one risk decision recorded, the other is missing
    FAILED = "failed"  # a risk decision said stop
    PROD_APPROVAL = "prod_approval"  # acknowledged: production approval started


@dataclass(frozen=True)
class StageStep:
    """The outcome of a click or form: the change, what to say to the person, what comes next."""

    change: Change
    next: Next
    message: str
    conclusion: str = ""
    report: dict[str, Any] | None = None  # the scenario checklist and log findings, when recorded


def _is(change: Change) -> str:
    return f"{change.key} is *{state_label(change.state)}*"


def security_group(config: Config) -> str:
    """The group whose member records the security side of a risk decision."""
    return SECURITY_GROUP if SECURITY_GROUP in config.groups else config.policy.fallback


async def _refuse(
    session: AsyncSession, *, config: Config, change: Change, user: str, now: datetime, action: str, why: str
) -> StageStep:
    await lifecycle.log(
        session, config=config, now=now, actor=user, action=f"{action}_refused", change=change, reason=why
    )
    return StageStep(change, Next.REFUSED, why)


def _not_owner(config: Config, change: Change, what: str) -> str:
    who = ", ".join(f"<@{u}>" for u in sorted(deployment.owners(config, change)))
    return f"Only the owner of {', '.join(change.systems)} ({who}) may {what} for {change.key}."


async def _owners_only(
    session: AsyncSession, *, config: Config, change: Change, user: str, now: datetime, action: str, what: str
) -> StageStep | None:
    """None when ``user`` owns a system of the change; otherwise the (audited) refusal to return."""
    if user in deployment.owners(config, change):
        return None
    return await _refuse(
        session, config=config, change=change, user=user, now=now, action=action, why=_not_owner(config, change, what)
    )


async def _results(session: AsyncSession, change_id: int) -> list[StageReport]:
    return await reports.for_change(session, change_id, kind="test_result")


async def record_passed(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    user: str,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> StageStep:
    """The owner says the test passed (state ``test_passed``); ``extra`` joins the report (the checklist)."""
    change = await lifecycle.load(session, change_id, lock=True)
    refused = await _owners_only(
        session, config=config, change=change, user=user, now=now, action="test_result", what="record the test result"
    )
    if refused is not None:
        return refused
    if change.state is not S.TEST_PASSED:
        why = f"{_is(change)}; a passed test can be recorded after a successful test deployment."
        return await _refuse(session, config=config, change=change, user=user, now=now, action="test_result", why=why)
    recorded = await _results(session, change.id)
    if recorded:
        result = str(recorded[-1].payload.get("result", "recorded"))
        if result == "passed":
            # still waiting for its acknowledgement: show that button again (the first one may never have
            # reached Slack: the process died after the commit), the result itself counts once
            message = f"The test result of {change.key} is already recorded (passed); it waits for acknowledgement."
            return StageStep(change, Next.ACKNOWLEDGE, message, conclusion="passed")
        return StageStep(change, Next.ALREADY, f"The test result of {change.key} is already recorded.")
    passed: dict[str, Any] = {"result": "passed", **(extra or {})}
    await reports.add(session, change_id=change.id, kind="test_result", user_id=user, now=now, payload=passed)
    await lifecycle.log(session, config=config, now=now, actor=user, action="test_result", change=change, **passed)
    return StageStep(change, Next.ACKNOWLEDGE, f"Recorded: {change.key} passed its test.", conclusion="passed")


async def record_problems(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    user: str,
    criticality: str,
    description: str,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> StageStep:
    """The owner reports problems (criticality and description required): ``test_failed``; risk decisions next.

    ``extra`` (the scenario checklist and log findings) joins the report and the control-log entry."""
    description = description.strip()
    if criticality not in CRITICALITIES or not description:
        from bot.errors import InputError

        errors = {}
        if criticality not in CRITICALITIES:
            errors["criticality"] = "Pick a criticality."
        if not description:
            errors["description"] = "Describe the problems."
        raise InputError("invalid test problems", field_errors=errors)
    change = await lifecycle.load(session, change_id, lock=True)
    refused = await _owners_only(
        session, config=config, change=change, user=user, now=now, action="test_result", what="record the test result"
    )
    if refused is not None:
        return refused
    if change.state not in (S.TEST_PASSED, S.TEST_FAILED):
        why = f"{_is(change)}; test problems are recorded after the test deployment."
        return await _refuse(session, config=config, change=change, user=user, now=now, action="test_result", why=why)
    if await _results(session, change.id):
        return StageStep(change, Next.ALREADY, f"The test result of {change.key} is already recorded.")
    payload = {"result": "problems", "criticality": criticality, "description": description, **(extra or {})}
    await reports.add(session, change_id=change.id, kind="test_result", user_id=user, now=now, payload=payload)
    await lifecycle.log(session, config=config, now=now, actor=user, action="test_result", change=change, **payload)
    if change.state is S.TEST_PASSED:
        await lifecycle.transition(
            session,
            config=config,
            change=change,
            to=S.TEST_FAILED,
            actor=user,
            now=now,
            reason=f"{criticality} problems found in test",
        )
    return StageStep(
        change, Next.RISK, f"Recorded: {criticality} problems in {change.key}. Risk decisions are needed next."
    )


async def record_risk(
    session: AsyncSession, *, config: Config, change_id: int, user: str, decision: str, reasoning: str, now: datetime
) -> StageStep:
    """The owner and a security member each decide proceed/stop: both proceed → risk accepted; a stop → failed."""
    reasoning = reasoning.strip()
    if decision not in ("proceed", "stop") or not reasoning:
        from bot.errors import InputError

        errors = {}
        if decision not in ("proceed", "stop"):
            errors["decision"] = "Pick proceed or stop."
        if not reasoning:
            errors["reasoning"] = "Give your reasoning."
        raise InputError("invalid risk decision", field_errors=errors)
    change = await lifecycle.load(session, change_id, lock=True)
    if change.state is not S.TEST_FAILED or not any(
        r.payload.get("result") == "problems" for r in await _results(session, change.id)
    ):
        why = f"{_is(change)}; risk decisions follow reported test problems."
        return await _refuse(session, config=config, change=change, user=user, now=now, action="risk_decision", why=why)
    earlier = await reports.for_change(session, change.id, kind="risk_decision")
    taken = {r.payload.get("role"): r.user_id for r in earlier}
    security = security_group(config)
    role = None
    if user in deployment.owners(config, change) and "owner" not in taken:
        role = "owner"
    elif user in config.group(security) and "security" not in taken and taken.get("owner") != user:
        role = "security"
    if role is None:
        if user in taken.values():
            return StageStep(change, Next.ALREADY, "Your risk decision is already recorded.")
        why = (
            f"A risk decision on {change.key} is made by its owner and by a member of the {security} group "
            "(another person)."
        )
        return await _refuse(session, config=config, change=change, user=user, now=now, action="risk_decision", why=why)
    payload: dict[str, Any] = {"role": role, "decision": decision, "reasoning": reasoning}
    await reports.add(session, change_id=change.id, kind="risk_decision", user_id=user, now=now, payload=payload)
    await lifecycle.log(session, config=config, now=now, actor=user, action="risk_decision", change=change, **payload)
    if decision == "stop":
        await lifecycle.transition(
            session,
            config=config,
            change=change,
            to=S.FAILED,
            actor=user,
            now=now,
            reason=f"risk decision ({role}): stop",
        )
        return StageStep(change, Next.FAILED, f"Recorded: stop. {change.key} has failed its test stage.")
    decided = {**taken, role: user}
    if "owner" in decided and "security" in decided:
        await lifecycle.transition(
            session,
            config=config,
            change=change,
            to=S.RISK_ACCEPTED,
            actor=user,
            now=now,
            reason="owner and security accept the risk",
        )
        return StageStep(
            change,
            Next.ACKNOWLEDGE,
            f"Recorded: proceed. The risk of {change.key} is accepted.",
            conclusion="problems found; risk accepted",
        )
    missing = "a member of the security group" if "security" not in decided else "the owner"
    return StageStep(change, Next.WAITING, f"Recorded: proceed. Waiting for {missing}.")


async def acknowledge(session: AsyncSession, *, config: Config, change_id: int, user: str, now: datetime) -> StageStep:
    """The owner acknowledges the test conclusion: ``test_acknowledged`` → ``pending_prod_approval``."""
    change = await lifecycle.load(session, change_id, lock=True)
    refused = await _owners_only(
        session,
        config=config,
        change=change,
        user=user,
        now=now,
        action="acknowledgement",
        what="acknowledge the test result",
    )
    if refused is not None:
        return refused
    results = await _results(session, change.id)
    passed = change.state is S.TEST_PASSED and any(r.payload.get("result") == "passed" for r in results)
    if not (passed or change.state is S.RISK_ACCEPTED):
        if change.state in (S.TEST_ACKNOWLEDGED, S.PENDING_PROD_APPROVAL):
            return StageStep(change, Next.ALREADY, f"The test result of {change.key} is already acknowledged.")
        why = f"{_is(change)}; record the test result (and any risk decisions) first."
        return await _refuse(
            session, config=config, change=change, user=user, now=now, action="acknowledgement", why=why
        )
    conclusion = "passed" if passed else "problems found; risk accepted"
    await reports.add(
        session, change_id=change.id, kind="acknowledgement", user_id=user, now=now, payload={"conclusion": conclusion}
    )
    await lifecycle.transition(
        session,
        config=config,
        change=change,
        to=S.TEST_ACKNOWLEDGED,
        actor=user,
        now=now,
        reason=f"test conclusion acknowledged: {conclusion}",
    )
    await lifecycle.transition(
        session,
        config=config,
        change=change,
        to=S.PENDING_PROD_APPROVAL,
        actor=user,
        now=now,
        reason="production approval starts",
    )
    return StageStep(
        change,
        Next.PROD_APPROVAL,
        f"Acknowledged. Production approval of {change.key} has started.",
        conclusion=conclusion,
    )
