"""Benchmark: the Approve click's request path, against a bare slack-bolt app in the same run.

Measures, at concurrency 1 and 50:
  * ack: signed block_actions request → HTTP 200 (what Slack waits for; must be well under 3 s), for
    patchwarden's real app and for a bare AsyncApp whose action handler only acks (the baseline);
  * click → card updated: from sending the click until the fake Slack receives the chat.update of that
    change's card, with simulated Slack Web API latency (default 200 ms per call).
Every click approves a different pending change, so each one does the full work (policy check, decision
insert, compare-and-set transition, control-log append, card re-render).

    python bench/request_path.py [--changes 300] [--latency 0.2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import BASE_CONFIG, OWNER, REQ

from bot import app as app_module
from bot import notify
from bot.config import Settings, parse_config
from bot.deps import FakeClock
from bot.runtime import build_deps
from bot.sandbox.driver import SlackDriver
from bot.sandbox.fake_slack import FakeSlack, Message, bound_port
from bot.sandbox.fake_slack import start as start_fake
from bot.workflows import changes as change_flow
from storage import migrate

SECRET = "bench-secret"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{bound_port(site)}/slack/events"


def bare_app(fake_url: str) -> web.Application:
    """A bare slack-bolt app: same client, same signature check, a handler that only acks."""
    client = app_module.create_client(token="xoxb-bench", base_url=fake_url + "/api/")
    bolt = AsyncApp(client=client, signing_secret=SECRET)

    @bolt.action("change_approve")
    async def noop(ack) -> None:  # type: ignore[no-untyped-def]
        await ack()

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    return web_app


async def run_clicks(
    driver: SlackDriver, cards: list[Message], concurrency: int
) -> tuple[list[float], float, dict[str, float]]:
    """Click Approve on each card with ``concurrency`` clicks in flight; returns ack latencies, wall time, send times."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    sent: dict[str, float] = {}

    async def one(card: Message) -> None:
        async with sem:
            sent[card.ts] = time.monotonic()
            t0 = time.perf_counter()
            status, _ = await driver.click(card, "change_approve", user=OWNER)
            latencies.append(time.perf_counter() - t0)
            assert status == 200, status

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in cards))
    return latencies, time.perf_counter() - start, sent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=300, help="clicks per concurrency level")
    parser.add_argument("--latency", type=float, default=0.2, help="simulated Slack Web API latency (s)")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    await asyncio.to_thread(migrate.upgrade, url)
    fake = FakeSlack()
    fake_runner = await start_fake(fake)
    config = parse_config(BASE_CONFIG)
    settings = Settings(PATCHWARDEN_DATABASE_URL=url, SLACK_API_URL=fake.url + "/api/")
    slack_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    client = app_module.create_client(token="xoxb-bench", base_url=settings.slack_api_url, session=slack_http)
    deps = build_deps(settings, config, client=client, clock=FakeClock())
    app_runner, endpoint = await serve(
        app_module.create_web_app(app_module.create_app(deps, signing_secret=SECRET), deps)
    )
    bare_runner, bare_endpoint = await serve(bare_app(fake.url))
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    driver = SlackDriver(endpoint=endpoint, secret=SECRET, fake=fake, http=http)
    bare = SlackDriver(endpoint=bare_endpoint, secret=SECRET, fake=fake, http=http)

    async def make_cards(n: int) -> list[Message]:
        data = change_flow.ChangeInput(systems=["web-shop"], title="Bench change", officer=REQ, rollback_plan="r")
        cards = []
        for _ in range(n):
            async with deps.sessions.begin() as s:
                change = await change_flow.create(s, config=config, data=data, requester=REQ, now=deps.clock.now())
            snap = await notify.post_card(deps, change.id)
            assert snap is not None and snap.change.thread_ts
            cards.append(fake.messages[snap.change.thread_ts])
        return cards

    print(f"request path benchmark: {args.changes} clicks per level, Slack latency {args.latency * 1000:.0f} ms")
    fake.latency = args.latency
    await bare.click((await make_cards(1))[0], "change_approve", user=OWNER)  # warm-up (auth.test, pools)
    print(f"{'ack (signed request → HTTP 200)':34} {'conc':>4} {'ack/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    ratios: dict[int, tuple[float, float]] = {}
    for concurrency in (1, 50):
        cards = await make_cards(args.changes)
        base_lat, base_wall, _ = await run_clicks(bare, cards, concurrency)
        lat, wall, _ = await run_clicks(driver, cards, concurrency)
        for name, lats, w in (
            ("  bare slack-bolt, no-op handler", base_lat, base_wall),
            ("  patchwarden Approve", lat, wall),
        ):
            print(
                f"{name:34} {concurrency:>4} {len(lats) / w:>8.1f} {pct(lats, 50) * 1000:>8.1f} {pct(lats, 99) * 1000:>8.1f}"
            )
        ratios[concurrency] = ((len(lat) / wall) / (len(base_lat) / base_wall), pct(lat, 99) / pct(base_lat, 99))
        await asyncio.sleep(args.latency * 10)  # let the background work of this level drain

    print(f"{'click → card updated (closed loop)':34} {'conc':>4} {'':>8} {'p50 ms':>8} {'p99 ms':>8}")
    card_p99: dict[int, float] = {}
    for concurrency in (1, 50):
        cards = await make_cards(args.changes)
        queue: asyncio.Queue[Message] = asyncio.Queue()
        for c in cards:
            queue.put_nowait(c)
        times: list[float] = []

        async def worker() -> None:
            while not queue.empty():
                card = queue.get_nowait()
                before = len(card.history)
                t0 = time.monotonic()
                status, _ = await driver.click(card, "change_approve", user=OWNER)
                assert status == 200
                while len(card.history) == before:  # chat.update appends the previous version to history
                    if time.monotonic() - t0 > 30:
                        raise AssertionError(f"card {card.ts} never updated")
                    await asyncio.sleep(0.002)
                times.append(time.monotonic() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        card_p99[concurrency] = pct(times, 99)
        print(
            f"{'  patchwarden Approve':34} {concurrency:>4} {'':>8} {pct(times, 50) * 1000:>8.1f} {pct(times, 99) * 1000:>8.1f}"
        )
    fake.latency = 0.0
    for concurrency in (1, 50):
        thr, p99 = ratios[concurrency]
        print(
            f"concurrency {concurrency:>2}: ack throughput {thr:.2f}x bare (target >= 0.5x at 50), "
            f"ack p99 {p99:.2f}x bare (target <= 3x), click→card p99 {card_p99[concurrency] * 1000:.0f} ms "
            f"(target < 1000 ms)"
        )
    await http.close()
    await slack_http.close()
    await app_runner.cleanup()
    await bare_runner.cleanup()
    await fake_runner.cleanup()
    await deps.engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
