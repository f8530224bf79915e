"""OSV range semantics on univers version classes: compile an ``affected`` entry once, evaluate it per version.

The evaluation follows the OSV schema's ``affected[].ranges`` algorithm (ossf/osv-schema ``docs/schema.md``,
section "Evaluation"): events of one range are sorted, ``introduced`` opens a vulnerable window, ``fixed``
closes it before that version and ``last_affected`` after it; ``limit`` events bound the range; an explicit
``versions`` list names affected versions directly. ``univers.version_range.from_osv_v1`` has no body,
so the walk is written here (about 40 lines), and univers only compares versions.

What cannot be decided is a *problem* (the matcher reports it as "needs triage", never as a silent miss):
a GIT-only entry (a commit graph is needed), an ecosystem without a known version ordering, a version
univers cannot parse, a system whose release is unknown while the advisory names one, or a product the
vendor is still investigating (CSAF ``under_investigation``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from univers import versions as V

from bot.advisories.model import AffectedPackage, VersionRange
from bot.advisories.purls import split_ecosystem

ECOSYSTEM_VERSION_CLASS: dict[str, type[Any]] = {
    "PyPI": V.PypiVersion,
    "npm": V.SemverVersion,
    "crates.io": V.SemverVersion,
    "Go": V.GolangVersion,
    "Maven": V.MavenVersion,
    "NuGet": V.NugetVersion,
    "RubyGems": V.RubygemsVersion,
    "Packagist": V.ComposerVersion,
    "Debian": V.DebianVersion,
    "Ubuntu": V.DebianVersion,
    "Alpine": V.AlpineLinuxVersion,
    "Red Hat": V.RpmVersion,
    "Rocky Linux": V.RpmVersion,
    "AlmaLinux": V.RpmVersion,
    "SUSE": V.RpmVersion,
    "openSUSE": V.RpmVersion,
}
_RPM_ECOSYSTEMS = frozenset(k for k, v in ECOSYSTEM_VERSION_CLASS.items() if v is V.RpmVersion)
# Red Hat's OSV conversion writes the arch into the version (``0:2.13.3-3.el8_6.1.x86_64``); installed
# versions carry none, and comparing the two would call every fixed system vulnerable.
_RPM_ARCH_SUFFIX = re.compile(r"\.(x86_64|aarch64|noarch|i[3-6]86|s390x|ppc64le|ppc64|armv7hl|src)$")
_PYPI_SEPARATORS = re.compile(r"[-_.]+")


def normalize_name(ecosystem_base: str, name: str) -> str:
    """The package name as the index compares it (PyPI names per PEP 503; others are exact)."""
    if ecosystem_base == "PyPI":
        return _PYPI_SEPARATORS.sub("-", name).lower()
    return name


def same_release(a: str, b: str) -> bool:
    """Alpine is written v3.18 by OSV and 3.18 by purls: both name the same release."""
    return a.removeprefix("v") == b.removeprefix("v")


def normalize_version(ecosystem_base: str, cls: type[Any] | None, text: str) -> str:
    """The version text as univers parses it (Go's ``v``/``go`` prefixes, the rpm arch suffix removed)."""
    text = text.strip()
    if ecosystem_base == "Go" and text.startswith("go") and text[2:3].isdigit():
        text = text[2:]  # the Go toolchain writes its own version go1.21.5
    if cls in (V.GolangVersion, V.SemverVersion) or ecosystem_base == "Go":
        text = text.removeprefix("v")
    if ecosystem_base in _RPM_ECOSYSTEMS:
        text = _RPM_ARCH_SUFFIX.sub("", text)
    return sys.intern(text)  # the same few thousand version strings recur across 100,000 advisories


class VersionCache:
    """Parsed univers versions per (class, ecosystem, string), each parsed once; ``None`` marks a string
    univers rejects. Both sides share it: an advisory's ``fixed: 2.31.0`` and an installed ``2.31.0`` are
    one object.

    ``ranks`` numbers every cached version by its place in its class's order. A univers comparison costs
    5-50 µs (Debian's dpkg rules in Python); a full match makes about a million of them, so it compares
    ranks (integers) instead, after sorting the few thousand distinct versions once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[type[Any], str, str], Any] = {}
        self._ranks: dict[int, int] | None = None

    def parse(self, cls: type[Any], ecosystem_base: str, text: str) -> Any:
        """The parsed version, or ``None`` when it is not valid for ``cls``."""
        key = (cls, ecosystem_base, text)  # normalisation depends on the ecosystem (Go's "go1.21")
        try:
            return self._cache[key]
        except KeyError:
            pass
        try:
            parsed: Any = cls(normalize_version(ecosystem_base, cls, text))
        except (V.InvalidVersion, ValueError, TypeError):
            parsed = None
        self._cache[key] = parsed
        if parsed is not None:
            self._ranks = None  # a new version: the numbering is built again when next asked for
        return parsed

    def ranks(self) -> dict[int, int]:
        """``id(parsed version) -> rank``: equal versions share a rank, a greater one has a greater rank.

        Versions of a class univers cannot order among themselves get no rank (callers compare them)."""
        if self._ranks is None:
            by_cls: dict[type[Any], dict[int, Any]] = {}
            for (cls, _, _), parsed in self._cache.items():
                if parsed is not None:
                    by_cls.setdefault(cls, {})[id(parsed)] = parsed
            ranks: dict[int, int] = {}
            for found in by_cls.values():
                try:
                    ordered = sorted(found.values())
                except TypeError:
                    continue
                rank, previous = 0, None
                for version in ordered:
                    if previous is not None and previous < version:
                        rank += 1
                    ranks[id(version)] = rank
                    previous = version
            self._ranks = ranks
        return self._ranks

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True, slots=True)
class Range:
    """One ECOSYSTEM/SEMVER range, parsed once. ``problem`` set: the range cannot be decided."""

    cls: type[Any] | None
    events: tuple[tuple[str, Any], ...] = ()  # sorted (kind, parsed); parsed None is "introduced: 0"
    limits: tuple[Any, ...] = ()  # parsed limits; an empty tuple means no limit
    fixed: tuple[tuple[Any, str], ...] = ()
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One compiled ``affected`` entry of one advisory."""

    advisory_id: str
    release: str | None
    versions: frozenset[str]
    ranges: tuple[Range, ...]
    undecided: str  # set when a version outside ``versions`` cannot be decided (GIT-only, no ranges at all)
    triage: str = ""  # CSAF under_investigation: a hit needs triage, it is never "affected"
    remediation: str = ""


@dataclass(slots=True)
class Verdict:
    """What the entries of one advisory say about one installed version."""

    affected: bool = False
    problems: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    remediation: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Probe:
    """One distinct installed version of a package, prepared once for every advisory it is checked against."""

    ecosystem: str
    release: str | None
    version: str  # as installed
    normalised: str  # as the ``versions`` lists are compared


def compile_range(rng: VersionRange, base: str, cache: VersionCache) -> Range:
    """Parse one range's events (sorted) against the ecosystem's version class."""
    if rng.type not in ("ECOSYSTEM", "SEMVER"):
        return Range(None, problem=f"unknown range type {rng.type!r}")
    cls = V.SemverVersion if rng.type == "SEMVER" else ECOSYSTEM_VERSION_CLASS.get(base)
    if cls is None:
        return Range(None, problem=f"no version ordering known for ecosystem {base!r}")
    events: list[tuple[str, Any]] = []
    limits: list[Any] = []
    fixed: list[tuple[Any, str]] = []
    for event in rng.events:
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            value = getattr(event, kind)
            if value is None:
                continue
            if (kind == "introduced" and value == "0") or (kind == "limit" and value == "*"):
                if kind == "introduced":
                    events.append((kind, None))
                continue
            parsed = cache.parse(cls, base, value)
            if parsed is None:
                return Range(cls, problem=f"advisory version {value!r} is not a valid {base} version")
            if kind == "limit":
                limits.append(parsed)
            else:
                events.append((kind, parsed))
                if kind == "fixed":
                    fixed.append((parsed, sys.intern(value)))
    try:
        # "introduced: 0" sorts first; equal versions keep their order (Python's sort is stable).
        events.sort(key=lambda e: (0,) if e[1] is None else (1, e[1]))
    except TypeError:
        return Range(cls, problem="advisory range events cannot be ordered")
    return Range(cls, tuple(events), tuple(limits), tuple(fixed))


def compile_entry(advisory_id: str, affected: AffectedPackage, cache: VersionCache) -> Entry:
    """Compile one ``affected`` entry: its release, explicit versions and parsed ranges."""
    base, release = split_ecosystem(affected.ecosystem)
    cls = ECOSYSTEM_VERSION_CLASS.get(base)
    ranges = tuple(compile_range(r, base, cache) for r in affected.ranges if r.type != "GIT")
    has_git = any(r.type == "GIT" for r in affected.ranges)
    versions = frozenset(normalize_version(base, cls, v) for v in affected.versions) if affected.versions else _NONE
    undecided = ""
    if affected.triage and not ranges and not versions:
        undecided = affected.triage
    elif has_git and not ranges:
        undecided = "the advisory gives only GIT commit ranges; check the source revision by hand"
    elif not ranges and not versions:
        undecided = "the advisory lists no affected versions or ranges for this package"
    return Entry(advisory_id, release, versions, ranges, undecided, affected.triage, affected.remediation)


_NONE: frozenset[str] = frozenset()


def probe(ecosystem: str, release: str | None, version: str) -> Probe:
    """The prepared form of one installed version."""
    return Probe(
        ecosystem, release, version, normalize_version(ecosystem, ECOSYSTEM_VERSION_CLASS.get(ecosystem), version)
    )


def range_affects(rng: Range, version: Any) -> bool:
    """True when ``version`` lies in the range (OSV evaluation: limits, then the sorted events)."""
    if rng.limits and not any(version < limit for limit in rng.limits):
        return False
    vulnerable = False
    for kind, value in rng.events:
        if kind == "introduced" and (value is None or version >= value):
            vulnerable = True
        elif (kind == "fixed" and version >= value) or (kind == "last_affected" and version > value):
            vulnerable = False
    return vulnerable


def _affects_ranked(rng: Range, version: int, ranks: Mapping[int, int]) -> bool | None:
    """``range_affects`` on ranks; ``None`` when a version of the range has no rank (compare objects)."""
    if rng.limits:
        limits = [ranks.get(id(limit)) for limit in rng.limits]
        if None in limits:
            return None
        if not any(version < limit for limit in limits if limit is not None):
            return False
    vulnerable = False
    for kind, value in rng.events:
        if value is None:  # introduced: 0
            vulnerable = True
            continue
        rank = ranks.get(id(value))
        if rank is None:
            return None
        if kind == "introduced":
            vulnerable = vulnerable or version >= rank
        elif (kind == "fixed" and version >= rank) or (kind == "last_affected" and version > rank):
            vulnerable = False
    return vulnerable


def _next_fix(rng: Range, parsed: Any, ranks: Mapping[int, int] | None) -> str | None:
    """The lowest fixed version above ``parsed`` in the range, as the advisory wrote it."""
    mine = ranks.get(id(parsed)) if ranks is not None else None
    if ranks is not None and mine is not None and all(id(p) in ranks for p, _ in rng.fixed):
        ranked = [(ranks[id(p)], text) for p, text in rng.fixed if ranks[id(p)] > mine]
        return min(ranked, key=lambda pair: pair[0])[1] if ranked else None
    later = [(p, text) for p, text in rng.fixed if p > parsed]
    return min(later, key=lambda pair: pair[0])[1] if later else None


def evaluate(
    entry: Entry, pkg: Probe, cache: VersionCache, verdict: Verdict, ranks: Mapping[int, int] | None = None
) -> None:
    """Add what ``entry`` says about the installed version ``pkg`` to ``verdict``.

    ``ranks`` (``VersionCache.ranks``, current for every version involved) replaces univers comparisons by
    integer ones; without it, or for a version it does not number, the versions are compared."""
    base = pkg.ecosystem
    if entry.release is not None and pkg.release is not None and not same_release(entry.release, pkg.release):
        return
    hit = bool(entry.versions) and pkg.normalised in entry.versions
    problems: list[str] = []
    for rng in entry.ranges:
        if rng.problem or rng.cls is None:
            problems.append(rng.problem)
            continue
        parsed = cache.parse(rng.cls, base, pkg.version)
        if parsed is None:
            problems.append(f"installed version {pkg.version!r} is not a valid {base} version")
            continue
        rank = ranks.get(id(parsed)) if ranks is not None else None
        inside = _affects_ranked(rng, rank, ranks) if rank is not None and ranks is not None else None
        if inside is None:
            inside = range_affects(rng, parsed)
        if inside:
            hit = True
            fix = _next_fix(rng, parsed, ranks)
            if fix is not None:
                verdict.fixed.append(fix)
    if not hit and entry.undecided:
        problems.append(entry.undecided)
    if hit and entry.triage:
        hit = False
        problems.append(entry.triage)
    if hit and entry.remediation:
        verdict.remediation.append(entry.remediation)
    if hit and entry.release is not None and pkg.release is None:
        verdict.problems.append(f"affected on {base}:{entry.release}; the system's release is unknown")
        return
    verdict.affected = verdict.affected or hit
    verdict.problems.extend(problems)
