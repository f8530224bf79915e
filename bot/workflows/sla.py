"""SLA clocks of advisories: due dates by priority tier, reminders as they near, escalation when overdue.

Each match has its own clock (:func:`match_due`): by default (``policy.sla_from: discovered``) it starts
when patchwarden first saw that system affected, with ``published`` at the advisory's publication.
``policy.sla_days`` gives the days per tier (see :mod:`bot.advisories.priority`; without ``policy.priority``
the tiers are the severity bands, known-exploited counting as critical), and when ``policy.kev_due_date`` is
on, CISA's KEV due date wins if it is earlier. A match whose due date would already have passed when it was
discovered is *overdue on arrival*: it gets a fresh period from discovery and the post says so
(:func:`arrival_note`), so a first import does not escalate years of backlog in one burst. The record's due
date is its earliest match's. The sweep pages through every record (keyset), so nothing due is skipped.
An advisory's status follows its linked change: change requested while the change is open, remediated
once it completed, open again if the change ended any other way (cancelled, rejected, expired, failed,
rolled back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories import priority
from bot.config import Config, Policy, SlaFrom, VerifyFix
from bot.views import effective_severity
from bot.workflows import lifecycle
from storage import advisories as store
from storage import changes
from storage.models import TERMINAL, AdvisoryRecord, AdvisoryStatus, ChangeState

ACTIVE = (
    AdvisoryStatus.OPEN,
    AdvisoryStatus.CHANGE_REQUESTED,
    AdvisoryStatus.REMEDIATION_PENDING,  # not fixed until the inventory proves it: the SLA keeps running
    AdvisoryStatus.STILL_VULNERABLE,
)


def sla_days(policy: Policy, severity: str) -> int:
    """Days allowed for a tier or band; names the policy does not list (unknown, none) get its longest period."""
    return priority.sla_days(policy, severity)


def kev_deadline(kev_due: date) -> datetime:
    """CISA's due date as the end of that day, UTC."""
    return datetime(kev_due.year, kev_due.month, kev_due.day, 23, 59, 59, tzinfo=UTC)


def _own_due(
    policy: Policy, *, tier: str, discovered: datetime, published: datetime | None, kev_due: date | None
) -> datetime:
    start = published if policy.sla_from is SlaFrom.PUBLISHED and published is not None else discovered
    due = start + timedelta(days=sla_days(policy, tier))
    if kev_due is not None and policy.kev_due_date:
        due = min(due, kev_deadline(kev_due))
    return due


def match_due(
    policy: Policy, *, tier: str, discovered: datetime, published: datetime | None, kev_due: date | None
) -> datetime:
    """Due date of one match; overdue on arrival: a fresh ``sla_days[tier]`` from discovery instead."""
    due = _own_due(policy, tier=tier, discovered=discovered, published=published, kev_due=kev_due)
    return due if due > discovered else discovered + timedelta(days=sla_days(policy, tier))


def arrival_note(
    policy: Policy, *, tier: str, discovered: datetime, published: datetime | None, kev_due: date | None
) -> str:
    """``overdue by its own dates since 2021-03-04 (...)`` when the advisory's dates had passed at discovery."""
    dates: list[tuple[datetime, str]] = []
    if published is not None:
        dates.append((published + timedelta(days=sla_days(policy, tier)), f"published {published.date()}"))
    if kev_due is not None:
        dates.append((kev_deadline(kev_due), "CISA KEV due date"))
    past = [(d, why) for d, why in dates if d <= discovered]
    if not past:
        return ""
    d, why = min(past)
    return f"overdue by its own dates since {d.date()} ({why}) before we saw it"


def due_date(
    policy: Policy,
    *,
    severity: str,
    known_exploited: bool,
    fix_published: datetime,
    kev_due: date | None = None,
) -> datetime:
    """Due = fix publication + sla_days[band]; min with the KEV due date (end of that day, UTC) if configured."""
    band = effective_severity(severity, known_exploited=known_exploited)
    due = fix_published + timedelta(days=sla_days(policy, band))
    if kev_due is not None and policy.kev_due_date:
        kev = datetime(kev_due.year, kev_due.month, kev_due.day, 23, 59, 59, tzinfo=UTC)
        due = min(due, kev)
    return due


@dataclass(frozen=True)
class Nudge:
    """Something the sweep decided to say about one advisory (posted after the transaction)."""

    kind: str  # reminder | overdue | unsnoozed | remediated | reopened
    record: AdvisoryRecord
    systems: tuple[str, ...] = ()
    people: tuple[str, ...] = field(default=())


def owners(config: Config, systems: list[str] | tuple[str, ...]) -> list[str]:
    """Owners of the named systems that the configuration knows, without duplicates."""
    return list(dict.fromkeys(config.systems[s].owner for s in systems if s in config.systems))


async def follow_change(
    session: AsyncSession, *, config: Config, record: AdvisoryRecord, now: datetime
) -> Nudge | None:
    """Move a change-requested advisory along with its change; None when nothing changed."""
    if record.status is not AdvisoryStatus.CHANGE_REQUESTED or record.change_id is None:
        return None
    change = await changes.get(session, record.change_id)
    if change is None or change.state not in TERMINAL:
        return None
    fields: dict[str, object]
    if change.state is ChangeState.COMPLETED and config.policy.verify_fix is VerifyFix.INVENTORY:
        # the fix is proven by the inventory (workflows.remediation), not by the change completing
        evidence = {"change_id": change.id, "systems": list(change.systems)}
        new, kind, fields = AdvisoryStatus.REMEDIATION_PENDING, "remediation_pending", {"remediation": evidence}
    elif change.state is ChangeState.COMPLETED:
        new, kind, fields = AdvisoryStatus.REMEDIATED, "remediated", {"remediated_at": now}
    else:
        new, kind, fields = AdvisoryStatus.OPEN, "reopened", {"change_id": None}
    if not await store.compare_and_set(
        session, record, expected=AdvisoryStatus.CHANGE_REQUESTED, now=now, status=new, **fields
    ):
        return None
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor="patchwarden",
        action=f"advisory_{kind}",
        change=change,
        advisory=record.primary_id,
        change_state=change.state.value,
    )
    return Nudge(kind, record, people=(change.requester,))


def _reminder_due(config: Config, record: AdvisoryRecord, now: datetime) -> bool:
    """True when a reminder threshold (e.g. 7 days, 1 day before due) was crossed since the last one."""
    if record.due is None or now >= record.due:
        return False
    crossed = [record.due - before for before in config.advisories.remind_before if now >= record.due - before]
    if not crossed:
        return False
    latest = max(crossed)
    return record.last_reminder_at is None or record.last_reminder_at < latest


async def sweep(session: AsyncSession, *, config: Config, now: datetime) -> list[Nudge]:
    """Un-snooze, follow linked changes, remind and escalate every record due; each step is a claim."""
    nudges: list[Nudge] = []
    async for page in store.record_pages(session, statuses=[AdvisoryStatus.SNOOZED]):
        for record in page:
            if record.snoozed_until is None or record.snoozed_until > now:
                continue
            if await store.compare_and_set(
                session, record, expected=AdvisoryStatus.SNOOZED, now=now, status=AdvisoryStatus.OPEN
            ):
                nudges.append(Nudge("unsnoozed", record))
    async for page in store.record_pages(session, statuses=[AdvisoryStatus.CHANGE_REQUESTED]):
        for record in page:
            nudge = await follow_change(session, config=config, record=record, now=now)
            if nudge is not None:
                nudges.append(nudge)
    security = sorted(config.group(config.policy.fallback))
    async for page in store.record_pages(session, statuses=list(ACTIVE), with_matches=True):
        systems: dict[int, list[str]] = {}
        for m in await store.matches(session, [r.id for r in page]):
            systems.setdefault(m.advisory_id, [])
            if m.system not in systems[m.advisory_id]:
                systems[m.advisory_id].append(m.system)
        for record in page:
            nudge = await _clock(session, config=config, record=record, affected=tuple(systems.get(record.id, ())),
                                 security=security, now=now)  # fmt: skip
            if nudge is not None:
                nudges.append(nudge)
    return nudges


async def _clock(
    session: AsyncSession,
    *,
    config: Config,
    record: AdvisoryRecord,
    affected: tuple[str, ...],
    security: list[str],
    now: datetime,
) -> Nudge | None:
    """Escalate one record once it is due (a claim), or remind as its due date nears."""
    if record.due is None or not affected:
        return None
    if now >= record.due and record.escalated_at is None:
        if not await store.claim_field(session, record.id, "escalated_at", now):
            return None
        people = tuple(dict.fromkeys([*owners(config, affected), *security]))
        await lifecycle.log(
            session, config=config, now=now, actor="patchwarden", action="advisory_escalated",
            advisory=record.primary_id, due=record.due.isoformat(), people=list(people),
        )  # fmt: skip
        return Nudge("overdue", record, affected, people)
    if _reminder_due(config, record, now):
        await store.set_fields(session, record.id, last_reminder_at=now)
        return Nudge("reminder", record, affected, tuple(owners(config, affected)))
    return None
