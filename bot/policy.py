"""Approval rules as composable, fail-closed checks.

A stage's requirements come from ``policy.stages``: ``{role: owner}`` becomes one requirement per affected
system (each system's owner signs for their own system), ``{role: stakeholder}`` one over the union of
the systems' stakeholders, ``{group: NAME}`` one over that group. Requirements are counted over distinct
people: one person's approval fills at most one requirement (four eyes stay four eyes).

Who may never approve (unless ``self_approval: true``): the requester and the last editor. When the
eligible people left cannot fill a requirement, the ``fallback`` group becomes eligible for it, and the
card says so: a change never sits silently stuck.

A delegate's approval (issue 12) fills the delegator's requirement and uses up both people: the delegator
cannot vote again beside their delegate (``acting_for`` maps delegate to delegator).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.config import Config, Role
from bot.config import Requirement as Rule
from bot.errors import AlreadyDoneError, PermissionDeniedError


@dataclass(frozen=True)
class Requirement:
    """One concrete requirement: ``count`` distinct people out of ``eligible``."""

    key: str
    label: str
    eligible: frozenset[str]
    count: int


@dataclass(frozen=True)
class RequirementProgress:
    requirement: Requirement
    approvers: tuple[str, ...]
    candidates: frozenset[str]  # who may still fill it (eligible, not excluded, not yet used), fallback included
    uses_fallback: bool

    @property
    def met(self) -> bool:
        return len(self.approvers) >= self.requirement.count

    @property
    def remaining(self) -> int:
        return max(0, self.requirement.count - len(self.approvers))

    @property
    def blocked(self) -> bool:
        """Nobody (not even the fallback group) is left who could fill it."""
        return not self.met and len(self.candidates) < self.remaining


@dataclass(frozen=True)
class StageProgress:
    """Where a stage's approval stands; computed from the policy and the live (non-stale) approvals."""

    stage: str
    requirements: tuple[RequirementProgress, ...]
    excluded: frozenset[str]
    fallback_group: str
    approvals: dict[str, str] = field(default_factory=dict)  # user -> requirement key
    acting_for: dict[str, str] = field(default_factory=dict)  # delegate -> delegator of a delegated approval

    @property
    def complete(self) -> bool:
        return all(r.met for r in self.requirements)

    def pending_people(self) -> frozenset[str]:
        """Everyone who could still fill an open requirement (for mentions and reminders)."""
        people: set[str] = set()
        for r in self.requirements:
            if not r.met:
                people |= r.candidates
        return frozenset(people)

    def eligible_anywhere(self, user: str) -> bool:
        """True when ``user`` is eligible for any requirement of this stage (needed to reject)."""
        return user not in self.excluded and any(
            user in r.requirement.eligible or (r.uses_fallback and user in r.candidates) for r in self.requirements
        )


def requirements(config: Config, systems: Sequence[str], stage: str) -> list[Requirement]:
    """The concrete requirements of ``stage`` for a change affecting ``systems``."""
    out: list[Requirement] = []
    for rule in stage_rules(config, stage):
        if rule.role is Role.OWNER:
            for name in systems:
                owner = config.systems[name].owner
                out.append(Requirement(f"owner:{name}", f"Owner of {name}", frozenset({owner}), rule.count))
        elif rule.role is Role.STAKEHOLDER:
            people = frozenset(p for name in systems for p in config.systems[name].stakeholders)
            out.append(Requirement("stakeholder", "Stakeholders", people, rule.count))
        else:
            assert rule.group is not None
            out.append(Requirement(f"group:{rule.group}", f"{rule.group} group", config.group(rule.group), rule.count))
    return out


def stage_rules(config: Config, stage: str) -> list[Rule]:
    """The configured rules of ``stage``; ``exception`` defaults to the owner plus the fallback (security) group."""
    if stage in config.policy.stages:
        return config.policy.stages[stage]
    if stage == "exception":
        return [Rule(role=Role.OWNER, count=1), Rule(group=config.policy.fallback, count=1)]
    raise KeyError(stage)


def excluded_people(config: Config, *, requester: str, last_editor: str) -> frozenset[str]:
    """Who may not approve: the requester and last editor, unless self-approval is allowed."""
    return frozenset() if config.policy.self_approval else frozenset({requester, last_editor})


def evaluate(
    config: Config,
    *,
    systems: Sequence[str],
    stage: str,
    requester: str,
    last_editor: str,
    approvals: Iterable[tuple[str, str | None]],
    acting_for: Mapping[str, str] | None = None,
) -> StageProgress:
    """Progress of ``stage`` given live approve decisions as (user, requirement key) pairs; ``acting_for``
    names the delegator of each delegated one."""
    excluded = excluded_people(config, requester=requester, last_editor=last_editor)
    reqs = requirements(config, systems, stage)
    by_req: dict[str, list[str]] = {r.key: [] for r in reqs}
    assigned: dict[str, str] = {}
    for user, key in approvals:
        if key in by_req and user not in assigned:
            by_req[key].append(user)
            assigned[user] = key
    delegated = {d: f for d, f in (acting_for or {}).items() if d in assigned}
    used = set(assigned) | set(delegated.values())
    fallback = config.group(config.policy.fallback)
    progress = []
    for r in reqs:
        candidates = r.eligible - excluded - used
        approvers = tuple(by_req[r.key])
        uses_fallback = False
        if len(candidates) < max(0, r.count - len(approvers)):
            candidates = candidates | (fallback - excluded - used)
            uses_fallback = True
        progress.append(RequirementProgress(r, approvers, frozenset(candidates), uses_fallback))
    return StageProgress(stage, tuple(progress), excluded, config.policy.fallback, assigned, delegated)


def requirement_for(progress: StageProgress, user: str) -> str:
    """The requirement key an approval by ``user`` would fill. Raises with a message naming who can approve.

    Checks, in order (fail closed):
    1. the user has not already approved this stage of this revision;
    2. the user is not excluded (requester / last editor without self-approval);
    3. the user is eligible for at least one requirement;
    4. one of those requirements is still open.
    """
    # 1. (a delegate's approval counts as the delegator's own)
    if user in progress.approvals or user in progress.acting_for.values():
        raise AlreadyDoneError(f"{user} already approved", user_message="You have already approved this stage.")
    who = _who_can(progress)
    # 2.
    if user in progress.excluded:
        raise PermissionDeniedError(
            f"{user} may not approve their own change",
            user_message=(
                "You requested or last edited this change, so you cannot approve it (no self-approval). "
                f"Who can approve: {who}."
            ),
        )
    eligible = [
        r for r in progress.requirements if user in r.requirement.eligible or (r.uses_fallback and user in r.candidates)
    ]
    # 3.
    if not eligible:
        raise PermissionDeniedError(
            f"{user} is not eligible for stage {progress.stage}",
            user_message=(
                f"You are not an approver for the {progress.stage} stage of this change. Who can approve: {who}."
            ),
        )
    # 4.
    for r in eligible:
        if not r.met:
            return r.requirement.key
    raise AlreadyDoneError(
        f"requirements of {user} already met",
        user_message="The requirement you can approve for is already met; nothing else is needed from you.",
    )


def _who_can(progress: StageProgress) -> str:
    people = sorted(progress.pending_people())
    if not people:
        return "nobody: every requirement is met" if progress.complete else "nobody is left (ask an administrator)"
    return ", ".join(f"<@{p}>" for p in people)
