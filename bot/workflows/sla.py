"""SLA clocks of advisories: due dates by severity, reminders as they near, escalation when overdue.

The clock starts when the fix was published (the advisory's publication time, else when we first saw it).
``policy.sla_days`` gives the days per severity band; a known-exploited advisory counts as critical, and
when ``policy.kev_due_date`` is on, CISA's KEV due date wins if it is earlier. An advisory's status follows
its linked change: change requested while the change is open, remediated once it completed, open again if
the change ended any other way (cancelled, rejected, expired, failed, rolled back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config, Policy, VerifyFix
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
    """Days allowed for a band; bands the policy does not name (unknown, none) get its longest period."""
    return policy.sla_days.get(severity, max(policy.sla_days.values(), default=90))


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
    """Un-snooze, follow linked changes, remind and escalate; every step is a claim, so replicas agree."""
    nudges: list[Nudge] = []
    for record in await store.list_records(session, statuses=[AdvisoryStatus.SNOOZED]):
        if record.snoozed_until is None or record.snoozed_until > now:
            continue
        if await store.compare_and_set(
            session, record, expected=AdvisoryStatus.SNOOZED, now=now, status=AdvisoryStatus.OPEN
        ):
            nudges.append(Nudge("unsnoozed", record))
    for record in await store.list_records(session, statuses=[AdvisoryStatus.CHANGE_REQUESTED]):
        nudge = await follow_change(session, config=config, record=record, now=now)
        if nudge is not None:
            nudges.append(nudge)
    records = await store.list_records(session, statuses=list(ACTIVE), with_matches=True)
    rows = await store.matches(session, [r.id for r in records])
    systems: dict[int, list[str]] = {}
    for m in rows:
        systems.setdefault(m.advisory_id, [])
        if m.system not in systems[m.advisory_id]:
            systems[m.advisory_id].append(m.system)
    security = sorted(config.group(config.policy.fallback))
    for record in records:
        affected = tuple(systems.get(record.id, ()))
        if record.due is None or not affected:
            continue
        if now >= record.due and record.escalated_at is None:
            if await store.claim_field(session, record.id, "escalated_at", now):
                people = tuple(dict.fromkeys([*owners(config, affected), *security]))
                await lifecycle.log(
                    session,
                    config=config,
                    now=now,
                    actor="patchwarden",
                    action="advisory_escalated",
                    advisory=record.primary_id,
                    due=record.due.isoformat(),
                    people=list(people),
                )
                nudges.append(Nudge("overdue", record, affected, people))
        elif _reminder_due(config, record, now):
            await store.set_fields(session, record.id, last_reminder_at=now)
            nudges.append(Nudge("reminder", record, affected, tuple(owners(config, affected))))
    return nudges
