"""Shared helpers for the deployment tests: a recording deploy script and the steps up to a booked window."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import OPS1, OWNER, Harness, eventually

from bot.sandbox.fake_slack import Message
from bot.windows import Slot
from bot.workflows import scheduling
from storage import changes
from storage.models import ChangeState

SCRIPT = """#!{python}
# Records exactly what it was started with: argv and the environment as exec() received it.
import json, sys
env = [e.decode() for e in open("/proc/self/environ", "rb").read().split(b"\\0") if e]
with open({record!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "env": env}}) + "\\n")
step = sys.argv[1]
for i in range({lines}):
    print(f"{{step}} line {{i}}")
try:
    failing = open({control!r}).read().split()
except FileNotFoundError:
    failing = []
sys.exit(3 if f"{{step}}-{{sys.argv[2]}}" in failing else 0)
"""


class Script:
    """A deploy script in ``tmp_path`` that records its argv and environment; ``fail('verify-prod')``."""

    def __init__(self, tmp_path: Path, *, lines: int = 3) -> None:
        self.path = tmp_path / "deploy.py"
        self.record = tmp_path / "record.jsonl"
        self.control = tmp_path / "failing.txt"
        self.path.write_text(
            SCRIPT.format(python=sys.executable, record=str(self.record), control=str(self.control), lines=lines)
        )
        self.path.chmod(0o755)

    def fail(self, *steps: str) -> None:
        self.control.write_text(" ".join(steps))

    def calls(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def environment(self, stage: str) -> dict[str, Any]:
        script = str(self.path)
        return {
            "executor": "shell",
            "argv": [script, "apply", stage],
            "verify": {"argv": [script, "verify", stage]},
            "rollback": {"argv": [script, "rollback", stage]},
            "timeout": "1m",
        }


async def state_of(h: Harness, change_id: int = 1) -> ChangeState:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, change_id)
        assert change is not None
        return change.state


async def wait_state(h: Harness, state: ChangeState, change_id: int = 1, within: float = 10.0) -> None:
    """Poll the database until the change reaches ``state``."""
    seen: list[ChangeState] = []

    async def check() -> bool:
        seen.append(await state_of(h, change_id))
        return seen[-1] is state

    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"CHG-{change_id} stayed {seen[-1]}, expected {state}")
        await asyncio.sleep(0.02)


async def book(
    h: Harness, *, change_id: int = 1, stage: str, start_in: timedelta, length: timedelta = timedelta(hours=1)
) -> None:
    """Book the stage's window through the scheduling workflow (as an operator)."""
    now = h.clock.now().replace(second=0, microsecond=0)
    slot = Slot(now + start_in, now + start_in + length)
    async with h.deps.sessions.begin() as s:
        await scheduling.book(
            s, config=h.config, change_id=change_id, stage=stage, slot=slot, user=OPS1, now=h.clock.now()
        )


async def approved_for_test(h: Harness, **values: Any) -> Message:
    """Request a change and let the owner approve its test stage; returns the card."""
    card = await h.request_change(**values)
    await h.slack.approve(card, user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    return card


def thread_texts(h: Harness, card: Message) -> list[str]:
    return [m.text for m in h.thread(card)]


async def in_thread(h: Harness, card: Message, needle: str, *, what: str = "") -> Message:
    """The first thread message containing ``needle`` (waits for it)."""
    found: Message = await eventually(
        lambda: next((m for m in h.thread(card) if needle in m.text or needle in json.dumps(m.blocks)), None),
        what=what or needle,
    )
    return found
