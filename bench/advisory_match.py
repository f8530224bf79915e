"""Benchmark: match ≥100,000 OSV advisories against 1,000 systems × 500 packages, and re-evaluate one.

Advisories are clones of real records in shared/data/osv (their JSON structure: GIT + ECOSYSTEM ranges and
a ``versions`` list, SEMVER, Debian release ecosystems, Maven, npm) with synthetic package names and
versions, parsed with the production OSV parser. Prints numbers; asserts nothing about time.

    python bench/advisory_match.py            # full run: 100,000 advisories, 1,000 systems × 500 packages
    python bench/advisory_match.py --quick    # 10,000 advisories, 100 systems × 200 packages

Targets: full match < 30 s and < 1 GiB peak RSS; re-evaluation of one changed advisory < 100 ms.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from univers import versions as V

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.advisories.inventory import split_ecosystem
from bot.advisories.matching import ECOSYSTEM_VERSION_CLASS, MatchIndex
from bot.advisories.model import Advisory, InstalledPackage
from bot.advisories.osv import parse_osv

OSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "osv"
TEMPLATES = {  # ecosystem -> a real record whose structure is cloned
    "PyPI": "PyPI/PYSEC-2023-74.json",
    "npm": "npm/GHSA-jpcq-cgw6-v4j6.json",
    "Debian:12": "Debian/DLA-3008-1.json",
    "Go": "Go/GO-2020-0001.json",
    "Maven": "Maven/GHSA-269g-pwp5-87pp.json",
}
VERSIONS_PER_NAME = 6


def rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def version_text(eco: str, major: int, minor: int, patch: int, epoch: bool = False) -> str:
    if eco == "Debian:12":
        return f"{'1:' if epoch else ''}{major}.{minor}-{patch}+deb12u{patch % 4}"
    return f"{major}.{minor}.{patch}"


def package_versions(rng: random.Random) -> list[tuple[int, int, int]]:
    return sorted({(rng.randint(0, 5), rng.randint(0, 9), rng.randint(0, 20)) for _ in range(VERSIONS_PER_NAME)})


def make_advisory(
    template: dict[str, Any],
    eco: str,
    name: str,
    ident: str,
    rng: random.Random,
    known: list[tuple[int, int, int]],
) -> dict[str, Any]:
    """A deep copy of ``template`` pointed at ``name`` with a range around some of the ``known`` versions."""
    doc = copy.deepcopy(template)
    doc["id"] = ident
    doc["aliases"] = [f"CVE-2099-{ident[-6:]}"]
    top = len(known) if rng.random() < 0.15 or len(known) == 1 else len(known) - 1
    lo = rng.randrange(top)
    hi = min(top - 1, lo + rng.randint(0, 2))
    epoch = has_epoch(name)
    introduced = "0" if rng.random() < 0.2 else version_text(eco, *known[lo], epoch)
    bump = (known[hi][0], known[hi][1], known[hi][2] + 1)
    end_kind = "last_affected" if rng.random() < 0.1 else "fixed"
    end_value = version_text(eco, *(known[hi] if end_kind == "last_affected" else bump), epoch)
    if eco == "Go":
        introduced, end_value = introduced.removeprefix("v"), end_value.removeprefix("v")
    affected = doc["affected"][0]
    affected["package"] = {"ecosystem": eco, "name": name, "purl": f"pkg:generic/{name}"}
    kind = "SEMVER" if eco == "Go" else "ECOSYSTEM"
    affected["ranges"] = [{"type": kind, "events": [{"introduced": introduced}, {end_kind: end_value}]}]
    if "versions" in affected or rng.random() < 0.3:
        affected["versions"] = [version_text(eco, *v, epoch) for v in known[lo : hi + 1]]
    doc["affected"] = [affected]
    return doc


def has_epoch(name: str) -> bool:
    return int(name.rsplit("-", 1)[1]) % 3 == 0  # some Debian packages carry an epoch on every version


class Universe:
    """Synthetic package names per ecosystem, each with a few known versions (oldest first)."""

    def __init__(self, n_advisories: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        ecosystems = list(TEMPLATES)
        # ~n/2.5 names, so popular names carry several advisories, as in the real data.
        self.n_names = max(50, int(n_advisories / 2.5))
        self.names = [(ecosystems[i % len(ecosystems)], f"synth-pkg-{i}") for i in range(self.n_names)]
        self.known = {name: package_versions(self.rng) for _, name in self.names}
        self.popular = max(10, self.n_names // 50)  # installed nearly everywhere (openssl, requests, ...)


def advisory_stream(universe: Universe, n_advisories: int) -> Iterator[Advisory]:
    """Advisories one by one, as a store would hand them to the index (the index keeps no Advisory)."""
    templates = {eco: json.loads((OSV / rel).read_text()) for eco, rel in TEMPLATES.items()}
    rng, names = universe.rng, universe.names
    for i in range(n_advisories):
        eco, name = names[rng.randrange(universe.popular) if rng.random() < 0.1 else rng.randrange(universe.n_names)]
        doc = make_advisory(templates[eco], eco, name, f"SYNTH-{i:06d}", rng, universe.known[name])
        yield parse_osv(doc)


def make_systems(universe: Universe, n_systems: int, per_system: int) -> dict[str, list[InstalledPackage]]:
    """Systems with 40 % popular packages; most installs run the newest known version."""
    rng, names = universe.rng, universe.names
    systems: dict[str, list[InstalledPackage]] = {}
    for s in range(n_systems):
        head = rng.sample(range(universe.popular), min(universe.popular, per_system * 2 // 5))
        tail = rng.sample(range(universe.popular, universe.n_names), per_system - len(head))
        pkgs = []
        for eco, name in (names[i] for i in head + tail):
            base, release = split_ecosystem(eco)
            known = universe.known[name]
            chosen = known[-1] if rng.random() < 0.7 else rng.choice(known)
            v = version_text(eco, *chosen, has_epoch(name))
            pkgs.append(
                InstalledPackage(ecosystem=base, name=name, version=f"v{v}" if eco == "Go" else v, release=release)
            )
        systems[f"host-{s:04d}"] = pkgs
    return systems


def naive_match(advisories: list[Advisory], systems: dict[str, list[InstalledPackage]]) -> int:
    """Advisories × packages with the OSV pseudocode and no index or cache: the baseline."""
    hits = 0
    for advisory in advisories:
        if advisory.withdrawn:
            continue
        for packages in systems.values():
            for pkg in packages:
                for aff in advisory.affected:
                    base, release = split_ecosystem(aff.ecosystem)
                    if aff.name != pkg.name or base != pkg.ecosystem or release != pkg.release:
                        continue
                    if pkg.version in aff.versions:
                        hits += 1
                        break
                    if any(_naive_in_range(r.type, base, r.events, pkg.version) for r in aff.ranges):
                        hits += 1
                        break
    return hits


def _naive_in_range(kind: str, base: str, events: Any, version: str) -> bool:
    if kind == "GIT":
        return False
    cls = V.SemverVersion if kind == "SEMVER" else ECOSYSTEM_VERSION_CLASS[base]
    v = cls(version.removeprefix("v"))
    vulnerable = False
    for e in events:  # the generated ranges are already ordered
        if e.introduced is not None and (e.introduced == "0" or v >= cls(e.introduced)):
            vulnerable = True
        elif (e.fixed is not None and v >= cls(e.fixed)) or (e.last_affected and v > cls(e.last_affected)):
            vulnerable = False
    return vulnerable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 advisories, 100 systems × 200 packages")
    args = parser.parse_args()
    n_adv, n_sys, per_sys = (10_000, 100, 200) if args.quick else (100_000, 1_000, 500)

    universe = Universe(n_adv)
    index = MatchIndex()
    sample_rng = random.Random(11)
    baseline_advisories: list[Advisory] = []
    changed_later: list[Advisory] = []
    t_index = cpu_index = 0.0
    t0 = time.perf_counter()
    for advisory in advisory_stream(universe, n_adv):
        t1, c1 = time.perf_counter(), time.process_time()
        index.upsert(advisory)
        t_index += time.perf_counter() - t1
        cpu_index += time.process_time() - c1
        if len(baseline_advisories) < 1_000:
            baseline_advisories.append(advisory)
        if sample_rng.random() < 60 / n_adv:
            changed_later.append(advisory)
    t_gen = time.perf_counter() - t0 - t_index
    rss_index = rss_mib()
    systems = make_systems(universe, n_sys, per_sys)
    n_pkgs = sum(len(p) for p in systems.values())
    print(
        f"generated and parsed {n_adv:,} OSV advisories in {t_gen:.1f} s; {n_sys:,} systems with "
        f"{n_pkgs:,} installed packages"
    )
    print(f"peak RSS: {rss_index:.0f} MiB after indexing the advisories, {rss_mib():.0f} MiB with inventory")

    t0, c0 = time.perf_counter(), time.process_time()
    matches = index.match_all(systems)
    t_match, cpu_match = time.perf_counter() - t0, time.process_time() - c0
    affected = sum(m.status == "affected" for m in matches)
    print(f"index build (upsert of every advisory): {t_index:.2f} s; full match: {t_match:.2f} s; "
          f"together {t_index + t_match:.2f} s → {len(matches):,} matches ({affected:,} affected); "
          f"version cache {len(index.versions):,} entries")  # fmt: skip
    # On a shared machine wall time includes waiting for a core; CPU time is what the code costs.
    print(f"CPU time: index {cpu_index:.2f} s, match {cpu_match:.2f} s, together {cpu_index + cpu_match:.2f} s")
    print(f"peak RSS of the whole run (generator, advisories, inventory, index, matches): {rss_mib():.0f} MiB")
    del matches

    timings = []
    for advisory in changed_later[:50]:
        changed = advisory.model_copy(update={"summary": advisory.summary + " (updated)"})
        t0 = time.perf_counter()
        index.rematch_advisory(changed)
        timings.append(time.perf_counter() - t0)
    print(f"re-evaluate one changed advisory: median {statistics.median(timings) * 1000:.2f} ms, "
          f"max {max(timings) * 1000:.2f} ms ({len(timings)} runs)")  # fmt: skip

    sub_sys = dict(list(systems.items())[:10])
    t0 = time.perf_counter()
    naive_hits = naive_match(baseline_advisories, sub_sys)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    indexed = MatchIndex(baseline_advisories).match_all(sub_sys)
    t_indexed = time.perf_counter() - t0
    indexed_affected = sum(m.status == "affected" for m in indexed)
    scale = (n_adv / len(baseline_advisories)) * (n_sys / len(sub_sys))
    print(f"baseline on 1,000 advisories × 10 systems: naive {t_naive:.2f} s ({naive_hits} hits), "
          f"indexed {t_indexed:.3f} s ({indexed_affected} affected); naive extrapolated to the full run: "
          f"~{t_naive * scale / 60:.0f} min")  # fmt: skip


if __name__ == "__main__":
    main()
