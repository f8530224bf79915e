"""Patch artifacts of a change: attach them, and hand executors only verified, freshly re-hashed local paths.

``verified_paths`` is the one door between an artifact URL and an executor. It fails closed: any artifact
that cannot be downloaded, whose hash differs, whose signature is not by the pinned signer, or whose
quarantined copy changed since it was verified, raises ``VerificationError`` and nothing is returned. Each
outcome is written to the control log; a refusal is also said in the change's thread.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import aiohttp
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import outbound
from bot.blocks.common import escape
from bot.config import Config
from bot.crypto.integrity import ArtifactRef, TrustEntry, VerifiedArtifact, fetch_and_verify, parse_trust, reverify
from bot.deps import Deps
from bot.errors import ConfigError, IllegalTransitionError, InputError, OutboundRefusedError, VerificationError
from bot.slack import thread
from bot.views import state_label
from bot.workflows import changes as change_flow
from bot.workflows import lifecycle
from storage import artifacts as store
from storage.models import EDITABLE, TERMINAL, Artifact, Change

log = logging.getLogger(__name__)
OPTION_KEYS = {"sha256": "sha256", "sha512": "sha512", "sig": "signature_url", "signer": "signer"}


async def attach(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    url: str,
    options: Mapping[str, str],
    actor: str,
    now: datetime,
) -> tuple[Artifact, Change, int]:
    """Attach an artifact (``options``: sha256/sha512, sig, signer) to an open change; audited.

    Attaching edits the approvable content: returns the artifact, the change and how many approvals
    became stale."""
    change = await lifecycle.load(session, change_id, lock=True)
    if change.state in TERMINAL or change.state not in EDITABLE:
        raise IllegalTransitionError(
            f"{change.key} is {change.state}",
            user_message=f"{change.key} is *{state_label(change.state)}*; artifacts can no longer be added.",
        )
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise InputError(f"unknown artifact option(s) {', '.join(unknown)}; use sha256=, sha512=, sig= and signer=")
    fields = {OPTION_KEYS[k]: v for k, v in options.items()}
    try:
        ref = ArtifactRef.model_validate({"url": url, **fields})
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise InputError(f"invalid artifact: {problem}") from exc
    policy = outbound.OutboundPolicy(tuple(config.outbound.allow))
    for target in (ref.url, ref.signature_url):
        try:
            if target is not None:
                policy.check_url(target)
        except OutboundRefusedError as exc:
            raise InputError(f"invalid artifact: {exc}") from exc
    if ref.signer is not None and ref.signer not in config.trust:
        known = ", ".join(sorted(config.trust)) or "none configured"
        raise InputError(f"signer {ref.signer!r} is not in the trust store (known: {known})")
    row = await store.add(
        session,
        Artifact(
            change_id=change.id,
            url=ref.url,
            sha256=ref.sha256.lower() if ref.sha256 else None,
            sha512=ref.sha512.lower() if ref.sha512 else None,
            signature_url=ref.signature_url,
            signer=ref.signer,
            status="pending",
            detail="",
        ),
    )
    await lifecycle.log(
        session, config=config, now=now, actor=actor, action="artifact_attached", change=change,
        url=ref.url, sha256=row.sha256, sha512=row.sha512, signer=ref.signer,
    )  # fmt: skip
    # The artifact is part of the approvable content: earlier approvals are stale, the stage asks again.
    outcome = await change_flow.rebind(
        session, config=config, change=change, editor=actor, now=now, changed=(f"artifact {ref.url} added",)
    )
    return row, outcome.change, outcome.stale


async def remove(
    session: AsyncSession, *, config: Config, change_id: int, url: str, actor: str, now: datetime
) -> tuple[Change, int]:
    """Remove an artifact (by URL) from an open change: an edit of the approvable content; audited."""
    change = await lifecycle.load(session, change_id, lock=True)
    if change.state not in EDITABLE:
        raise IllegalTransitionError(
            f"{change.key} is {change.state}",
            user_message=f"{change.key} is *{state_label(change.state)}*; its artifacts can no longer change.",
        )
    rows = [r for r in await store.for_change(session, change.id) if r.url == url]
    if not rows:
        raise InputError(f"{change.key} has no artifact {url}")
    await store.delete(session, rows[0].id)
    await lifecycle.log(session, config=config, now=now, actor=actor, action="artifact_removed", change=change, url=url)
    outcome = await change_flow.rebind(
        session, config=config, change=change, editor=actor, now=now, changed=(f"artifact {url} removed",)
    )
    return outcome.change, outcome.stale


def _ref(row: Artifact) -> ArtifactRef:
    return ArtifactRef(
        url=row.url, sha256=row.sha256, sha512=row.sha512, signature_url=row.signature_url, signer=row.signer
    )


async def _verify_one(
    row: Artifact,
    *,
    folder: Path,
    trust: Mapping[str, TrustEntry],
    http: aiohttp.ClientSession | None,
    policy: outbound.OutboundPolicy,
    fresh: bool = False,
) -> VerifiedArtifact:
    # 1. A copy verified earlier is reused only if it still hashes to what was verified (checked below)
    #    and ``fresh`` is not asked for; otherwise download and verify afresh.
    earlier = Path(row.verified_path) if row.verified_path else None
    reusable = not fresh and row.status == "verified" and earlier is not None and bool(row.verified_sha256)
    if reusable and earlier is not None and row.verified_sha256 and await asyncio.to_thread(earlier.is_file):
        verified = VerifiedArtifact(path=earlier, sha256=row.verified_sha256, signer=row.signer or "")
    else:
        verified = await fetch_and_verify(_ref(row), quarantine=folder, trust=trust, session=http, policy=policy)
    # 2. Re-hash immediately before handing the path out (time of check = time of use).
    reverify(verified)
    return verified


async def verified_paths(
    deps: Deps,
    *,
    change_id: int,
    actor: str = "patchwarden",
    quarantine: Path | None = None,
    http: aiohttp.ClientSession | None = None,
    notify_thread: bool = True,
) -> list[Path]:
    """The paths of ``verified`` (same contract)."""
    found = await verified(
        deps, change_id=change_id, actor=actor, quarantine=quarantine, http=http, notify_thread=notify_thread
    )
    return [v.path for _, v in found]


async def verified(
    deps: Deps,
    *,
    change_id: int,
    actor: str = "patchwarden",
    quarantine: Path | None = None,
    http: aiohttp.ClientSession | None = None,
    notify_thread: bool = True,
    fresh: bool = False,
) -> list[tuple[Artifact, VerifiedArtifact]]:
    """Fetch and verify every artifact of the change into quarantine; return them, re-hashed just now.

    Call it right before running an executor and pass the executor only these paths. Raises
    ``VerificationError`` (its ``user_message`` names the artifact and the reason) on the first artifact
    that fails; the refusal is audited and, with ``notify_thread``, said in the change's thread. Returns an
    empty list for a change without artifacts. Opens its own short transactions (never one across a
    download), so call it outside any transaction. ``fresh`` downloads and verifies every artifact again
    (what a deployment does before its first step, so a file replaced at its source is noticed).
    """
    config = deps.config
    async with deps.sessions.begin() as session:
        change = await lifecycle.load(session, change_id)
        rows = await store.for_change(session, change_id)
    if not rows:
        return []
    base = quarantine or config.advisories.quarantine_dir or Path(tempfile.gettempdir()) / "patchwarden-quarantine"
    folder = base / change.key
    found: list[tuple[Artifact, VerifiedArtifact]] = []
    for row in rows:
        try:
            try:
                trust = parse_trust(config.trust, base_dir=deps.settings.config_path.parent)
            except ConfigError as exc:
                raise VerificationError(f"the trust store is invalid: {exc}") from exc
            policy = outbound.OutboundPolicy(tuple(config.outbound.allow))
            good = await _verify_one(row, folder=folder, trust=trust, http=http, policy=policy, fresh=fresh)
        except VerificationError as exc:
            await _refused(deps, change=change, row=row, reason=str(exc), actor=actor, notify_thread=notify_thread)
            raise VerificationError(
                f"{change.key}: artifact {outbound.redact(row.url)} refused: {exc}",
                user_message=f"{change.key}: artifact `{escape(outbound.redact(row.url))}` failed verification "
                f"({exc}); the deployment "
                "is refused.",
            ) from exc
        async with deps.sessions.begin() as session:
            await store.set_result(
                session,
                row.id,
                status="verified",
                verified_path=str(good.path),
                verified_sha256=good.sha256,
                verified_at=deps.clock.now(),
                detail=good.detail[:1000],
            )
            await lifecycle.log(
                session, config=config, now=deps.clock.now(), actor=actor, action="artifact_verified",
                change=change, url=row.url, sha256=good.sha256, scheme=good.scheme,
                signer=good.signer, detail=good.detail,
            )  # fmt: skip
        found.append((row, good))
    return found


async def _refused(deps: Deps, *, change: Change, row: Artifact, reason: str, actor: str, notify_thread: bool) -> None:
    async with deps.sessions.begin() as session:
        await store.set_result(session, row.id, status="refused", detail=reason[:2000])
        await lifecycle.log(
            session, config=deps.config, now=deps.clock.now(), actor=actor, action="artifact_refused",
            change=change, url=row.url, reason=reason,
        )  # fmt: skip
    if notify_thread and change.thread_ts:
        # Said where the approvers look; a Slack failure defers the note to the outbox (see bot.slack.thread).
        await thread.say(
            deps,
            change,
            f":no_entry: Artifact `{escape(outbound.redact(row.url))}` of {change.key} failed verification: "
            f"{escape(reason)}. The deployment is refused.",
        )
