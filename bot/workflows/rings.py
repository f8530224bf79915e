"""A run through rings and pacing (``bot.workflows.rollout``) with the real executors, for the runner.

An environment is *paced* when it sets ``rings`` or any of ``max_parallel``, ``cutoff``, ``max_duration``,
``jitter``, ``pre``, ``post``; without rings its targets are one ring (``all``). A run with a paced system
goes this way (the runner decides, :func:`is_paced`):

1. every system's ``pre`` hook runs first; one that fails stops the run before any target changed;
2. each system walks its rings (systems side by side), one executor call per target with that target only
   (``DeploymentRequest.targets``), at most ``max_parallel`` at once; an unpaced system of the same run is
   one unit with all its targets. The cutoff is measured against the booked window's end (no window: none);
3. each ring's start and end are kept on the deployment row (``rings``), re-render the card, and its end is
   one thread line;
4. ``post`` hooks run after the last ring, whatever happened (a failing ``post`` is said, not fatal);
5. per system the targets' results are folded into one apply and one verify result for the row, with the
   reboot the targets reported.

A run the owner retries after a failed gate (``deploy_decisions.decide_retry``) walks again from the first
ring that did not succeed; the rings that held are kept as they were on the row.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.blocks.common import escape
from bot.config import Config, Environment, Ring
from bot.deps import Clock
from bot.executors.base import ArtifactInfo, Step, StepResult, TargetResult, TargetStatus
from bot.executors.registry import Executors
from bot.workflows import deployment as flow
from bot.workflows.rollout import Pacing, RingOutcome, Rollout, Sleep, ring_line, rings_of, run_hook
from bot.workflows.steps import Sink, one_step
from storage import deployments

PACING_KEYS = frozenset({"rings", "max_parallel", "cutoff", "max_duration", "jitter", "pre", "post"})
_SLUG = re.compile(r"[^A-Za-z0-9_.-]")


def paced(env: Environment) -> bool:
    """The environment asks for rings or pacing (a key set in the configuration, not a default)."""
    return bool(env.model_fields_set & PACING_KEYS) and (bool(env.rings) or bool(env.targets))


def is_paced(config: Config, run: flow.Run) -> bool:
    """Whether the run goes through rings (any of its systems is paced)."""
    return any(paced(config.systems[t.system].environments[run.stage]) for t in run.targets)


@dataclass
class Walked:
    """What the walk did: per deployment the folded results and ring outcomes; why it stopped."""

    applied: dict[int, StepResult] = field(default_factory=dict)
    verified: dict[int, StepResult] = field(default_factory=dict)
    rings: dict[int, list[RingOutcome]] = field(default_factory=dict)
    failure: str = ""  # a gate failed or the cutoff refused a ring ("" when every ring held)
    refused: str = ""  # a pre hook failed: nothing ran


def combine(step: Step, by_host: Mapping[str, StepResult], *, now: datetime) -> StepResult:
    """Step 5: one result from the per-target results (targets, output, reboot, times)."""
    results = list(by_host.values())
    failed = [f"{h}: {r.summary}" for h, r in by_host.items() if not r.ok]
    ok_n = len(results) - len(failed)
    summary = f"{step} succeeded on {ok_n} of {len(results)} target(s)" + (f"; {failed[0]}" if failed else "")
    targets: list[TargetResult] = []
    for host, r in by_host.items():
        status = TargetStatus.OK if r.ok else TargetStatus.FAILED
        targets.extend(r.targets or (TargetResult(target=host, status=status, detail=r.summary[:200]),))
    return StepResult(
        step=step, ok=bool(results) and not failed, summary=summary, targets=tuple(targets),
        output="".join(f"----- {h} -----\n{r.output}" for h, r in by_host.items() if r.output),
        started=min((r.started for r in results), default=now),
        finished=max((r.finished for r in results), default=now),
        timed_out=any(r.timed_out for r in results), reboot_required=any(r.reboot_required for r in results),
        rebooted=any(r.rebooted for r in results),
    )  # fmt: skip


def hook_env(run: flow.Run, target: flow.Target, env: Environment) -> dict[str, str]:
    """What a ``pre``/``post`` hook sees: the validated run values only (like the shell executor's)."""
    hosts = [h for ring in env.rings or [] for h in ring.targets] or list(env.targets)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "PATCHWARDEN_CHANGE": run.change.key,
        "PATCHWARDEN_STAGE": run.stage, "PATCHWARDEN_SYSTEM": target.system, "PATCHWARDEN_RUN_ID": target.run_id,
        "PATCHWARDEN_TARGETS": " ".join(hosts),
    }  # fmt: skip


def host_run_id(target: flow.Target, host: str) -> str:
    """The request's run id for one target of a ringed system (unique per target within the run)."""
    return f"{target.run_id}.{_SLUG.sub('_', host)[:60]}"[:128]


async def per_host(
    executors: Executors,
    run: flow.Run,
    target: flow.Target,
    step: Step,
    hosts: Sequence[str],
    *,
    sink: Sink,
    clock: Clock,
    config: Config,
    delivered: tuple[ArtifactInfo, ...],
    credential_env: dict[str, str] | None,
) -> StepResult:
    """``step`` on each of ``hosts`` separately, ``max_parallel`` at once, folded into one result (a rollback
    of the rings that ran)."""
    gate = asyncio.Semaphore(config.systems[target.system].environments[run.stage].max_parallel)

    async def one(host: str) -> StepResult:
        async with gate:
            return await one_step(
                executors, run, target, step, sink=sink, clock=clock, config=config, delivered=delivered,
                hosts=(host,), run_id=host_run_id(target, host), credential_env=credential_env,
            )  # fmt: skip

    results = await asyncio.gather(*(one(h) for h in hosts))
    return combine(step, dict(zip(hosts, results, strict=True)), now=clock.now())


async def _sleep(delta: timedelta) -> None:
    await asyncio.sleep(delta.total_seconds())


async def walk(
    sessions: async_sessionmaker[AsyncSession],
    *,
    config: Config,
    executors: Executors,
    clock: Clock,
    sink: Sink,
    run: flow.Run,
    delivered: tuple[ArtifactInfo, ...],
    credentials: Mapping[int, dict[str, str]],
    window_end: datetime | None,
    sleep: Sleep | None = None,
) -> Walked:
    """Steps 1-5 of the module docstring."""
    walked = Walked()
    envs = {t.deployment_id: config.systems[t.system].environments[run.stage] for t in run.targets}
    for target in run.targets:  # 1.
        env = envs[target.deployment_id]
        if env.pre:
            ok, text = await run_hook(env.pre, env=hook_env(run, target, env), what="pre")
            if not ok:
                walked.refused = f"the pre hook of {target.system} failed ({text})"
                return walked
    many = len(run.targets) > 1
    async with sessions.begin() as session:  # a retried run: the rings that held stay done
        held = {
            d.id: [r for r in d.rings if r.get("status") == "succeeded"]
            for d in await deployments.get_many(session, run.ids)
        }

    async def one(target: flow.Target) -> None:  # 2.
        env = envs[target.deployment_id]
        ringed = paced(env)
        applied: dict[str, StepResult] = {}
        verified: dict[str, StepResult] = {}

        async def step(host: str, which: Step) -> StepResult:
            result = await one_step(
                executors, run, target, which, sink=sink, clock=clock, config=config, delivered=delivered,
                hosts=(host,) if ringed else None, run_id=host_run_id(target, host) if ringed else None,
                credential_env=credentials.get(target.deployment_id),
            )  # fmt: skip
            (applied if which is Step.APPLY else verified)[host] = result
            return result

        done = held.get(target.deployment_id, []) if ringed else []

        async def keep(out: RingOutcome) -> None:  # 3.
            if ringed:
                async with sessions.begin() as session:
                    rows = [*done, *(o.to_json() for o in rollout.outcomes)]
                    await deployments.set_fields(session, target.deployment_id, rings=rows)
                await sink.refresh()

        async def said(out: RingOutcome) -> None:
            await keep(out)
            if ringed:
                await sink.post((f"`{escape(target.system)}` " if many else "") + ring_line(out))

        rings = rings_of(env, env.targets) if ringed else [Ring(name="all", targets=[target.system])]
        rings = [r for r in rings if r.name not in {d.get("name") for d in done}]
        rollout = Rollout(
            rings=rings, step=step, now=clock.now, sleep=sleep or _sleep,
            pacing=Pacing.of(env) if ringed else Pacing(), window_end=window_end, on_ring=said, on_start=keep,
        )  # fmt: skip
        outcomes = await rollout.run()
        walked.rings[target.deployment_id] = outcomes if ringed else []
        now = clock.now()
        walked.applied[target.deployment_id] = combine(Step.APPLY, applied, now=now)
        if verified:
            walked.verified[target.deployment_id] = combine(Step.VERIFY, verified, now=now)
        if outcomes and not rollout.succeeded and not walked.failure:
            bad = next(o for o in outcomes if o.status.value in ("failed", "refused"))
            where = f"{target.system} ring {bad.name}" if ringed else target.system
            walked.failure = f"{where} {bad.status.value}: {bad.reason}"

    await asyncio.gather(*(one(t) for t in run.targets))
    for target in run.targets:  # 4.
        env = envs[target.deployment_id]
        if env.post:
            ok, text = await run_hook(env.post, env=hook_env(run, target, env), what="post")
            if not ok:
                await sink.post(f":warning: The post hook of `{escape(target.system)}` failed: {escape(text)}")
    return walked


def done_hosts(rows: list[dict[str, object]]) -> tuple[str, ...]:
    """The hosts of the rings that started (what a rollback of the done rings covers)."""
    hosts: list[str] = []
    for ring in rows:
        targets = ring.get("targets")
        if ring.get("started") and isinstance(targets, list):
            hosts.extend(str(t) for t in targets)
    return tuple(hosts)
