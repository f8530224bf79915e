"""Step-up with the identity provider (``policy.step_up.method: oidc``): a one-time sign-in link per reserved vote.

The Approve click reserved the vote and stored a random ``state``, ``nonce`` and PKCE verifier with it (see
:func:`bot.workflows.approval.decide`); the reservation binds them to the change id, revision, content hash
and Slack user. The web app's two routes call, in order:

- :func:`bound_secrets` (start link): the reservation of ``state`` is pending and in time; the route then
  sends the browser to the provider with :func:`sign_in_url`;
- :func:`verified_claims` (callback, no database): the code is exchanged with the verifier and the ID token
  verified (:mod:`bot.crypto.oidc`: signature by the provider's JWKS, issuer, audience, nonce, expiry);
- :func:`confirm` (callback, one transaction), step by step:

  1. a reservation with this ``state`` exists, by oidc, and is still pending (a used link finds it settled);
  2. it is in time; 3. the change is still at the reserved revision and content hash, awaiting that stage;
  4. the token's ``sub`` is ``people.<Slack user>.oidc_sub`` of the person who clicked (someone else
     signing in with the link counts nothing);
  5. the reservation is settled once (compare-and-set): the link cannot be used twice.

Only network work happens outside a transaction; every refusal is in the control log (``step_up_refused``).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import outbound
from bot.config import Config, OidcProvider, StepUpMethod
from bot.crypto import oidc
from bot.errors import ConfigError, NotFoundError, VerificationError
from bot.workflows import lifecycle, stepup
from bot.workflows.approval import DecisionResult
from storage import stepup as store
from storage.models import ReservationState

LINK_UNKNOWN = "This sign-in link is not known, was used already or was replaced by a newer click. Nothing counted."


def provider(config: Config) -> OidcProvider:
    """The configured identity provider (a ``ConfigError`` if step-up is not by oidc)."""
    rule = config.policy.step_up
    if rule is None or rule.method is not StepUpMethod.OIDC or rule.oidc is None:
        raise ConfigError("policy.step_up.method is not oidc", user_message="Sign-in step-up is not configured.")
    return rule.oidc


def outbound_policy(config: Config) -> outbound.OutboundPolicy:
    """The outbound-URL policy every request to the provider obeys."""
    return outbound.OutboundPolicy(tuple(config.outbound.allow))


async def bound_secrets(session: AsyncSession, *, state: str, now: datetime) -> oidc.Secrets:
    """The secrets of a pending, in-time reservation by ``state``; ``NotFoundError`` otherwise."""
    row = await store.by_oidc_state(session, state)
    if row is None or row.state is not ReservationState.PENDING or row.oidc_nonce is None or row.oidc_verifier is None:
        raise NotFoundError("unknown or settled sign-in state", user_message=LINK_UNKNOWN)
    if now > row.expires_at:
        raise NotFoundError(
            "expired sign-in link",
            user_message="This sign-in link expired: click Approve again and sign in within the time given.",
        )
    return oidc.Secrets(state=state, nonce=row.oidc_nonce, verifier=row.oidc_verifier)


async def sign_in_url(config: Config, bound: oidc.Secrets) -> str:
    """Where the start link sends the browser: the provider's authorization endpoint with PKCE."""
    prov = provider(config)
    policy = outbound_policy(config)
    async with oidc.session(policy) as http:
        meta = await oidc.discover(http, prov, policy)
    return oidc.authorization_url(meta, prov, bound)


def _client_secret(prov: OidcProvider) -> str | None:
    if prov.client_secret_env is None:
        return None
    value = os.environ.get(prov.client_secret_env)
    if not value:
        raise ConfigError(
            f"policy.step_up.oidc.client_secret_env: {prov.client_secret_env} is not set",
            user_message="The identity provider's client secret is not set on the bot. Tell an admin.",
        )
    return value


async def verified_claims(config: Config, *, bound: oidc.Secrets, code: str, now: datetime) -> dict[str, Any]:
    """Exchange the code (with the verifier) and verify the ID token against the reservation's nonce."""
    prov = provider(config)
    policy = outbound_policy(config)
    async with oidc.session(policy) as http:
        meta = await oidc.discover(http, prov, policy)
        token = await oidc.exchange(
            http, meta, prov, policy, code=code, verifier=bound.verifier, client_secret=_client_secret(prov)
        )
        return await oidc.verify_id_token(http, meta, prov, policy, id_token=token, nonce=bound.nonce, now=now)


async def refuse_sign_in(
    session: AsyncSession, *, config: Config, state: str, error: VerificationError, now: datetime
) -> None:
    """Log a sign-in that failed verification (the reservation stays pending: the person may try again)."""
    row = await store.by_oidc_state(session, state)
    if row is None:
        return
    change = await lifecycle.load(session, row.change_id)
    await lifecycle.log(
        session, config=config, now=now, actor=row.user_id, action="step_up_refused", change=change,
        failed_step="id_token", method="oidc", reason=str(error)[:300],
    )  # fmt: skip


async def confirm(
    session: AsyncSession, *, config: Config, state: str, claims: dict[str, Any], now: datetime
) -> tuple[str, DecisionResult]:
    """Count the reserved vote of ``state`` for verified ``claims``; returns (the Slack user, the result)."""
    # 1. the link's reservation, by oidc, still pending
    row = await store.by_oidc_state(session, state)
    if row is None or row.method != StepUpMethod.OIDC.value:
        raise NotFoundError("unknown sign-in state", user_message=LINK_UNKNOWN)
    change = await lifecycle.load(session, row.change_id, lock=True)
    row = await store.by_oidc_state(session, state)  # again, under the change's lock
    if row is None or row.state is not ReservationState.PENDING:
        return row.user_id if row else "?", await stepup.refuse(
            session, config=config, change=change, user=row.user_id if row else "?", now=now, step="link_used",
            message=LINK_UNKNOWN,
        )  # fmt: skip
    # 2. in time, 3. still what was approved
    refused = await stepup.check_bound(
        session, config=config, change=change, reservation=row, user=row.user_id, now=now
    )
    if refused is not None:
        return row.user_id, refused
    # 4. the person who clicked is the person who signed in
    person = config.people.get(row.user_id)
    bound_sub = person.oidc_sub if person is not None else None
    if bound_sub is None:
        return row.user_id if row else "?", await stepup.refuse(
            session, config=config, change=change, user=row.user_id, now=now, step="no_binding",
            message=f"You have no identity-provider binding (people.{row.user_id}.oidc_sub): nothing was counted. "
            "Ask an admin to add it.",
        )  # fmt: skip
    if claims.get("sub") != bound_sub:
        await store.settle(session, row.id, state=ReservationState.VOID)
        return row.user_id if row else "?", await stepup.refuse(
            session, config=config, change=change, user=row.user_id, now=now, step="wrong_person",
            message=f"The identity provider signed in someone else, not the person who clicked Approve on "
            f"{change.key}: nothing was counted and this link is void.",
        )  # fmt: skip
    # 5. once
    return row.user_id, await stepup.settle_and_count(
        session, config=config, change=change, reservation=row, user=row.user_id, now=now, sub=bound_sub
    )
