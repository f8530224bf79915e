"""``/patch list`` and ``changes list`` reach every change: pages that say how many, no silent cap."""

from __future__ import annotations

import re

from conftest import REQ, Harness
from test_scheduling import command

from storage import changes
from storage.models import Change, ChangeClass, ChangeState

MANY = 75  # more than two pages of 30


async def seed(h: Harness, n: int) -> None:
    now = h.deps.clock.now()
    async with h.deps.sessions.begin() as session:
        for i in range(n):
            state = ChangeState.COMPLETED if i % 5 == 0 else ChangeState.PENDING_TEST_APPROVAL
            await changes.add(
                session,
                Change(
                    state=state, systems=["web-shop"], title=f"Change number {i + 1}", change_class=ChangeClass.NORMAL,
                    requester=REQ, last_editor=REQ, officer=REQ, content_hash="0" * 64, policy_version=1,
                    created_at=now, updated_at=now,
                ),
            )  # fmt: skip


async def test_every_change_is_on_some_page_and_the_reply_names_the_next(harness: Harness) -> None:
    await seed(harness, MANY)
    seen: list[str] = []
    page, text = 1, (await command(harness, "list all", user=REQ))["text"]
    while True:
        assert f"of {MANY}" in text
        seen += re.findall(r"\*(CHG-\d+)\*", text)
        nxt = re.search(r"`/patch list all (\d+)`", text)
        if nxt is None:
            break
        page = int(nxt.group(1))
        text = (await command(harness, f"list all {page}", user=REQ))["text"]
    assert page == 3
    assert sorted(seen, key=lambda k: int(k[4:])) == [f"CHG-{i}" for i in range(1, MANY + 1)]
    mine = (await command(harness, "list mine", user=REQ))["text"]
    assert f"of {MANY - MANY // 5}" in mine  # the completed ones are not open; nothing else is dropped
    past = (await command(harness, "list all 9", user=REQ))["text"]
    assert "page 9 is past the end" in past
    bad = (await command(harness, "list all x", user=REQ))["text"]
    assert "is not a list scope" in bad
