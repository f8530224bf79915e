"""The update control log: `audit verify` catches an edited, a deleted, a reordered and a truncated log."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from conftest import make_config
from sqlalchemy import delete, func, text, update

from bot.__main__ import cli
from bot.crypto import Signer
from bot.workflows import audit as audit_flow
from bot.workflows import lifecycle
from storage import db
from storage.models import AuditEntry


async def _fill(url: str, n: int = 5) -> None:
    engine = db.create_engine(url)
    config = make_config()
    async with db.session_factory(engine).begin() as s:
        for i in range(n):
            await lifecycle.log(s, config=config, now=datetime.now(UTC), actor=f"U{i}", action="test", note=i)
    await engine.dispose()


async def _tamper(url: str, how: str) -> None:
    engine = db.create_engine(url)
    async with db.session_factory(engine).begin() as s:
        if how == "edit":
            await s.execute(
                update(AuditEntry)
                .where(AuditEntry.seq == 3)
                .values(body=func.replace(AuditEntry.body, '"note":2', '"note":9'))
            )
        elif how == "edit-column":
            await s.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="UEVIL"))
        elif how == "delete":
            await s.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
        elif how == "reorder":  # swap the contents of rows 2 and 3
            rows = {
                r.seq: r
                for r in (
                    await s.execute(
                        text("select seq, at, actor, action, body, prev_hash, hash from audit_log where seq in (2,3)")
                    )
                ).all()
            }
            await s.execute(delete(AuditEntry).where(AuditEntry.seq.in_([2, 3])))
            await s.flush()
            for new_seq, old in ((2, rows[3]), (3, rows[2])):
                s.add(
                    AuditEntry(
                        seq=new_seq,
                        at=datetime.fromisoformat(json.loads(old.body)["at"]),
                        actor=old.actor,
                        action=old.action,
                        change_id=None,
                        policy_version=1,
                        body=old.body,
                        prev_hash=old.prev_hash,
                        hash=old.hash,
                    )
                )
    await engine.dispose()


def _verify(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", url)
    result = CliRunner().invoke(cli, ["audit", "verify"])
    return result.exit_code, result.output


@pytest.mark.parametrize("how", ["edit", "edit-column", "delete", "reorder"])
async def test_verify_names_first_bad_entry(database_url: str, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    await _fill(database_url)
    code, out = await asyncio.to_thread(_verify, database_url, monkeypatch)
    assert code == 0 and "OK: 5 entries" in out
    await _tamper(database_url, how)
    code, out = await asyncio.to_thread(_verify, database_url, monkeypatch)
    assert code == 1
    assert ("entry 3" in out) if how != "reorder" else ("entry 2" in out), out


async def test_signed_checkpoint_detects_truncation(database_url: str) -> None:
    await _fill(database_url)
    engine = db.create_engine(database_url)
    signer = Signer.generate()
    async with db.session_factory(engine).begin() as s:
        cp = await audit_flow.write_checkpoint(s, signer=signer, now=datetime.now(UTC), accept_unsigned_head=True)
        assert cp is not None and cp.seq == 5
    async with db.session_factory(engine).begin() as s:  # cut the tail, head row too: the chain alone looks fine
        await s.execute(delete(AuditEntry).where(AuditEntry.seq >= 4))
        await s.execute(text("update audit_head set seq = 3, hash = (select hash from audit_log where seq = 3)"))
    async with db.session_factory(engine).begin() as s:
        result = await audit_flow.verify(s, trusted_keys=[signer.public_bytes])
    await engine.dispose()
    assert not result.ok and "truncated" in result.message


async def test_export_csv_and_json(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await _fill(database_url, 3)
    monkeypatch.setenv("PATCHWARDEN_DATABASE_URL", database_url)
    out = (await asyncio.to_thread(CliRunner().invoke, cli, ["audit", "export", "--format", "json"])).output
    rows = json.loads(out)
    assert [r["seq"] for r in rows] == [1, 2, 3] and rows[0]["policy_version"] == 1
    csv_out = (await asyncio.to_thread(CliRunner().invoke, cli, ["audit", "export", "--format", "csv"])).output
    assert csv_out.splitlines()[0].startswith("seq,time,actor,action")
    assert len(csv_out.strip().splitlines()) == 4
