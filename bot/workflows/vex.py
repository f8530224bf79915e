"""Decisions leave as VEX: one statement per advisory and affected system, from what patchwarden decided.

- an approved ``not-affected`` exception → ``not_affected`` with its OpenVEX justification; a triage
  "Not applicable" → ``not_affected`` with its reason as the impact statement;
- an approved ``accept`` exception → ``affected`` with the acceptance (until, by whom) as action statement;
- ``remediated`` (proven by inventory) → ``fixed``, with the verification time;
- a system whose every match a vendor's VEX cleared (CSAF ``known_not_affected``, stored as a ``not_affected``
  match) → ``not_affected`` with the vendor's justification label and statement (impact statement);
- a match still needing triage → ``under_investigation``;
- anything else affected → ``affected``, the action statement naming the change and its window, or the due
  date when no change exists yet.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories import vex
from bot.advisories.model import VEX_JUSTIFICATIONS
from bot.config import Config
from bot.errors import InputError
from storage import advisories as advisory_store
from storage import changes, windows
from storage import exceptions as exception_store
from storage import inventory as inventory_store
from storage.models import (
    AdvisoryException,
    AdvisoryMatch,
    AdvisoryRecord,
    AdvisoryStatus,
    ExceptionKind,
    ExceptionState,
)

NOT_AFFECTED = "not_affected"


async def statements(
    session: AsyncSession, *, config: Config, system: str | None = None, now: datetime
) -> list[vex.Statement]:
    """Every decision (of ``system``, or of all systems) as a VEX statement."""
    if system is not None and system not in config.systems:
        raise InputError(f"unknown system {system!r}; known: {', '.join(sorted(config.systems))}")
    records = [r for r in await advisory_store.all_records(session) if r.status is not AdvisoryStatus.WITHDRAWN]
    matches = await advisory_store.matches(session, [r.id for r in records], not_affected=True)
    approved = await exception_store.in_states(session, [ExceptionState.APPROVED])
    purls = {(p.system, p.name, p.version): p.purl for p in await inventory_store.packages(session) if p.purl}
    by_record: dict[int, dict[str, list[AdvisoryMatch]]] = {}
    for m in matches:
        if system is None or m.system == system:
            by_record.setdefault(m.advisory_id, {}).setdefault(m.system, []).append(m)
    out: list[vex.Statement] = []
    for record in records:
        for name, hits in sorted(by_record.get(record.id, {}).items()):
            live = [m for m in hits if m.status != NOT_AFFECTED]
            if not live:
                out.append(_vendor_cleared(record, name, hits, purls))
                continue
            exc = next((e for e in approved if e.advisory_id == record.id and e.system == name), None)
            subs = tuple(p for m in live if (p := purls.get((name, m.package, m.installed))))
            out.append(
                await _statement(session, record, name, subs, exc, triage=all(m.status != "affected" for m in live))
            )
    return out


def _vendor_cleared(
    record: AdvisoryRecord, system: str, hits: list[AdvisoryMatch], purls: dict[tuple[str, str, str], str]
) -> vex.Statement:
    """``not_affected`` for a system whose every match the vendor's own VEX statement cleared."""
    labels = list(dict.fromkeys(m.justification for m in hits if m.justification in VEX_JUSTIFICATIONS))
    words = "; ".join(dict.fromkeys(f"{m.package} {m.installed}: {m.reason}" for m in hits if m.reason))
    words = words or "the vendor states these products are not affected"
    # OpenVEX takes exactly one of a justification label and an impact statement: the label when the vendor
    # gave one (their words go to the notes), else their words.
    label = labels[0] if len(labels) == 1 else None
    return vex.Statement(
        vulnerability=record.primary_id,
        aliases=tuple(a for a in record.aliases if a != record.primary_id),
        product=vex.system_purl(system),
        subcomponents=tuple(p for m in hits if (p := purls.get((system, m.package, m.installed)))),
        status="not_affected",
        timestamp=record.updated_at,
        justification=label,
        impact_statement=None if label else words,
        status_notes=f"Cleared by the vendor's VEX statement (CSAF known_not_affected): {words}",
    )


async def _action(session: AsyncSession, record: AdvisoryRecord) -> str:
    if record.change_id is None:
        due = f" by {record.due:%Y-%m-%d}" if record.due else ""
        return f"No change requested yet; remediation is due{due} under the patch policy."
    change = await changes.get(session, record.change_id)
    window = next((w for w in await windows.for_change(session, record.change_id) if w.stage == "prod"), None)
    when = f", production window {window.start:%Y-%m-%d %H:%M}–{window.end:%H:%M} UTC" if window else ""
    state = change.state.value if change else "unknown"
    still = "; ".join(str(s) for s in record.remediation.get("still", []))
    after = f"; still vulnerable after it: {still}" if record.status is AdvisoryStatus.STILL_VULNERABLE else ""
    return f"Update through change CHG-{record.change_id} ({state}{when}){after}."


async def _statement(
    session: AsyncSession,
    record: AdvisoryRecord,
    system: str,
    subs: tuple[str, ...],
    exc: AdvisoryException | None,
    *,
    triage: bool,
) -> vex.Statement:
    base = vex.Statement(
        vulnerability=record.primary_id,
        aliases=tuple(a for a in record.aliases if a != record.primary_id),
        product=vex.system_purl(system),
        subcomponents=subs,
        status="affected",
        timestamp=record.updated_at,
    )
    if exc is not None:
        decided = exc.decided_at or exc.requested_at
        until = f"{exc.until:%Y-%m-%d}"
        if exc.kind is ExceptionKind.NOT_AFFECTED:
            note = f"{exc.reason} (until {until})"
            return replace(
                base, status="not_affected", timestamp=decided, justification=exc.justification, status_notes=note
            )
        by = ", ".join(str(a["user"]) for a in exc.approvals)
        note = f"Risk accepted until {until} (approved by {by}; renewals {exc.renewals}): {exc.reason}"
        return replace(base, timestamp=decided, action_statement=note)
    if record.status is AdvisoryStatus.REMEDIATED:
        at = record.remediated_at or record.updated_at
        how = "verified by inventory" if record.remediated_at else "its change completed"
        note = f"Fixed by CHG-{record.change_id}; {how} at {at.isoformat()}."
        return replace(base, status="fixed", timestamp=at, status_notes=note)
    if record.status is AdvisoryStatus.NOT_APPLICABLE:
        reason = record.status_reason or "triaged as not applicable"
        return replace(base, status="not_affected", impact_statement=reason)
    if triage:
        return replace(base, status="under_investigation")
    return replace(base, action_statement=await _action(session, record))


async def export(
    session: AsyncSession, *, config: Config, system: str | None, fmt: str, now: datetime
) -> dict[str, object]:
    """The VEX document (``openvex``, validated against the schema, or ``csaf``)."""
    found = await statements(session, config=config, system=system, now=now)
    if not found:
        raise InputError("there are no decisions to export" + (f" for {system}" if system else ""))
    doc_id = f"urn:uuid:{uuid.uuid4()}"
    if fmt == "csaf":
        return vex.csaf(found, doc_id=doc_id, author="patchwarden", now=now)
    doc = vex.openvex(found, doc_id=doc_id, author="patchwarden", now=now)
    vex.validate_openvex(doc)
    return doc
