"""Replay protection: a signed interaction is handled once, however often its request is sent.

A request signature only proves Slack sent it within five minutes; a captured modal submission or click
replayed inside that window verifies again. Each interaction therefore leaves a key in the database:

1. a modal submission: its ``view.id`` and a digest of the submitted values (a resubmission after
   inline errors carries other values and passes; the identical body does not);
2. a click: its ``action_ts`` and the clicking user.

Other payloads (slash commands, shortcuts, options) are not keyed. The key is recorded by the listener's
first transaction (see ``storage.deliveries``), so it commits together with the work it guards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage import deliveries

Replayed = deliveries.AlreadyDelivered  # raised by the first transaction of a replayed interaction's listener

# Slack refuses signatures older than five minutes, so a delivery key older than a day can never match again
KEEP = timedelta(days=1)


def delivery_key(body: Mapping[str, Any]) -> str | None:
    """The replay key of an interaction payload, or None for payloads that are not keyed."""
    kind = body.get("type")
    if kind == "view_submission":
        view = body.get("view")
        if not isinstance(view, Mapping) or not isinstance(view.get("id"), str):
            return None
        state = view.get("state") if isinstance(view.get("state"), Mapping) else {}
        digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return f"view:{view['id'][:64]}:{digest}"
    if kind == "block_actions":
        actions = body.get("actions")
        user = body.get("user")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], Mapping):
            return None
        user_id = user.get("id") if isinstance(user, Mapping) else None
        ts = actions[0].get("action_ts")
        if not isinstance(ts, str) or not isinstance(user_id, str):
            return None
        return f"click:{ts[:32]}:{user_id[:32]}:{str(actions[0].get('action_id', ''))[:64]}"
    return None


@contextmanager
def keyed(body: Mapping[str, Any], *, now: datetime) -> Iterator[None]:
    """Within this block, the first transaction a listener opens claims ``body``'s key (if it has one)."""
    key = delivery_key(body)
    if key is None:
        yield
        return
    token = deliveries.PENDING.set(deliveries.PendingDelivery(key=key, at=now))
    try:
        yield
    finally:
        deliveries.PENDING.reset(token)


async def forget_old(session: AsyncSession, *, now: datetime) -> int:
    """Drop delivery keys older than ``KEEP`` (the table stays small); returns how many."""
    return await deliveries.prune(session, before=now - KEEP)
