"""Rolling a run back, and the small helpers the runner and the rollback share (results on rows, thread).

A rollback covers every system of the run; a system that went through rings is rolled back on the hosts of
the rings that ran (``deployments.rings``), not on the ones the rollout never reached.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.blocks import acceptance as test_blocks
from bot.blocks import deployment as blocks
from bot.blocks.common import escape
from bot.config import Config
from bot.credentials.registry import Providers
from bot.deps import Clock
from bot.errors import VerificationError
from bot.executors.base import ArtifactInfo, Step, StepResult
from bot.executors.registry import Executors
from bot.views import state_label
from bot.workflows import announcements, heartbeat, jit, lifecycle, rings
from bot.workflows import deployment as flow
from bot.workflows.announcements import AnnouncementKind
from bot.workflows.delivery import ArtifactGate
from bot.workflows.steps import DEFAULT_LIMIT, Sink, run_steps
from storage import deployments, windows
from storage.models import Change, Stage

log = logging.getLogger(__name__)


async def record(sessions: async_sessionmaker[AsyncSession], run: flow.Run, results: dict[int, StepResult]) -> None:
    async with sessions.begin() as session:
        for target in run.targets:
            if target.deployment_id in results:
                await flow.record(session, target=target, result=results[target.deployment_id])


def pairs(run: flow.Run, results: dict[int, StepResult]) -> list[tuple[str, StepResult]]:
    return [(t.system, results[t.deployment_id]) for t in run.targets if t.deployment_id in results]


async def announce(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    window_id: int | None,
    kind: AnnouncementKind,
    now: datetime,
    note: str = "",
) -> None:
    window = await windows.get(session, window_id) if window_id is not None else None
    await announcements.announce(
        session, config=config, change=change, window=window, kind=kind, now=now, note=note, stage=Stage.PROD
    )


async def rollback(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    executors: Executors,
    clock: Clock,
    sink: Sink,
    run: flow.Run,
    actor: str,
    reason: str,
    limit: int = DEFAULT_LIMIT,
    artifacts: ArtifactGate | None = None,
    held: jit.Held | None = None,
    credentials: Providers | None = None,
    tracker: heartbeat.Tracker | None = None,
) -> Change:
    """Roll the run back on every system and finish it (the caller already checked who may).

    The rollback gets the verified artifacts when they still verify, else none (it must not be blocked).
    A system that went through rings is rolled back on the hosts of the rings that ran, not the others.
    ``held`` are the run's credentials when it is still going; otherwise ``credentials`` issues new ones
    for the rollback alone (the window may be over: they are short-lived, see ``workflows.jit``).
    It keeps the run's heartbeat alive (``tracker``: the one of the run it belongs to, else its own).
    """
    if tracker is None:
        async with heartbeat.beating(sessions, run.ids, clock=clock, every=_beat_every(config)) as own_beat:
            return await rollback(
                sessions, config=config, executors=executors, clock=clock, sink=sink, run=run, actor=actor,
                reason=reason, limit=limit, artifacts=artifacts, held=held, credentials=credentials,
                tracker=own_beat,
            )  # fmt: skip
    if held is not None:
        return await _rollback(
            sessions, config=config, executors=executors, clock=clock, sink=sink, run=run, actor=actor,
            reason=reason, limit=limit, artifacts=artifacts, held=held, tracker=tracker,
        )  # fmt: skip
    own = await jit.issue(
        sessions, config=config, providers=credentials, clock=clock, run=run, window_end=None, actor=actor
    )
    try:
        return await _rollback(
            sessions, config=config, executors=executors, clock=clock, sink=sink, run=run, actor=actor,
            reason=reason, limit=limit, artifacts=artifacts, held=own, tracker=tracker,
        )  # fmt: skip
    finally:
        await jit.release(sessions, config=config, clock=clock, run=run, held=own, actor=actor)


async def _rollback(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    executors: Executors,
    clock: Clock,
    sink: Sink,
    run: flow.Run,
    actor: str,
    reason: str,
    limit: int,
    artifacts: ArtifactGate | None,
    held: jit.Held,
    tracker: heartbeat.Tracker,
) -> Change:
    async with sessions.begin() as session:
        started = await flow.begin_rollback(
            session, config=config, run=run, actor=actor, now=clock.now(), reason=reason
        )
    if not started:
        async with sessions.begin() as session:
            return await lifecycle.load(session, run.change.id)
    await sink.post(f":rewind: Rolling back {run.change.key} ({run.stage}): {escape(reason)}.")
    delivered: tuple[ArtifactInfo, ...] = ()
    if artifacts is not None:
        try:
            delivered = await artifacts(False)
        except VerificationError:
            log.warning("rollback of %s runs without artifacts: they no longer verify", run.change.key)
    async with sessions.begin() as session:
        rows = await deployments.get_many(session, run.ids)
    hosts = {d.id: rings.done_hosts(d.rings) for d in rows if d.rings}
    plain = dataclasses.replace(run, targets=tuple(t for t in run.targets if t.deployment_id not in hosts))
    results = await run_steps(
        executors, plain, Step.ROLLBACK, sink=sink, clock=clock, limit=limit, config=config, delivered=delivered,
        credentials=held.env, tracker=tracker,
    )  # fmt: skip
    for t in run.targets:
        if t.deployment_id in hosts:  # per target, like the rollout that reached them
            results[t.deployment_id] = await rings.per_host(
                executors, run, t, Step.ROLLBACK, hosts[t.deployment_id], sink=sink, clock=clock, config=config,
                delivered=delivered, credential_env=held.env.get(t.deployment_id),
            )  # fmt: skip
    await record(sessions, run, results)
    await sink.post(blocks.results_text(f"*Rollback of {run.change.key} ({run.stage})*", pairs(run, results)))
    ok = {t.deployment_id: results[t.deployment_id].ok for t in run.targets}
    async with sessions.begin() as session:
        now = clock.now()
        change = await flow.finish_rollback(session, config=config, run=run, now=now, ok=ok, actor=actor)
        if run.stage == "prod":
            note = "" if all(ok.values()) else "The rollback did not complete everywhere; the operators are on it."
            await announce(
                session,
                config=config,
                change=change,
                window_id=run.window_id,
                kind=AnnouncementKind.ROLLED_BACK,
                now=now,
                note=note,
            )
    await sink.refresh()
    words = "rolled back" if all(ok.values()) else "NOT fully rolled back (see the results above)"
    await sink.post(f"{change.key} ({run.stage}) is {words}; it is now *{state_label(change.state)}*.")
    if run.stage == "test":
        owners = sorted(flow.owners(config, change))
        await sink.post(
            "The test stage failed; record the problems found.",
            blocks=[
                *test_blocks.result_prompt(change_id=change.id, change_key=change.key, owners=owners)[:1],
                test_blocks.problems_only(change.id),
            ],
        )
    return change


def _beat_every(config: Config) -> float:
    return config.policy.heartbeat_timeout.total_seconds() / 4
