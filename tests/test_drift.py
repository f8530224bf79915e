"""``patchwarden inventory import`` is evidence for pending remediations, and notices unrecorded changes
(drift, ``policy.drift_window``): the owner is told and links the drift to a change from Slack."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import yaml
from click.testing import CliRunner, Result
from conftest import BASE_CONFIG, OWNER, SHARED_DATA, Harness, eventually
from sqlalchemy import select

from bot.__main__ import cli
from bot.advisories.osv import parse_osv
from bot.feeds.base import FeedBatch
from bot.slack.outbox_sender import OutboxSender
from bot.workflows import advisories as flow
from storage import advisories as store
from storage.models import AdvisoryStatus, AuditEntry


def sbom(flask: str) -> str:
    component = {"type": "library", "name": "flask", "version": flask, "purl": f"pkg:pypi/flask@{flask}"}
    return json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [component]})


def spdx(flask: str) -> str:
    ref = {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": f"pkg:pypi/flask@{flask}",
    }
    return json.dumps(
        {
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": "web-shop",
            "documentNamespace": "https://example.org/spdx/web-shop",
            "creationInfo": {"created": "2026-12-01T00:00:00Z", "creators": ["Tool: test"]},
            "packages": [
                {"name": "flask", "SPDXID": "SPDXRef-flask", "versionInfo": flask, "downloadLocation": "NOASSERTION",
                 "externalRefs": [ref]}
            ],
        }
    )  # fmt: skip


async def _import(h: Harness, tmp_path: Path, name: str, text: str) -> Result:
    (tmp_path / "patchwarden.yaml").write_text(yaml.safe_dump(copy.deepcopy(BASE_CONFIG)))
    path = tmp_path / name
    path.write_text(text)
    env = {"PATCHWARDEN_DATABASE_URL": str(h.deps.settings.database_url),
           "PATCHWARDEN_CONFIG": str(tmp_path / "patchwarden.yaml")}  # fmt: skip
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["inventory", "import", "web-shop", str(path)], env=env)
    assert result.exit_code == 0, result.output
    return result


async def test_import_proves_a_pending_fix_and_reports_drift_the_owner_links(harness: Harness, tmp_path: Path) -> None:
    h = harness
    await _import(h, tmp_path, "before.cdx.json", sbom("2.2.2"))
    doc = json.loads((SHARED_DATA / "osv" / "PyPI" / "PYSEC-2023-62.json").read_text())
    async with h.deps.sessions.begin() as s:
        await flow.ingest(s, config=h.config, batch=FeedBatch(advisories=(parse_osv(doc),)), now=h.clock.now())
        rec = await store.get(s, (await store.owners_of(s, ["PYSEC-2023-62"]))[0])
        assert rec is not None and rec.status is AdvisoryStatus.OPEN
        # as if its change had completed in prod without an SBOM from the executor
        await store.set_fields(
            s,
            rec.id,
            status=AdvisoryStatus.REMEDIATION_PENDING,
            remediation={"change_id": None, "systems": ["web-shop"]},
        )
    card = await h.request_change()

    result = await _import(h, tmp_path, "after.spdx.json", spdx("2.2.5"))  # SPDX works as well
    assert "PYSEC-2023-62: remediated on web-shop" in result.output
    assert "changed without a completed change" in result.output
    async with h.deps.sessions.begin() as s:
        rec = await store.get(s, rec.id)
        assert rec is not None and rec.status is AdvisoryStatus.REMEDIATED and rec.remediated_at is not None

    await OutboxSender(h.deps, channel_gap=0.0).drain()
    note = await eventually(
        lambda: next((m for m in h.fake.channel_messages(OWNER) if "Unrecorded change" in m.text), None), what="drift"
    )
    assert "flask 2.2.2 → 2.2.5" in str(note.blocks)
    await h.slack.click(note, "drift_link", user=OWNER)
    form = await h.opened_view("drift_link_form")
    status, _ = await h.slack.submit(form, {"change": card.text and "CHG-1"}, user=OWNER)
    assert status == 200
    await eventually(
        lambda: any("linked to CHG-1" in m.text for m in h.fake.channel_messages(OWNER)), what="linked answer"
    )
    async with h.deps.sessions.begin() as s:
        actions = [r.action for r in (await s.execute(select(AuditEntry))).scalars()]
    assert "inventory_drift" in actions and "inventory_drift_linked" in actions and "advisory_remediated" in actions


def test_a_long_drift_note_counts_what_it_does_not_show() -> None:
    from bot.blocks.drift import SHOWN, drift_blocks

    lines = [f"pkg{i} 1.0 → 1.1" for i in range(SHOWN + 5)]
    text = drift_blocks("web", lines, owner="U0OWNER")[0]["text"]["text"]
    assert f"pkg{SHOWN - 1} 1.0" in text and f"pkg{SHOWN} 1.0" not in text
    assert "…and 5 more changed packages" in text
