"""``patchwarden serve``: HTTP (``/slack/events``) or Socket Mode, with the scheduler."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import click
from aiohttp import web

from bot.cli import common
from bot.errors import PatchwardenError

log = logging.getLogger(__name__)


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")  # noqa: S104
@click.option("--port", default=3000, show_default=True, type=int)
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
    except PatchwardenError as exc:
        raise common.failure(exc) from exc
    except KeyboardInterrupt:
        pass


async def _serve(host: str, port: int, socket_mode: bool) -> None:
    from bot import app as app_module
    from bot import deps as runtime
    from bot import scheduler
    from bot.workflows import startup

    s = common.settings()
    s.require("slack_bot_token", "slack_signing_secret", *(["slack_app_token"] if socket_mode else []))
    config = common.config(s)
    assert s.slack_bot_token is not None and s.slack_signing_secret is not None
    slack_http = aiohttp.ClientSession(trust_env=True)  # one connection pool for every Web API call
    client = app_module.create_client(
        token=s.slack_bot_token.get_secret_value(), base_url=s.slack_api_url, session=slack_http
    )
    deps = runtime.build_deps(s, config, client=client, signer=runtime.load_signer(s))
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
    sched.start()
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("patchwarden listening on http://%s:%d (POST /slack/events, GET /healthz)", host, port)
    try:
        if socket_mode:
            assert s.slack_app_token is not None
            await app_module.run_socket_mode(bolt, app_token=s.slack_app_token.get_secret_value())
        else:
            await asyncio.Event().wait()
    finally:
        sched.shutdown(wait=False)
        await runner.cleanup()
        await deps.engine.dispose()
        await slack_http.close()
