"""kill -9 of a real ``patchwarden serve`` mid-apply (issue 14): after a restart the owner is asked within the
heartbeat timeout, the orphaned apply's process group is gone, and nothing is recorded as failed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from bot_process import BotProcess, bot_env, process_gone, write_config
from conftest import OPS1, OWNER, REQ, SECRET
from people import People, until
from sqlalchemy import select

from bot.sandbox.driver import SlackDriver
from bot.sandbox.fake_slack import FakeSlack
from bot.sandbox.fake_slack import start as start_fake
from storage import db, deployments
from storage.models import AuditEntry, ChangeState, DeploymentStatus

HEARTBEAT = 3.0  # policy.heartbeat_timeout of the bot under test (seconds)
APPLY = """#!{python}
import os, sys, time
with open({started!r}, "a") as f:
    f.write(f"{{os.environ['PATCHWARDEN_RUN_ID']}} {{os.getpid()}} {{os.getpgid(0)}}\\n")
time.sleep(120)  # an apply that outlives the bot that started it
with open({started!r}, "a") as f:
    f.write("finished\\n")
"""


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    runner = await start_fake(slack)
    yield slack
    await runner.cleanup()


@pytest.mark.slow
async def test_kill_9_mid_apply_asks_the_owner_and_stops_the_orphan(
    database_url: str, fake: FakeSlack, tmp_path: Path
) -> None:
    started = tmp_path / "started.txt"
    script = tmp_path / "apply.py"
    script.write_text(APPLY.format(python=sys.executable, started=str(started)))
    script.chmod(0o755)
    env = {"executor": "shell", "argv": [str(script)], "timeout": "10m"}
    config = write_config(
        tmp_path,
        systems={"web-shop": {"environments": {"test": env}}},
        policy={"heartbeat_timeout": f"{HEARTBEAT:.0f}s"},
    )
    bot = BotProcess(bot_env(database_url=database_url, config=config, fake=fake, folder=tmp_path), tmp_path)
    engine = db.create_engine(database_url)
    http = aiohttp.ClientSession()
    try:
        people = People(
            fake,
            SlackDriver(endpoint=await bot.start(), secret=SECRET, fake=fake, http=http),
            db.session_factory(engine),
        )
        assert await people.command("request web-shop", user=REQ)
        view = await until(lambda: _first(people.views("change_request")), within=20, what="the request modal")
        form = {
            "title": "Emergency OpenSSL",
            "details": "outage",
            "rollback_plan": "reinstall",
            "change_class": "emergency",
        }
        assert await people.submit(view, form, user=REQ)
        card = await until(lambda: _ready(people.card(1)), within=20, what="the card")
        assert await people.click(card, "change_approve", user=OWNER)
        await until(lambda: _is(people, ChangeState.APPROVED_FOR_TEST), within=20, what="approved for test")
        assert await people.command("deploy CHG-1 test --now outage", user=OPS1)
        line = await until(lambda: _read(started), within=30, what="the apply script to start")
        run_id, pid, pgid = line.split()
        assert pid == pgid  # the shell executor starts its command as the leader of its own process group

        await bot.kill()  # kill -9 while the apply runs
        assert not process_gone(int(pid)), "the orphaned apply should outlive the bot"
        loop = asyncio.get_running_loop()
        people.driver.endpoint = await bot.start()
        restarted = loop.time()
        question = await until(
            lambda: _first([m for m in people.thread(1) if "was interrupted at step" in m.text]),
            within=HEARTBEAT * 4 + 10,
            what="the question to the owner",
        )
        asked_after = loop.time() - restarted
        print(f"\nquestion posted {asked_after:.1f} s after the restart (heartbeat timeout {HEARTBEAT:.0f} s)")
        assert "step *apply*" in question.text and "did it complete?" in question.text
        assert f"<@{OWNER}>" in question.text and "was stopped" in question.text, question.text
        await until(lambda: _true(process_gone(int(pid))), within=10, what="the orphan's process group to go")
        assert "finished" not in started.read_text()
        async with people.sessions.begin() as s:
            [row] = await deployments.for_change(s, 1)
            assert row.run_id == run_id and row.status is DeploymentStatus.INTERRUPTED and row.step == "apply"
            assert row.pgid == int(pgid)
            holder = await deployments.lock_holder(s, "web-shop")
            assert holder is not None and holder.id == row.id
            actions = [a for (a,) in await s.execute(select(AuditEntry.action))]
        assert await people.state(1) is ChangeState.TEST_DEPLOYING
        assert "deployment_interrupted" in actions and "deployment_failed" not in actions
        assert "Deployment of CHG-1 failed" not in " ".join(m.text for m in people.thread(1))

        assert await people.click(question, "interrupted_completed", user=OWNER)  # the owner checked: it did
        await until(lambda: _is(people, ChangeState.TEST_PASSED), within=20, what="test passed")
        async with people.sessions.begin() as s:
            [row] = await deployments.for_change(s, 1)
            assert row.status is DeploymentStatus.SUCCEEDED
            assert await deployments.lock_holder(s, "web-shop") is None
    finally:
        await bot.stop()
        await http.close()
        await engine.dispose()


async def _first(items: list[object]) -> object | None:
    return items[0] if items else None


async def _ready(card: object | None) -> object | None:
    return card


async def _true(value: bool) -> bool | None:
    return True if value else None


def _first_line(path: Path) -> str | None:
    text = path.read_text() if path.exists() else ""
    return text.splitlines()[0] if text.strip() else None


async def _read(path: Path) -> str | None:
    return await asyncio.to_thread(_first_line, path)


async def _is(people: People, state: ChangeState) -> bool | None:
    return True if await people.state(1) is state else None
