"""Step-up secrets and reservations (issue 12)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, str_enum
from storage.models.changes import Stage


class StepUpSecret(Base):
    """A person's TOTP secret, encrypted (``bot.crypto.seal``); ``last_step`` refuses a replayed code."""

    __tablename__ = "step_up_secrets"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    enrolled_at: Mapped[datetime]
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class ReservationState(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    VOID = "void"  # refused, expired or replaced


class StepUpReservation(Base):
    """An Approve click that waits for its second factor, bound to change, revision, content hash and user."""

    __tablename__ = "step_up_reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, 8))
    revision: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    requirement: Mapped[str | None] = mapped_column(String(100))
    delegated_from: Mapped[str | None] = mapped_column(String(32))  # a delegate's vote, for this away approver
    method: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[ReservationState] = mapped_column(str_enum(ReservationState, 12))
    # oidc: the one-time ``state`` of the sign-in link (unique), its nonce and PKCE verifier (issue 12, item 5)
    oidc_state: Mapped[str | None] = mapped_column(String(64), unique=True)
    oidc_nonce: Mapped[str | None] = mapped_column(String(64))
    oidc_verifier: Mapped[str | None] = mapped_column(String(128))


class ProdPresence(Base):
    """The owner's check-in for one prod window (``policy.prod_presence: required``): asked once, answered once."""

    __tablename__ = "prod_presence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"), unique=True)
    asked_at: Mapped[datetime]
    checked_in_by: Mapped[str | None] = mapped_column(String(32))
    checked_in_at: Mapped[datetime | None]
    absent_at: Mapped[datetime | None]  # the wait ran out with nobody checked in: the window did not start


class DocsState(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"


class DocsConfirmation(Base):
    """Whether the technical documentation was revised after a completed change (issue 12, item 4)."""

    __tablename__ = "docs_confirmations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), unique=True)
    state: Mapped[DocsState] = mapped_column(str_enum(DocsState, 12), index=True)
    url: Mapped[str] = mapped_column(Text, default="")  # the systems' docs_url (one per line)
    asked_at: Mapped[datetime]
    reminded_at: Mapped[datetime | None]
    confirmed_by: Mapped[str | None] = mapped_column(String(32))
    confirmed_at: Mapped[datetime | None]
    link: Mapped[str] = mapped_column(Text, default="")  # the revised page, if the confirmer gave one
