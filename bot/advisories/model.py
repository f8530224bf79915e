"""The normalised advisory every feed produces, and the installed-package inventory it is matched against.

Field semantics follow the OSV schema (https://ossf.github.io/osv-schema/), which is the richest of the
formats: OSV records map 1:1; KEV entries and CSAF documents are mapped onto it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from bot.errors import FeedError

# purl type → OSV ecosystem for language packages, and (purl type, namespace) → OSV ecosystem for distribution
# packages. One table for every purl reader (SBOM inventory, CSAF product ids), so they cannot drift apart.
PURL_ECOSYSTEMS: dict[str, str] = {
    "pypi": "PyPI",
    "npm": "npm",
    "maven": "Maven",
    "golang": "Go",
    "gem": "RubyGems",
    "cargo": "crates.io",
    "nuget": "NuGet",
    "composer": "Packagist",
    "hex": "Hex",
    "pub": "Pub",
}
DISTRO_ECOSYSTEMS: dict[tuple[str, str], str] = {
    ("deb", "debian"): "Debian",
    ("deb", "ubuntu"): "Ubuntu",
    ("apk", "alpine"): "Alpine",
    ("rpm", "redhat"): "Red Hat",
    ("rpm", "rocky"): "Rocky Linux",
    ("rpm", "rocky-linux"): "Rocky Linux",
    ("rpm", "almalinux"): "AlmaLinux",
    ("rpm", "suse"): "SUSE",
    ("rpm", "opensuse"): "openSUSE",
}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Severity(StrEnum):
    """CVSS qualitative band (CVSS v3/v4: 9.0+ critical, 7.0+ high, 4.0+ medium, >0 low)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"
    UNKNOWN = "unknown"


# Where a severity came from (bot.advisories.severity sources), in words a post can show.
SEVERITY_SOURCES: dict[str, str] = {
    "cvss_v4.0": "CVSS 4.0 vector",
    "cvss_v3.1": "CVSS 3.1 vector",
    "cvss_v3.0": "CVSS 3.0 vector",
    "cvss_v2": "CVSS 2 vector",
    "ghsa": "GitHub advisory rating",
    "csaf_aggregate": "vendor's aggregate severity (CSAF)",
    "csaf_threat_impact": "vendor's impact rating (CSAF)",
    "debian_urgency": "Debian urgency",
    "ubuntu_priority": "Ubuntu priority",
    "redhat_severity": "Red Hat severity",
    "ecosystem_specific": "the package database's rating",
    "none": "no rating in any source",
}


class RangeEvent(Frozen):
    """One OSV range event; exactly one field is set."""

    introduced: str | None = None
    fixed: str | None = None
    last_affected: str | None = None
    limit: str | None = None


class VersionRange(Frozen):
    """An OSV range: ``type`` is ECOSYSTEM, SEMVER or GIT (GIT cannot be decided against versions)."""

    type: str
    repo: str | None = None
    events: tuple[RangeEvent, ...] = ()


class AffectedPackage(Frozen):
    """One OSV ``affected`` entry. ``ecosystem`` keeps the release suffix as OSV writes it (``Debian:12``)."""

    ecosystem: str
    name: str
    purl: str | None = None
    ranges: tuple[VersionRange, ...] = ()
    versions: tuple[str, ...] = ()
    # CSAF/VEX: ``triage`` set means the vendor is still investigating (a hit needs triage, never "affected");
    # ``remediation`` is the vendor's fix line for this package (CSAF ``remediations[].details``/``url``).
    triage: str = ""
    remediation: str = ""


# The VEX justifications (OpenVEX ``justification`` values, CSAF 2.0 ``flags[].label`` values: the same five).
VEX_JUSTIFICATIONS = (
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
)


class NotAffected(Frozen):
    """A vendor's VEX ``known_not_affected`` statement for one product (``version`` None: every version).

    It suppresses matches of the advisory's ids for that product only, never the CVE on other packages.
    ``justification`` is one of ``VEX_JUSTIFICATIONS`` (the CSAF flag label) or empty; ``impact`` is the
    vendor's impact statement. Records stored before the two were apart held ``"label: statement"`` in
    ``justification``; they are split on reading."""

    ecosystem: str
    name: str
    version: str | None = None
    justification: str = ""
    impact: str = ""

    @model_validator(mode="before")
    @classmethod
    def _split_legacy(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("impact"):
            return data
        text = str(data.get("justification") or "")
        if not text or text in VEX_JUSTIFICATIONS:
            return data
        label, sep, rest = text.partition(": ")
        if sep and label in VEX_JUSTIFICATIONS:
            return {**data, "justification": label, "impact": rest}
        return {**data, "justification": "", "impact": text}

    def why(self) -> str:
        """The statement in words: ``"label: impact"``, or whichever of the two the vendor gave."""
        return ": ".join(p for p in (self.justification, self.impact) if p) or "the vendor states it is not affected"


class Advisory(Frozen):
    """A normalised advisory. ``id`` is the source's id; ``aliases`` holds CVE/GHSA/DSA... for de-duplication."""

    id: str
    source: str  # feed name: osv, kev, csaf, manual, ...
    aliases: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    summary: str = ""
    details: str = ""
    published: datetime | None = None
    modified: datetime | None = None
    withdrawn: datetime | None = None
    severity: Severity = Severity.UNKNOWN
    cvss_score: float | None = None
    cvss_vector: str | None = None
    severity_source: str = ""  # where ``severity`` came from (bot.advisories.severity); "" in old records
    severity_flag: str = ""  # a declared score that disagreed with its vector, and what was used instead
    known_exploited: bool = False
    kev_due_date: date | None = None
    affected: tuple[AffectedPackage, ...] = ()
    not_affected: tuple[NotAffected, ...] = ()
    references: tuple[str, ...] = ()
    # What applying the fix restarts (CSAF ``remediations[].restart_required.category``, the worst one):
    # "" unknown, "none", "service" (services restart; no host reboot) or "machine" (the machine restarts).
    restart: str = ""
    content_hash: str = Field(default="", description="sha256 of the source document, to notice upstream changes")

    def severity_basis(self) -> str:
        """Where the severity came from, in words ("CVSS 3.1 vector"); empty for records stored before."""
        return SEVERITY_SOURCES.get(self.severity_source, self.severity_source)

    def all_ids(self) -> frozenset[str]:
        """The id and every alias, for de-duplication across feeds."""
        return frozenset((self.id, *self.aliases))


class InstalledPackage(Frozen):
    """A package installed on a system. ``ecosystem`` is the bare OSV ecosystem (``Debian``, ``PyPI``);
    ``release`` is the distribution release where it matters (``12`` for Debian 12, ``v3.18`` for Alpine)."""

    ecosystem: str
    name: str
    version: str
    release: str | None = None
    purl: str | None = None


class MatchStatus(StrEnum):
    AFFECTED = "affected"
    NEEDS_TRIAGE = "needs_triage"  # GIT ranges, unparseable versions, unknown ecosystems: never a silent miss
    NOT_AFFECTED = "not_affected"  # a vendor VEX statement clears this product (``justification``, ``reason``)


class Match(NamedTuple):
    """One advisory hitting one installed package on one system.

    An immutable named tuple, not a pydantic model: a full match of 1,000 systems yields half a million of
    them, and the matcher builds them from values it already checked (a tuple is built in a quarter of the
    time of a frozen dataclass, a tenth of a model's). ``as_json`` is the edge form.
    A ``NOT_AFFECTED`` match carries the vendor's ``justification`` label and its words in ``reason``."""

    advisory_id: str
    system: str
    package: InstalledPackage
    status: MatchStatus
    fixed_versions: tuple[str, ...] = ()
    reason: str = ""
    remediation: str = ""  # the vendor's fix line, when a CSAF remediation names this product
    justification: str = ""  # VEX label of a NOT_AFFECTED match (one of VEX_JUSTIFICATIONS, or empty)

    def as_json(self) -> dict[str, Any]:
        """The match as JSON-ready data (``advisories match --json``)."""
        return {
            "advisory_id": self.advisory_id,
            "system": self.system,
            "package": self.package.model_dump(mode="json"),
            "status": self.status.value,
            "fixed_versions": list(self.fixed_versions),
            "reason": self.reason,
            "remediation": self.remediation,
            "justification": self.justification,
        }


class PackagePool:
    """One shared ``InstalledPackage`` per distinct package: 1,000 systems × 500 packages are mostly the same
    few thousand packages, and a pool keeps one object of each instead of half a million."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str, str | None, str | None], InstalledPackage] = {}

    def get(
        self, *, ecosystem: str, name: str, version: str, release: str | None = None, purl: str | None = None
    ) -> InstalledPackage:
        """The pooled package with these fields (created on first use)."""
        key = (ecosystem, name, version, release, purl)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = InstalledPackage(
                ecosystem=ecosystem, name=name, version=version, release=release, purl=purl
            )
        return found

    def __len__(self) -> int:
        return len(self._seen)


_DATETIME = TypeAdapter(datetime)


def parse_time(value: object, *, field: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (naive ones are UTC); ``FeedError`` when malformed."""
    if value is None or value == "":
        return None
    try:
        parsed = _DATETIME.validate_python(value)
    except ValidationError as exc:
        raise FeedError(f"{field}: not a timestamp: {str(value)[:40]!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def content_hash(data: Mapping[str, Any] | bytes) -> str:
    """sha256 of a document (mappings are hashed as canonical JSON, so whitespace changes do not count)."""
    raw = data if isinstance(data, bytes) else json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()
