"""SBOM import: CycloneDX 1.2-1.6 JSON (``cyclonedx-python-lib``) and SPDX 2.2/2.3 JSON (``spdx-tools``).

``load_sbom`` answers what it imported *and* what it could not cover: every component is either an
``InstalledPackage`` or counted in ``SbomImport.uncovered`` by purl type (``apk (wolfi)``, ``cran``,
``generic``) or in ``without_purl``; nothing is dropped without a word. A component whose purl cannot be
parsed fails the import (``InputError`` naming it), since the rest of the file cannot be trusted either.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from bot.advisories.model import InstalledPackage
from bot.advisories.purls import coverage_gap, from_purl
from bot.errors import InputError

MAX_SBOM_BYTES = 64 << 20


@dataclass
class SbomImport:
    """What one SBOM gave: the packages, and the components no feed covers (by purl type)."""

    format: str
    packages: list[InstalledPackage] = field(default_factory=list)
    components: int = 0
    uncovered: Counter[str] = field(default_factory=Counter)
    without_purl: int = 0

    def gaps(self) -> str:
        """``"12 components not covered: 9 apk (wolfi), 3 cran"`` (empty when everything is covered)."""
        parts = [f"{n} {label}" for label, n in sorted(self.uncovered.items(), key=lambda kv: (-kv[1], kv[0]))]
        total = sum(self.uncovered.values())
        out = []
        if total:
            out.append(f"{total} component{'s' if total != 1 else ''} not covered: {', '.join(parts)}")
        if self.without_purl:
            out.append(f"{self.without_purl} without a purl (cannot be matched)")
        return "; ".join(out)


def _read_json(path_or_data: Path | str | bytes | Mapping[str, Any]) -> tuple[Any, str]:
    if isinstance(path_or_data, Mapping):
        return path_or_data, "SBOM"
    if isinstance(path_or_data, bytes):
        raw, where = path_or_data, "SBOM"
    else:
        path = Path(path_or_data)
        where = str(path)
        try:
            if path.stat().st_size > MAX_SBOM_BYTES:
                raise InputError(f"{where}: the SBOM is larger than {MAX_SBOM_BYTES >> 20} MiB")
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{where}: cannot read the SBOM ({exc.strerror})") from exc
    try:
        return json.loads(raw), where
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not valid JSON ({exc}); expected a CycloneDX or SPDX JSON SBOM") from exc


def _collect(result: SbomImport, rows: Iterable[tuple[str, str | None]], *, where: str, distro: str | None) -> None:
    """Add ``(component label, purl)`` rows to ``result``; duplicates are imported once."""
    found: dict[tuple[str, str, str, str | None, str | None], InstalledPackage] = {}
    for label, purl in rows:
        result.components += 1
        if purl is None:
            result.without_purl += 1
            continue
        try:
            parsed = PackageURL.from_string(purl)
            gap = coverage_gap(parsed)
            pkg = None if gap else from_purl(purl, default_distro=distro)
        except ValueError as exc:
            raise InputError(f"{where}: {label}: malformed purl {purl!r}: {exc}") from exc
        if gap is not None:
            result.uncovered[gap] += 1
        elif pkg is None:
            result.uncovered["no version"] += 1
        else:
            found.setdefault((pkg.ecosystem, pkg.name, pkg.version, pkg.release, pkg.purl), pkg)
    result.packages = sorted(found.values(), key=lambda p: (p.ecosystem, p.name, p.version, p.purl or ""))


def _precheck(doc: Mapping[str, Any], where: str) -> None:
    """Name the component at fault before the library gives a less precise error."""
    stack: list[tuple[str, Any]] = [("components", doc.get("components", []))]
    while stack:
        loc, items = stack.pop()
        if not isinstance(items, list):
            raise InputError(f"{where}: '{loc}' must be a list")
        for i, comp in enumerate(items):
            if not isinstance(comp, Mapping):
                raise InputError(f"{where}: {loc}[{i}] is not an object")
            purl = comp.get("purl")
            if purl is not None:
                try:
                    PackageURL.from_string(str(purl))
                except ValueError as exc:
                    label = f"{loc}[{i}] ({comp.get('name', '?')})"
                    raise InputError(f"{where}: {label}: malformed purl {purl!r}: {exc}") from exc
            stack.append((f"{loc}[{i}].components", comp.get("components", [])))


def _cyclonedx(doc: Mapping[str, Any], where: str) -> SbomImport:
    # Imported here: the library is large and only an import needs it.
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType

    spec = str(doc.get("specVersion", ""))
    if spec not in ("1.2", "1.3", "1.4", "1.5", "1.6"):
        raise InputError(f"{where}: unsupported CycloneDX specVersion {spec!r}; export version 1.4 to 1.6")
    _precheck(doc, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notes about 1.2-era fields (metadata.tools)
            bom = Bom.from_json(doc)  # type: ignore[attr-defined]
    except Exception as exc:  # the library raises a variety of errors for malformed documents
        raise InputError(f"{where}: not a valid CycloneDX {spec} document ({type(exc).__name__}: {exc})") from exc

    def walk(components: Iterable[Component]) -> Iterator[Component]:
        for comp in components:
            yield comp
            yield from walk(comp.components)

    components = list(walk(bom.components))
    distro = None
    for comp in [bom.metadata.component, *components]:
        if comp is not None and comp.type is ComponentType.OPERATING_SYSTEM and comp.version:
            distro = f"{comp.name}-{comp.version}"  # the host's OS, for deb/apk purls without distro=
            break
    result = SbomImport(format=f"CycloneDX {spec}")
    rows = [
        (f"{c.name} {c.version or ''}".strip(), c.purl.to_string() if c.purl else None)
        for c in components
        if c.type is not ComponentType.OPERATING_SYSTEM
    ]
    _collect(result, rows, where=where, distro=distro)
    return result


def _spdx(doc: Mapping[str, Any], where: str) -> SbomImport:
    from spdx_tools.spdx.model.package import ExternalPackageRefCategory
    from spdx_tools.spdx.parser.error import SPDXParsingError
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser

    version = str(doc.get("spdxVersion", ""))
    if version not in ("SPDX-2.2", "SPDX-2.3"):
        raise InputError(f"{where}: unsupported {version or 'SPDX version'}; export SPDX 2.3 JSON")
    try:
        document = JsonLikeDictParser().parse(dict(doc))  # type: ignore[no-untyped-call]
    except SPDXParsingError as exc:
        messages = "; ".join(exc.get_messages())  # type: ignore[no-untyped-call]
        raise InputError(f"{where}: not a valid {version} document ({messages[:300]})") from exc
    rows: list[tuple[str, str | None]] = []
    for pkg in document.packages:
        purls = [
            ref.locator
            for ref in pkg.external_references
            if ref.category is ExternalPackageRefCategory.PACKAGE_MANAGER and ref.reference_type == "purl"
        ]
        rows.append((f"{pkg.name} {pkg.version or ''}".strip(), purls[0] if purls else None))
    result = SbomImport(format=version)
    _collect(result, rows, where=where, distro=None)
    return result


def load_sbom(path_or_data: Path | str | bytes | Mapping[str, Any]) -> SbomImport:
    """Read a CycloneDX or SPDX JSON SBOM (told apart by ``bomFormat`` / ``spdxVersion``)."""
    doc, where = _read_json(path_or_data)
    if isinstance(doc, Mapping) and doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc, where)
    if isinstance(doc, Mapping) and "spdxVersion" in doc:
        return _spdx(doc, where)
    raise InputError(f'{where}: not a CycloneDX SBOM ("bomFormat": "CycloneDX") nor an SPDX one ("spdxVersion")')


def load_cyclonedx(path_or_data: Path | str | bytes | Mapping[str, Any]) -> list[InstalledPackage]:
    """The packages of an SBOM (kept for callers that need no coverage report)."""
    return load_sbom(path_or_data).packages
