"""The update control log: an append-only hash chain.

Each entry's ``body`` is canonical JSON of everything it records (seq, time, actor, action, change, policy
version, details); ``hash = sha256(prev_hash + "\\n" + body)``. Editing a row breaks its hash, deleting one
breaks the next ``prev_hash`` and the sequence, reordering breaks both. Truncating the tail is caught by
signed checkpoints (see bot.workflows.audit), which is why they are also posted outside the database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditCheckpoint, AuditEntry, AuditHead

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, body: str) -> str:
    """The hash of one entry given its predecessor's hash."""
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


async def append(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    policy_version: int | None,
    change_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction. The head row lock serialises concurrent writers."""
    head = await _locked_head(session)
    seq = head.seq + 1
    body = canonical(
        {
            "seq": seq,
            "at": at.isoformat(),
            "actor": actor,
            "action": action,
            "change_id": change_id,
            "policy_version": policy_version,
            "details": details or {},
        }
    )
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        change_id=change_id,
        policy_version=policy_version,
        body=body,
        prev_hash=head.hash,
        hash=chain_hash(head.hash, body),
    )
    session.add(entry)
    head.seq, head.hash = seq, entry.hash
    await session.flush()
    return entry


async def _locked_head(session: AsyncSession) -> AuditHead:
    """The head row, locked once per transaction (later appends in the same transaction reuse it)."""
    txn = session.sync_session.get_transaction()
    cached = session.info.get("audit_head")
    if cached is not None and cached[0] is txn:
        head: AuditHead = cached[1]
        return head
    found = (await session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())).scalar_one_or_none()
    if found is None:
        found = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(found)
    session.info["audit_head"] = (txn, found)
    return found


@dataclass(frozen=True)
class ChainReport:
    """Result of a chain verification: ``first_bad`` is None when the chain is intact."""

    entries: int
    last_seq: int
    last_hash: str
    first_bad: int | None = None
    problem: str = ""


async def iter_entries(session: AsyncSession, *, batch: int = 1000) -> AsyncIterator[AuditEntry]:
    """All entries in storage order (by seq), streamed in batches."""
    last = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for row in rows:
            yield row
        last = rows[-1].seq


def _check(entry: AuditEntry, expected_seq: int, prev_hash: str) -> str:
    try:
        body = json.loads(entry.body)
    except ValueError:
        return "body is not valid JSON"
    if entry.seq != expected_seq:
        return f"sequence gap: expected entry {expected_seq}, found {entry.seq} (an entry was deleted or moved)"
    if body.get("seq") != entry.seq:
        return f"entry claims position {body.get('seq')} but is stored at {entry.seq} (reordered)"
    if entry.prev_hash != prev_hash:
        return "prev_hash does not match the previous entry's hash (an entry before it was changed or removed)"
    if entry.hash != chain_hash(prev_hash, entry.body):
        return "hash does not match the entry's content (the entry was edited)"
    columns = {
        "actor": entry.actor,
        "action": entry.action,
        "change_id": entry.change_id,
        "policy_version": entry.policy_version,
    }
    for name, value in columns.items():
        if body.get(name) != value:
            return f"column {name} ({value!r}) differs from the hashed record ({body.get(name)!r})"
    return ""


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Recompute the chain; report the first bad entry (by position) if any."""
    prev, count, expected, last_seq = GENESIS, 0, 1, 0
    async for entry in iter_entries(session):
        problem = _check(entry, expected, prev)
        if problem:
            return ChainReport(count, last_seq, prev, first_bad=entry.seq, problem=problem)
        prev, count, expected, last_seq = entry.hash, count + 1, expected + 1, entry.seq
    head = (await session.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one_or_none()
    if head is not None and (head.seq != last_seq or head.hash != prev):
        return ChainReport(
            count,
            last_seq,
            prev,
            first_bad=last_seq + 1,
            problem=f"the log ends at entry {last_seq} but its head says {head.seq} (truncated)",
        )
    return ChainReport(count, last_seq, prev)


async def entry_at(session: AsyncSession, seq: int) -> AuditEntry | None:
    """The entry at position ``seq``."""
    return await session.get(AuditEntry, seq)


async def checkpoints(session: AsyncSession) -> list[AuditCheckpoint]:
    """All checkpoints, oldest first."""
    return list((await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id))).scalars())


async def entries_since(session: AsyncSession, since: datetime | None) -> list[AuditEntry]:
    """Entries at or after ``since`` (all when None), in order."""
    stmt = select(AuditEntry).order_by(AuditEntry.seq)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    return list((await session.execute(stmt)).scalars())
