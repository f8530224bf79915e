"""CSAF 2.0 conformance: the JSON schema (section 3) and the mandatory tests of section 6.1 we rely on.

A document is trusted only after, in this order:

1. it validates against the OASIS CSAF 2.0 JSON schema shipped in ``bot/feeds/schemas/`` (with the FIRST
   CVSS v2.0/v3.0/v3.1 schemas it references, registered locally: nothing is fetched);
2. it passes the mandatory tests that decide whether its products and scores can be trusted:
   6.1.1 missing product definition, 6.1.2 multiple product definitions, 6.1.4 missing group definition,
   6.1.5 multiple group definitions, 6.1.6 contradicting product status, 6.1.8 invalid CVSS object,
   6.1.9 invalid CVSS computation, 6.1.13 invalid purl, 6.1.16 latest document version, 6.1.18 released
   revision history, 6.1.24 multiple definitions in involvements, 6.1.27.1-6.1.27.11 profile tests and
   6.1.31 version range in product version.

Every failure names its test number and says what is wrong (``Failure``). The caller quarantines a
document with any failure except 6.1.9: a declared score that disagrees with its vector is *not* a
reason to drop a vulnerability notice; the score is recomputed from the vector and the disagreement is
flagged on the advisory (:mod:`bot.advisories.severity`). Dropping the document would fail open.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft7Validator, Draft202012Validator
from packageurl import PackageURL
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT7

from bot.advisories.severity import from_vector

SCHEMAS = Path(__file__).parent / "schemas"
_CVSS_SCHEMAS = {
    "https://www.first.org/cvss/cvss-v2.0.json": ("cvss-v2.0.json", DRAFT4, Draft4Validator),
    "https://www.first.org/cvss/cvss-v3.0.json": ("cvss-v3.0.json", DRAFT7, Draft7Validator),
    "https://www.first.org/cvss/cvss-v3.1.json": ("cvss-v3.1.json", DRAFT7, Draft7Validator),
}
# The mandatory tests of section 6.1 this module runs (the module docstring says what each decides).
IMPLEMENTED = (
    "6.1.1", "6.1.2", "6.1.4", "6.1.5", "6.1.6", "6.1.8", "6.1.9", "6.1.13", "6.1.16", "6.1.18", "6.1.24",
    *(f"6.1.27.{n}" for n in range(1, 12)), "6.1.31",
)  # fmt: skip
# 6.1.9 is recoverable (see the module docstring); everything else quarantines the document.
RECOVERABLE = frozenset({"6.1.9"})
_RANGE_WORDS = re.compile(r"(<=?|>=?|\b(after|all|before|earlier|later|prior|versions)\b)", re.IGNORECASE)
_AFFECTED = ("first_affected", "known_affected", "last_affected")
_FIXED = ("first_fixed", "fixed")
_STATUS_GROUPS = {
    "affected": _AFFECTED,
    "not affected": ("known_not_affected",),
    "fixed": _FIXED,
    "under investigation": ("under_investigation",),
}
_MAX_FAILURES = 20


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed conformance test: the CSAF section number and a reason a person can act on."""

    test: str
    reason: str

    def __str__(self) -> str:
        return f"CSAF {self.test}: {self.reason}"


@cache
def _validators() -> tuple[Draft202012Validator, dict[str, Any]]:
    schema = json.loads((SCHEMAS / "csaf-2.0.json").read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry()
    cvss: dict[str, Any] = {}
    for uri, (file, spec, cls) in _CVSS_SCHEMAS.items():
        contents = json.loads((SCHEMAS / file).read_text(encoding="utf-8"))
        registry = registry.with_resource(uri, Resource.from_contents(contents, default_specification=spec))
        cvss[uri] = cls(contents)
    return Draft202012Validator(schema, registry=registry), cvss


def schema_failures(doc: object) -> list[Failure]:
    """Section 3: the document against the CSAF 2.0 JSON schema (the first few errors, each with its path)."""
    validator, _ = _validators()
    out = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))[:5]:
        path = [str(p) for p in error.absolute_path]
        where = "/".join(path) or "(document)"
        # An invalid CVSS object is what mandatory test 6.1.8 names; a purl the pattern refuses, 6.1.13.
        test = "6.1.8" if {"cvss_v2", "cvss_v3"} & set(path) else "6.1.13" if path[-1:] == ["purl"] else "3 (schema)"
        out.append(Failure(test, f"{where}: {error.message[:200]}"))
    return out


def _walk(branches: object, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for i, branch in enumerate(branches if isinstance(branches, list) else []):
        if isinstance(branch, Mapping):
            yield f"{path}[{i}]", branch
            yield from _walk(branch.get("branches"), f"{path}[{i}].branches")


def _defined_products(tree: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(product_id, where, full_product_name) of every product definition in the tree."""
    out = []
    for where, branch in _walk(tree.get("branches"), "product_tree.branches"):
        if isinstance(branch.get("product"), Mapping):
            out.append((str(branch["product"].get("product_id")), f"{where}.product", branch["product"]))
    for i, fpn in enumerate(tree.get("full_product_names") or []):
        if isinstance(fpn, Mapping):
            out.append((str(fpn.get("product_id")), f"product_tree.full_product_names[{i}]", fpn))
    for i, rel in enumerate(tree.get("relationships") or []):
        if isinstance(rel, Mapping) and isinstance(rel.get("full_product_name"), Mapping):
            fpn = rel["full_product_name"]
            out.append((str(fpn.get("product_id")), f"product_tree.relationships[{i}]", fpn))
    return out


def _referenced_products(doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    tree = _obj(doc.get("product_tree"))
    for i, group in enumerate(tree.get("product_groups") or []):
        for pid in group.get("product_ids") or [] if isinstance(group, Mapping) else []:
            yield str(pid), f"product_tree.product_groups[{i}]"
    for i, rel in enumerate(tree.get("relationships") or []):
        if isinstance(rel, Mapping):
            for key in ("product_reference", "relates_to_product_reference"):
                if key in rel:
                    yield str(rel[key]), f"product_tree.relationships[{i}].{key}"
    for v, vuln in enumerate(_vulns(doc)):
        base = f"vulnerabilities[{v}]"
        status = _obj(vuln.get("product_status"))
        for key, ids in status.items():
            for pid in ids if isinstance(ids, list) else []:
                yield str(pid), f"{base}.product_status.{key}"
        for field in ("scores", "remediations", "threats", "flags"):
            for j, item in enumerate(vuln.get(field) or []):
                key = "products" if field == "scores" else "product_ids"
                for pid in item.get(key) or [] if isinstance(item, Mapping) else []:
                    yield str(pid), f"{base}.{field}[{j}]"


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _vulns(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [v for v in doc.get("vulnerabilities") or [] if isinstance(v, Mapping)]


def _products_tests(doc: Mapping[str, Any]) -> Iterator[Failure]:
    tree = _obj(doc.get("product_tree"))
    defined = _defined_products(tree)
    seen: dict[str, str] = {}
    for pid, where, _ in defined:
        if pid in seen:
            yield Failure("6.1.2", f"product id {pid!r} is defined twice ({seen[pid]} and {where})")
        seen.setdefault(pid, where)
    for pid, where in _referenced_products(doc):
        if pid not in seen:
            yield Failure("6.1.1", f"{where} references product id {pid!r}, which the product tree never defines")
    groups: dict[str, int] = {}
    for i, group in enumerate(tree.get("product_groups") or []):
        gid = str(group.get("group_id")) if isinstance(group, Mapping) else ""
        if gid in groups:
            yield Failure("6.1.5", f"product group id {gid!r} is defined twice")
        groups.setdefault(gid, i)
    for v, vuln in enumerate(_vulns(doc)):
        for field in ("remediations", "threats", "flags"):
            for item in vuln.get(field) or []:
                for gid in item.get("group_ids") or [] if isinstance(item, Mapping) else []:
                    if str(gid) not in groups:
                        yield Failure("6.1.4", f"vulnerabilities[{v}].{field} references undefined group {gid!r}")
    for where, fpn in ((w, f) for _, w, f in defined):
        helper = fpn.get("product_identification_helper")
        purl = helper.get("purl") if isinstance(helper, Mapping) else None
        if isinstance(purl, str):
            try:
                PackageURL.from_string(purl)
            except ValueError as exc:
                yield Failure("6.1.13", f"{where}: {purl!r} is not a valid purl ({exc})")
    for where, branch in _walk(tree.get("branches"), "product_tree.branches"):
        if branch.get("category") == "product_version" and _RANGE_WORDS.search(str(branch.get("name", ""))):
            yield Failure(
                "6.1.31",
                f"{where}: product_version {branch.get('name')!r} is a version range; use product_version_range",
            )


def _status_tests(doc: Mapping[str, Any]) -> Iterator[Failure]:
    for v, vuln in enumerate(_vulns(doc)):
        status = _obj(vuln.get("product_status"))
        group_of: dict[str, str] = {}
        for group, keys in _STATUS_GROUPS.items():
            for key in keys:
                for pid in status.get(key) or []:
                    other = group_of.setdefault(str(pid), group)
                    if other != group:
                        yield Failure("6.1.6", f"vulnerabilities[{v}]: product {pid!r} is both {other} and {group}")
        pairs: set[tuple[str, str]] = set()
        for item in vuln.get("involvements") or []:
            if isinstance(item, Mapping):
                pair = (str(item.get("party")), str(item.get("date")))
                if pair in pairs:
                    yield Failure(
                        "6.1.24", f"vulnerabilities[{v}]: involvement of {pair[0]} on {pair[1]} is listed twice"
                    )
                pairs.add(pair)


def _cvss_tests(doc: Mapping[str, Any]) -> Iterator[Failure]:
    _, cvss = _validators()
    for v, vuln in enumerate(_vulns(doc)):
        for s, score in enumerate(vuln.get("scores") or []):
            for key, uri in (
                ("cvss_v2", "https://www.first.org/cvss/cvss-v2.0.json"),
                ("cvss_v3", "https://www.first.org/cvss/cvss-v3.1.json"),
            ):
                obj = score.get(key) if isinstance(score, Mapping) else None
                if not isinstance(obj, Mapping):
                    continue
                where = f"vulnerabilities[{v}].scores[{s}].{key}"
                if key == "cvss_v3" and obj.get("version") == "3.0":
                    uri = "https://www.first.org/cvss/cvss-v3.0.json"
                error = next(iter(cvss[uri].iter_errors(obj)), None)
                if error is not None:
                    yield Failure("6.1.8", f"{where}: invalid CVSS object ({error.message[:160]})")
                    continue
                declared = obj.get("baseScore")
                vector = str(obj.get("vectorString", ""))
                rated = from_vector(vector, declared=float(declared) if isinstance(declared, int | float) else None)
                if rated is None:
                    yield Failure("6.1.8", f"{where}: vector {vector!r} cannot be scored")
                elif rated.flagged:
                    yield Failure("6.1.9", f"{where}: {rated.flagged}")
                elif rated.score is not None and obj.get("baseSeverity") not in (
                    None,
                    _severity_word(rated.score, key),
                ):
                    yield Failure(
                        "6.1.9", f"{where}: baseSeverity {obj.get('baseSeverity')!r} does not fit score {rated.score}"
                    )


def _severity_word(score: float, key: str) -> str | None:
    if key == "cvss_v2":
        return None  # CVSS v2 objects carry no baseSeverity in v2.0 of the FIRST schema
    value = Decimal(str(score))
    for floor, word in ((9, "CRITICAL"), (7, "HIGH"), (4, "MEDIUM"), (Decimal("0.1"), "LOW")):
        if value >= floor:
            return word
    return "NONE"


def _version_key(number: str) -> tuple[Any, ...]:
    core = number.split("+", 1)[0]
    if core.isdigit():
        return (int(core),)
    main, _, pre = core.partition("-")
    parts = tuple(int(p) if p.isdigit() else 0 for p in main.split("."))
    return (*parts, 0 if pre else 1, pre)


def _comparable(number: str, *, draft: bool) -> str:
    # Build metadata never counts; a draft may carry a pre-release part the history does not.
    core = number.split("+", 1)[0]
    return core.split("-", 1)[0] if draft else core


def _tracking_tests(doc: Mapping[str, Any]) -> Iterator[Failure]:
    document = _obj(doc.get("document"))
    tracking = _obj(document.get("tracking"))
    history = [h for h in tracking.get("revision_history") or [] if isinstance(h, Mapping)]
    version = str(tracking.get("version", ""))
    status = tracking.get("status")
    if history:
        newest = max(history, key=lambda h: (str(h.get("date", "")), _version_key(str(h.get("number", "")))))
        number = str(newest.get("number", ""))
        if _comparable(version, draft=status == "draft") != _comparable(number, draft=status == "draft"):
            yield Failure(
                "6.1.16", f"document version {version!r} is not the newest revision history number {number!r}"
            )
    if status in ("final", "interim"):
        for h in history:
            number = str(h.get("number", ""))
            if _version_key(number)[:1] == (0,):
                yield Failure("6.1.18", f"a {status} document lists revision {number!r}; version 0 is for drafts only")


def _profile_tests(doc: Mapping[str, Any]) -> Iterator[Failure]:
    document = _obj(doc.get("document"))
    category = document.get("category")
    vulns = _vulns(doc)
    if category in ("csaf_informational_advisory", "csaf_security_incident_response"):
        kind = category.removeprefix("csaf_").replace("_", " ")
        notes = [n for n in document.get("notes") or [] if isinstance(n, Mapping)]
        if not any(n.get("category") in ("description", "details", "general", "summary") for n in notes):
            yield Failure("6.1.27.1", f"a {kind} needs a description, details, general or summary note")
        if not any(
            isinstance(r, Mapping) and r.get("category") == "external" for r in document.get("references") or []
        ):
            yield Failure("6.1.27.2", f"a {kind} needs at least one external reference")
    if category == "csaf_informational_advisory" and "vulnerabilities" in doc:
        yield Failure("6.1.27.3", "an informational advisory must not have vulnerabilities (use a security advisory)")
    if category in ("csaf_security_advisory", "csaf_vex"):
        if "product_tree" not in doc:
            yield Failure("6.1.27.4", f"a {category} document needs a product_tree")
        for v, vuln in enumerate(vulns):
            if not vuln.get("notes"):
                yield Failure("6.1.27.5", f"vulnerabilities[{v}] has no notes")
    if category in ("csaf_security_advisory", "csaf_vex") and "vulnerabilities" not in doc:
        yield Failure("6.1.27.11", f"a {category} document needs at least one vulnerability")
    if category == "csaf_security_advisory":
        for v, vuln in enumerate(vulns):
            if "product_status" not in vuln:
                yield Failure("6.1.27.6", f"vulnerabilities[{v}] has no product_status")
    if category == "csaf_vex":
        yield from _vex_profile(vulns, _groups(doc))


def _groups(doc: Mapping[str, Any]) -> dict[str, set[str]]:
    tree = _obj(doc.get("product_tree"))
    return {
        str(g.get("group_id")): {str(p) for p in g.get("product_ids") or []}
        for g in tree.get("product_groups") or []
        if isinstance(g, Mapping)
    }


def _named(items: object, groups: Mapping[str, set[str]], *, category: str | None = None) -> set[str]:
    """Product ids that flags/threats/remediations name directly or through their ``group_ids``."""
    out: set[str] = set()
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and (category is None or item.get("category") == category):
            out |= {str(p) for p in item.get("product_ids") or []}
            out |= {p for g in item.get("group_ids") or [] for p in groups.get(str(g), set())}
    return out


def _vex_profile(vulns: list[Mapping[str, Any]], groups: Mapping[str, set[str]]) -> Iterator[Failure]:
    for v, vuln in enumerate(vulns):
        status = _obj(vuln.get("product_status"))
        if not any(status.get(k) for k in ("fixed", "known_affected", "known_not_affected", "under_investigation")):
            yield Failure("6.1.27.7", f"vulnerabilities[{v}] gives no VEX product status")
        if not vuln.get("cve") and not vuln.get("ids"):
            yield Failure("6.1.27.8", f"vulnerabilities[{v}] has neither cve nor ids")
        # 6.1.27.9: a flag or an impact threat, 6.1.27.10: a remediation, for each product, by id or by group.
        explained = _named(vuln.get("flags"), groups) | _named(vuln.get("threats"), groups, category="impact")
        for pid in status.get("known_not_affected") or []:
            if str(pid) not in explained:
                yield Failure(
                    "6.1.27.9", f"vulnerabilities[{v}]: {pid!r} is known_not_affected without an impact statement"
                )
        remedied = _named(vuln.get("remediations"), groups)
        for pid in status.get("known_affected") or []:
            if str(pid) not in remedied:
                yield Failure(
                    "6.1.27.10", f"vulnerabilities[{v}]: {pid!r} is known_affected without an action statement"
                )


def validate(doc: object) -> list[Failure]:
    """Every failure of the schema and the mandatory tests above (empty: the document conforms).

    A schema failure stops here: the mandatory tests assume the document's shape.
    """
    if not isinstance(doc, Mapping):
        return [Failure("3 (schema)", "a CSAF document must be a JSON object")]
    failures = schema_failures(doc)
    if failures:
        return failures
    for test in (_products_tests, _status_tests, _cvss_tests, _tracking_tests, _profile_tests):
        failures.extend(test(doc))
        if len(failures) >= _MAX_FAILURES:
            break
    return failures[:_MAX_FAILURES]


def blocking(failures: list[Failure]) -> list[Failure]:
    """The failures that quarantine a document (all but the recoverable 6.1.9)."""
    return [f for f in failures if f.test not in RECOVERABLE]
