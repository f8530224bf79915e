"""/patch deploy refusals, exclusive system locks, two schedulers on one database, missed windows."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from conftest import OPS1, OPS2, OWNER, Harness, eventually, make_config
from deploy_support import approved_for_test, book, in_thread, state_of, thread_texts, wait_state
from sqlalchemy import select

from bot import jobs
from bot.workflows import views
from storage import audit, changes, deployments, windows
from storage.models import AuditEntry, ChangeClass, ChangeState, WindowState

SLOW = {"executor": "dry-run", "delay": 0.3}


def slow_config(**policy: Any) -> Any:
    return make_config(
        systems={"web-shop": {"environments": {"test": SLOW, "prod": SLOW}}},
        **({"policy": policy} if policy else {}),
    )


async def deploy_cmd(h: Harness, text: str, user: str = OPS1) -> str:
    """Type /patch deploy ...; returns the ephemeral answer."""
    before = len(h.fake.responses)
    status, _ = await h.slack.command(f"deploy {text}", user=user)
    assert status == 200
    reply = await eventually(lambda: h.fake.responses[before:], what="reply")
    return str(reply[-1].get("text", ""))


async def actions(h: Harness, name: str) -> list[AuditEntry]:
    async with h.deps.sessions.begin() as s:
        return list((await s.execute(select(AuditEntry).where(AuditEntry.action == name))).scalars())


async def test_refusals_name_the_reason_and_are_audited(harness: Harness) -> None:
    h = harness
    await h.request_change()
    assert "not approved for test" in await deploy_cmd(h, "CHG-1 test")
    assert "cannot go to production yet" in await deploy_cmd(h, "CHG-1 prod")
    await h.slack.approve(h.cards()[0], user=OWNER)
    await wait_state(h, ChangeState.APPROVED_FOR_TEST)
    assert "no test window booked" in await deploy_cmd(h, "CHG-1 test")
    assert "Only members of the operators group" in await deploy_cmd(h, "CHG-1 test", user=OWNER)
    await book(h, stage="test", start_in=timedelta(minutes=30))
    assert "outside its booked test window" in await deploy_cmd(h, "CHG-1 test")
    assert "only for emergency changes" in await deploy_cmd(h, "CHG-1 test --now because I say so")
    assert "is not a stage" in await deploy_cmd(h, "CHG-1 test; touch /tmp/x")
    assert len(await actions(h, "deploy_refused")) == 6
    assert await state_of(h) is ChangeState.TEST_SCHEDULED
    # inside the window an operator may deploy by hand (and the sweep then finds nothing to do)
    h.clock.advance(timedelta(minutes=31))
    assert "Deploying CHG-1 to test" in await deploy_cmd(h, "CHG-1 test")
    await wait_state(h, ChangeState.TEST_PASSED)
    assert await jobs.run_due_windows(h.deps) == []
    async with h.deps.sessions.begin() as s:
        data = views.to_json(await views.snapshot(s, config=h.config, change=await _change(s)))
    assert data["windows"][0]["state"] == "done" and data["windows"][0]["stage"] == "test"
    dep = data["deployments"][0]
    assert (dep["stage"], dep["executor"], dep["status"]) == ("test", "dry-run", "succeeded")
    assert dep["finished"] and {t["status"] for t in dep["targets"]} == {"changed", "ok"}


async def _change(s: Any) -> Any:
    change = await changes.get(s, 1)
    assert change is not None
    return change


async def test_emergency_now_is_accepted_and_audited(harness_factory: Any) -> None:
    h: Harness = await harness_factory(slow_config())
    card = await approved_for_test(h, change_class="emergency", details="database corruption")
    assert "needs a reason" in await deploy_cmd(h, "CHG-1 test --now")
    assert "Deploying CHG-1" in await deploy_cmd(h, "CHG-1 test --now database corruption <!channel>")
    await in_thread(h, card, "outside a window")
    assert any("&lt;!channel&gt;" in m.text for m in h.thread(card))  # the reason is escaped
    await wait_state(h, ChangeState.TEST_PASSED)
    bypass = await actions(h, "window_bypassed")
    assert len(bypass) == 1 and "database corruption" in bypass[0].body and bypass[0].actor == OPS1


async def test_one_deployment_per_system_at_a_time(harness_factory: Any) -> None:
    h: Harness = await harness_factory(slow_config())
    for n in (1, 2):
        await h.request_change(title=f"Change number {n}")
        await h.slack.approve(h.cards()[n - 1], user=OWNER)
        await wait_state(h, ChangeState.APPROVED_FOR_TEST, change_id=n)
    async with h.deps.sessions.begin() as s:  # make both emergencies so both may deploy now
        for n in (1, 2):
            (await changes.get(s, n)).change_class = ChangeClass.EMERGENCY  # type: ignore[union-attr]
    before = len(h.fake.responses)
    await asyncio.gather(
        h.slack.command("deploy CHG-1 test --now outage", user=OPS1),
        h.slack.command("deploy CHG-2 test --now outage", user=OPS2),
    )
    answers = await eventually(lambda: h.fake.responses[before:] if len(h.fake.responses) >= before + 2 else None)
    replies = [str(r.get("text", "")) for r in answers]
    started = [r for r in replies if "Deploying" in r]
    refused = [r for r in replies if "Another deployment is running on web-shop" in r]
    assert len(started) == 1 and len(refused) == 1, replies
    # the same change twice at once: one runs, the other is told it is already deploying
    async with h.deps.sessions.begin() as s:
        rows = [d for n in (1, 2) for d in await deployments.for_change(s, n)]
    assert len(rows) == 1
    winner = rows[0].change_id
    await wait_state(h, ChangeState.TEST_PASSED, change_id=winner)
    async with h.deps.sessions.begin() as s:
        assert await deployments.lock_holder(s, "web-shop") is None  # released at the end


async def test_two_schedulers_on_one_database_deploy_once(harness_factory: Any) -> None:
    config = slow_config()
    a: Harness = await harness_factory(config)
    b: Harness = await harness_factory(config, a.clock)
    await approved_for_test(a)
    await book(a, stage="test", start_in=timedelta(minutes=10))
    a.clock.advance(timedelta(minutes=11))
    ta, tb = await asyncio.gather(jobs.run_due_windows(a.deps), jobs.run_due_windows(b.deps))
    assert len(ta) + len(tb) == 1
    await asyncio.gather(*ta, *tb)
    async with a.deps.sessions.begin() as s:
        assert len(await deployments.for_change(s, 1)) == 1
    assert await state_of(a) is ChangeState.TEST_PASSED
    assert await actions(a, "deploy_refused") == []


async def test_restart_picks_up_a_due_window_within_its_end(harness: Harness) -> None:
    h = harness
    await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10), length=timedelta(hours=1))
    h.clock.advance(timedelta(minutes=50))  # the bot was down for the start; the window is still open
    tasks = await jobs.run_due_windows(h.deps)
    assert len(tasks) == 1
    await asyncio.gather(*tasks)
    assert await state_of(h) is ChangeState.TEST_PASSED


async def test_missed_window_next_rebooks_and_says_so(harness: Harness) -> None:
    h = harness
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    h.clock.advance(timedelta(hours=2))  # down past the window's end
    assert await jobs.run_due_windows(h.deps) == []
    await in_thread(h, card, "was missed")
    async with h.deps.sessions.begin() as s:
        rows = await windows.for_change(s, 1)
    assert [w.state for w in rows] == [WindowState.RESCHEDULED, WindowState.BOOKED]
    assert rows[1].start > h.clock.now()
    assert len(await actions(h, "window_missed")) == 1
    assert await state_of(h) is ChangeState.TEST_SCHEDULED


async def test_missed_window_ask_offers_run_now(harness_factory: Any) -> None:
    h: Harness = await harness_factory(slow_config(missed_window="ask"))
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    h.clock.advance(timedelta(hours=2))
    await jobs.run_due_windows(h.deps)
    prompt = await in_thread(h, card, "window_missed_run", what="Run now / Next window")
    await h.slack.click(prompt, "window_missed_run", user=OWNER)  # not an operator
    await eventually(lambda: any("Only members" in t for t in h.fake.ephemerals(OWNER)), what="refusal")
    await h.slack.click(prompt, "window_missed_run", user=OPS1)
    await wait_state(h, ChangeState.TEST_PASSED)


async def test_missed_window_run_deploys_at_once(harness_factory: Any) -> None:
    h: Harness = await harness_factory(slow_config(missed_window="run"))
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    h.clock.advance(timedelta(hours=2))
    tasks = await jobs.run_due_windows(h.deps)
    await asyncio.gather(*tasks)
    assert await state_of(h) is ChangeState.TEST_PASSED
    await in_thread(h, card, "missed_window: run")


async def test_unknown_executor_stops_startup() -> None:
    import pytest

    from bot.config import Settings
    from bot.deps import build_deps
    from bot.errors import ConfigError

    config = make_config(systems={"web-shop": {"environments": {"test": {"executor": "no-such-thing"}}}})
    with pytest.raises(ConfigError, match="unknown executor 'no-such-thing'"):
        build_deps(Settings(PATCHWARDEN_DATABASE_URL="sqlite+aiosqlite:///:memory:"), config, client=None)  # type: ignore[arg-type]
    assert audit  # the control log module is what refusals above were checked against


async def test_an_internal_error_mid_run_is_said_and_logged(harness_factory: Any, monkeypatch: Any) -> None:
    from bot.workflows import deployment as flow

    async def broken(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(flow, "begin_verify", broken)
    h: Harness = await harness_factory(slow_config())
    card = await approved_for_test(h, change_class="emergency", details="outage")
    assert "Deploying" in await deploy_cmd(h, "CHG-1 test --now outage")
    await in_thread(h, card, "stopped on an internal error (RuntimeError)")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not await actions(h, "deployment_interrupted") and loop.time() < deadline:  # noqa: ASYNC110  (polling with a deadline)
        await asyncio.sleep(0.02)  # the log entry is written just after the thread message
    assert len(await actions(h, "deployment_interrupted")) == 1
    async with h.deps.sessions.begin() as s:
        assert await deployments.lock_holder(s, "web-shop") is not None  # kept locked for an operator


async def test_a_due_window_that_cannot_start_is_said_once_in_the_thread(harness: Harness) -> None:
    """A window opens while its system is busy: the thread hears why once, and the sweep keeps trying."""
    from storage import deployments as deployment_store
    from storage.models import Deployment, DeploymentStatus

    h = harness
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=10))
    async with h.deps.sessions.begin() as s:  # another (manual) run holds web-shop
        other = await deployment_store.add(
            s,
            Deployment(
                run_id="other-run",
                change_id=1,
                stage="test",
                system="web-shop",
                executor="dry-run",
                status=DeploymentStatus.RUNNING,
                started_by=OPS1,
                started_at=h.clock.now(),
                steps=[],
                output="",
            ),
        )
        assert await deployment_store.acquire_lock(s, system="web-shop", deployment_id=other.id, now=h.clock.now())
    h.clock.advance(timedelta(minutes=11))
    for _ in range(3):
        assert await jobs.run_due_windows(h.deps) == []
    notes = await eventually(lambda: [t for t in thread_texts(h, card) if "cannot start" in t], what="refusal note")
    assert len(notes) == 1 and "web-shop" in notes[0]
    async with h.deps.sessions.begin() as s:  # the system is free again: the next sweep deploys
        await deployment_store.release_locks(s, [other.id])
    assert len(await jobs.run_due_windows(h.deps)) == 1


async def test_a_run_line_slack_refuses_is_delivered_later_not_dropped(harness: Harness) -> None:
    """A deployment's thread lines go through bot.slack.thread.say: refused now, the outbox delivers them."""
    from bot.slack.outbox_sender import OutboxSender

    h = harness
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=5))
    h.clock.advance(timedelta(minutes=6))
    h.fake.fail("chat.postMessage", status=500)  # the ":rocket: Deploying" line hits a Slack outage
    await asyncio.gather(*await jobs.run_due_windows(h.deps))
    await wait_state(h, ChangeState.TEST_PASSED)
    from storage import outbox

    async with h.deps.sessions.begin() as s:  # refused by Slack: queued (the run's own flush may send it early)
        assert [r for r in await outbox.for_change(s, 1) if "Deploying CHG-1 to *test*" in r.text]
    await OutboxSender(h.deps, channel_gap=0.0).drain()
    assert len([t for t in thread_texts(h, card) if "Deploying CHG-1 to *test*" in t]) == 1
