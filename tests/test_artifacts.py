"""Patch artifacts on a change: attached in Slack, verified into quarantine, re-hashed before use, refusals said."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import OWNER, SHARED_DATA, Harness, eventually, make_config
from sqlalchemy import select

from bot.errors import VerificationError
from bot.workflows.artifacts import verified_paths
from storage.models import Artifact, AuditEntry

SIGNING = SHARED_DATA / "signing"
BUNDLE = SIGNING / "patch-bundle-CHG-12.tar.gz"
TAMPERED = SIGNING / "patch-bundle-CHG-12.tampered.tar.gz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """shared/data/signing on loopback; ``/swapped/<bundle>`` serves the tampered twin under the good name."""

    async def files(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if request.match_info["kind"] == "swapped" and name == BUNDLE.name:
            return web.FileResponse(TAMPERED)
        path = SIGNING / name
        return web.FileResponse(path) if path.is_file() else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{kind}/{name}", files)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def trust_config() -> Any:
    return make_config(
        trust={
            "vendor-minisign": {
                "type": "minisign",
                "public_key": (SIGNING / "minisign.pub").read_text().splitlines()[1],
            },
            "vendor-pgp": {
                "type": "openpgp",
                "fingerprint": "B78E7CA3AC90727A2C8C408EB25688F252DDA512",
                "key_file": str(SIGNING / "openpgp-release-key.asc"),
            },
        }
    )


async def audit_actions(h: Harness, change_id: int) -> list[tuple[str, str]]:
    async with h.deps.sessions.begin() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.change_id == change_id))).scalars()
        return [(r.action, r.body) for r in rows if r.action.startswith("artifact_")]


async def test_signed_artifact_verified_and_rehashed_before_use(
    harness_factory: Any, server: str, tmp_path: Path
) -> None:
    h: Harness = await harness_factory(trust_config())
    card = await h.request_change()
    url = f"{server}/plain/{BUNDLE.name}"
    await h.slack.command(
        f"artifact add CHG-1 {url} sha256={sha256(BUNDLE)} sig={url}.minisig signer=vendor-minisign", user=OWNER
    )
    await eventually(lambda: any(":package:" in m.text for m in h.thread(card)), what="attached note")

    paths = await verified_paths(h.deps, change_id=1, quarantine=tmp_path)
    assert len(paths) == 1 and paths[0].read_bytes() == BUNDLE.read_bytes()
    assert paths[0].is_relative_to(tmp_path / "CHG-1")
    actions = await audit_actions(h, 1)
    assert [a for a, _ in actions] == ["artifact_attached", "artifact_verified"]
    assert "minisign" in actions[-1][1] and "CHG-12 patch bundle" in actions[-1][1]
    assert await verified_paths(h.deps, change_id=1, quarantine=tmp_path) == paths, "the verified copy is reused"

    # someone swaps the quarantined file after verification: the re-hash before use refuses it
    paths[0].chmod(0o600)
    shutil.copy(TAMPERED, paths[0])
    with pytest.raises(VerificationError, match="changed after verification"):
        await verified_paths(h.deps, change_id=1, quarantine=tmp_path)
    assert "failed verification" in h.thread(card)[-1].text and "refused" in h.thread(card)[-1].text
    assert [a for a, _ in await audit_actions(h, 1)][-1] == "artifact_refused"


@pytest.mark.skipif(shutil.which("gpgv") is None, reason="gpgv is not installed")
async def test_tampered_twin_with_matching_hash_refused_by_signature(
    harness_factory: Any, server: str, tmp_path: Path
) -> None:
    h: Harness = await harness_factory(trust_config())
    card = await h.request_change()
    # the attacker also published the twin's hash; the OpenPGP signature by the pinned key still fails
    good = f"{server}/plain/{BUNDLE.name}"
    await h.slack.command(
        f"artifact add CHG-1 {server}/swapped/{BUNDLE.name} sha256={sha256(TAMPERED)} sig={good}.asc signer=vendor-pgp",
        user=OWNER,
    )
    await eventually(lambda: any(":package:" in m.text for m in h.thread(card)), what="attached note")
    with pytest.raises(VerificationError) as info:
        await verified_paths(h.deps, change_id=1, quarantine=tmp_path)
    assert "deployment is refused" in info.value.user_message
    refusal = h.thread(card)[-1].text
    assert refusal.startswith(":no_entry: Artifact") and "signature" in refusal.lower()
    async with h.deps.sessions.begin() as s:
        row = (await s.execute(select(Artifact))).scalar_one()
    assert row.status == "refused" and row.verified_path is None
    assert [a for a, _ in await audit_actions(h, 1)] == ["artifact_attached", "artifact_refused"]
    assert not [p for p in (tmp_path / "CHG-1").iterdir() if not p.name.startswith(".")], "nothing left to use"


async def test_unpinned_signer_refused_when_attaching(harness_factory: Any, server: str) -> None:
    h: Harness = await harness_factory(trust_config())
    await h.request_change()
    url = f"{server}/plain/{BUNDLE.name}"
    await h.slack.command(f"artifact add CHG-1 {url} sha256={sha256(BUNDLE)} sig={url}.asc signer=mallory", user=OWNER)
    replies = await eventually(lambda: [r["text"] for r in h.fake.responses if "trust store" in r.get("text", "")])
    assert "mallory" in replies[-1]
