"""What an executor receives of a change's artifacts: the verified files, re-hashed just now, and nothing else.

``gate(deps, change_id=...)`` returns an ``ArtifactGate``: the runner calls it right before each executor
step. It is the only producer of ``DeploymentRequest.artifacts``:

1. before the first step (``fresh=True``) every artifact is downloaded and verified again at its source,
   so a file replaced upstream after approval is refused before anything runs;
2. before later steps the quarantined copy is re-hashed (``verified``), never trusted by path alone;
3. any failure raises ``VerificationError`` naming the artifact and the reason; the refusal is already in
   the control log and the change's thread (``workflows.artifacts``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.blocks import deployment as deployment_blocks
from bot.config import Config, MissedWindow
from bot.deps import Clock, Deps
from bot.executors.base import ArtifactInfo, Step, StepResult
from bot.workflows import artifacts, due_windows, lifecycle
from bot.workflows.deployment import SCHEDULER, Run
from storage import deployments, windows
from storage.models import APPROVED, Change, DeploymentStatus, WindowState

if TYPE_CHECKING:
    from bot.workflows.steps import Sink

ArtifactGate = Callable[[bool], Awaitable[tuple[ArtifactInfo, ...]]]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+~-]+")


def artifact_name(url: str, *, taken: set[str]) -> str:
    """A file name for the artifact (the URL's last path segment, made safe and unique)."""
    stem = PurePosixPath(urlsplit(url).path).name or "artifact"
    name = _UNSAFE.sub("_", stem).lstrip("._-")[:150] or "artifact"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{n}-{name}", n + 1
    taken.add(candidate)
    return candidate


def gate(deps: Deps, *, change_id: int, actor: str) -> ArtifactGate:
    """The artifact gate of one run: ``await gate(fresh)`` → the artifacts to hand the next step."""

    async def verified(fresh: bool) -> tuple[ArtifactInfo, ...]:
        found = await artifacts.verified(deps, change_id=change_id, actor=actor, fresh=fresh)
        taken: set[str] = set()
        return tuple(
            ArtifactInfo(
                name=artifact_name(row.url, taken=taken),
                path=good.path,
                sha256=good.sha256,
                signer=good.signer,
                size=good.path.stat().st_size,
            )
            for row, good in found
        )

    return verified


@dataclass(frozen=True)
class Refusal:
    """A run refused because an artifact failed: what the thread is told, and the missed-window decision."""

    change: Change
    note: str
    ask_window_id: int | None = None  # ``missed_window: ask``: the window whose Run now / Next buttons to post


async def refuse_run(session: AsyncSession, *, config: Config, run: Run, reason: str, now: datetime) -> Refusal:
    """Undo a started run before any step ran: rows failed, locks released, the stage approved again.

    The window is treated as missed (``policy.missed_window``): ``next`` books the next free slot, ``ask``
    asks the operators, ``run`` cannot run an unverified artifact, so the window stays missed.
    """
    change = await lifecycle.load(session, run.change.id, lock=True)
    for t in run.targets:
        await deployments.set_status(
            session, t.deployment_id, expected=[DeploymentStatus.RUNNING], new=DeploymentStatus.FAILED, finished_at=now
        )
    await deployments.release_locks(session, run.ids)
    await lifecycle.transition(
        session, config=config, change=change, to=APPROVED[run.stage], actor=run.actor, now=now,
        reason="an artifact failed verification; nothing ran",
    )  # fmt: skip
    policy = config.policy.missed_window
    await lifecycle.log(
        session, config=config, now=now, actor=run.actor, action="deployment_refused_artifact", change=change,
        stage=run.stage, reason=reason, window_id=run.window_id, missed_window=policy.value,
    )  # fmt: skip
    head = f":no_entry: Nothing was deployed: {reason}"
    if run.window_id is None:
        return Refusal(change, head)
    window = await windows.get(session, run.window_id)
    if window is None or not await windows.compare_and_set(
        session, window.id, expected=WindowState.STARTED, new=WindowState.MISSED
    ):
        return Refusal(change, head)
    if policy is MissedWindow.NEXT:
        window = await windows.get(session, run.window_id)
        assert window is not None
        action = await due_windows.rebook(
            session, config=config, change=change, window=window, actor=SCHEDULER, now=now
        )
        return Refusal(change, f"{head}\n{action.note}")
    if policy is MissedWindow.ASK:
        await windows.compare_and_set(
            session, window.id, expected=WindowState.MISSED, new=WindowState.AWAITING_DECISION
        )
        note = f"{head}\nOperators: once the artifact is fixed, run the window now, or book the next free one?"
        return Refusal(change, note, ask_window_id=window.id)
    return Refusal(change, f"{head}\nThe window is missed (`missed_window: run` cannot run it); book a new one.")


def failed_results(run: Run, step: Step, summary: str, *, now: datetime) -> dict[int, StepResult]:
    """The same failed result for every system of the run (an artifact that no longer verifies)."""
    failed = StepResult(step=step, ok=False, summary=summary, started=now, finished=now)
    return {t.deployment_id: failed for t in run.targets}


async def refuse(
    sessions: async_sessionmaker[AsyncSession], *, config: Config, clock: Clock, sink: Sink, run: Run, reason: str
) -> Change:
    """An artifact failed before the first step: nothing runs, the thread is told; the window follows
    ``missed_window`` (``refuse_run``)."""
    async with sessions.begin() as session:
        refusal = await refuse_run(session, config=config, run=run, reason=reason, now=clock.now())
    await sink.refresh()
    if refusal.ask_window_id is not None:
        await sink.post(
            refusal.note,
            blocks=deployment_blocks.missed_blocks(
                window_id=refusal.ask_window_id, change_key=refusal.change.key, text=refusal.note
            ),
        )
    else:
        await sink.post(refusal.note)
    return refusal.change
