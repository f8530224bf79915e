"""Map a CSAF 2.0 document (OASIS ``csaf_security_advisory`` and friends) to an ``Advisory``.

Products become ``AffectedPackage`` entries only where the product tree gives a
``product_identification_helper.purl``; products known only by name or CPE cannot be matched against an
inventory of packages and are left out (the advisory still carries its CVE aliases and severity, so it is
announced and merged with OSV/KEV records). Per package:

* ``versions``: the versions of the products listed ``known_affected`` / ``first_affected`` /
  ``last_affected``;
* ``ranges``: one ECOSYSTEM range ``introduced 0, fixed <v>`` when the ``fixed`` / ``first_fixed``
  products name exactly one version for that package. Several different fixed versions (one per product
  stream, e.g. RHEL 8.4 EUS and 8.6) cannot be told apart without the stream, so the range is left empty
  and the matcher reports the package as needing triage rather than guessing.

purl type → ecosystem: language types map to their OSV ecosystem (pypi→PyPI, maven→Maven with
``group:artifact`` names, golang→Go, npm, gem→RubyGems, cargo→crates.io, nuget→NuGet,
composer→Packagist). Distro types map by namespace to the OSV distro ecosystem: ``pkg:deb/debian``→
Debian, ``pkg:deb/ubuntu``→Ubuntu, ``pkg:apk/alpine``→Alpine, ``pkg:rpm/redhat``→Red Hat,
``pkg:rpm/rocky-linux``→Rocky Linux, ``pkg:rpm/almalinux``→AlmaLinux, ``pkg:rpm/suse``→SUSE,
``pkg:rpm/opensuse``→openSUSE; a ``distro=debian-12`` / ``alpine-3.18`` qualifier becomes the release
suffix (``Debian:12``, ``Alpine:v3.18``). rpm versions get the ``epoch`` qualifier as ``E:V-R`` prefix.
Any other type or namespace keeps the ecosystem ``purl:<type>/<namespace>``, which no version scheme
knows: the matcher then marks it for triage instead of dropping it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from packageurl import PackageURL

from bot.errors import FeedError
from bot.feeds.base import band, content_hash, cvss_severity, parse_time, word_severity
from bot.feeds.model import (
    DISTRO_ECOSYSTEMS,
    PURL_ECOSYSTEMS,
    Advisory,
    AffectedPackage,
    RangeEvent,
    Severity,
    VersionRange,
)

_AFFECTED = ("known_affected", "first_affected", "last_affected")
_FIXED = ("fixed", "first_fixed")


def purl_package(purl: str) -> tuple[str, str, str | None]:
    """``(ecosystem, name, version)`` of a purl (table in the module docstring); ``ValueError`` if bad."""
    p = PackageURL.from_string(purl)
    quals = p.qualifiers if isinstance(p.qualifiers, dict) else {}
    version = p.version
    if p.type in PURL_ECOSYSTEMS:
        ecosystem = PURL_ECOSYSTEMS[p.type]
        sep = ":" if p.type == "maven" else "/"
        name = f"{p.namespace}{sep}{p.name}" if p.namespace else p.name
    else:
        ecosystem = DISTRO_ECOSYSTEMS.get((p.type, (p.namespace or "").lower()), f"purl:{p.type}/{p.namespace or ''}")
        name = p.name
        distro = str(quals.get("distro", ""))
        if ecosystem in ("Debian", "Ubuntu", "Alpine") and "-" in distro:
            release = distro.rsplit("-", 1)[1]
            ecosystem += f":v{release}" if ecosystem == "Alpine" and not release.startswith("v") else f":{release}"
        if p.type == "rpm" and version and quals.get("epoch") and ":" not in version:
            version = f"{quals['epoch']}:{version}"
    return ecosystem, name, version


def _walk_branches(branches: object) -> Iterator[Mapping[str, Any]]:
    if not isinstance(branches, list):
        return
    for branch in branches:
        if not isinstance(branch, Mapping):
            continue
        if isinstance(branch.get("product"), Mapping):
            yield branch["product"]
        yield from _walk_branches(branch.get("branches"))


def product_purls(tree: object) -> dict[str, str]:
    """product_id → purl for every product of a CSAF ``product_tree`` that has one (relationships inherit)."""
    if not isinstance(tree, Mapping):
        return {}
    products = [*_walk_branches(tree.get("branches")), *(tree.get("full_product_names") or [])]
    purls: dict[str, str] = {}
    for product in products:
        helper = product.get("product_identification_helper") if isinstance(product, Mapping) else None
        if isinstance(helper, Mapping) and isinstance(helper.get("purl"), str):
            purls[str(product.get("product_id"))] = helper["purl"]
    for rel in tree.get("relationships") or []:
        if not isinstance(rel, Mapping) or not isinstance(rel.get("full_product_name"), Mapping):
            continue
        pid = str(rel["full_product_name"].get("product_id"))
        helper = rel["full_product_name"].get("product_identification_helper")
        if isinstance(helper, Mapping) and isinstance(helper.get("purl"), str):
            purls[pid] = helper["purl"]
        elif str(rel.get("product_reference")) in purls:
            purls[pid] = purls[str(rel["product_reference"])]
    return purls


def _packages(vulns: list[Mapping[str, Any]], purls: dict[str, str]) -> tuple[AffectedPackage, ...]:
    affected: dict[tuple[str, str], set[str]] = {}
    fixed: dict[tuple[str, str], set[str]] = {}
    base_purl: dict[tuple[str, str], str] = {}
    for vuln in vulns:
        status = vuln.get("product_status") or {}
        for field, target in [*((f, affected) for f in _AFFECTED), *((f, fixed) for f in _FIXED)]:
            for pid in status.get(field) or []:
                purl = purls.get(str(pid))
                if purl is None:
                    continue
                try:
                    ecosystem, name, version = purl_package(purl)
                except ValueError:
                    continue  # an unparsable purl is a product we cannot match, like one without purl
                key = (ecosystem, name)
                base_purl.setdefault(key, purl.split("@", 1)[0])
                versions = target.setdefault(key, set())
                affected.setdefault(key, set())
                if version:
                    versions.add(version)
    packages = []
    for key in sorted(affected):
        fixes = fixed.get(key, set())
        ranges: tuple[VersionRange, ...] = ()
        if len(fixes) == 1:
            events = (RangeEvent(introduced="0"), RangeEvent(fixed=next(iter(fixes))))
            ranges = (VersionRange(type="ECOSYSTEM", events=events),)
        packages.append(
            AffectedPackage(
                ecosystem=key[0],
                name=key[1],
                purl=base_purl[key],
                ranges=ranges,
                versions=tuple(sorted(affected[key])),
            )
        )
    return tuple(packages)


def _scores(vulns: list[Mapping[str, Any]]) -> tuple[float | None, str | None]:
    best: tuple[float | None, str | None] = (None, None)
    for vuln in vulns:
        for score in vuln.get("scores") or []:
            for key in ("cvss_v3", "cvss_v2"):
                cvss = score.get(key) if isinstance(score, Mapping) else None
                if not isinstance(cvss, Mapping):
                    continue
                value = cvss.get("baseScore")
                if not isinstance(value, int | float) and isinstance(cvss.get("vectorString"), str):
                    value = cvss_severity(cvss["vectorString"])[1]
                if isinstance(value, int | float) and (best[0] is None or value > best[0]):
                    vector = cvss.get("vectorString")
                    best = (float(value), vector if isinstance(vector, str) else None)
                break  # prefer v3 over v2 of the same score entry
    return best


def parse_csaf(data: Mapping[str, Any], *, source: str = "csaf") -> Advisory:
    """Map one CSAF 2.0 document to an ``Advisory``; raise ``FeedError`` if it is malformed."""
    document = data.get("document") if isinstance(data, Mapping) else None
    tracking = document.get("tracking") if isinstance(document, Mapping) else None
    if not isinstance(document, Mapping) or not isinstance(tracking, Mapping):
        raise FeedError("not a CSAF document (no document.tracking)")
    ident = tracking.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise FeedError("CSAF document without document.tracking.id")
    if document.get("csaf_version") != "2.0":
        raise FeedError(f"CSAF {ident}: csaf_version {document.get('csaf_version')!r} is not 2.0")
    vulns_raw = data.get("vulnerabilities") or []
    if not isinstance(vulns_raw, list) or not all(isinstance(v, Mapping) for v in vulns_raw):
        raise FeedError(f"CSAF {ident}: vulnerabilities must be a list of objects")
    vulns: list[Mapping[str, Any]] = vulns_raw
    aliases = tuple(dict.fromkeys(str(v["cve"]) for v in vulns if isinstance(v.get("cve"), str)))
    score, vector = _scores(vulns)
    severity = band(score)
    if severity is Severity.UNKNOWN and isinstance(document.get("aggregate_severity"), Mapping):
        severity = word_severity(str(document["aggregate_severity"].get("text", "")))
    notes = [n for n in document.get("notes") or [] if isinstance(n, Mapping)]
    summary_notes = [str(n.get("text", "")) for n in notes if n.get("category") in ("summary", "description")]
    references = tuple(
        str(r["url"]) for r in document.get("references") or [] if isinstance(r, Mapping) and r.get("url")
    )
    try:
        return Advisory(
            id=ident,
            source=source,
            aliases=tuple(a for a in aliases if a != ident),
            summary=str(document.get("title") or ""),
            details="\n\n".join(summary_notes),
            published=parse_time(tracking.get("initial_release_date"), field="initial_release_date"),
            modified=parse_time(tracking.get("current_release_date"), field="current_release_date"),
            severity=severity,
            cvss_score=score,
            cvss_vector=vector,
            affected=_packages(vulns, product_purls(data.get("product_tree"))),
            references=references,
            content_hash=content_hash(data),
        )
    except (FeedError, AttributeError, TypeError) as exc:
        raise FeedError(f"CSAF {ident}: {exc}") from exc
