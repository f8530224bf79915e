"""The composition root: the long-lived objects, built once at startup and passed to every listener and job."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Config, Settings
from bot.crypto import Signer
from bot.errors import DatabaseNotReadyError
from bot.executors import registry
from bot.tasks import Coalescer
from storage import db, migrate

log = logging.getLogger(__name__)


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


def load_signer(settings: Settings) -> Signer:
    """The audit checkpoint key: PATCHWARDEN_AUDIT_KEY, else the key file (created 0600 on first run)."""
    if settings.audit_key is not None and settings.audit_key.get_secret_value().strip():
        return Signer.from_base64(settings.audit_key.get_secret_value())
    return Signer.load_or_create(settings.audit_key_file)


def build_deps(
    settings: Settings,
    config: Config,
    *,
    client: AsyncWebClient,
    clock: Clock | None = None,
    signer: Signer | None = None,
) -> Deps:
    """Create the engine and session factory and bundle everything long-lived.

    Every configured executor is created first: an unknown executor name or a bad option raises
    ``ConfigError`` and startup stops before anything else happens.
    """
    from bot.workflows import runner  # the executor cache moves into Deps (the house issue)

    runner.prime(config, registry.validate_config(config))
    engine = db.create_engine(settings.database_url)
    return Deps(
        settings=settings,
        config=config,
        engine=engine,
        sessions=db.session_factory(engine),
        client=client,
        clock=clock or Clock(),
        signer=signer,
    )


async def check_database(deps: Deps) -> None:
    """Raise DatabaseNotReadyError unless the database answers and is at the migration head."""
    try:
        current = await migrate.current_revision(deps.engine)
    except (SQLAlchemyError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DatabaseNotReadyError(f"the database does not answer: {type(exc).__name__}: {first}") from exc
    head = migrate.head_revision()
    if current != head:
        raise DatabaseNotReadyError(
            f"the database schema is at {current or 'nothing (empty database)'}, this version needs {head}: "
            "run `patchwarden db upgrade` first"
        )
