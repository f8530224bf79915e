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
knows: the matcher then marks it for triage instead of dropping it. Red Hat family rpm products get their
major release from a ``distro=rhel-8.6`` qualifier or from the CPE of the platform a relationship puts
them on (``cpe:/a:redhat:enterprise_linux:8::appstream`` → ``Red Hat:8``).

VEX product statuses (CSAF 2.0 §3.2.3.9):

* ``known_not_affected`` becomes a ``NotAffected`` statement for that product only, with the vendor's
  justification (its ``flags`` label and ``impact`` threat, named by product or group); the matcher
  turns the advisory's match on that product into a ``not_affected`` one (stored, exported as VEX)
  on that product and nowhere else;
* ``under_investigation`` becomes an affected package marked ``triage``: a hit is "needs triage";
* ``fixed`` / ``known_affected`` products named by a ``vendor_fix`` remediation get its text as the
  package's ``remediation`` (the fix line), next to the fixed version from the fixed products.

Severity follows :mod:`bot.advisories.severity`: CVSS vectors are recomputed (a declared ``baseScore``
that disagrees is flagged, CSAF test 6.1.9), then ``aggregate_severity``, then an ``impact`` threat.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from packageurl import PackageURL

from bot.advisories import severity as sev
from bot.advisories.model import (
    DISTRO_ECOSYSTEMS,
    PURL_ECOSYSTEMS,
    Advisory,
    AffectedPackage,
    NotAffected,
    RangeEvent,
    VersionRange,
    content_hash,
    parse_time,
)
from bot.advisories.purls import MAJOR_RELEASE_ECOSYSTEMS, canonical_release
from bot.errors import FeedError

_AFFECTED = ("known_affected", "first_affected", "last_affected")
_FIXED = ("fixed", "first_fixed")
_UNDER_INVESTIGATION = "the vendor is still investigating this product (CSAF under_investigation)"
_MAX_FIX_LINE = 300


def purl_package(purl: str, *, release: str | None = None) -> tuple[str, str, str | None]:
    """``(ecosystem, name, version)`` of a purl (table in the module docstring); ``ValueError`` if bad.

    ``release`` is the platform's release when the product tree gives one (relationship CPE)."""
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
            found = distro.rsplit("-", 1)[1]
            ecosystem += f":v{found}" if ecosystem == "Alpine" and not found.startswith("v") else f":{found}"
        elif ecosystem in MAJOR_RELEASE_ECOSYSTEMS and (distro or release):
            ecosystem += f":{canonical_release(ecosystem, distro or release or '')}"
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


def _helper(product: object, key: str) -> str | None:
    helper = product.get("product_identification_helper") if isinstance(product, Mapping) else None
    value = helper.get(key) if isinstance(helper, Mapping) else None
    return value if isinstance(value, str) else None


def _cpe_release(cpe: str | None) -> str | None:
    # cpe:/a:redhat:enterprise_linux:8::appstream (2.2) or cpe:2.3:o:redhat:enterprise_linux:9.0:... (2.3)
    if not cpe:
        return None
    parts = cpe.split(":")
    version = parts[4] if cpe.startswith("cpe:/") and len(parts) > 4 else parts[5] if len(parts) > 5 else ""
    return version or None


@dataclass(frozen=True, slots=True)
class _Product:
    purl: str
    release: str | None = None


# Red Hat documents before 2023 name rpm products only by NEVRA ("telnet-1:0.17-65.el7_6.x86_64").
_NEVRA = re.compile(
    r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-:]+)"
    r"\.(?P<arch>x86_64|aarch64|noarch|i686|ppc64le|ppc64|s390x|src)$"
)


def _nevra_purl(product_id: str) -> str | None:
    m = _NEVRA.match(product_id)
    if m is None:
        return None
    epoch = f"&epoch={m['epoch']}" if m["epoch"] and m["epoch"] != "0" else ""
    return f"pkg:rpm/redhat/{m['name']}@{m['version']}-{m['release']}?arch={m['arch']}{epoch}"


def products(tree: object, *, red_hat: bool = False) -> dict[str, _Product]:
    """product_id → purl (and platform release) for every product with a purl (relationships inherit).

    ``red_hat``: the publisher is Red Hat, whose older documents give rpm products no purl; their NEVRA
    product ids are read as ``pkg:rpm/redhat`` purls."""
    if not isinstance(tree, Mapping):
        return {}
    listed = [*_walk_branches(tree.get("branches")), *(tree.get("full_product_names") or [])]
    cpes = {str(p.get("product_id")): _helper(p, "cpe") for p in listed if isinstance(p, Mapping)}
    found: dict[str, _Product] = {}
    for product in listed:
        if not isinstance(product, Mapping):
            continue
        purl = _helper(product, "purl") or (_nevra_purl(str(product.get("product_id"))) if red_hat else None)
        if purl is not None:
            found[str(product.get("product_id"))] = _Product(purl)
    for rel in tree.get("relationships") or []:
        if not isinstance(rel, Mapping) or not isinstance(rel.get("full_product_name"), Mapping):
            continue
        pid = str(rel["full_product_name"].get("product_id"))
        release = _cpe_release(cpes.get(str(rel.get("relates_to_product_reference"))))
        purl = _helper(rel["full_product_name"], "purl")
        if purl is None and str(rel.get("product_reference")) in found:
            purl = found[str(rel["product_reference"])].purl
        if purl is not None:
            found[pid] = _Product(purl, release)
    return found


def product_groups(tree: object) -> dict[str, tuple[str, ...]]:
    """group_id → product ids of the tree's ``product_groups``."""
    groups = tree.get("product_groups") if isinstance(tree, Mapping) else None
    return {
        str(g.get("group_id")): tuple(str(p) for p in g.get("product_ids") or [])
        for g in groups or []
        if isinstance(g, Mapping)
    }


def product_ids(item: Mapping[str, Any], groups: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The products a remediation, threat or flag names: its ``product_ids`` and those of its ``group_ids``."""
    ids = [str(p) for p in item.get("product_ids") or []]
    ids += [p for g in item.get("group_ids") or [] for p in groups.get(str(g), ())]
    return list(dict.fromkeys(ids))


def _fix_lines(vuln: Mapping[str, Any], groups: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    lines: dict[str, str] = {}
    for rem in vuln.get("remediations") or []:
        if not isinstance(rem, Mapping) or rem.get("category") != "vendor_fix":
            continue
        text = " ".join(str(rem.get("details", "")).split())[:_MAX_FIX_LINE]
        if isinstance(rem.get("url"), str) and rem["url"] not in text:
            text = f"{text} {rem['url']}".strip()
        for pid in product_ids(rem, groups):
            lines.setdefault(pid, text)
    return lines


# CSAF 2.0 §3.2.3.12.7 restart categories, by what a change request should expect.
_RESTART = {
    "none": "none", "vulnerable_component": "service", "service": "service", "parent": "service",
    "dependencies": "service", "connected": "service", "machine": "machine", "zone": "machine", "system": "machine",
}  # fmt: skip
_RESTART_RANK = {"": 0, "none": 1, "service": 2, "machine": 3}


def restart_of(vulns: list[Mapping[str, Any]]) -> str:
    """The worst ``restart_required.category`` of any remediation, as "", "none", "service" or "machine"."""
    worst = ""
    for vuln in vulns:
        for rem in vuln.get("remediations") or []:
            need = rem.get("restart_required") if isinstance(rem, Mapping) else None
            kind = _RESTART.get(str(need.get("category"))) if isinstance(need, Mapping) else None
            if kind is not None and _RESTART_RANK[kind] > _RESTART_RANK[worst]:
                worst = kind
    return worst


def _justifications(vuln: Mapping[str, Any], groups: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, str]]:
    """product id -> (flag label, impact statement) of the vulnerability's ``flags`` and ``impact`` threats."""
    labels: dict[str, str] = {}
    impacts: dict[str, str] = {}
    for flag in vuln.get("flags") or []:
        if isinstance(flag, Mapping) and flag.get("label"):
            for pid in product_ids(flag, groups):
                labels.setdefault(pid, str(flag["label"]))
    for threat in vuln.get("threats") or []:
        if isinstance(threat, Mapping) and threat.get("category") == "impact":
            text = " ".join(str(threat.get("details", "")).split())[:_MAX_FIX_LINE]
            for pid in product_ids(threat, groups):
                impacts.setdefault(pid, text)
    return {pid: (labels.get(pid, ""), impacts.get(pid, "")) for pid in {*labels, *impacts}}


@dataclass
class _Pkg:
    purl: str
    affected: set[str]
    fixed: set[str]
    fix_lines: dict[str, None]


def _packages(
    vulns: list[Mapping[str, Any]], known: dict[str, _Product], groups: Mapping[str, tuple[str, ...]]
) -> tuple[tuple[AffectedPackage, ...], tuple[NotAffected, ...]]:
    pkgs: dict[tuple[str, str, bool], _Pkg] = {}
    not_affected: dict[tuple[str, str, str | None], tuple[str, str]] = {}
    for vuln in vulns:
        status = vuln.get("product_status") or {}
        fix_lines = _fix_lines(vuln, groups)
        why = _justifications(vuln, groups)
        roles = [*((f, "affected") for f in _AFFECTED), *((f, "fixed") for f in _FIXED)]
        roles += [("under_investigation", "triage"), ("known_not_affected", "not_affected")]
        for field, role in roles:
            for pid in status.get(field) or []:
                product = known.get(str(pid))
                if product is None:
                    continue
                try:
                    ecosystem, name, version = purl_package(product.purl, release=product.release)
                except ValueError:
                    continue  # an unparsable purl is a product we cannot match, like one without purl
                if role == "not_affected":
                    not_affected.setdefault((ecosystem, name, version), why.get(str(pid), ("", "")))
                    continue
                entry = pkgs.setdefault(
                    (ecosystem, name, role == "triage"), _Pkg(product.purl.split("@", 1)[0], set(), set(), {})
                )
                if version:
                    (entry.fixed if role == "fixed" else entry.affected).add(version)
                if str(pid) in fix_lines:
                    entry.fix_lines[fix_lines[str(pid)]] = None
    out = []
    for (ecosystem, name, triage), entry in sorted(pkgs.items()):
        ranges: tuple[VersionRange, ...] = ()
        if len(entry.fixed) == 1 and not triage:
            events = (RangeEvent(introduced="0"), RangeEvent(fixed=next(iter(entry.fixed))))
            ranges = (VersionRange(type="ECOSYSTEM", events=events),)
        out.append(
            AffectedPackage(
                ecosystem=ecosystem,
                name=name,
                purl=entry.purl,
                ranges=ranges,
                versions=tuple(sorted(entry.affected)),
                triage=_UNDER_INVESTIGATION if triage else "",
                remediation="; ".join(entry.fix_lines),
            )
        )
    order = sorted(not_affected.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or ""))
    statements = tuple(
        NotAffected(ecosystem=e, name=n, version=v, justification=label, impact=impact)
        for (e, n, v), (label, impact) in order
    )
    return tuple(out), statements


def rate_csaf(data: Mapping[str, Any]) -> sev.Rated:
    """The severity of a CSAF document, in the order of :mod:`bot.advisories.severity`."""
    candidates: list[sev.Rated | None] = []
    for v, vuln in enumerate(data.get("vulnerabilities") or []):
        for s, score in enumerate(vuln.get("scores") or [] if isinstance(vuln, Mapping) else []):
            for key in ("cvss_v3", "cvss_v2"):
                cvss = score.get(key) if isinstance(score, Mapping) else None
                if isinstance(cvss, Mapping) and isinstance(cvss.get("vectorString"), str):
                    declared = cvss.get("baseScore")
                    candidates.append(
                        sev.from_vector(
                            cvss["vectorString"],
                            declared=float(declared) if isinstance(declared, int | float) else None,
                            where=f"vulnerabilities[{v}].scores[{s}].{key} (CSAF 6.1.9)",
                        )
                    )
    vector = sev.best_vector(candidates)
    if vector is not None:
        return vector
    document = data.get("document") if isinstance(data.get("document"), Mapping) else {}
    aggregate = document.get("aggregate_severity") if isinstance(document, Mapping) else None
    threats = [
        t.get("details")
        for vuln in data.get("vulnerabilities") or []
        if isinstance(vuln, Mapping)
        for t in vuln.get("threats") or []
        if isinstance(t, Mapping) and t.get("category") == "impact"
    ]
    return sev.first(
        [
            sev.from_word(aggregate.get("text") if isinstance(aggregate, Mapping) else None, source="csaf_aggregate"),
            *(sev.from_word(t, source="csaf_threat_impact") for t in threats),
        ]
    )


def parse_csaf(data: Mapping[str, Any], *, source: str = "csaf") -> Advisory:
    """Map one CSAF 2.0 document to an ``Advisory``; raise ``FeedError`` if it is malformed.

    Conformance (schema, mandatory tests) is :func:`bot.feeds.csaf_validate.validate`'s job, run first.
    """
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
    notes = [n for n in document.get("notes") or [] if isinstance(n, Mapping)]
    summary_notes = [str(n.get("text", "")) for n in notes if n.get("category") in ("summary", "description")]
    references = tuple(
        str(r["url"]) for r in document.get("references") or [] if isinstance(r, Mapping) and r.get("url")
    )
    try:
        rated = rate_csaf(data)
        publisher = document.get("publisher") if isinstance(document.get("publisher"), Mapping) else {}
        red_hat = "redhat.com" in str(publisher.get("namespace", "")) if isinstance(publisher, Mapping) else False
        tree = data.get("product_tree")
        affected, not_affected = _packages(vulns, products(tree, red_hat=red_hat), product_groups(tree))
        return Advisory(
            id=ident,
            source=source,
            aliases=tuple(a for a in aliases if a != ident),
            summary=str(document.get("title") or ""),
            details="\n\n".join(summary_notes),
            published=parse_time(tracking.get("initial_release_date"), field="initial_release_date"),
            modified=parse_time(tracking.get("current_release_date"), field="current_release_date"),
            severity=rated.label,
            cvss_score=rated.score,
            cvss_vector=rated.vector,
            severity_source=rated.source,
            severity_flag=rated.flagged,
            affected=affected,
            not_affected=not_affected,
            references=references,
            restart=restart_of(vulns),
            content_hash=content_hash(data),
        )
    except (FeedError, AttributeError, TypeError) as exc:
        raise FeedError(f"CSAF {ident}: {exc}") from exc
