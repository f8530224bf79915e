"""Prometheus metrics for ``GET /metrics``: gauges read from the database at scrape time, Slack counters.

One ``Metrics`` per process, in ``Deps`` (no global registry): tests run many bots in one process.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from sqlalchemy.ext.asyncio import AsyncSession

from storage import metrics as queries
from storage.models import AdvisoryStatus

ACTIVE_ADVISORIES = (AdvisoryStatus.OPEN, AdvisoryStatus.CHANGE_REQUESTED)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The registry and every metric patchwarden exports."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.outbox_depth = Gauge("patchwarden_outbox_depth", "Slack messages waiting in the outbox", registry=r)
        self.outbox_oldest_age = Gauge(
            "patchwarden_outbox_oldest_age_seconds", "Age of the oldest waiting outbox message", registry=r
        )
        self.windows_due = Gauge("patchwarden_windows_due", "Booked windows whose start has passed", registry=r)
        self.windows_booked = Gauge("patchwarden_windows_booked", "Booked maintenance windows", registry=r)
        self.deployments_running = Gauge(
            "patchwarden_deployments_running", "Deployments running, verifying or rolling back", registry=r
        )
        self.sla_breaches = Gauge("patchwarden_sla_breaches", "Open advisories past their SLA due date", registry=r)
        self.feed_poll_ok = Gauge(
            "patchwarden_feed_last_poll_ok", "1 when the feed's last poll succeeded", ["feed"], registry=r
        )
        self.feed_poll_age = Gauge(
            "patchwarden_feed_last_poll_age_seconds", "Seconds since the feed was last polled", ["feed"], registry=r
        )
        self.slack_rate_limited = Counter(
            "patchwarden_slack_rate_limited", "Slack Web API answers 429", ["method"], registry=r
        )
        self.slack_errors = Counter(
            "patchwarden_slack_errors", "Slack Web API errors (5xx, ok:false, connection)", ["method"], registry=r
        )

    async def refresh(self, session: AsyncSession, *, now: datetime) -> None:
        """Read the gauges from the database."""
        snap = await queries.snapshot(session, now=now, active=ACTIVE_ADVISORIES)
        self.outbox_depth.set(snap.outbox_depth)
        self.outbox_oldest_age.set((now - snap.outbox_oldest).total_seconds() if snap.outbox_oldest else 0)
        self.windows_due.set(snap.windows_due)
        self.windows_booked.set(snap.windows_booked)
        self.deployments_running.set(snap.deployments_running)
        self.sla_breaches.set(snap.sla_breaches)
        self.feed_poll_ok.clear()
        self.feed_poll_age.clear()
        for feed in snap.feeds:
            self.feed_poll_ok.labels(feed.feed).set(0 if feed.last_error else 1)
            if feed.last_polled_at is not None:
                self.feed_poll_age.labels(feed.feed).set((now - feed.last_polled_at).total_seconds())

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class CountingRetryHandler(AsyncRetryHandler):
    """Counts 429s and errors of every Web API call; never asks for a retry itself (put it first)."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    async def can_retry_async(  # the public method: the base one stops at max_retry_count before looking
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.rsplit("/", 1)[-1] or "unknown"
        if response is not None and response.status_code == 429:
            self.metrics.slack_rate_limited.labels(method).inc()
        elif (
            error is not None
            or response is None
            or response.status_code >= 500
            or (isinstance(response.body, dict) and response.body.get("ok") is False)
        ):
            self.metrics.slack_errors.labels(method).inc()
        return False
