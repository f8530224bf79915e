"""Read models: everything a card, a status reply or ``changes show --json`` needs, in one snapshot."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.views import ChangeSnapshot
from bot.workflows import approval, auto_approval, docs, plan_preview, presence
from storage import advisories, cards, changes, deployments, reports, windows
from storage.models import AuditEntry, Change, stage_of


async def snapshot(session: AsyncSession, *, config: Config, change: Change, history: bool = False) -> ChangeSnapshot:
    """Load approvals (and optionally the control-log history) and evaluate the current stage."""
    stage = stage_of(change.state)
    rows = tuple(await changes.approvals(session, change.id))
    progress = approval.progress_from(config, change=change, stage=stage, rows=rows) if stage else None
    entries: tuple[AuditEntry, ...] = ()
    if history:
        stmt = select(AuditEntry).where(AuditEntry.change_id == change.id).order_by(AuditEntry.seq)
        entries = tuple((await session.execute(stmt)).scalars())
    booked = tuple(await windows.for_change(session, change.id))
    deployed = tuple(await deployments.for_change(session, change.id))
    plans = tuple(
        plan_preview.current(
            await reports.for_change(session, change.id, kind=plan_preview.KIND), change=change, stage=stage
        )
    )
    auto = await auto_approval.status(session, config=config, change=change) if config.policy.auto_approve else None
    results = await reports.for_change(session, change.id, kind="test_result")
    test_result = str(results[-1].payload.get("result", "recorded")) if results else None
    return ChangeSnapshot(
        change,
        stage,
        progress,
        rows,
        entries,
        booked,
        deployed,
        plans,
        test_result=test_result,
        advisory_link=await _advisory_link(session, change),
        auto=auto,
        presence=await presence.view(session, config=config, change=change),
        docs=await docs.view(session, config=config, change=change),
        log_seq=entries[-1].seq if entries else await cards.log_seq(session, change.id),
    )


async def _advisory_link(session: AsyncSession, change: Change) -> str | None:
    """A Slack archive link to the post of the advisory the change is linked to (by id or alias)."""
    linked = await advisories.linked_to_change(session, change.id)
    record = next((r for r in linked if r.channel and r.message_ts), None)
    if record is None or not record.channel or not record.message_ts:
        return None
    return f"https://slack.com/archives/{record.channel}/p{record.message_ts.replace('.', '')}"


def to_json(snap: ChangeSnapshot) -> dict[str, Any]:
    """The machine-readable form used by ``patchwarden changes show --json``."""
    c = snap.change
    return {
        "id": c.key,
        "state": c.state.value,
        "title": c.title,
        "systems": list(c.systems),
        "class": c.change_class.value,
        "requester": c.requester,
        "officer": c.officer,
        "operator": c.operator,
        "revision": c.revision,
        "content_hash": c.content_hash,
        "planned_test": c.planned_test,
        "planned_prod": c.planned_prod,
        "approval_deadline": c.approval_deadline.isoformat() if c.approval_deadline else None,
        "created_at": c.created_at.isoformat(),
        "updated_at": c.updated_at.isoformat(),
        "approvals": [
            {
                "stage": a.stage,
                "user": a.user_id,
                "decision": a.decision.value,
                "time": a.decided_at.isoformat(),
                "stale": a.stale,
                "revision": a.revision,
                "requirement": a.requirement,
                "reason": a.reason,
                "step_up": a.step_up,
                "delegated_from": a.delegated_from,
            }
            for a in snap.approvals
        ],
        "windows": [
            {
                "stage": w.stage,
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "state": w.state.value,
                "systems": list(w.systems),
                "emergency": w.emergency,
            }
            for w in snap.windows
        ],
        "deployments": [
            {
                "stage": d.stage,
                "system": d.system,
                "executor": d.executor,
                "status": d.status.value,
                "run_id": d.run_id,
                "started_by": d.started_by,
                "started": d.started_at.isoformat(),
                "finished": d.finished_at.isoformat() if d.finished_at else None,
                "steps": [{k: v for k, v in step.items() if k != "targets"} for step in d.steps],
                "targets": [{"step": step.get("step"), **t} for step in d.steps for t in step.get("targets", [])],
                "rings": list(d.rings or []),
                "reboot": d.reboot,
                "credential": d.credential,
            }
            for d in snap.deployments
        ],
        "auto_approval": snap.auto.to_json() if snap.auto else None,
        "presence": snap.presence,
        "docs": snap.docs,
        "history": [
            {
                "seq": e.seq,
                "time": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "details": json.loads(e.body).get("details", {}),
            }
            for e in snap.history
        ],
    }


async def pending_for(session: AsyncSession, *, config: Config, user: str) -> list[ChangeSnapshot]:
    """Changes awaiting ``user``'s approval (see ``pending_by_user``)."""
    return (await pending_by_user(session, config=config, users=[user]))[user]


async def pending_by_user(
    session: AsyncSession, *, config: Config, users: Iterable[str]
) -> dict[str, list[ChangeSnapshot]]:
    """Changes awaiting each of ``users``' approval, in two queries whatever their number (the Home tab's hot
    path): each change's progress is worked out once, however many people's Home tabs are refreshed."""
    wanted = set(users)
    out: dict[str, list[ChangeSnapshot]] = {user: [] for user in wanted}
    waiting = await changes.awaiting_approval(session)
    decided = await changes.live_approvals_of(session, [c.id for c in waiting])
    for change in waiting:
        stage = stage_of(change.state)
        if stage is None:
            continue
        progress = approval.progress_from(config, change=change, stage=stage, rows=decided[change.id])
        who = wanted.intersection(progress.pending_people())
        if not who:
            continue
        rows = tuple(a for a in decided[change.id] if a.stage == stage and a.revision == change.revision)
        snap = ChangeSnapshot(change, stage, progress, rows, ())
        for user in who:
            out[user].append(snap)
    return out
