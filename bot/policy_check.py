"""Impossible policies, caught at config time: ``check-config`` and ``serve`` warn before a change is stuck.

For every system and stage, and for every person the configuration names as requester (plus someone it
does not name), the approval is played out with ``bot.policy``'s own rules (exclusions, distinct people,
the fallback group): if no sequence of approvals completes the stage, that requester's change could never
get it approved ("waiting for nobody"). A stage whose first reminder would be addressed to nobody is
reported too. Changes spanning several systems are stricter still; the single-system check catches the
policy mistakes (the owner requests and the only other eligible person is excluded too).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import policy
from bot.config import Config
from bot.errors import PatchwardenError

OUTSIDER = "(someone the configuration does not name)"
MAX_STATES = 5000  # approval orders explored per (system, stage, requester); policies are small


@dataclass(frozen=True)
class PolicyWarning:
    """One problem, naming the system, the stage and who would be stuck."""

    system: str
    stage: str
    requester: str
    problem: str  # "never" (cannot be approved) | "nobody" (a reminder would go to nobody)

    def __str__(self) -> str:
        who = self.requester
        if self.problem == "nobody":
            return (
                f"system {self.system}, stage {self.stage}: a change requested by {who} can get stuck with its "
                "reminders going to nobody (if the fallback group fills another requirement first, no eligible "
                "person is left for the rest)"
            )
        return (
            f"system {self.system}, stage {self.stage}: a change requested by {who} can never be approved "
            "(after the requester is excluded, not enough distinct eligible people or fallback members are left)"
        )


def people_of(config: Config) -> list[str]:
    """Everyone the configuration names: owners, stakeholders and group members, sorted."""
    people = {s.owner for s in config.systems.values()}
    people |= {p for s in config.systems.values() for p in s.stakeholders}
    people |= {p for members in config.groups.values() for p in members}
    return sorted(people)


def check(config: Config) -> list[PolicyWarning]:
    """Every (system, stage, requester) whose approval could never complete, or could get stuck reminding nobody."""
    out: list[PolicyWarning] = []
    for system in config.systems:
        for stage in config.policy.stages:
            for requester in [*people_of(config), OUTSIDER]:
                completable, stuck = _play(config, system, stage, requester)
                if not completable:
                    out.append(PolicyWarning(system, stage, requester, "never"))
                elif stuck:
                    out.append(PolicyWarning(system, stage, requester, "nobody"))
    return out


def _progress(
    config: Config, system: str, stage: str, requester: str, approvals: tuple[tuple[str, str], ...]
) -> policy.StageProgress:
    return policy.evaluate(
        config, systems=[system], stage=stage, requester=requester, last_editor=requester, approvals=approvals
    )


def _play(config: Config, system: str, stage: str, requester: str) -> tuple[bool, bool]:
    """Every order of approvals ``policy.requirement_for`` accepts: (some order completes the stage,
    some order gets stuck with nobody left to remind)."""
    seen: set[frozenset[tuple[str, str]]] = set()
    completable = stuck = False
    todo: list[frozenset[tuple[str, str]]] = [frozenset()]
    while todo and len(seen) < MAX_STATES:
        approvals = todo.pop()
        if approvals in seen:
            continue
        seen.add(approvals)
        progress = _progress(config, system, stage, requester, tuple(sorted(approvals)))
        if progress.complete:
            completable = True
            continue
        moves = 0
        for user in sorted(progress.pending_people()):
            try:
                key = policy.requirement_for(progress, user)
            except PatchwardenError:
                continue
            moves += 1
            todo.append(approvals | {(user, key)})
        stuck = stuck or moves == 0
    return completable, stuck
