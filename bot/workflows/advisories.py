"""Advisories: ingest feed batches (de-duplicated by id and alias), match them against the inventory, SLA.

One ``AdvisoryRecord`` per vulnerability, whatever the number of feeds that report it: every id and alias
(CVE, GHSA, DSA, ...) points at the record through ``AdvisoryAlias``, and each feed's document is kept
under ``record.data["docs"]["<feed>:<id>"]``. The record's advisory is the merge of those documents (see
``merged``): a KEV entry makes a GHSA record known-exploited and gives it a due date, an OSV record gives a
KEV entry its affected packages. A document whose content changed is an upstream modification; a withdrawn
one withdraws the record once no live document remains. Ingesting the same batch twice changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories import inventory as inventory_files
from bot.advisories import severity
from bot.advisories.matching import MatchIndex
from bot.config import Config
from bot.feeds.base import FeedBatch
from bot.feeds.model import Advisory, InstalledPackage, Match, Severity
from bot.workflows import sla
from storage import advisories as store
from storage import inventory as inventory_store
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus

SEVERITY_ORDER = [
    Severity.CRITICAL,
    Severity.HIGH,
    Severity.MEDIUM,
    Severity.LOW,
    Severity.NONE,
    Severity.UNKNOWN,
]


@dataclass(frozen=True)
class Ingested:
    """A record that is new or changed by a batch; ``notes`` say what changed (for the post's thread)."""

    record_id: int
    created: bool
    notes: tuple[str, ...] = ()
    matched: bool = True  # affects (or may affect) a system: False lets the poster skip most KEV entries


@dataclass
class IngestResult:
    """What one batch did: records to post or update, and newly quarantined documents to report."""

    changed: list[Ingested] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)
    unchanged: int = 0


def merged(record: AdvisoryRecord) -> Advisory:
    """The record's advisory: the merge of every feed's document (withdrawn ones only if all are)."""
    docs = [Advisory.model_validate(d) for _, d in sorted(record.data.get("docs", {}).items())]
    live = [d for d in docs if d.withdrawn is None]
    use = live or docs
    with_packages = [d for d in use if d.affected]
    published = [d.published for d in (with_packages or use) if d.published is not None]
    modified = [d.modified for d in use if d.modified is not None]
    severities = [d.severity for d in use]
    scores = [d.cvss_score for d in use if d.cvss_score is not None]
    kev_dates = [d.kev_due_date for d in use if d.kev_due_date is not None]
    summary = next((d.summary for d in with_packages + use if d.summary), "")
    details = next((d.details for d in with_packages + use if d.details), "")
    ids = {i for d in docs for i in d.all_ids()} - {record.primary_id}
    digest = hashlib.sha256(
        "\n".join(f"{k}:{v.get('content_hash', '')}" for k, v in sorted(record.data.get("docs", {}).items())).encode()
    ).hexdigest()
    return Advisory(
        id=record.primary_id,
        source="+".join(sorted({d.source for d in docs})) or "unknown",
        aliases=tuple(sorted(ids)),
        summary=summary,
        details=details,
        published=min(published) if published else None,
        modified=max(modified) if modified else None,
        withdrawn=None if live or not docs else max(d.withdrawn for d in docs if d.withdrawn is not None),
        severity=min(severities, key=SEVERITY_ORDER.index) if severities else Severity.UNKNOWN,
        cvss_score=max(scores) if scores else None,
        cvss_vector=next((d.cvss_vector for d in use if d.cvss_vector), None),
        # issue 9 (severity sources, VEX): where the label came from, and vendor not-affected statements.
        severity_source=severity.merged_source(use, min(severities, key=SEVERITY_ORDER.index))[0] if severities else "",
        severity_flag=severity.merged_source(use, Severity.UNKNOWN)[1],
        known_exploited=any(d.known_exploited for d in use),
        kev_due_date=min(kev_dates) if kev_dates else None,
        affected=tuple(a for d in live for a in d.affected),
        not_affected=tuple(n for d in live for n in d.not_affected),
        references=tuple(dict.fromkeys(r for d in use for r in d.references)),
        content_hash=digest,
    )


async def current_inventory(session: AsyncSession, *, config: Config) -> dict[str, list[InstalledPackage]]:
    """Installed packages per system: the configured lists plus the stored SBOM imports."""
    systems: dict[str, list[InstalledPackage]] = {
        name: inventory_files.from_config(system) for name, system in config.systems.items() if system.packages
    }
    for row in await inventory_store.packages(session):
        systems.setdefault(row.system, []).append(
            InstalledPackage(
                ecosystem=row.ecosystem, name=row.name, version=row.version, release=row.release, purl=row.purl
            )
        )
    return systems


def _match_rows(matches: Sequence[Match]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for m in matches:
        pkg = m.package
        eco = f"{pkg.ecosystem}:{pkg.release}" if pkg.release else pkg.ecosystem
        rows.append(
            {
                "system": m.system[:64],
                "ecosystem": eco[:64],
                "package": pkg.name[:200],
                "installed": pkg.version[:100],
                "fixed": list(m.fixed_versions),
                "status": m.status.value,
                "reason": m.reason,
                "remediation": m.remediation,
            }
        )
    return rows


def _match_keys(rows: Sequence[AdvisoryMatch] | Sequence[dict[str, object]]) -> set[tuple[object, ...]]:
    out: set[tuple[object, ...]] = set()
    for r in rows:
        d = r if isinstance(r, dict) else {k: getattr(r, k) for k in ("system", "package", "installed", "fixed")}
        out.add((d["system"], d["package"], d["installed"], tuple(d["fixed"])))  # type: ignore[arg-type]
    return out


def _notes(before: Advisory | None, after: Advisory, doc_key: str, replaced: bool, moved: bool) -> list[str]:
    if before is None:
        return []
    notes: list[str] = []
    if replaced:
        notes.append(f"modified upstream ({doc_key.replace(':', ' ', 1)})")
    elif doc_key.split(":", 1)[0] != "kev":
        notes.append(f"also reported as {doc_key.replace(':', ' ', 1)}")
    if after.known_exploited and not before.known_exploited:
        due = f", CISA due date {after.kev_due_date}" if after.kev_due_date else ""
        notes.append(f"now listed as known exploited (CISA KEV{due})")
    if after.severity != before.severity:
        notes.append(f"severity {before.severity.value} → {after.severity.value}")
    if after.withdrawn and not before.withdrawn:
        notes.append("withdrawn upstream")
    elif before.withdrawn and not after.withdrawn:
        notes.append("no longer withdrawn")
    if moved:
        notes.append("affected systems or fixed versions changed")
    return notes


async def _ingest_one(
    session: AsyncSession, *, config: Config, advisory: Advisory, index: MatchIndex, now: datetime
) -> Ingested | None:
    ids = advisory.all_ids()
    owners = await store.owners_of(session, ids)
    doc_key = f"{advisory.source}:{advisory.id}"
    new_doc = advisory.model_dump(mode="json")
    created = not owners
    if created:
        record = await store.add(
            session,
            AdvisoryRecord(
                primary_id=advisory.id[:100],
                sources=[],
                aliases=[],
                data={"docs": {}},
                content_hash="",
                severity=advisory.severity.value,
                status=AdvisoryStatus.OPEN,
                first_seen=now,
                updated_at=now,
            ),
        )
    else:
        found = await store.get(session, owners[0], lock=True)
        assert found is not None  # the alias row's foreign key guarantees it
        record = found
    docs = dict(record.data.get("docs", {}))
    old_doc = docs.get(doc_key)
    if old_doc == new_doc:
        return None
    before = None if created else merged(record)
    before_matches = _match_keys(await store.matches(session, [record.id]))
    docs[doc_key] = new_doc
    record.data = {"docs": docs}  # a new dict, so the JSON column is written
    await store.claim_aliases(session, record.id, ids)
    after = merged(record)
    record.sources = sorted({k.split(":", 1)[0] for k in docs})
    record.aliases = list(after.aliases)
    record.content_hash = after.content_hash
    record.severity = after.severity.value
    record.known_exploited = after.known_exploited
    record.published, record.modified, record.withdrawn = after.published, after.modified, after.withdrawn
    record.due = sla.due_date(
        config.policy,
        severity=after.severity.value,
        known_exploited=after.known_exploited,
        fix_published=after.published or record.first_seen,
        kev_due=after.kev_due_date,
    )
    if after.withdrawn is not None:
        record.status = AdvisoryStatus.WITHDRAWN
    elif record.status is AdvisoryStatus.WITHDRAWN:
        record.status = AdvisoryStatus.OPEN
    record.updated_at = now
    rows = _match_rows(index.rematch_advisory(after))
    await store.replace_matches(session, record.id, rows)
    moved = before is not None and _match_keys(rows) != before_matches
    notes = _notes(before, after, doc_key, old_doc is not None, moved)
    return Ingested(record.id, created, tuple(notes), matched=bool(rows) or record.message_ts is not None)


async def ingest(session: AsyncSession, *, config: Config, batch: FeedBatch, now: datetime) -> IngestResult:
    """Store a feed batch: merge, re-match against the stored inventory, set due dates, quarantine refusals."""
    index = MatchIndex()
    index.set_systems(await current_inventory(session, config=config))
    result = IngestResult()
    for advisory in batch.advisories:
        outcome = await _ingest_one(session, config=config, advisory=advisory, index=index, now=now)
        if outcome is None:
            result.unchanged += 1
        else:
            result.changed.append(outcome)
    for q in batch.quarantined:
        row = await store.quarantine(session, source=q.source, document=q.document, reason=q.reason, now=now)
        if row is not None:
            result.quarantined.append(row.id)
    return result


async def rematch_all(session: AsyncSession, *, config: Config, now: datetime) -> list[Ingested]:
    """Re-match every live advisory after an inventory change; returns the records whose matches changed."""
    records = [r for r in await store.all_records(session) if r.status is not AdvisoryStatus.WITHDRAWN]
    advisories = {r.id: merged(r) for r in records}
    index = MatchIndex(advisories.values())
    by_id: dict[str, list[Match]] = {}
    for m in index.match_all(await current_inventory(session, config=config)):
        by_id.setdefault(m.advisory_id, []).append(m)
    changed: list[Ingested] = []
    old = await store.matches(session, [r.id for r in records])
    for record in records:
        before = _match_keys([m for m in old if m.advisory_id == record.id])
        rows = _match_rows(by_id.get(record.primary_id, []))
        if _match_keys(rows) != before:
            await store.replace_matches(session, record.id, rows)
            await store.set_fields(session, record.id, updated_at=now)
            changed.append(Ingested(record.id, False, ("affected systems changed after an inventory import",)))
    return changed
