"""The outbox: Slack messages written in the same transaction as the event they report, sent exactly once.

* ``enqueue`` is idempotent by ``key`` (unique column, ``INSERT ... ON CONFLICT DO NOTHING``).
* ``claim_due`` hands a row to one sender with a lease (compare-and-set on ``lease_until``), counting the
  attempt *before* the post. A row whose lease expired while ``lease_owner`` is still set was held by a
  sender that may have posted and died: it comes back as ``recovered`` and the sender looks for the key
  in the channel's history before posting again.
* ``mark_sent``, ``release`` and ``fail`` only touch a row the caller still holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxMessage, OutboxState


@dataclass(frozen=True)
class Claim:
    """A row a sender holds a lease on (a detached copy: safe to use after the transaction)."""

    id: int
    key: str
    channel: str
    thread_ts: str | None
    text: str
    blocks: list[Any]
    attempts: int  # including this one
    recovered: bool  # the previous holder's lease expired: it may have posted
    change_id: int | None
    mail_to: str | None = None  # an e-mail to this address (``text`` is the whole message), not a Slack post


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    channel: str,
    text: str,
    now: datetime,
    blocks: Sequence[Any] = (),
    thread_ts: str | None = None,
    not_before: datetime | None = None,
    change_id: int | None = None,
    mail_to: str | None = None,
) -> bool:
    """Queue one message; True if new, False if a message with ``key`` was queued before.

    With ``mail_to`` the row is an e-mail: ``text`` holds the whole RFC 5322 message and ``channel`` names
    the pacing lane (``bot.mail.LANE``)."""
    values = {
        "key": key,
        "channel": channel,
        "thread_ts": thread_ts,
        "text": text,
        "blocks": list(blocks),
        "not_before": not_before or now,
        "state": OutboxState.PENDING,
        "attempts": 0,
        "last_error": "",
        "created_at": now,
        "change_id": change_id,
        "mail_to": mail_to,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(OutboxMessage).values(**values).on_conflict_do_nothing(index_elements=["key"])
    result = await session.execute(stmt)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _claimable(now: datetime, wall: datetime) -> Any:
    # ``not_before`` is business time (the bot's clock); a lease runs on the wall clock, so a clock that
    # skips ahead (the sandbox) cannot expire a lease whose post is still in flight
    return (
        (OutboxMessage.state == OutboxState.PENDING)
        & (OutboxMessage.not_before <= now)
        & or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < wall)
    )


async def claim_due(
    session: AsyncSession,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int = 500,
    per_channel: int = 10,
    wall: datetime | None = None,
) -> list[Claim]:
    """Lease up to ``limit`` due rows (at most ``per_channel`` per channel, oldest first) to ``owner``.

    The lease ends at ``wall + lease`` (``wall``: the wall clock, default ``now``). Each claim counts an
    attempt; that count is the claim's fencing token (``Claim.attempts``): every later update of the row
    by this holder names it, so a holder whose lease was taken over can change nothing.
    """
    wall = wall or now
    stmt = (
        select(OutboxMessage)
        .where(_claimable(now, wall))
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Another sender's candidates are skipped, not waited for; the CAS below is still the guard.
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.execute(stmt)).scalars())
    taken: dict[str, int] = {}
    claims: list[Claim] = []
    for row in rows:
        if taken.get(row.channel, 0) >= per_channel:
            continue
        result = await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id, _claimable(now, wall))
            .values(lease_owner=owner, lease_until=wall + lease, attempts=OutboxMessage.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue
        taken[row.channel] = taken.get(row.channel, 0) + 1
        claims.append(
            Claim(
                id=row.id,
                key=row.key,
                channel=row.channel,
                thread_ts=row.thread_ts,
                text=row.text,
                blocks=list(row.blocks or []),
                attempts=row.attempts + 1,
                recovered=row.lease_owner is not None and row.attempts > 0,
                change_id=row.change_id,
                mail_to=row.mail_to,
            )
        )
    return claims


def _held(message_id: int, owner: str, token: int | None) -> Any:
    held = (
        (OutboxMessage.id == message_id)
        & (OutboxMessage.state == OutboxState.PENDING)
        & (OutboxMessage.lease_owner == owner)
    )
    return held if token is None else held & (OutboxMessage.attempts == token)


async def renew(
    session: AsyncSession, message_id: int, *, owner: str, token: int, wall: datetime, lease: timedelta
) -> bool:
    """Extend a held lease while its post is in flight; False if it was lost (fenced out)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(_held(message_id, owner, token), OutboxMessage.lease_until.is_not(None))
        .values(lease_until=wall + lease)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def mark_sent(session: AsyncSession, message_id: int, *, owner: str, ts: str, token: int | None = None) -> bool:
    """Record the posted message's ts; False if the lease was lost meanwhile."""
    result = await session.execute(
        update(OutboxMessage)
        .where(_held(message_id, owner, token))
        .values(state=OutboxState.SENT, sent_ts=ts, lease_until=None, lease_owner=None, last_error="")
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def release(
    session: AsyncSession,
    message_id: int,
    *,
    owner: str,
    retry_at: datetime,
    error: str,
    maybe_posted: bool,
    refund: bool = False,
    token: int | None = None,
) -> bool:
    """Give a row back for a later attempt at ``retry_at``.

    ``maybe_posted`` (a timeout or server error: Slack may have posted it) keeps ``lease_owner`` set, so
    the next claim is ``recovered`` and checks the channel history first. ``refund`` takes back the
    attempt (a 429 means Slack posted nothing; rate limits must not use up the retry budget).
    """
    # the lease ends now either way; the retry waits on ``not_before`` (business time)
    values: dict[str, Any] = {"last_error": error[:500], "lease_until": None, "not_before": retry_at}
    if not maybe_posted:
        values.update(lease_owner=None)
    if refund:
        values["attempts"] = OutboxMessage.attempts - 1
    result = await session.execute(
        update(OutboxMessage)
        .where(_held(message_id, owner, token))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def fail(session: AsyncSession, message_id: int, *, owner: str, error: str, token: int | None = None) -> bool:
    """Give up on a row (FAILED); True for the one caller that did it (it reports the failure)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(_held(message_id, owner, token))
        .values(state=OutboxState.FAILED, lease_until=None, lease_owner=None, last_error=error[:500])
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def by_key(session: AsyncSession, key: str) -> OutboxMessage | None:
    """The row queued under ``key``."""
    stmt = select(OutboxMessage).where(OutboxMessage.key == key).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def for_change(session: AsyncSession, change_id: int) -> list[OutboxMessage]:
    """Every message queued about a change, in order."""
    stmt = select(OutboxMessage).where(OutboxMessage.change_id == change_id).order_by(OutboxMessage.id)
    return list((await session.execute(stmt)).scalars())


async def count(session: AsyncSession, *, state: OutboxState) -> int:
    """How many rows are in ``state``."""
    stmt = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state == state)
    return int((await session.execute(stmt)).scalar_one())


async def drop(session: AsyncSession, message_id: int, *, owner: str, token: int, reason: str) -> bool:
    """Cancel a held row that must not be sent any more (a reminder whose window has started)."""
    result = await session.execute(
        update(OutboxMessage)
        .where(_held(message_id, owner, token))
        .values(state=OutboxState.CANCELLED, lease_until=None, lease_owner=None, last_error=reason[:500])
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
