"""The sandbox's demo organisation: people, channels, three systems with SBOMs, and sample advisories.

The SBOMs and OSV records under ``examples/demo/`` are copies of the project's test data (see
``examples/demo/README.md`` for their origin and licences). Seeding matches them offline with the same
matcher the feeds use, so the Home tab, the report and the calendar have something real to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories.inventory import load_cyclonedx
from bot.advisories.matching import match_packages
from bot.advisories.offline import load_osv_advisories
from bot.config import Config, parse_config
from storage.models import AdvisoryMatch, AdvisoryRecord, AdvisoryStatus, InventoryPackage

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
ALICE, BOB, SAM, OLGA, DANA = "U0ALICE", "U0BOB", "U0SAM", "U0OLGA", "U0DANA"
PRIYA = "U0PRIYA"  # the second security approver: with one, an owner's own change could never reach prod
APPROVALS, ADVISORIES, AUDIT, SHOP_USERS, BILLING_USERS, OPS = (
    "C0APPROVALS",
    "C0ADVISORIES",
    "C0AUDIT",
    "C0SHOPUSERS",
    "C0BILLING",
    "C0OPS",
)
SBOMS = {
    "web-shop": "debian12-webserver.cdx.json",
    "billing": "python-app.cdx.json",
    "legacy-erp": "debian9-legacy-host.cdx.json",
}
# Shortened so a window can be booked for tonight; production policies announce at least 24 h ahead.
DEMO_NOTICE = "1h"
KNOWN_EXPLOITED = frozenset({"CVE-2020-11023"})  # jQuery, in CISA's KEV catalog


@dataclass(frozen=True)
class Person:
    """Someone the sandbox page can act as."""

    id: str
    name: str
    role: str


DEMO_PEOPLE = (
    Person(DANA, "Dana", "end user / requester"),
    Person(ALICE, "Alice", "owner of web-shop and legacy-erp"),
    Person(BOB, "Bob", "owner of billing"),
    Person(SAM, "Sam", "security approver"),
    Person(PRIYA, "Priya", "security approver"),
    Person(OLGA, "Olga", "operator"),
)
DEMO_CHANNELS = {
    APPROVALS: "patch-approvals",
    ADVISORIES: "security-advisories",
    OPS: "ops",
    SHOP_USERS: "shop-users",
    BILLING_USERS: "billing-users",
    AUDIT: "audit",
}


def demo_config(today: date) -> Config:
    """The demo configuration; the blackout is placed relative to ``today`` so it is always ahead."""
    freeze = today + timedelta(days=10)
    envs = {"test": {"executor": "dry-run"}, "prod": {"executor": "dry-run"}}
    data: dict[str, Any] = {
        "slack": {"approvals_channel": APPROVALS, "advisories_channel": ADVISORIES, "audit_channel": AUDIT},
        "groups": {"security": [SAM, PRIYA], "operators": [OLGA]},
        "systems": {
            "web-shop": {
                "owner": ALICE,
                "stakeholders": [DANA],
                "announce_channel": SHOP_USERS,
                "timezone": "Europe/Berlin",
                "description": "The public shop (Debian 12 web server)",
                "environments": envs,
                "maintenance_windows": [{"rrule": "FREQ=DAILY;BYHOUR=22", "duration": "2h"}],
                "blackouts": [
                    {
                        "start": f"{freeze.isoformat()}T00:00:00",
                        "end": f"{(freeze + timedelta(days=3)).isoformat()}T00:00:00",
                        "reason": "Seasonal sale",
                    }
                ],
            },
            "billing": {
                "owner": BOB,
                "announce_channel": BILLING_USERS,
                "timezone": "America/New_York",
                "description": "Billing portal (Flask)",
                "environments": envs,
                "maintenance_windows": [{"rrule": "FREQ=WEEKLY;BYDAY=TU,TH;BYHOUR=6", "duration": "1h"}],
            },
            "legacy-erp": {
                "owner": ALICE,
                "timezone": "UTC",
                "description": "Old ERP host (Debian 9)",
                "environments": envs,
                "maintenance_windows": [{"rrule": "FREQ=WEEKLY;BYDAY=SA;BYHOUR=8", "duration": "4h"}],
            },
        },
        "policy": {
            "version": 1,
            "approval_ttl": "72h",
            "operators": "operators",
            "stages": {
                "test": [{"role": "owner", "count": 1}],
                "prod": [{"role": "owner", "count": 1}, {"group": "security", "count": 1}],
            },
            "announce_notice": DEMO_NOTICE,
        },
    }
    return parse_config(data, source="sandbox demo configuration")


def people_of(config: Config) -> list[Person]:
    """Everyone the configuration names, with the demo's names where known, roles otherwise derived."""
    known = {p.id: p for p in DEMO_PEOPLE}
    roles: dict[str, list[str]] = {}
    for name, system in config.systems.items():
        roles.setdefault(system.owner, []).append(f"owner of {name}")
        for s in system.stakeholders:
            roles.setdefault(s, []).append(f"stakeholder of {name}")
    for group, members in config.groups.items():
        for m in members:
            roles.setdefault(m, []).append(f"{group} group")
    out = [known[u] for u in known if u in roles or u == DANA]
    out += [Person(u, u, ", ".join(r)) for u, r in sorted(roles.items()) if u not in known]
    return out


async def seed(session: AsyncSession, *, config: Config, now: datetime) -> int:
    """Import the demo SBOMs and record the advisories that hit them; returns the number of matches."""
    inventories = {name: load_cyclonedx(DEMO_DIR / "sbom" / file) for name, file in SBOMS.items()}
    for name, packages in inventories.items():
        for pkg in packages:
            session.add(
                InventoryPackage(
                    system=name,
                    ecosystem=pkg.ecosystem,
                    name=pkg.name,
                    version=pkg.version,
                    release=pkg.release,
                    purl=pkg.purl,
                    source=SBOMS[name],
                    imported_at=now,
                )
            )
    advisories = {a.id: a for a in load_osv_advisories(DEMO_DIR / "osv")}
    matches = match_packages(list(advisories.values()), inventories)
    records: dict[str, AdvisoryRecord] = {}
    seen: set[tuple[str, str, str, str, str]] = set()
    for i, match in enumerate(sorted(matches, key=lambda m: (m.system, m.advisory_id))):
        adv = advisories[match.advisory_id]
        record = records.get(adv.id)
        if record is None:
            # staggered first sightings so some advisories are past their SLA and some are not
            first_seen = now - timedelta(days=15 + 9 * i)
            severity = adv.severity.value
            record = AdvisoryRecord(
                primary_id=adv.id,
                sources=["osv"],
                aliases=list(adv.aliases),
                data={"summary": adv.summary},
                content_hash=adv.content_hash or "0" * 64,
                severity=severity,
                known_exploited=bool(KNOWN_EXPLOITED & set(adv.aliases)),
                published=adv.published,
                modified=adv.modified,
                status=AdvisoryStatus.OPEN,
                due=first_seen + timedelta(days=config.policy.sla_days.get(severity, 90)),
                first_seen=first_seen,
                updated_at=now,
            )
            session.add(record)
            await session.flush()
            records[adv.id] = record
        key = (adv.id, match.system, match.package.ecosystem, match.package.name, match.package.version)
        if key in seen:
            continue
        seen.add(key)
        session.add(
            AdvisoryMatch(
                advisory_id=record.id,
                system=match.system,
                ecosystem=match.package.ecosystem,
                package=match.package.name,
                installed=match.package.version,
                fixed=list(match.fixed_versions),
                status=match.status.value,
                reason=match.reason,
            )
        )
    return len(seen)
