"""Shared helpers of the close-the-loop tests: a swappable artifact server and the path to production."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from conftest import OWNER, SEC1, SHARED_DATA, Harness
from deploy_support import approved_for_test, book, in_thread, wait_state

from bot import jobs
from bot.sandbox.fake_slack import Message
from storage.models import ChangeState

SIGNING = SHARED_DATA / "signing"
BUNDLE = SIGNING / "patch-bundle-CHG-12.tar.gz"
TAMPERED = SIGNING / "patch-bundle-CHG-12.tampered.tar.gz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Served:
    """Files served on loopback from a folder the test may change (``replace``)."""

    def __init__(self, root: Path, base: str) -> None:
        self.root, self.base = root, base

    def url(self, name: str) -> str:
        return f"{self.base}/files/{name}"

    def replace(self, name: str, source: Path) -> None:
        shutil.copyfile(source, self.root / name)


@pytest.fixture(name="served")
async def served_fixture(tmp_path: Path) -> AsyncIterator[Served]:
    """The artifact bundle (and what the test adds) on loopback."""
    root = tmp_path / "served"
    root.mkdir()
    shutil.copyfile(BUNDLE, root / BUNDLE.name)

    async def files(request: web.Request) -> web.StreamResponse:
        path = root / request.match_info["name"]
        return web.FileResponse(path) if path.is_file() else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/files/{name}", files)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Served(root, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


async def sweep(h: Harness) -> None:
    """Run the due-window sweep as the scheduler would, and wait for the runs it started."""
    tasks = await jobs.run_due_windows(h.deps)
    if tasks:
        await asyncio.gather(*tasks)


async def through_test(h: Harness, *, card: Message | None = None) -> Message:
    """Approve and deploy the test stage, record it passed, acknowledge, approve prod; returns the card."""
    if card is None:
        card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    await wait_state(h, ChangeState.TEST_SCHEDULED)
    h.clock.advance(timedelta(minutes=11))
    await sweep(h)
    await wait_state(h, ChangeState.TEST_PASSED)
    prompt = await in_thread(h, card, "test_passed", what="Passed / Problems buttons")
    await h.slack.click(prompt, "test_passed", user=OWNER)
    ack = await in_thread(h, card, "test_acknowledge", what="Acknowledge button")
    await h.slack.click(ack, "test_acknowledge", user=OWNER)
    await wait_state(h, ChangeState.PENDING_PROD_APPROVAL)
    await in_thread(h, card, "Approval needed for the *prod* stage", what="prod approvers mentioned")
    await h.slack.approve(h.latest(card), user=OWNER)
    await h.slack.approve(h.latest(card), user=SEC1)
    await wait_state(h, ChangeState.APPROVED_FOR_PROD)
    return card


async def deploy_prod(h: Harness) -> None:
    """Book production 25h ahead and run it when due."""
    await book(h, stage="prod", start_in=timedelta(hours=25))
    h.clock.advance(timedelta(hours=25, minutes=1))
    await sweep(h)
