"""CSAF 2.0 provider feed: every document hash- and OpenPGP-verified against pinned fingerprints.

Options::

    feeds:
      csaf:
        provider_metadata: https://vendor.example/.well-known/csaf/provider-metadata.json
        fingerprints: ["B78E7CA3AC90727A2C8C408EB25688F252DDA512"]   # the pin decides
        keys: [/etc/patchwarden/vendor-key.asc]   # optional; else provider-metadata's public_openpgp_keys

Each poll (CSAF 2.0 §7.1 requirements 11-19):

1. fetch ``provider-metadata.json``; for each distribution read ``<directory_url>/changes.csv``
   (conditional GET) or each ROLIE feed, and take the entries newer than the cursor;
2. for each new document: fetch it, its ``.sha512`` and ``.sha256`` (at least one must exist, every one that
   exists must match), and its ``.asc`` detached signature, which must verify with a key whose
   fingerprint is pinned (:mod:`bot.crypto.openpgp`);
3. only then check it against the CSAF 2.0 schema and mandatory tests (:mod:`bot.feeds.csaf_validate`)
   and map it (:mod:`bot.feeds.csaf_map`).

A document failing any step is not used and is reported in ``quarantined`` with the reason; the poll goes
on. Network failures after retries fail the poll (``FeedError``), so the cursor never moves past an
unread document. Cursor keys: ``since <url>`` (newest date read per index), ``etag <url>`` /
``last_modified <url>`` (validators of changes.csv / ROLIE feeds).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urljoin

import aiohttp
from pydantic import Field

from bot import crypto, outbound
from bot.advisories.model import Advisory, parse_time
from bot.crypto.openpgp import PinnedVerifier, normalize_fingerprint, require_gpgv
from bot.errors import ConfigError, FeedError, VerificationError
from bot.feeds import csaf_validate, limits
from bot.feeds.base import Feed, FeedBatch, FeedOptions, Quarantined
from bot.feeds.csaf_map import parse_csaf
from bot.feeds.http import FetchState, fetch, is_http_url, open_session

_MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


class CsafOptions(FeedOptions):
    """``provider_metadata`` URL, pinned ``fingerprints`` and optional local public ``keys``."""

    provider_metadata: str
    fingerprints: list[str] = Field(min_length=1)
    keys: list[Path] = Field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    url: str
    updated: datetime
    index: str  # the changes.csv / ROLIE URL that listed it (its cursor key)


class CsafFeed(Feed):
    """A CSAF 2.0 provider (see the module docstring)."""

    name: ClassVar[str] = "csaf"
    Options: ClassVar[type[FeedOptions]] = CsafOptions
    options: CsafOptions

    def _check(self) -> None:
        if not is_http_url(self.options.provider_metadata):
            raise ConfigError(f"{self.key_path}.provider_metadata: must be an http(s) URL")
        try:
            self.verifier = PinnedVerifier(self.options.fingerprints)
        except ConfigError as exc:
            raise ConfigError(f"{self.key_path}.fingerprints: {exc}") from exc
        require_gpgv()
        self.local_keys: list[bytes] = []
        for i, path in enumerate(self.options.keys):
            if not path.is_file():
                raise ConfigError(f"{self.key_path}.keys.{i}: {path} does not exist")
            self.local_keys.append(path.read_bytes())

    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        new_cursor = dict(cursor)
        accepted: list[Advisory] = []
        refused: list[Quarantined] = []
        async with open_session(self.http) as session:
            # Step 1: provider metadata and the new entries of every distribution.
            metadata = await self._json(self.options.provider_metadata, session)
            keys = self.local_keys or await self._provider_keys(metadata, session)
            entries: dict[str, _Entry] = {}
            for index_url, kind in _indexes(metadata, self.options.provider_metadata):
                for entry in await self._index(index_url, kind, cursor, new_cursor, session):
                    entries.setdefault(entry.url, entry)
            # Steps 2-3 per document, oldest first.
            for entry in sorted(entries.values(), key=lambda e: e.updated):
                result = await self._document(entry.url, keys, session)
                if isinstance(result, Advisory):
                    accepted.append(result)
                else:
                    refused.append(result)
        return FeedBatch(advisories=tuple(accepted), quarantined=tuple(refused), cursor=new_cursor)

    async def _json(self, url: str, session: aiohttp.ClientSession) -> Mapping[str, Any]:
        body = (await fetch(url, state=None, settings=self.http, session=session)).body
        data = limits.load_json(body, where=url)
        if not isinstance(data, dict):
            raise FeedError(f"{url} is not a JSON object")
        return data

    async def _provider_keys(self, metadata: Mapping[str, Any], session: aiohttp.ClientSession) -> list[bytes]:
        # Only keys the provider lists under a pinned fingerprint are fetched; the signature check still
        # compares gpgv's VALIDSIG fingerprint with the pins, so a swapped key file cannot pass.
        keys = []
        for entry in metadata.get("public_openpgp_keys") or []:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("url"), str):
                continue
            try:
                fpr = normalize_fingerprint(str(entry.get("fingerprint", "")))
            except ConfigError:
                continue
            if fpr in self.verifier.fingerprints:
                url = urljoin(self.options.provider_metadata, entry["url"])
                keys.append((await fetch(url, state=None, settings=self.http, session=session)).body)
        if not keys:
            raise FeedError(f"feed {self.name}: no public key for the pinned fingerprints (set {self.key_path}.keys)")
        return keys

    async def _index(
        self,
        url: str,
        kind: str,
        cursor: Mapping[str, str],
        new_cursor: dict[str, str],
        session: aiohttp.ClientSession,
    ) -> list[_Entry]:
        state = FetchState(etag=cursor.get(f"etag {url}"), last_modified=cursor.get(f"last_modified {url}"))
        result = await fetch(url, state=state, settings=self.http, session=session)
        if result.not_modified:
            return []
        for key, value in (("etag", result.state.etag), ("last_modified", result.state.last_modified)):
            new_cursor.pop(f"{key} {url}", None)
            if value:
                new_cursor[f"{key} {url}"] = value
        since = parse_time(cursor.get(f"since {url}"), field="cursor")
        listed = _changes_csv(result.body, url) if kind == "directory" else _rolie(result.body, url)
        fresh = [e for e in listed if since is None or e.updated > since]
        if fresh:
            new_cursor[f"since {url}"] = max(e.updated for e in fresh).isoformat()
        return fresh

    async def _document(self, url: str, keys: list[bytes], session: aiohttp.ClientSession) -> Advisory | Quarantined:
        """The verified, parsed document, or why it was refused. Network failures raise ``FeedError``."""
        settings = self.http.model_copy(update={"max_bytes": min(self.http.max_bytes, _MAX_DOCUMENT_BYTES)})
        doc = await fetch(url, state=None, settings=settings, session=session, missing_ok=True)
        if doc.status in (404, 410):
            return self._refuse(url, f"document not found (HTTP {doc.status})")
        # Step 2a: hashes. At least one companion must exist; every existing one must match.
        checked = []
        for algorithm in ("sha512", "sha256"):
            companion = await fetch(
                f"{url}.{algorithm}", state=None, settings=self.http, session=session, missing_ok=True
            )
            if companion.status in (404, 410):
                continue
            expected = companion.body.decode("ascii", "replace").split()
            try:
                crypto.verify_digest(doc.body, algorithm=algorithm, expected_hex=expected[0] if expected else "")
            except VerificationError as exc:
                return self._refuse(url, f"hash check failed: {exc}")
            checked.append(algorithm)
        if not checked:
            return self._refuse(url, "no .sha512 or .sha256 file next to the document")
        # Step 2b: the detached OpenPGP signature by a pinned key.
        sig = await fetch(f"{url}.asc", state=None, settings=self.http, session=session, missing_ok=True)
        if sig.status in (404, 410):
            return self._refuse(url, "no .asc OpenPGP signature next to the document")
        try:
            await self.verifier.verify(doc.body, sig.body, keys=keys)
        except VerificationError as exc:
            return self._refuse(url, f"signature check failed: {exc}")
        # Step 3: only what was verified is read: schema and mandatory tests first, then the mapping.
        try:
            data = limits.load_json(doc.body, where="document")  # size and depth limits (issue 14)
        except FeedError as exc:
            return self._refuse(url, str(exc).removeprefix("document: "))
        return parse_checked(data, document=url, source=self.name)

    def _refuse(self, url: str, reason: str) -> Quarantined:
        return Quarantined(source=self.name, document=url, reason=reason)


def parse_checked(data: object, *, document: str, source: str) -> Advisory | Quarantined:
    """A conforming CSAF document as an ``Advisory``; else why not (CSAF test numbers in the reason)."""
    failures = csaf_validate.blocking(csaf_validate.validate(data))
    if failures:
        more = f" (+{len(failures) - 3} more)" if len(failures) > 3 else ""
        return Quarantined(source=source, document=document, reason="; ".join(map(str, failures[:3])) + more)
    assert isinstance(data, Mapping)  # validate() refuses anything else
    try:
        return parse_csaf(data, source=source)
    except FeedError as exc:
        return Quarantined(source=source, document=document, reason=str(exc))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        return Quarantined(source=source, document=document, reason=f"malformed document ({type(exc).__name__})")


def _indexes(metadata: Mapping[str, Any], base: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for dist in metadata.get("distributions") or []:
        if not isinstance(dist, Mapping):
            continue
        if isinstance(dist.get("directory_url"), str):
            directory = urljoin(base, dist["directory_url"]).rstrip("/") + "/"
            out.append((urljoin(directory, "changes.csv"), "directory"))
        rolie = dist.get("rolie")
        if isinstance(rolie, Mapping):
            out += [
                (urljoin(base, f["url"]), "rolie")
                for f in rolie.get("feeds") or []
                if isinstance(f, Mapping) and isinstance(f.get("url"), str)
            ]
    if not out:
        raise FeedError(f"{base}: provider metadata lists no distribution (directory_url or rolie feed)")
    return out


def _changes_csv(body: bytes, url: str) -> list[_Entry]:
    # Requirement 13: "path","current_release_date" per line, path relative to the directory.
    entries = []
    for row in csv.reader(io.StringIO(body.decode("utf-8", "replace"))):
        if len(row) < 2 or not row[0].strip():
            continue
        try:
            updated = parse_time(row[1].strip(), field="changes.csv")
        except FeedError:
            continue
        target = urljoin(url, row[0].strip())
        if updated is not None and row[0].endswith(".json") and outbound.same_origin(url, target):
            entries.append(_Entry(target, updated, url))  # another origin is refused (its trust is not ours)
    return entries


def _rolie(body: bytes, url: str) -> list[_Entry]:
    # Requirement 15: a ROLIE (Atom in JSON) feed; each entry links its document as "self".
    try:
        feed = limits.load_json(body, where=url)["feed"]
    except (FeedError, KeyError, TypeError) as exc:
        raise FeedError(f"{url} is not a ROLIE feed") from exc
    entries = []
    for entry in feed.get("entry") or [] if isinstance(feed, Mapping) else []:
        if not isinstance(entry, Mapping):
            continue
        links = [link for link in entry.get("link") or [] if isinstance(link, Mapping)]
        href = next((str(link["href"]) for link in links if link.get("rel") == "self" and link.get("href")), None)
        if href is None and isinstance(entry.get("content"), Mapping):
            href = entry["content"].get("src")
        try:
            updated = parse_time(entry.get("updated"), field="updated")
        except FeedError:
            continue
        if isinstance(href, str) and updated is not None:
            entries.append(_Entry(urljoin(url, href), updated, url))
    return entries
