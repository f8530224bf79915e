"""Step-up by the identity provider: a one-time sign-in link bound to change, revision, content hash and person.

A small OIDC provider runs on loopback (tests/support/oidc_provider.py); the test plays the browser, following
the bot's start link to the provider and the provider's redirect back to the bot's callback.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from conftest import OWNER, REQ, Harness, eventually, make_config
from support.oidc_provider import Provider, new_key, start
from test_stepup import actions, click_approve, state

from bot.errors import ConfigError
from bot.workflows import views
from storage import changes
from storage.models import ChangeState

BOT = "http://bot.test"  # the bot's public base URL in the configuration; the browser maps it to the harness


@pytest_asyncio.fixture
async def idp(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Provider]:
    provider = Provider()
    runner = await start(provider)
    monkeypatch.setenv("PW_OIDC_SECRET", provider.client_secret)
    yield provider
    await runner.cleanup()


def oidc_config(idp: Provider, **step_up: Any) -> Any:
    return make_config(**_raw(idp, **step_up))


def _raw(idp: Provider, **step_up: Any) -> dict[str, Any]:
    return dict(
        people={OWNER: {"oidc_sub": "sub-owner"}},
        policy={
            "step_up": {
                "when": {"stage": "test"},
                "method": "oidc",
                "oidc": {
                    "issuer": idp.issuer,
                    "client_id": idp.client_id,
                    "client_secret_env": "PW_OIDC_SECRET",
                    "redirect_url": f"{BOT}/oidc/callback",
                },
                **step_up,
            }
        },
    )


def link_in(reply: str) -> str:
    match = re.search(r"<(http[^|>]+)\|sign in", reply)
    assert match, reply
    return html.unescape(match.group(1))


async def browse(h: Harness, url: str) -> tuple[int, str]:
    """Follow redirects as a browser would (the bot's public URL is the harness); returns the last page."""
    base = h.endpoint.removesuffix("/slack/events")
    async with aiohttp.ClientSession() as browser:
        for _ in range(5):
            if url.startswith(BOT + "/"):
                url = base + url.removeprefix(BOT)
            async with browser.get(url, allow_redirects=False) as resp:
                if resp.status in (302, 303):
                    url = resp.headers["Location"]
                    continue
                return resp.status, html.unescape(await resp.text())
    raise AssertionError("too many redirects")


async def approve_link(h: Harness, card: Any, user: str = OWNER) -> str:
    reply = await click_approve(h, card, user=user)
    assert "reserved, not yet counted" in reply, reply
    return link_in(reply)


async def test_link_for_chg1_rev1_counts_nothing_for_rev2_chg2_or_another_person(
    harness_factory: Any, idp: Provider
) -> None:
    h: Harness = await harness_factory(oidc_config(idp))
    card1 = await h.request_change()
    card2 = await h.request_change(title="Update nginx")
    link1 = await approve_link(h, card1)
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    # CHG-1 is edited: the sign-in for revision 1 does not count for revision 2
    await h.slack.command("edit CHG-1", user=REQ)
    view = await h.opened_view("change_edit")
    await h.slack.submit(view, {"title": "Update OpenSSL to 3.0.16"}, user=REQ)
    await eventually(lambda: any("edited" in m.text for m in h.thread(card1)), what="edit notice")
    status, page = await browse(h, link1)
    assert status == 409 and "you approved revision 1, it is now revision 2" in page, page
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    # a link is for the person who clicked: someone else signing in with it counts nothing, and voids it
    link1b = await approve_link(h, card1)
    idp.subject = "sub-somebody-else"
    status, page = await browse(h, link1b)
    assert status == 409 and "signed in someone else" in page, page
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    idp.subject = "sub-owner"
    status, page = await browse(h, link1b)
    assert status == 400 and "not known, was used already" in page, page
    # CHG-2 reserved too; the CHG-1 sign-in counts for CHG-1 only
    link2 = await approve_link(h, card2)
    link1c = await approve_link(h, card1)
    status, page = await browse(h, link1c)
    assert status == 200 and "completed the test stage" in page, page
    assert await state(h, 1) is ChangeState.APPROVED_FOR_TEST
    assert await state(h, 2) is ChangeState.PENDING_TEST_APPROVAL
    await eventually(lambda: any("approved for *test*" in m.text for m in h.thread(card1)), what="thread note")
    # the link works once
    status, page = await browse(h, link1c)
    assert status == 400 and "not known, was used already" in page
    # CHG-1's code replayed with CHG-2's state: the provider refuses the used code, nothing counts
    used_code = idp.issued[-1]
    state2 = parse_qs(urlsplit(link2).query)["state"][0]
    status, page = await browse(h, f"{BOT}/oidc/callback?state={state2}&code={used_code}")
    assert status == 403 and "did not verify" in page
    assert await state(h, 2) is ChangeState.PENDING_TEST_APPROVAL
    # the record and the control log name the method
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        data = views.to_json(await views.snapshot(s, config=h.config, change=change))
    [approval] = [a for a in data["approvals"] if not a["stale"]]
    assert approval["step_up"] == "oidc" and approval["revision"] == 2 and approval["user"] == OWNER
    log = await actions(h, 1)
    assert [(e["action"], e.get("failed_step")) for e in log] == [
        ("approval_reserved", None),
        ("step_up_refused", "changed"),
        ("approval_reserved", None),
        ("step_up_refused", "wrong_person"),
        ("approval_reserved", None),
        ("step_up_confirmed", None),
    ]
    assert log[-1]["method"] == "oidc" and log[-1]["sub"] == "sub-owner"
    assert (await actions(h, 2))[-1]["failed_step"] == "id_token"


@pytest.mark.parametrize(
    ("knob", "why"),
    [
        ({"tamper": {"nonce": "another-sign-in"}}, "nonce"),
        ({"tamper": {"aud": "another-client"}}, "aud"),
        ({"tamper": {"iss": "http://127.0.0.1:1"}}, "iss"),
        ({"tamper": {"exp": 1_000_000}}, "exp"),
        ({"sign_key": new_key("k1")}, "signature"),
    ],
)
async def test_id_token_that_does_not_verify_counts_nothing(
    harness_factory: Any, idp: Provider, knob: dict[str, Any], why: str
) -> None:
    h: Harness = await harness_factory(oidc_config(idp))
    card = await h.request_change()
    link = await approve_link(h, card)
    for name, value in knob.items():
        setattr(idp, name, value)
    status, page = await browse(h, link)
    assert status == 403 and "did not verify" in page, (why, page)
    assert await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL
    reason = (await actions(h, 1))[-1]
    assert reason["failed_step"] == "id_token", why
    # the reservation stays: a good sign-in within the time still counts
    for name in knob:
        setattr(idp, name, {} if name == "tamper" else None)
    status, page = await browse(h, link)
    assert status == 200 and "completed the test stage" in page, page


async def test_issuer_outside_the_outbound_policy_is_refused(harness_factory: Any, idp: Provider) -> None:
    cfg = oidc_config(idp).model_copy(update={"outbound": make_config(outbound={"allow": []}).outbound})
    h: Harness = await harness_factory(cfg)
    card = await h.request_change()
    status, page = await browse(h, await approve_link(h, card))
    assert status == 400 and "loopback" in page and "outbound.allow" in page, page
    assert idp.token_requests == 0 and await state(h, 1) is ChangeState.PENDING_TEST_APPROVAL


async def test_oidc_keys_are_validated(idp: Provider) -> None:
    with pytest.raises(ConfigError, match="method oidc needs an oidc"):
        make_config(policy={"step_up": {"when": {"stage": "prod"}, "method": "oidc"}})
    with pytest.raises(ConfigError, match="unknown key"):
        oidc_config(idp, oidc={"issuer": idp.issuer, "client_id": "x", "redirect_url": f"{BOT}/cb", "scope": "x"})
    with pytest.raises(ConfigError, match="issuer"):
        oidc_config(idp, oidc={"issuer": "ftp://idp", "client_id": "x", "redirect_url": f"{BOT}/cb"})
    with pytest.raises(ConfigError, match=r"oidc.issuer: .*loopback.*outbound.allow"):
        make_config(**{**_raw(idp), "outbound": {"allow": []}})
    with pytest.raises(ConfigError, match="only used with method oidc"):
        oidc_config(idp, method="totp")
