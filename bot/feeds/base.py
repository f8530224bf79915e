"""The feed plugin contract, and the helpers every feed shares (OSV parsing, CVSS severity bands).

A feed is a class registered under the entry point group ``patchwarden.feeds``; the entry point name is
the feed name used as the key under ``feeds:`` in the configuration. Installed is not enabled: only the
feeds named in the configuration are created (see :mod:`bot.feeds.registry`).

Contract for implementers:

* ``name`` is the entry point name; ``Options`` a pydantic model (subclass :class:`FeedOptions`, which
  forbids unknown keys and carries the per-feed ``proxy`` / ``ca_bundle``).
* ``_poll(cursor=...)`` reads whatever is new since ``cursor`` and returns a :class:`FeedBatch`. It must be
  all-or-nothing per document: a document that cannot be verified or parsed goes into ``quarantined`` with
  a reason and is *not* in ``advisories``; the poll goes on. Transient failures (network, 5xx after retries)
  raise ``FeedError`` so the caller keeps the old cursor and retries the whole poll later.
* The returned ``cursor`` is opaque state the caller persists and passes back; the caller stores it only
  after it has stored the batch, so a crash between the two re-reads, never skips.
* Plugins get frozen models and an :class:`~bot.feeds.http.HttpSettings`; they never see a database
  session or a Slack client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from bot.config import Duration, format_duration
from bot.errors import ConfigError, FeedError
from bot.feeds.http import HttpSettings
from bot.feeds.model import Advisory, AffectedPackage, RangeEvent, Severity, VersionRange

log = logging.getLogger(__name__)


class Quarantined(BaseModel):
    """A document that was refused: which feed, which document (id, path or URL), and why."""

    model_config = ConfigDict(frozen=True)

    source: str
    document: str
    reason: str


class ExploitScore(BaseModel):
    """An exploit-prediction score of one CVE (FIRST EPSS): probability and percentile, both 0..1."""

    model_config = ConfigDict(frozen=True)

    cve: str
    epss: float
    percentile: float
    score_date: str  # YYYY-MM-DD


class FeedBatch(BaseModel):
    """The result of one poll: accepted advisories, refused documents, and the cursor for the next poll.

    ``scores`` (EPSS) is a complete snapshot when not empty: it replaces the stored scores.
    """

    model_config = ConfigDict(frozen=True)

    advisories: tuple[Advisory, ...] = ()
    quarantined: tuple[Quarantined, ...] = ()
    cursor: dict[str, str] = {}
    scores: tuple[ExploitScore, ...] = ()
    unchanged: int = 0  # documents the feed skipped because they are byte-identical to the last poll's


class FeedOptions(BaseModel):
    """Options every feed accepts; feeds subclass this. Unknown keys are configuration errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy: str | None = None
    ca_bundle: Path | None = None
    poll_timeout: Duration = timedelta(minutes=30)  # a hung provider must not stall the poller forever


class Feed(ABC):
    """Base class of every advisory feed plugin (see the module docstring for the contract)."""

    name: ClassVar[str]
    Options: ClassVar[type[FeedOptions]]

    def __init__(self, options: Mapping[str, Any], *, key_path: str, http: HttpSettings) -> None:
        """Validate ``options`` with ``Options``; raise ``ConfigError`` naming ``key_path`` on any error."""
        self.key_path = key_path
        try:
            self.options = self.Options.model_validate(dict(options))
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join([key_path, *(str(p) for p in err['loc'])])}: "
                + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
                for err in exc.errors()
            )
            raise ConfigError(f"invalid feed options: {details}") from exc
        overrides: dict[str, Any] = {}
        if self.options.proxy is not None:
            overrides["proxy"] = self.options.proxy
        if self.options.ca_bundle is not None:
            overrides["ca_bundle"] = self.options.ca_bundle
        self.http = http.model_copy(update=overrides)
        self._check()

    def _check(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op by default
        """Hook for checks beyond the Options model (raise ``ConfigError``); runs at startup."""

    async def poll(self, *, cursor: Mapping[str, str]) -> FeedBatch:
        """Read what is new since ``cursor`` within ``poll_timeout``; errors become a safe ``FeedError``."""
        try:
            async with asyncio.timeout(self.options.poll_timeout.total_seconds()):
                return await self._poll(cursor=dict(cursor))
        except FeedError:
            raise
        except TimeoutError as exc:
            raise FeedError(
                f"feed {self.name}: poll timed out after {format_duration(self.options.poll_timeout)}"
            ) from exc
        except Exception as exc:
            log.exception("feed %s: poll failed", self.name)
            raise FeedError(
                f"feed {self.name}: poll failed ({type(exc).__name__})",
                user_message=f"The advisory feed {self.name} failed; see the bot's log for details.",
            ) from exc

    @abstractmethod
    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        """Fetch and parse; return accepted advisories, quarantined documents and the next cursor."""


# --- severity --------------------------------------------------------------------------------------


def band(score: float | None) -> Severity:
    """CVSS v3/v4 qualitative band of a base score (0.0 is none; None is unknown)."""
    if score is None:
        return Severity.UNKNOWN
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW if score > 0 else Severity.NONE


def cvss_severity(vector: str) -> tuple[Severity, float | None]:
    """Band and base score of a CVSS v2/v3.x/v4.0 vector (via the ``cvss`` package); unknown if unparsable.

    CVSS v2 has no "critical" band: its scores are banded like v3 except that 9.0+ stays "high".
    """
    try:
        if vector.startswith("CVSS:4."):
            score = float(CVSS4(vector).base_score)
        elif vector.startswith("CVSS:3."):
            score = float(CVSS3(vector).base_score)
        else:
            v2 = float(CVSS2(vector).base_score)
            return (Severity.HIGH if v2 >= 7.0 else band(v2)), v2
    except (CVSSError, ValueError, KeyError, TypeError):
        return Severity.UNKNOWN, None
    return band(score), score


_WORDS = {
    "critical": Severity.CRITICAL,
    "important": Severity.HIGH,
    "high": Severity.HIGH,
    "moderate": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "negligible": Severity.LOW,
    "none": Severity.NONE,
}


def word_severity(text: str) -> Severity:
    """Band of a vendor word (Red Hat "Important", GHSA "MODERATE", Ubuntu "medium"); unknown otherwise."""
    return _WORDS.get(text.strip().lower(), Severity.UNKNOWN)


# --- OSV -------------------------------------------------------------------------------------------

_DATETIME = TypeAdapter(datetime)
_EVENT_KEYS = frozenset({"introduced", "fixed", "last_affected", "limit"})
_SEVERITY_ORDER = ("CVSS_V4", "CVSS_V3", "CVSS_V2")


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


def _strings(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FeedError(f"{field}: expected a list of strings")
    return tuple(value)


def _range(raw: object, where: str) -> VersionRange:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
        raise FeedError(f"{where}: a range needs a string 'type'")
    events = raw.get("events", [])
    if not isinstance(events, list):
        raise FeedError(f"{where}.events: expected a list")
    parsed = []
    for i, event in enumerate(events):
        if not isinstance(event, Mapping) or len(event) != 1 or not set(event) <= _EVENT_KEYS:
            raise FeedError(f"{where}.events[{i}]: exactly one of introduced/fixed/last_affected/limit")
        ((key, value),) = event.items()
        if not isinstance(value, str):
            raise FeedError(f"{where}.events[{i}].{key}: expected a string")
        parsed.append(RangeEvent.model_validate({key: value}))
    repo = raw.get("repo")
    return VersionRange(type=raw["type"], repo=repo if isinstance(repo, str) else None, events=tuple(parsed))


def _affected(raw: object, where: str) -> AffectedPackage | None:
    if not isinstance(raw, Mapping):
        raise FeedError(f"{where}: expected an object")
    package = raw.get("package")
    if package is None:
        # OSV allows entries without a package (GIT ranges only, e.g. CVE-2018-5407): nothing an
        # inventory of installed packages can be matched against, so they carry no AffectedPackage.
        return None
    if not isinstance(package, Mapping) or not package.get("ecosystem") or not package.get("name"):
        raise FeedError(f"{where}.package: needs 'ecosystem' and 'name'")
    ranges = raw.get("ranges", [])
    if not isinstance(ranges, list):
        raise FeedError(f"{where}.ranges: expected a list")
    purl = package.get("purl")
    return AffectedPackage(
        ecosystem=str(package["ecosystem"]),
        name=str(package["name"]),
        purl=purl if isinstance(purl, str) else None,
        ranges=tuple(_range(r, f"{where}.ranges[{i}]") for i, r in enumerate(ranges)),
        versions=_strings(raw.get("versions"), f"{where}.versions"),
    )


def _osv_severity(data: Mapping[str, Any]) -> tuple[Severity, float | None, str | None]:
    entries = [e for e in data.get("severity") or [] if isinstance(e, Mapping)]
    for aff in data.get("affected") or []:
        if isinstance(aff, Mapping):
            entries += [e for e in aff.get("severity") or [] if isinstance(e, Mapping)]
    for kind in _SEVERITY_ORDER:
        for entry in entries:
            if entry.get("type") == kind and isinstance(entry.get("score"), str):
                sev, score = cvss_severity(entry["score"])
                if sev is not Severity.UNKNOWN:
                    return sev, score, entry["score"]
    for entry in entries:  # Ubuntu priority and other qualitative types
        if isinstance(entry.get("score"), str) and word_severity(entry["score"]) is not Severity.UNKNOWN:
            return word_severity(entry["score"]), None, None
    # Vendor words: GHSA's database_specific.severity, Ubuntu's per-package ubuntu_priority.
    words = [data.get("database_specific")]
    words += [a.get("ecosystem_specific") for a in data.get("affected") or [] if isinstance(a, Mapping)]
    for block in words:
        if not isinstance(block, Mapping):
            continue
        for key in ("severity", "ubuntu_priority"):
            if isinstance(block.get(key), str) and word_severity(block[key]) is not Severity.UNKNOWN:
                return word_severity(block[key]), None, None
    return Severity.UNKNOWN, None, None


def parse_osv(data: Mapping[str, Any], *, source: str = "osv") -> Advisory:
    """Map one OSV record to an ``Advisory``; raise ``FeedError`` if it is malformed.

    ``aliases`` holds the record's ``aliases`` followed by its ``upstream`` ids (OSV 1.7 distro records
    such as DLA/ALPINE name their CVE only there), so KEV entries merge with them by CVE id.
    """
    if not isinstance(data, Mapping):
        raise FeedError("an OSV record must be a JSON object")
    ident = data.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise FeedError("OSV record without an 'id'")
    try:
        affected_raw = data.get("affected") or []
        if not isinstance(affected_raw, list):
            raise FeedError("affected: expected a list")
        affected = [_affected(a, f"affected[{i}]") for i, a in enumerate(affected_raw)]
        aliases = _strings(data.get("aliases"), "aliases")
        upstream = [u for u in _strings(data.get("upstream"), "upstream") if u not in aliases]
        references = tuple(
            r["url"] for r in data.get("references") or [] if isinstance(r, Mapping) and isinstance(r.get("url"), str)
        )
        severity, score, vector = _osv_severity(data)
        return Advisory(
            id=ident,
            source=source,
            aliases=(*aliases, *upstream),
            related=_strings(data.get("related"), "related"),
            summary=str(data.get("summary") or ""),
            details=str(data.get("details") or ""),
            published=parse_time(data.get("published"), field="published"),
            modified=parse_time(data.get("modified"), field="modified"),
            withdrawn=parse_time(data.get("withdrawn"), field="withdrawn"),
            severity=severity,
            cvss_score=score,
            cvss_vector=vector,
            affected=tuple(a for a in affected if a is not None),
            references=references,
            content_hash=content_hash(data),
        )
    except FeedError as exc:
        raise FeedError(f"OSV {ident}: {exc}") from exc
    except ValidationError as exc:
        raise FeedError(f"OSV {ident}: {exc.errors()[0]['msg']}") from exc
