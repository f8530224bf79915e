"""Benchmark: a first ``feeds poll`` of 20,000 OSV records from a zip, then the same zip with one record changed.

Runs this tree's ingestion and the base commit's (checked out with ``git archive`` into a temp folder) in the
same session, each run in a fresh process on a fresh database, on SQLite and PostgreSQL (a throw-away server
from ``tests/support/pg.py``). Prints the median and the spread (min–max) of each measurement and the peak
RSS of each worker process. Asserts nothing about time.

    python bench/advisory_ingest.py                          # 20,000 records, 3 runs new, 1 run base
    python bench/advisory_ingest.py --records 2000 --runs 1  # quick look
    python bench/advisory_ingest.py --backends sqlite        # without PostgreSQL

Targets (issue 9): the first import at least 5x faster than the base commit; one changed record in a
20,000-record zip in under 2 s.

Measured 2026-12-03 on the shared 2-core box (medians; this tree n=3, base n=1; peak RSS of the worker):

    SQLite (load ~1)       first import 114.95 s -> 11.88 s (11.21-12.53), 9.7x; one changed 29.78 s -> 0.61 s
    PostgreSQL (load ~2-5) first import 339.01 s -> 13.23 s (12.13-13.56), 25.6x; one changed 312.49 s -> 0.59 s
    peak RSS               302 MiB (base) -> 522 MiB (this tree: the whole batch is held while it is stored)
    SQLite under load ~12  74.77 s (42.91-85.33) vs base 360.10 s; one changed 4.63 s (1.59-5.65)

Re-measured 2026-12-03 with the VEX not-affected rows and the pooled inventory (adv2; load 4-9; this tree n=3,
base n=1):

    SQLite       first import 125.33 s -> 9.27 s (9.23-9.37), 13.5x; one changed 47.36 s -> 0.41 s (0.41-0.43)
    PostgreSQL   first import 947.75 s -> 16.84 s (15.82-17.62), 56.3x; one changed 412.44 s -> 0.58 s (0.55-0.80)
    peak RSS     302 MiB (base) -> 558 MiB SQLite, 556 MiB PostgreSQL (this tree: the whole batch is held)

Records are synthetic but shaped like osv.dev's PyPI export (aliases, CVSS vector, ECOSYSTEM ranges with an
introduced and a fixed event, references); one system has 500 installed packages, so 2,000 records match.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASE = "b9967c6"  # the commit before issue 9's ingestion work
PACKAGES = 5000  # distinct package names in the feed
INSTALLED = 500  # of which one system has this many installed


def record(i: int, *, details: str = "") -> dict[str, Any]:
    """One synthetic OSV record (about 1 KB, like a typical PyPI record)."""
    return {
        "schema_version": "1.6.0",
        "id": f"PYSEC-2090-{i}",
        "aliases": [f"CVE-2090-{100000 + i}", f"GHSA-bnch-{i:04x}-xxxx"],
        "summary": f"Synthetic flaw {i} in pkg-{i % PACKAGES}",
        "details": details or f"A crafted request to pkg-{i % PACKAGES} may cause harm (record {i}).",
        "published": "2024-03-01T00:00:00Z",
        "modified": "2025-01-01T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": f"pkg-{i % PACKAGES}", "purl": f"pkg:pypi/pkg-{i % PACKAGES}"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f"2.{i % 7}.0"}]}],
            }
        ],
        "references": [{"type": "WEB", "url": f"https://example.org/advisories/{i}"}],
    }


def write_zip(path: Path, n: int, *, changed: int | None = None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            doc = record(i, details="Changed upstream: a new paragraph." if i == changed else "")
            zf.writestr(f"PYSEC-2090-{i}.json", json.dumps(doc))


def config_data(feed: Path) -> dict[str, Any]:
    packages = [{"ecosystem": "PyPI", "name": f"pkg-{i}", "version": "1.0"} for i in range(INSTALLED)]
    return {
        "slack": {"approvals_channel": "C0APPROVALS", "advisories_channel": "C0ADVISORIES"},
        "groups": {"security": ["U0SEC1"], "operators": ["U0OPS1"]},
        "systems": {"web-shop": {"owner": "U0OWNER1", "packages": packages}},
        "policy": {
            "version": 1,
            "operators": "operators",
            "stages": {"test": [{"role": "owner"}], "prod": [{"role": "owner"}, {"group": "security"}]},
        },
        "feeds": {"osv": {"source": str(feed)}},
    }


# ---- the worker: one process, one fresh database, one code tree ----------------------------------------


async def _worker(url: str, config_path: Path, feed: Path, changed_zip: Path) -> dict[str, Any]:
    from bot.app import create_client
    from bot.config import load_config
    from bot.deps import build_deps
    from bot.feeds.http import HttpSettings
    from bot.feeds.osv import OsvFeed

    try:  # this tree: the jobs live in bot.jobs; the baseline tree had them in bot.slack.advisory_posts
        from bot.jobs import run_feeds_poll
    except ImportError:
        from bot.slack.advisory_posts import run_feeds_poll  # type: ignore[attr-defined,no-redef]
    from storage import migrate

    await asyncio.to_thread(migrate.upgrade, url)
    config = load_config(config_path)
    from bot.config import Settings

    settings = Settings(PATCHWARDEN_DATABASE_URL=url, SLACK_API_URL="http://127.0.0.1:9/api/")
    deps = build_deps(settings, config, client=create_client(token="", base_url=settings.slack_api_url))
    feeds = {"osv": OsvFeed({"source": str(feed)}, key_path="feeds.osv", http=HttpSettings())}
    try:
        t0 = time.perf_counter()
        first = (await run_feeds_poll(deps, feeds=feeds, post=False))["osv"]
        t1 = time.perf_counter()
        await asyncio.to_thread(feed.write_bytes, await asyncio.to_thread(changed_zip.read_bytes))
        t2 = time.perf_counter()
        second = (await run_feeds_poll(deps, feeds=feeds, post=False))["osv"]
        t3 = time.perf_counter()
    finally:
        await deps.engine.dispose()
    return {
        "first_s": t1 - t0,
        "first": [first.changed, first.unchanged, first.quarantined],
        "changed_s": t3 - t2,
        "second": [second.changed, second.unchanged, second.quarantined],
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def worker_main(args: argparse.Namespace) -> None:
    feed = Path(args.feed)
    feed.write_bytes(Path(args.original).read_bytes())  # every run starts from the unchanged zip
    out = asyncio.run(_worker(args.db, Path(args.config), feed, Path(args.changed)))
    import bot

    out["code"] = str(Path(bot.__file__).resolve().parents[1])
    print(json.dumps(out))


# ---- the driver ---------------------------------------------------------------------------------------


def checkout_base(commit: str, into: Path) -> Path:
    """The base commit's tree (``git archive``), to run the old ingestion in the same session."""
    archive = into / "base.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", commit], stdout=fh, check=True)
    root = into / "base"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


def run_worker(code: Path, db: str, work: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--db", db, "--config", str(work / "cfg.yaml")]
    cmd += [
        "--feed",
        str(work / "feed.zip"),
        "--original",
        str(work / "all.zip"),
        "--changed",
        str(work / "changed.zip"),
    ]
    proc = subprocess.run(cmd, env=env, cwd=str(code), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({code}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if Path(result["code"]) != code.resolve():
        raise SystemExit(f"worker imported {result['code']}, not {code}")
    return result


def summary(values: list[float], unit: str = "s") -> str:
    med = statistics.median(values)
    spread = f" (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})" if len(values) > 1 else " (n=1)"
    return f"{med:.2f} {unit}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3, help="runs of this tree per backend")
    parser.add_argument("--baseline-runs", type=int, default=1, help="runs of the base commit per backend")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--base", default=BASE)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("db", "config", "feed", "original", "changed"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
        return

    import yaml

    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        work = Path(tmp)
        write_zip(work / "all.zip", args.records)
        write_zip(work / "changed.zip", args.records, changed=args.records // 2)
        (work / "cfg.yaml").write_text(yaml.safe_dump(config_data(work / "feed.zip")))
        trees = {"this tree": REPO, f"base {args.base}": checkout_base(args.base, work)}
        runs = {"this tree": args.runs, f"base {args.base}": args.baseline_runs}
        pg = None
        if "postgres" in args.backends:
            sys.path.insert(0, str(REPO / "tests"))
            from support.pg import start_pg_server

            pg = start_pg_server(Path(tempfile.gettempdir()))  # the postgres user cannot enter work/
        print(f"{args.records} OSV records in one zip; one system with {INSTALLED} installed packages")
        try:
            for backend in args.backends.split(","):
                medians: dict[str, float] = {}
                for label, code in trees.items():
                    results = []
                    for n in range(runs[label]):
                        if backend == "sqlite":
                            db = f"sqlite+aiosqlite:///{work}/{label.split()[0]}-{n}.db"
                        else:
                            assert pg is not None
                            db = asyncio.run(pg.create_database(f"bench_{label.split()[0]}_{n}"))
                        results.append(run_worker(code, db, work))
                    medians[label] = statistics.median(r["first_s"] for r in results)
                    print(f"[{backend}] {label}:")
                    print(f"  first import    {summary([r['first_s'] for r in results])}  counts {results[0]['first']}")
                    print(
                        f"  one changed     {summary([r['changed_s'] for r in results])}  counts {results[0]['second']}"
                    )
                    print(f"  peak RSS        {summary([r['rss_mib'] for r in results], 'MiB')}")
                old, new = medians[f"base {args.base}"], medians["this tree"]
                print(f"[{backend}] first import speed-up: {old / new:.1f}x (median {old:.2f} s -> {new:.2f} s)")
        finally:
            if pg is not None:
                pg.stop()


if __name__ == "__main__":
    main()
