"""Digests: one Slack message per system instead of hundreds of posts when a poll finds many new matches.

When one batch (a first import, a large re-match) newly affects a system with more than
``advisories.digest_over`` advisories, the records that are new only on such systems and not yet posted are
marked ``digested_at`` and one digest per system is queued in the outbox *in the same transaction*, so a
digest is never lost between the commit and Slack. The digest gives the counts by priority tier, the most
urgent items with their buttons, and the commands that list every one (``/patch advisories S``, page by
page, in Slack; ``patchwarden advisories list --system S`` on the command line). Later polls below the
threshold post individually as before. Digested records are reminded and escalated together, one message
per system and sweep (:func:`nudge_text`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.blocks import advisory as blocks
from bot.blocks.common import escape, mentions, slack_date
from bot.config import Config
from bot.workflows import advisory_triage as triage
from bot.workflows.advisories import Ingested, IngestResult
from storage import advisories as store
from storage import advisory_bulk as bulk
from storage import outbox
from storage.models import AdvisoryMatch

TOP = 5  # items with buttons in a digest


def list_command(system: str) -> str:
    """The command that lists every match of a system (the digest's "and the rest")."""
    return f"patchwarden advisories list --system {system}"


def slack_command(system: str) -> str:
    """The Slack command that pages through every advisory of a system."""
    return f"/patch advisories {system}"


async def plan(session: AsyncSession, *, config: Config, result: IngestResult, now: datetime) -> None:
    """Turn the batch's new matches into digests where a system got more than ``digest_over`` of them."""
    chosen = await _digest(session, config=config, items=result.changed, now=now, digests=result.digests)
    result.changed = [replace(i, digested=True) if i.record_id in chosen else i for i in result.changed]


async def plan_pending(session: AsyncSession, *, config: Config, record_ids: list[int], now: datetime) -> set[int]:
    """The sweep's unposted records (an SBOM import, a poll without Slack): digest where a system has too many."""
    systems: dict[int, set[str]] = {}
    for m in await store.matches(session, record_ids):
        systems.setdefault(m.advisory_id, set()).add(m.system)
    items = [Ingested(i, True, new_systems=tuple(sorted(systems.get(i, ())))) for i in record_ids]
    return await _digest(session, config=config, items=items, now=now, digests={})


async def _digest(
    session: AsyncSession, *, config: Config, items: list[Ingested], now: datetime, digests: dict[str, list[int]]
) -> set[int]:
    by_system: dict[str, list[Ingested]] = {}
    for item in items:
        for system in item.new_systems:
            by_system.setdefault(system, []).append(item)
    over = {s for s, group in by_system.items() if len(group) > config.advisories.digest_over}
    if not over:
        return set()
    candidates = [i for i in items if i.new_systems and set(i.new_systems) <= over]
    records = await bulk.get_many(session, [i.record_id for i in candidates])
    chosen = {
        i.record_id
        for i in candidates
        if records[i.record_id].channel is None and records[i.record_id].digested_at is None
    }
    await bulk.mark_digested(session, sorted(chosen), now=now)
    for system in sorted(over):
        ids = sorted(i.record_id for i in by_system[system] if i.record_id in chosen)
        if ids:
            digests[system] = ids
            await _queue(session, config=config, system=system, record_ids=ids, now=now)
    return chosen


def _rank(config: Config, matches: Sequence[AdvisoryMatch]) -> list[AdvisoryMatch]:
    order = triage.tier_order(config)
    return sorted(matches, key=lambda m: (order.get(m.priority, len(order)), m.due or datetime.max, m.advisory_id))


async def _queue(session: AsyncSession, *, config: Config, system: str, record_ids: list[int], now: datetime) -> None:
    channel = config.slack.advisories_channel
    if channel is None:
        return  # nowhere to post: the list command still shows every match
    matches = [m for m in await store.matches(session, record_ids) if m.system == system]
    order = triage.tier_order(config)
    counts = sorted(Counter(m.priority for m in matches).items(), key=lambda kv: order.get(kv[0], len(order)))
    top_ids = list(dict.fromkeys(m.advisory_id for m in _rank(config, matches)))[:TOP]
    top = await triage.views(session, list((await bulk.get_many(session, top_ids)).values()), config=config)
    top.sort(key=lambda v: top_ids.index(v.record.id))
    body = blocks.digest(
        config,
        system=system,
        counts=counts,
        top=top,
        total=len(record_ids),
        commands=(slack_command(system), list_command(system)),
    )
    key = "advisory-digest:" + hashlib.sha256(f"{system}:{now.isoformat()}:{record_ids}".encode()).hexdigest()[:40]
    await outbox.enqueue(
        session, key=key, channel=channel, text=blocks.digest_text(system, len(record_ids)), blocks=body, now=now
    )


def nudge_text(
    config: Config,
    *,
    kind: str,
    system: str,
    items: list[tuple[str, str]],
    people: Sequence[str],
    due: datetime | None = None,
) -> str:
    """One reminder or escalation for the digested records of a system that reached it together (id, tier)."""
    order = triage.tier_order(config)
    counts = sorted(Counter(t for _, t in items).items(), key=lambda kv: order.get(kv[0], len(order)))
    by_tier = ", ".join(f"{n} {escape(t or 'unranked')}" for t, n in counts)
    first = ", ".join(escape(i) for i, _ in sorted(items, key=lambda x: order.get(x[1], len(order)))[:TOP])
    every = f"Every one: `{slack_command(system)}` (page by page) or `{list_command(system)}`."
    if kind == "reminder":
        when = f" from {slack_date(due, fmt='{date_short}')}" if due is not None else ""
        return (
            f":bell: {len(items)} advisories on `{escape(system)}` fall due{when} ({by_tier}), among them {first}: "
            f"{mentions(people)}, please remediate. {every}"
        )
    return (
        f":rotating_light: {len(items)} advisories on `{escape(system)}` are *overdue* ({by_tier}), among them "
        f"{first}. Escalating to {mentions(people)}. {every}"
    )
