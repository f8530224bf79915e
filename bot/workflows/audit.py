"""Signed checkpoints, verification and export of the update control log."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot import crypto
from bot.errors import VerificationError
from storage import audit
from storage.models import AuditCheckpoint


def checkpoint_message(seq: int, hash_: str, signed_at: datetime) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return f"patchwarden-audit-checkpoint\n{seq}\n{hash_}\n{signed_at.isoformat()}".encode()


async def write_checkpoint(session: AsyncSession, *, signer: crypto.Signer, now: datetime) -> AuditCheckpoint | None:
    """Sign the current head of the chain; None when the log is empty or unchanged since the last checkpoint."""
    report = await audit.verify_chain(session)
    if report.first_bad is not None:
        raise VerificationError(f"refusing to sign a broken chain: entry {report.first_bad}: {report.problem}")
    if report.last_seq == 0:
        return None
    existing = await audit.checkpoints(session)
    if existing and existing[-1].seq == report.last_seq:
        return None
    cp = AuditCheckpoint(
        seq=report.last_seq,
        hash=report.last_hash,
        signed_at=now,
        key_id=signer.key_id,
        public_key=base64.b64encode(signer.public_bytes).decode(),
        signature=signer.sign(checkpoint_message(report.last_seq, report.last_hash, now)),
    )
    session.add(cp)
    await session.flush()
    return cp


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    checkpoints: int
    message: str
    first_bad: int | None = None


async def verify(session: AsyncSession, *, trusted_key_ids: frozenset[str] | None = None) -> VerifyResult:
    """Recompute the chain and check every checkpoint against it (signature, position, hash).

    1. the chain itself (edits, deletions, reorderings) — storage.audit.verify_chain;
    2. each checkpoint's signature, by a trusted key when ``trusted_key_ids`` is given;
    3. each checkpoint's entry exists and has the signed hash (a checkpoint beyond the end = truncation).
    """
    report = await audit.verify_chain(session)  # 1.
    cps = await audit.checkpoints(session)
    if report.first_bad is not None:
        return VerifyResult(
            False, report.entries, len(cps), f"entry {report.first_bad}: {report.problem}", report.first_bad
        )
    for cp in cps:
        try:  # 2.
            if trusted_key_ids is not None and cp.key_id not in trusted_key_ids:
                raise VerificationError(f"checkpoint {cp.id} signed by untrusted key {cp.key_id}")
            crypto.verify_ed25519(
                base64.b64decode(cp.public_key),
                signature=base64.b64decode(cp.signature),
                message=checkpoint_message(cp.seq, cp.hash, cp.signed_at),
            )
        except VerificationError as exc:
            return VerifyResult(False, report.entries, len(cps), f"checkpoint {cp.id}: {exc}", cp.seq)
        entry = await audit.entry_at(session, cp.seq)  # 3.
        if entry is None:
            return VerifyResult(
                False,
                report.entries,
                len(cps),
                f"entry {cp.seq}: signed checkpoint {cp.id} names it but the log ends at {report.last_seq} (truncated)",
                min(cp.seq, report.last_seq + 1),
            )
        if entry.hash != cp.hash:
            return VerifyResult(
                False,
                report.entries,
                len(cps),
                f"entry {cp.seq}: hash differs from signed checkpoint {cp.id}",
                cp.seq,
            )
    return VerifyResult(
        True,
        report.entries,
        len(cps),
        f"OK: {report.entries} entries, {len(cps)} checkpoint(s), head {report.last_hash[:16]}",
    )


async def export(session: AsyncSession, *, fmt: str, since: datetime | None) -> str:
    """The log as CSV or JSON (one object per entry, with its hashes) for auditors."""
    rows = []
    for e in await audit.entries_since(session, since):
        body = json.loads(e.body)
        rows.append(
            {
                "seq": e.seq,
                "time": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "change": f"CHG-{e.change_id}" if e.change_id else "",
                "policy_version": e.policy_version,
                "details": body.get("details", {}),
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
        )
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["seq"])
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "details": json.dumps(row["details"], ensure_ascii=False, sort_keys=True)})
    return out.getvalue()
