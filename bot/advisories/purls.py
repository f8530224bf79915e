"""purl → installed package: the OSV ecosystem, the package name advisories use, and the release.

purl → OSV ecosystem (purl types per the purl spec, ecosystems per the OSV schema):
``pkg:pypi`` → PyPI, ``pkg:npm`` → npm, ``pkg:maven`` → Maven (name ``group:artifact``), ``pkg:golang`` →
Go, ``pkg:gem`` → RubyGems, ``pkg:cargo`` → crates.io, ``pkg:nuget`` → NuGet, ``pkg:composer`` →
Packagist, ``pkg:deb/debian?distro=debian-12`` → Debian release 12, ``pkg:deb/ubuntu?distro=ubuntu-22.04``
→ Ubuntu release 22.04, ``pkg:apk/alpine?distro=3.18`` → Alpine release v3.18, ``pkg:rpm/redhat`` → Red
Hat (likewise rocky, almalinux, suse, opensuse; ``distro=rhel-8.6`` → release 8, the major, as OSV keys
Red Hat family records by major). Debian and Ubuntu advisories name *source* packages, so the purl's
``upstream`` qualifier (``libssl3 … upstream=openssl``, as syft writes it) gives the name; the purl (kept on
the package) still names the binary package. An rpm ``epoch`` qualifier becomes the ``E:`` prefix.

Any other purl type or distro namespace (``pkg:apk/wolfi``, ``pkg:rpm/amzn``, ``pkg:cran``) is not covered by
any feed: :func:`coverage_gap` names it so an import can say so instead of dropping it silently.
"""

from __future__ import annotations

import re

from packageurl import PackageURL

from bot.advisories.model import DISTRO_ECOSYSTEMS, PURL_ECOSYSTEMS, InstalledPackage

# purls sometimes carry the codename (distro=bookworm, distro=jammy) instead of the number.
_CODENAMES = {
    "trixie": "13", "bookworm": "12", "bullseye": "11", "buster": "10", "stretch": "9", "jessie": "8",
    "noble": "24.04", "jammy": "22.04", "focal": "20.04", "bionic": "18.04", "xenial": "16.04",
    "trusty": "14.04",
}  # fmt: skip
_UBUNTU_RELEASE = re.compile(r"^\d+\.\d+$")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
# Red Hat rebuilds are matched by major release: a rhel-8.6 host takes Red Hat:enterprise_linux:8 records.
MAJOR_RELEASE_ECOSYSTEMS = frozenset({"Debian", "Red Hat", "Rocky Linux", "AlmaLinux"})


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


def coverage_gap(purl: PackageURL) -> str | None:
    """``None`` when a feed covers this purl's type; else the label an import reports (``apk (wolfi)``)."""
    if purl.type in PURL_ECOSYSTEMS or (purl.type, (purl.namespace or "").lower()) in DISTRO_ECOSYSTEMS:
        return None
    if purl.type in ("deb", "rpm", "apk", "alpm", "ebuild") and purl.namespace:
        return f"{purl.type} ({purl.namespace.lower()})"
    return purl.type
