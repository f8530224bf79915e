"""Benchmark: the Approve click's request path, against a bare slack-bolt app in the same run.

Measures, at concurrency 1 and 50:
  * ack: signed block_actions request → HTTP 200 (what Slack waits for), for patchwarden's real app and for a
    bare AsyncApp whose action handler only acks (the baseline), both served the same way;
  * click → card updated: from sending the click (which opens the approve confirmation) and at once its
    submission until the fake Slack has applied the chat.update of that change's card, with simulated Slack
    Web API latency (default 200 ms per call), closed loop.
Every click approves a different pending change, so each one does the full work (policy check, decision
insert, compare-and-set transition, control-log append, card re-render, thread note, Home refresh).

The fake Slack runs in a process of its own, as Slack would be remote: its CPU must not be billed to the bot.

    python bench/request_path.py [--changes 200] [--latency 0.2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import BASE_CONFIG, OWNER, REQ

from bot import app as app_module
from bot.blocks import card as card_blocks
from bot.config import Settings, parse_config
from bot.deps import FakeClock, build_deps
from bot.sandbox.driver import SlackDriver
from bot.sandbox.fake_slack import FakeSlack, Message, bound_port
from bot.sandbox.fake_slack import start as start_fake
from bot.workflows import cards as card_flow
from bot.workflows import changes as change_flow
from storage import migrate

SECRET = "bench-secret"
DEBUG = False


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ---- the fake Slack, in its own process ----------------------------------------------------------------


class ReportingFake(FakeSlack):
    """Reports (ts, wall time) of every applied chat.update; latency read from shared memory per call."""

    def __init__(self, latency: Any, events: Any) -> None:
        super().__init__()
        self._shared_latency, self._events = latency, events

    async def _api(self, request: web.Request) -> web.Response:
        self.latency = self._shared_latency.value
        self._arrived = time.time()
        return await super()._api(request)

    async def _chat_update(self, p: dict[str, Any]) -> web.Response:
        resp = await super()._chat_update(p)
        self._events.put((p.get("ts"), time.time()))
        if DEBUG:
            print("update", p.get("ts"), "arrived", round((time.time() - self._arrived) * 1000), flush=True)
        return resp


def run_fake(port_q: Any, latency: Any, events: Any) -> None:
    async def main() -> None:
        fake = ReportingFake(latency, events)
        await start_fake(fake)
        port_q.put(fake.url)
        await asyncio.Event().wait()

    asyncio.run(main())


# ---- the apps ------------------------------------------------------------------------------------------


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{bound_port(site)}/slack/events"


def bare_app(fake_url: str, session: aiohttp.ClientSession) -> web.Application:
    """A bare slack-bolt app: same client, same signature check, a handler that only acks."""
    client = app_module.create_client(token="xoxb-bench", base_url=fake_url + "/api/", session=session)
    bolt = AsyncApp(client=client, signing_secret=SECRET)

    @bolt.action("change_approve")
    async def noop(ack: Any) -> None:
        await ack()

    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    return web_app


def confirmation(card: Message) -> dict[str, Any]:
    """The submission of the approve confirmation the click opened (the fake runs elsewhere: built here)."""
    value = next(e["value"] for b in card.blocks for e in b.get("elements", []) if e["action_id"] == "change_approve")
    meta = json.dumps({"value": value, "channel": card.channel})
    view = {"id": f"VB{card.ts}", "type": "modal", "callback_id": "change_approve_confirm", "private_metadata": meta}
    return {"type": "view_submission", "user": {"id": OWNER}, "view": {**view, "state": {"values": {}}}}


async def ack_level(driver: SlackDriver, cards: list[Message], concurrency: int) -> tuple[list[float], float]:
    """Click Approve on each card, ``concurrency`` in flight, waiting only for the ack."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(card: Message) -> None:
        async with sem:
            t0 = time.perf_counter()
            status, _ = await driver.click(card, "change_approve", user=OWNER)
            latencies.append(time.perf_counter() - t0)
            assert status == 200, status

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in cards))
    return latencies, time.perf_counter() - start


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=200, help="clicks per concurrency level")
    parser.add_argument("--latency", type=float, default=0.2, help="simulated Slack Web API latency (s)")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--profile", default=None, help="write a cProfile of the measured phases to this file")
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.profile else None

    ctx = mp.get_context("spawn")
    port_q, events_q = ctx.Queue(), ctx.Queue()
    latency = ctx.Value("d", 0.0)
    fake_proc = ctx.Process(target=run_fake, args=(port_q, latency, events_q), daemon=True)
    fake_proc.start()
    fake_url = port_q.get(timeout=30)

    loop = asyncio.get_running_loop()
    updated: dict[str, asyncio.Future[float]] = {}

    def pump() -> None:  # chat.update reports from the fake's process → futures in this loop
        while True:
            ts, at = events_q.get()
            if ts is None:
                return

            def resolve(ts: str = ts, at: float = at) -> None:
                fut = updated.get(ts)
                if fut is not None and not fut.done():
                    fut.set_result(at)

            loop.call_soon_threadsafe(resolve)

    threading.Thread(target=pump, daemon=True).start()

    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite+aiosqlite:///{tmp.name}/bench.db"
    await asyncio.to_thread(migrate.upgrade, url)
    config = parse_config(BASE_CONFIG)
    settings = Settings(PATCHWARDEN_DATABASE_URL=url, SLACK_API_URL=fake_url + "/api/")
    slack_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    client = app_module.create_client(token="xoxb-bench", base_url=settings.slack_api_url, session=slack_http)
    deps = build_deps(settings, config, client=client, clock=FakeClock())
    app_runner, endpoint = await serve(
        app_module.create_web_app(app_module.create_app(deps, signing_secret=SECRET), deps)
    )
    bare_runner, bare_endpoint = await serve(bare_app(fake_url, slack_http))
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    stub = FakeSlack()  # only for the driver's response_url field; never served
    stub.url = fake_url
    driver = SlackDriver(endpoint=endpoint, secret=SECRET, fake=stub, http=http)
    bare = SlackDriver(endpoint=bare_endpoint, secret=SECRET, fake=stub, http=http)

    async def make_cards(n: int) -> list[Message]:
        """Post ``n`` pending changes' cards (set-up: no simulated latency)."""
        saved, latency.value = latency.value, 0.0
        data = change_flow.ChangeInput(systems=["web-shop"], title="Bench change", officer=REQ, rollback_plan="r")
        posted = []
        for _ in range(n):
            async with deps.sessions.begin() as s:
                change = await change_flow.create(s, config=config, data=data, requester=REQ, now=deps.clock.now())
            snap = await card_flow.post_card(deps, change.id)
            assert snap is not None and snap.change.thread_ts and snap.change.channel
            posted.append(Message(snap.change.channel, snap.change.thread_ts, "", card_blocks.card(snap), None))
        await deps.plans.flush()
        await deps.homes.flush()
        latency.value = saved
        return posted

    print(
        f"request path benchmark: {args.changes} clicks per level, Slack latency {args.latency * 1000:.0f} ms, "
        "fake Slack in its own process"
    )
    warm = await make_cards(50)  # warm-up of both apps at full concurrency (auth.test, connection pools)
    latency.value = args.latency
    await ack_level(bare, warm, 50)
    await ack_level(driver, warm, 50)
    await asyncio.sleep(args.latency * 20)
    await deps.homes.flush()
    if profiler is not None:
        profiler.enable()
    print(f"{'ack (signed request → HTTP 200)':34} {'conc':>4} {'ack/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    ratios: dict[int, tuple[float, float]] = {}
    for concurrency in (1, 50):
        # ABBA order (bare, patchwarden, patchwarden, bare) so neither side profits from running first or last
        cards_a, cards_b = await make_cards(args.changes), await make_cards(args.changes)
        bare1 = await ack_level(bare, cards_a, concurrency)
        pw1 = await ack_level(driver, cards_a, concurrency)
        pw2 = await ack_level(driver, cards_b, concurrency)
        bare2 = await ack_level(bare, cards_b, concurrency)
        base_lat, base_wall = bare1[0] + bare2[0], bare1[1] + bare2[1]
        lat, wall = pw1[0] + pw2[0], pw1[1] + pw2[1]
        rows = (("  bare slack-bolt, no-op handler", base_lat, base_wall), ("  patchwarden Approve", lat, wall))
        for name, lats, w in rows:
            print(
                f"{name:34} {concurrency:>4} {len(lats) / w:>8.1f} {pct(lats, 50) * 1000:>8.1f} "
                f"{pct(lats, 99) * 1000:>8.1f}"
            )
        ratios[concurrency] = ((len(lat) / wall) / (len(base_lat) / base_wall), pct(lat, 99) / pct(base_lat, 99))
        await asyncio.sleep(args.latency * 20)  # let this level's background work drain
        await deps.homes.flush()

    print(f"{'click → card updated (closed loop)':34} {'conc':>4} {'':>8} {'p50 ms':>8} {'p99 ms':>8}")
    card_p99: dict[int, float] = {}
    for concurrency in (1, 50):
        cards = await make_cards(args.changes)
        pending = list(cards)
        times: list[float] = []

        async def worker(pending: list[Message] = pending, times: list[float] = times) -> None:
            while pending:
                card = pending.pop()
                fut = updated[card.ts] = loop.create_future()
                t0 = time.time()
                status, _ = await driver.click(card, "change_approve", user=OWNER)
                assert status == 200
                status, _ = await driver.interaction(confirmation(card))
                assert status == 200
                times.append(await asyncio.wait_for(fut, 60) - t0)
                if DEBUG:
                    print("click", card.ts, "sent", round(t0 % 100, 3), "card", round(times[-1] * 1000), flush=True)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        card_p99[concurrency] = pct(times, 99)
        print(
            f"{'  patchwarden Approve':34} {concurrency:>4} {'':>8} {pct(times, 50) * 1000:>8.1f} "
            f"{pct(times, 99) * 1000:>8.1f}"
        )
        await asyncio.sleep(args.latency * 20)
        await deps.homes.flush()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    for concurrency in (1, 50):
        thr, p99 = ratios[concurrency]
        print(
            f"concurrency {concurrency:>2}: ack throughput {thr:.2f}x bare (target >= 0.5x at 50), "
            f"ack p99 {p99:.2f}x bare (target <= 3x at 50), click→card p99 {card_p99[concurrency] * 1000:.0f} ms "
            "(target < 1000 ms)"
        )
    events_q.put((None, 0.0))
    await http.close()
    await app_runner.cleanup()
    await bare_runner.cleanup()
    await deps.engine.dispose()
    await slack_http.close()
    fake_proc.terminate()
    tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
