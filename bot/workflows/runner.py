"""Running a deployment: executor steps, progress into the thread, results on the rows, then the state moves.

The runner never holds a database transaction while an executor works: each step's results are recorded
in one short transaction afterwards. Slack is reached only through a :class:`Sink` (``bot.slack.run_sink``
is the Slack one) and the outbox (``thread.say_later``, for what must survive a crash), so the benchmark
can use a null sink. Executors
come from ``Deps.executors`` and every timestamp from the injected clock.

Flow: apply on every system (in parallel, at most ``limit`` at a time) → all ok: ``<stage>_verifying`` and
verify → all ok: success (test → the owner records the result; prod → completed and announced).
Apply failed: roll back. Verify failed: ``policy.on_failed_verify`` rollback → roll back now; ask → the
owner's Roll back / Keep buttons (the systems stay locked until then).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.blocks import acceptance as test_blocks
from bot.blocks import deployment as blocks
from bot.blocks.common import escape
from bot.config import Config, OnFailedVerify
from bot.deps import Clock
from bot.errors import VerificationError
from bot.executors.base import ArtifactInfo, Step, StepResult
from bot.executors.registry import Executors
from bot.slack import thread
from bot.views import state_label
from bot.workflows import announcements, delivery, heartbeat, lifecycle
from bot.workflows import deployment as flow
from bot.workflows.announcements import AnnouncementKind
from bot.workflows.delivery import ArtifactGate
from bot.workflows.steps import DEFAULT_LIMIT, NullSink, Sink, run_steps
from storage import windows
from storage.models import Change, ChangeClass, ChangeState, Stage

log = logging.getLogger(__name__)
__all__ = ["DEFAULT_LIMIT", "NullSink", "Sink", "execute", "rollback", "run_steps"]

# After a completed prod run: the change and, per system, its (apply, verify) results (remediation proof).
AfterProd = Callable[[Change, dict[str, tuple[StepResult, StepResult]]], Awaitable[None]]


async def _record(sessions: async_sessionmaker[AsyncSession], run: flow.Run, results: dict[int, StepResult]) -> None:
    async with sessions.begin() as session:
        for target in run.targets:
            await flow.record(session, target=target, result=results[target.deployment_id])


async def result_prompt(session: AsyncSession, *, config: Config, change: Change, now: datetime, key: str) -> None:
    """Queue the owner's Passed / Problems prompt in the transaction that moved the change to test_passed."""
    await thread.say_later(
        session,
        config=config,
        change=change,
        key=f"test-result:{key}",
        text=f"{change.key} is deployed to test and verified; the owner records the result.",
        now=now,
        blocks=test_blocks.result_prompt(
            change_id=change.id, change_key=change.key, owners=sorted(flow.owners(config, change))
        ),
    )


def _beat_every(config: Config) -> float:
    return config.policy.heartbeat_timeout.total_seconds() / 4


def _pairs(run: flow.Run, results: dict[int, StepResult]) -> list[tuple[str, StepResult]]:
    return [(t.system, results[t.deployment_id]) for t in run.targets]


async def _announce(
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


async def execute(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    executors: Executors,
    clock: Clock,
    sink: Sink,
    run: flow.Run,
    limit: int = DEFAULT_LIMIT,
    artifacts: ArtifactGate | None = None,
    after_prod: AfterProd | None = None,
    from_verify: bool = False,
) -> Change:
    """Apply, verify and finish (or roll back / ask) a started run; returns the change's final state.

    ``artifacts`` is the run's artifact gate (``workflows.delivery.gate``): called before every step, it
    yields the only artifacts the executor gets; if it fails before apply nothing runs and the run is
    refused (``delivery.refuse_run``). ``after_prod`` proves the fix after a completed prod run
    (``workflows.remediation``), given every step's results.

    An unexpected error (the database gone mid-run, a bug) is logged to the control log and said in the
    thread; the systems stay locked so nobody deploys over a half-finished run until an operator looked.

    While it runs, its rows carry a heartbeat (``workflows.heartbeat``): if this process dies, the
    recovery sweep sees it within ``policy.heartbeat_timeout`` and asks the owner. ``from_verify``: a
    retried run that was interrupted after its apply had been recorded starts at verify.
    """
    try:
        async with heartbeat.beating(sessions, run.ids, clock=clock, every=_beat_every(config)) as tracker:
            return await _execute(
                sessions,
                config=config,
                executors=executors,
                clock=clock,
                sink=sink,
                run=run,
                limit=limit,
                artifacts=artifacts,
                after_prod=after_prod,
                tracker=tracker,
                from_verify=from_verify,
            )
    except Exception as exc:
        log.exception("deployment %s of %s failed unexpectedly", run.stage, run.change.key)
        await sink.post(
            f":x: The {run.stage} deployment of {run.change.key} stopped on an internal error "
            f"({type(exc).__name__}). Its systems stay locked; an operator must check them (see the bot log)."
        )
        try:
            async with sessions.begin() as session:
                await lifecycle.log(
                    session,
                    config=config,
                    now=clock.now(),
                    actor=run.actor,
                    action="deployment_interrupted",
                    change=run.change,
                    stage=run.stage,
                    error=type(exc).__name__,
                )
        except Exception:
            log.exception("could not log the interrupted deployment of %s", run.change.key)
        raise


async def _execute(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    executors: Executors,
    clock: Clock,
    sink: Sink,
    run: flow.Run,
    limit: int,
    artifacts: ArtifactGate | None,
    after_prod: AfterProd | None,
    tracker: heartbeat.Tracker,
    from_verify: bool,
) -> Change:
    key, stage = run.change.key, run.stage

    async def roll_back(reason: str) -> Change:
        return await rollback(
            sessions,
            config=config,
            executors=executors,
            clock=clock,
            sink=sink,
            run=run,
            actor=run.actor,
            reason=reason,
            limit=limit,
            artifacts=artifacts,
            tracker=tracker,
        )

    applied: dict[int, StepResult] = {}  # empty for a retried run that starts at verify
    if not from_verify:
        delivered: tuple[ArtifactInfo, ...] = ()
        if artifacts is not None:
            try:
                delivered = await artifacts(True)
            except VerificationError as exc:
                return await delivery.refuse(
                    sessions, config=config, clock=clock, sink=sink, run=run, reason=exc.user_message
                )
        await sink.refresh()
        systems = ", ".join(f"`{escape(t.system)}` ({escape(t.executor)})" for t in run.targets)
        await sink.post(f":rocket: Deploying {key} to *{stage}* on {systems}.")
        if stage == "prod":
            async with sessions.begin() as session:
                await _announce(
                    session,
                    config=config,
                    change=run.change,
                    window_id=run.window_id,
                    kind=AnnouncementKind.STARTED,
                    now=clock.now(),
                )
        applied = await run_steps(
            executors,
            run,
            Step.APPLY,
            sink=sink,
            clock=clock,
            limit=limit,
            config=config,
            delivered=delivered,
            tracker=tracker,
        )
        await _record(sessions, run, applied)
        await sink.post(blocks.results_text(f"*Apply of {key} ({stage})*", _pairs(run, applied)))
        if not all(r.ok for r in applied.values()):
            return await roll_back("apply failed")
        async with sessions.begin() as session:
            await flow.begin_verify(session, config=config, run=run, now=clock.now())
    await sink.refresh()
    try:
        delivered = await artifacts(False) if artifacts is not None else ()
    except VerificationError as exc:
        verified = delivery.failed_results(run, Step.VERIFY, exc.user_message)
    else:
        verified = await run_steps(
            executors,
            run,
            Step.VERIFY,
            sink=sink,
            clock=clock,
            limit=limit,
            config=config,
            delivered=delivered,
            tracker=tracker,
        )
    await _record(sessions, run, verified)
    await sink.post(blocks.results_text(f"*Verification of {key} ({stage})*", _pairs(run, verified)))
    if all(r.ok for r in verified.values()):
        change = await _succeeded(sessions, config=config, clock=clock, sink=sink, run=run)
        if after_prod is not None and applied and run.stage == "prod" and change.state is ChangeState.COMPLETED:
            steps = {t.system: (applied[t.deployment_id], verified[t.deployment_id]) for t in run.targets}
            await after_prod(change, steps)
        return change
    summary = "; ".join(
        f"{t.system}: {verified[t.deployment_id].summary}" for t in run.targets if not verified[t.deployment_id].ok
    )
    if config.policy.on_failed_verify is OnFailedVerify.ROLLBACK:
        await sink.post(f":rewind: Verification failed ({escape(summary)}); the policy rolls back automatically.")
        return await roll_back("verify failed")
    async with sessions.begin() as session:
        change = await flow.await_decision(session, config=config, run=run, now=clock.now(), summary=summary)
    await sink.post(
        f"Verification of {key} failed; waiting for the owner's decision.",
        blocks=blocks.decision_blocks(
            change_id=change.id,
            change_key=key,
            stage=stage,
            owners=sorted(flow.owners(config, change)),
            summary=summary,
        ),
    )
    await sink.refresh()
    return change


async def _succeeded(
    sessions: async_sessionmaker[AsyncSession], *, config: Config, clock: Clock, sink: Sink, run: flow.Run
) -> Change:
    async with sessions.begin() as session:
        now = clock.now()
        change = await flow.succeed(session, config=config, run=run, now=now)
        if run.stage == "test":
            await result_prompt(session, config=config, change=change, now=now, key=run.targets[0].run_id)
        if run.stage == "prod":
            await _announce(
                session, config=config, change=change, window_id=run.window_id, kind=AnnouncementKind.COMPLETED, now=now
            )
            if change.change_class is ChangeClass.EMERGENCY:
                await announcements.request_post_implementation_review(session, config=config, change=change, now=now)
    await sink.refresh()
    if run.stage == "test":
        await sink.flush()  # the result prompt, queued with the state move: a crash cannot lose it
    else:
        await sink.post(f":tada: {change.key} is deployed to production and verified: *completed*.")
    return change


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
    tracker: heartbeat.Tracker | None = None,
) -> Change:
    """Roll the run back on every system and finish it (the caller already checked who may).

    The rollback gets the verified artifacts when they still verify, else none (it must not be blocked).
    It keeps the run's heartbeat alive (``tracker``: the one of the run it belongs to, else its own).
    """
    if tracker is None:
        async with heartbeat.beating(sessions, run.ids, clock=clock, every=_beat_every(config)) as own:
            return await rollback(
                sessions,
                config=config,
                executors=executors,
                clock=clock,
                sink=sink,
                run=run,
                actor=actor,
                reason=reason,
                limit=limit,
                artifacts=artifacts,
                tracker=own,
            )
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
    results = await run_steps(
        executors,
        run,
        Step.ROLLBACK,
        sink=sink,
        clock=clock,
        limit=limit,
        config=config,
        delivered=delivered,
        tracker=tracker,
    )
    await _record(sessions, run, results)
    await sink.post(blocks.results_text(f"*Rollback of {run.change.key} ({run.stage})*", _pairs(run, results)))
    ok = {t.deployment_id: results[t.deployment_id].ok for t in run.targets}
    async with sessions.begin() as session:
        now = clock.now()
        change = await flow.finish_rollback(session, config=config, run=run, now=now, ok=ok, actor=actor)
        if run.stage == "prod":
            note = "" if all(ok.values()) else "The rollback did not complete everywhere; the operators are on it."
            await _announce(
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
