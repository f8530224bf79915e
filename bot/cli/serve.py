"""``patchwarden serve``: HTTP (``/slack/events``) or Socket Mode, with the scheduler."""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

import aiohttp
import click
from aiohttp import web

from bot.cli import common
from bot.deps import Deps
from bot.errors import PatchwardenError, PortInUseError

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = 25.0  # seconds: Heroku-style platforms send SIGKILL 30 s after SIGTERM


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")  # noqa: S104
@click.option("--port", default=3000, show_default=True, type=int, envvar="PORT", help="port to listen on (or PORT)")
@click.option("--socket-mode", is_flag=True, help="connect to Slack over Socket Mode (needs SLACK_APP_TOKEN)")
def serve(host: str, port: int, socket_mode: bool) -> None:
    """Run the bot (with no Slack credentials at all: the local sandbox workspace instead)."""
    s = common.settings()
    if not socket_mode and s.slack_bot_token is None and s.slack_signing_secret is None:
        from bot.cli.sandbox import sandbox

        click.echo("No SLACK_BOT_TOKEN or SLACK_SIGNING_SECRET set: starting the local sandbox (127.0.0.1 only).")
        sandbox.callback(port=port, config_path=None)  # type: ignore[misc]
        return
    try:
        asyncio.run(_serve(host, port, socket_mode))
    except PortInUseError as exc:
        common.exit_port_in_use(exc)
    except PatchwardenError as exc:
        raise common.failure(exc) from exc
    except KeyboardInterrupt:
        pass


async def _serve(host: str, port: int, socket_mode: bool) -> None:
    from bot import app as app_module
    from bot import deps as runtime
    from bot import scheduler
    from bot.metrics import Metrics
    from bot.workflows import startup

    s = common.settings()
    s.require("slack_bot_token", "slack_signing_secret", *(["slack_app_token"] if socket_mode else []))
    config = common.config(s)
    common.warn_policy(config)  # a stage nobody can approve is said at start, not when a change is stuck
    assert s.slack_bot_token is not None and s.slack_signing_secret is not None
    slack_http = aiohttp.ClientSession(trust_env=True)  # one connection pool for every Web API call
    metrics = Metrics()
    client = app_module.create_client(
        token=s.slack_bot_token.get_secret_value(), base_url=s.slack_api_url, session=slack_http, metrics=metrics
    )
    deps = runtime.build_deps(s, config, client=client, signer=runtime.load_signer(s), metrics=metrics)
    try:
        await runtime.check_database(deps)
    except PatchwardenError:
        await deps.engine.dispose()  # no stray driver thread after the one-line error
        await slack_http.close()
        raise
    await startup.record_config_loaded(deps, config_text=s.config_path.read_bytes())
    bolt = app_module.create_app(deps, signing_secret=s.slack_signing_secret.get_secret_value())
    web_app = app_module.create_web_app(bolt, deps)
    sched = scheduler.create_scheduler(deps)
    runner = app_module.create_runner(web_app)  # access log without secret query strings
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(port) from exc
            raise
        sched.start()  # only once the port is ours: a bot that cannot serve runs no jobs
        stop = common.stop_signal()
        click.echo(f"patchwarden listening on http://{host}:{port} (POST /slack/events, GET /healthz); Ctrl-C stops")
        waits: set[asyncio.Future[Any]] = {stop}
        if socket_mode:
            assert s.slack_app_token is not None
            token = s.slack_app_token.get_secret_value()
            waits.add(asyncio.create_task(app_module.run_socket_mode(bolt, app_token=token)))
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()  # also when serve itself is cancelled: no Socket Mode connection outlives it
        if stop in done:
            click.echo(f"{stop.result()}: stopping...", err=True)
    finally:
        await scheduler.stop(sched)
        await finish_deployments(deps, SHUTDOWN_GRACE)

        if deps.leader is not None:
            await deps.leader.close()  # hands the sweeps to another replica now, not at connection timeout
        await runner.cleanup()
        await deps.engine.dispose()
        await slack_http.close()


async def finish_deployments(deps: Deps, grace: float) -> None:
    """Let running deployments finish within ``grace`` seconds; cancel the rest and record them as
    interrupted before the process exits (failed, systems unlocked, said in their threads)."""
    from bot import jobs

    running = deps.deployments.tasks()
    if not running:
        return
    click.echo(f"waiting up to {grace:.0f} s for {len(running)} running deployment(s) to finish...", err=True)
    _, late = await asyncio.wait(running, timeout=grace)
    ids = deps.deployments.ids_of(list(late))  # read before cancelling: a finished task forgets its rows
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=5)
        try:
            closed = await jobs.run_recovery(deps, ids)
        except Exception:  # the database or Slack is gone too: the next start's recovery sweep closes them
            log.exception("could not record the interrupted deployments; the next start does")
            return
        click.echo(f"{closed} deployment(s) cut off by the shutdown, recorded as interrupted", err=True)
