"""What is installed where: CycloneDX SBOM import, configured package lists, and offline inventory files.

Every package becomes an ``InstalledPackage`` with the bare OSV ecosystem (``Debian``, ``PyPI``) and the
distribution release where it matters (``12`` for Debian 12, ``v3.18`` for Alpine 3.18, ``22.04`` for
Ubuntu 22.04), because OSV keys distribution advisories by release (``Debian:12`` is not ``Debian:11``).

purl → OSV ecosystem (purl types per the purl spec, ecosystems per the OSV schema):
``pkg:pypi`` → PyPI, ``pkg:npm`` → npm, ``pkg:maven`` → Maven (name ``group:artifact``), ``pkg:golang`` →
Go, ``pkg:gem`` → RubyGems, ``pkg:cargo`` → crates.io, ``pkg:nuget`` → NuGet, ``pkg:composer`` →
Packagist, ``pkg:deb/debian?distro=debian-12`` → Debian release 12, ``pkg:deb/ubuntu?distro=ubuntu-22.04``
→ Ubuntu release 22.04, ``pkg:apk/alpine?distro=3.18`` → Alpine release v3.18, ``pkg:rpm/redhat`` → Red
Hat (likewise rocky, almalinux, suse, opensuse). Debian and Ubuntu advisories name *source* packages, so
the purl's ``upstream`` qualifier (``libssl3 … upstream=openssl``, as syft writes it) gives the name;
the purl (kept on the package) still names the binary package. ``pkg:generic`` components and components
without a purl describe no installable package and are skipped.

Offline inventory file (``patchwarden advisories match --inventory PATH``), YAML or JSON::

    systems:
      web-01:
        sbom: sboms/web-01.cdx.json        # relative to this file
      db-01:
        packages:                          # rows like System.packages in the configuration ...
          - {ecosystem: Debian, release: "12", name: openssl, version: 3.0.11-1~deb12u2}
          - pkg:pypi/requests@2.30.0       # ... or purls

or a directory of SBOMs, one per system, named ``<system>.cdx.json`` (also ``.bom.json`` / ``.json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from packageurl import PackageURL
from pydantic import ValidationError

from bot.config import Package, System
from bot.errors import InputError
from bot.feeds.model import DISTRO_ECOSYSTEMS, PURL_ECOSYSTEMS, InstalledPackage

# purls sometimes carry the codename (distro=bookworm, distro=jammy) instead of the number.
_CODENAMES = {
    "trixie": "13", "bookworm": "12", "bullseye": "11", "buster": "10", "stretch": "9", "jessie": "8",
    "noble": "24.04", "jammy": "22.04", "focal": "20.04", "bionic": "18.04", "xenial": "16.04",
    "trusty": "14.04",
}  # fmt: skip
_SPEC_VERSION = re.compile(r"^1\.(\d+)$")
_UBUNTU_RELEASE = re.compile(r"^\d+\.\d+$")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
# Red Hat rebuilds are matched by major release: a rhel-8.6 host takes Red Hat:enterprise_linux:8 records.
MAJOR_RELEASE_ECOSYSTEMS = frozenset({"Debian", "Red Hat", "Rocky Linux", "AlmaLinux"})
MAX_SBOM_BYTES = 64 << 20


def canonical_release(base: str, release: str) -> str:
    """The release as both sides compare it: the major for Debian (``4.0`` → ``4``, as OSV writes
    ``Debian:4.0`` for old releases and ``Debian:12`` for new ones) and the Red Hat family
    (``enterprise_linux:8::appstream``, ``rhel-8.6``, ``rocky-9.3`` → ``8`` / ``9``); others unchanged."""
    if base not in MAJOR_RELEASE_ECOSYSTEMS:
        return release
    found = _NUMBER.search(release)
    return found.group().split(".")[0] if found else release


def split_ecosystem(ecosystem: str) -> tuple[str, str | None]:
    """Split an OSV ecosystem into base and release: ``Debian:12`` → (Debian, 12), ``Debian:4.0`` →
    (Debian, 4), ``Ubuntu:22.04:LTS`` → (Ubuntu, 22.04), ``Alpine:v3.18`` → (Alpine, v3.18),
    ``Red Hat:enterprise_linux:8::appstream`` → (Red Hat, 8), ``PyPI`` → (PyPI, None)."""
    base, _, rest = ecosystem.partition(":")
    if not rest:
        return base, None
    if base in MAJOR_RELEASE_ECOSYSTEMS:
        return base, canonical_release(base, rest)
    if base == "Ubuntu":
        # Ubuntu:22.04:LTS, Ubuntu:Pro:18.04:LTS: the numeric part is the release.
        numeric = [part for part in rest.split(":") if _UBUNTU_RELEASE.match(part)]
        return base, numeric[0] if numeric else rest
    return base, rest


def _release(ecosystem: str, distro: str | None) -> str | None:
    if not distro:
        return None
    value = distro.strip().lower()
    for prefix in ("debian-", "ubuntu-", "alpine-", "debian", "ubuntu", "alpine"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    value = _CODENAMES.get(value, value)
    if ecosystem in MAJOR_RELEASE_ECOSYSTEMS:
        return canonical_release(ecosystem, value)  # OSV writes Debian:12 for every 12.x point release
    if ecosystem == "Alpine":
        return "v" + ".".join(value.removeprefix("v").split(".")[:2])  # Alpine:v3.18
    if ecosystem == "Ubuntu":
        return ".".join(value.split(".")[:2])
    return value


def from_purl(purl: str, *, default_distro: str | None = None) -> InstalledPackage | None:
    """The installed package a purl names, or ``None`` for purls that name no matchable package
    (``pkg:generic``, no version). Raises ``ValueError`` for a malformed purl."""
    parsed = PackageURL.from_string(purl)
    if not parsed.version:
        return None
    qualifiers: dict[str, str] = parsed.qualifiers if isinstance(parsed.qualifiers, dict) else {}
    namespace = parsed.namespace or ""
    name, version, release = parsed.name, parsed.version, None
    if parsed.type in PURL_ECOSYSTEMS:
        ecosystem = PURL_ECOSYSTEMS[parsed.type]
        if ecosystem == "Maven":
            name = f"{namespace}:{parsed.name}"
        elif namespace:  # npm scopes (@types/node), Go module paths
            name = f"{namespace}/{parsed.name}"
        if ecosystem == "Go" and name == "stdlib":
            version = version.removeprefix("go")
    elif (parsed.type, namespace.lower()) in DISTRO_ECOSYSTEMS:
        ecosystem = DISTRO_ECOSYSTEMS[(parsed.type, namespace.lower())]
        release = _release(ecosystem, qualifiers.get("distro") or default_distro)
        upstream = qualifiers.get("upstream")
        if upstream and ecosystem in ("Debian", "Ubuntu"):
            name = upstream.split("@", 1)[0]  # source package; ``upstream=bash@5.2.15-2`` for binNMUs
        epoch = qualifiers.get("epoch")
        if parsed.type == "rpm" and epoch and ":" not in version:
            version = f"{epoch}:{version}"  # syft writes the epoch as a qualifier; advisories write E:V-R
    else:
        return None
    return InstalledPackage(ecosystem=ecosystem, name=name, version=version, release=release, purl=purl)


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
        raise InputError(f"{where}: not valid JSON ({exc}); expected a CycloneDX JSON SBOM") from exc


def _default_distro(doc: Mapping[str, Any]) -> str | None:
    """The host's OS from an ``operating-system`` component, for deb/apk purls that omit ``distro=``."""
    metadata = doc.get("metadata")
    candidates: list[Any] = list(doc.get("components") or [])
    if isinstance(metadata, Mapping):
        candidates.insert(0, metadata.get("component"))
    for comp in candidates:
        if isinstance(comp, Mapping) and comp.get("type") == "operating-system" and comp.get("version"):
            return f"{comp.get('name', '')}-{comp['version']}"
    return None


def load_cyclonedx(path_or_data: Path | str | bytes | Mapping[str, Any]) -> list[InstalledPackage]:
    """The packages of a CycloneDX JSON SBOM (nested components included, duplicates dropped).

    Raises ``InputError`` naming the problem when the document is not a CycloneDX 1.x JSON BOM or a
    component's purl is malformed. 1.5 and 1.6 are the supported versions; 1.2 to 1.4 are read as well,
    since the fields used here (``components[].purl``, nested ``components``) have not changed.
    """
    doc, where = _read_json(path_or_data)
    if not isinstance(doc, Mapping) or doc.get("bomFormat") != "CycloneDX":
        raise InputError(f'{where}: not a CycloneDX SBOM (expected "bomFormat": "CycloneDX")')
    spec = doc.get("specVersion")
    match = _SPEC_VERSION.match(spec) if isinstance(spec, str) else None
    if match is None or int(match.group(1)) < 2:
        raise InputError(f"{where}: unsupported CycloneDX specVersion {spec!r}; export version 1.5 or 1.6")
    components = doc.get("components", [])
    if not isinstance(components, list):
        raise InputError(f"{where}: 'components' must be a list")
    default_distro = _default_distro(doc)
    found: dict[tuple[str, str, str, str | None, str | None], InstalledPackage] = {}
    stack: list[tuple[str, Any]] = [(f"components[{i}]", c) for i, c in enumerate(components)]
    while stack:
        loc, comp = stack.pop()
        if not isinstance(comp, Mapping):
            raise InputError(f"{where}: {loc} is not an object")
        nested = comp.get("components", [])
        if not isinstance(nested, list):
            raise InputError(f"{where}: {loc}.components must be a list")
        stack.extend((f"{loc}.components[{i}]", c) for i, c in enumerate(nested))
        purl = comp.get("purl")
        if purl is None:
            continue
        if not isinstance(purl, str):
            raise InputError(f"{where}: {loc}.purl must be a string")
        try:
            pkg = from_purl(purl, default_distro=default_distro)
        except ValueError as exc:
            raise InputError(f"{where}: {loc} ({comp.get('name', '?')}): malformed purl {purl!r}: {exc}") from exc
        if pkg is not None:
            found.setdefault((pkg.ecosystem, pkg.name, pkg.version, pkg.release, pkg.purl), pkg)
    return sorted(found.values(), key=lambda p: (p.ecosystem, p.name, p.version, p.purl or ""))


def _from_row(row: Package) -> InstalledPackage:
    base, release = split_ecosystem(row.ecosystem)  # accept "Debian:12" as well as Debian + release 12
    given = row.release or release
    return InstalledPackage(
        ecosystem=base, name=row.name, version=row.version, release=canonical_release(base, given) if given else None
    )


def from_config(system: System) -> list[InstalledPackage]:
    """The packages listed under ``systems.<name>.packages`` in the configuration."""
    return [_from_row(row) for row in system.packages]


def _package_rows(rows: Any, where: str) -> list[InstalledPackage]:
    if not isinstance(rows, list):
        raise InputError(f"{where}: 'packages' must be a list")
    out: list[InstalledPackage] = []
    for i, row in enumerate(rows):
        try:
            if isinstance(row, str):
                pkg = from_purl(row)
                if pkg is None:
                    raise ValueError("the purl names no matchable package (generic type or no version)")
                out.append(pkg)
            else:
                out.append(_from_row(Package.model_validate(row)))
        except (ValueError, ValidationError) as exc:
            raise InputError(f"{where}.packages[{i}]: {exc}") from exc
    return out


def load_inventory(path: Path) -> dict[str, list[InstalledPackage]]:
    """Systems and their packages from an inventory file or a directory of SBOMs (formats above)."""
    if path.is_dir():
        systems: dict[str, list[InstalledPackage]] = {}
        for sbom in sorted(path.glob("*.json")):
            name = sbom.name
            for suffix in (".cdx.json", ".bom.json", ".json"):
                if name.endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            systems[name] = load_cyclonedx(sbom)
        if not systems:
            raise InputError(f"{path}: no *.json SBOM in this directory")
        return systems
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the inventory: {exc}") from exc
    entries = doc.get("systems") if isinstance(doc, Mapping) else None
    if not isinstance(entries, Mapping) or not entries:
        raise InputError(f"{path}: expected a mapping 'systems: {{NAME: {{sbom: FILE}} | {{packages: [...]}}}}'")
    systems = {}
    for name, spec in entries.items():
        where = f"{path}: systems.{name}"
        if not isinstance(spec, Mapping) or set(spec) not in ({"sbom"}, {"packages"}):
            raise InputError(f"{where}: give exactly one of 'sbom' (a file) or 'packages' (a list)")
        if "sbom" in spec:
            systems[str(name)] = load_cyclonedx(path.parent / str(spec["sbom"]))
        else:
            systems[str(name)] = _package_rows(spec["packages"], where)
    return systems
