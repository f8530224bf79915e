"""Decide which installed packages an advisory affects: an index of compiled advisories against an inventory.

The range semantics (OSV's evaluation algorithm on univers versions) are in :mod:`bot.advisories.ranges`.
What the inventory cannot decide is reported as ``MatchStatus.NEEDS_TRIAGE``, never dropped. Withdrawn
advisories match nothing. A vendor's VEX ``known_not_affected`` statement turns the match on that product
(and only that product: never the CVE on other packages) into a ``MatchStatus.NOT_AFFECTED`` match that
carries the vendor's justification, so it can be stored and exported instead of vanishing.

``MatchIndex`` keys advisories by (ecosystem base, normalised package name) and groups the inventory by
(name, release, version): a full match costs one evaluation per distinct installed version of a package
that has advisories, not advisories × packages. Identical packages of different systems are kept once
(1,000 systems × 500 packages are mostly the same packages), parsed versions are shared through one
``VersionCache``, and ``iter_matches`` streams the matches for callers that do not need them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from bot.advisories.model import Advisory, InstalledPackage, Match, MatchStatus
from bot.advisories.purls import split_ecosystem
from bot.advisories.ranges import (
    ECOSYSTEM_VERSION_CLASS,
    Entry,
    Probe,
    Verdict,
    VersionCache,
    compile_entry,
    evaluate,
    normalize_name,
    normalize_version,
    probe,
    same_release,
)

__all__ = ["ECOSYSTEM_VERSION_CLASS", "MatchIndex", "match_packages", "normalize_name"]

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Suppression:
    release: str | None
    version: str | None  # normalised; None: every version
    justification: str  # the VEX label, or ""
    why: str  # the statement in words (label and impact)


@dataclass(slots=True)
class _Group:
    """One distinct installed version of one package, and who has it."""

    probe: Probe
    # (name, purl) -> (one shared package object, the systems that have it): every field of the package is
    # then equal within a member, so one object stands for all of them.
    members: dict[tuple[str, str | None], tuple[InstalledPackage, list[str]]]


class MatchIndex:
    """Advisories indexed by (ecosystem base, normalised name), matched against a remembered inventory."""

    def __init__(self, advisories: Iterable[Advisory] = ()) -> None:
        self.versions = VersionCache()
        self._by_key: dict[Key, dict[str, list[Entry]]] = {}
        self._keys_of: dict[str, tuple[Key, ...]] = {}
        self._key_pool: dict[Key, Key] = {}  # one tuple per key, shared by every advisory naming it
        # VEX known_not_affected statements: key -> advisory id -> products the vendor says are not affected.
        self._suppress: dict[Key, dict[str, list[_Suppression]]] = {}
        self._inventory: dict[Key, dict[tuple[str | None, str], _Group]] = {}
        for advisory in advisories:
            self.upsert(advisory)

    def __len__(self) -> int:
        return len(self._keys_of)

    def _key(self, base: str, name: str) -> Key:
        key = (base, normalize_name(base, name))
        return self._key_pool.setdefault(key, key)

    def upsert(self, advisory: Advisory) -> None:
        """Add or replace an advisory; a withdrawn one is removed (it matches nothing)."""
        self.remove(advisory.id)
        if advisory.withdrawn is not None:
            return
        keys: dict[Key, None] = {}
        for affected in advisory.affected:
            base, _ = split_ecosystem(affected.ecosystem)
            key = self._key(base, affected.name)
            entry = compile_entry(advisory.id, affected, self.versions)
            self._by_key.setdefault(key, {}).setdefault(advisory.id, []).append(entry)
            keys[key] = None
        for statement in advisory.not_affected:
            base, release = split_ecosystem(statement.ecosystem)
            key = self._key(base, statement.name)
            cls = ECOSYSTEM_VERSION_CLASS.get(base)
            version = normalize_version(base, cls, statement.version) if statement.version else None
            rule = _Suppression(release, version, statement.justification, statement.why())
            self._suppress.setdefault(key, {}).setdefault(advisory.id, []).append(rule)
            keys[key] = None
        self._keys_of[advisory.id] = tuple(keys)

    def remove(self, advisory_id: str) -> None:
        """Forget an advisory (no error if it is unknown)."""
        for key in self._keys_of.pop(advisory_id, ()):
            for table in (self._by_key, self._suppress):
                by_id = table.get(key)
                if by_id is not None:
                    by_id.pop(advisory_id, None)
                    if not by_id:
                        del table[key]

    def set_systems(self, systems: Mapping[str, Sequence[InstalledPackage]]) -> None:
        """Remember the inventory that ``iter_matches`` and ``rematch_advisory`` evaluate."""
        inventory: dict[Key, dict[tuple[str | None, str], _Group]] = {}
        holders: dict[int, list[str]] = {}  # by id() of a package object: a pooled package is placed once
        for system, packages in systems.items():
            for pkg in packages:
                found = holders.get(id(pkg))
                if found is None:
                    found = holders[id(pkg)] = self._place(inventory, pkg)
                found.append(system)
        self._inventory = inventory

    def _place(self, inventory: dict[Key, dict[tuple[str | None, str], _Group]], pkg: InstalledPackage) -> list[str]:
        """The systems list of ``pkg``'s member in its group (created on first sight)."""
        groups = inventory.setdefault(self._key(pkg.ecosystem, pkg.name), {})
        group = groups.get((pkg.release, pkg.version))
        if group is None:
            group = groups[(pkg.release, pkg.version)] = _Group(probe(pkg.ecosystem, pkg.release, pkg.version), {})
        member = group.members.get((pkg.name, pkg.purl))
        if member is None:
            member = group.members[(pkg.name, pkg.purl)] = (pkg, [])
        return member[1]

    def iter_matches(self, systems: Mapping[str, Sequence[InstalledPackage]] | None = None) -> Iterator[Match]:
        """Every match of every indexed advisory, one at a time; ``systems`` replaces the remembered inventory."""
        if systems is not None:
            self.set_systems(systems)
        ranks = self._prepare()
        for key, groups in self._inventory.items():
            by_id = self._by_key.get(key)
            suppress = self._suppress.get(key)
            ids = list(by_id or ()) + [i for i in suppress or () if not by_id or i not in by_id]
            for advisory_id in ids:
                entries = by_id.get(advisory_id, []) if by_id else []
                yield from self._match(key, advisory_id, entries, groups, ranks)

    def _prepare(self) -> dict[int, int]:
        """Parse every installed version a range will compare, then number all versions (``ranks``)."""
        for key, groups in self._inventory.items():
            classes = {r.cls for entries in self._by_key.get(key, {}).values() for e in entries for r in e.ranges}
            classes.discard(None)
            for group in groups.values():
                for cls in classes:
                    if cls is not None:
                        self.versions.parse(cls, group.probe.ecosystem, group.probe.version)
        return self.versions.ranks()

    def match_all(self, systems: Mapping[str, Sequence[InstalledPackage]] | None = None) -> list[Match]:
        """Every match of every indexed advisory (``iter_matches`` as a list)."""
        return list(self.iter_matches(systems))

    def rematch_advisory(self, advisory: Advisory) -> list[Match]:
        """Replace one advisory in the index and return its matches against the remembered inventory."""
        self.upsert(advisory)
        matches: list[Match] = []
        for key in self._keys_of.get(advisory.id, ()):
            groups = self._inventory.get(key)
            if groups:
                entries = self._by_key.get(key, {}).get(advisory.id, [])
                matches.extend(self._match(key, advisory.id, entries, groups))
        return matches

    def _suppression(self, key: Key, advisory_id: str, pkg: Probe) -> _Suppression | None:
        """The vendor's statement when VEX says this product is not affected."""
        for rule in self._suppress.get(key, {}).get(advisory_id, ()):
            if rule.release is not None and pkg.release is not None and not same_release(rule.release, pkg.release):
                continue
            if rule.version is None or rule.version == pkg.normalised:
                return rule
        return None

    def _match(
        self,
        key: Key,
        advisory_id: str,
        entries: list[Entry],
        groups: Mapping[tuple[str | None, str], _Group],
        ranks: Mapping[int, int] | None = None,
    ) -> Iterator[Match]:
        suppressing = key in self._suppress
        for group in groups.values():
            rule = self._suppression(key, advisory_id, group.probe) if suppressing else None
            if rule is not None:
                for pkg, systems in group.members.values():
                    for system in systems:
                        yield Match(
                            advisory_id, system, pkg, MatchStatus.NOT_AFFECTED, (), rule.why, "", rule.justification
                        )
                continue
            if not entries:
                continue
            verdict = Verdict()
            for entry in entries:
                evaluate(entry, group.probe, self.versions, verdict, ranks)
            if not verdict.affected and not verdict.problems:
                continue
            status = MatchStatus.AFFECTED if verdict.affected else MatchStatus.NEEDS_TRIAGE
            fixed = tuple(dict.fromkeys(verdict.fixed))
            reason = "" if verdict.affected else "; ".join(dict.fromkeys(verdict.problems))
            remediation = "; ".join(dict.fromkeys(verdict.remediation))
            for pkg, systems in group.members.values():
                for system in systems:
                    yield Match(advisory_id, system, pkg, status, fixed, reason, remediation)


def match_packages(advisories: Iterable[Advisory], systems: Mapping[str, Sequence[InstalledPackage]]) -> list[Match]:
    """One-shot convenience: index ``advisories`` and match ``systems``."""
    return MatchIndex(advisories).match_all(systems)
