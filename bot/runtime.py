"""Startup: build the dependencies, check the database is at the migration head, log the policy in force."""

from __future__ import annotations

import hashlib
import logging

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError

from bot.config import Config, Settings
from bot.crypto import Signer
from bot.deps import Clock, Deps
from bot.errors import DatabaseNotReadyError
from bot.executors import registry
from bot.workflows import lifecycle, runner
from storage import db, migrate

log = logging.getLogger(__name__)


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
        raise DatabaseNotReadyError(f"the database does not answer: {type(exc).__name__}: {exc}") from exc
    head = migrate.head_revision()
    if current != head:
        raise DatabaseNotReadyError(
            f"the database schema is at {current or 'nothing (empty database)'}, this version needs {head}: "
            "run `patchwarden db upgrade` first"
        )


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
