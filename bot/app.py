"""The bolt app and the aiohttp web app around it (``/slack/events``, ``/healthz``)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
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
from bot.commands import approvals, changes, patch, people_checks
from bot.commands import auto_approval as auto_approval_commands
from bot.commands import away as away_commands
from bot.commands import calendar as calendar_commands
from bot.commands import deploy as deploy_commands
from bot.commands import drift as drift_commands
from bot.commands import exceptions as exception_commands
from bot.commands import home as home_commands
from bot.commands import oidc as oidc_commands
from bot.commands import people as people_commands
from bot.commands import report as report_commands
from bot.commands import schedule as schedule_commands
from bot.commands.router import Router
from bot.deps import Deps
from bot.metrics import CONTENT_TYPE, CountingRetryHandler, Metrics
from bot.render import ical
from bot.workflows import replay

log = logging.getLogger(__name__)
DEPS_KEY: web.AppKey[Deps] = web.AppKey("deps", Deps)
HEALTH_TIMEOUT = 2.0  # seconds; load balancers probe with a few seconds of their own
BODY_TIMEOUT = 10.0  # seconds for a request body to arrive (Slack sends small bodies at once)


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


def create_client(
    *, token: str, base_url: str, session: aiohttp.ClientSession | None = None, metrics: Metrics | None = None
) -> AsyncWebClient:
    """The Web API client: rate-limit (429 + Retry-After), 5xx and connection retries switched on.

    Pass a shared ``session`` (created inside the running loop, closed at shutdown): without one, slack_sdk
    opens and closes a connection pool for every single API call. With ``metrics``, 429s and errors are
    counted for ``/metrics``."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        session=session,
        retry_handlers=[
            *([CountingRetryHandler(metrics)] if metrics is not None else []),
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            IdempotentServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def create_app(deps: Deps, *, signing_secret: str) -> AsyncApp:
    """The bolt app with every listener registered."""
    app = AsyncApp(client=deps.client, signing_secret=signing_secret, logger=logging.getLogger("slack_bolt"))

    @app.error
    async def log_errors(error: Exception) -> None:
        # listeners answer their own errors (commands.replies.guarded); this logs what escaped them
        if isinstance(error, replay.Replayed):
            log.warning("dropped a replayed %s", error.key.split(":", 1)[0])
        else:
            log.error("unhandled error in a listener", exc_info=error)

    router = Router()
    patch.register(app, deps, router)
    changes.register(app, deps, router)
    approvals.register(app, deps)
    auto_approval_commands.register(app, deps)
    advisory_commands.register(app, deps, router)
    home_commands.register(app, deps)
    calendar_commands.register(app, deps, router)
    report_commands.register(app, deps, router)
    schedule_commands.register(app, deps, router)
    deploy_commands.register(app, deps, router)
    people_commands.register(app, deps, router)
    away_commands.register(app, deps, router)

    people_checks.register(app, deps)
    test_stage_commands.register(app, deps)
    exception_commands.register(app, deps, router)
    drift_commands.register(app, deps)
    return app


def read_payload(content_type: str, raw_body: str) -> tuple[dict[str, Any] | None, str | None]:
    """An interactivity body's payload and why it cannot be handled: ``(payload, None)`` when it looks sound,
    ``(None, problem)`` when not, ``(None, None)`` for bodies without a payload (slash commands, events).

    The payload must be a JSON object with a type, and a click must carry at least one action object."""
    if content_type != "application/x-www-form-urlencoded" or "payload=" not in raw_body:
        return None, None
    values = parse_qs(raw_body, max_num_fields=50).get("payload")
    if not values:
        return None, None
    try:
        payload = json.loads(values[0])
    except (ValueError, RecursionError):
        return None, "payload is not JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return None, "payload is not a JSON object with a type"
    if payload["type"] == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            return None, "block_actions without actions"
    if payload["type"] in ("view_submission", "view_closed"):
        view = payload.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("type"), str):
            return None, "view payload without a typed view"
    return payload, None


def create_web_app(app: AsyncApp, deps: Deps) -> web.Application:
    """aiohttp application: Slack on POST /slack/events, health on GET /healthz."""

    async def slack_events(request: web.Request) -> web.Response:
        if not request.headers.get("X-Slack-Request-Timestamp", "").isdigit():
            return web.Response(status=401, text="missing or malformed request timestamp")
        try:
            # a client stuck mid-body must not hold a connection (and a descriptor) forever
            async with asyncio.timeout(BODY_TIMEOUT):
                raw = await request.text()
        except TimeoutError:
            log.warning("dropped a request whose body did not arrive within %ss", BODY_TIMEOUT)
            return web.Response(status=408, text="request body timeout")
        except (ConnectionError, aiohttp.ClientPayloadError, web.HTTPException) as exc:
            log.warning("dropped a request whose body could not be read: %s", type(exc).__name__)
            return web.Response(status=400, text="unreadable request body")
        payload, problem = read_payload(request.content_type, raw)
        if problem is not None:
            # answered before bolt parses it: a broken body must not become a 500 with a traceback
            log.warning("refused a malformed Slack request: %s", problem)
            return web.Response(status=400, text=problem)
        # replay protection without a database round trip before the ack: the listener bolt starts (after it
        # checked the signature) inherits the key, and its first transaction records it with its work
        with replay.keyed(payload or {}, now=deps.clock.now()):
            bolt_response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    probes: set[asyncio.Task[None]] = set()

    async def probe() -> None:
        async with deps.engine.connect() as conn:
            await conn.execute(text("select 1"))

    async def healthz(_request: web.Request) -> web.Response:
        try:
            # within its own timeout: a held write lock (SQLite) or an exhausted pool must not hang the probe.
            # The probe runs on as its own task (a blocked driver call cannot be cancelled); while one is
            # still stuck, the answer is "busy" at once instead of piling up more.
            if probes:
                raise TimeoutError
            task = asyncio.create_task(probe())
            probes.add(task)
            task.add_done_callback(probes.discard)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no stray warning
            await asyncio.wait_for(asyncio.shield(task), HEALTH_TIMEOUT)
        except TimeoutError:
            log.warning("health check: the database did not answer within %ss (busy)", HEALTH_TIMEOUT)
            return web.json_response({"status": "unavailable", "database": "busy"}, status=503)
        except Exception as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return web.json_response({"status": "unavailable", "database": "busy"}, status=503)
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
        body: dict[str, Any] = {
            "status": "ok",
            "database": "ok",
            "policy_version": deps.config.policy.version,
        }
        return web.json_response(body)

    async def metrics(_request: web.Request) -> web.Response:
        async with deps.sessions.begin() as session:
            await deps.metrics.refresh(session, now=deps.clock.now())
        return web.Response(body=deps.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    web_app = web.Application()
    web_app[DEPS_KEY] = deps
    web_app.router.add_get("/metrics", metrics)
    web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_routes(ical.routes(deps))  # GET /calendar.ics, /calendar/<system>.ics
    web_app.router.add_routes(oidc_commands.routes(deps))  # step-up sign-in: start link and callback
    return web_app


async def run_socket_mode(app: AsyncApp, *, app_token: str) -> None:
    """Serve Slack over Socket Mode until cancelled (no inbound HTTP needed), closing the socket on the way out."""
    handler = AsyncSocketModeHandler(app, app_token)
    try:
        await handler.start_async()  # type: ignore[no-untyped-call]
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


class RedactingAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings: ``/calendar.ics?token=...`` carries a secret in its URL.

    The query is replaced by ``?[redacted]`` (that there was one may matter); the Referer, which can repeat
    the URL, is not logged.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        query = "?[redacted]" if request.query_string else ""
        self.logger.info(
            '%s "%s %s%s HTTP/%d.%d" %d %d %.3fs "%s"',
            request.remote or "-",
            request.method,
            request.path,
            query,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
        )


def create_runner(web_app: web.Application) -> web.AppRunner:
    """The runner serving the web app, with the redacting access log."""
    return web.AppRunner(web_app, access_log_class=RedactingAccessLogger)
