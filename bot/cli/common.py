"""Helpers shared by the CLI subcommands: settings, config, running a coroutine, database sessions."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config, Settings, load_config
from bot.deps import existing_signer
from bot.errors import ConfigError, DatabaseNotReadyError, PatchwardenError, PortInUseError
from bot.workflows import audit as audit_flow
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
    factory = db.session_factory(engine)
    signer = existing_signer(s)
    if signer is not None:  # entries the CLI appends keep the control log's head signed
        factory.configure(info=audit_flow.session_info(signer, every=None))
    try:
        async with factory.begin() as sess:
            yield sess
    finally:
        await engine.dispose()


def stop_signal() -> asyncio.Future[str]:
    """A future that resolves to the signal's name on Ctrl-C (SIGINT) or SIGTERM (how Procfile platforms
    stop a process). The handlers are installed before this returns: call it before printing "ready".

    Handling the signals in the event loop, instead of letting KeyboardInterrupt cancel whatever runs,
    lets the caller shut down in order: no CancelledError from a database call cut in half."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str] = loop.create_future()

    def stop(sig: signal.Signals) -> None:
        if not stopped.done():
            stopped.set_result(sig.name)

    def restore(_: asyncio.Future[str]) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    stopped.add_done_callback(restore)
    return stopped


def exit_port_in_use(exc: PortInUseError) -> NoReturn:
    """One line naming the port and ``--port``, exit status 2 (no traceback)."""
    click.secho(f"Error: {exc.user_message}", fg="red", err=True)
    sys.exit(2)


def warn_policy(config: Config) -> int:
    """Print a warning per stage some requester could never get approved (or that reminds nobody); the count."""
    from bot import policy_check

    found = policy_check.check(config)
    for warning in found:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    return len(found)
