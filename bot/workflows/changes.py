"""Change requests: create, edit (which makes earlier approvals stale), cancel."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import crypto
from bot.blocks.change_list import PER_PAGE
from bot.config import Config
from bot.errors import IllegalTransitionError, InputError, PermissionDeniedError
from bot.views import ChangeInput, state_label
from bot.workflows import announcements, lifecycle
from storage import artifacts as artifact_store
from storage import audit, changes
from storage.models import EDITABLE, PENDING_APPROVAL, TERMINAL, Artifact, Change, ChangeClass, ChangeState, stage_of

# Fields whose change requires new approvals (the approvable content), in display order.
APPROVABLE_FIELDS: dict[str, str] = {
    "systems": "Systems",
    "title": "Title",
    "details": "Details and purpose",
    "technical": "Technical description",
    "change_class": "Class",
    "officer": "Update officer",
    "operator": "Update operator",
    "planned_test": "Planned test date",
    "planned_prod": "Planned production date",
    "expected_downtime": "Expected downtime",
    "rollback_plan": "Rollback plan",
    "advisory_ref": "Linked advisory",
}


MAX_DOWNTIME = timedelta(days=7)
_DURATION = re.compile(r"(\d+(?:[.,]\d+)?)\s*(w|weeks?|d|days?|h|hrs?|hours?|m|mins?|minutes?)\b", re.I)
_ENDLESS = re.compile(r"\b(forever|indefinite(ly)?|infinite|endless|unknown|unlimited)\b", re.I)
_UNIT = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}


def downtime_problem(text: str) -> str | None:
    """Why an expected downtime would mislead a reviewer (endless, or above ``MAX_DOWNTIME``), else None.

    The field stays free text ("about 10 minutes", "none"): only what no reviewer could plan with is refused."""
    if _ENDLESS.search(text):
        return "Give the downtime as a duration a reviewer can plan with, e.g. 15 minutes or 2h (at most 7 days)."
    total = sum(
        (_UNIT[unit[0].lower()] * float(n.replace(",", ".")) for n, unit in _DURATION.findall(text)), timedelta()
    )
    if total > MAX_DOWNTIME:
        return "That is more than 7 days of downtime; split the change, or give the real estimate."
    return None


def validate_input(config: Config, raw: dict[str, object], *, now: datetime | None = None) -> ChangeInput:
    """Validate form values; InputError.field_errors maps each bad field (block id) to a message.

    With ``now``, planned dates already past everywhere on Earth (UTC-12) are refused."""
    errors: dict[str, str] = {}
    today = (now - timedelta(hours=12)).date() if now is not None else None
    try:
        data = ChangeInput.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            if ":" in msg and not loc:
                loc, msg = (part.strip() for part in msg.split(":", 1))
            errors.setdefault(loc or "title", _friendly(err["type"], msg))
        raise InputError("invalid change request", field_errors=errors) from exc
    unknown = [s for s in data.systems if s not in config.systems]
    if unknown:
        known = ", ".join(sorted(config.systems))
        raise InputError(
            "unknown system",
            field_errors={"systems": f"Unknown system {', '.join(unknown)}. Known: {known}."},
        )
    if data.change_class is ChangeClass.EMERGENCY and not data.details:
        errors["details"] = "An emergency change needs its reason in the details."
    for field, planned in (("planned_test", data.planned_test), ("planned_prod", data.planned_prod)):
        if today is not None and planned is not None and planned < today:
            errors[field] = f"That date has passed; plan for {today.isoformat()} or later."
    if (problem := downtime_problem(data.expected_downtime)) is not None:
        errors["expected_downtime"] = problem
    if not data.rollback_plan.strip():
        errors["rollback_plan"] = "Say how to undo this change if it breaks (the approvers rely on it)."
    if errors:
        raise InputError("invalid change request", field_errors=errors)
    return data


def _friendly(kind: str, msg: str) -> str:
    if kind == "string_too_short":
        return "Please fill this in (at least 3 characters)."
    if kind == "string_pattern_mismatch":
        return "Pick a person."
    if kind in ("date_from_datetime_parsing", "date_parsing"):
        return "Use a date like 2026-12-06."
    return msg[:1].upper() + msg[1:] + ("" if msg.endswith(".") else ".")


def content_hash(data: ChangeInput, artifacts: Sequence[Artifact] = ()) -> str:
    """Hash of the approvable content (the fields and every artifact's URL, digests and signer): approvals
    are bound to it. Without artifacts it is the hash of the fields alone, as before artifacts counted."""
    content: dict[str, object] = data.model_dump(mode="json")
    if artifacts:
        content["artifacts"] = [
            {"url": a.url, "sha256": a.sha256, "sha512": a.sha512, "signature_url": a.signature_url, "signer": a.signer}
            for a in artifacts
        ]
    return crypto.sha256_hex(audit.canonical(content).encode())


async def rebind(
    session: AsyncSession, *, config: Config, change: Change, editor: str, now: datetime, changed: tuple[str, ...]
) -> EditOutcome:
    """The approvable content changed outside the form (an artifact attached or removed): new revision,
    new content hash, earlier approvals stale, the stage asks for approval again. ``change`` is locked."""
    change.revision += 1
    change.last_editor = editor
    change.content_hash = content_hash(as_input(change), await artifact_store.for_change(session, change.id))
    change.updated_at = now
    await session.flush()
    stale = await changes.mark_stale(session, change.id, before_revision=change.revision)
    await lifecycle.log(
        session, config=config, now=now, actor=editor, action="edited", change=change, revision=change.revision,
        changed=list(changed), content_hash=change.content_hash, stale_approvals=stale,
    )  # fmt: skip
    if change.state is not ChangeState.DRAFT:
        stage = stage_of(change.state) or "test"
        await lifecycle.transition(
            session, config=config, change=change, to=PENDING_APPROVAL[stage], actor=editor, now=now,
            reason=f"edited (revision {change.revision}): approval needed again",
        )  # fmt: skip
    return EditOutcome(change, changed, stale)


def _fields(data: ChangeInput) -> dict[str, object]:
    values = data.model_dump()
    values["planned_test"] = data.planned_test.isoformat() if data.planned_test else None
    values["planned_prod"] = data.planned_prod.isoformat() if data.planned_prod else None
    return values


def as_input(change: Change) -> ChangeInput:
    """The editable content of an existing change."""
    return ChangeInput(
        systems=list(change.systems),
        title=change.title,
        details=change.details,
        technical=change.technical,
        change_class=change.change_class,
        officer=change.officer,
        operator=change.operator,
        planned_test=date.fromisoformat(change.planned_test) if change.planned_test else None,
        planned_prod=date.fromisoformat(change.planned_prod) if change.planned_prod else None,
        expected_downtime=change.expected_downtime,
        rollback_plan=change.rollback_plan,
        advisory_ref=change.advisory_ref,
    )


async def create(session: AsyncSession, *, config: Config, data: ChangeInput, requester: str, now: datetime) -> Change:
    """Store a new change and submit it for test approval."""
    change = Change(
        state=ChangeState.DRAFT,
        requester=requester,
        last_editor=requester,
        revision=1,
        content_hash=content_hash(data),
        policy_version=config.policy.version,
        created_at=now,
        updated_at=now,
        version=1,
        **_fields(data),
    )
    await changes.add(session, change)
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=requester,
        action="created",
        change=change,
        title=change.title,
        systems=list(change.systems),
        content_hash=change.content_hash,
    )
    await lifecycle.transition(
        session,
        config=config,
        change=change,
        to=ChangeState.PENDING_TEST_APPROVAL,
        actor=requester,
        now=now,
        reason="submitted",
    )
    return change


@dataclass(frozen=True)
class EditOutcome:
    change: Change
    changed: tuple[str, ...]  # labels of the fields that changed
    stale: int  # approvals that no longer count


async def edit(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    data: ChangeInput,
    editor: str,
    now: datetime,
) -> EditOutcome:
    """Apply an edit. Any change of approvable content bumps the revision and asks for approval again."""
    change = await lifecycle.load(session, change_id, lock=True)
    if change.state not in EDITABLE:
        raise IllegalTransitionError(
            f"{change.key} not editable in {change.state}",
            user_message=f"{change.key} is *{state_label(change.state)}* and can no longer be edited.",
        )
    old, new = _fields(as_input(change)), _fields(data)
    changed = tuple(APPROVABLE_FIELDS[k] for k in APPROVABLE_FIELDS if old[k] != new[k])
    if not changed:
        return EditOutcome(change, (), 0)
    for key, value in new.items():
        setattr(change, key, value)
    change.revision += 1
    change.last_editor = editor
    change.content_hash = content_hash(data, await artifact_store.for_change(session, change.id))
    change.updated_at = now
    await session.flush()
    stale = await changes.mark_stale(session, change.id, before_revision=change.revision)
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=editor,
        action="edited",
        change=change,
        revision=change.revision,
        changed=list(changed),
        content_hash=change.content_hash,
        stale_approvals=stale,
    )
    stage = stage_of(change.state) or "test"
    await lifecycle.transition(
        session,
        config=config,
        change=change,
        to=PENDING_APPROVAL[stage],
        actor=editor,
        now=now,
        reason=f"edited (revision {change.revision}): approval needed again",
    )
    # bookings were made for the old revision: off, and its users told (a re-approval books anew)
    await announcements.cancel_bookings(
        session, config=config, change=change, now=now, why=f"it was edited (revision {change.revision})"
    )
    return EditOutcome(change, changed, stale)


def may_cancel(config: Config, change: Change, user: str) -> bool:
    """Requester, update officer, system owners, operators and the fallback group may cancel."""
    owners = {config.systems[s].owner for s in change.systems if s in config.systems}
    allowed = {change.requester, change.officer, *owners}
    allowed |= config.group(config.policy.operators) | config.group(config.policy.fallback)
    return user in allowed


async def cancel(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    actor: str,
    reason: str,
    now: datetime,
) -> Change:
    """Cancel an open change with a reason."""
    change = await lifecycle.load(session, change_id, lock=True)
    if not may_cancel(config, change, actor):
        raise PermissionDeniedError(
            f"{actor} may not cancel {change.key}",
            user_message=f"Only the requester, the update officer, the system owners, operators or "
            f"the {config.policy.fallback} group can cancel {change.key}.",
        )
    if change.state in TERMINAL:
        raise IllegalTransitionError(
            f"{change.key} already {change.state}",
            user_message=f"{change.key} is already *{state_label(change.state)}*.",
        )
    await lifecycle.transition(
        session, config=config, change=change, to=ChangeState.CANCELLED, actor=actor, now=now, reason=reason
    )
    return change


async def listing(session: AsyncSession, *, scope: str, user: str, page: int = 1) -> tuple[list[Change], int]:
    """``/patch list``: one page of ``pending`` (awaiting approval), ``mine`` (open, involving ``user``) or ``all``
    changes, newest first, and how many there are in all (the reply names the next page)."""
    open_states = [s for s in ChangeState if s not in TERMINAL]
    states = list(PENDING_APPROVAL.values()) if scope == "pending" else None if scope == "all" else open_states
    involving = user if scope == "mine" else None
    total = await changes.count_changes(session, states=states, involving=involving)
    rows = await changes.list_changes(
        session, states=states, involving=involving, limit=PER_PAGE, offset=(page - 1) * PER_PAGE
    )
    return rows, total
