"""Verified artifacts are approved content and the only thing an executor gets (issue 10, point 1).

End to end through the signed Slack endpoint, with a real shell script that checks the file's sha256 itself.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import OWNER, REQ, Harness, eventually, make_config
from deploy_support import book, in_thread, state_of, wait_state
from loop_support import (
    BUNDLE,
    SIGNING,
    TAMPERED,
    Served,
    deploy_prod,
    served_fixture,
    sha256,
    sweep,
    through_test,
)
from sqlalchemy import select

from bot.config import MissedWindow
from bot.workflows import loop_views
from storage import changes, deployments, windows
from storage.models import AuditEntry, ChangeState, DeploymentStatus, WindowState

__all__ = ["served_fixture"]  # the fixture, used by name

# A real shell script: it finds the artifact by name in PATCHWARDEN_ARTIFACT_DIR, checks its sha256 with
# sha256sum, checks the manifest lists that digest, and records what it saw.
SCRIPT = """#!/bin/sh
set -eu
step="$1"; stage="$2"; expected="$3"; record="$4"
file="$PATCHWARDEN_ARTIFACT_DIR/patch-bundle-CHG-12.tar.gz"
actual=$(sha256sum "$file" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then echo "digest mismatch: $actual"; exit 9; fi
grep -q "$expected" "$PATCHWARDEN_ARTIFACTS"
if [ -w "$file" ] && [ "$(id -u)" != 0 ]; then echo "writable copy"; exit 8; fi
echo "$step $stage $actual $(ls "$PATCHWARDEN_ARTIFACT_DIR" | tr '\\n' ' ')" >> "$record"
echo "checked $actual"
"""


def _config(tmp_path: Path) -> tuple[Any, Path]:
    script, record = tmp_path / "deploy.sh", tmp_path / "record.txt"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    digest = sha256(BUNDLE)

    def env(stage: str) -> dict[str, Any]:
        argv = [str(script), "apply", stage, digest, str(record)]
        return {
            "executor": "shell",
            "argv": argv,
            "verify": {"argv": [str(script), "verify", stage, digest, str(record)]},
        }

    config = make_config(
        systems={"web-shop": {"environments": {"test": env("test"), "prod": env("prod")}}},
        trust={
            "vendor-minisign": {
                "type": "minisign",
                "public_key": (SIGNING / "minisign.pub").read_text().splitlines()[1],
            }
        },
        advisories={"quarantine_dir": str(tmp_path / "quarantine")},
    )
    return config, record


async def _attach(h: Harness, url: str) -> None:
    await h.slack.command(
        f"artifact add CHG-1 {url} sha256={sha256(BUNDLE)} sig={url}.minisig signer=vendor-minisign", user=REQ
    )


async def _actions(h: Harness) -> list[str]:
    async with h.deps.sessions.begin() as s:
        return [r.action for r in (await s.execute(select(AuditEntry).order_by(AuditEntry.seq))).scalars()]


async def test_verified_artifact_reaches_the_script_and_a_replaced_one_is_refused_before_anything_runs(
    harness_factory: Any, served: Served, tmp_path: Path
) -> None:
    config, record = _config(tmp_path)
    h: Harness = await harness_factory(config)
    url = served.url(BUNDLE.name)
    served.replace(f"{BUNDLE.name}.minisig", SIGNING / f"{BUNDLE.name}.minisig")
    card = await h.request_change()
    await _attach(h, url)
    await in_thread(h, card, ":package:", what="artifact attached")
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        shown = await loop_views.change_fields(s, change)
    assert shown["artifacts"] == [
        {"name": BUNDLE.name, "url": served.url(BUNDLE.name), "sha256": sha256(BUNDLE), "sha512": None,
         "signer": "vendor-minisign", "status": "pending", "verified_sha256": None, "verified_at": None}
    ]  # fmt: skip
    await h.slack.approve(h.latest(card), user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)

    await through_test(h, card=card)
    digest = sha256(BUNDLE)
    lines = record.read_text().splitlines()
    assert lines == [f"apply test {digest} {BUNDLE.name} ", f"verify test {digest} {BUNDLE.name} "]

    # the vendor's server now serves another file under the same name: refused before any prod step
    served.replace(BUNDLE.name, TAMPERED)
    await deploy_prod(h)
    await eventually(lambda: any("Nothing was deployed" in m.text for m in h.thread(card)), what="refusal")
    assert record.read_text().splitlines() == lines, "no prod step ran"
    refusal = next(m.text for m in h.thread(card) if m.text.startswith(":no_entry: Artifact"))
    assert BUNDLE.name in refusal and "failed verification" in refusal
    actions = await _actions(h)
    assert "artifact_refused" in actions and "deployment_refused_artifact" in actions
    assert actions.index("artifact_refused") < actions.index("deployment_refused_artifact")
    # missed_window: next (the default) books the next free window; the stage stays approved
    assert await state_of(h) is ChangeState.PROD_SCHEDULED
    async with h.deps.sessions.begin() as s:
        prod = await deployments.for_change(s, 1, stage="prod")
        assert [d.status for d in prod] == [DeploymentStatus.FAILED]
        assert await deployments.lock_holder(s, "web-shop") is None
        states = sorted(w.state for w in await windows.for_change(s, 1) if w.stage == "prod")
    assert states == sorted([WindowState.MISSED, WindowState.BOOKED])


async def test_artifact_added_after_approval_makes_approvals_stale(
    harness_factory: Any, served: Served, tmp_path: Path
) -> None:
    config, _ = _config(tmp_path)
    h: Harness = await harness_factory(config)
    served.replace(f"{BUNDLE.name}.minisig", SIGNING / f"{BUNDLE.name}.minisig")
    card = await h.request_change()
    await h.slack.approve(h.latest(card), user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    async with h.deps.sessions.begin() as s:
        before = await changes.get(s, 1)
        assert before is not None
        old_hash = before.content_hash

    await _attach(h, served.url(BUNDLE.name))
    note = await in_thread(h, card, "no longer count", what="stale note")
    assert "approve again" in note.text and "<@U0OWNER1>" in note.text
    await wait_state(h, ChangeState.PENDING_TEST_APPROVAL)
    async with h.deps.sessions.begin() as s:
        after = await changes.get(s, 1)
        assert after is not None and after.revision == 2 and after.content_hash != old_hash
        approvals = await changes.approvals(s, 1)
    assert [a.stale for a in approvals] == [True]
    assert "Revision 2" in str(h.latest(card).blocks)
    await h.slack.approve(h.latest(card), user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)


async def test_refused_artifact_with_missed_window_ask_asks_the_operators(
    harness_factory: Any, served: Served, tmp_path: Path
) -> None:
    config, record = _config(tmp_path)
    config = config.model_copy(update={"policy": config.policy.model_copy(update={"missed_window": MissedWindow.ASK})})
    h: Harness = await harness_factory(config)
    card = await h.request_change()
    url = served.url(BUNDLE.name)
    await h.slack.command(f"artifact add CHG-1 {url} sha256={'0' * 64}", user=REQ)  # not the file's digest
    await in_thread(h, card, ":package:", what="artifact attached")
    await h.slack.approve(h.latest(card), user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    h.clock.advance(timedelta(minutes=11))
    await sweep(h)
    asked = await in_thread(h, card, "Nothing was deployed", what="refusal with the missed-window question")
    assert "window_missed_run" in json.dumps(asked.blocks) and "Operators" in asked.text
    assert not record.exists(), "the script never ran"
    assert await state_of(h) is ChangeState.APPROVED_FOR_TEST
    async with h.deps.sessions.begin() as s:
        assert [w.state for w in await windows.for_change(s, 1)] == [WindowState.AWAITING_DECISION]
