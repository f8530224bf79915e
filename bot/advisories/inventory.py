"""What is installed where: configured package lists and offline inventory files (SBOMs: :mod:`.sbom`).

Every package becomes an ``InstalledPackage`` with the bare OSV ecosystem (``Debian``, ``PyPI``) and the
distribution release where it matters (``12`` for Debian 12, ``v3.18`` for Alpine 3.18, ``22.04`` for
Ubuntu 22.04, ``8`` for RHEL 8.6), because OSV keys distribution advisories by release (``Debian:12`` is
not ``Debian:11``). The purl rules are in :mod:`bot.advisories.purls`.

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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.advisories.model import InstalledPackage
from bot.advisories.purls import canonical_release, from_purl, split_ecosystem
from bot.advisories.sbom import load_cyclonedx, load_sbom
from bot.config import Package, System
from bot.errors import InputError

__all__ = ["from_config", "from_purl", "load_cyclonedx", "load_inventory", "load_sbom", "split_ecosystem"]


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
            systems[name] = load_sbom(sbom).packages
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
            systems[str(name)] = load_sbom(path.parent / str(spec["sbom"])).packages
        else:
            systems[str(name)] = _package_rows(spec["packages"], where)
    return systems
