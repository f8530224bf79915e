"""A whole remediation, proven by inventory (issue 10, point 2), through the signed Slack endpoint:

vulnerable SBOM → advisory → change from it → test and prod deployments by a real shell script that writes
an SBOM to ``$PATCHWARDEN_INVENTORY_OUT`` → ``remediated`` with its time to remediate; a script writing a
still-vulnerable SBOM → ``still_vulnerable``, the owner told which package and version.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from conftest import BASE_CONFIG, OWNER, REQ, SHARED_DATA, Harness, eventually, make_config
from deploy_support import in_thread, wait_state
from loop_support import deploy_prod, through_test

from bot.__main__ import cli
from bot.advisories.osv import parse_osv
from bot.feeds.base import FeedBatch
from bot.sandbox.fake_slack import Message
from bot.workflows import advisories as flow
from bot.workflows import loop_views, remediation
from bot.workflows.advisory_posts import publish_all
from storage import advisories as store
from storage.models import AdvisoryRecord, AdvisoryStatus, ChangeState

SCRIPT = """#!/bin/sh
set -eu
# $1: the SBOM this "deployment" leaves behind (if the file exists), $2 the step
echo "$2" >> "$(dirname "$0")/steps.txt"
if [ -f "$1" ]; then cp "$1" "$PATCHWARDEN_INVENTORY_OUT"; fi
"""


def sbom(flask: str) -> str:
    component = {"type": "library", "name": "flask", "version": flask, "purl": f"pkg:pypi/flask@{flask}"}
    return json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [component]})


async def _setup(harness_factory: Any, tmp_path: Path) -> tuple[Harness, Path, Message]:
    script, leaves = tmp_path / "deploy.sh", tmp_path / "after.cdx.json"
    script.write_text(SCRIPT)
    script.chmod(0o755)

    def env(stage: str) -> dict[str, Any]:
        return {"executor": "shell", "argv": [str(script), str(leaves), f"apply-{stage}"]}

    h: Harness = await harness_factory(
        make_config(systems={"web-shop": {"environments": {"test": env("test"), "prod": env("prod")}}})
    )
    # 1. the system's inventory says flask 2.2.2; 2. the OSV record arrives and matches it
    async with h.deps.sessions.begin() as s:
        await remediation.import_sbom(
            s, config=h.config, system="web-shop", text=sbom("2.2.2"), source="web-shop.cdx.json", change=None,
            now=h.clock.now(),
        )  # fmt: skip
        doc = json.loads((SHARED_DATA / "osv" / "PyPI" / "PYSEC-2023-62.json").read_text())
        result = await flow.ingest(s, config=h.config, batch=FeedBatch(advisories=(parse_osv(doc),)), now=h.clock.now())
    await publish_all(h.deps, result.changed)
    post = await eventually(lambda: next(iter(h.fake.channel_messages("C0ADVISORIES")), None), what="advisory post")
    # 3. a change request from the advisory post
    await h.slack.click(post, "advisory_create_change", user=REQ)
    view = await h.opened_view("change_request")
    status, body = await h.slack.submit(view, {"rollback_plan": "pip install flask==2.2.2"}, user=REQ)
    assert status == 200 and body in ("", "{}"), body
    card = await h.card(1)
    await eventually(lambda: h.thread(card), what="approvers mentioned")
    await h.slack.approve(card, user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    return h, leaves, card


async def _record(h: Harness) -> AdvisoryRecord:
    async with h.deps.sessions.begin() as s:
        rec = await store.get(s, (await store.owners_of(s, ["PYSEC-2023-62"]))[0])
        assert rec is not None
        return rec


async def test_prod_deploy_writing_a_fixed_sbom_remediates_with_time_to_remediate(
    harness_factory: Any, tmp_path: Path
) -> None:
    h, leaves, card = await _setup(harness_factory, tmp_path)
    config_file = tmp_path / "patchwarden.yaml"
    config_file.write_text(yaml.safe_dump(BASE_CONFIG))
    await through_test(h, card=card)
    assert (await _record(h)).status is AdvisoryStatus.CHANGE_REQUESTED, "a test deployment proves nothing"
    leaves.write_text(sbom("2.2.5"))
    await deploy_prod(h)
    await wait_state(h, ChangeState.COMPLETED)
    note = await in_thread(h, card, "is *remediated*", what="remediation verdict")
    assert "PYSEC-2023-62" in note.text and "time to remediate 1d" in note.text
    rec = await _record(h)
    assert rec.status is AdvisoryStatus.REMEDIATED and rec.change_id == 1
    assert rec.remediated_at is not None and rec.remediated_at - rec.first_seen >= h.clock.offset
    assert rec.remediation["evidence_system"] == "web-shop" and rec.remediation["still"] == []
    async with h.deps.sessions.begin() as s:
        packages = await flow.current_inventory(s, config=h.config)
        fields = (await loop_views.advisory_fields(s, [rec]))[rec.id]
    assert [(p.name, p.version) for p in packages["web-shop"]] == [("flask", "2.2.5")], "the SBOM was imported"
    assert fields["status"] == "remediated" and fields["remediated_at"] == rec.remediated_at.isoformat()
    assert fields["exception"] is None
    env = {"PATCHWARDEN_DATABASE_URL": str(h.deps.settings.database_url), "PATCHWARDEN_CONFIG": str(config_file)}
    shown = await asyncio.to_thread(CliRunner().invoke, cli, ["changes", "show", "CHG-1", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["advisories"] == ["PYSEC-2023-62"] and data["artifacts"] == []


async def test_prod_deploy_writing_a_still_vulnerable_sbom_keeps_it_open_and_tells_the_owner(
    harness_factory: Any, tmp_path: Path
) -> None:
    h, leaves, card = await _setup(harness_factory, tmp_path)
    await through_test(h, card=card)
    leaves.write_text(sbom("2.2.3"))  # the deployment "forgot" the fix
    await deploy_prod(h)
    await wait_state(h, ChangeState.COMPLETED)
    note = await in_thread(h, card, "still vulnerable", what="verdict")
    assert "flask 2.2.3 (fixed in 2.2.5)" in note.text and "SLA keeps running" in note.text
    rec = await _record(h)
    assert rec.status is AdvisoryStatus.STILL_VULNERABLE and rec.remediated_at is None
    told = await eventually(lambda: [m.text for m in h.fake.channel_messages(OWNER) if "still vulnerable" in m.text])
    assert "flask 2.2.3" in told[0]
