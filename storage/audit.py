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
from typing import Any, Protocol

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import AuditCheckpoint, AuditEntry, AuditHead

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, body: str) -> str:
    """The hash of one entry given its predecessor's hash."""
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class _Pending:
    at: datetime
    actor: str
    action: str
    policy_version: int | None
    change_id: int | None
    details: dict[str, Any]


_PENDING = "audit_pending"


async def append(
    session: AsyncSession,
    *,
    at: datetime,
    actor: str,
    action: str,
    policy_version: int | None,
    change_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record one entry in the caller's transaction; it is chained when the transaction commits.

    Chaining needs the head row's lock, which serialises every writer of the log. Taking it at commit (the
    ``before_commit`` hook below) instead of at the first event keeps it held for one insert, not for the
    whole unit of work: on PostgreSQL concurrent approvals of different changes then overlap. A rollback
    drops the pending entries with everything else.
    """
    pending: list[_Pending] = session.info.setdefault(_PENDING, [])
    pending.append(_Pending(at, actor, action, policy_version, change_id, dict(details or {})))


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    """Chain the transaction's pending entries (runs inside the async session's greenlet, so sync I/O is fine)."""
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    if not pending:
        return
    stmt = select(AuditHead).where(AuditHead.id == 1).with_for_update().execution_options(populate_existing=True)
    head = session.execute(stmt).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    for item in pending:
        seq = head.seq + 1
        body = canonical(
            {
                "seq": seq,
                "at": item.at.isoformat(),
                "actor": item.actor,
                "action": item.action,
                "change_id": item.change_id,
                "policy_version": item.policy_version,
                "details": item.details,
            }
        )
        entry = AuditEntry(
            seq=seq,
            at=item.at,
            actor=item.actor,
            action=item.action,
            change_id=item.change_id,
            policy_version=item.policy_version,
            body=body,
            prev_hash=head.hash,
            hash=chain_hash(head.hash, body),
        )
        session.add(entry)
        head.seq, head.hash = seq, entry.hash
    _sign_head(session, head, signed_at=pending[-1].at)
    session.flush()
    _checkpoint_inline(session, head, signed_at=pending[-1].at)


CHECKPOINTER = "audit_checkpointer"  # session.info key: a ``Checkpointer`` (set by the composition root)
CHECKPOINT_EVERY = "audit_checkpoint_every"  # session.info key: sign at least every this many entries


class Checkpointer(Protocol):
    """Signs a head: returns ``(key_id, public_key_base64, signature_base64)`` (storage holds no keys).

    ``kind`` is ``"checkpoint"`` (a row of ``audit_checkpoints``) or ``"head"`` (the head row's signature);
    the two are signed under different labels so that one can never stand in for the other.
    """

    def __call__(self, seq: int, hash_: str, signed_at: datetime, *, kind: str = "checkpoint") -> tuple[str, str, str]:
        """Sign ``(seq, hash_, signed_at)``."""
        ...


def _sign_head(session: Session, head: AuditHead, *, signed_at: datetime) -> None:
    """Sign the new head with the audit key if this session has it; otherwise leave it visibly unsigned."""
    sign: Checkpointer | None = session.info.get(CHECKPOINTER)
    if sign is None:
        head.signed_at = head.key_id = head.signature = None
        return
    head.key_id, _, head.signature = sign(head.seq, head.hash, signed_at, kind="head")
    head.signed_at = signed_at


def _checkpoint_inline(session: Session, head: AuditHead, *, signed_at: datetime) -> None:
    """Sign the head in the same transaction once ``checkpoint_every`` entries are unsigned.

    The unsigned tail of the log is then never longer than ``checkpoint_every`` entries (whatever the
    hourly job does), which is what ``audit verify`` requires.
    """
    sign: Checkpointer | None = session.info.get(CHECKPOINTER)
    every: int | None = session.info.get(CHECKPOINT_EVERY)
    if sign is None or every is None:  # the CLI signs heads but leaves checkpoints to the bot
        return
    last = session.execute(
        select(AuditCheckpoint.seq).order_by(AuditCheckpoint.id.desc()).limit(1)
    ).scalar_one_or_none()
    if head.seq - (last or 0) < every:
        return
    key_id, public_key, signature = sign(head.seq, head.hash, signed_at)
    session.add(
        AuditCheckpoint(
            seq=head.seq,
            hash=head.hash,
            signed_at=signed_at,
            key_id=key_id,
            public_key=public_key,
            signature=signature,
        )
    )
    session.flush()


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


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
    try:
        hashed_at = datetime.fromisoformat(str(body.get("at")))
    except ValueError:
        return "the hashed record has no valid time"
    if hashed_at != entry.at:
        return f"column at ({entry.at.isoformat()}) differs from the hashed record ({hashed_at.isoformat()})"
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
    if head is None and count:
        return ChainReport(
            count,
            last_seq,
            prev,
            first_bad=last_seq,
            problem="the head row is missing (it is written with every entry)",
        )
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


async def entries_after(session: AsyncSession, seq: int, *, limit: int) -> list[AuditEntry]:
    """Up to ``limit`` entries after position ``seq``, in order (for streaming)."""
    stmt = select(AuditEntry).where(AuditEntry.seq > seq).order_by(AuditEntry.seq).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def entries_with_action(session: AsyncSession, action: str) -> list[AuditEntry]:
    """Every entry recording ``action``, in order."""
    stmt = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
    return list((await session.execute(stmt)).scalars())


async def head(session: AsyncSession) -> AuditHead | None:
    """The head row (None on a log never written)."""
    return await session.get(AuditHead, 1)
