"""Publishing the control log outside the database: signed heads to witnesses, every entry to the SIEM stream.

The scheduler runs ``run_checkpoint`` (hourly) and ``run_publish`` (every few seconds). Publication is
at-least-once: a crash between sending and marking sends a record again, which witnesses and verification
tolerate (a head is a statement of fact; duplicates agree).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from bot import witness
from bot.deps import Deps
from bot.slack import audit_posts
from bot.workflows import audit as audit_flow
from storage import audit, audit_stream
from storage.models import AuditEntry

log = logging.getLogger(__name__)


async def run_checkpoint(deps: Deps) -> None:
    """Sign the head if ``audit.checkpoint_interval`` has passed since the last checkpoint, then publish."""
    if deps.signer is None:
        return
    now = deps.clock.now()
    async with deps.sessions.begin() as session:
        last = await audit_stream.last_checkpoint(session)
        if last is None or now - last.signed_at >= deps.config.audit.checkpoint_interval:
            await audit_flow.write_checkpoint(session, signer=deps.signer, now=now)
    await run_publish(deps)


def _entry_record(e: AuditEntry) -> dict[str, Any]:
    return {"type": "entry", "seq": e.seq, "prev_hash": e.prev_hash, "hash": e.hash, "record": json.loads(e.body)}


async def run_publish(deps: Deps) -> int:
    """Copy new entries to the stream and new checkpoints everywhere; returns the number of records sent."""
    cfg = deps.config.audit
    sent = 0
    stream = cfg.stream.url or cfg.stream.syslog
    async with aiohttp.ClientSession() as http:
        if stream:
            target = cfg.stream.url or f"syslog://{cfg.stream.syslog}"
            async with deps.sessions.begin() as session:
                cursor = await audit_stream.cursor(session, target)
                entries = await audit.entries_after(session, cursor, limit=cfg.stream.batch)
            if entries:
                records = [_entry_record(e) for e in entries]
                await _stream(deps, http, records)
                async with deps.sessions.begin() as session:
                    await audit_stream.advance(session, target, entries[-1].seq)
                sent += len(records)
        async with deps.sessions.begin() as session:
            pending = await audit_stream.unpublished_checkpoints(session)
        for cp in pending:
            head = audit_flow.published(cp).as_json()
            if cfg.witness_file is not None:
                await asyncio.to_thread(witness.append_file, cfg.witness_file, [head])
            if cfg.witness_url:
                await witness.post_ndjson(http, cfg.witness_url, [head])
            if stream:
                await _stream(deps, http, [head])
            ts = None
            if deps.config.slack.audit_channel:
                ts = await audit_posts.post_head(deps.client, channel=deps.config.slack.audit_channel, head=head)
            async with deps.sessions.begin() as session:
                await audit_stream.mark_published(session, cp.id, at=deps.clock.now(), posted_ts=ts)
            sent += 1
    return sent


async def _stream(deps: Deps, http: aiohttp.ClientSession, records: list[dict[str, Any]]) -> None:
    cfg = deps.config.audit.stream
    if cfg.url:
        await witness.post_ndjson(http, cfg.url, records)
    elif cfg.syslog:
        sink = witness.SyslogSink(cfg.syslog)
        try:
            await asyncio.to_thread(sink.send, records)
        finally:
            sink.close()
