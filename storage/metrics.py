"""Counts read at each ``/metrics`` scrape (cheap aggregate queries over indexed columns)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    AdvisoryRecord,
    AdvisoryStatus,
    Deployment,
    DeploymentStatus,
    FeedState,
    OutboxMessage,
    OutboxState,
    Window,
    WindowState,
)

RUNNING = (DeploymentStatus.RUNNING, DeploymentStatus.VERIFYING, DeploymentStatus.ROLLING_BACK)


@dataclass(frozen=True)
class Snapshot:
    """What the gauges show at one moment."""

    outbox_depth: int
    outbox_oldest: datetime | None
    windows_due: int
    windows_booked: int
    deployments_running: int
    sla_breaches: int
    feeds: Sequence[FeedState]


async def snapshot(session: AsyncSession, *, now: datetime, active: Sequence[AdvisoryStatus]) -> Snapshot:
    """Outbox, windows, deployments, SLA breaches (advisories in ``active`` past due) and feed states."""
    depth, oldest = (
        await session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.state == OutboxState.PENDING)
        )
    ).one()
    due = await session.scalar(
        select(func.count()).where(Window.state == WindowState.BOOKED, Window.start <= now).select_from(Window)
    )
    booked = await session.scalar(select(func.count()).where(Window.state == WindowState.BOOKED).select_from(Window))
    running = await session.scalar(select(func.count()).where(Deployment.status.in_(RUNNING)).select_from(Deployment))
    breaches = await session.scalar(
        select(func.count())
        .where(AdvisoryRecord.status.in_(list(active)), AdvisoryRecord.due <= now)
        .select_from(AdvisoryRecord)
    )
    feeds = list((await session.execute(select(FeedState).order_by(FeedState.feed))).scalars())
    return Snapshot(int(depth), oldest, int(due or 0), int(booked or 0), int(running or 0), int(breaches or 0), feeds)
