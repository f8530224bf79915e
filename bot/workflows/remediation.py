"""A fix is proven, not assumed: advisories a completed prod change addresses wait for inventory evidence.

With ``policy.verify_fix: inventory`` (the default):

1. when a prod deployment completes, each advisory the change addresses (created from the advisory, i.e.
   ``AdvisoryRecord.change_id``, or named in the request's "Linked advisory" field) goes to
   ``remediation_pending`` (``mark_pending``);
2. evidence is the system's packages after the change: an SBOM the executor wrote to
   ``$PATCHWARDEN_INVENTORY_OUT`` (imported by ``after_prod`` right after verify) or the next
   ``patchwarden inventory import`` (``prove`` is called by both);
3. no affected version left on the change's systems → ``remediated``, ``remediated_at`` = now, time to
   remediate = first seen → verified; an affected version left → ``still_vulnerable`` with the package and
   version, and the SLA keeps running (both statuses are in ``sla.ACTIVE`` until proven).

Every move is compare-and-set on the advisory's status and written to the control log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.advisories import sbom
from bot.advisories.matching import match_packages
from bot.advisories.model import InstalledPackage, MatchStatus
from bot.blocks.common import escape
from bot.config import Config, VerifyFix, format_duration
from bot.deps import Deps
from bot.errors import InputError
from bot.executors.base import StepResult
from bot.slack import thread
from bot.workflows import advisories as advisory_flow
from bot.workflows import lifecycle
from storage import advisories as store
from storage import inventory as inventory_store
from storage.models import AdvisoryAlias, AdvisoryRecord, AdvisoryStatus, Change

if TYPE_CHECKING:
    from bot.workflows.steps import Sink

log = logging.getLogger(__name__)
# Statuses an addressed advisory may leave for remediation_pending when its change completes.
ADDRESSABLE = (
    AdvisoryStatus.OPEN,
    AdvisoryStatus.CHANGE_REQUESTED,
    AdvisoryStatus.STILL_VULNERABLE,
    AdvisoryStatus.REMEDIATION_PENDING,
)


@dataclass(frozen=True)
class Outcome:
    """The verdict of the evidence on one pending advisory."""

    record: AdvisoryRecord
    change_id: int | None
    remediated: bool
    system: str
    still: tuple[str, ...] = ()  # "openssl 3.0.11-1 (fixed in 3.0.13-1)" per affected package left
    time_to_remediate: timedelta | None = None


def load_sbom(text: str, *, where: str) -> list[InstalledPackage]:
    """The packages of a CycloneDX or SPDX JSON SBOM (read by the maintained parsers in bot.advisories.sbom)."""
    try:
        return sbom.load_sbom(text.encode()).packages
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{where}: not a CycloneDX or SPDX JSON SBOM ({type(exc).__name__}: {exc})") from exc


async def addressed(session: AsyncSession, change: Change) -> list[AdvisoryRecord]:
    """The advisories a change addresses: created from it, or named in its "Linked advisory" field."""
    records = {r.id: r for r in await store.linked_to_change(session, change.id)}
    for ref in (part.strip() for part in change.advisory_ref.replace(",", " ").split()):
        alias = await session.get(AdvisoryAlias, ref)
        if alias is not None and alias.advisory_id not in records:
            record = await store.get(session, alias.advisory_id)
            if record is not None:
                records[record.id] = record
    return list(records.values())


async def mark_pending(session: AsyncSession, *, config: Config, change: Change, now: datetime) -> list[AdvisoryRecord]:
    """Step 1: the change completed in prod; its advisories wait for evidence. Returns those moved."""
    moved = []
    for record in await addressed(session, change):
        if record.status not in ADDRESSABLE:
            continue
        evidence = {"change_id": change.id, "systems": list(change.systems), "completed_at": now.isoformat()}
        if await store.compare_and_set(
            session, record, expected=record.status, now=now, status=AdvisoryStatus.REMEDIATION_PENDING,
            change_id=change.id, remediation=evidence,
        ):  # fmt: skip
            await lifecycle.log(
                session, config=config, now=now, actor="patchwarden", action="advisory_remediation_pending",
                change=change, advisory=record.primary_id,
            )  # fmt: skip
            moved.append(record)
    return moved


async def import_sbom(
    session: AsyncSession, *, config: Config, system: str, text: str, source: str, change: Change | None, now: datetime
) -> int:
    """Replace ``system``'s stored packages with an SBOM's (audited); returns the package count."""
    packages = load_sbom(text, where=source)
    count = await inventory_store.replace(
        session, system=system, source=source, packages=[p.model_dump() for p in packages], now=now
    )
    await lifecycle.log(
        session, config=config, now=now, actor="patchwarden", action="inventory_imported", change=change,
        system=system, source=source, packages=count,
    )  # fmt: skip
    return count


async def prove(session: AsyncSession, *, config: Config, system: str, now: datetime) -> list[Outcome]:
    """Steps 2–3: judge every advisory pending on ``system`` by its stored packages, now."""
    stmt = select(AdvisoryRecord).where(AdvisoryRecord.status == AdvisoryStatus.REMEDIATION_PENDING)
    pending = [r for r in (await session.execute(stmt)).scalars() if system in r.remediation.get("systems", [])]
    if not pending:
        return []
    installed = (await advisory_flow.current_inventory(session, config=config)).get(system, [])
    outcomes = []
    for record in pending:
        hits = [
            m
            for m in match_packages([advisory_flow.merged(record)], {system: installed})
            if m.status is MatchStatus.AFFECTED
        ]
        still = tuple(
            f"{m.package.name} {m.package.version}"
            + (f" (fixed in {', '.join(m.fixed_versions)})" if m.fixed_versions else "")
            for m in hits
        )
        evidence = {
            **record.remediation,
            "verified_at": now.isoformat(),
            "evidence_system": system,
            "still": list(still),
        }
        if still:
            fields: dict[str, Any] = {"status": AdvisoryStatus.STILL_VULNERABLE, "remediation": evidence}
        else:
            fields = {"status": AdvisoryStatus.REMEDIATED, "remediated_at": now, "remediation": evidence}
        if not await store.compare_and_set(
            session, record, expected=AdvisoryStatus.REMEDIATION_PENDING, now=now, **fields
        ):
            continue
        ttr = None if still else now - record.first_seen
        change_id = record.remediation.get("change_id")
        await lifecycle.log(
            session, config=config, now=now, actor="patchwarden",
            action="advisory_still_vulnerable" if still else "advisory_remediated",
            advisory=record.primary_id, system=system, still=list(still), change_id=change_id,
            time_to_remediate_s=int(ttr.total_seconds()) if ttr else None,
        )  # fmt: skip
        outcomes.append(Outcome(record, change_id, not still, system, still, ttr))
    return outcomes


def _still(name: str, version: str, fixed: tuple[str, ...]) -> str:
    return f"{name} {version}" + (f" (fixed in {', '.join(fixed)})" if fixed else "")


def outcome_text(outcome: Outcome) -> str:
    """What the change's thread says about one verdict."""
    aid, where = escape(outcome.record.primary_id), f"`{escape(outcome.system)}`"
    if outcome.remediated:
        ttr = format_duration(outcome.time_to_remediate) if outcome.time_to_remediate else "—"
        return (
            f":white_check_mark: {aid} is *remediated*: the inventory of {where} shows the fix "
            f"(time to remediate {ttr})."
        )
    return f":x: {aid} is *still vulnerable* on {where}: {escape('; '.join(outcome.still))}. The SLA keeps running."


StepsBySystem = dict[str, tuple[StepResult, StepResult]]


def after_prod(deps: Deps, *, sink: Sink) -> Callable[[Change, StepsBySystem], Awaitable[None]]:
    """The runner's hook after a completed prod run: mark pending, import the executor's SBOMs, prove."""

    async def hook(change: Change, steps: StepsBySystem) -> None:
        config = deps.config
        if config.policy.verify_fix is VerifyFix.NONE:
            return
        outcomes: list[Outcome] = []
        async with deps.sessions.begin() as session:
            now = deps.clock.now()
            pending = await mark_pending(session, config=config, change=change, now=now)
            for system, (applied, verified) in steps.items():
                sbom = verified.inventory or applied.inventory
                if not sbom:
                    continue
                try:
                    await import_sbom(
                        session, config=config, system=system, text=sbom, change=change, now=now,
                        source=f"PATCHWARDEN_INVENTORY_OUT of {change.key}",
                    )  # fmt: skip
                except InputError as exc:
                    await sink.post(f":warning: The inventory `{escape(system)}` wrote is unusable: {escape(str(exc))}")
                    continue
                outcomes += await prove(session, config=config, system=system, now=now)
        if pending and not outcomes:
            ids = ", ".join(escape(r.primary_id) for r in pending)
            await sink.post(
                f":hourglass: {ids}: the fix counts once the inventory of {', '.join(change.systems)} shows it "
                "(`patchwarden inventory import`, or an executor writing `$PATCHWARDEN_INVENTORY_OUT`)."
            )
        await tell(deps, sink=sink, outcomes=outcomes)

    return hook


async def tell(deps: Deps, *, sink: Sink, outcomes: list[Outcome]) -> None:
    """Say each verdict in the thread; the system's owner is told directly when it is still vulnerable."""
    for outcome in outcomes:
        text = outcome_text(outcome)
        await sink.post(text)
        owner = deps.config.systems[outcome.system].owner if outcome.system in deps.config.systems else None
        if not outcome.remediated and owner:
            await thread.deliver(deps, channel=owner, text=text, what=f"still-vulnerable note to {owner}")
