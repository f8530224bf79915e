"""OSV records (https://ossf.github.io/osv-schema/) mapped to the normalised ``Advisory``.

A document is refused (``FeedError``, which a feed turns into a quarantine entry with the reason) when it is
not an OSV record at all: no ``id``, a legacy pre-1.0 layout (top-level ``package`` / ``affects``), or no
``affected`` list (or only package-less GIT entries) while not withdrawn. Such records would otherwise be
stored as advisories with zero packages, matching nothing, silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bot.advisories import severity as sev
from bot.advisories.model import Advisory, AffectedPackage, RangeEvent, VersionRange, content_hash, parse_time
from bot.errors import FeedError

_EVENT_KEYS = frozenset({"introduced", "fixed", "last_affected", "limit"})
_CVSS_TYPES = frozenset({"CVSS_V2", "CVSS_V3", "CVSS_V4"})
_LEGACY_KEYS = ("package", "affects", "affected_ranges")


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


def _severity_entries(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = [e for e in data.get("severity") or [] if isinstance(e, Mapping)]
    for aff in data.get("affected") or []:
        if isinstance(aff, Mapping):
            entries += [e for e in aff.get("severity") or [] if isinstance(e, Mapping)]
    return entries


def _blocks(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return [a[key] for a in data.get("affected") or [] if isinstance(a, Mapping) and isinstance(a.get(key), Mapping)]


def rate_osv(data: Mapping[str, Any]) -> sev.Rated:
    """The severity of an OSV record, in the order of :mod:`bot.advisories.severity`."""
    entries = _severity_entries(data)
    vector = sev.best_vector(
        sev.from_vector(e["score"]) for e in entries if e.get("type") in _CVSS_TYPES and isinstance(e.get("score"), str)
    )
    if vector is not None:
        return vector
    ident = str(data.get("id", ""))
    raw_top = data.get("database_specific")
    top: Mapping[str, Any] = raw_top if isinstance(raw_top, Mapping) else {}
    eco = _blocks(data, "ecosystem_specific") + _blocks(data, "database_specific")
    typed = {str(e.get("type")): e.get("score") for e in entries}
    redhat = ident.upper().startswith(("RHSA", "RHBA", "RHEA", "RHSB"))
    return sev.first(
        [
            # GHSA writes its qualitative word here; other databases reuse the key (Red Hat's OSV too).
            sev.from_word(top.get("severity"), source="redhat_severity" if redhat else "ghsa"),
            sev.from_word(typed.get("Debian"), source="debian_urgency"),
            *(sev.from_word(b.get("urgency"), source="debian_urgency") for b in eco),
            sev.from_word(typed.get("Ubuntu"), source="ubuntu_priority"),
            *(sev.from_word(b.get("ubuntu_priority"), source="ubuntu_priority") for b in eco),
            *(sev.from_word(b.get("severity"), source="ecosystem_specific") for b in eco),
        ]
    )


def _check_is_osv(data: Mapping[str, Any]) -> None:
    legacy = [k for k in _LEGACY_KEYS if k in data]
    if legacy and "affected" not in data:
        raise FeedError(f"not an OSV record: legacy layout (top-level {', '.join(legacy)}); nothing stored")
    affected = data.get("affected")
    if data.get("withdrawn"):
        return  # a withdrawn record only has to say so: it matches nothing anyway
    if affected is None or affected == []:
        raise FeedError("not usable as an OSV record: no 'affected' packages, so nothing could ever match")
    if isinstance(affected, list) and not any(isinstance(a, Mapping) and a.get("package") for a in affected):
        raise FeedError(
            "names no package, only source repositories (GIT ranges): nothing an inventory could match; "
            "check the repositories by hand"
        )


def parse_osv(data: Mapping[str, Any], *, source: str = "osv") -> Advisory:
    """Map one OSV record to an ``Advisory``; raise ``FeedError`` if it is malformed or not OSV.

    ``aliases`` holds the record's ``aliases`` followed by its ``upstream`` ids (OSV 1.7 distro records
    such as DLA/ALPINE name their CVE only there), so KEV entries merge with them by CVE id.
    """
    if not isinstance(data, Mapping):
        raise FeedError("an OSV record must be a JSON object")
    ident = data.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise FeedError("not an OSV record: no 'id'")
    try:
        _check_is_osv(data)
        affected_raw = data.get("affected") or []
        if not isinstance(affected_raw, list):
            raise FeedError("affected: expected a list")
        affected = [_affected(a, f"affected[{i}]") for i, a in enumerate(affected_raw)]
        aliases = _strings(data.get("aliases"), "aliases")
        upstream = [u for u in _strings(data.get("upstream"), "upstream") if u not in aliases]
        references = tuple(
            r["url"] for r in data.get("references") or [] if isinstance(r, Mapping) and isinstance(r.get("url"), str)
        )
        rated = rate_osv(data)
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
            severity=rated.label,
            cvss_score=rated.score,
            cvss_vector=rated.vector,
            severity_source=rated.source,
            severity_flag=rated.flagged,
            affected=tuple(a for a in affected if a is not None),
            references=references,
            content_hash=content_hash(data),
        )
    except FeedError as exc:
        raise FeedError(f"OSV {ident}: {exc}") from exc
    except ValidationError as exc:
        raise FeedError(f"OSV {ident}: {exc.errors()[0]['msg']}") from exc
