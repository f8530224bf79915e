"""Announcements by e-mail: one outbox row per recipient, queued beside the Slack announcement.

Recipients are each affected system's ``announce_email`` (addresses, or people whose ``people.<id>.email``
is configured). A person who typed ``/patch unsubscribe SYSTEM`` gets no maintenance mail about it, but
emergency notices (an emergency window, or an emergency change deployed outside a window) reach everyone.
The outbox key is the Slack announcement's plus a hash of the address, so a repeated call queues nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot import mail
from bot.blocks.announcement import AnnouncementKind
from bot.config import Config
from bot.errors import NotFoundError
from bot.mail import compose
from storage import outbox, people
from storage.models import Change, ChangeClass, Stage, Window


def recipients(config: Config, systems: list[str], stage: Stage) -> dict[str, list[tuple[str, str | None]]]:
    """Per system, its (address, Slack user or None) pairs to mail for ``stage`` (test only where announced)."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for name in systems:
        system = config.systems.get(name)
        if system is None or not system.announce_email or (stage != "prod" and not system.announce_test):
            continue
        for who in system.announce_email:
            if "@" in who:
                out.setdefault(name, []).append((who, None))
                continue
            person = config.people.get(who)
            if person is not None and person.email:
                out.setdefault(name, []).append((person.email, who))
    return out


def _contact(config: Config, change: Change) -> str:
    person = config.people.get(change.officer)
    return f"the update officer ({person.email})" if person is not None and person.email else "the update officer"


async def queue(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    window: Window | None,
    kind: AnnouncementKind,
    now: datetime,
    key: str,
    stage: Stage,
    note: str = "",
    previous: Window | None = None,
) -> int:
    """Queue the e-mails of one announcement (``key`` is the announcement's key); returns how many are new."""
    if config.smtp is None:
        return 0
    systems = list(window.systems) if window is not None else list(change.systems)
    per_system = recipients(config, systems, stage)
    if not per_system:
        return 0
    # an emergency notice: a window booked past the rules, or an emergency change running outside any window
    emergency = window.emergency if window is not None else change.change_class is ChangeClass.EMERGENCY
    refused = set() if emergency else await people.opted_out(session, systems=per_system)
    by_address: dict[str, list[str]] = {}
    for system, pairs in per_system.items():
        for address, user in pairs:
            if user is not None and (user, system) in refused:
                continue
            names = by_address.setdefault(address.lower(), [])
            if system not in names:
                names.append(system)
    queued = 0
    for address, names in sorted(by_address.items()):
        text = compose.Announcement(
            kind=kind,
            change_id=change.id,
            change_key=change.key,
            title=change.title,
            details=change.details,
            expected_downtime=change.expected_downtime,
            systems=names,
            stage=stage,
            timezone=config.systems[names[0]].timezone,
            start=window.start if window is not None else None,
            end=window.end if window is not None else None,
            emergency=emergency,
            previous=(previous.start, previous.end) if previous is not None else None,
            note=note,
            contact=_contact(config, change),
        )
        msg = compose.message(text, sender=config.smtp.sender, to=address, now=now)
        digest = hashlib.sha256(address.encode()).hexdigest()[:16]
        queued += await outbox.enqueue(
            session,
            key=f"mail:{key}:{digest}",
            channel=mail.LANE,
            text=compose.wire(msg),
            now=now,
            change_id=change.id,
            mail_to=address,
        )
    return queued


async def subscribe(session: AsyncSession, *, config: Config, user: str, system: str, on: bool, now: datetime) -> bool:
    """Opt ``user`` in to (``on``) or out of maintenance mail about ``system``; True if anything changed."""
    if system not in config.systems:
        known = ", ".join(f"`{s}`" for s in sorted(config.systems))
        raise NotFoundError(f"unknown system {system!r}", user_message=f"No system is called that. Known: {known}.")
    if on:
        return await people.opt_in(session, user_id=user, system=system)
    return await people.opt_out(session, user_id=user, system=system, now=now)
