"""OpenID Connect for step-up approvals: authorization code + PKCE, and ID tokens verified fail-closed.

The only module that speaks to the identity provider. Every request goes through the outbound-URL policy
(:mod:`bot.outbound`: the issuer's host must be public or allow-listed), redirects are never followed, and
every check raises :class:`~bot.errors.VerificationError`.

:func:`verify_id_token`, step by step:

1. the token is a JWS signed with an asymmetric algorithm (RS256/ES256 and kin; never ``none`` or HMAC) by a
   key of the provider's JWKS (fetched from the discovered ``jwks_uri``, itself under the same policy);
2. ``iss`` is the configured issuer exactly;
3. ``aud`` contains the client id (and ``azp``, when there are several audiences, is the client id);
4. ``nonce`` is the one stored with the reservation (an ID token from another sign-in cannot be replayed);
5. ``exp`` is in the future and ``iat`` not in it (one minute of clock skew allowed);
6. ``sub`` is present. The caller compares it with the person's binding.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from bot import outbound
from bot.config import OidcProvider
from bot.errors import OutboundRefusedError, VerificationError

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SKEW = 60  # seconds of clock difference tolerated for exp and iat
TIMEOUT = 10.0  # seconds for each request to the provider
MAX_DOCUMENT = 1_000_000  # bytes: discovery documents, key sets and token responses are small


@dataclass(frozen=True)
class Secrets:
    """What one sign-in link is bound to: ``state`` (the link's id), ``nonce`` and the PKCE verifier."""

    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True)
class Metadata:
    """The discovered endpoints of the provider."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def new_secrets() -> Secrets:
    """Fresh random state, nonce and PKCE code verifier (RFC 7636: 43 to 128 characters)."""
    return Secrets(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64))


def start_link(provider: OidcProvider, state: str) -> str:
    """The bot's own start link of a sign-in: ``start`` beside the configured callback, carrying the state.

    The link leads to the bot first (not straight to the provider), so a click needs no network call and the
    provider's endpoints are discovered only when someone actually signs in."""
    return urljoin(provider.redirect_url, "start") + "?" + urlencode({"state": state})


def route_paths(provider: OidcProvider) -> tuple[str, str]:
    """The web app's paths for the start link and the callback."""
    return urlsplit(urljoin(provider.redirect_url, "start")).path, urlsplit(provider.redirect_url).path


def session(policy: outbound.OutboundPolicy) -> aiohttp.ClientSession:
    """An HTTP session whose every connection obeys the outbound-URL policy."""
    return aiohttp.ClientSession(connector=outbound.connector(policy), timeout=aiohttp.ClientTimeout(total=TIMEOUT))


async def _json(resp: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
    body = await resp.content.read(MAX_DOCUMENT + 1)
    if len(body) > MAX_DOCUMENT:
        raise VerificationError(f"the identity provider's {what} is larger than {MAX_DOCUMENT} bytes")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise VerificationError(f"the identity provider's {what} is not JSON (HTTP {resp.status})") from exc
    if not isinstance(data, dict):
        raise VerificationError(f"the identity provider's {what} is not a JSON object")
    return data


async def _get(http: aiohttp.ClientSession, url: str, policy: outbound.OutboundPolicy, what: str) -> dict[str, Any]:
    policy.check_url(url)
    try:
        async with await http.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise VerificationError(f"the identity provider's {what} answered HTTP {resp.status}")
            return await _json(resp, what)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise VerificationError(f"the identity provider's {what} could not be read: {type(exc).__name__}") from exc


async def discover(http: aiohttp.ClientSession, provider: OidcProvider, policy: outbound.OutboundPolicy) -> Metadata:
    """Read the provider's discovery document; its issuer must be the configured one exactly."""
    url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = await _get(http, url, policy, "discovery document")
    if doc.get("issuer") != provider.issuer:
        raise VerificationError(f"the discovery document names issuer {doc.get('issuer')!r}, not {provider.issuer!r}")
    try:
        meta = Metadata(
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
        )
    except KeyError as exc:
        raise VerificationError(f"the discovery document has no {exc.args[0]}") from exc
    for endpoint in (meta.authorization_endpoint, meta.token_endpoint, meta.jwks_uri):
        try:
            policy.check_url(endpoint)
        except OutboundRefusedError as exc:
            raise VerificationError(f"the discovery document points outside the policy: {exc}") from exc
    return meta


def authorization_url(meta: Metadata, provider: OidcProvider, bound: Secrets) -> str:
    """The sign-in link: authorization code flow with PKCE (S256), ``state`` and ``nonce``."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": provider.redirect_url,
            "scope": "openid",
            "state": bound.state,
            "nonce": bound.nonce,
            "code_challenge": create_s256_code_challenge(bound.verifier),
            "code_challenge_method": "S256",
            "prompt": "login",  # a fresh sign-in, not a session someone left open
        }
    )
    sep = "&" if "?" in meta.authorization_endpoint else "?"
    return f"{meta.authorization_endpoint}{sep}{query}"


async def exchange(
    http: aiohttp.ClientSession,
    meta: Metadata,
    provider: OidcProvider,
    policy: outbound.OutboundPolicy,
    *,
    code: str,
    verifier: str,
    client_secret: str | None,
) -> str:
    """Trade the authorization code (with the PKCE verifier) for the ID token."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": provider.redirect_url,
        "client_id": provider.client_id,
        "code_verifier": verifier,
    }
    if client_secret is not None:
        form["client_secret"] = client_secret
    policy.check_url(meta.token_endpoint)
    try:
        async with http.post(meta.token_endpoint, data=form, allow_redirects=False) as resp:
            data = await _json(resp, "token endpoint")
            if resp.status != 200:
                why = f"{data.get('error', resp.status)} {data.get('error_description', '')}".strip()
                raise VerificationError(f"the identity provider refused the code: {why}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise VerificationError(f"the token endpoint could not be reached: {type(exc).__name__}") from exc
    token = data.get("id_token")
    if not isinstance(token, str):
        raise VerificationError("the token endpoint returned no id_token")
    return token


async def verify_id_token(
    http: aiohttp.ClientSession,
    meta: Metadata,
    provider: OidcProvider,
    policy: outbound.OutboundPolicy,
    *,
    id_token: str,
    nonce: str,
    now: datetime,
) -> dict[str, Any]:
    """Verify the ID token (the steps are in the module docstring); returns its claims."""
    keys = await _get(http, meta.jwks_uri, policy, "key set (JWKS)")
    try:
        # 1. signature by a provider key, asymmetric algorithms only
        token = jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=list(ALGORITHMS))  # type: ignore[arg-type]
        # 2.-6. issuer, audience, nonce, time, subject
        jwt.JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=SKEW,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": provider.client_id},
            nonce={"essential": True, "value": nonce},
            exp={"essential": True},
            sub={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise VerificationError(f"the ID token is not valid: {exc}") from exc
    claims = dict(token.claims)
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != provider.client_id:  # 3.
        raise VerificationError("the ID token has several audiences and another authorized party")
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat > now.timestamp() + SKEW:  # 5.
        raise VerificationError("the ID token was issued in the future")
    return claims
