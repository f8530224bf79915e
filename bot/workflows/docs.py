"""The technical documentation is revised after each update (issue 12, item 4).

After a change completes in prod, :func:`request` opens a pending confirmation (once per change) naming the
systems' ``docs_url``; the change shows "documentation pending" until an owner of its systems or its update
officer confirms with :func:`confirm` (optionally with a link to the revised page). A pending confirmation
older than ``policy.docs_remind_after`` is reminded once (:func:`due_reminders`, run by ``bot.jobs``); the
compliance report counts the pending ones. Every step is in the control log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks.common import escape, mention, mentions
from bot.config import Config
from bot.errors import ConflictError, InputError, PermissionDeniedError
from bot.workflows import lifecycle
from storage import docs as store
from storage.models import Change, DocsConfirmation, DocsState

MAX_LINK = 500


def urls(config: Config, change: Change) -> list[str]:
    """The ``docs_url`` of the change's systems that have one."""
    return [u for s in change.systems if s in config.systems and (u := config.systems[s].docs_url)]


def confirmers(config: Config, change: Change) -> list[str]:
    """Who may confirm: the owners of the change's systems and its update officer."""
    owners = [config.systems[s].owner for s in change.systems if s in config.systems]
    return list(dict.fromkeys([*owners, change.officer]))


async def request(session: AsyncSession, *, config: Config, change: Change, now: datetime) -> str | None:
    """Open the pending confirmation after completion; the thread note, or None if it was asked already."""
    pairs = [(s, u) for s in change.systems if s in config.systems and (u := config.systems[s].docs_url)]
    found = [u for _, u in pairs]
    if not await store.ask(session, change_id=change.id, url="\n".join(found), now=now):
        return None
    people = confirmers(config, change)
    await lifecycle.log(
        session, config=config, now=now, actor="scheduler", action="docs_requested", change=change,
        urls=found, confirmers=people,
    )  # fmt: skip
    where = " (" + ", ".join(f"<{u}|{escape(s)}>" for s, u in pairs) + ")"
    return (
        f":memo: {change.key} is complete. {mentions(people)}: please revise the technical documentation"
        f"{where if found else ''} and confirm here. Until then {change.key} shows *documentation pending*."
    )


def clean_link(link: str) -> str:
    """The optional link, stripped; an ``InputError`` (shown under the field) unless it is one http(s) URL."""
    link = link.strip()
    if not link:
        return ""
    if len(link) > MAX_LINK or not link.startswith(("https://", "http://")) or any(c in link for c in " <>|\n"):
        raise InputError(
            f"The link must be one http(s) URL of at most {MAX_LINK} characters; nothing was saved.",
            field_errors={"link": "Give one http(s) URL, or leave it empty."},
        )
    return link


async def confirm(
    session: AsyncSession, *, config: Config, change_id: int, user: str, link: str, now: datetime
) -> Change:
    """Record that the documentation was revised; raises with a message a person can act on."""
    clean = clean_link(link)
    change = await lifecycle.load(session, change_id, lock=True)
    people = confirmers(config, change)
    if user not in people:
        raise PermissionDeniedError(
            f"{user} may not confirm documentation of {change.key}",
            user_message=f"Only a system owner or the update officer of {change.key} can confirm "
            f"its documentation ({mentions(people)}).",
        )
    row = await store.get(session, change.id)
    if row is None:
        raise ConflictError("no docs request", user_message=f"{change.key} is not waiting for documentation.")
    if not await store.confirm(session, change_id=change.id, user=user, link=clean, now=now):
        row = await store.get(session, change.id)
        who = mention(row.confirmed_by) if row is not None and row.confirmed_by else "someone"
        raise ConflictError(
            "docs confirmed", user_message=f"{who} already confirmed the documentation of {change.key}."
        )
    await lifecycle.log(session, config=config, now=now, actor=user, action="docs_confirmed", change=change, link=clean)
    return change


@dataclass(frozen=True)
class Reminder:
    change: Change
    text: str


async def due_reminders(session: AsyncSession, *, config: Config, now: datetime) -> list[Reminder]:
    """Claim every pending confirmation older than ``docs_remind_after`` not reminded yet; the notes to post."""
    out = []
    for row in await store.due_reminders(session, asked_before=now - config.policy.docs_remind_after):
        if not await store.mark_reminded(session, row.id, now=now):
            continue
        change = await lifecycle.load(session, row.change_id)
        await lifecycle.log(session, config=config, now=now, actor="scheduler", action="docs_reminded", change=change)
        text = (
            f":memo: Reminder: the documentation of {change.key} is still pending. "
            f"{mentions(confirmers(config, change))}: revise it and confirm here."
        )
        out.append(Reminder(change, text))
    return out


def view_of(row: DocsConfirmation | None, *, config: Config, change: Change) -> dict[str, object]:
    """``docs`` of ``changes show --json``: ``not_due`` until completion, then ``pending`` or ``confirmed``."""
    if row is None:
        return {"status": "not_due", "confirmed_by": None, "at": None, "url": next(iter(urls(config, change)), None)}
    url = row.link or (row.url.splitlines()[0] if row.url else None)
    at = row.confirmed_at.isoformat() if row.confirmed_at is not None else None
    return {"status": row.state.value, "confirmed_by": row.confirmed_by, "at": at, "url": url}


async def view(session: AsyncSession, *, config: Config, change: Change) -> dict[str, object]:
    """The ``docs`` read model of one change."""
    return view_of(await store.get(session, change.id), config=config, change=change)


async def pending(session: AsyncSession, change: Change) -> bool:
    """Whether the change shows "documentation pending"."""
    row = await store.get(session, change.id)
    return row is not None and row.state is DocsState.PENDING


async def count_pending(session: AsyncSession) -> int:
    """How many changes have their documentation pending (the compliance report)."""
    return await store.count_pending(session)
