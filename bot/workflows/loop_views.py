"""The closed loop's fields in machine-readable output (``changes show --json``, ``advisories list --json``).

Small functions the CLI calls, so the owners of those commands add the fields with one line each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.workflows import exceptions as exception_flow
from bot.workflows import remediation
from storage import artifacts as artifact_store
from storage import exceptions as exception_store
from storage.models import AdvisoryRecord, Change, ExceptionState


async def change_fields(session: AsyncSession, change: Change) -> dict[str, Any]:
    """``artifacts`` (each ``name``, ``url``, ``sha256``, ``status``) and ``advisories`` (ids addressed)."""
    from bot.workflows.delivery import artifact_name

    taken: set[str] = set()
    artifacts = [
        {
            "name": artifact_name(a.url, taken=taken),
            "url": a.url,
            "sha256": a.sha256,
            "sha512": a.sha512,
            "signer": a.signer,
            "status": a.status,
            "verified_sha256": a.verified_sha256,
            "verified_at": a.verified_at.isoformat() if a.verified_at else None,
        }
        for a in await artifact_store.for_change(session, change.id)
    ]
    advisories = [r.primary_id for r in await remediation.addressed(session, change)]
    return {"artifacts": artifacts, "advisories": advisories}


async def advisory_fields(session: AsyncSession, records: Sequence[AdvisoryRecord]) -> dict[int, dict[str, Any]]:
    """Per advisory id: ``status`` (with the loop's statuses), ``exception`` (``{kind, until, approved_by,
    system, justification, renewals}`` of the latest approved one, else None) and ``remediated_at``."""
    approved = await exception_store.in_states(session, [ExceptionState.APPROVED], advisory_ids=[r.id for r in records])
    out: dict[int, dict[str, Any]] = {}
    for r in records:
        mine = [e for e in approved if e.advisory_id == r.id]
        latest = mine[-1] if mine else None
        out[r.id] = {
            "status": r.status.value,
            "exception": None
            if latest is None
            else {
                "kind": latest.kind.value,
                "until": latest.until.isoformat(),
                "approved_by": exception_flow.approved_by(latest),
                "system": latest.system,
                "justification": latest.justification,
                "renewals": latest.renewals,
            },
            "remediated_at": r.remediated_at.isoformat() if r.remediated_at else None,
            "still_vulnerable": list(r.remediation.get("still", [])),
        }
    return out
