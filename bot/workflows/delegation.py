"""People are away (issue 12, item 6): an approver hands their approvals to a named colleague for a while.

``/patch delegate @someone --from DATE --until DATE`` records a delegation; while it is in force, the
delegate's Approve click on a stage the delegator could approve counts as the delegator's requirement and
records ``delegated_from``. Checks, in order (fail closed), when the delegate is not an approver themselves:

1. a delegation to the clicker is in force now;
2. the delegate is not the requester (or last editor) of the change;
3. delegation is not forbidden for the stage (``policy.delegation.forbid``);
4. the delegator could approve now (the policy's own checks, as the delegator): that requirement is filled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot import policy
from bot.config import Config, Role
from bot.errors import AlreadyDoneError, NotFoundError, PermissionDeniedError, UsageError
from bot.workflows import lifecycle
from storage import away
from storage.models import Change, Delegation, Stage

MAX_SPAN = timedelta(days=90)
USAGE = "/patch delegate @someone --from YYYY-MM-DD --until YYYY-MM-DD"
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,})(\|[^>]*)?>$|^@?([UW][A-Z0-9]{2,})$")


@dataclass(frozen=True)
class Vote:
    """A delegated approval: the delegator it is cast for and the requirement it fills."""

    delegator: str
    requirement: str


@dataclass(frozen=True)
class Request:
    """A parsed ``/patch delegate`` command."""

    delegate: str
    starts: datetime
    ends: datetime


def _when(text: str, *, end: bool) -> datetime:
    """A date (UTC midnight; ``--until`` a date means to the end of that day) or an ISO time with offset."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1 if end else 0), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"bad date {text!r}", user_message=f"`{text[:40]}` is not a date (YYYY-MM-DD).") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse(args: tuple[str, ...], *, now: datetime) -> Request:
    """``@someone [--from DATE] --until DATE`` (dates in UTC); a clear UsageError for anything else."""
    if not args:
        raise UsageError("no delegate", user_message=f"Name a colleague. Usage: `{USAGE}`")
    found = _MENTION.match(args[0])
    if found is None:
        raise UsageError("bad delegate", user_message=f"`{args[0][:40]}` is not a person. Usage: `{USAGE}`")
    options: dict[str, str] = {}
    rest = list(args[1:])
    while rest:
        flag = rest.pop(0)
        if flag not in ("--from", "--until") or not rest or flag in options:
            raise UsageError("bad options", user_message=f"Give `--from DATE` and `--until DATE` once each. `{USAGE}`")
        options[flag] = rest.pop(0)
    if "--until" not in options:
        raise UsageError("no end", user_message=f"Say until when: `--until YYYY-MM-DD`. Usage: `{USAGE}`")
    starts = _when(options["--from"], end=False) if "--from" in options else now
    return Request(found.group(1) or found.group(3), starts, _when(options["--until"], end=True))


def approver_anywhere(config: Config, user: str) -> bool:
    """True when ``user`` could approve some stage of some change (owner, stakeholder, a stage's group)."""
    for stage in config.policy.stages:
        for rule in policy.stage_rules(config, stage):
            if rule.role is Role.OWNER and any(s.owner == user for s in config.systems.values()):
                return True
            if rule.role is Role.STAKEHOLDER and any(user in s.stakeholders for s in config.systems.values()):
                return True
            if rule.group is not None and user in config.group(rule.group):
                return True
    return user in config.group(config.policy.fallback)


async def create(session: AsyncSession, *, config: Config, user: str, request: Request, now: datetime) -> Delegation:
    """Record ``user``'s delegation to ``request.delegate`` (audited); raises with what to fix."""
    problem = None
    if request.delegate == user:
        problem = "You cannot delegate to yourself."
    elif not approver_anywhere(config, user):
        problem = "You approve nothing under the policy, so there is nothing to delegate."
    elif request.ends <= request.starts or request.ends <= now:
        problem = "The delegation must end after it starts, and in the future."
    elif request.ends - request.starts > MAX_SPAN:
        problem = f"A delegation lasts at most {MAX_SPAN.days} days; make a new one after that."
    if problem is not None:
        raise UsageError(problem, user_message=problem)
    row = await away.add_delegation(
        session, delegator=user, delegate=request.delegate, starts=request.starts, ends=request.ends, now=now
    )
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=user,
        action="delegation_created",
        delegation=row.id,
        delegate=row.delegate,
        starts=row.starts.isoformat(),
        ends=row.ends.isoformat(),
        forbidden_stages=sorted(config.policy.delegation.forbid),
    )
    return row


async def current(session: AsyncSession, *, user: str, now: datetime) -> list[Delegation]:
    """The user's delegations, given and received, not cancelled and not over."""
    return await away.current(session, user=user, now=now)


async def cancel(session: AsyncSession, *, config: Config, user: str, delegation_id: int, now: datetime) -> None:
    """Cancel one of the user's own delegations (audited)."""
    if not await away.cancel(session, delegation_id=delegation_id, delegator=user, now=now):
        raise NotFoundError(
            f"delegation {delegation_id} not cancellable by {user}",
            user_message=f"You have no delegation #{delegation_id} in force (see `/patch delegate list`).",
        )
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="delegation_cancelled", delegation=delegation_id
    )


async def vote_for(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    stage: Stage,
    progress: policy.StageProgress,
    user: str,
    now: datetime,
) -> Vote | str | None:
    """The delegated vote ``user`` may cast (steps in the module docstring), a refusal reason, or None."""
    # 1.
    given = await away.active_for(session, delegate=user, at=now)
    if not given:
        return None
    names = ", ".join(f"<@{d.delegator}>" for d in given)
    # 2.
    if user == change.requester or user in progress.excluded:
        return f"You requested or last edited {change.key}, so you cannot approve it, not even as delegate of {names}."
    # 3.
    if stage in config.policy.delegation.forbid:
        return f"Delegation is not allowed for the {stage} stage (policy); {names} or the fallback group decide."
    # 4.
    reasons = []
    for d in given:
        try:
            return Vote(d.delegator, policy.requirement_for(progress, d.delegator))
        except (AlreadyDoneError, PermissionDeniedError) as exc:
            reasons.append(f"as delegate of <@{d.delegator}>: {exc.user_message}")
    return "You cannot approve this " + "; ".join(reasons)
