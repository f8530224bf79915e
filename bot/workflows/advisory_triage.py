"""Triage of posted advisories: link a change request, mark not applicable, snooze, list, manual entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories import priority
from bot.advisories.model import Advisory as AdvisoryModel
from bot.advisories.model import AffectedPackage, RangeEvent, Severity, VersionRange, content_hash
from bot.config import Config
from bot.errors import (
    ConflictError,
    IllegalTransitionError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from bot.views import SNOOZE_CHOICES, AdvisoryView, ChangeInput, effective_severity
from bot.workflows import advisory_rank as rank
from bot.workflows import lifecycle, sla
from bot.workflows.advisories import merged
from storage import advisories as store
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus, Change

TRIAGEABLE = (AdvisoryStatus.OPEN, AdvisoryStatus.SNOOZED)


async def load(session: AsyncSession, advisory_id: int, *, lock: bool = False) -> AdvisoryRecord:
    """The record, or NotFoundError."""
    record = await store.get(session, advisory_id, lock=lock)
    if record is None:
        raise NotFoundError(f"advisory {advisory_id} not found", user_message="That advisory no longer exists.")
    return record


async def views(
    session: AsyncSession, records: list[AdvisoryRecord], *, config: Config | None = None
) -> list[AdvisoryView]:
    """Views of several records with their matches (one query); with ``config``, the priority and why."""
    rows = await store.matches(session, [r.id for r in records])
    by: dict[int, list[AdvisoryMatch]] = {}
    for m in rows:
        by.setdefault(m.advisory_id, []).append(m)
    advs = {r.id: merged(r) for r in records}
    if config is None:
        return [AdvisoryView(r, advs[r.id], by.get(r.id, [])) for r in records]
    epss = await store.epss_for(session, {i for a in advs.values() for i in (a.id, *a.aliases)})
    return [explain(config, AdvisoryView(r, advs[r.id], by.get(r.id, [])), epss) for r in records]


def explain(config: Config, v: AdvisoryView, epss: Mapping[str, tuple[float, float]]) -> AdvisoryView:
    """The view with its top tier, why, and an overdue-on-arrival note."""
    order = tier_order(config)
    system = min(v.matches, key=lambda m: order.get(m.priority, len(order))).system if v.matches else ""
    s = rank.signals(config, v.record, v.advisory, system, epss)
    tier = min((m.priority for m in v.matches), key=lambda t: order.get(t, len(order))) if v.matches else ""
    first = min((m.discovered for m in v.matches if m.discovered), default=v.record.first_seen)
    arrival = sla.arrival_note(
        config.policy, tier=tier or s.severity, discovered=first, published=v.advisory.published,
        kev_due=v.advisory.kev_due_date,
    )  # fmt: skip
    return replace(v, tier=tier or "", why=tuple(priority.reasons(s)), arrival=arrival)


def tier_order(config: Config) -> dict[str, int]:
    """Tiers most urgent first: the policy's rules in order, then the severity bands."""
    names = [r.tier for r in config.policy.priority] + ["critical", "high", "medium", "low", "none", "unknown"]
    return {t: i for i, t in enumerate(dict.fromkeys(names))}


async def view(session: AsyncSession, advisory_id: int, *, config: Config | None = None) -> AdvisoryView:
    """The view of one record."""
    return (await views(session, [await load(session, advisory_id)], config=config))[0]


def should_post(config: Config, v: AdvisoryView) -> bool:
    """Post when a system is affected (or needs triage), or when critical and configured to post those too."""
    if v.record.status is AdvisoryStatus.WITHDRAWN:
        return False
    if v.matches:
        return True
    band = effective_severity(v.record.severity, known_exploited=v.record.known_exploited)
    return config.advisories.post_unmatched_critical and band == "critical"


def may_triage(config: Config, v: AdvisoryView, user: str) -> bool:
    """Owners of affected systems, operators and the fallback (security) group may triage."""
    allowed = set(sla.owners(config, v.systems))
    allowed |= config.group(config.policy.operators) | config.group(config.policy.fallback)
    return user in allowed


def require_triage(config: Config, v: AdvisoryView, user: str) -> None:
    """Raise PermissionDeniedError unless ``user`` may triage ``v``."""
    if not may_triage(config, v, user):
        raise PermissionDeniedError(
            f"{user} may not triage {v.record.primary_id}",
            user_message=f"Only the owners of the affected systems, operators or the {config.policy.fallback} "
            f"group can triage {v.record.primary_id}.",
        )


def _refuse_unless_triageable(record: AdvisoryRecord) -> None:
    if record.status not in TRIAGEABLE:
        raise IllegalTransitionError(
            f"{record.primary_id} is {record.status}",
            user_message=f"{record.primary_id} is already *{record.status.value.replace('_', ' ')}*.",
        )


async def _set_status(session: AsyncSession, record: AdvisoryRecord, *, now: datetime, **fields: object) -> None:
    if not await store.compare_and_set(session, record, expected=record.status, now=now, **fields):
        raise ConflictError(
            f"{record.primary_id} changed concurrently",
            user_message=f"{record.primary_id} was changed by someone else a moment ago; try again.",
        )


async def not_applicable(
    session: AsyncSession, *, config: Config, advisory_id: int, actor: str, reason: str, now: datetime
) -> AdvisoryView:
    """Mark an advisory not applicable, with a mandatory reason (audited)."""
    if not reason.strip():
        raise InputError("reason required", field_errors={"reason": "Say why it does not apply."})
    v = await view(session, advisory_id)
    require_triage(config, v, actor)
    _refuse_unless_triageable(v.record)
    triage = {"by": actor, "at": now.isoformat(), "kind": "not_applicable"}  # shown with the status (issue 10)
    await _set_status(
        session, v.record, now=now, status=AdvisoryStatus.NOT_APPLICABLE, status_reason=reason.strip(),
        remediation={**v.record.remediation, "triage": triage},
    )  # fmt: skip
    await lifecycle.log(
        session, config=config, now=now, actor=actor, action="advisory_not_applicable",
        advisory=v.record.primary_id, reason=reason.strip(), systems=v.systems,
    )  # fmt: skip
    return v


async def snooze(
    session: AsyncSession, *, config: Config, advisory_id: int, actor: str, choice: str, now: datetime
) -> AdvisoryView:
    """Hide an advisory for 1d/7d/30d (audited); it comes back when the time has passed."""
    if choice not in SNOOZE_CHOICES:
        raise UsageError(f"bad snooze {choice!r}", user_message=f"Snooze for one of {', '.join(SNOOZE_CHOICES)}.")
    v = await view(session, advisory_id)
    require_triage(config, v, actor)
    _refuse_unless_triageable(v.record)
    until = now + SNOOZE_CHOICES[choice]
    triage = {"by": actor, "at": now.isoformat(), "kind": "snoozed", "until": until.isoformat()}
    await _set_status(
        session, v.record, now=now, status=AdvisoryStatus.SNOOZED, snoozed_until=until,
        remediation={**v.record.remediation, "triage": triage},
    )  # fmt: skip
    await lifecycle.log(
        session, config=config, now=now, actor=actor, action="advisory_snoozed",
        advisory=v.record.primary_id, until=until.isoformat(),
    )  # fmt: skip
    return v


async def link_change(
    session: AsyncSession, *, config: Config, advisory_id: int, change: Change, actor: str, now: datetime
) -> AdvisoryRecord | None:
    """Link a new change request to the advisory (status: change requested); None if it cannot be linked."""
    record = await store.get(session, advisory_id, lock=True)
    if record is None or record.status not in TRIAGEABLE:
        return None  # the change stands on its own; the advisory was handled meanwhile
    await _set_status(
        session, record, now=now, status=AdvisoryStatus.CHANGE_REQUESTED, change_id=change.id, snoozed_until=None
    )
    await lifecycle.log(
        session, config=config, now=now, actor=actor, action="advisory_change_requested",
        change=change, advisory=record.primary_id,
    )  # fmt: skip
    return record


# The request's expected downtime, prefilled from what the vendor says the fix restarts (CSAF).
RESTART_WORDS = {
    "none": "none expected (no restart)",
    "service": "services restart; no host reboot",
    "machine": "the machine restarts",
}


def change_prefill(config: Config, v: AdvisoryView, *, requester: str) -> ChangeInput:
    """The change request form's initial values for remediating ``v``."""
    adv = v.advisory
    fixes = [f"{m.system}: {m.package} {m.installed} → {', '.join(m.fixed) or 'no fix listed'}" for m in v.matches]
    more = [f"…and {len(fixes) - 20} more: patchwarden advisories list --json"] if len(fixes) > 20 else []
    details = "\n".join([adv.summary or f"Remediate {adv.id}", "", *fixes[:20], *more]).strip()
    packages = ", ".join(dict.fromkeys(m.package for m in v.matches)) or "affected packages"
    return ChangeInput.model_construct(
        systems=[s for s in v.systems if s in config.systems],
        title=f"{adv.id}: update {packages}"[:200],
        details=details[:3000],
        technical="",
        officer=requester,
        operator=None,
        planned_test=None,
        planned_prod=None,
        expected_downtime=RESTART_WORDS.get(adv.restart, ""),
        rollback_plan="",
        advisory_ref=adv.id[:200],
    )


def _visible(record: AdvisoryRecord, now: datetime) -> bool:
    if record.status is AdvisoryStatus.SNOOZED:
        return record.snoozed_until is not None and record.snoozed_until <= now
    return record.status in sla.ACTIVE


PAGE = 40  # advisories per ``/patch advisories`` reply; the reply names the next page


async def listing(
    session: AsyncSession, *, config: Config, scope: str, now: datetime, page: int = 1
) -> tuple[list[AdvisoryView], int]:
    """One page (``PAGE`` records, soonest due first) of ``open`` (matching, not snoozed), ``overdue`` (past
    due) or a system's advisories, and how many there are in all: every one is reachable, page by page."""
    statuses = [*sla.ACTIVE, AdvisoryStatus.SNOOZED]
    if scope == "open":
        records = await store.list_records(session, statuses=statuses, with_matches=True)
    elif scope == "overdue":
        records = await store.list_records(session, statuses=statuses, with_matches=True, due_before=now)
    elif scope in config.systems:
        records = await store.list_records(session, statuses=statuses, system=scope)
    else:
        known = ", ".join(sorted(config.systems))
        raise UsageError(
            f"bad scope {scope!r}",
            user_message=f"`{scope[:40]}` is neither `open`, `overdue` nor a known system ({known}).",
        )
    visible = [r for r in records if _visible(r, now)]
    chunk = visible[(page - 1) * PAGE : page * PAGE]
    return await views(session, chunk, config=config), len(visible)


class ManualInput(BaseModel):
    """The manual advisory form (``/patch advisory add``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    advisory_id: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9:._-]{2,99}$")]
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
    severity: Severity = Severity.UNKNOWN
    ecosystem: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=64)]
    package: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    fixed: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""


def manual_advisory(raw: dict[str, object], *, now: datetime) -> AdvisoryModel:
    """Validate the manual form into an advisory (every version before ``fixed``, or all if none)."""
    try:
        data = ManualInput.model_validate(raw)
    except ValidationError as exc:
        errors = {str(e["loc"][0]): e["msg"].removeprefix("Value error, ") for e in exc.errors() if e["loc"]}
        raise InputError("invalid manual advisory", field_errors=errors) from exc
    events = [RangeEvent(introduced="0")] + ([RangeEvent(fixed=data.fixed)] if data.fixed else [])
    body = data.model_dump(mode="json")
    return AdvisoryModel(
        id=data.advisory_id,
        source="manual",
        summary=data.summary,
        published=now,
        modified=now,
        severity=data.severity,
        affected=(
            AffectedPackage(
                ecosystem=data.ecosystem,
                name=data.package,
                ranges=(VersionRange(type="ECOSYSTEM", events=tuple(events)),),
            ),
        ),
        content_hash=content_hash(body),
    )
