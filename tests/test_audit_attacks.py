"""Issue 14, item 1: each way to rewrite the control log that used to verify OK now FAILS `audit verify`.

The log is written as the bot writes it (sessions that sign the head and checkpoint every N entries), the
checkpoints are published to the witness file, then an attacker with write access to the database, but not
to the key or the witness, tampers with it. Verification runs through the real CLI.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import BASE_CONFIG
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import witness as witness_file
from bot.__main__ import cli
from bot.crypto import Signer
from bot.workflows import audit as audit_flow
from bot.workflows import lifecycle
from storage import audit, db
from storage.models import AuditCheckpoint, AuditEntry, AuditHead

EVERY = 5


def _config(tmp_path: Path) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["audit"] = {"checkpoint_every": EVERY, "witness_file": str(tmp_path / "witness.jsonl")}
    return data


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    signer = Signer.generate()
    config = _config(tmp_path)
    path = tmp_path / "patchwarden.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", database_url)
    monkeypatch.setenv("PATCHWARDEN_CONFIG", str(path))
    monkeypatch.setenv("PATCHWARDEN_AUDIT_KEY", signer.private_base64())
    monkeypatch.setenv("PATCHWARDEN_AUDIT_KEY_FILE", str(tmp_path / "none.key"))
    return {"signer": signer, "url": database_url, "witness": tmp_path / "witness.jsonl", "tmp": tmp_path}


async def _write(url: str, signer: Signer, n: int, *, start: int = 0) -> None:
    """Append n entries the way the bot does (one transaction each), then publish the checkpoints."""
    from conftest import make_config

    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    sessions.configure(info=audit_flow.session_info(signer, every=EVERY))
    config = make_config()
    base = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for i in range(start, start + n):
        async with sessions.begin() as s:
            await lifecycle.log(s, config=config, now=base + timedelta(minutes=i), actor=f"U{i}", action="test", note=i)
    await engine.dispose()


async def _publish(url: str, witness: Path) -> None:
    engine = db.create_engine(url)
    async with db.session_factory(engine).begin() as s:
        lines = [audit_flow.published(cp).as_json() for cp in await audit.checkpoints(s)]
    await asyncio.to_thread(witness_file.append_file, witness, lines)  # as the publisher does
    await engine.dispose()


def _verify(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", "verify", *args])
    return result.exit_code, result.output


async def _tamper(url: str, fn: Any) -> None:
    engine = db.create_engine(url)
    async with db.session_factory(engine).begin() as s:  # the attacker's session: no key
        await fn(s)
    await engine.dispose()


async def _rechain(s: AsyncSession, *, from_seq: int = 1) -> None:
    """Recompute every hash from ``from_seq`` on and move the head, as a careful attacker would."""
    rows = list((await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars())
    prev = audit.GENESIS
    for row in rows:
        if row.seq >= from_seq:
            await s.execute(delete(AuditEntry).where(AuditEntry.seq == row.seq))
            await s.flush()
            s.expunge(row)
            row.prev_hash, row.hash = prev, audit.chain_hash(prev, row.body)
            s.add(
                AuditEntry(
                    **{
                        c: getattr(row, c)
                        for c in (
                            "seq",
                            "at",
                            "actor",
                            "action",
                            "change_id",
                            "policy_version",
                            "body",
                            "prev_hash",
                            "hash",
                        )
                    }
                )
            )
            await s.flush()
        prev = row.hash
    await s.execute(update(AuditHead).values(seq=rows[-1].seq, hash=prev))


async def attack_resign_fresh_key(s: AsyncSession) -> None:
    row = (await s.execute(select(AuditEntry).where(AuditEntry.seq == 3))).scalar_one()
    await s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(body=row.body.replace('"note":3', '"note":9')))
    await _rechain(s, from_seq=3)
    fresh = Signer.generate()
    for cp in await audit.checkpoints(s):
        new_hash = (await s.execute(select(AuditEntry.hash).where(AuditEntry.seq == cp.seq))).scalar_one()
        cp.hash, cp.key_id = new_hash, fresh.key_id
        cp.public_key = base64.b64encode(fresh.public_bytes).decode()
        cp.signature = fresh.sign(audit_flow.checkpoint_message(cp.seq, new_hash, cp.signed_at))
    head = (await s.execute(select(AuditHead))).scalar_one()
    assert head.signed_at is not None
    head.key_id = fresh.key_id
    head.signature = fresh.sign(audit_flow.checkpoint_message(head.seq, head.hash, head.signed_at, kind="head"))


async def attack_delete_checkpoints(s: AsyncSession) -> None:
    await s.execute(delete(AuditCheckpoint))


async def attack_tail_and_head(s: AsyncSession) -> None:
    await s.execute(delete(AuditEntry).where(AuditEntry.seq > 10))
    await s.execute(text("update audit_head set seq = 10, hash = (select hash from audit_log where seq = 10)"))


async def attack_delete_head(s: AsyncSession) -> None:
    await s.execute(delete(AuditHead))


async def attack_append_forged(s: AsyncSession) -> None:
    head = (await s.execute(select(AuditHead))).scalar_one()
    seq = head.seq + 1
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    body = audit.canonical(
        {
            "seq": seq,
            "at": at.isoformat(),
            "actor": "U0EVIL",
            "action": "approve",
            "change_id": None,
            "policy_version": 1,
            "details": {},
        }
    )
    h = audit.chain_hash(head.hash, body)
    s.add(
        AuditEntry(
            seq=seq,
            at=at,
            actor="U0EVIL",
            action="approve",
            change_id=None,
            policy_version=1,
            body=body,
            prev_hash=head.hash,
            hash=h,
        )
    )
    head.seq, head.hash = seq, h


async def attack_backdate_at(s: AsyncSession) -> None:
    await s.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(at=datetime(2020, 1, 1, tzinfo=UTC)))


async def attack_two_keys(s: AsyncSession) -> None:
    """An extra checkpoint at the head, signed by a second key (with its public key in the row)."""
    other = Signer.generate()
    head = (await s.execute(select(AuditHead))).scalar_one()
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    s.add(
        AuditCheckpoint(
            seq=head.seq,
            hash=head.hash,
            signed_at=at,
            key_id=other.key_id,
            public_key=base64.b64encode(other.public_bytes).decode(),
            signature=other.sign(audit_flow.checkpoint_message(head.seq, head.hash, at)),
            published_at=at,
        )
    )


ATTACKS = {
    "rewrite-and-resign-with-fresh-key": (attack_resign_fresh_key, "untrusted key"),
    "all-checkpoints-deleted": (attack_delete_checkpoints, "covered by no signed checkpoint"),
    "tail-deleted-head-moved": (attack_tail_and_head, "head row at entry 10: Ed25519 signature does not verify"),
    "head-row-deleted": (attack_delete_head, "head row is missing"),
    "forged-entry-appended": (attack_append_forged, "head row at entry 13: Ed25519 signature does not verify"),
    "at-back-dated": (attack_backdate_at, "column at"),
    "checkpoints-by-two-keys": (attack_two_keys, "was in force there"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_fails_verification(env: dict[str, Any], attack: str) -> None:
    fn, expected = ATTACKS[attack]
    await _write(env["url"], env["signer"], 12)  # checkpoints at 5 and 10, head signed at 12
    await _publish(env["url"], env["witness"])
    code, out = await asyncio.to_thread(_verify)
    assert code == 0 and "OK: 12 entries, 2 checkpoint(s), 2 published head(s) matched" in out, out
    await _tamper(env["url"], fn)
    code, out = await asyncio.to_thread(_verify)
    assert code == 1, out
    assert "FAILED" in out and expected in out, out


async def test_truncation_to_a_checkpoint_is_caught_by_the_witness(env: dict[str, Any]) -> None:
    """Even with a replayed head signature, a log cut back below a published head fails against the witness."""
    await _write(env["url"], env["signer"], 12)
    await _publish(env["url"], env["witness"])
    snapshot: dict[str, Any] = {}

    async def save(s: AsyncSession) -> None:  # the attacker keeps an old signed head ...
        head = (await s.execute(select(AuditHead))).scalar_one()
        snapshot.update(
            seq=head.seq, hash=head.hash, signed_at=head.signed_at, key_id=head.key_id, signature=head.signature
        )

    await _tamper(env["url"], save)
    await _write(env["url"], env["signer"], 4, start=12)  # checkpoint at 15, head at 16
    await _publish(env["url"], env["witness"])

    async def cut(s: AsyncSession) -> None:  # ... and later truncates back to it and replays it
        await s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.seq > 12))
        await s.execute(delete(AuditEntry).where(AuditEntry.seq > 12))
        await s.execute(update(AuditHead).values(**snapshot))

    await _tamper(env["url"], cut)
    code, out = await asyncio.to_thread(_verify)
    assert code == 1 and "names it but the log ends at 12 (truncated)" in out, out


async def test_against_file_names_a_missing_published_head(env: dict[str, Any]) -> None:
    await _write(env["url"], env["signer"], 6)
    other = env["tmp"] / "copy.jsonl"
    await _publish(env["url"], other)
    code, out = await asyncio.to_thread(_verify, "--against", str(other))
    assert code == 0 and "1 published head(s) matched" in out, out
    await _tamper(env["url"], attack_delete_checkpoints)
    await _tamper(env["url"], lambda s: s.execute(delete(AuditEntry).where(AuditEntry.seq > 3)))
    code, out = await asyncio.to_thread(_verify, "--against", str(other))
    assert code == 1 and "truncated" in out, out


async def test_key_rotation_is_logged_and_vouched(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    await _write(env["url"], env["signer"], 6)
    new_file = env["tmp"] / "new.key"
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["audit", "rotate-key", "--new-key-file", str(new_file)])
    assert result.exit_code == 0, result.output
    new = Signer.from_base64(new_file.read_text())
    assert f"vouched for key {new.key_id}" in result.output
    monkeypatch.setenv("PATCHWARDEN_AUDIT_KEY", new.private_base64())  # the bot restarts with the new key
    await _write(env["url"], new, 6, start=6)
    code, out = await asyncio.to_thread(_verify)
    assert code == 0 and "OK: 13 entries" in out, out
    engine = db.create_engine(env["url"])
    async with db.session_factory(engine).begin() as s:
        rotations = await audit.entries_with_action(s, audit_flow.ROTATION_ACTION)
        assert len(rotations) == 1 and json.loads(rotations[0].body)["details"]["new_key_id"] == new.key_id
    await engine.dispose()
    # a checkpoint by the old key after the rotation is refused
    await _tamper(env["url"], lambda s: _old_key_checkpoint(s, env["signer"]))
    code, out = await asyncio.to_thread(_verify)
    assert code == 1 and "was in force there" in out, out


async def _old_key_checkpoint(s: AsyncSession, old: Signer) -> None:
    await audit_flow.write_checkpoint(s, signer=old, now=datetime.now(UTC), accept_unsigned_head=True)
