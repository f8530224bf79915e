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
from bot.credentials.registry import Providers
from bot.deps import Clock
from bot.errors import CredentialError, VerificationError
from bot.executors.base import ArtifactInfo, Step, StepResult
from bot.executors.registry import Executors
from bot.slack import thread
from bot.workflows import announcements, delivery, heartbeat, jit, lifecycle, reboots, rings
from bot.workflows import deployment as flow
from bot.workflows.announcements import AnnouncementKind
from bot.workflows.delivery import ArtifactGate
from bot.workflows.rollback import announce, pairs, record, rollback
from bot.workflows.steps import DEFAULT_LIMIT, NullSink, Sink, run_steps
from storage import windows
from storage.models import Change, ChangeClass, ChangeState

log = logging.getLogger(__name__)
__all__ = ["DEFAULT_LIMIT", "NullSink", "Sink", "execute", "rollback", "run_steps"]

# After a completed prod run: the change and, per system, its (apply, verify) results (remediation proof).
AfterProd = Callable[[Change, dict[str, tuple[StepResult, StepResult]]], Awaitable[None]]


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


def beat_every(config: Config) -> float:
    """How often a running deployment renews its heartbeat (a quarter of ``policy.heartbeat_timeout``)."""
    return config.policy.heartbeat_timeout.total_seconds() / 4


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
    credentials: Providers | None = None,
    from_verify: bool = False,
) -> Change:
    """Apply, verify and finish (or roll back / ask) a started run; returns the change's final state.

    ``artifacts`` is the run's artifact gate (``workflows.delivery.gate``): called before every step, it
    yields the only artifacts the executor gets; if it fails before apply nothing runs and the run is
    refused (``delivery.refuse_run``). ``after_prod`` proves the fix after a completed prod run
    (``workflows.remediation``), given every step's results. ``credentials`` are the just-in-time
    credential providers (``workflows.jit``): issued before the first step, revoked when this call ends.
    An environment with rings or pacing goes through ``workflows.rings``.

    An unexpected error (the database gone mid-run, a bug) is logged to the control log and said in the
    thread; the systems stay locked so nobody deploys over a half-finished run until an operator looked.

    While it runs, its rows carry a heartbeat (``workflows.heartbeat``): if this process dies, the
    recovery sweep sees it within ``policy.heartbeat_timeout`` and asks the owner. ``from_verify``: a
    retried run that was interrupted after its apply had been recorded starts at verify.
    """
    try:
        async with heartbeat.beating(sessions, run.ids, clock=clock, every=beat_every(config)) as tracker:
            return await _execute(
                sessions, config=config, executors=executors, clock=clock, sink=sink, run=run, limit=limit,
                artifacts=artifacts, after_prod=after_prod, credentials=credentials, tracker=tracker,
                from_verify=from_verify,
            )  # fmt: skip
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
    credentials: Providers | None,
    tracker: heartbeat.Tracker,
    from_verify: bool,
) -> Change:
    key, stage = run.change.key, run.stage
    held = jit.Held()

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
            held=held,
            tracker=tracker,
        )

    delivered: tuple[ArtifactInfo, ...] = ()
    if artifacts is not None:
        try:
            delivered = await artifacts(True)
        except VerificationError as exc:
            return await delivery.refuse(
                sessions, config=config, clock=clock, sink=sink, run=run, reason=exc.user_message
            )
    window_end = await _window_end(sessions, run)
    try:
        held = await jit.issue(
            sessions, config=config, providers=credentials, clock=clock, run=run, window_end=window_end, actor=run.actor
        )
    except CredentialError as exc:
        return await delivery.refuse(
            sessions, config=config, clock=clock, sink=sink, run=run, reason=exc.user_message,
            because="no credential could be issued; nothing ran", log_action="deployment_refused_credential",
        )  # fmt: skip
    try:
        if from_verify:  # a retried run whose apply was recorded before its owner died
            return await _plain(
                sessions, config=config, executors=executors, clock=clock, sink=sink, run=run, limit=limit,
                artifacts=artifacts, after_prod=after_prod, delivered=delivered, held=held, roll_back=roll_back,
                tracker=tracker, from_verify=True,
            )  # fmt: skip
        await sink.refresh()
        systems = ", ".join(f"`{escape(t.system)}` ({escape(t.executor)})" for t in run.targets)
        await sink.post(f":rocket: Deploying {key} to *{stage}* on {systems}.")
        if stage == "prod":
            async with sessions.begin() as session:
                await announce(
                    session, config=config, change=run.change, window_id=run.window_id,
                    kind=AnnouncementKind.STARTED, now=clock.now(),
                )  # fmt: skip
        if rings.is_paced(config, run):
            walked = await rings.walk(
                sessions, config=config, executors=executors, clock=clock, sink=sink, run=run, delivered=delivered,
                credentials=held.env, window_end=window_end,
            )  # fmt: skip
            return await _walked(
                sessions, config=config, clock=clock, sink=sink, run=run, walked=walked, roll_back=roll_back,
                after_prod=after_prod,
            )  # fmt: skip
        return await _plain(
            sessions, config=config, executors=executors, clock=clock, sink=sink, run=run, limit=limit,
            artifacts=artifacts, after_prod=after_prod, delivered=delivered, held=held, roll_back=roll_back,
            tracker=tracker,
        )  # fmt: skip
    finally:
        await jit.release(sessions, config=config, clock=clock, run=run, held=held, actor=run.actor)


async def _window_end(sessions: async_sessionmaker[AsyncSession], run: flow.Run) -> datetime | None:
    """The booked window's end (the cutoff and the credentials' validity); None for a run without one."""
    if run.window_id is None:
        return None
    async with sessions.begin() as session:
        window = await windows.get(session, run.window_id)
    return window.end if window is not None else None


async def _walked(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    clock: Clock,
    sink: Sink,
    run: flow.Run,
    walked: rings.Walked,
    roll_back: Callable[[str], Awaitable[Change]],
    after_prod: AfterProd | None,
) -> Change:
    """After the rings: a refused ``pre`` changed nothing; a stopped rollout keeps its finished rings and
    goes the ``on_failed_verify`` way (roll back the rings that ran, or ask the owner)."""
    key, stage = run.change.key, run.stage
    if walked.refused:
        return await delivery.refuse(
            sessions, config=config, clock=clock, sink=sink, run=run, reason=walked.refused,
            because="the pre hook failed; nothing ran", log_action="deployment_refused_hook",
        )  # fmt: skip
    await record(sessions, run, walked.applied)
    await record(sessions, run, walked.verified)
    await sink.post(blocks.results_text(f"*Apply of {key} ({stage})*", pairs(run, walked.applied)))
    await reboots.keep(sessions, config=config, sink=sink, run=run, applied=walked.applied, now=clock.now())
    async with sessions.begin() as session:
        await flow.begin_verify(session, config=config, run=run, now=clock.now())
    if walked.verified:
        await sink.post(blocks.results_text(f"*Verification of {key} ({stage})*", pairs(run, walked.verified)))
    if not walked.failure:
        change = await _succeeded(sessions, config=config, clock=clock, sink=sink, run=run)
        if after_prod is not None and stage == "prod" and change.state is ChangeState.COMPLETED:
            steps = {t.system: (walked.applied[t.deployment_id], walked.verified[t.deployment_id]) for t in run.targets}
            await after_prod(change, steps)
        return change
    return await _failed(sessions, config=config, clock=clock, sink=sink, run=run, summary=walked.failure,
                         roll_back=roll_back, retry=True)  # fmt: skip


async def _failed(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    clock: Clock,
    sink: Sink,
    run: flow.Run,
    summary: str,
    roll_back: Callable[[str], Awaitable[Change]],
    retry: bool = False,
) -> Change:
    """Verification (or a ring's gate) failed: roll back by policy, or ask the owner (Roll back / Keep, and
    Retry for a ring rollout)."""
    key, stage = run.change.key, run.stage
    if config.policy.on_failed_verify is OnFailedVerify.ROLLBACK:
        await sink.post(f":rewind: Verification failed ({escape(summary)}); the policy rolls back automatically.")
        return await roll_back("verify failed")
    async with sessions.begin() as session:
        change = await flow.await_decision(session, config=config, run=run, now=clock.now(), summary=summary)
    await sink.post(
        f"Verification of {key} failed; waiting for the owner's decision.",
        blocks=blocks.decision_blocks(
            change_id=change.id, change_key=key, stage=stage, owners=sorted(flow.owners(config, change)),
            summary=summary, retry=retry,
        ),
    )  # fmt: skip
    await sink.refresh()
    return change


async def _plain(
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
    delivered: tuple[ArtifactInfo, ...],
    held: jit.Held,
    roll_back: Callable[[str], Awaitable[Change]],
    tracker: heartbeat.Tracker | None = None,
    from_verify: bool = False,
) -> Change:
    """Apply everywhere, then verify everywhere (a run without rings or pacing; ``from_verify``: verify only)."""
    key, stage = run.change.key, run.stage
    applied: dict[int, StepResult] = {}  # empty for a retried run that starts at verify
    if not from_verify:
        applied = await run_steps(
            executors, run, Step.APPLY, sink=sink, clock=clock, limit=limit, config=config, delivered=delivered,
            credentials=held.env, tracker=tracker,
        )  # fmt: skip
        await record(sessions, run, applied)
        await sink.post(blocks.results_text(f"*Apply of {key} ({stage})*", pairs(run, applied)))
        await reboots.keep(sessions, config=config, sink=sink, run=run, applied=applied, now=clock.now())
        if not all(r.ok for r in applied.values()):
            return await roll_back("apply failed")
        async with sessions.begin() as session:
            await flow.begin_verify(session, config=config, run=run, now=clock.now())
    await sink.refresh()
    try:
        delivered = await artifacts(False) if artifacts is not None else ()
    except VerificationError as exc:
        verified = delivery.failed_results(run, Step.VERIFY, exc.user_message, now=clock.now())
    else:
        verified = await run_steps(
            executors, run, Step.VERIFY, sink=sink, clock=clock, limit=limit, config=config, delivered=delivered,
            credentials=held.env, tracker=tracker,
        )  # fmt: skip
    await record(sessions, run, verified)
    await sink.post(blocks.results_text(f"*Verification of {key} ({stage})*", pairs(run, verified)))
    if all(r.ok for r in verified.values()):
        change = await _succeeded(sessions, config=config, clock=clock, sink=sink, run=run)
        if after_prod is not None and applied and run.stage == "prod" and change.state is ChangeState.COMPLETED:
            steps = {t.system: (applied[t.deployment_id], verified[t.deployment_id]) for t in run.targets}
            await after_prod(change, steps)
        return change
    summary = "; ".join(
        f"{t.system}: {verified[t.deployment_id].summary}" for t in run.targets if not verified[t.deployment_id].ok
    )
    return await _failed(sessions, config=config, clock=clock, sink=sink, run=run, summary=summary, roll_back=roll_back)


async def _succeeded(
    sessions: async_sessionmaker[AsyncSession], *, config: Config, clock: Clock, sink: Sink, run: flow.Run
) -> Change:
    async with sessions.begin() as session:
        now = clock.now()
        change = await flow.succeed(session, config=config, run=run, now=now)
        if run.stage == "prod":
            await announce(
                session, config=config, change=change, window_id=run.window_id, kind=AnnouncementKind.COMPLETED, now=now
            )
            if change.change_class is ChangeClass.EMERGENCY:
                await announcements.request_post_implementation_review(session, config=config, change=change, now=now)
        if run.stage == "test":
            await result_prompt(session, config=config, change=change, now=now, key=run.targets[0].run_id)
    await sink.refresh()
    if run.stage == "test":
        await sink.flush()  # the result prompt, queued with the state move: a crash cannot lose it
    else:
        await sink.post(f":tada: {change.key} is deployed to production and verified: *completed*.")
    return change
