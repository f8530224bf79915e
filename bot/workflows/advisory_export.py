"""Every match as a plain object, streamed page by page: ``patchwarden advisories list`` and scripts.

The object shape is a contract (issue 9): ``advisory``, ``aliases``, ``system``, ``package``, ``installed``,
``fixed`` (or null), ``severity`` (``{"label", "score", "source"}``), ``priority`` (tier), ``kev``, ``epss``
(or null), ``discovered``, ``sla_due`` (ISO 8601) and ``status`` (``not_affected`` with ``justification``
and ``reason`` where a vendor's VEX statement cleared the product); ``ecosystem``, ``justification`` and
``reason`` are extra. Nothing is capped: the generators page with keysets until every match and every
quarantined document has been yielded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.workflows import advisory_rank as rank
from bot.workflows.advisories import merged
from storage import advisories as store
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus

NOT_AFFECTED = "not_affected"
_STATUS = {AdvisoryStatus.NOT_APPLICABLE: NOT_AFFECTED}


def status_of(record: AdvisoryRecord, match: AdvisoryMatch) -> str:
    """The match's status word: ``not_affected`` where the vendor's VEX cleared the product, else the record's
    triage state, ``needs_triage`` for an undecided open match."""
    if match.status == NOT_AFFECTED:
        return NOT_AFFECTED
    if record.status is AdvisoryStatus.OPEN and match.status == "needs_triage":
        return "needs_triage"
    return _STATUS.get(record.status, record.status.value)


async def match_objects(session: AsyncSession, *, system: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """One contract object per match (of ``system``, or all), oldest match first."""
    async for page in store.match_pages(session, system=system):
        advs = {r.id: merged(r) for _, r in page}
        epss = await store.epss_for(session, {i for a in advs.values() for i in (a.id, *a.aliases)})
        for m, r in page:
            adv = advs[r.id]
            scores = [epss[i] for i in (adv.id, *adv.aliases) if i in epss]
            cleared = m.status == NOT_AFFECTED  # no clock runs on a product the vendor cleared
            yield {
                "advisory": r.primary_id,
                "aliases": list(adv.aliases),
                "system": m.system,
                "ecosystem": m.ecosystem,
                "package": m.package,
                "installed": m.installed,
                "fixed": m.fixed[0] if m.fixed else None,
                "severity": rank.severity_of(r, adv),
                "priority": m.priority or None,
                "kev": r.known_exploited,
                "epss": max(scores)[0] if scores else None,
                "discovered": m.discovered.isoformat() if m.discovered else None,
                "sla_due": m.due.isoformat() if m.due else (r.due.isoformat() if r.due and not cleared else None),
                "status": status_of(r, m),
                "justification": m.justification or None,  # the VEX label of a not_affected match
                "reason": m.reason or None,  # why: needs triage, or the vendor's statement
            }


async def quarantined(session: AsyncSession) -> AsyncIterator[dict[str, Any]]:
    """Every quarantined document: feed, document, reason, when."""
    async for page in store.quarantine_pages(session):
        for q in page:
            yield {"feed": q.source, "document": q.document, "reason": q.reason, "at": q.at.isoformat()}
