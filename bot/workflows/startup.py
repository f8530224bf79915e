"""Startup records: what configuration and policy a process runs under, in the control log."""

from __future__ import annotations

import hashlib

from bot.deps import Deps
from bot.workflows import lifecycle


async def record_config_loaded(deps: Deps, *, config_text: bytes) -> None:
    """Log the configuration and policy version in force to the control log."""
    async with deps.sessions.begin() as session:
        await lifecycle.log(
            session,
            config=deps.config,
            now=deps.clock.now(),
            actor="patchwarden",
            action="config_loaded",
            config_sha256=hashlib.sha256(config_text).hexdigest(),
            policy_version=deps.config.policy.version,
        )
