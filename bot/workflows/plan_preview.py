"""The executor's dry-run preview (``plan``) shown on the approval card, so approvers see what will run.

Run after the card is posted and after every edit (a new revision gets a new preview), for the stage that
awaits approval, on every affected system. Plans never change anything (the executor contract), and their
output is stored clipped: the card shows a summary, the thread can show more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.errors import ConfigError
from bot.executors.base import DeploymentRequest, StepResult
from bot.executors.registry import Executors
from storage import reports
from storage.models import Change, Stage, StageReport

KIND = "plan"
EXCERPT = 600


@dataclass(frozen=True)
class Preview:
    system: str
    executor: str
    ok: bool
    summary: str
    excerpt: str


async def run_plans(config: Config, *, executors: Executors, change: Change, stage: Stage) -> list[Preview]:
    """Ask each affected system's executor for ``stage`` what it would do (no database, no Slack)."""
    out = []
    for system in change.systems:
        env = config.systems[system].environments.get(stage) if system in config.systems else None
        if env is None:
            out.append(Preview(system, "—", False, f"no {stage} environment is configured for {system}", ""))
            continue
        try:
            executor = executors.get(system, stage)
        except ConfigError as exc:
            out.append(Preview(system, env.executor, False, exc.user_message, ""))
            continue
        request = DeploymentRequest(
            run_id=f"plan-{change.id}-r{change.revision}-{stage}-{system}",
            change_key=change.key,
            stage=stage,
            system=system,
            targets=env.targets,  # artifacts are not fetched for a preview: the plan changes nothing
        )
        result: StepResult = await executor.plan(request)
        out.append(Preview(system, env.executor, result.ok, result.summary, result.output[-EXCERPT:]))
    return out


async def record(
    session: AsyncSession, *, change: Change, stage: Stage, previews: list[Preview], now: datetime
) -> None:
    """Store the previews of this revision and stage (replacing nothing: older revisions keep theirs)."""
    for p in previews:
        await reports.add(
            session,
            change_id=change.id,
            kind=KIND,
            user_id="patchwarden",
            now=now,
            payload={
                "stage": stage,
                "revision": change.revision,
                "system": p.system,
                "executor": p.executor,
                "ok": p.ok,
                "summary": p.summary,
                "excerpt": p.excerpt,
            },
        )


def current(rows: list[StageReport], *, change: Change, stage: str | None) -> list[StageReport]:
    """The previews that belong to the change's current revision and stage."""
    return [
        r
        for r in rows
        if r.kind == KIND and r.payload.get("stage") == stage and r.payload.get("revision") == change.revision
    ]
