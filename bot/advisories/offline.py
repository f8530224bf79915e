"""Offline matching for the command line: OSV records from a directory or zip against an inventory file."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

from bot.advisories.inventory import load_inventory
from bot.advisories.matching import MatchIndex
from bot.advisories.model import Advisory, InstalledPackage, Match, MatchStatus
from bot.advisories.osv import parse_osv
from bot.errors import FeedError, InputError


def load_osv_advisories(path: Path) -> list[Advisory]:
    """OSV JSON records from a directory (searched recursively) or a zip (the osv.dev ``all.zip`` form).

    JSON files without an ``id`` (schemas, indexes) are skipped; a malformed OSV record raises
    ``InputError`` naming the file."""
    documents: list[tuple[str, bytes]] = []
    if path.is_dir():
        documents = [(str(p), p.read_bytes()) for p in sorted(path.rglob("*.json"))]
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            documents = [
                (f"{path}:{name}", archive.read(name)) for name in archive.namelist() if name.endswith(".json")
            ]
    else:
        raise InputError(f"{path}: expected a directory or a zip of OSV JSON records")
    advisories = []
    for where, raw in documents:
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict) and "id" in doc:
                advisories.append(parse_osv(doc))
        except (ValueError, FeedError) as exc:
            raise InputError(f"{where}: not a valid OSV record ({exc})") from exc
    return advisories


def match_offline(inventory: Path, advisories: Path) -> list[Match]:
    """Match an inventory file or SBOM directory against a directory or zip of OSV records."""
    systems = load_inventory(inventory)
    matches = MatchIndex(load_osv_advisories(advisories)).match_all(systems)
    return sorted(matches, key=lambda m: (m.system, m.package.name, m.package.purl or "", m.advisory_id))


def format_matches(matches: Sequence[Match], *, as_json: bool) -> str:
    """Render matches as JSON (a list of objects) or as a readable table grouped by system."""
    if as_json:
        return json.dumps([m.as_json() for m in matches], indent=2)
    if not matches:
        return "No installed package is affected by these advisories."
    lines: list[str] = []
    by_system: dict[str, list[Match]] = {}
    for m in matches:
        by_system.setdefault(m.system, []).append(m)
    for system, rows in by_system.items():
        affected = sum(r.status is MatchStatus.AFFECTED for r in rows)
        cleared = sum(r.status is MatchStatus.NOT_AFFECTED for r in rows)
        head = f"{system}: {affected} affected, {len(rows) - affected - cleared} to triage"
        lines.append(head + (f", {cleared} not affected (vendor VEX)" if cleared else ""))
        width = max(len(_package_label(r.package)) for r in rows)
        for r in rows:
            fixed = ", ".join(r.fixed_versions) if r.fixed_versions else "no fix listed"
            status = _STATUS_WORDS[r.status]
            label = _package_label(r.package)
            line = f"  {status} {label:<{width}}  {r.package.version} → {fixed}  {r.advisory_id}"
            lines.append(line + (f"  ({r.reason})" if r.reason else ""))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_STATUS_WORDS = {
    MatchStatus.AFFECTED: "AFFECTED",
    MatchStatus.NEEDS_TRIAGE: "TRIAGE  ",
    MatchStatus.NOT_AFFECTED: "CLEARED ",
}


def _package_label(pkg: InstalledPackage) -> str:
    eco = f"{pkg.ecosystem}:{pkg.release}" if pkg.release else pkg.ecosystem
    label = f"{eco}/{pkg.name}"
    if pkg.purl and pkg.ecosystem in ("Debian", "Ubuntu"):
        binary = pkg.purl.split("/", 2)[-1].split("@", 1)[0]
        if binary != pkg.name:
            label += f" ({binary})"
    return label
