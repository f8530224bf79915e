"""Helpers shared by the CLI subcommands: settings, config, running a coroutine, database sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import click
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config, Settings, load_config
from bot.errors import ConfigError, DatabaseNotReadyError, PatchwardenError
from storage import db

T = TypeVar("T")


class SetupError(click.ClickException):
    """The configuration, a key or the database is unusable: one line naming the cause, exit code 2."""

    exit_code = 2


def failure(exc: PatchwardenError) -> click.ClickException:
    """The CLI's answer to one of our errors: set-up problems exit 2 (with a one-line message), others 1."""
    if isinstance(exc, ConfigError | DatabaseNotReadyError):
        message = exc.user_message if isinstance(exc, ConfigError) else exc.user_message.splitlines()[0]
        return SetupError(message)
    return click.ClickException(exc.user_message)


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async function; our errors become a clean ``Error: ...`` and exit code 1."""

    async def wrapper() -> T:
        return await coro_fn()

    try:
        return asyncio.run(wrapper())
    except PatchwardenError as exc:
        raise failure(exc) from exc


def settings() -> Settings:
    """Settings from the environment (an invalid value is a one-line set-up error)."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SetupError(f"environment: {first['loc'][0] if first['loc'] else ''}: {first['msg']}") from exc


def config(s: Settings, path: str | None = None) -> Config:
    """The validated configuration (from PATH or PATCHWARDEN_CONFIG)."""
    try:
        return load_config(Path(path) if path else s.config_path)
    except PatchwardenError as exc:
        raise failure(exc) from exc


@asynccontextmanager
async def session(s: Settings) -> AsyncIterator[AsyncSession]:
    """One transaction on the configured database, the engine disposed afterwards."""
    engine = db.create_engine(s.database_url)
    try:
        async with db.session_factory(engine).begin() as sess:
            yield sess
    finally:
        await engine.dispose()
