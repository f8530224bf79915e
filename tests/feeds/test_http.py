"""The feed fetcher: conditional GET, retries with backoff, proxies from the environment or options."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.errors import FeedError
from bot.feeds.http import FetchState, HttpSettings, fetch
from tests.feeds.conftest import Loopback

FAST = HttpSettings(retries=3, backoff=0, timeout=5)


class ForwardProxy:
    """A minimal HTTP forward proxy: takes absolute-URI GETs, records them, forwards them."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(str(request.url))
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("if-none-match", "user-agent")}
        async with aiohttp.ClientSession() as session, session.get(request.url, headers=headers) as resp:
            body = await resp.read()
            out = {"ETag": resp.headers["ETag"]} if "ETag" in resp.headers else {}
            return web.Response(status=resp.status, body=body, headers=out)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    fwd = ForwardProxy()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fwd.handle)
    fwd.server = TestServer(app, host="127.0.0.1")
    await fwd.server.start_server()
    yield fwd
    await fwd.server.close()


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_conditional_get_returns_not_modified(loopback: Loopback) -> None:
    loopback.files["/feed.json"] = b"{}"
    first = await fetch(loopback.url("/feed.json"), state=None, settings=FAST)
    assert first.body == b"{}" and first.state.etag
    second = await fetch(loopback.url("/feed.json"), state=first.state, settings=FAST)
    assert second.not_modified and second.body == b"" and second.state == first.state
    assert loopback.hits("/feed.json")[1]["If-None-Match"] == first.state.etag


async def test_last_modified_is_sent_back(loopback: Loopback) -> None:
    loopback.files["/x"] = b"x"
    state = FetchState(last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
    await fetch(loopback.url("/x"), state=state, settings=FAST)
    assert loopback.hits("/x")[0]["If-Modified-Since"] == "Wed, 21 Oct 2015 07:28:00 GMT"


async def test_retries_503_twice_then_succeeds(loopback: Loopback) -> None:
    loopback.files["/flaky"] = b"ok"
    loopback.fail["/flaky"] = [503, 503]
    result = await fetch(loopback.url("/flaky"), state=None, settings=FAST)
    assert result.body == b"ok" and len(loopback.hits("/flaky")) == 3


async def test_gives_up_after_the_last_retry(loopback: Loopback) -> None:
    loopback.fail["/down"] = [503] * 10
    with pytest.raises(FeedError, match="HTTP 503"):
        await fetch(loopback.url("/down"), state=None, settings=HttpSettings(retries=2, backoff=0))
    assert len(loopback.hits("/down")) == 3


async def test_client_errors_are_not_retried(loopback: Loopback) -> None:
    with pytest.raises(FeedError, match="HTTP 404"):
        await fetch(loopback.url("/missing"), state=None, settings=FAST)
    assert len(loopback.hits("/missing")) == 1
    missing = await fetch(loopback.url("/missing"), state=None, settings=FAST, missing_ok=True)
    assert missing.status == 404


async def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FeedError, match="after 3 attempt"):
        await fetch(f"http://127.0.0.1:{port}/x", state=None, settings=HttpSettings(retries=2, backoff=0))


async def test_body_size_limit(loopback: Loopback) -> None:
    loopback.files["/big"] = b"x" * 5000
    with pytest.raises(FeedError, match="limit"):
        await fetch(loopback.url("/big"), state=None, settings=HttpSettings(max_bytes=1000))


async def test_credentials_never_in_error_messages(loopback: Loopback) -> None:
    url = loopback.url("/nope").replace("http://", "http://user:s3cret@") + "?token=s3cret"
    with pytest.raises(FeedError) as err:
        await fetch(url, state=None, settings=FAST)
    assert "s3cret" not in str(err.value)


async def test_missing_ca_bundle_is_an_error(tmp_path: Path, loopback: Loopback) -> None:
    with pytest.raises(FeedError, match="ca_bundle"):
        await fetch(loopback.url("/x"), state=None, settings=HttpSettings(ca_bundle=tmp_path / "none.pem"))


async def test_http_proxy_from_environment(
    loopback: Loopback, proxy: ForwardProxy, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    loopback.files["/via"] = b"proxied"
    clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
    result = await fetch(loopback.url("/via"), state=None, settings=FAST)
    assert result.body == b"proxied"
    assert proxy.seen == [loopback.url("/via")]


async def test_no_proxy_is_respected(
    loopback: Loopback, proxy: ForwardProxy, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    loopback.files["/direct"] = b"direct"
    clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    result = await fetch(loopback.url("/direct"), state=None, settings=FAST)
    assert result.body == b"direct" and proxy.seen == []
    assert len(loopback.hits("/direct")) == 1
    # An explicit proxy option also leaves NO_PROXY hosts alone.
    await fetch(loopback.url("/direct"), state=None, settings=FAST.model_copy(update={"proxy": proxy.url}))
    assert proxy.seen == []


async def test_explicit_proxy_option(
    loopback: Loopback, proxy: ForwardProxy, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    loopback.files["/opt"] = b"opt"
    result = await fetch(loopback.url("/opt"), state=None, settings=FAST.model_copy(update={"proxy": proxy.url}))
    assert result.body == b"opt" and proxy.seen == [loopback.url("/opt")]
