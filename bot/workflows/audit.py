"""Signed checkpoints, verification, key rotation and export of the update control log.

Verification trusts nothing the database writer can change: the public keys come from the caller
(configuration and the key file), the published heads from outside (witness file, audit channel).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import crypto
from bot.crypto.checkpoints import checkpoint_message, checkpointer, key_id, rotation_message, session_info
from bot.errors import VerificationError
from storage import audit
from storage.models import AuditCheckpoint, AuditHead

ROTATION_ACTION = "audit.key_rotated"
__all__ = ["checkpoint_message", "checkpointer", "key_id", "rotation_message", "session_info"]


async def write_checkpoint(
    session: AsyncSession, *, signer: crypto.Signer, now: datetime, accept_unsigned_head: bool = False
) -> AuditCheckpoint | None:
    """Sign the current head of the chain; None when the log is empty or unchanged since the last checkpoint.

    Refuses a head this key did not sign: entries appended without the key (forged, or by a writer that had
    no key) are not blessed unless a person has checked them and says so (``accept_unsigned_head``).
    """
    report = await audit.verify_chain(session)
    if report.first_bad is not None:
        raise VerificationError(f"refusing to sign a broken chain: entry {report.first_bad}: {report.problem}")
    if report.last_seq == 0:
        return None
    head = await audit.head(session)
    if head is not None and not accept_unsigned_head:
        try:
            _check_head(_head_of(head), [_Epoch(0, signer.public_bytes)])
        except VerificationError as exc:
            raise VerificationError(
                f"refusing to sign: the head at entry {head.seq} was not signed by this key ({exc}); check the "
                "newest entries, then run `patchwarden audit checkpoint --accept-unsigned-head`"
            ) from exc
    if head is not None and accept_unsigned_head:
        head.key_id, _, head.signature = checkpointer(signer)(head.seq, head.hash, now, kind="head")
        head.signed_at = now
    existing = await audit.checkpoints(session)
    if existing and existing[-1].seq == report.last_seq:
        return None
    key, public, signature = checkpointer(signer)(report.last_seq, report.last_hash, now)
    cp = AuditCheckpoint(
        seq=report.last_seq, hash=report.last_hash, signed_at=now, key_id=key, public_key=public, signature=signature
    )
    session.add(cp)
    await session.flush()
    return cp


async def rotate_key(
    session: AsyncSession, *, old: crypto.Signer, new: crypto.Signer, actor: str, now: datetime
) -> int:
    """Record the old key vouching for the new one (and the new one accepting) in the log; returns the entry seq.

    The old key first signs the head as it stands; the caller signs a checkpoint with the new key after this
    transaction commits (the rotation entry is chained at commit). From the rotation entry on, only the new
    key may sign.
    """
    await write_checkpoint(session, signer=old, now=now)
    session.info[audit.CHECKPOINTER] = checkpointer(new)  # from the rotation entry on, the new key signs
    old_b64, new_b64 = base64.b64encode(old.public_bytes).decode(), base64.b64encode(new.public_bytes).decode()
    message = rotation_message(old_b64, new_b64, now.isoformat())
    await audit.append(
        session,
        at=now,
        actor=actor,
        action=ROTATION_ACTION,
        policy_version=None,
        details={
            "old_key": old_b64,
            "new_key": new_b64,
            "old_key_id": old.key_id,
            "new_key_id": new.key_id,
            "rotated_at": now.isoformat(),
            "old_signature": old.sign(message),
            "new_signature": new.sign(message),
        },
    )
    await session.flush()
    head = await audit.verify_chain(session)
    return head.last_seq + 1


@dataclass(frozen=True)
class PublishedHead:
    """A signed checkpoint as published outside the database (witness file line, audit channel metadata)."""

    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    signature: str
    source: str = "witness"
    kind: str = "checkpoint"

    @classmethod
    def parse(cls, data: dict[str, Any], *, source: str) -> PublishedHead:
        """From its JSON form; raises ``VerificationError`` on a malformed record."""
        try:
            return cls(
                int(data["seq"]),
                str(data["hash"]),
                datetime.fromisoformat(str(data["signed_at"])),
                str(data["key_id"]),
                str(data["signature"]),
                source,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError(f"{source}: malformed published head {data!r:.120}") from exc

    def as_json(self) -> dict[str, Any]:
        """The JSON form written to witnesses and streamed."""
        return {
            "type": "checkpoint",
            "seq": self.seq,
            "hash": self.hash,
            "signed_at": self.signed_at.isoformat(),
            "key_id": self.key_id,
            "signature": self.signature,
        }


def published(cp: AuditCheckpoint) -> PublishedHead:
    """A checkpoint row in its published form."""
    return PublishedHead(cp.seq, cp.hash, cp.signed_at, cp.key_id, cp.signature, "checkpoint")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    checkpoints: int
    message: str
    first_bad: int | None = None


@dataclass(frozen=True)
class _Epoch:
    start: int  # first seq this key signs
    key: bytes


async def _key_history(session: AsyncSession) -> list[_Epoch]:
    """The checkpoint keys in force, from the rotation entries (each signed by the old and the new key)."""
    epochs: list[_Epoch] = []
    for entry in await audit.entries_with_action(session, ROTATION_ACTION):
        d = json.loads(entry.body).get("details", {})
        try:
            old, new = base64.b64decode(d["old_key"]), base64.b64decode(d["new_key"])
            message = rotation_message(d["old_key"], d["new_key"], d["rotated_at"])
            for key, sig in ((old, d["old_signature"]), (new, d["new_signature"])):
                crypto.verify_ed25519(key, signature=base64.b64decode(sig), message=message)
        except (KeyError, TypeError, ValueError, VerificationError) as exc:
            raise VerificationError(f"entry {entry.seq}: key rotation is not signed by both keys") from exc
        if epochs and epochs[-1].key != old:
            raise VerificationError(f"entry {entry.seq}: key rotation starts from a key that was not in force")
        if not epochs:
            epochs.append(_Epoch(0, old))
        epochs.append(_Epoch(entry.seq, new))
    return epochs


def _key_for(epochs: list[_Epoch], seq: int) -> bytes:
    return [e for e in epochs if e.start <= seq][-1].key


def _head_of(row: AuditHead) -> PublishedHead:
    """The head row as a signed statement (``VerificationError`` when it carries no signature)."""
    if row.signature is None or row.signed_at is None or row.key_id is None:
        raise VerificationError("the head row is not signed (the log was extended without the audit key)")
    return PublishedHead(row.seq, row.hash, row.signed_at, row.key_id, row.signature, "head row", "head")


def _check_head(head: PublishedHead, epochs: list[_Epoch]) -> None:
    """The key in force at the head's position signed it (by id and by signature)."""
    key = _key_for(epochs, head.seq)
    if head.key_id != key_id(key):
        raise VerificationError(f"signed by key {head.key_id}, but key {key_id(key)} was in force there")
    try:
        signature = base64.b64decode(head.signature, validate=True)
    except ValueError as exc:
        raise VerificationError("the signature is not base64") from exc
    crypto.verify_ed25519(
        key,
        signature=signature,
        message=checkpoint_message(head.seq, head.hash, head.signed_at, kind=head.kind),
    )


async def verify(
    session: AsyncSession,
    *,
    trusted_keys: Collection[bytes] = (),
    checkpoint_every: int | None = None,
    against: Sequence[PublishedHead] = (),
) -> VerifyResult:
    """Recompute the chain and check it against signed heads (fails closed at the first problem).

    1. the chain itself: edits (every exported column, ``at`` included), deletions, reorderings, the head row
       (required, and signed by the key in force: moving it or appending needs the key);
    2. the key history: rotations signed by both keys, and one of its keys is trusted (from configuration
       or the key file, never from the database);
    3. every checkpoint is signed by the key in force at its position and names an entry with its hash;
    4. the newest ``checkpoint_every`` entries at most are not yet covered by a checkpoint;
    5. every head published outside the database (``against``) is signed by a key in force and is in the log.
    """
    report = await audit.verify_chain(session)  # 1.
    cps = await audit.checkpoints(session)

    def fail(message: str, first_bad: int | None) -> VerifyResult:
        return VerifyResult(False, report.entries, len(cps), message, first_bad)

    if report.first_bad is not None:
        return fail(f"entry {report.first_bad}: {report.problem}", report.first_bad)
    trusted = set(trusted_keys)
    try:  # 2.
        epochs = await _key_history(session)
    except VerificationError as exc:
        return fail(str(exc), None)
    signed = [published(cp) for cp in cps] + list(against)
    head_row = await audit.head(session)
    if head_row is not None and report.entries and trusted:
        try:
            signed.append(_head_of(head_row))
        except VerificationError as exc:
            return fail(f"entry {report.last_seq}: {exc}", report.last_seq)
    if signed and not trusted:
        return fail("no trusted key: set audit.trusted_keys or provide the audit key file", None)
    if not epochs and signed:
        first = [k for k in trusted if key_id(k) == signed[0].key_id]
        if not first:
            return fail(f"checkpoint at entry {signed[0].seq} is signed by untrusted key {signed[0].key_id}", None)
        epochs = [_Epoch(0, first[0])]
    if epochs and not trusted.intersection(e.key for e in epochs):
        return fail("no key of the log's key history is trusted (rotations signed by an unknown key)", None)
    for head in signed:  # 3. and 5.
        try:
            _check_head(head, epochs)
        except VerificationError as exc:
            return fail(f"{head.source} at entry {head.seq}: {exc}", head.seq)
        entry = await audit.entry_at(session, head.seq)
        if entry is None:
            return fail(
                f"entry {head.seq}: the signed {head.source} names it but the log ends at {report.last_seq} "
                "(truncated)",
                min(head.seq, report.last_seq + 1),
            )
        if entry.hash != head.hash:
            return fail(f"entry {head.seq}: hash differs from the signed {head.source}", head.seq)
    last_signed = max((cp.seq for cp in cps), default=0)
    if checkpoint_every is not None and report.last_seq - last_signed > checkpoint_every:  # 4.
        return fail(
            f"entries {last_signed + 1}..{report.last_seq} are covered by no signed checkpoint "
            f"(at most {checkpoint_every} may be): checkpoints were deleted",
            last_signed + 1,
        )
    witnessed = f", {len(against)} published head(s) matched" if against else ""
    return VerifyResult(
        True,
        report.entries,
        len(cps),
        f"OK: {report.entries} entries, {len(cps)} checkpoint(s){witnessed}, head {report.last_hash[:16]}",
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
