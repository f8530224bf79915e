"""Delivering the outbox to Slack: exactly once, paced per channel, concurrent across channels.

Exactly once, step by step:

1. A sweep leases due rows (compare-and-set, ``storage.outbox.claim_due``) and counts the attempt before
   posting, so a crash between post and "sent" leaves a row that is visibly "maybe posted".
2. Each post carries the row's key in message metadata (``event_type: patchwarden_outbox``).
3. A row whose previous lease expired while held (``Claim.recovered``) is first looked up in the
   channel's recent history by that key; if found it is marked sent with the found ts, not posted again.
4. Only the lease holder may mark a row sent, release it or fail it.
5. A 429 (after the client's own Retry-After retries) means Slack posted nothing: the row is released
   for later without using up its retry budget. A timeout or 5xx may have posted: the row is released
   as "maybe posted", so step 3 runs before any new post.

Pacing: at most one message per ``channel_gap`` per channel (Slack allows about one per second), the
next post to a channel leaves only after the previous one answered; different channels are sent
concurrently, at most ``concurrency`` posts in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.blocks.announcement import AnnouncementKind
from bot.blocks.common import escape
from bot.deps import Deps
from bot.errors import MailError
from bot.mail import smtp as mail_smtp
from bot.slack import notify
from storage import changes, outbox
from storage import windows as windows_store
from storage.outbox import Claim

log = logging.getLogger(__name__)
EVENT_TYPE = "patchwarden_outbox"
LEASE = timedelta(minutes=3)
HISTORY_PAGES = 5  # how far back (x200 messages) a recovered row is looked for


def wall_now() -> datetime:
    """The wall clock, for leases (never the bot's business clock, which the sandbox skips ahead)."""
    return datetime.now(UTC)


def _reminder_window(key: str) -> int | None:
    """The window id of a reminder's outbox key (``announce:<change>:w<window>:reminder:<channel>``)."""
    parts = key.split(":")
    if len(parts) < 5 or parts[0] != "announce" or parts[3] != AnnouncementKind.REMINDER.value:
        return None
    slot = parts[2]
    return int(slot[1:]) if slot.startswith("w") and slot[1:].isdigit() else None


@dataclass
class SweepResult:
    """What one sweep did."""

    sent: int = 0
    recovered: int = 0  # found already posted after a crash: marked sent, not posted again
    retried: int = 0  # released for a later attempt
    failed: int = 0  # gave up (reported)
    rate_limited: int = 0

    def add(self, other: SweepResult) -> None:
        """Accumulate another sweep's counts."""
        for name in ("sent", "recovered", "retried", "failed", "rate_limited"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class OutboxSender:
    """One per process: holds the per-channel pacing state and a lease-owner identity."""

    deps: Deps
    concurrency: int = 10
    channel_gap: float = 1.0
    max_attempts: int = 5
    batch: int = 500
    per_channel: int = 10
    lease: timedelta = LEASE  # on the wall clock, renewed every third of it while a post is in flight
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    _next_allowed: dict[str, float] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    async def sweep(self) -> SweepResult:
        """Claim due rows and deliver them; returns the counts (the scheduler calls this every few s)."""
        async with self.deps.sessions.begin() as session:
            claims = await outbox.claim_due(
                session,
                owner=self.owner,
                now=self.deps.clock.now(),
                wall=wall_now(),
                lease=self.lease,
                limit=self.batch,
                per_channel=self.per_channel,
            )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        by_channel: dict[str, list[Claim]] = {}
        for claim in claims:
            by_channel.setdefault(claim.channel, []).append(claim)
        results = await asyncio.gather(*(self._drain(items) for items in by_channel.values()))
        total = SweepResult()
        for result in results:
            total.add(result)
        return total

    async def drain(self, *, rounds: int = 1000) -> SweepResult:
        """Sweep until nothing due is left (benchmarks, tests and shutdown)."""
        total = SweepResult()
        for _ in range(rounds):
            result = await self.sweep()
            total.add(result)
            if not (result.sent or result.recovered or result.retried or result.failed or result.rate_limited):
                break
        return total

    async def _drain(self, items: Iterable[Claim]) -> SweepResult:
        result = SweepResult()
        for claim in items:
            try:
                await self._deliver(claim, result)
            except Exception:  # one bad row must not stop the channel; its lease expires and it is retried
                log.exception("outbox: delivering %s failed unexpectedly", claim.key)
        return result

    async def _pace(self, channel: str) -> None:
        loop = asyncio.get_running_loop()
        wait = self._next_allowed.get(channel, 0.0) - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    @contextlib.asynccontextmanager
    async def _renewing(self, claim: Claim) -> AsyncIterator[None]:
        """Keep the lease alive (wall clock) while the post is in flight, so no one else takes the row over."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease.total_seconds() / 3)
                async with self.deps.sessions.begin() as session:
                    held = await outbox.renew(
                        session, claim.id, owner=self.owner, token=claim.attempts, wall=wall_now(), lease=self.lease
                    )
                if not held:
                    log.warning("outbox: lease on %s was lost while posting", claim.key)
                    return

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _stale_reminder(self, claim: Claim, result: SweepResult) -> bool:
        """Drop a reminder whose window has started: the started notice says it all. True if dropped."""
        window_id = _reminder_window(claim.key)
        if window_id is None:
            return False
        async with self.deps.sessions.begin() as session:
            window = await windows_store.get(session, window_id)
            if window is None or window.start > self.deps.clock.now():
                return False
            await outbox.drop(
                session, claim.id, owner=self.owner, token=claim.attempts, reason="the window had started"
            )
        log.info("outbox: dropped reminder %s: its window had started", claim.key)
        return True

    async def _refresh_card(self, claim: Claim, result: SweepResult) -> None:
        # An update is idempotent: no history lookup, no metadata key. The row carries the rendering.
        try:
            if claim.thread_ts:
                await self.deps.client.chat_update(
                    channel=claim.channel, ts=claim.thread_ts, text=claim.text, blocks=claim.blocks or None
                )
        except SlackApiError as exc:
            await self._on_slack_error(claim, result, exc, maybe_posted=False)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._retry_or_fail(claim, result, error=f"{type(exc).__name__}: {exc}", maybe_posted=False)
            return
        async with self.deps.sessions.begin() as session:
            await outbox.mark_sent(session, claim.id, owner=self.owner, ts=claim.thread_ts or "", token=claim.attempts)
        result.sent += 1

    async def _deliver(self, claim: Claim, result: SweepResult) -> None:
        if claim.mail_to is not None:
            await self._deliver_mail(claim, result)
            return
        if claim.key.startswith(notify.CARD_REFRESH):
            await self._refresh_card(claim, result)
            return
        if await self._stale_reminder(claim, result):
            return
        await self._pace(claim.channel)
        if claim.recovered:
            # immediately before posting (after pacing): is it already there from an earlier holder?
            try:
                found = await self._find_posted(claim)
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                await self._release(claim, result, error=f"history lookup: {exc}", maybe_posted=True, delay=30)
                return
            if found is not None:
                async with self.deps.sessions.begin() as session:
                    await outbox.mark_sent(session, claim.id, owner=self.owner, ts=found, token=claim.attempts)
                result.recovered += 1
                log.info("outbox: %s was already posted (ts %s); not posting again", claim.key, found)
                return
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        try:
            async with self._slots, self._renewing(claim):
                response = await self.deps.client.chat_postMessage(
                    channel=claim.channel,
                    thread_ts=claim.thread_ts,
                    text=claim.text,
                    blocks=claim.blocks or None,
                    metadata={"event_type": EVENT_TYPE, "event_payload": {"key": claim.key}},
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except SlackApiError as exc:
            self._next_allowed[claim.channel] = loop.time() + self.channel_gap
            await self._on_slack_error(claim, result, exc)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._next_allowed[claim.channel] = loop.time() + self.channel_gap
            await self._retry_or_fail(claim, result, error=f"{type(exc).__name__}: {exc}", maybe_posted=True)
            return
        self._next_allowed[claim.channel] = loop.time() + self.channel_gap
        async with self.deps.sessions.begin() as session:
            if not await outbox.mark_sent(
                session, claim.id, owner=self.owner, ts=str(response["ts"]), token=claim.attempts
            ):
                log.warning("outbox: lease on %s was lost while posting; the next holder checks history", claim.key)
        result.sent += 1

    async def _deliver_mail(self, claim: Claim, result: SweepResult) -> None:
        """An e-mail row: hand it to SMTP (a recovered row is sent again: its Message-ID lets readers dedupe)."""
        assert claim.mail_to is not None and self._slots is not None
        smtp = self.deps.config.smtp
        await self._pace(claim.channel)
        try:
            if smtp is None:
                raise MailError("no smtp: section in the configuration", temporary=False)
            async with self._slots:
                await mail_smtp.send(smtp, to=claim.mail_to, message=claim.text)
        except MailError as exc:
            self._next_allowed[claim.channel] = asyncio.get_running_loop().time() + self.channel_gap
            # a permanent refusal (5xx): no retry can help, so give up at once
            spent = claim if exc.temporary else replace(claim, attempts=max(claim.attempts, self.max_attempts))
            await self._retry_or_fail(spent, result, error=str(exc), maybe_posted=False)
            return
        self._next_allowed[claim.channel] = asyncio.get_running_loop().time() + self.channel_gap
        async with self.deps.sessions.begin() as session:
            await outbox.mark_sent(session, claim.id, owner=self.owner, ts="smtp")
        result.sent += 1

    async def _on_slack_error(
        self, claim: Claim, result: SweepResult, exc: SlackApiError, *, maybe_posted: bool = True
    ) -> None:
        status = getattr(exc.response, "status_code", 200)
        error = str(exc.response.get("error") or status)
        if status == 429:
            retry_after = int((exc.response.headers or {}).get("Retry-After", "1") or 1)
            self._next_allowed[claim.channel] = asyncio.get_running_loop().time() + retry_after
            result.rate_limited += 1
            await self._release(claim, result, error="ratelimited", maybe_posted=False, delay=retry_after, refund=True)
            return
        # A 5xx may have posted; an error code (channel_not_found, ...) certainly did not.
        await self._retry_or_fail(claim, result, error=error, maybe_posted=maybe_posted and status >= 500)

    async def _retry_or_fail(self, claim: Claim, result: SweepResult, *, error: str, maybe_posted: bool) -> None:
        if claim.attempts < self.max_attempts:
            delay = min(10 * 2 ** (claim.attempts - 1), 600)
            await self._release(claim, result, error=error, maybe_posted=maybe_posted, delay=delay)
            return
        async with self.deps.sessions.begin() as session:
            gave_up = await outbox.fail(session, claim.id, owner=self.owner, error=error, token=claim.attempts)
            change = await changes.get(session, claim.change_id) if claim.change_id is not None else None
        if not gave_up:
            return
        result.failed += 1
        log.error("outbox: gave up on %s after %d attempts: %s", claim.key, claim.attempts, error)
        where, said, hint = (
            (f"posted in <#{claim.channel}>", "Slack", "check the bot is a member of that channel")
            if claim.mail_to is None
            else (f"sent by e-mail to {escape(claim.mail_to)}", "the mail relay", "check the smtp: settings")
        )
        if change is None or claim.channel == (change.channel or ""):
            return  # nowhere else to report it (the failing channel is the thread's own): the log has it
        try:
            await self.deps.client.chat_postMessage(
                channel=change.channel or self.deps.config.slack.approvals_channel,
                thread_ts=change.thread_ts,
                text=f":warning: An announcement for {change.key} could not be {where} "
                f"after {claim.attempts} attempts ({said} said `{escape(error[:80])}`). Please tell its users another "
                f"way and {hint}.",
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError):
            log.exception("outbox: could not report the failure of %s", claim.key)

    async def _release(
        self,
        claim: Claim,
        result: SweepResult,
        *,
        error: str,
        maybe_posted: bool,
        delay: float,
        refund: bool = False,
    ) -> None:
        async with self.deps.sessions.begin() as session:
            await outbox.release(
                session,
                claim.id,
                owner=self.owner,
                retry_at=self.deps.clock.now() + timedelta(seconds=delay),
                error=error,
                maybe_posted=maybe_posted,
                refund=refund,
                token=claim.attempts,
            )
        result.retried += 1

    async def _find_posted(self, claim: Claim) -> str | None:
        """The ts of a message carrying ``claim.key`` in its metadata, among the recent ones."""
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            kwargs: dict[str, Any] = {"channel": claim.channel, "include_all_metadata": True, "limit": 200}
            if cursor:
                kwargs["cursor"] = cursor
            if claim.thread_ts:
                page = await self.deps.client.conversations_replies(ts=claim.thread_ts, **kwargs)
            else:
                page = await self.deps.client.conversations_history(**kwargs)
            for message in page.get("messages") or []:
                meta = message.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == EVENT_TYPE and payload.get("key") == claim.key:
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or not cursor:
                return None
        return None
