"""The long-lived objects, built once at startup and passed to every listener and job."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.background import Coalescer
from bot.config import Config, Settings
from bot.crypto import Signer


class Clock:
    """Wall-clock time, aware UTC. Tests use ``FakeClock`` to move time without sleeping."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FakeClock(Clock):
    """A clock that starts at real time and moves only when told to."""

    offset: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass(frozen=True)
class Deps:
    settings: Settings
    config: Config
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    client: AsyncWebClient
    clock: Clock
    signer: Signer | None = None
    homes: Coalescer = field(default_factory=Coalescer)  # App Home tabs waiting to be re-published
    plans: Coalescer = field(default_factory=lambda: Coalescer(delay=0.0))  # cards waiting for a plan preview
