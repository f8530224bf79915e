"""VEX documents of patchwarden's decisions: OpenVEX 0.2.0 (validated against the shipped JSON schema) or a
CSAF 2.0 VEX, and their detached Ed25519 signature.

The signature file (``<document>.sig``) is JSON: ``{"algorithm": "ed25519", "key_id", "public_key",
"sha256", "signature"}``; ``signature`` is base64 Ed25519 over the document's exact bytes. Verification
(``verify_signature``) fails closed, in order:

1. the signature file parses and names ``ed25519``;
2. its public key is the one the verifier trusts (the control-log key), never the key the file brings;
3. the document's SHA-256 equals the recorded one (a readable "the document was changed" first);
4. the Ed25519 signature over the bytes verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from bot import crypto
from bot.errors import VerificationError

OPENVEX_CONTEXT = "https://openvex.dev/ns/v0.2.0"
TOOLING = "patchwarden"


@dataclass(frozen=True)
class Statement:
    """One decision about one vulnerability on one product (a system, named by its purl)."""

    vulnerability: str
    aliases: tuple[str, ...]
    product: str  # the system's purl
    status: str  # not_affected | affected | fixed | under_investigation
    timestamp: datetime
    subcomponents: tuple[str, ...] = ()  # the affected packages' purls
    justification: str | None = None
    impact_statement: str | None = None
    action_statement: str | None = None
    status_notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def system_purl(system: str) -> str:
    """The product a system is in VEX: ``pkg:generic/patchwarden/<system>``."""
    return f"pkg:generic/patchwarden/{system}"


def openvex(statements: list[Statement], *, doc_id: str, author: str, now: datetime) -> dict[str, Any]:
    """An OpenVEX document of ``statements`` (at least one)."""
    out = []
    for s in statements:
        product: dict[str, Any] = {"@id": s.product, "identifiers": {"purl": s.product}}
        if s.subcomponents:
            product["subcomponents"] = [{"@id": p, "identifiers": {"purl": p}} for p in dict.fromkeys(s.subcomponents)]
        vuln: dict[str, Any] = {"name": s.vulnerability}
        if s.aliases:
            vuln["aliases"] = list(dict.fromkeys(s.aliases))
        entry: dict[str, Any] = {
            "vulnerability": vuln,
            "timestamp": s.timestamp.isoformat(),
            "products": [product],
            "status": s.status,
        }
        for key in ("justification", "impact_statement", "action_statement", "status_notes"):
            value = getattr(s, key)
            if value:
                entry[key] = value
        out.append(entry)
    return {
        "@context": OPENVEX_CONTEXT,
        "@id": doc_id,
        "author": author,
        "timestamp": now.isoformat(),
        "version": 1,
        "tooling": TOOLING,
        "statements": out,
    }


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("bot.advisories").joinpath("openvex_json_schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_openvex(doc: dict[str, Any]) -> None:
    """Raise ``VerificationError`` naming the first violation of the OpenVEX JSON schema."""
    validator = jsonschema.Draft202012Validator(_schema(), format_checker=jsonschema.FormatChecker())
    error = next(iter(sorted(validator.iter_errors(doc), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.path) or "(document)"
        raise VerificationError(f"not a valid OpenVEX document at {where}: {error.message}")


CSAF_STATUS = {
    "not_affected": "known_not_affected",
    "affected": "known_affected",
    "fixed": "fixed",
    "under_investigation": "under_investigation",
}


def csaf(statements: list[Statement], *, doc_id: str, author: str, now: datetime) -> dict[str, Any]:
    """A CSAF 2.0 VEX (profile ``csaf_vex``) of the same statements."""
    products = sorted({s.product for s in statements})
    ids = {p: f"CSAFPID-{i + 1:04d}" for i, p in enumerate(products)}
    vulns: dict[str, dict[str, Any]] = {}
    for s in statements:
        fresh: dict[str, Any] = {"ids": [{"system_name": "patchwarden", "text": s.vulnerability}]}
        # CSAF 6.1.27.5: every vulnerability of a VEX carries notes.
        general = {"category": "general", "text": f"patchwarden's decisions about {s.vulnerability} per system."}
        fresh.update(notes=[general], product_status={}, flags=[], threats=[], remediations=[])
        v = vulns.setdefault(s.vulnerability, fresh)
        cve = next((a for a in (s.vulnerability, *s.aliases) if a.startswith("CVE-")), None)
        if cve:
            v["cve"] = cve
        pid = ids[s.product]
        v["product_status"].setdefault(CSAF_STATUS[s.status], []).append(pid)
        if s.justification:
            v["flags"].append({"label": s.justification, "product_ids": [pid]})
        if s.impact_statement:
            v["threats"].append({"category": "impact", "details": s.impact_statement, "product_ids": [pid]})
        if s.action_statement:
            v["remediations"].append({"category": "mitigation", "details": s.action_statement, "product_ids": [pid]})
        if s.status_notes:
            v["notes"].append({"category": "details", "title": s.product, "text": s.status_notes})
    for v in vulns.values():
        for key in ("flags", "threats", "remediations"):
            if not v[key]:
                del v[key]
    stamp = now.isoformat()
    return {
        "document": {
            "category": "csaf_vex",
            "csaf_version": "2.0",
            "title": "patchwarden decisions",
            "publisher": {"category": "user", "name": author, "namespace": "https://patchwarden.invalid"},
            "tracking": {
                "id": doc_id,
                "status": "final",
                "version": "1",
                "initial_release_date": stamp,
                "current_release_date": stamp,
                "revision_history": [{"number": "1", "date": stamp, "summary": "exported"}],
                "generator": {"engine": {"name": TOOLING}},
            },
        },
        "product_tree": {
            "full_product_names": [
                {"name": p, "product_id": ids[p], "product_identification_helper": {"purl": p}} for p in products
            ]
        },
        "vulnerabilities": list(vulns.values()),
    }


def sign(document: bytes, signer: crypto.Signer) -> dict[str, str]:
    """The detached signature of ``document`` (see the module docstring)."""
    return {
        "algorithm": "ed25519",
        "key_id": signer.key_id,
        "public_key": base64.b64encode(signer.public_bytes).decode(),
        "sha256": crypto.sha256_hex(document),
        "signature": signer.sign(document),
    }


def verify_signature(document: bytes, signature_file: bytes, *, trusted_public_key: bytes) -> str:
    """Check the detached signature (numbered steps in the module docstring); returns the key id."""
    # 1.
    try:
        sig = json.loads(signature_file)
        if not isinstance(sig, dict) or sig.get("algorithm") != "ed25519":
            raise ValueError("not an ed25519 signature file")
        public_key = base64.b64decode(str(sig["public_key"]), validate=True)
        signature = base64.b64decode(str(sig["signature"]), validate=True)
    except (ValueError, KeyError, binascii.Error) as exc:
        raise VerificationError(f"the signature file is unreadable: {exc}") from exc
    # 2.
    if public_key != trusted_public_key:
        raise VerificationError("the document is signed by another key than patchwarden's control-log key")
    # 3.
    if crypto.sha256_hex(document) != sig.get("sha256"):
        raise VerificationError("the document was changed after it was signed (its SHA-256 differs)")
    # 4.
    crypto.verify_ed25519(public_key, signature=signature, message=document)
    return str(sig.get("key_id", ""))
