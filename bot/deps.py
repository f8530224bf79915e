"""The composition root: the long-lived objects, built once at startup and passed to every listener and job."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Config, Settings
from bot.credentials import registry as credential_registry
from bot.crypto import Signer, checkpoints
from bot.errors import DatabaseNotReadyError
from bot.executors import registry
from bot.feeds import registry as feed_registry
from bot.feeds.base import Feed
from bot.feeds.http import HttpSettings
from bot.leader import Leadership
from bot.metrics import Metrics
from bot.tasks import Coalescer, TaskSet
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
    """Every long-lived object, built once by :func:`build_deps`; no module keeps state of its own."""

    settings: Settings
    config: Config
    engine: AsyncEngine
    sessions: db.Sessions
    client: AsyncWebClient
    clock: Clock
    executors: registry.Executors  # one executor per (system, environment), created at startup
    credentials: credential_registry.Providers = field(default_factory=credential_registry.Providers)
    feeds: Mapping[str, Feed] = field(default_factory=dict)  # the configured advisory feeds, by name
    signer: Signer | None = None
    deployments: TaskSet = field(default_factory=TaskSet)  # deployment runs in progress in this process
    # App Home tabs waiting to be re-published: a pass at most every second, however busy the approvers are
    homes: Coalescer = field(default_factory=lambda: Coalescer(delay=0.2, interval=1.0))
    plans: Coalescer = field(default_factory=lambda: Coalescer(delay=0.0))  # cards waiting for a plan preview
    # how far into the control log each re-rendered card shows its change, recorded in batches (storage.cards)
    card_marks: Coalescer = field(default_factory=lambda: Coalescer(delay=0.05))
    shown_cards: dict[int, int] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)  # GET /metrics (issue 14)
    leader: Leadership | None = None  # one replica per job runs the sweeps (issue 14)


def load_signer(settings: Settings) -> Signer:
    """The audit checkpoint key: PATCHWARDEN_AUDIT_KEY, else the key file (created 0600 on first run)."""
    if settings.audit_key is not None and settings.audit_key.get_secret_value().strip():
        return Signer.from_base64(settings.audit_key.get_secret_value())
    return Signer.load_or_create(settings.audit_key_file)


def existing_signer(settings: Settings) -> Signer | None:
    """The audit key if one is configured or its file exists (never creates one)."""
    if settings.audit_key is not None and settings.audit_key.get_secret_value().strip():
        return Signer.from_base64(settings.audit_key.get_secret_value())
    return Signer.load_or_create(settings.audit_key_file) if settings.audit_key_file.exists() else None


def trusted_audit_keys(settings: Settings, config: Config | None) -> list[bytes]:
    """The control log's trust anchors: ``audit.trusted_keys`` and the audit key's own public key.

    Never read from the database. The key file is not created here (verification must not mint a key).
    """
    keys = [base64.b64decode(k) for k in (config.audit.trusted_keys if config else [])]
    signer = existing_signer(settings)
    return keys + ([signer.public_bytes] if signer is not None else [])


def build_deps(
    settings: Settings,
    config: Config,
    *,
    client: AsyncWebClient,
    clock: Clock | None = None,
    signer: Signer | None = None,
    metrics: Metrics | None = None,
) -> Deps:
    """Create the engine and session factory and bundle everything long-lived.

    Every configured executor and feed is created first: an unknown plugin name or a bad option raises
    ``ConfigError`` and startup stops before anything else happens.
    """
    executors = registry.Executors.validated(config)
    credentials = credential_registry.Providers.validated(config)
    # feeds obey the same outbound-URL policy as artifacts and webhooks (internal addresses: allow-list only)
    feeds = feed_registry.create_all(config, http=HttpSettings(outbound_allow=tuple(config.outbound.allow)))
    engine = db.create_engine(settings.database_url)
    sessions = db.session_factory(engine)
    if signer is not None:  # commits sign a checkpoint every audit.checkpoint_every entries
        sessions.configure(info=checkpoints.session_info(signer, every=config.audit.checkpoint_every))
    return Deps(
        settings=settings,
        config=config,
        engine=engine,
        sessions=sessions,
        client=client,
        clock=clock or Clock(),
        executors=executors,
        credentials=credentials,
        feeds=feeds,
        signer=signer,
        metrics=metrics or Metrics(),
        leader=Leadership(engine),
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
