"""What a control-log checkpoint signature covers, and the signer storage calls at commit time.

Kept below the workflows so the composition root (:mod:`bot.deps`) can hand a session factory its
checkpoint signer without importing a use case.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from bot import crypto
from storage import audit


def checkpoint_message(seq: int, hash_: str, signed_at: datetime, *, kind: str = "checkpoint") -> bytes:
    """The exact bytes a checkpoint (or, with ``kind="head"``, the head row's) signature covers."""
    return f"patchwarden-audit-{kind}\n{seq}\n{hash_}\n{signed_at.isoformat()}".encode()


def rotation_message(old_key: str, new_key: str, rotated_at: str) -> bytes:
    """The exact bytes both keys sign when the checkpoint key is rotated (base64 public keys)."""
    return f"patchwarden-audit-key-rotation\n{old_key}\n{new_key}\n{rotated_at}".encode()


def key_id(public_key: bytes) -> str:
    """A key's id: the first 16 hex of its SHA-256 (as ``crypto.Signer.key_id``)."""
    return crypto.sha256_hex(public_key)[:16]


def checkpointer(signer: crypto.Signer) -> audit.Checkpointer:
    """The inline checkpoint signer handed to storage through the session's ``info``."""
    public = base64.b64encode(signer.public_bytes).decode()

    def sign(seq: int, hash_: str, signed_at: datetime, *, kind: str = "checkpoint") -> tuple[str, str, str]:
        return signer.key_id, public, signer.sign(checkpoint_message(seq, hash_, signed_at, kind=kind))

    return sign


def session_info(signer: crypto.Signer, *, every: int | None) -> dict[str, Any]:
    """``info`` for a session factory whose commits sign the head (and checkpoint every ``every`` entries)."""
    return {audit.CHECKPOINTER: checkpointer(signer), audit.CHECKPOINT_EVERY: every}
