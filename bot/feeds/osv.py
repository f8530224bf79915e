"""OSV feed: osv.dev bulk exports from a directory, a zip, or an HTTP(S) URL, read incrementally.

``source`` is one of:

* a local directory of ``<ID>.json`` records (any depth). If it holds a ``modified_id.csv`` the feed
  reads only the records listed as newer than the cursor, else every record whenever the directory's
  content digest changed;
* a local ``.zip`` (osv.dev's ``<ecosystem>/all.zip``): every record whenever the zip changed;
* an ``http(s)://`` URL ending in ``.zip``: the same, fetched with a conditional GET;
* any other ``http(s)://`` URL: a base URL as on osv.dev's bucket (``…/PyPI``): ``<base>/modified_id.csv``
  is fetched conditionally and each newer record from ``<base>/<ID>.json``.

``modified_id.csv`` lines are ``<RFC 3339 modified>,<ID>``, newest first (osv.dev's format; the global
file writes ``<ecosystem>/<ID>``, which resolves to the same path scheme). Cursor keys: ``modified``
(newest timestamp read), ``digest`` (of a local source), ``etag`` / ``last_modified`` (HTTP validators).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import aiohttp

from bot.advisories.model import Advisory, parse_time
from bot.advisories.osv import parse_osv
from bot.errors import ConfigError, FeedError
from bot.feeds import limits
from bot.feeds.base import Feed, FeedBatch, FeedOptions, Quarantined
from bot.feeds.http import FetchState, fetch, is_http_url, open_session

_MAX_RECORD_BYTES = 16 * 1024 * 1024


class OsvOptions(FeedOptions):
    """``source``: directory, zip file, or HTTP(S) URL (see the module docstring)."""

    source: str


@dataclass(frozen=True)
class _Entry:
    modified: datetime
    ident: str


class _Collector:
    """Accumulates accepted and quarantined documents of one poll.

    With ``known`` (the member hashes of the previous full read, from the cursor), a member whose bytes
    did not change is counted as unchanged and not parsed again: one changed record in a 20,000-record
    zip costs one parse, not 20,000 (issue 9).
    """

    def __init__(self, source: str, known: dict[str, str] | None = None) -> None:
        self.source = source
        self.advisories: list[Advisory] = []
        self.quarantined: list[Quarantined] = []
        self.track = known is not None
        self.known = known or {}
        self.seen: dict[str, str] = {}
        self.unchanged = 0

    def add(self, document: str, raw: bytes | FeedError) -> None:
        # each record on its own (bot.feeds.limits): a hostile one is quarantined, never the whole poll
        if isinstance(raw, bytes):
            digest = hashlib.sha256(raw).hexdigest()[:32]
            self.seen[document] = digest
            if self.known.get(document) == digest:
                self.unchanged += 1
                return
        try:
            if isinstance(raw, FeedError):
                raise raw
            data = limits.load_json(raw, where=document, max_bytes=_MAX_RECORD_BYTES)
            self.advisories.append(parse_osv(data, source=self.source))
        except FeedError as exc:
            self.quarantine(document, str(exc).removeprefix(f"{document}: "))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            self.quarantine(document, f"malformed record ({type(exc).__name__})")

    def quarantine(self, document: str, reason: str) -> None:
        self.quarantined.append(Quarantined(source=self.source, document=document, reason=reason))

    def batch(self, cursor: dict[str, str]) -> FeedBatch:
        if self.track:
            cursor = {**cursor, "members": json.dumps(self.seen, separators=(",", ":"), sort_keys=True)}
        return FeedBatch(
            advisories=tuple(self.advisories),
            quarantined=tuple(self.quarantined),
            cursor=cursor,
            unchanged=self.unchanged,
        )


def _known(cursor: dict[str, str]) -> dict[str, str]:
    """Member hashes of the last full read (empty when absent or unreadable: then everything is parsed)."""
    try:
        known = json.loads(cursor.get("members", "{}"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in known.items()} if isinstance(known, dict) else {}


def parse_modified_ids(text: str, *, since: datetime | None) -> tuple[list[_Entry], list[str]]:
    """Entries of a ``modified_id.csv`` newer than ``since`` (the file is newest first), and bad lines."""
    entries: list[_Entry] = []
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        stamp, _, ident = line.strip().partition(",")
        try:
            modified = parse_time(stamp, field="modified")
        except FeedError:
            modified = None
        if modified is None or not _safe_id(ident):
            bad.append(line[:120])
            continue
        if since is not None and modified <= since:
            break  # newest first: everything below is already known
        entries.append(_Entry(modified, ident))
    return entries, bad


def _safe_id(ident: str) -> bool:
    # Ids become file paths and URL paths: refuse traversal and anything odd (global file: "<eco>/<ID>").
    parts = ident.split("/")
    return 0 < len(parts) <= 2 and all(p and p not in (".", "..") and "\\" not in p for p in parts)


class OsvFeed(Feed):
    """OSV records from osv.dev's bulk exports (see the module docstring)."""

    name: ClassVar[str] = "osv"
    Options: ClassVar[type[FeedOptions]] = OsvOptions
    options: OsvOptions

    def _check(self) -> None:
        src = self.options.source
        if not is_http_url(src) and not Path(src).exists():
            raise ConfigError(f"{self.key_path}.source: {src} is neither an http(s) URL nor an existing path")

    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        src = self.options.source
        if is_http_url(src):
            if src.lower().endswith(".zip"):
                return await self._poll_http_zip(src, cursor)
            return await self._poll_http_index(src.rstrip("/"), cursor)
        return await asyncio.to_thread(self._poll_local, Path(src), cursor)

    # --- local ---------------------------------------------------------------------------------

    def _poll_local(self, path: Path, cursor: dict[str, str]) -> FeedBatch:
        if path.is_dir() and (path / "modified_id.csv").is_file():
            return self._poll_dir_index(path, cursor)
        return self._poll_local_all(path, cursor)

    def _poll_local_all(self, path: Path, cursor: dict[str, str]) -> FeedBatch:
        docs: list[tuple[str, bytes | FeedError]]
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file())
            docs = [(str(p.relative_to(path)), p.read_bytes()) for p in files]
        else:
            docs = _zip_members(path.read_bytes(), path.name, self.http.max_bytes)
        digest = hashlib.sha256()
        for name, raw in docs:
            mark = hashlib.sha256(raw).hexdigest() if isinstance(raw, bytes) else str(raw)
            digest.update(f"{name}\0{mark}\n".encode())
        new_cursor = {**cursor, "digest": digest.hexdigest()}
        if cursor.get("digest") == new_cursor["digest"]:
            return FeedBatch(cursor=new_cursor)
        out = _Collector(self.name, _known(cursor))
        for name, raw in docs:
            out.add(name, raw)
        return out.batch(new_cursor)

    def _poll_dir_index(self, path: Path, cursor: dict[str, str]) -> FeedBatch:
        since = parse_time(cursor.get("modified"), field="cursor.modified")
        text = (path / "modified_id.csv").read_text(encoding="utf-8")
        entries, bad = parse_modified_ids(text, since=since)
        out = _Collector(self.name)
        for line in bad:
            out.quarantine("modified_id.csv", f"malformed line {line!r}")
        for entry in entries:
            file = path / f"{entry.ident}.json"
            if not file.is_file():
                out.quarantine(entry.ident, "listed in modified_id.csv but the record file is missing")
                continue
            out.add(entry.ident, file.read_bytes())
        return out.batch(_advance(cursor, entries))

    # --- HTTP ----------------------------------------------------------------------------------

    async def _poll_http_zip(self, url: str, cursor: dict[str, str]) -> FeedBatch:
        result = await fetch(url, state=_state(cursor), settings=self.http)
        if result.not_modified:
            return FeedBatch(cursor=cursor)
        new_cursor = _with_state(cursor, result.state)
        docs = await asyncio.to_thread(_zip_members, result.body, url, self.http.max_bytes)
        out = _Collector(self.name, _known(cursor))
        for name, raw in docs:
            out.add(name, raw)
        return out.batch(new_cursor)

    async def _poll_http_index(self, base: str, cursor: dict[str, str]) -> FeedBatch:
        since = parse_time(cursor.get("modified"), field="cursor.modified")
        async with open_session(self.http) as session:
            index = await fetch(f"{base}/modified_id.csv", state=_state(cursor), settings=self.http, session=session)
            if index.not_modified:
                return FeedBatch(cursor=cursor)
            entries, bad = parse_modified_ids(index.body.decode("utf-8", "replace"), since=since)
            out = _Collector(self.name)
            for line in bad:
                out.quarantine(f"{base}/modified_id.csv", f"malformed line {line!r}")
            for entry in entries:
                url = f"{base}/{'/'.join(quote(p) for p in entry.ident.split('/'))}.json"
                raw = await self._fetch_record(url, session)
                if raw is None:
                    out.quarantine(entry.ident, "listed in modified_id.csv but not found (HTTP 404)")
                else:
                    out.add(entry.ident, raw)
        return out.batch(_with_state(_advance(cursor, entries), index.state))

    async def _fetch_record(self, url: str, session: aiohttp.ClientSession) -> bytes | None:
        # A missing record is the document's problem (quarantine); anything else is transient and fails
        # the poll (FeedError) so the cursor is not advanced past records we never read.
        settings = self.http.model_copy(update={"max_bytes": min(self.http.max_bytes, _MAX_RECORD_BYTES)})
        result = await fetch(url, state=None, settings=settings, session=session, missing_ok=True)
        return None if result.status in (404, 410) else result.body


def _zip_members(data: bytes, where: str, limit: int) -> list[tuple[str, bytes | FeedError]]:
    # Each member bounded on its own whatever its header says; a zip that is no zip is one bad document.
    try:
        return list(limits.zip_members(data, where=where, member_limit=_MAX_RECORD_BYTES, total_limit=limit))
    except FeedError as exc:
        return [(where, exc)]


def _state(cursor: dict[str, str]) -> FetchState:
    return FetchState(etag=cursor.get("etag"), last_modified=cursor.get("last_modified"))


def _with_state(cursor: dict[str, str], state: FetchState) -> dict[str, str]:
    out = {k: v for k, v in cursor.items() if k not in ("etag", "last_modified")}
    if state.etag:
        out["etag"] = state.etag
    if state.last_modified:
        out["last_modified"] = state.last_modified
    return out


def _advance(cursor: dict[str, str], entries: Iterable[_Entry]) -> dict[str, str]:
    newest = max((e.modified for e in entries), default=None)
    if newest is None:
        return dict(cursor)
    return {**cursor, "modified": newest.isoformat()}
