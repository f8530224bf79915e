"""Issue 14: GET /metrics (Prometheus), the control log streamed to a SIEM (NDJSON over HTTP, RFC 5424
syslog over UDP) with each signed checkpoint, heads published to the witness file and the audit channel, and
`audit verify --against channel`; and the access log without the calendar token (item 8)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from click.testing import CliRunner
from conftest import BASE_CONFIG, TOKEN, Harness, eventually, make_config
from prometheus_client.parser import text_string_to_metric_families

from bot import app as app_module
from bot.__main__ import cli
from bot.workflows import audit_publish, lifecycle
from storage import outbox


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_in_prometheus_format(harness: Harness) -> None:
    h = harness
    now = h.clock.now()
    async with h.deps.sessions.begin() as s:
        for i in range(3):
            await outbox.enqueue(s, key=f"k{i}", channel="C0SHOPUSERS", text="hello", now=now - timedelta(minutes=i))
    client = app_module.create_client(token=TOKEN, base_url=h.fake.url + "/api/", metrics=h.deps.metrics)
    h.fake.fail("chat.postMessage", status=429, retry_after=0, times=1)
    h.fake.fail("conversations.info", error="channel_not_found", times=1)
    await client.chat_postMessage(channel="C0SHOPUSERS", text="after one 429")
    with pytest.raises(Exception, match="channel_not_found"):
        await client.conversations_info(channel="C0NOPE")
    url = h.endpoint.replace("/slack/events", "/metrics")
    async with h.http.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        samples = _samples(await resp.text())
    assert samples[("patchwarden_outbox_depth", ())] == 3
    assert 119 <= samples[("patchwarden_outbox_oldest_age_seconds", ())] < 200
    assert samples[("patchwarden_slack_rate_limited_total", (("method", "chat.postMessage"),))] == 1
    assert samples[("patchwarden_slack_errors_total", (("method", "conversations.info"),))] == 1
    for name in ("windows_due", "windows_booked", "deployments_running", "sla_breaches"):
        assert samples[(f"patchwarden_{name}", ())] == 0


async def _log(h: Harness, n: int) -> None:
    for i in range(n):
        async with h.deps.sessions.begin() as s:
            await lifecycle.log(s, config=h.config, now=h.clock.now(), actor=f"U{i}", action="test", note=i)


async def _receiver() -> tuple[web.AppRunner, str, list[dict[str, Any]], list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []
    witnessed: list[dict[str, Any]] = []

    def taker(into: list[dict[str, Any]]) -> Any:
        async def take(request: web.Request) -> web.Response:
            assert request.content_type == "application/x-ndjson"
            into.extend(json.loads(line) for line in (await request.text()).splitlines() if line)
            return web.Response(status=204)

        return take

    app = web.Application()
    app.router.add_post("/siem", taker(got))
    app.router.add_post("/witness", taker(witnessed))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/siem", got, witnessed


async def test_log_streamed_as_ndjson_and_heads_published(
    harness_factory: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, url, got, witnessed = await _receiver()
    witness = tmp_path / "witness.jsonl"
    audit_cfg = {
        "checkpoint_every": 3,
        "witness_file": str(witness),
        "witness_url": url.replace("/siem", "/witness"),
        "stream": {"url": url},
    }
    h: Harness = await harness_factory(make_config(audit=audit_cfg, slack={"audit_channel": "C0AUDIT"}))
    try:
        await _log(h, 7)  # checkpoints at 3 and 6, signed in the transactions
        assert await audit_publish.run_publish(h.deps) == 7 + 2
        entries = [r for r in got if r["type"] == "entry"]
        heads = [r for r in got if r["type"] == "checkpoint"]
        assert [e["seq"] for e in entries] == list(range(1, 8)) and entries[0]["record"]["actor"] == "U0"
        assert [c["seq"] for c in heads] == [3, 6] and all(c["signature"] for c in heads)
        assert [json.loads(line)["seq"] for line in witness.read_text().splitlines()] == [3, 6]
        assert witnessed == heads  # the witness URL got the same signed heads
        posted = h.fake.channel_messages("C0AUDIT")
        assert [m.metadata["event_payload"]["seq"] for m in posted if m.metadata] == [3, 6]
        assert await audit_publish.run_publish(h.deps) == 0  # nothing twice
        await _log(h, 1)
        assert await audit_publish.run_publish(h.deps) == 1 and got[-1]["seq"] == 8
    finally:
        await runner.cleanup()
    # the audit channel is a witness the database writer cannot reach: verify against it
    cfg = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    cfg["slack"]["audit_channel"] = "C0AUDIT"
    cfg["audit"] = {"checkpoint_every": 3}
    (tmp_path / "pw.yaml").write_text(yaml.safe_dump(cfg))
    assert h.deps.signer is not None
    for key, value in {
        "PATCHWARDEN_DATABASE_URL": database_url,
        "PATCHWARDEN_CONFIG": str(tmp_path / "pw.yaml"),
        "PATCHWARDEN_AUDIT_KEY": h.deps.signer.private_base64(),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": h.fake.url + "/api/",
    }.items():
        monkeypatch.setenv(key, value)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["audit", "verify", "--against", "channel"])
    assert result.exit_code == 0 and "2 published head(s) matched" in result.output, result.output
    for m in h.fake.channel_messages("C0AUDIT"):  # a forged post (wrong signature) in the channel is caught
        if m.metadata:
            m.metadata["event_payload"]["signature"] = m.metadata["event_payload"]["signature"][::-1]
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["audit", "verify", "--against", "channel"])
    assert result.exit_code == 1 and "head in the audit channel at entry 3" in result.output, result.output


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.got.append(data)


RFC5424 = re.compile(
    r"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) patchwarden (\d+) audit - (\{.*\})$"
)


async def test_log_streamed_to_rfc5424_syslog(harness_factory: Any) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        h: Harness = await harness_factory(
            make_config(audit={"checkpoint_every": 2, "stream": {"syslog": f"127.0.0.1:{port}"}})
        )
        await _log(h, 2)
        assert await audit_publish.run_publish(h.deps) == 3
        await eventually(lambda: len(proto.got) >= 3, what="3 syslog datagrams")
    finally:
        transport.close()
    parsed = [RFC5424.match(d.decode()) for d in proto.got]
    assert all(parsed), proto.got
    pri = int(parsed[0].group(1))  # type: ignore[union-attr]
    assert pri == 4 * 8 + 6  # facility auth, severity informational
    records = [json.loads(m.group(5)) for m in parsed if m]
    assert [(r["type"], r["seq"]) for r in records] == [("entry", 1), ("entry", 2), ("checkpoint", 2)]


async def test_access_log_keeps_requests_but_not_the_calendar_token(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    bolt = app_module.create_app(h.deps, signing_secret="x")
    runner = app_module.create_runner(app_module.create_web_app(bolt, h.deps))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with h.http.get(f"http://127.0.0.1:{port}/calendar.ics?token=s3cret-calendar-token") as resp:
                await resp.read()
            await eventually(lambda: any("/calendar.ics" in r.getMessage() for r in caplog.records), what="log")
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /calendar.ics?[redacted] HTTP/1.1"' in line for line in lines), lines
    assert not any("s3cret" in r.getMessage() for r in caplog.records)
