"""Step-up for high-risk approvals: an Approve click reserves the vote, a second factor makes it count.

The confirmation is bound to what was approved. Step by step, ``confirm`` refuses unless:

1. the person has a pending reservation on *this* change (a code typed for another change finds none);
2. it is younger than ``policy.step_up.confirm_within`` (default 5 minutes);
3. the change is still awaiting that stage, at the reserved revision and content hash (an edit voids it);
4. the code is a valid RFC 6238 code of the person's enrolled secret (one step of clock drift allowed);
5. the code's time step was not used before by that person (a code cannot be replayed anywhere else).

Only then is the approval recorded, with ``step_up`` set to the method, and the control log says so.
Every refusal is in the control log too (``step_up_refused`` with the step that failed).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from bot import crypto, policy
from bot.config import Config, StepUpMethod
from bot.errors import AlreadyDoneError, ConfigError, PermissionDeniedError
from bot.workflows import approval, delegation, lifecycle
from bot.workflows.approval import DecisionResult, Outcome
from storage import stepup as store
from storage.models import PENDING_APPROVAL, Change, ReservationState, StepUpReservation

ISSUER = "patchwarden"


def _key(secrets_key: str | None) -> str:
    if not secrets_key:
        raise ConfigError(
            "PATCHWARDEN_SECRETS_KEY is not set",
            user_message="Step-up enrolment is not available: the bot has no PATCHWARDEN_SECRETS_KEY. Tell an admin.",
        )
    return secrets_key


async def enroll(
    session: AsyncSession, *, config: Config, secrets_key: str | None, user: str, now: datetime
) -> tuple[str, str]:
    """Create and store (sealed) a new TOTP secret; returns (secret, otpauth URI) to show once."""
    key = _key(secrets_key)
    secret = pyotp.random_base32()
    await store.enroll(session, user_id=user, sealed=crypto.seal(key, secret), now=now)
    await lifecycle.log(session, config=config, now=now, actor=user, action="step_up_enrolled", method="totp")
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user, issuer_name=ISSUER)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    totp = pyotp.TOTP(secret)
    code = code.strip().replace(" ", "")
    for drift in (-1, 0, 1):
        when = now + timedelta(seconds=drift * totp.interval)
        if crypto.hmac_equal(totp.at(when), code):
            return int(totp.timecode(when))
    return None


async def refuse(
    session: AsyncSession, *, config: Config, change: Change, user: str, now: datetime, step: str, message: str
) -> DecisionResult:
    await lifecycle.log(
        session, config=config, now=now, actor=user, action="step_up_refused", change=change, failed_step=step
    )
    return DecisionResult(Outcome.REFUSED, change, message)


async def confirm(
    session: AsyncSession,
    *,
    config: Config,
    secrets_key: str | None,
    change_id: int,
    user: str,
    code: str,
    now: datetime,
) -> DecisionResult:
    """Confirm the person's reserved approval of ``change_id`` with a TOTP code (the steps are above)."""
    change = await lifecycle.load(session, change_id, lock=True)
    # 1. a reservation on this change
    reservation = await store.pending(session, change_id=change.id, user_id=user)
    if reservation is None:
        return await refuse(
            session, config=config, change=change, user=user, now=now, step="no_reservation",
            message=f"You have no approval of {change.key} waiting for confirmation: click Approve on its card first.",
        )  # fmt: skip
    # 2. in time, 3. still what was approved
    refused = await check_bound(session, config=config, change=change, reservation=reservation, user=user, now=now)
    if refused is not None:
        return refused
    if reservation.method != StepUpMethod.TOTP.value:
        return await refuse(
            session, config=config, change=change, user=user, now=now, step="method",
            message=f"{change.key} needs the {reservation.method} confirmation, not a code.",
        )  # fmt: skip
    # 4. a valid code of the enrolled secret
    enrolled = await store.secret(session, user)
    if enrolled is None:
        return await refuse(
            session, config=config, change=change, user=user, now=now, step="not_enrolled",
            message="You have no authenticator enrolled: type `/patch enroll`, then confirm again.",
        )  # fmt: skip
    step = _matching_step(crypto.unseal(_key(secrets_key), enrolled.sealed), code, now)
    if step is None:
        return await refuse(
            session, config=config, change=change, user=user, now=now, step="bad_code",
            message="That code is not valid. Type the current code from your authenticator app.",
        )  # fmt: skip
    # 5. never used before
    if not await store.use_step(session, user_id=user, step=step):
        return await refuse(
            session, config=config, change=change, user=user, now=now, step="replayed",
            message="That code was already used. Wait for the next code and try again.",
        )  # fmt: skip
    return await settle_and_count(session, config=config, change=change, reservation=reservation, user=user, now=now)


async def check_bound(
    session: AsyncSession, *, config: Config, change: Change, reservation: StepUpReservation, user: str, now: datetime
) -> DecisionResult | None:
    """Steps 2 and 3 (shared by every method): the reservation is in time and the change is what was approved."""
    # 2. in time
    if now > reservation.expires_at:
        await store.settle(session, reservation.id, state=ReservationState.VOID)
        return await refuse(
            session, config=config, change=change, user=user, now=now, step="expired",
            message=f"Your reserved approval of {change.key} expired: click Approve again and confirm in time.",
        )  # fmt: skip
    # 3. still what was approved
    if (
        change.revision != reservation.revision
        or change.content_hash != reservation.content_hash
        or change.state is not PENDING_APPROVAL.get(reservation.stage)
    ):
        await store.settle(session, reservation.id, state=ReservationState.VOID)
        return await refuse(
            session, config=config, change=change, user=user, now=now, step="changed",
            message=f"{change.key} changed since you clicked Approve (you approved revision {reservation.revision}, "
            f"it is now revision {change.revision}): nothing was counted. Look at the card and approve again.",
        )  # fmt: skip
    return None


async def settle_and_count(
    session: AsyncSession,
    *,
    config: Config,
    change: Change,
    reservation: StepUpReservation,
    user: str,
    now: datetime,
    **details: object,
) -> DecisionResult:
    """The last step of every method: settle the reservation once (compare-and-set), log, count the vote."""
    if not await store.settle(session, reservation.id, state=ReservationState.CONFIRMED):
        return DecisionResult(Outcome.ALREADY, change, approval.ALREADY_DECIDED)
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor=user,
        action="step_up_confirmed",
        change=change,
        stage=reservation.stage,
        revision=change.revision,
        content_hash=change.content_hash,
        method=reservation.method,
        **details,
    )
    progress = await approval.progress_of(session, config=config, change=change, stage=reservation.stage)
    if reservation.delegated_from is not None:  # the delegation must still be in force, for the same delegator
        vote = await delegation.vote_for(
            session, config=config, change=change, stage=reservation.stage, progress=progress, user=user, now=now
        )
        if not isinstance(vote, delegation.Vote) or vote.delegator != reservation.delegated_from:
            why = vote if isinstance(vote, str) else f"Your delegation from <@{reservation.delegated_from}> is over."
            return DecisionResult(Outcome.REFUSED, change, f"{why} Nothing was counted.")
        requirement: str | None = vote.requirement
    else:
        try:  # the policy decides again: someone else may have met the requirement meanwhile
            requirement = policy.requirement_for(progress, user)
        except (AlreadyDoneError, PermissionDeniedError) as exc:
            return DecisionResult(Outcome.ALREADY, change, exc.user_message)
    return await approval.count(
        session,
        config=config,
        change=change,
        stage=reservation.stage,
        user=user,
        requirement=requirement,
        progress=progress,
        now=now,
        step_up=reservation.method,
        delegated_from=reservation.delegated_from,
    )
