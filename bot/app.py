"""The bolt app and the aiohttp web app around it (``/slack/events``, ``/healthz``)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

from bot.commands import acceptance as test_stage_commands
from bot.commands import advisories as advisory_commands
from bot.commands import approvals, changes, patch
from bot.commands import calendar as calendar_commands
from bot.commands import deploy as deploy_commands
from bot.commands import home as home_commands
from bot.commands import people as people_commands
from bot.commands import report as report_commands
from bot.commands import schedule as schedule_commands
from bot.commands.router import Router
from bot.deps import Deps
from bot.render import ical

log = logging.getLogger(__name__)
DEPS_KEY: web.AppKey[Deps] = web.AppKey("deps", Deps)


# Posting is not idempotent: a 5xx after Slack accepted the message would post it twice if retried.
NOT_RETRIED_ON_5XX = ("chat.postMessage", "chat.postEphemeral", "chat.scheduleMessage", "files.completeUploadExternal")


class IdempotentServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """Retries 500/503 only for methods that are safe to repeat (updates, reads), never for posts."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if any(request.url.endswith("/" + method) for method in NOT_RETRIED_ON_5XX):
            return False
        return bool(await super()._can_retry_async(state=state, request=request, response=response, error=error))


def create_client(*, token: str, base_url: str, session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client: rate-limit (429 + Retry-After), 5xx and connection retries switched on.

    Pass a shared ``session`` (created inside the running loop, closed at shutdown): without one, slack_sdk
    opens and closes a connection pool for every single API call."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        session=session,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            IdempotentServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def create_app(deps: Deps, *, signing_secret: str) -> AsyncApp:
    """The bolt app with every listener registered."""
    app = AsyncApp(client=deps.client, signing_secret=signing_secret, logger=logging.getLogger("slack_bolt"))
    router = Router()
    patch.register(app, deps, router)
    changes.register(app, deps, router)
    approvals.register(app, deps)
    advisory_commands.register(app, deps, router)
    home_commands.register(app, deps)
    calendar_commands.register(app, deps, router)
    report_commands.register(app, deps, router)
    schedule_commands.register(app, deps, router)
    deploy_commands.register(app, deps, router)
    people_commands.register(app, deps, router)
    test_stage_commands.register(app, deps)
    return app


def create_web_app(app: AsyncApp, deps: Deps) -> web.Application:
    """aiohttp application: Slack on POST /slack/events, health on GET /healthz."""

    async def slack_events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    async def healthz(_request: web.Request) -> web.Response:
        try:
            async with deps.engine.connect() as conn:
                await conn.execute(text("select 1"))
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
        body: dict[str, Any] = {
            "status": "ok",
            "database": "ok",
            "policy_version": deps.config.policy.version,
        }
        return web.json_response(body)

    web_app = web.Application()
    web_app[DEPS_KEY] = deps
    web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_routes(ical.routes(deps))  # GET /calendar.ics, /calendar/<system>.ics
    return web_app


async def run_socket_mode(app: AsyncApp, *, app_token: str) -> None:
    """Serve Slack over Socket Mode until cancelled (no inbound HTTP needed), closing the socket on the way out."""
    handler = AsyncSocketModeHandler(app, app_token)
    try:
        await handler.start_async()  # type: ignore[no-untyped-call]
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
