"""The one outbound HTTP fetcher of the feeds: conditional GET, retries with backoff, proxy and CA bundle.

Every feed fetches through :func:`fetch` so that proxy settings (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``
from the environment, an explicit ``proxy``), a corporate CA bundle and the retry policy hold for every
connection. The caller owns the conditional-GET state (:class:`FetchState`) and persists it between polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from bot import outbound
from bot.errors import ConfigError, FeedError, OutboundRefusedError

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpSettings(BaseModel):
    """How feeds reach the network. ``proxy`` overrides the environment's proxy (NO_PROXY still applies)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy: str | None = None
    ca_bundle: Path | None = None
    timeout: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff: float = Field(default=1.0, ge=0)  # first retry delay in seconds; doubled per attempt
    max_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    user_agent: str = "patchwarden (+https://github.com/patchwarden)"
    # the outbound-URL policy's allow list (bot.outbound); None: no address check (direct plugin use, tests)
    outbound_allow: tuple[str, ...] | None = None


class FetchState(BaseModel):
    """Validators of the last 200 response, sent back as If-None-Match / If-Modified-Since."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    etag: str | None = None
    last_modified: str | None = None


class FetchResult(BaseModel):
    """A response: ``not_modified`` is True on 304 (then ``body`` is empty and ``state`` is the old one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    status: int
    not_modified: bool = False
    body: bytes = b""
    state: FetchState = FetchState()


def ssl_context(settings: HttpSettings) -> ssl.SSLContext | bool:
    """The TLS context: the system trust store, or the configured CA bundle (corporate TLS interception)."""
    if settings.ca_bundle is None:
        return True
    if not settings.ca_bundle.is_file():
        raise FeedError(f"ca_bundle {settings.ca_bundle} does not exist")
    return ssl.create_default_context(cafile=str(settings.ca_bundle))


@contextlib.asynccontextmanager
async def open_session(settings: HttpSettings) -> AsyncIterator[aiohttp.ClientSession]:
    """A proxy-aware session: ``trust_env=True`` makes aiohttp read HTTP(S)_PROXY and NO_PROXY."""
    if settings.outbound_allow is not None:  # internal addresses refused at connect time unless allow-listed
        connector = outbound.connector(outbound.OutboundPolicy(settings.outbound_allow), ssl=ssl_context(settings))
    else:
        connector = aiohttp.TCPConnector(ssl=ssl_context(settings))
    timeout = aiohttp.ClientTimeout(total=settings.timeout)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=True,
        headers={"User-Agent": settings.user_agent},
    ) as session:
        yield session


def _explicit_proxy(url: str, settings: HttpSettings) -> str | None:
    # An explicit proxy is passed per request; NO_PROXY hosts still go direct, as with the environment.
    if settings.proxy is None:
        return None
    host = urlsplit(url).hostname or ""
    return None if urllib.request.proxy_bypass(host) else settings.proxy


async def fetch(
    url: str,
    *,
    state: FetchState | None,
    settings: HttpSettings,
    session: aiohttp.ClientSession | None = None,
    missing_ok: bool = False,
) -> FetchResult:
    """GET ``url`` conditionally; retry 429/5xx and connection errors with exponential backoff.

    A 304 returns ``not_modified=True``. Any other non-2xx status, or failure after the last retry, raises
    ``FeedError`` (its message names the URL and status, never credentials), except 404/410 when
    ``missing_ok`` (then ``status`` tells and ``body`` is empty). Pass ``session`` to reuse connections
    across many fetches; otherwise a session is opened for this one call.
    """
    if session is None:
        async with open_session(settings) as own:
            return await fetch(url, state=state, settings=settings, session=own, missing_ok=missing_ok)
    headers: dict[str, str] = {}
    if state is not None and state.etag:
        headers["If-None-Match"] = state.etag
    if state is not None and state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    safe_url = _redact(url)
    for attempt in range(settings.retries + 1):
        delay = settings.backoff * (2**attempt)
        try:
            # redirects stay within the origin (bot.outbound); another origin is refused
            async with await outbound.get(session, url, headers=headers, proxy=_explicit_proxy(url, settings)) as resp:
                if resp.status == 304:
                    return FetchResult(url=url, status=304, not_modified=True, state=state or FetchState())
                if missing_ok and resp.status in (404, 410):
                    return FetchResult(url=url, status=resp.status)
                if resp.status in _RETRY_STATUSES and attempt < settings.retries:
                    log.warning("GET %s: HTTP %s, retry in %.1fs", safe_url, resp.status, delay)
                    await asyncio.sleep(delay)
                    continue
                if not 200 <= resp.status < 300:
                    raise FeedError(f"GET {safe_url}: HTTP {resp.status}")
                body = await _read_limited(resp, settings.max_bytes, safe_url)
                new_state = FetchState(etag=resp.headers.get("ETag"), last_modified=resp.headers.get("Last-Modified"))
                return FetchResult(url=url, status=resp.status, body=body, state=new_state)
        except OutboundRefusedError as exc:
            raise FeedError(str(exc)) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            if attempt >= settings.retries:
                raise FeedError(f"GET {safe_url}: {type(exc).__name__} after {attempt + 1} attempt(s)") from exc
            log.warning("GET %s: %s, retry in %.1fs", safe_url, type(exc).__name__, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


async def _read_limited(resp: aiohttp.ClientResponse, limit: int, safe_url: str) -> bytes:
    # A hostile or broken server must not make us buffer unbounded data.
    if resp.content_length is not None and resp.content_length > limit:
        raise FeedError(f"GET {safe_url}: {resp.content_length} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise FeedError(f"GET {safe_url}: body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _redact(url: str) -> str:
    # URLs may carry basic-auth credentials or tokens in the query; logs and errors get neither.
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def is_http_url(source: str) -> bool:
    """True for ``http://`` and ``https://`` sources (everything else is a local path)."""
    return urlsplit(source).scheme in ("http", "https")


def check_source(src: str, *, key_path: str) -> None:
    """A single-document feed's ``source`` must be an http(s) URL or an existing file; ConfigError otherwise."""
    if not is_http_url(src) and not Path(src).is_file():
        raise ConfigError(f"{key_path}.source: {src} is neither an http(s) URL nor an existing file")


async def read_source(
    src: str, *, cursor: dict[str, str], settings: HttpSettings
) -> tuple[bytes | None, dict[str, str]]:
    """Read a single-document feed (URL with conditional GET, or a file by content digest).

    Returns ``(None, cursor)`` when nothing changed since ``cursor``, else the body and the new cursor."""
    if is_http_url(src):
        state = FetchState(etag=cursor.get("etag"), last_modified=cursor.get("last_modified"))
        result = await fetch(src, state=state, settings=settings)
        if result.not_modified:
            return None, cursor
        fresh = {k: v for k, v in (("etag", result.state.etag), ("last_modified", result.state.last_modified)) if v}
        return result.body, fresh
    raw = await asyncio.to_thread(Path(src).read_bytes)
    digest = {"digest": hashlib.sha256(raw).hexdigest()}
    return (None, digest) if cursor.get("digest") == digest["digest"] else (raw, digest)
