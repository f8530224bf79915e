"""Exceptions with quorum and expiry: "we accept this risk until D" or "not affected, because ...".

1. ``request`` opens an exception for one advisory on one system: ``accept`` or ``not_affected`` (which
   needs an OpenVEX justification), a reason and an end date (at most ``MAX_DAYS`` ahead). An exception
   asked for while another one is approved for the same advisory and system is its renewal (counted).
2. ``approve`` counts approvals under ``policy.stages.exception`` (default: the system's owner plus the
   fallback group, security), with the same fail-closed checks as changes (``policy.requirement_for``;
   the requester never approves their own exception unless ``self_approval``).
3. Once the quorum is met the exception is ``approved``: when every affected system of the advisory is
   covered, the advisory becomes ``risk_accepted`` / ``not_affected`` and is no longer escalated.
4. ``sweep``: ``policy.exception_remind_before`` (default 3d) before the end the thread re-asks with
   today's KEV/EPSS status; at the end the exception expires, the advisory reopens and its SLA restarts.

Every step is written to the control log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot import policy
from bot.config import Config
from bot.errors import ConflictError, InputError, NotFoundError
from bot.workflows import lifecycle, sla
from storage import advisories as advisory_store
from storage import exceptions as store
from storage.models import AdvisoryException as AdvisoryException  # re-exported for the listeners
from storage.models import AdvisoryRecord as AdvisoryRecord
from storage.models import AdvisoryStatus, ExceptionState
from storage.models import ExceptionKind as ExceptionKind

STAGE = "exception"
MAX_DAYS = 366
JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)
EXCEPTED = (AdvisoryStatus.RISK_ACCEPTED, AdvisoryStatus.NOT_AFFECTED)


@dataclass(frozen=True)
class Nudge:
    """What the sweep wants said in an exception's thread."""

    kind: str  # reminder | expired
    exception: AdvisoryException
    record: AdvisoryRecord
    people: tuple[str, ...]


async def _advisory(session: AsyncSession, ref: str) -> AdvisoryRecord:
    ids = await advisory_store.owners_of(session, [ref])
    record = await advisory_store.get(session, ids[0]) if ids else None
    if record is None:
        raise NotFoundError(f"no advisory {ref}", user_message=f"There is no advisory `{ref[:60]}`.")
    return record


async def subject(session: AsyncSession, *, config: Config, advisory_id: int) -> tuple[str, list[str]]:
    """The advisory's id and the configured systems it affects (the exception form's choices)."""
    record = await advisory_store.get(session, advisory_id)
    if record is None:
        raise NotFoundError(f"no advisory {advisory_id}", user_message="This advisory no longer exists.")
    systems = sorted({m.system for m in await advisory_store.matches(session, [record.id])} & set(config.systems))
    return record.primary_id, systems or sorted(config.systems)


def parse_until(text: str, *, now: datetime) -> datetime:
    """``YYYY-MM-DD`` (the end of that day, UTC) → a datetime in the future, at most ``MAX_DAYS`` ahead."""
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError as exc:
        raise InputError(f"`{text[:20]}` is not a date like 2027-01-31") from exc
    until = datetime.combine(day, time(23, 59), tzinfo=UTC)
    if until <= now:
        raise InputError("the end date must be in the future")
    if until - now > timedelta(days=MAX_DAYS):
        raise InputError(f"an exception lasts at most {MAX_DAYS} days; renew it when it ends")
    return until


async def request(
    session: AsyncSession,
    *,
    config: Config,
    advisory: str,
    system: str,
    kind: ExceptionKind,
    until: datetime,
    reason: str,
    justification: str | None,
    user: str,
    now: datetime,
) -> tuple[AdvisoryException, AdvisoryRecord]:
    """Step 1: store a pending exception (or a renewal) and log it."""
    record = await _advisory(session, advisory)
    if system not in config.systems:
        raise InputError(f"unknown system {system!r}; known: {', '.join(sorted(config.systems))}")
    if kind is ExceptionKind.NOT_AFFECTED and justification not in JUSTIFICATIONS:
        raise InputError(f"not-affected needs one of the OpenVEX justifications: {', '.join(JUSTIFICATIONS)}")
    if not reason.strip():
        raise InputError("say why (the reason is shown to the approvers and kept in the control log)")
    live = await store.in_states(session, [ExceptionState.APPROVED, ExceptionState.PENDING], advisory_ids=[record.id])
    same = [e for e in live if e.system == system]
    if any(e.state is ExceptionState.PENDING for e in same):
        raise ConflictError("exception pending", user_message="An exception for this is already waiting for approval.")
    previous = same[-1] if same else None
    row = await store.add(
        session,
        AdvisoryException(
            advisory_id=record.id, system=system, kind=kind, reason=reason.strip()[:2000], until=until,
            justification=justification if kind is ExceptionKind.NOT_AFFECTED else None,
            state=ExceptionState.PENDING, requested_by=user, requested_at=now, approvals=[],
            renewal_of=previous.id if previous else None, renewals=(previous.renewals + 1) if previous else 0,
            previous_status=record.status.value,
        ),
    )  # fmt: skip
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="exception_requested", advisory=record.primary_id,
        exception_id=row.id, system=system, kind=kind.value, justification=row.justification,
        until=until.isoformat(), reason=row.reason, renewal_of=row.renewal_of,
    )  # fmt: skip
    return row, record


def progress(config: Config, row: AdvisoryException) -> policy.StageProgress:
    """Where the exception's quorum stands."""
    return policy.evaluate(
        config, systems=[row.system], stage=STAGE, requester=row.requested_by, last_editor=row.requested_by,
        approvals=[(a["user"], a["requirement"]) for a in row.approvals],
    )  # fmt: skip


async def approve(
    session: AsyncSession, *, config: Config, exception_id: int, user: str, now: datetime
) -> tuple[AdvisoryException, AdvisoryRecord, bool]:
    """Step 2–3: count ``user``'s approval; returns the row, the advisory and whether it is now approved."""
    row = await store.get(session, exception_id, lock=True)
    if row is None:
        raise NotFoundError(f"no exception {exception_id}", user_message="This exception no longer exists.")
    record = await _load_record(session, row.advisory_id)
    if row.state is not ExceptionState.PENDING:
        raise ConflictError("decided", user_message=f"This exception is already {row.state.value}.")
    key = policy.requirement_for(progress(config, row), user)  # raises, naming who can approve
    row.approvals = [*row.approvals, {"user": user, "requirement": key, "at": now.isoformat()}]
    await session.flush()
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="exception_approval", advisory=record.primary_id,
        exception_id=row.id, requirement=key,
    )  # fmt: skip
    if not progress(config, row).complete:
        return row, record, False
    await store.compare_and_set(session, row.id, expected=ExceptionState.PENDING, state=ExceptionState.APPROVED,
                                decided_at=now)  # fmt: skip
    if row.renewal_of is not None:
        await store.compare_and_set(session, row.renewal_of, expected=ExceptionState.APPROVED,
                                    state=ExceptionState.RENEWED)  # fmt: skip
    await session.refresh(row)
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="exception_approved", advisory=record.primary_id,
        exception_id=row.id, approved_by=approved_by(row), until=row.until.isoformat(), renewals=row.renewals,
    )  # fmt: skip
    await _apply(session, config=config, record=record, now=now)
    return row, record, True


def approved_by(row: AdvisoryException) -> list[str]:
    """Who approved the exception, in order."""
    return [str(a["user"]) for a in row.approvals]


async def _load_record(session: AsyncSession, advisory_id: int) -> AdvisoryRecord:
    record = await advisory_store.get(session, advisory_id, lock=True)
    assert record is not None
    return record


async def _apply(session: AsyncSession, *, config: Config, record: AdvisoryRecord, now: datetime) -> None:
    """The advisory's status follows its approved exceptions (all affected systems covered → excepted)."""
    approved = await store.in_states(session, [ExceptionState.APPROVED], advisory_ids=[record.id])
    affected = {m.system for m in await advisory_store.matches(session, [record.id])}
    covered = {e.system for e in approved}
    if not approved or not affected <= covered:
        return
    kind = (
        AdvisoryStatus.RISK_ACCEPTED
        if any(e.kind is ExceptionKind.ACCEPT for e in approved)
        else AdvisoryStatus.NOT_AFFECTED
    )
    latest = approved[-1]
    summary = {
        "kind": latest.kind.value, "until": min(e.until for e in approved).isoformat(),
        "approved_by": approved_by(latest), "justification": latest.justification, "renewals": latest.renewals,
        "id": latest.id,
    }  # fmt: skip
    await advisory_store.compare_and_set(
        session, record, expected=record.status, now=now, status=kind,
        remediation={**record.remediation, "exception": summary},
    )  # fmt: skip


async def sweep(session: AsyncSession, *, config: Config, now: datetime) -> list[Nudge]:
    """Step 4: remind before the end, expire at the end (the advisory reopens, its SLA restarts)."""
    nudges: list[Nudge] = []
    remind = config.policy.exception_remind_before
    for row in await store.in_states(session, [ExceptionState.APPROVED]):
        record = await _load_record(session, row.advisory_id)
        people = tuple(dict.fromkeys([config.systems[row.system].owner, *sorted(config.group(config.policy.fallback))]))
        if now >= row.until:
            if not await store.compare_and_set(session, row.id, expected=ExceptionState.APPROVED,
                                               state=ExceptionState.EXPIRED):  # fmt: skip
                continue
            if record.status in EXCEPTED:
                severity = record.severity
                due = now + timedelta(days=sla.sla_days(config.policy, severity))
                rest = {k: v for k, v in record.remediation.items() if k != "exception"}
                await advisory_store.compare_and_set(
                    session, record, expected=record.status, now=now, status=AdvisoryStatus.OPEN, due=due,
                    escalated_at=None, last_reminder_at=None, remediation=rest,
                )  # fmt: skip
            await lifecycle.log(
                session, config=config, now=now, actor="patchwarden", action="exception_expired",
                advisory=record.primary_id, exception_id=row.id, due=record.due.isoformat() if record.due else None,
            )  # fmt: skip
            nudges.append(Nudge("expired", row, record, people))
        elif now >= row.until - remind and await store.claim_reminder(session, row.id, now=now):
            await lifecycle.log(
                session, config=config, now=now, actor="patchwarden", action="exception_reminded",
                advisory=record.primary_id, exception_id=row.id, known_exploited=record.known_exploited,
            )  # fmt: skip
            nudges.append(Nudge("reminder", row, record, people))
    return nudges


async def set_message(session: AsyncSession, *, exception_id: int, channel: str, ts: str) -> None:
    """Remember where the exception's card is (its thread carries reminders and the expiry)."""
    row = await store.get(session, exception_id, lock=True)
    if row is not None:
        row.channel, row.message_ts = channel, ts


def risk_today(record: AdvisoryRecord) -> str:
    """Today's KEV/EPSS status of the advisory, for the reminder."""
    kev = "*known exploited* (CISA KEV)" if record.known_exploited else "not in CISA KEV"
    epss = record.data.get("epss")
    return f"{kev}; EPSS {epss}" if epss is not None else f"{kev}; no EPSS score known"
