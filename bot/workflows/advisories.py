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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories import severity
from bot.advisories.matching import MatchIndex
from bot.advisories.model import Advisory, Match, Severity
from bot.config import Config
from bot.feeds.base import FeedBatch
from bot.workflows import advisory_rank as rank
from bot.workflows import advisory_rows as match_rows
from bot.workflows import sla
from bot.workflows.advisory_rows import current_inventory
from storage import advisories as store
from storage import advisory_bulk as bulk
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus

__all__ = ["IngestResult", "Ingested", "current_inventory", "ingest", "merged", "rematch_all", "reprioritise"]

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
    new_systems: tuple[str, ...] = ()  # systems this batch found newly affected
    digested: bool = False  # reaches Slack through its systems' digest: no post of its own


@dataclass
class IngestResult:
    """What one batch did: records to post or update, and newly quarantined documents to report."""

    changed: list[Ingested] = field(default_factory=list)
    quarantined: list[int] = field(default_factory=list)
    unchanged: int = 0
    scores: int = 0  # EPSS scores stored (a complete daily snapshot)
    digests: dict[str, list[int]] = field(default_factory=dict)  # system -> records in its digest


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


@dataclass
class _Touched:
    record: AdvisoryRecord
    created: bool
    before: Advisory | None
    doc_keys: list[tuple[str, bool]] = field(default_factory=list)  # (feed:id, replaced an older version)


async def ingest(session: AsyncSession, *, config: Config, batch: FeedBatch, now: datetime) -> IngestResult:
    """Store a feed batch in bulk: merge by id and alias, re-match, prioritise, set due dates, quarantine.

    A few statements per batch rather than per record: aliases and records are read in chunks, a document
    whose ``content_hash`` is already stored costs no write, new records are inserted in one executemany,
    and the matches of the changed records are swapped in bulk (keeping each match's ``discovered`` time).
    Systems with more than ``advisories.digest_over`` new matches get one digest (see ``digests``).
    """
    result = IngestResult(unchanged=batch.unchanged)
    if batch.scores:
        rows = [s.model_dump() for s in batch.scores]
        result.scores = await bulk.replace_epss(session, rows)
        result.changed.extend(await reprioritise(session, config=config, now=now))
    ids = {i for a in batch.advisories for i in a.all_ids()}
    owner_ids = await bulk.alias_owners(session, ids)
    stored = await bulk.get_many(session, set(owner_ids.values()))
    owner: dict[str, AdvisoryRecord] = {alias: stored[i] for alias, i in owner_ids.items()}
    touched: dict[int, _Touched] = {}  # by id() of the record object: new records have no id yet
    new_aliases: list[tuple[str, AdvisoryRecord]] = []
    for advisory in batch.advisories:
        all_ids = advisory.all_ids()
        mine = [owner[i] for i in all_ids if i in owner]
        record = min(mine, key=lambda r: (r.id is None, r.id or 0)) if mine else None
        doc_key = f"{advisory.source}:{advisory.id}"
        if record is None:
            record = AdvisoryRecord(
                primary_id=advisory.id[:100],
                sources=[],
                aliases=[],
                data={"docs": {}},
                content_hash="",
                severity=advisory.severity.value,
                status=AdvisoryStatus.OPEN,
                remediation={},
                first_seen=now,
                updated_at=now,
            )  # transient: _rematch inserts it in bulk once every column is set
            touched[id(record)] = _Touched(record, True, None)
        old_doc = record.data.get("docs", {}).get(doc_key)
        if old_doc is not None and advisory.content_hash and old_doc.get("content_hash") == advisory.content_hash:
            result.unchanged += 1
            continue
        new_doc = advisory.model_dump(mode="json")
        if old_doc == new_doc:
            result.unchanged += 1
            continue
        state = touched.get(id(record))
        if state is None:
            state = touched[id(record)] = _Touched(record, False, merged(record))
        state.doc_keys.append((doc_key, old_doc is not None))
        record.data = {"docs": {**record.data.get("docs", {}), doc_key: new_doc}}  # a new dict: written
        for i in all_ids:
            if i not in owner:
                owner[i] = record
                new_aliases.append((i, record))
    changed = [t for t in touched.values() if t.doc_keys]
    result.changed.extend(await _rematch(session, config=config, touched=changed, now=now))
    await bulk.add_aliases(session, [{"alias": a[:100], "advisory_id": r.id} for a, r in new_aliases])
    for q in batch.quarantined:
        row = await store.quarantine(session, source=q.source, document=q.document, reason=q.reason, now=now)
        if row is not None:
            result.quarantined.append(row.id)
    return result


async def _rematch(session: AsyncSession, *, config: Config, touched: list[_Touched], now: datetime) -> list[Ingested]:
    """Re-merge, re-match and prioritise the touched records, then insert the new ones and swap matches in bulk.

    Every column of a new record is set before the one flush that inserts it (no INSERT-then-UPDATE).
    """
    if not touched:
        await session.flush()
        return []
    with session.no_autoflush:
        index = MatchIndex()
        index.set_systems(await current_inventory(session, config=config))
        old_rows = await store.matches(session, [t.record.id for t in touched if not t.created], not_affected=True)
        afters = {id(t.record): merged(t.record) for t in touched}
        epss = await store.epss_for(session, {i for a in afters.values() for i in (a.id, *a.aliases)})
    old_by: dict[int, list[AdvisoryMatch]] = {}
    for m in old_rows:
        old_by.setdefault(m.advisory_id, []).append(m)
    pending: list[tuple[_Touched, list[dict[str, Any]], tuple[str, ...]]] = []
    for t in touched:
        record, after = t.record, afters[id(t.record)]
        record.sources = sorted({k.split(":", 1)[0] for k in record.data.get("docs", {})})
        record.aliases = list(after.aliases)
        record.content_hash = after.content_hash
        record.severity = after.severity.value
        record.known_exploited = after.known_exploited
        record.published, record.modified, record.withdrawn = after.published, after.modified, after.withdrawn
        if after.withdrawn is not None:
            record.status = AdvisoryStatus.WITHDRAWN
        elif record.status is AdvisoryStatus.WITHDRAWN:
            record.status = AdvisoryStatus.OPEN
        record.updated_at = now
        before_rows = old_by.get(record.id, [])
        rows = match_rows.rows(index.rematch_advisory(after))
        match_rows.keep_discovered(rows, before_rows, now=now)
        rank.prioritise(config, record, after, rows, epss)
        moved = t.before is not None and match_rows.keys(rows) != match_rows.keys(before_rows)
        notes = list(
            dict.fromkeys(n for key, replaced in t.doc_keys for n in _notes(t.before, after, key, replaced, moved))
        )
        pending.append((t, rows, tuple(notes)))
    await bulk.insert_records(session, [t.record for t in touched if t.created])  # one executemany, ids set
    await session.flush()  # changed records get their columns
    out: list[Ingested] = []
    inserts: list[dict[str, Any]] = []
    for t, rows, said in pending:
        record = t.record
        for row in rows:
            row["advisory_id"] = record.id
        inserts.extend(rows)
        out.append(
            Ingested(
                record.id, t.created, said, matched=bool(match_rows.live(rows)) or record.message_ts is not None,
                new_systems=match_rows.new_systems(rows, old_by.get(record.id, [])),
            )
        )  # fmt: skip
    await bulk.swap_matches(session, [t.record.id for t in touched if not t.created], inserts)
    return out


async def rematch_all(session: AsyncSession, *, config: Config, now: datetime) -> list[Ingested]:
    """Re-match every live advisory after an inventory change; returns the records whose matches changed."""
    changed: list[Ingested] = []
    index: MatchIndex | None = None
    inventory = await current_inventory(session, config=config)
    async for page in store.record_pages(session):
        records = [r for r in page if r.status is not AdvisoryStatus.WITHDRAWN]
        advisories = {r.id: merged(r) for r in records}
        index = MatchIndex(advisories.values())
        by_id: dict[str, list[Match]] = {}
        for m in index.iter_matches(inventory):
            by_id.setdefault(m.advisory_id, []).append(m)
        old_by: dict[int, list[AdvisoryMatch]] = {}
        for stored in await store.matches(session, [r.id for r in records], not_affected=True):
            old_by.setdefault(stored.advisory_id, []).append(stored)
        epss = await store.epss_for(session, {i for a in advisories.values() for i in (a.id, *a.aliases)})
        swap: list[int] = []
        inserts: list[dict[str, Any]] = []
        for record in records:
            before = old_by.get(record.id, [])
            rows = match_rows.rows(by_id.get(record.primary_id, []))
            if match_rows.keys(rows) == match_rows.keys(before):
                continue
            match_rows.keep_discovered(rows, before, now=now)
            for row in rows:
                row["advisory_id"] = record.id
            rank.prioritise(config, record, advisories[record.id], rows, epss)
            record.updated_at = now
            swap.append(record.id)
            inserts.extend(rows)
            note = ("affected systems changed after an inventory import",)
            changed.append(Ingested(record.id, False, note, new_systems=match_rows.new_systems(rows, before)))
        await bulk.swap_matches(session, swap, inserts)
    return changed


async def reprioritise(session: AsyncSession, *, config: Config, now: datetime) -> list[Ingested]:
    """Recompute tiers and due dates of every live match (new EPSS scores, a changed policy).

    Returns the records whose top tier changed, with a note, so their posts are updated.
    """
    changed: list[Ingested] = []
    async for page in store.record_pages(session, statuses=[*sla.ACTIVE, AdvisoryStatus.SNOOZED], with_matches=True):
        advisories = {r.id: merged(r) for r in page}
        epss = await store.epss_for(session, {i for a in advisories.values() for i in (a.id, *a.aliases)})
        old_by: dict[int, list[AdvisoryMatch]] = {}
        for m in await store.matches(session, [r.id for r in page], not_affected=True):
            old_by.setdefault(m.advisory_id, []).append(m)
        swap: list[int] = []
        inserts: list[dict[str, Any]] = []
        for record in page:
            before = old_by.get(record.id, [])
            rows = [{c: getattr(m, c) for c in match_rows.COLUMNS} for m in before]
            rank.prioritise(config, record, advisories[record.id], rows, epss)
            if [(r["priority"], r["due"]) for r in rows] != [(m.priority, m.due) for m in before]:
                swap.append(record.id)
                inserts.extend(rows)
                record.updated_at = now
            tiers_before = sorted({m.priority for m in match_rows.live(before)})
            tiers_after = sorted({r["priority"] for r in match_rows.live(rows)})
            if tiers_before != tiers_after:
                note = (
                    f"priority {', '.join(tiers_before) or '—'} → {', '.join(tiers_after)} (new EPSS scores or policy)"
                )
                changed.append(Ingested(record.id, False, (note,)))
        await bulk.swap_matches(session, swap, inserts)
    return changed
