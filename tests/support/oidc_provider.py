"""A tiny OpenID Connect provider on loopback for the step-up tests: discovery, JWKS, authorize, token.

``authorize`` consents at once as ``subject`` and redirects back with a code; ``token`` checks the client,
the redirect URI, the code (once) and the PKCE verifier (S256), and signs an ID token with a test RSA key.
Knobs let a test break one thing at a time: ``tamper`` (claims to override), ``sign_key`` (another key).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)


@dataclass
class Provider:
    client_id: str = "patchwarden"
    client_secret: str = "s3cret"
    subject: str = "sub-owner"
    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: new_key("k1"))
    sign_key: RSAKey | None = None  # sign with this key instead (not in the JWKS)
    tamper: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)  # every code handed out, in order
    token_requests: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        return app

    async def discovery(self, _r: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(self, _r: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, r: web.Request) -> web.Response:
        q = r.query
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return web.Response(status=400, text="bad client or response type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.Response(status=400, text="PKCE S256 required")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "nonce": q.get("nonce"),
            "redirect_uri": q["redirect_uri"],
            "sub": self.subject,
        }
        self.issued.append(code)
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}")

    async def token(self, r: web.Request) -> web.Response:
        self.token_requests += 1
        form = await r.post()
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self.codes.pop(str(form.get("code", "")), None)  # a code works once
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return web.json_response({"error": "invalid_grant", "error_description": "code or redirect"}, status=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": grant["sub"],
            "nonce": grant["nonce"],
            "iat": now,
            "exp": now + 300,
            **self.tamper,
        }
        key = self.sign_key or self.key
        token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
        return web.json_response({"access_token": "at", "token_type": "Bearer", "id_token": token})


async def start(provider: Provider) -> web.AppRunner:
    runner = web.AppRunner(provider.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider.issuer = f"http://127.0.0.1:{port}"
    return runner
