"""Match rows: the matcher's ``Match`` objects as ``advisory_matches`` column dicts, and how two sets compare.

A row whose ``status`` is ``not_affected`` is a vendor's VEX statement clearing that product: it is stored
(with the justification) and exported, but it is not work, so it never makes a system "newly affected", never
gets a priority or a due date, and never makes a record due (:func:`live`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories import inventory as inventory_files
from bot.advisories.model import InstalledPackage, Match, MatchStatus, PackagePool
from bot.config import Config
from storage import inventory as inventory_store
from storage.models import AdvisoryMatch

NOT_AFFECTED = MatchStatus.NOT_AFFECTED.value
# Every column a re-prioritised row keeps (``reprioritise`` swaps rows in bulk: a column left out is lost).
COLUMNS = (
    "advisory_id",
    "system",
    "ecosystem",
    "package",
    "installed",
    "fixed",
    "status",
    "reason",
    "discovered",
    "remediation",
    "justification",
)
Row = dict[str, Any]


async def current_inventory(session: AsyncSession, *, config: Config) -> dict[str, list[InstalledPackage]]:
    """Installed packages per system: the configured lists plus the stored SBOM imports.

    Identical packages of different systems are one object (``PackagePool``): a thousand systems with the
    same base image hold each package once."""
    pool = PackagePool()
    systems: dict[str, list[InstalledPackage]] = {
        name: inventory_files.from_config(system) for name, system in config.systems.items() if system.packages
    }
    async for page in inventory_store.package_rows(session):
        for system, ecosystem, name, version, release, purl in page:
            pkg = pool.get(ecosystem=ecosystem, name=name, version=version, release=release, purl=purl)
            systems.setdefault(system, []).append(pkg)
    return systems


def rows(matches: Iterable[Match]) -> list[Row]:
    """Column dicts of ``matches``, one per installed package version (the unique constraint)."""
    out: list[Row] = []
    seen: set[tuple[str, str, str, str]] = set()
    for m in matches:
        pkg = m.package
        eco = f"{pkg.ecosystem}:{pkg.release}" if pkg.release else pkg.ecosystem
        row: Row = {
            "system": m.system[:64],
            "ecosystem": eco[:64],
            "package": pkg.name[:200],
            "installed": pkg.version[:100],
            "fixed": list(m.fixed_versions),
            "status": m.status.value,
            "reason": m.reason,
            "remediation": m.remediation,
            "justification": m.justification[:64],
        }
        key = (row["system"], row["ecosystem"], row["package"], row["installed"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def keys(found: Sequence[AdvisoryMatch] | Sequence[Row]) -> set[tuple[object, ...]]:
    """What makes two sets of matches differ: system, package, installed, fixed versions and status."""
    out: set[tuple[object, ...]] = set()
    for r in found:
        d = (
            r
            if isinstance(r, dict)
            else {k: getattr(r, k) for k in ("system", "package", "installed", "fixed", "status")}
        )
        out.add((d["system"], d["package"], d["installed"], tuple(d["fixed"]), d["status"]))
    return out


def live(found: Iterable[AdvisoryMatch | Row]) -> list[Any]:
    """The rows that are work (affected or needing triage), without the vendor-cleared ones."""
    return [r for r in found if (r["status"] if isinstance(r, dict) else r.status) != NOT_AFFECTED]


def new_systems(after: Sequence[Row], before: Sequence[AdvisoryMatch]) -> tuple[str, ...]:
    """Systems the new rows make affected (or needing triage) that the old ones did not."""
    return tuple(sorted({r["system"] for r in live(after)} - {m.system for m in live(before)}))


def keep_discovered(after: Sequence[Row], before: Sequence[AdvisoryMatch], *, now: datetime) -> None:
    """Each row keeps the time its match was first seen (the SLA clock); new ones start ``now``."""
    seen = {(m.system, m.ecosystem, m.package, m.installed): m.discovered for m in before}
    for row in after:
        row["discovered"] = seen.get((row["system"], row["ecosystem"], row["package"], row["installed"])) or now
