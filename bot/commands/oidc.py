"""The web side of step-up by the identity provider: the one-time start link and the OIDC callback.

Both answer a browser with a short plain page (no markup from the request is echoed). The callback's
verification runs outside any transaction; the vote is counted in one (:mod:`bot.workflows.stepup_oidc`).
"""

from __future__ import annotations

import html
import logging

from aiohttp import web

from bot.commands import approvals
from bot.crypto import oidc
from bot.deps import Deps
from bot.errors import PatchwardenError, VerificationError
from bot.workflows import stepup_oidc
from bot.workflows.approval import Outcome

log = logging.getLogger(__name__)


def _page(status: int, title: str, text: str) -> web.Response:
    body = (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p><p>You can close this tab and return to Slack.</p>"
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def routes(deps: Deps) -> list[web.RouteDef]:
    """GET start and callback at the paths of ``policy.step_up.oidc.redirect_url`` (none without oidc)."""
    rule = deps.config.policy.step_up
    if rule is None or rule.oidc is None:
        return []
    start_path, callback_path = oidc.route_paths(rule.oidc)

    async def handle_oidc_start(request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "")
        try:
            async with deps.sessions.begin() as session:
                bound = await stepup_oidc.bound_secrets(session, state=state, now=deps.clock.now())
            url = await stepup_oidc.sign_in_url(deps.config, bound)
        except PatchwardenError as exc:
            return _page(400, "Sign-in not started", exc.user_message)
        raise web.HTTPFound(url, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def handle_oidc_callback(request: web.Request) -> web.Response:
        state, code = request.query.get("state", ""), request.query.get("code", "")
        if request.query.get("error") or not code:
            return _page(400, "Sign-in failed", "The identity provider did not sign you in. Nothing was counted.")
        now = deps.clock.now()
        try:
            async with deps.sessions.begin() as session:
                bound = await stepup_oidc.bound_secrets(session, state=state, now=now)
            try:
                claims = await stepup_oidc.verified_claims(deps.config, bound=bound, code=code, now=now)
            except VerificationError as exc:
                log.warning("step-up sign-in refused: %s", exc)
                async with deps.sessions.begin() as session:
                    await stepup_oidc.refuse_sign_in(session, config=deps.config, state=state, error=exc, now=now)
                return _page(403, "Sign-in refused", "The identity provider's answer did not verify. Nothing counted.")
            async with deps.sessions.begin() as session:
                user, result = await stepup_oidc.confirm(
                    session, config=deps.config, state=state, claims=claims, now=now
                )
        except PatchwardenError as exc:
            return _page(400, "Nothing counted", exc.user_message)
        await approvals.announce(deps, result, user)  # the card and thread notes, as for a click
        ok = result.outcome in (Outcome.RECORDED, Outcome.STAGE_APPROVED)
        return _page(200 if ok else 409, "Approval counted" if ok else "Nothing counted", result.message)

    return [web.get(start_path, handle_oidc_start), web.get(callback_path, handle_oidc_callback)]
