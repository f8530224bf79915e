"""Decisions leave as signed VEX (issue 10, point 4): ``patchwarden vex export`` validated against the shipped
OpenVEX JSON schema, its detached Ed25519 signature verified by ``vex verify``, tampering detected."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import BASE_CONFIG, OWNER, REQ, SEC1, SHARED_DATA, Harness, eventually, make_config

from bot.__main__ import cli
from bot.advisories import vex
from bot.advisories.osv import parse_osv
from bot.crypto import Signer
from bot.errors import VerificationError
from bot.feeds.base import FeedBatch
from bot.workflows import advisories as flow

PACKAGES = [
    {"ecosystem": "PyPI", "name": "flask", "version": "2.2.2"},
    {"ecosystem": "PyPI", "name": "jinja2", "version": "3.1.2"},
]


def run_cli(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env)


async def _decided(harness_factory: Any, tmp_path: Path) -> tuple[Harness, dict[str, str]]:
    """Two advisories on web-shop: flask's approved as not affected, jinja2's open (affected)."""
    data = copy.deepcopy(BASE_CONFIG)
    data["systems"]["web-shop"]["packages"] = PACKAGES
    (tmp_path / "patchwarden.yaml").write_text(yaml.safe_dump(data))
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"packages": PACKAGES}}))
    docs = [SHARED_DATA / "osv" / "PyPI" / n for n in ("PYSEC-2023-62.json", "GHSA-h5c8-rqwp-cp95.json")]
    batch = FeedBatch(advisories=tuple(parse_osv(json.loads(p.read_text())) for p in docs))
    async with h.deps.sessions.begin() as s:
        await flow.ingest(s, config=h.config, batch=batch, now=h.clock.now())
    until = (h.clock.now() + timedelta(days=90)).date().isoformat()
    await h.slack.command(
        f"exception PYSEC-2023-62 web-shop not-affected vulnerable_code_not_in_execute_path --until {until} "
        "the debugger is never on in production",
        user=REQ,
    )
    card = await eventually(lambda: next(iter(h.fake.channel_messages("C0APPROVALS")), None), what="exception card")
    await h.slack.click(card, "exception_approve", user=OWNER)
    await eventually(lambda: "<@U0OWNER1>" in str(h.latest(card).blocks), what="first approval")
    await h.slack.click(h.latest(card), "exception_approve", user=SEC1)
    await eventually(lambda: "Approved" in str(h.latest(card).blocks), what="approved")
    env = {
        "PATCHWARDEN_DATABASE_URL": str(h.deps.settings.database_url),
        "PATCHWARDEN_CONFIG": str(tmp_path / "patchwarden.yaml"),
        "PATCHWARDEN_AUDIT_KEY_FILE": str(tmp_path / "audit.key"),
    }
    return h, env


async def test_vex_export_is_valid_openvex_signed_and_tampering_is_detected(
    harness_factory: Any, tmp_path: Path
) -> None:
    _, env = await _decided(harness_factory, tmp_path)
    out = tmp_path / "decisions.openvex.json"
    result = await asyncio.to_thread(run_cli, ["vex", "export", "--system", "web-shop", "-o", str(out)], env)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    vex.validate_openvex(doc)  # the shipped copy of openvex/spec's openvex_json_schema.json
    by_vuln = {s["vulnerability"]["name"]: s for s in doc["statements"]}
    flask, jinja = by_vuln["PYSEC-2023-62"], by_vuln["GHSA-h5c8-rqwp-cp95"]
    assert flask["status"] == "not_affected" and flask["justification"] == "vulnerable_code_not_in_execute_path"
    assert flask["products"][0]["@id"] == "pkg:generic/patchwarden/web-shop"
    assert jinja["status"] == "affected" and "No change requested yet" in jinja["action_statement"]
    assert "CVE-2023-30861" in flask["vulnerability"]["aliases"]

    verified = await asyncio.to_thread(run_cli, ["vex", "verify", str(out)], env)
    assert verified.exit_code == 0 and "OK" in verified.output, verified.output

    # one byte changed: refused
    out.write_text(out.read_text().replace("not_affected", "affected", 1))
    tampered = await asyncio.to_thread(run_cli, ["vex", "verify", str(out)], env)
    assert tampered.exit_code == 1 and "changed after it was signed" in tampered.output

    # signed, but by another key than the control-log key: refused
    other = {**env, "PATCHWARDEN_AUDIT_KEY_FILE": str(tmp_path / "other.key")}
    assert (await asyncio.to_thread(run_cli, ["vex", "export", "-o", str(out)], env)).exit_code == 0
    foreign = await asyncio.to_thread(run_cli, ["vex", "verify", str(out)], other)
    assert foreign.exit_code == 1 and "another key" in foreign.output

    csaf = tmp_path / "decisions.csaf.json"
    result = await asyncio.to_thread(run_cli, ["vex", "export", "--format", "csaf", "-o", str(csaf)], env)
    assert result.exit_code == 0, result.output
    status = {v["ids"][0]["text"]: v["product_status"] for v in json.loads(csaf.read_text())["vulnerabilities"]}
    assert status["PYSEC-2023-62"] == {"known_not_affected": ["CSAFPID-0001"]}
    assert (await asyncio.to_thread(run_cli, ["vex", "verify", str(csaf)], env)).exit_code == 0


def test_schema_refuses_what_openvex_forbids_and_fixed_statements_carry_the_verification() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    fixed = vex.Statement("GHSA-x", (), vex.system_purl("web-shop"), "fixed", now, status_notes="verified at ...")
    doc = vex.openvex([fixed], doc_id="urn:uuid:1", author="patchwarden", now=now)
    vex.validate_openvex(doc)
    affected_without_action = vex.Statement("GHSA-x", (), vex.system_purl("web-shop"), "affected", now)
    bad = vex.openvex([affected_without_action], doc_id="urn:uuid:2", author="patchwarden", now=now)
    with pytest.raises(VerificationError, match="action_statement"):
        vex.validate_openvex(bad)
    signer = Signer.generate()
    data = json.dumps(doc).encode()
    sig = json.dumps(vex.sign(data, signer)).encode()
    assert vex.verify_signature(data, sig, trusted_public_key=signer.public_bytes) == signer.key_id
    with pytest.raises(VerificationError, match="changed"):
        vex.verify_signature(data + b" ", sig, trusted_public_key=signer.public_bytes)
